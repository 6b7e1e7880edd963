"""Sending to citizens: Twilio's Messages API and Meta's WhatsApp Cloud API, each played by a
local HTTP server on loopback that records every request it gets; and the number a WhatsApp
message came to, kept by the decoder so that the reply goes out from it."""

from __future__ import annotations

import base64
import json
import logging
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from connectors.twilio import TwilioConnector
from connectors.whatsapp_cloud import WhatsAppCloudConnector
from normalizer.whatsapp import decode_whatsapp_message, split_webhook
from omnichannel.errors import ConnectorError, FatalError, RetryableError, Undeliverable
from omnichannel.outbound import Outbound, Sender, Sent
from omnichannel.testing.http import serve_wsgi

ACCOUNT = "AC" + "7d" * 16
AUTH_TOKEN = "token-kirim-twilio-5a4b3c2d1e"
SERVICE = "MG" + "ab" * 16
ACCESS_TOKEN = "EAAG-akses-kirim-0f1e2d3c4b"
CITIZEN = "+6281234567890"
CITIZEN_WA_ID = "6281234567890"
OUR_SMS = "+6281100000001"
OUR_WHATSAPP = "whatsapp:+6281100000002"
PNID, PNID_2 = "106540352242922", "106540352242923"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
TEXT = "Terima kasih, pengaduan Anda kami terima dengan nomor tiket LPR-2026-000123."
TICKET = "LPR-2026-000123"
WAMID_IN = "wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABIYFjNFQjA"
DATA = Path(__file__).parent / "testdata" / "whatsapp"


def outbound(**fields: Any) -> Outbound:
    """An acknowledgement to the citizen; ``fields`` override."""
    values: dict[str, Any] = {
        "delivery_id": "d-0001",
        "kind": "acknowledgement",
        "to": CITIZEN,
        "text": TEXT,
        "ticket": TICKET,
    }
    values.update(fields)
    return Outbound(**values)


# -- a recording stand-in server ---------------------------------------------------------------


@dataclass
class Request:
    """One request as the stand-in received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str], Any]


@dataclass
class StandIn:
    """A provider's API on loopback: records every request, answers with the next scripted
    answer (``script``), or else with ``default``."""

    default: Callable[[StandIn, Request], Answer]
    requests: list[Request] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    base_url: str = ""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            key[5:].replace("_", "-").lower(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        headers["content-type"] = environ.get("CONTENT_TYPE", "")
        request = Request(environ["REQUEST_METHOD"], environ["PATH_INFO"], headers, body)
        self.requests.append(request)
        status, extra, payload = self.script.pop(0) if self.script else self.default(self, request)
        data = json.dumps(payload).encode()
        start_response(
            f"{status} Answer",
            [
                ("Content-Type", "application/json"),
                *extra.items(),
                ("Content-Length", str(len(data))),
            ],
        )
        return [data]


def twilio_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Answer:
    """An error as Twilio's API answers it (its message may quote the number)."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return status, headers or {}, body


def twilio_answer(api: StandIn, request: Request) -> Answer:
    """Twilio's Messages API as far as sending goes: Basic auth of the account, then a queued
    message resource with a fresh SID."""
    expected = "Basic " + base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode()
    if request.headers.get("authorization") != expected:
        return twilio_error(401, 20003, "Authenticate")
    if request.method != "POST" or request.path != MESSAGES_PATH:
        return twilio_error(404, 20404, "The requested resource was not found")
    form = {key: values[0] for key, values in request.form().items()}
    sid = f"SM{len(api.requests):032x}"
    return (
        201,
        {},
        {
            "account_sid": ACCOUNT,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "direction": "outbound-api",
            "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": "0",
            "num_segments": "1",
            "sid": sid,
            "status": "accepted" if "MessagingServiceSid" in form else "queued",
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json",
        },
    )


def graph_error(
    status: int, code: int, message: str, headers: dict[str, str] | None = None
) -> Answer:
    """An error as the Graph API answers it."""
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code,
            "fbtrace_id": "AbCdEf",
        }
    }
    return status, headers or {}, body


def graph_answer(api: StandIn, request: Request) -> Answer:
    """The Cloud API's messages endpoint: bearer token, then the wamid of the sent message."""
    if request.headers.get("authorization") != f"Bearer {ACCESS_TOKEN}":
        return graph_error(401, 190, "Error validating access token")
    parts = request.path.strip("/").split("/")
    if request.method != "POST" or len(parts) != 3 or parts[0] != "v21.0" or parts[2] != "messages":
        return graph_error(400, 100, "Unsupported post request")
    to = request.json()["to"]
    return (
        200,
        {},
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": f"wamid.OUT{len(api.requests):04d}", "message_status": "accepted"}],
        },
    )


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[StandIn]:
    api = StandIn(twilio_answer)
    with serve_wsgi(api) as url:
        api.base_url = url
        yield api


@pytest.fixture(scope="module")
def graph_server() -> Iterator[StandIn]:
    api = StandIn(graph_answer)
    with serve_wsgi(api) as url:
        api.base_url = url
        yield api


@pytest.fixture
def twilio_api(twilio_server: StandIn) -> StandIn:
    """The Twilio stand-in (one server for the module), with no request and no script yet."""
    twilio_server.requests.clear()
    twilio_server.script.clear()
    return twilio_server


@pytest.fixture
def graph_api(graph_server: StandIn) -> StandIn:
    """The Graph API stand-in (one server for the module), with no request and no script yet."""
    graph_server.requests.clear()
    graph_server.script.clear()
    return graph_server


@pytest.fixture
def make_twilio(twilio_api: StandIn) -> Iterator[Callable[..., TwilioConnector]]:
    """Twilio connectors whose API is the stand-in; closed before the server stops."""
    made: list[TwilioConnector] = []

    def make(**options: Any) -> TwilioConnector:
        values = {
            "account_sid": ACCOUNT,
            "auth_token": AUTH_TOKEN,
            "api_base_url": twilio_api.base_url,
        }
        connector = TwilioConnector.from_options("sms", {**values, **options})
        assert isinstance(connector, TwilioConnector)
        made.append(connector)
        return connector

    yield make
    for connector in made:
        connector.close()


@pytest.fixture
def make_whatsapp(graph_api: StandIn) -> Callable[..., WhatsAppCloudConnector]:
    """WhatsApp Cloud connectors whose Graph API is the stand-in."""

    def make(**options: Any) -> WhatsAppCloudConnector:
        values = {
            "app_secret": "rahasia-aplikasi",
            "verify_token": "token-verifikasi",
            "access_token": ACCESS_TOKEN,
            "phone_number_ids": [PNID, PNID_2],
            "graph_api_url": graph_api.base_url,
        }
        connector = WhatsAppCloudConnector.from_options("wa", {**values, **options})
        assert isinstance(connector, WhatsAppCloudConnector)
        return connector

    return make


def refused(expected: type[ConnectorError], call: Callable[[], object]) -> ConnectorError:
    """The error ``call`` raised, which must be ``expected`` and must name no secret and no
    phone number."""
    with pytest.raises(expected) as raised:
        call()
    text = str(raised.value)
    for secret in (AUTH_TOKEN, ACCESS_TOKEN, CITIZEN, CITIZEN_WA_ID):
        assert secret not in text
    return raised.value


def closed_port_url() -> str:
    """A loopback URL where nothing listens (the port was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- Twilio ------------------------------------------------------------------------------------


def test_both_connectors_are_senders(
    make_twilio: Callable[..., TwilioConnector],
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
) -> None:
    """The outbox can hand an Outbound to either connector: both implement ``Sender``."""
    assert isinstance(make_twilio(), Sender)
    assert isinstance(make_whatsapp(), Sender)


def test_twilio_sms_posts_to_from_body_with_basic_auth_and_returns_the_sid(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """An SMS goes out as one POST to the account's Messages.json with Basic auth of the account,
    To = the citizen, From = the number the citizen wrote to, Body = the text; send returns the
    SID Twilio gave the new message."""
    sid = make_twilio().send(outbound(our_address=OUR_SMS))
    [request] = twilio_api.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    basic = base64.b64encode(f"{ACCOUNT}:{AUTH_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.form() == {"To": [CITIZEN], "From": [OUR_SMS], "Body": [TEXT]}
    assert sid == f"SM{1:032x}"


@pytest.mark.parametrize(
    ("our_address", "options"),
    [
        (OUR_WHATSAPP, {}),
        (OUR_WHATSAPP, {"from_number": OUR_SMS}),  # the number written to wins
        (None, {"from_number": OUR_WHATSAPP}),
    ],
)
def test_whatsapp_via_twilio_has_the_whatsapp_prefix_on_both_ends(
    make_twilio: Callable[..., TwilioConnector],
    twilio_api: StandIn,
    our_address: str | None,
    options: dict[str, str],
) -> None:
    """A WhatsApp sender (``whatsapp:+62…``: the number written to, else ``from_number``) sends
    to ``whatsapp:<citizen>``, even when the outbox gives the bare E.164 number."""
    make_twilio(**options).send(outbound(our_address=our_address))
    [request] = twilio_api.requests
    assert request.form()["To"] == [f"whatsapp:{CITIZEN}"]
    assert request.form()["From"] == [OUR_WHATSAPP]


def test_from_number_is_the_sender_when_no_number_is_named(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """Without ``our_address`` the configured ``from_number`` sends, and an SMS recipient stays a
    bare number."""
    make_twilio(from_number=OUR_SMS, messaging_service_sid=SERVICE).send(outbound())
    [request] = twilio_api.requests
    assert request.form() == {"To": [CITIZEN], "From": [OUR_SMS], "Body": [TEXT]}


def test_messaging_service_sends_when_configured_and_no_number_is_given(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """With only ``messaging_service_sid`` configured and no number named, the message goes
    through the service (MessagingServiceSid, no From); a named number still wins."""
    connector = make_twilio(messaging_service_sid=SERVICE)
    assert connector.send(outbound()) == f"SM{1:032x}"
    connector.send(outbound(our_address=OUR_SMS))
    first, second = (request.form() for request in twilio_api.requests)
    assert first == {"To": [CITIZEN], "MessagingServiceSid": [SERVICE], "Body": [TEXT]}
    assert second == {"To": [CITIZEN], "From": [OUR_SMS], "Body": [TEXT]}


def test_no_sender_at_all_is_undeliverable_without_a_request(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """No number named, no ``from_number``, no messaging service: refused before any call."""
    error = refused(Undeliverable, lambda: make_twilio().send(outbound()))
    assert "from_number" in str(error)
    assert twilio_api.requests == []


def test_sender_options_are_validated() -> None:
    """``from_number`` must be E.164 (or whatsapp:+…) and ``messaging_service_sid`` an MG sid."""
    base = {"account_sid": ACCOUNT, "auth_token": AUTH_TOKEN}
    for bad in ({"from_number": "081100000001"}, {"messaging_service_sid": "MG123"}):
        with pytest.raises(ValueError):
            TwilioConnector.Options.model_validate({**base, **bad})


def in_the_future(seconds: int) -> str:
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


@pytest.mark.parametrize(
    ("retry_after", "low", "high"),
    [("7", 7, 7), (None, None, None), ("soon", None, None), ("HTTP-DATE", 100, 120)],
)
def test_twilio_429_is_retryable_with_retry_after(
    make_twilio: Callable[..., TwilioConnector],
    twilio_api: StandIn,
    retry_after: str | None,
    low: float | None,
    high: float | None,
) -> None:
    """429 is retryable; ``Retry-After`` in seconds or as an HTTP-date becomes ``retry_after``
    (absent or unreadable: None)."""
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = in_the_future(120) if retry_after == "HTTP-DATE" else retry_after
    twilio_api.script.append(twilio_error(429, 20429, "Too Many Requests", headers))
    error = refused(RetryableError, lambda: make_twilio().send(outbound(our_address=OUR_SMS)))
    assert isinstance(error, RetryableError)
    if low is None:
        assert error.retry_after is None
    else:
        assert error.retry_after is not None and low <= error.retry_after <= (high or low)


@pytest.mark.parametrize("status", [500, 503])
def test_twilio_5xx_is_retryable(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn, status: int
) -> None:
    """A server error is temporary: RetryableError."""
    twilio_api.script.append(twilio_error(status, 20500, "Internal Server Error"))
    refused(RetryableError, lambda: make_twilio().send(outbound(our_address=OUR_SMS)))
    assert len(twilio_api.requests) == 1


def test_twilio_unreachable_is_retryable(make_twilio: Callable[..., TwilioConnector]) -> None:
    """Nothing listening at the API: RetryableError."""
    connector = make_twilio(api_base_url=closed_port_url(), timeout=5)
    refused(RetryableError, lambda: connector.send(outbound(our_address=OUR_SMS)))


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (21211, f"The 'To' number {CITIZEN} is not a valid phone number."),
        (21610, f"Attempt to send to unsubscribed recipient {CITIZEN}"),
    ],
)
def test_twilio_refusing_the_recipient_is_undeliverable(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn, code: int, message: str
) -> None:
    """A 400 for this recipient (21211 invalid To, 21610 unsubscribed) is Undeliverable, naming
    the Twilio error code but not the number Twilio's message quotes."""
    twilio_api.script.append(twilio_error(400, code, message))
    error = refused(Undeliverable, lambda: make_twilio().send(outbound(our_address=OUR_SMS)))
    assert str(code) in str(error)


def test_twilio_bad_credentials_are_fatal(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """A wrong auth token gets 401 from the API: FatalError (the token is not in the error);
    403 likewise."""
    wrong = make_twilio(auth_token="token-yang-salah-000")
    error = refused(FatalError, lambda: wrong.send(outbound(our_address=OUR_SMS)))
    assert "token-yang-salah-000" not in str(error)
    twilio_api.script.append(twilio_error(403, 20003, "Forbidden"))
    refused(FatalError, lambda: make_twilio().send(outbound(our_address=OUR_SMS)))


def test_a_4xx_while_polling_stays_fatal(
    make_twilio: Callable[..., TwilioConnector], twilio_api: StandIn
) -> None:
    """The same 400 that makes a send Undeliverable still disables polling (``check``)."""
    twilio_api.script.append(twilio_error(400, 21211, "Bad request"))
    refused(FatalError, make_twilio().check)


def test_twilio_send_logs_no_number_and_no_token(
    make_twilio: Callable[..., TwilioConnector],
    twilio_api: StandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, a sent and a refused message leave no phone number and no token in the logs."""
    caplog.set_level(logging.DEBUG)
    connector = make_twilio()
    connector.send(outbound(our_address=OUR_SMS))
    twilio_api.script.append(twilio_error(400, 21211, f"The 'To' number {CITIZEN} is invalid"))
    refused(Undeliverable, lambda: connector.send(outbound(our_address=OUR_SMS)))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "d-0001" in text  # the send was logged, by its delivery id
    for secret in (AUTH_TOKEN, CITIZEN, OUR_SMS, TEXT):
        assert secret not in text


# -- WhatsApp Cloud API ------------------------------------------------------------------------


def recent(hours: float = 1) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)


def test_whatsapp_text_inside_the_window_quotes_the_citizen_with_bearer_auth(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """Inside the 24-hour window: a text message to the number's digits, with ``context`` naming
    the wamid answered, POSTed as JSON with the bearer token to the number written to; send
    returns the wamid Meta gave."""
    wamid = make_whatsapp().send(
        outbound(our_address=PNID_2, in_reply_to=WAMID_IN, last_inbound_at=recent())
    )
    [request] = graph_api.requests
    assert (request.method, request.path) == ("POST", f"/v21.0/{PNID_2}/messages")
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CITIZEN_WA_ID,
        "type": "text",
        "text": {"preview_url": False, "body": TEXT},
        "context": {"message_id": WAMID_IN},
    }
    assert wamid == "wamid.OUT0001"


@pytest.mark.parametrize(
    ("our_address", "in_reply_to", "last_inbound_at"),
    [
        (None, None, lambda: recent(23.9)),  # (when the test runs, not when it is collected)
        ("999999999999999", f"SM{1:032x}", lambda: recent(0.1)),  # not our number, not a wamid
        (OUR_WHATSAPP, None, lambda: datetime.now() - timedelta(hours=2)),  # naive: taken as UTC
    ],
)
def test_whatsapp_text_from_the_first_number_and_without_context(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
    graph_api: StandIn,
    our_address: str | None,
    in_reply_to: str | None,
    last_inbound_at: Callable[[], datetime],
) -> None:
    """A number that is not one of ours (or none) sends from the first configured
    phone_number_id; without a wamid to answer there is no ``context``."""
    make_whatsapp().send(
        outbound(
            our_address=our_address, in_reply_to=in_reply_to, last_inbound_at=last_inbound_at()
        )
    )
    [request] = graph_api.requests
    assert request.path == f"/v21.0/{PNID}/messages"
    assert request.json()["type"] == "text" and "context" not in request.json()


@pytest.mark.parametrize("last_inbound_at", [None, recent(24.1), recent(24 * 30)])
def test_whatsapp_template_outside_the_window(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
    graph_api: StandIn,
    last_inbound_at: datetime | None,
) -> None:
    """Outside the window (or when it is unknown) the configured template goes out, in the
    configured language, with the ticket as its one body parameter; send says so."""
    connector = make_whatsapp(template_name="tiket_diterima")
    wamid = connector.send(
        outbound(our_address=PNID, in_reply_to=WAMID_IN, last_inbound_at=last_inbound_at)
    )
    [request] = graph_api.requests
    assert request.headers["authorization"] == f"Bearer {ACCESS_TOKEN}"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CITIZEN_WA_ID,
        "type": "template",
        "template": {
            "name": "tiket_diterima",
            "language": {"code": "id"},
            "components": [{"type": "body", "parameters": [{"type": "text", "text": TICKET}]}],
        },
    }
    assert wamid == Sent("wamid.OUT0001", "[template tiket_diterima (id): LPR-2026-000123]")


def test_whatsapp_template_language_is_configurable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """``template_language`` is the template's language code."""
    make_whatsapp(template_name="ticket_received", template_language="en").send(outbound())
    assert graph_api.requests[0].json()["template"]["language"] == {"code": "en"}


def test_whatsapp_outside_the_window_without_a_template_is_undeliverable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """No template configured and the window closed: Undeliverable, and nothing is sent."""
    error = refused(
        Undeliverable, lambda: make_whatsapp().send(outbound(last_inbound_at=recent(25)))
    )
    assert str(error) == "outside WhatsApp's 24-hour window and no template_name configured"
    assert graph_api.requests == []


def test_whatsapp_recipient_that_is_not_a_number_is_undeliverable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """An e-mail address (or anything but E.164) cannot be a WhatsApp recipient."""
    refused(Undeliverable, lambda: make_whatsapp().send(outbound(to="warga@example.id")))
    assert graph_api.requests == []


@pytest.mark.parametrize(
    ("answer", "retry_after"),
    [
        (graph_error(429, 130429, "Rate limit hit", {"Retry-After": "7"}), 7),
        (
            graph_error(400, 131056, "(Business Account, Consumer Account) pair rate limit hit"),
            None,
        ),
        (graph_error(400, 131048, "Spam rate limit hit"), None),
        (graph_error(400, 131056, "Pair rate limit hit", {"Retry-After": "30"}), 30),
        (graph_error(500, 131000, "Something went wrong"), None),
        (graph_error(503, 131016, "Service unavailable"), None),
        ((502, {}, "<html>Bad Gateway</html>"), None),
    ],
)
def test_whatsapp_rate_limits_and_server_errors_are_retryable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
    graph_api: StandIn,
    answer: Answer,
    retry_after: float | None,
) -> None:
    """HTTP 429, the rate-limit codes (even on a 400) and 5xx are retryable, carrying
    ``Retry-After`` when Meta sent one."""
    graph_api.script.append(answer)
    error = refused(
        RetryableError, lambda: make_whatsapp().send(outbound(last_inbound_at=recent()))
    )
    assert isinstance(error, RetryableError) and error.retry_after == retry_after


def test_whatsapp_unreachable_is_retryable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
) -> None:
    """Nothing listening at the Graph API: RetryableError."""
    connector = make_whatsapp(graph_api_url=closed_port_url(), timeout=5)
    refused(RetryableError, lambda: connector.send(outbound(last_inbound_at=recent())))


def test_whatsapp_131047_is_undeliverable_without_a_template(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """Meta refusing a text as outside the window (131047, re-engagement) is Undeliverable when
    no template could take its place."""
    graph_api.script.append(graph_error(400, 131047, "Re-engagement message"))
    error = refused(
        Undeliverable, lambda: make_whatsapp().send(outbound(last_inbound_at=recent(23.99)))
    )
    assert "131047" in str(error)
    assert len(graph_api.requests) == 1


def test_whatsapp_131047_falls_back_to_the_template(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """With a template configured, a text refused as outside the window goes out as the
    template at once; send returns the template's wamid."""
    graph_api.script.append(graph_error(400, 131047, "Re-engagement message"))
    connector = make_whatsapp(template_name="tiket_diterima")
    wamid = connector.send(outbound(last_inbound_at=recent(23.99)))
    assert [r.json()["type"] for r in graph_api.requests] == ["text", "template"]
    assert wamid == Sent("wamid.OUT0002", "[template tiket_diterima (id): LPR-2026-000123]")


@pytest.mark.parametrize(
    "answer",
    [
        graph_error(401, 190, "Error validating access token: Session has expired"),
        graph_error(400, 190, "Invalid OAuth access token"),
        graph_error(403, 10, "Application does not have permission for this action"),
    ],
)
def test_whatsapp_token_problems_are_fatal(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn, answer: Answer
) -> None:
    """401/403, or error code 190 whatever the status: FatalError."""
    graph_api.script.append(answer)
    refused(FatalError, lambda: make_whatsapp().send(outbound(last_inbound_at=recent())))


def test_whatsapp_wrong_token_is_fatal_and_not_echoed(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
) -> None:
    """The stand-in checks the bearer: a wrong token is FatalError, and neither it nor the
    configured one appears in the error."""
    connector = make_whatsapp(access_token="EAAG-token-salah-999")
    error = refused(FatalError, lambda: connector.send(outbound(last_inbound_at=recent())))
    assert "EAAG-token-salah-999" not in str(error)


@pytest.mark.parametrize(
    "answer",
    [
        graph_error(400, 100, f"Invalid parameter: {CITIZEN_WA_ID}"),
        graph_error(400, 131026, "Message undeliverable"),
        graph_error(404, 100, "Unsupported post request"),
    ],
)
def test_whatsapp_other_refusals_are_undeliverable(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn, answer: Answer
) -> None:
    """Any other 4xx refuses this delivery for good; Meta's message (which may quote the
    number) is left out of the error."""
    graph_api.script.append(answer)
    refused(Undeliverable, lambda: make_whatsapp().send(outbound(last_inbound_at=recent())))


def test_whatsapp_send_logs_no_token_and_no_number(
    make_whatsapp: Callable[..., WhatsAppCloudConnector],
    graph_api: StandIn,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At DEBUG, a sent and a refused message leave no token and no number in the logs."""
    caplog.set_level(logging.DEBUG)
    connector = make_whatsapp()
    connector.send(outbound(last_inbound_at=recent()))
    graph_api.script.append(graph_error(400, 131026, f"Undeliverable to {CITIZEN_WA_ID}"))
    refused(Undeliverable, lambda: connector.send(outbound(last_inbound_at=recent())))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "d-0001" in text
    for secret in (ACCESS_TOKEN, CITIZEN, CITIZEN_WA_ID, TEXT):
        assert secret not in text


# -- the reply address -------------------------------------------------------------------------


def test_decoded_whatsapp_message_keeps_the_number_it_came_to() -> None:
    """``headers["to"]`` is the payload's ``metadata.phone_number_id``; a payload without
    metadata has no ``to``."""
    message = {
        "from": CITIZEN_WA_ID,
        "id": WAMID_IN,
        "timestamp": "1796000000",
        "type": "text",
        "text": {"body": "Jalan rusak"},
    }
    payload = {
        "message": message,
        "contacts": [],
        "metadata": {"display_phone_number": "6281100001111", "phone_number_id": PNID_2},
    }
    decoded = decode_whatsapp_message(
        json.dumps(payload).encode(), connector="wa", received_at=recent()
    )
    assert decoded.headers == {"message-id": WAMID_IN, "to": PNID_2}
    bare = decode_whatsapp_message(
        json.dumps({"message": message}).encode(), connector="wa", received_at=recent()
    )
    assert bare.headers == {"message-id": WAMID_IN}


def test_reply_goes_out_from_the_number_the_citizen_wrote_to(
    make_whatsapp: Callable[..., WhatsAppCloudConnector], graph_api: StandIn
) -> None:
    """A webhook's message, cut out and decoded as the connector stores it, gives the reply its
    sender (``headers["to"]``), recipient and quoted wamid."""
    envelope = json.loads((DATA / "text.json").read_bytes())
    [(wamid, one)] = split_webhook(envelope, {PNID})[0]
    inbound = decode_whatsapp_message(
        json.dumps(one).encode(), connector="wa", received_at=recent()
    )
    assert inbound.headers["to"] == PNID
    assert inbound.sender.phone is not None
    make_whatsapp(phone_number_ids=[PNID_2, PNID]).send(
        outbound(
            to=inbound.sender.phone,
            our_address=inbound.headers["to"],
            in_reply_to=inbound.external_id,
            last_inbound_at=inbound.received_at,
        )
    )
    [request] = graph_api.requests
    assert request.path == f"/v21.0/{PNID}/messages"
    assert request.json()["to"] == "6281234567890"
    assert request.json()["context"] == {"message_id": wamid}
