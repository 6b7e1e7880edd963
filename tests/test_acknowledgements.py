"""What citizens are sent, end to end through the real outbox worker: acknowledgements,
status notifications and team replies, on every channel that can carry them, and the
citizen's answer threaded back into the complaint.

Everything goes over a real wire on loopback: e-mail to a real SMTP server (aiosmtpd,
tests/smtp.py), SMS and WhatsApp to stand-ins for Twilio's REST API and Meta's Graph API
(tests/test_senders.py), SMS to the ``outbox`` table of real Gammu SMSD databases (SQLite and
MariaDB, tests/gammu_schema.py). Complaints come in as they do in production: ``.eml`` files
through the ``files`` connector, signed Twilio, Meta and portal webhooks through
``Inbox.handle_webhook``, a poll of the Gammu gateway.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jsonschema  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

import connectors.whatsapp_cloud
from omnichannel import Inbox, Outcome
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.outbox import OutboxRow
from omnichannel.schema import ReceiveResult
from omnichannel.schemas import FOLDER
from omnichannel.store.tables import outbound_messages
from omnichannel.testing import (
    meta_signature,
    post_webhook,
    standard_webhooks_headers,
    twilio_signature,
)
from omnichannel.testing.http import serve_wsgi
from omnichannel.webhook import WebhookRequest, WebhookResponse
from tests import smtp
from tests.gammu_schema import Gateway, mariadb_url, open_gateway, sms  # noqa: F401 - fixture
from tests.smtp import Received, SmtpServer
from tests.test_senders import (
    ACCESS_TOKEN,
    ACCOUNT,
    AUTH_TOKEN,
    MESSAGES_PATH,
    Answer,
    Request,
    StandIn,
    graph_answer,
    twilio_answer,
)
from tests.test_twilio import sms_fields

OUR_MAIL = "pengaduan@dpmptsp.example.go.id"
FROM = f"Pengaduan DPMPTSP <{OUR_MAIL}>"
CITIZEN_MAIL = "budi.santoso@example.com"
CITIZEN = "+6281234567890"
CITIZEN_WA_ID = "6281234567890"
OUR_SMS = "+6281100000001"  # the To of tests.test_twilio.sms_fields
OUR_WHATSAPP = "whatsapp:+6281100000002"
PNID, PNID_2 = "106540352242922", "106540352242923"
WA_SECRET = "rahasia-aplikasi-meta"
PORTAL_SECRET = "rahasia-portal-pengaduan"
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # Monday 10:00 WITA

smtp_server = smtp.smtp_server  # the fixture: a real SMTP server on loopback
INDONESIAN_ACK = "Pengaduan Anda telah kami terima dan dicatat dengan nomor"
ENGLISH_ACK = "We have received your complaint and recorded it under number"
TWILIO_URL = "https://omni.example.go.id/webhooks/sms"
FORM = "application/x-www-form-urlencoded"


# -- clocks ------------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand (``Inbox(config, clock=...)``)."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class ClockedDatetime:
    """Stands in for ``datetime`` in a module that only calls ``datetime.now(tz)``."""

    clock: Clock

    def now(self, tz: tzinfo | None = None) -> datetime:
        return self.clock().astimezone(tz)


# -- provider stand-ins ------------------------------------------------------------------------


@dataclass
class Provider:
    """A provider's API on loopback (a :class:`StandIn`) and the answers it gave, in order."""

    api: StandIn
    answers: list[Any] = field(default_factory=list)

    @property
    def requests(self) -> list[Request]:
        return self.api.requests

    @property
    def url(self) -> str:
        return self.api.base_url

    def forms(self) -> list[dict[str, str]]:
        """The form of every request (Twilio), one value per field."""
        return [{k: v[0] for k, v in r.form().items()} for r in self.requests]


def _provider(answer: Callable[[StandIn, Request], Answer]) -> Iterator[Provider]:
    provider = Provider(StandIn(answer))

    def recorded(api: StandIn, request: Request) -> Answer:
        status, headers, payload = answer(api, request)
        provider.answers.append(payload)
        return status, headers, payload

    provider.api.default = recorded
    with serve_wsgi(provider.api) as url:
        provider.api.base_url = url
        yield provider


@pytest.fixture(scope="module")
def twilio_server() -> Iterator[Provider]:
    yield from _provider(twilio_answer)


@pytest.fixture(scope="module")
def graph_server() -> Iterator[Provider]:
    yield from _provider(graph_answer)


def _fresh(provider: Provider) -> Provider:
    provider.api.requests.clear()
    provider.api.script.clear()
    provider.answers.clear()
    return provider


@pytest.fixture
def twilio(twilio_server: Provider) -> Provider:
    """Twilio's Messages API (one server for the module), with nothing received yet."""
    return _fresh(twilio_server)


@pytest.fixture
def graph(graph_server: Provider) -> Provider:
    """The Graph API's messages endpoint (one server for the module), nothing received yet."""
    return _fresh(graph_server)


# -- configuration -----------------------------------------------------------------------------


def files_connector(tmp_path: Path) -> dict[str, Any]:
    return {"name": "files", "type": "files", "path": str(tmp_path / "drop")}


def twilio_connector(api: Provider, **options: Any) -> dict[str, Any]:
    return {
        "name": "sms",
        "type": "twilio",
        "account_sid": ACCOUNT,
        "auth_token": AUTH_TOKEN,
        "api_base_url": api.url,
        "mode": "webhook",
        "ack": "outbox",
        **options,
    }


def whatsapp_connector(api: Provider, **options: Any) -> dict[str, Any]:
    return {
        "name": "wa",
        "type": "whatsapp-cloud",
        "app_secret": WA_SECRET,
        "verify_token": "token-verifikasi",
        "access_token": ACCESS_TOKEN,
        "phone_number_ids": [PNID, PNID_2],
        "graph_api_url": api.url,
        **options,
    }


def smtp_section(server: SmtpServer) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "from": FROM, "timeout": 10}


def make_inbox(
    url: str,
    *,
    connectors: list[dict[str, Any]],
    smtp: SmtpServer | None = None,
    clock: Callable[[], datetime] | None = None,
    **sections: Any,
) -> Inbox:
    """An inbox on ``url`` with these connectors, [smtp] pointing at ``smtp``, and a short
    backoff so that a retry is due one clock minute later."""
    data: dict[str, Any] = {
        "database": {"url": url},
        "connectors": connectors,
        "outbox": {"backoff": 1, "backoff_max": 2},
        **sections,
    }
    if smtp is not None:
        data["smtp"] = smtp_section(smtp)
    config = parse_config(data)
    return Inbox(config, clock=clock) if clock is not None else Inbox(config)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'omnichannel.db'}"


# -- what comes in -----------------------------------------------------------------------------


def eml(
    text: str,
    *,
    subject: str | None = "Lampu jalan mati",
    sender: str = f"Budi Santoso <{CITIZEN_MAIL}>",
    message_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[str | None, bytes]:
    """A citizen's mail to us: its Message-ID (a fresh one unless given; None for none) and
    its bytes."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = f"Pengaduan DPMPTSP <{OUR_MAIL}>"
    if subject is not None:
        mail["Subject"] = subject
    mail["Date"] = "Mon, 30 Nov 2026 09:55:00 +0800"
    if message_id is None:
        message_id = make_msgid(domain="mail.example.com")
    if message_id:
        mail["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(text)
    return message_id or None, bytes(mail)


def mail_in(inbox: Inbox, folder: Path, data: bytes) -> ReceiveResult:
    """Ingest one mail as an ``.eml`` file through the ``files`` connector."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mail-{len(list(folder.iterdir())):03d}.eml"
    path.write_bytes(data)
    [filed] = list(inbox.ingest_files("files", [path]))
    assert filed.result is not None, filed.error
    return filed.result


def twilio_post(inbox: Inbox, n: int, body: str, **fields: str) -> WebhookResponse:
    """A signed Twilio webhook (SMS unless ``From``/``To`` say ``whatsapp:``); the answer."""
    form = sms_fields(n, body, AccountSid=ACCOUNT, **fields)
    signature = twilio_signature(TWILIO_URL, form, AUTH_TOKEN)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": signature}
    request = WebhookRequest.build("POST", TWILIO_URL, headers, urlencode(form).encode())
    response = post_webhook(inbox, "sms", request)
    assert response.status == 200, response.body
    return response


def twilio_in(inbox: Inbox, n: int, body: str, **fields: str) -> ReceiveResult:
    """A signed Twilio webhook, filed: its result."""
    results = twilio_post(inbox, n, body, **fields).results
    assert results is not None
    [result] = results
    return result


def twiml_texts(response: WebhookResponse) -> list[str]:
    """The ``<Message>`` texts of a TwiML answer."""
    assert response.content_type.startswith("text/xml")
    return [m.text or "" for m in ET.fromstring(response.body).iter("Message")]


def wa_envelope(
    wamid: str, text: str, *, context: str | None = None, pnid: str = PNID
) -> dict[str, Any]:
    """A Meta webhook notification carrying one text message from the citizen."""
    message: dict[str, Any] = {
        "from": CITIZEN_WA_ID,
        "id": wamid,
        "timestamp": "1796000000",
        "type": "text",
        "text": {"body": text},
    }
    if context is not None:
        message["context"] = {"from": "6281100001111", "id": context}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281100001111", "phone_number_id": pnid},
        "contacts": [{"profile": {"name": "Siti Rahmah"}, "wa_id": CITIZEN_WA_ID}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }


def whatsapp_in(
    inbox: Inbox, wamid: str, text: str, *, context: str | None = None, pnid: str = PNID
) -> ReceiveResult:
    """A signed Meta webhook with one message, filed."""
    body = json.dumps(wa_envelope(wamid, text, context=context, pnid=pnid)).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(body, WA_SECRET),
    }
    url = "https://omni.example.go.id/webhooks/wa"
    response = post_webhook(inbox, "wa", WebhookRequest.build("POST", url, headers, body))
    assert response.status == 200, response.body
    assert response.results is not None
    [result] = response.results
    return result


def portal_in(inbox: Inbox, form: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    """The portal's signed form post (Standard Webhooks); its JSON answer."""
    body = json.dumps(form).encode()
    headers = {
        "Content-Type": "application/json",
        **standard_webhooks_headers(PORTAL_SECRET, body, webhook_id=webhook_id),
    }
    url = "https://omni.example.go.id/webhooks/portal"
    response = post_webhook(inbox, "portal", WebhookRequest.build("POST", url, headers, body))
    assert response.status == 200, response.body
    answer: dict[str, Any] = json.loads(response.body)
    return answer


# -- what went out -----------------------------------------------------------------------------


def rows(inbox: Inbox) -> list[OutboxRow]:
    """Every outbox row, oldest first."""
    found, more = inbox.outbox.list(limit=500)
    assert not more
    return sorted(found, key=lambda r: r.id)


def citizen_rows(inbox: Inbox) -> list[tuple[str, str, str, int]]:
    """``(kind, target, status, attempts)`` of every citizen row, oldest first."""
    return [(r.kind, r.target, r.status, r.attempts) for r in rows(inbox) if r.kind != "forward"]


def text_of(received: Received) -> str:
    """The body of a received mail, its CRLF line ends read as ``\\n``."""
    content = received.message.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def outbound_of(inbox: Inbox, key: int | str | None) -> list[tuple[str, str, str]]:
    """``(kind, via, to)`` of what the complaint lists under ``outbound``."""
    assert key is not None
    complaint = inbox.complaint(key)
    assert complaint is not None
    return [(o.kind, o.via, o.to) for o in complaint.outbound]


def provider_ids(inbox: Inbox) -> list[str | None]:
    """``outbound_messages.provider_id`` of everything sent, oldest first."""
    with inbox.store.transaction() as conn:
        query = sa.select(outbound_messages.c.provider_id).order_by(outbound_messages.c.id)
        return list(conn.execute(query).scalars())


# == 1. e-mail acknowledgements =================================================================


def test_an_email_complaint_is_acknowledged_by_smtp_threaded_and_marked_automatic(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A complaint mail (an ``.eml`` through the files connector) gets one acknowledgement
    from the outbox worker, received by the SMTP server: to the citizen, from our address,
    ``In-Reply-To`` the complaint's Message-ID and ``References`` its thread, marked
    ``Auto-Submitted: auto-replied`` and ``X-Auto-Response-Suppress: All``, the ticket in
    the subject and the Indonesian body. The row ends ``sent`` after one attempt and the
    complaint lists the text under ``outbound``."""
    with make_inbox(
        database_url, connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        message_id, data = eml(
            "Lampu jalan di depan SD Negeri 3 Turikale sudah seminggu mati, mohon diperbaiki.",
            headers={"References": "<root-1@mail.example.com>"},
        )
        result = mail_in(inbox, tmp_path / "drop", data)
        assert result.outcome is Outcome.NEW and result.ticket
        assert inbox.outbox.drain() == {"sent": 1}
        complaint = inbox.complaint(result.ticket)
        final = citizen_rows(inbox)
    [received] = smtp_server.messages
    mail = received.message
    assert received.rcpt_tos == [CITIZEN_MAIL] and received.mail_from == OUR_MAIL
    assert mail["To"] == CITIZEN_MAIL and mail["From"] == FROM
    assert mail["In-Reply-To"] == message_id
    assert mail["References"] == f"<root-1@mail.example.com> {message_id}"
    assert mail["Auto-Submitted"] == "auto-replied"
    assert mail["X-Auto-Response-Suppress"] == "All"
    assert mail["Subject"] == f"Re: Lampu jalan mati [{result.ticket}]"
    body = text_of(received)
    assert INDONESIAN_ACK in body and result.ticket in body
    assert final == [("acknowledgement", CITIZEN_MAIL, "sent", 1)]
    assert complaint is not None
    [sent] = complaint.outbound
    assert (sent.kind, sent.via, sent.to) == ("acknowledgement", "smtp", CITIZEN_MAIL)
    assert sent.body == body.rstrip("\n")  # what went out is what is recorded


@pytest.mark.parametrize(
    ("text", "language", "expected", "subject"),
    [
        (
            "Saya sudah tiga bulan menunggu izin PBG dan belum ada kabar dari dinas.",
            None,
            INDONESIAN_ACK,
            "Pengaduan Anda",
        ),
        (
            "I have been waiting three months for my building permit and nobody answers.",
            None,
            ENGLISH_ACK,
            "Your complaint",
        ),
        ("PBG?", None, INDONESIAN_ACK, "Pengaduan Anda"),  # undetected: the default, id
        ("PBG?", "en", ENGLISH_ACK, "Your complaint"),  # undetected: the configured one
        (  # the complaint's own language wins over the configured one
            "Saya sudah tiga bulan menunggu izin PBG dan belum ada kabar dari dinas.",
            "en",
            INDONESIAN_ACK,
            "Pengaduan Anda",
        ),
    ],
    ids=["indonesian", "english", "undetected-default", "undetected-en", "indonesian-over-en"],
)
def test_the_acknowledgement_speaks_the_complaints_language(
    smtp_server: SmtpServer,
    tmp_path: Path,
    text: str,
    language: str | None,
    expected: str,
    subject: str,
) -> None:
    """The acknowledgement is in the complaint's detected language (Indonesian or English);
    when none was detected, in ``[acknowledgements] language`` (default Indonesian). A mail
    without a subject gets ``[<ticket>] Pengaduan Anda`` / ``[<ticket>] Your complaint``."""
    acks = {"language": language} if language else {}
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[files_connector(tmp_path)],
        smtp=smtp_server,
        acknowledgements=acks,
    ) as inbox:
        result = mail_in(inbox, tmp_path / "drop", eml(text, subject=None)[1])
        inbox.outbox.drain()
    [received] = smtp_server.messages
    assert expected in text_of(received) and f"{result.ticket}" in text_of(received)
    assert received.message["Subject"] == f"[{result.ticket}] {subject}"


def test_complaints_show_and_export_list_what_was_sent(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """``complaints show --format json`` and ``complaints export`` carry the acknowledgement
    under ``outbound`` (kind, via, to, body, sent_at), and the exported line is valid against
    the shipped complaint.schema.json."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        "\n".join(
            [
                "[database]",
                f'url = "{sqlite_url(tmp_path)}"',
                "[smtp]",
                f'host = "{smtp_server.host}"',
                f"port = {smtp_server.port}",
                f'from = "{FROM}"',
                "[[connectors]]",
                'name = "files"',
                'type = "files"',
                f'path = "{tmp_path / "drop"}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    with Inbox.from_config(config) as inbox:
        text = "Pungutan liar di loket perizinan, petugas meminta uang tambahan."
        result = mail_in(inbox, tmp_path / "drop", eml(text)[1])
        inbox.outbox.drain()
    runner = CliRunner()
    shown = runner.invoke(
        main,
        ["--config", str(config), "complaints", "show", str(result.ticket), "--format", "json"],
    )
    exported = runner.invoke(main, ["--config", str(config), "complaints", "export"])
    assert shown.exit_code == 0 and exported.exit_code == 0, shown.output + exported.output
    [line] = exported.stdout.splitlines()
    for data in (json.loads(shown.stdout), json.loads(line)):
        [sent] = data["outbound"]
        assert (sent["kind"], sent["via"], sent["to"]) == ("acknowledgement", "smtp", CITIZEN_MAIL)
        assert str(result.ticket) in sent["body"] and sent["sent_at"].endswith("Z")
    schema = json.loads((FOLDER / "complaint.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(json.loads(line), schema, format_checker=jsonschema.FormatChecker())


# == 2. nothing for what must not be answered ===================================================

DSN = (Path(__file__).parent / "testdata" / "email" / "dsn-message-rfc822.eml").read_bytes()


def automatic_mails() -> list[Any]:
    text = "Terima kasih atas pesan Anda. Saya sedang cuti sampai 7 Desember 2026."
    return [
        pytest.param(eml(text, headers={"Auto-Submitted": "auto-replied"})[1], id="auto-submitted"),
        pytest.param(eml(text, subject="Out of Office: Lampu jalan mati")[1], id="out-of-office"),
        pytest.param(DSN, id="dsn-bounce"),
        pytest.param(
            eml(
                "Pesan Anda tidak dapat dikirim ke penerima.",
                sender="MAILER-DAEMON@mx.example.com",
            )[1],
            id="mailer-daemon",
        ),
        pytest.param(
            eml(
                "Tagihan retribusi Anda bulan ini sudah terbit, silakan dibayar.",
                sender="Bank Daerah <noreply@bank.example.co.id>",
            )[1],
            id="noreply",
        ),
    ]


@pytest.mark.parametrize("data", automatic_mails())
def test_automatic_mail_and_unreadable_senders_get_no_acknowledgement(
    smtp_server: SmtpServer, tmp_path: Path, data: bytes
) -> None:
    """An auto-reply (``Auto-Submitted``, an "Out of Office" subject), a bounce (DSN), and a
    mail from ``mailer-daemon@`` or ``noreply@`` get no acknowledgement and no outbox row,
    while a citizen's mail filed beside it does (the server is there to receive it)."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        control = mail_in(inbox, tmp_path / "drop", eml("Jalan di depan pasar berlubang.")[1])
        mail_in(inbox, tmp_path / "drop", data)
        inbox.outbox.drain()
        final = citizen_rows(inbox)
    assert final == [("acknowledgement", CITIZEN_MAIL, "sent", 1)]
    assert [m.rcpt_tos for m in smtp_server.messages] == [[CITIZEN_MAIL]]
    assert str(control.ticket) in text_of(smtp_server.messages[0])


def test_a_bounce_of_our_acknowledgement_joins_the_complaint_and_is_not_answered(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Our acknowledgement bounces (a DSN quoting its Message-ID): the bounce is ``ignored``
    but linked to the complaint it belongs to, and nothing is sent in answer to it — no
    mail loop."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        result = mail_in(inbox, tmp_path / "drop", eml("Trotoar rusak di Jalan Poros.")[1])
        inbox.outbox.drain()
        [ack] = smtp_server.messages
        ours = str(ack.message["Message-ID"])
        bounce = DSN.replace(b"<ack-ADU-2026-000152@dpmptsp.example.go.id>", ours.encode())
        assert bounce != DSN
        bounced = mail_in(inbox, tmp_path / "drop", bounce)
        assert inbox.outbox.drain() == {}
        final = citizen_rows(inbox)
    assert bounced.outcome is Outcome.IGNORED
    assert bounced.complaint_id == result.complaint_id
    assert final == [("acknowledgement", CITIZEN_MAIL, "sent", 1)]
    assert len(smtp_server.messages) == 1


def test_an_anonymous_web_complaint_is_not_answered_unless_it_asks(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Three signed portal forms with an e-mail address: the plain one is acknowledged, the
    anonymous one is not (no row, no mail), the anonymous one that ticks ``contact_ok`` is."""
    portal = {"name": "portal", "type": "web", "secret": PORTAL_SECRET}
    with make_inbox(sqlite_url(tmp_path), connectors=[portal], smtp=smtp_server) as inbox:
        base = {"name": "Andi", "subject": "Calo di loket"}
        plain = portal_in(
            inbox,
            base | {"email": "andi@example.id", "message": "Ada calo di loket KTP."},
            "msg_1",
        )
        portal_in(
            inbox,
            base
            | {"email": "rahasia@example.id", "message": "Pungli di loket.", "anonymous": True},
            "msg_2",
        )
        asked = portal_in(
            inbox,
            base
            | {
                "email": "mau.dijawab@example.id",
                "message": "Petugas meminta uang.",
                "anonymous": True,
                "contact_ok": True,
            },
            "msg_3",
        )
        inbox.outbox.drain()
        final = citizen_rows(inbox)
    assert [(kind, to, status) for kind, to, status, _ in final] == [
        ("acknowledgement", "andi@example.id", "sent"),
        ("acknowledgement", "mau.dijawab@example.id", "sent"),
    ]
    received = {m.rcpt_tos[0]: text_of(m) for m in smtp_server.messages}
    assert sorted(received) == ["andi@example.id", "mau.dijawab@example.id"]
    assert plain["ticket"] in received["andi@example.id"]
    assert asked["ticket"] in received["mau.dijawab@example.id"]


def test_no_acknowledgement_or_notification_when_they_are_off(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """With ``[acknowledgements] enabled = false`` a complaint mail gets no acknowledgement
    and its resolution no notification; a team member's reply still goes out."""
    with make_inbox(
        database_url,
        connectors=[files_connector(tmp_path)],
        smtp=smtp_server,
        acknowledgements={"enabled": False},
    ) as inbox:
        result = mail_in(inbox, tmp_path / "drop", eml("Sampah menumpuk di pasar sentral.")[1])
        assert result.outcome is Outcome.NEW and result.complaint_id
        assert inbox.outbox.drain() == {}
        inbox.queue.reply(result.complaint_id, "Sudah kami teruskan ke DLH.", actor="ani")
        inbox.queue.resolve(result.complaint_id, actor="ani", note="Sudah diangkut.")
        assert inbox.outbox.drain() == {"sent": 1}
        final = citizen_rows(inbox)
    assert final == [("reply", CITIZEN_MAIL, "sent", 1)]
    [reply] = smtp_server.messages
    assert text_of(reply).startswith("Sudah kami teruskan ke DLH.")


# == 3. the daily limit =========================================================================


def test_the_daily_limit_skips_the_third_acknowledgement_until_the_next_day(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """``daily_limit = 2``: three new complaints from one address on one day get two
    acknowledgements; the third row is ``skipped`` saying why, and nothing more reaches the
    server. The next day (the clock moved) a new complaint from that address is acknowledged
    again, and ``outbox retry`` of the skipped row sends it."""
    clock = Clock()
    with make_inbox(
        database_url,
        connectors=[files_connector(tmp_path)],
        smtp=smtp_server,
        clock=clock,
        acknowledgements={"daily_limit": 2},
    ) as inbox:
        texts = [
            "Lampu jalan di Jalan Poros Maros mati.",
            "Saluran air di depan pasar tersumbat.",
            "Petugas loket KTP datang terlambat setiap hari.",
        ]
        day_one = [mail_in(inbox, tmp_path / "drop", eml(t, subject=t)[1]) for t in texts]
        assert inbox.outbox.drain() == {"sent": 2, "skipped": 1}
        first = rows(inbox)
        assert len(smtp_server.messages) == 2
        clock.advance(days=1)
        later = mail_in(inbox, tmp_path / "drop", eml("Jembatan kayu di desa rapuh.")[1])
        assert inbox.outbox.drain() == {"sent": 1}
        [skipped] = [r for r in first if r.status == "skipped"]
        assert inbox.outbox.retry(skipped.id) == 1
        assert inbox.outbox.drain() == {"sent": 1}
        final = citizen_rows(inbox)
    assert [(r.status, r.last_error) for r in first] == [
        ("sent", None),
        ("sent", None),
        ("skipped", "daily limit of 2 reached for this address"),
    ]
    assert skipped.complaint_id == day_one[2].complaint_id
    assert [status for _, _, status, _ in final] == ["sent"] * 4
    tickets = [m.message["Subject"] for m in smtp_server.messages]
    assert [
        str(r.ticket) in s for r, s in zip([*day_one[:2], later, day_one[2]], tickets, strict=True)
    ] == [True] * 4


# == 4. Twilio: SMS and WhatsApp ================================================================


@pytest.mark.parametrize(
    ("fields", "to", "sender"),
    [
        ({}, CITIZEN, OUR_SMS),
        (
            {"From": f"whatsapp:{CITIZEN}", "To": OUR_WHATSAPP},
            f"whatsapp:{CITIZEN}",
            OUR_WHATSAPP,
        ),
    ],
    ids=["sms", "whatsapp"],
)
def test_a_twilio_message_is_acknowledged_from_the_number_written_to(
    database_url: str,
    twilio: Provider,
    fields: dict[str, str],
    to: str,
    sender: str,
) -> None:
    """A signed Twilio webhook (``ack = "outbox"``): the outbox worker POSTs to the
    account's Messages.json with ``To`` the citizen, ``From`` the number the citizen wrote to
    (``whatsapp:`` on both ends for WhatsApp) and a ``Body`` with the ticket; the row ends
    ``sent`` and the complaint lists it."""
    with make_inbox(database_url, connectors=[twilio_connector(twilio)]) as inbox:
        result = twilio_in(inbox, 1, "Lampu jalan di depan rumah saya mati sejak Senin.", **fields)
        assert result.outcome is Outcome.NEW
        assert inbox.outbox.drain() == {"sent": 1}
        listed = outbound_of(inbox, result.complaint_id)
        final = citizen_rows(inbox)
        recorded = provider_ids(inbox)
    [request] = twilio.requests
    assert (request.method, request.path) == ("POST", MESSAGES_PATH)
    [form] = twilio.forms()
    assert (form["To"], form["From"]) == (to, sender)
    assert str(result.ticket) in form["Body"] and form["Body"].startswith("Terima kasih.")
    assert final == [("acknowledgement", CITIZEN, "sent", 1)]
    assert listed == [("acknowledgement", "sms", CITIZEN)]
    assert recorded == [twilio.answers[0]["sid"]]  # the SID Twilio gave it


@pytest.mark.parametrize("sender", ["TELKOMSEL", "+62123"], ids=["alphanumeric", "short-code"])
def test_an_operator_name_or_short_code_gets_no_acknowledgement(
    twilio: Provider, tmp_path: Path, sender: str
) -> None:
    """An SMS from an alphanumeric sender or a short code is filed but not answered: no row,
    no request to Twilio — while a citizen's SMS beside it is."""
    with make_inbox(sqlite_url(tmp_path), connectors=[twilio_connector(twilio)]) as inbox:
        twilio_in(inbox, 1, "Jalan di depan sekolah berlubang besar.")
        operator = twilio_in(inbox, 2, "Promo paket data 10GB hanya Rp10.000!", From=sender)
        inbox.outbox.drain()
        final = citizen_rows(inbox)
    assert operator.outcome is Outcome.NEW  # filed for the team, only not answered
    assert final == [("acknowledgement", CITIZEN, "sent", 1)]
    assert [f["To"] for f in twilio.forms()] == [CITIZEN]


# == 5. WhatsApp Cloud ==========================================================================


def test_a_whatsapp_cloud_message_is_acknowledged_quoting_it_from_the_number_written_to(
    database_url: str, graph: Provider
) -> None:
    """A signed Meta webhook for our second number: the outbox worker POSTs a text message to
    the citizen's wa_id from that ``phone_number_id``, quoting the citizen's wamid
    (``context.message_id``), with the ticket; the wamid Meta gave it is recorded."""
    with make_inbox(database_url, connectors=[whatsapp_connector(graph)]) as inbox:
        result = whatsapp_in(
            inbox, "wamid.HBgNIN0001", "Izin PBG saya sudah 3 bulan belum terbit.", pnid=PNID_2
        )
        assert result.outcome is Outcome.NEW
        assert inbox.outbox.drain() == {"sent": 1}
        listed = outbound_of(inbox, result.complaint_id)
        recorded = provider_ids(inbox)
    [request] = graph.requests
    assert (request.method, request.path) == ("POST", f"/v21.0/{PNID_2}/messages")
    sent = request.json()
    assert (sent["to"], sent["type"]) == (CITIZEN_WA_ID, "text")
    assert sent["context"] == {"message_id": "wamid.HBgNIN0001"}
    assert str(result.ticket) in sent["text"]["body"]
    assert listed == [("acknowledgement", "wa", CITIZEN)]
    assert recorded == [graph.answers[0]["messages"][0]["id"]]


def test_outside_the_24_hour_window_whatsapp_gets_the_template(
    graph: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One clock for the inbox and the connector: the acknowledgement right after the
    citizen wrote is a text; the resolution 25 hours later, outside WhatsApp's window, is the
    configured template with the ticket as its parameter, from the number written to."""
    clock = Clock()
    monkeypatch.setattr(connectors.whatsapp_cloud, "datetime", ClockedDatetime(clock))
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[whatsapp_connector(graph, template_name="status_pengaduan")],
        clock=clock,
    ) as inbox:
        result = whatsapp_in(inbox, "wamid.HBgNIN0002", "Jalan desa kami rusak parah.", pnid=PNID_2)
        assert result.complaint_id is not None
        assert inbox.outbox.drain() == {"sent": 1}
        clock.advance(hours=25)
        inbox.queue.resolve(result.complaint_id, actor="ani", note="Sudah ditambal.")
        assert inbox.outbox.drain() == {"sent": 1}
        final = citizen_rows(inbox)
    ack, late = (r.json() for r in graph.requests)
    assert ack["type"] == "text" and str(result.ticket) in ack["text"]["body"]
    assert graph.requests[1].path == f"/v21.0/{PNID_2}/messages"
    assert late == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": CITIZEN_WA_ID,
        "type": "template",
        "template": {
            "name": "status_pengaduan",
            "language": {"code": "id"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": result.ticket}]}
            ],
        },
    }
    assert final == [
        ("acknowledgement", CITIZEN, "sent", 1),
        ("notification", CITIZEN, "sent", 1),
        ("survey", CITIZEN, "pending", 0),  # due an hour after the resolution
        ("survey.reminder", CITIZEN, "pending", 0),
    ]


# == 6. Gammu SMSD ==============================================================================


def gateway_outbox(gateway: Gateway) -> list[dict[str, Any]]:
    """Every row of the gateway's ``outbox`` table (all columns), by ID."""
    table = sa.table("outbox", sa.column("ID"))
    query: sa.Select[Any] = (
        sa.select(sa.literal_column("*")).select_from(table).order_by(table.c["ID"])
    )
    with gateway.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


@pytest.mark.parametrize("kind", ["sqlite-18", "mariadb-18", "mariadb-17"])
def test_an_sms_read_from_a_gammu_gateway_is_acknowledged_through_its_outbox(
    request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    """An SMS that Gammu SMSD stored (local number format) is polled and filed; its
    acknowledgement is a row in that gateway's ``outbox``: ``DestinationNumber`` the citizen
    in E.164, ``TextDecoded`` with the ticket, ``CreatorID`` the delivery id
    (``ack-<complaint id>``); the gateway's row ID is what the complaint records."""
    gateway = open_gateway(request, kind, tmp_path)
    modem = {
        "name": "modem",
        "type": "gammu",
        "url": gateway.url,
        "gateway_timezone": "Asia/Makassar",
    }
    try:
        with make_inbox(sqlite_url(tmp_path), connectors=[modem]) as inbox:
            gateway.deliver(sms("081234567890", "Lampu jalan di depan SD 3 mati sudah seminggu."))
            [result] = inbox.poll("modem")
            assert result.outcome is Outcome.NEW
            assert inbox.outbox.drain() == {"sent": 1}
            recorded = provider_ids(inbox)
            listed = outbound_of(inbox, result.complaint_id)
        [row] = gateway_outbox(gateway)
    finally:
        gateway.dispose()
    assert row["DestinationNumber"] == CITIZEN
    assert str(result.ticket) in row["TextDecoded"]
    assert row["CreatorID"] == f"ack-{result.complaint_id}"
    assert recorded == [str(row["ID"])]
    assert listed == [("acknowledgement", "modem", CITIZEN)]


# == 7. web forms ===============================================================================


def test_a_web_form_is_answered_by_mail_or_by_sms_through_the_configured_connector(
    database_url: str, smtp_server: SmtpServer, twilio: Provider
) -> None:
    """A portal form with an e-mail address is acknowledged by SMTP (nothing to thread on);
    one with only a phone number, with ``[acknowledgements] sms_connector`` naming a Twilio
    connector, by SMS from that connector's ``from_number``."""
    portal = {"name": "portal", "type": "web", "secret": PORTAL_SECRET}
    with make_inbox(
        database_url,
        connectors=[portal, twilio_connector(twilio, from_number=OUR_SMS)],
        smtp=smtp_server,
        acknowledgements={"sms_connector": "sms"},
    ) as inbox:
        by_mail = portal_in(
            inbox,
            {"email": "andi@example.id", "message": "Ada calo di loket KTP.", "subject": "Calo"},
            "msg_1",
        )
        by_phone = portal_in(
            inbox, {"phone": "0812-3456-7890", "message": "Jalan rusak di Bontoa."}, "msg_2"
        )
        assert inbox.outbox.drain() == {"sent": 2}
        final = citizen_rows(inbox)
    assert final == [
        ("acknowledgement", "andi@example.id", "sent", 1),
        ("acknowledgement", CITIZEN, "sent", 1),
    ]
    [mail] = smtp_server.messages
    assert mail.rcpt_tos == ["andi@example.id"] and by_mail["ticket"] in text_of(mail)
    assert by_mail["ticket"] in mail.message["Subject"]
    assert mail.message["In-Reply-To"] is None and mail.message["Auto-Submitted"] == "auto-replied"
    [form] = twilio.forms()
    assert (form["To"], form["From"]) == (CITIZEN, OUR_SMS)
    assert by_phone["ticket"] in form["Body"]


# == 8. status changes and replies ==============================================================


def test_resolving_rejecting_and_replying_reach_the_citizen_by_mail(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """On an e-mail complaint, ``resolve`` (with a note) and ``reject`` (with a reason) send a
    notification each — threaded, ``Auto-Submitted: auto-generated``, the ticket and the note
    or reason in it; ``queue reply`` sends the team member's text threaded on the citizen's
    mail and *without* ``Auto-Submitted``/``X-Auto-Response-Suppress``: a person wrote it."""
    with make_inbox(
        database_url, connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        first_id, first_mail = eml("Lampu jalan mati di Jalan Poros.", subject="Lampu mati")
        other_id, other_mail = eml(
            "Tetangga saya membangun pagar di atas saluran.",
            subject="Pagar di atas saluran",
            sender="Siti <siti@example.id>",
        )
        first = mail_in(inbox, tmp_path / "drop", first_mail)
        other = mail_in(inbox, tmp_path / "drop", other_mail)
        assert first.complaint_id and other.complaint_id
        inbox.outbox.drain()
        smtp_server.reset()
        inbox.queue.reply(first.complaint_id, "Mohon kirim foto lokasinya, Pak.", actor="ani")
        inbox.queue.resolve(first.complaint_id, actor="ani", note="Lampu sudah diganti.")
        inbox.queue.reject(other.complaint_id, actor="ani", reason="Bukan kewenangan kami.")
        assert inbox.outbox.drain() == {"sent": 3}
        listed = outbound_of(inbox, first.complaint_id)
    reply, resolved, rejected = smtp_server.messages
    assert reply.rcpt_tos == resolved.rcpt_tos == [CITIZEN_MAIL]
    assert rejected.rcpt_tos == ["siti@example.id"]
    assert reply.message["In-Reply-To"] == resolved.message["In-Reply-To"] == first_id
    assert rejected.message["In-Reply-To"] == other_id
    assert reply.message["Auto-Submitted"] is None
    assert reply.message["X-Auto-Response-Suppress"] is None
    assert text_of(reply).startswith("Mohon kirim foto lokasinya, Pak.")
    for note, ticket in ((resolved, first.ticket), (rejected, other.ticket)):
        assert note.message["Auto-Submitted"] == "auto-generated"
        assert note.message["X-Auto-Response-Suppress"] == "All"
        assert str(ticket) in note.message["Subject"] and str(ticket) in text_of(note)
    assert str(first.ticket) in text_of(reply) and str(first.ticket) in reply.message["Subject"]
    assert "selesai" in text_of(resolved) and "Lampu sudah diganti." in text_of(resolved)
    assert "Alasan: Bukan kewenangan kami." in text_of(rejected)
    assert listed == [
        ("acknowledgement", "smtp", CITIZEN_MAIL),
        ("reply", "smtp", CITIZEN_MAIL),
        ("notification", "smtp", CITIZEN_MAIL),
    ]


def test_a_resolution_goes_back_on_the_sms_channel_the_complaint_came_on(
    database_url: str, twilio: Provider
) -> None:
    """A Twilio SMS complaint's resolution is an SMS to the citizen, from the number the
    citizen wrote to, with the ticket and the note (in English for an English complaint)."""
    with make_inbox(database_url, connectors=[twilio_connector(twilio)]) as inbox:
        result = twilio_in(inbox, 1, "The street light in front of my house has been off for days.")
        assert result.complaint_id is not None
        inbox.outbox.drain()
        inbox.queue.resolve(result.complaint_id, actor="ani", note="The lamp was replaced.")
        assert inbox.outbox.drain() == {"sent": 1}
    ack, resolved = twilio.forms()
    assert (resolved["To"], resolved["From"]) == (CITIZEN, OUR_SMS)
    assert (
        resolved["Body"]
        == f"Your complaint {result.ticket} has been resolved. The lamp was replaced."
    )
    assert ack["Body"].startswith("Thank you.")


# == 9. the citizen's answer threads back ========================================================


def test_an_email_answering_our_reply_joins_the_complaint(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """The citizen answers our reply (``In-Reply-To`` its Message-ID, read from what the SMTP
    server received) under a new subject without the ticket: the mail is ``merged`` into the
    complaint and not acknowledged again. The same mail without ``In-Reply-To`` would have
    been a new complaint."""
    with make_inbox(
        database_url, connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        result = mail_in(inbox, tmp_path / "drop", eml("Lampu jalan mati di Jalan Poros.")[1])
        assert result.complaint_id is not None
        inbox.outbox.drain()
        inbox.queue.reply(result.complaint_id, "Di nomor berapa, Pak?", actor="ani")
        inbox.outbox.drain()
        ours = str(smtp_server.messages[-1].message["Message-ID"])
        answer = mail_in(
            inbox,
            tmp_path / "drop",
            eml(
                "Di depan rumah nomor 12, dekat masjid.",
                subject="Lokasi",
                headers={"In-Reply-To": ours},
            )[1],
        )
        unthreaded = mail_in(
            inbox,
            tmp_path / "drop",
            eml("Di depan rumah nomor 14, dekat pasar.", subject="Lokasi")[1],
        )
        inbox.outbox.drain()
        complaint = inbox.complaint(result.complaint_id)
    assert answer.outcome is Outcome.MERGED and answer.complaint_id == result.complaint_id
    assert unthreaded.outcome is Outcome.NEW
    assert complaint is not None and len(complaint.messages) == 2
    assert [o.kind for o in complaint.outbound] == ["acknowledgement", "reply"]
    # the ack of the complaint, the reply, and the ack of the unthreaded mail only
    assert len(smtp_server.messages) == 3


def test_a_whatsapp_message_quoting_our_reply_joins_that_complaint(
    database_url: str, graph: Provider
) -> None:
    """Two complaints from one WhatsApp number, each replied to (B's reply first, then A's).
    A message quoting (``context.id``) the wamid the Graph stand-in gave B's reply is
    ``merged`` into B; one quoting nothing joins the complaint answered last (A)."""
    with make_inbox(database_url, connectors=[whatsapp_connector(graph)]) as inbox:
        a = whatsapp_in(inbox, "wamid.IN-A", "Lampu jalan di Jalan Poros mati.")
        b = whatsapp_in(inbox, "wamid.IN-B", "Ada pungli di kantor kelurahan.")
        assert a.outcome is b.outcome is Outcome.NEW
        assert a.complaint_id and b.complaint_id
        assert inbox.outbox.drain() == {"sent": 2}
        inbox.queue.reply(b.complaint_id, "Siapa nama petugasnya?", actor="ani")
        assert inbox.outbox.drain() == {"sent": 1}
        b_reply = graph.answers[-1]["messages"][0]["id"]
        inbox.queue.reply(a.complaint_id, "Di nomor berapa?", actor="ani")
        assert inbox.outbox.drain() == {"sent": 1}
        quoting = whatsapp_in(inbox, "wamid.IN-C", "Namanya Pak Ahmad.", context=b_reply)
        plain = whatsapp_in(inbox, "wamid.IN-D", "Nomor 12, dekat masjid.")
    assert graph.requests[2].json()["text"]["body"].startswith("Siapa nama petugasnya?")
    assert quoting.outcome is Outcome.MERGED and quoting.complaint_id == b.complaint_id
    assert plain.outcome is Outcome.MERGED and plain.complaint_id == a.complaint_id


def test_an_sms_after_a_team_reply_joins_the_complaint(database_url: str, twilio: Provider) -> None:
    """Before anyone on the team answered, another text from the same number is a ``new``
    complaint (and acknowledged). After ``queue reply`` on the first one (sent through
    Twilio), the citizen's next SMS — no thread, no ticket — is ``merged`` into it."""
    with make_inbox(database_url, connectors=[twilio_connector(twilio)]) as inbox:
        first = twilio_in(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        other = twilio_in(inbox, 2, "Ada pungli di kantor kelurahan.")
        assert first.complaint_id is not None
        inbox.outbox.drain()
        inbox.queue.reply(first.complaint_id, "Di nomor berapa, Pak?", actor="ani")
        inbox.outbox.drain()
        answer = twilio_in(inbox, 3, "Nomor 12, dekat masjid.")
        assert inbox.outbox.drain() == {}
        listed = outbound_of(inbox, first.complaint_id)
    assert first.outcome is other.outcome is Outcome.NEW
    assert other.complaint_id != first.complaint_id
    assert answer.outcome is Outcome.MERGED and answer.complaint_id == first.complaint_id
    bodies = [f["Body"] for f in twilio.forms()]
    assert len(bodies) == 3 and bodies[2].startswith("Di nomor berapa, Pak?")
    assert str(first.ticket) in bodies[2]
    assert listed == [("acknowledgement", "sms", CITIZEN), ("reply", "sms", CITIZEN)]


# == 10. retries ================================================================================


def test_a_451_is_retried_after_the_backoff_and_the_mail_arrives_once(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """The SMTP server answers the first DATA with 451: the row goes back to ``pending`` with
    the error, is not due again at once, and the next attempt after the backoff (the clock
    moved a minute) is accepted: one message received, the row ``sent`` after 2 attempts."""
    clock = Clock()
    smtp_server.fail_next("DATA", 451)
    with make_inbox(
        database_url, connectors=[files_connector(tmp_path)], smtp=smtp_server, clock=clock
    ) as inbox:
        result = mail_in(inbox, tmp_path / "drop", eml("Jalan berlubang di depan pasar.")[1])
        assert inbox.outbox.drain() == {"pending": 1}
        [waiting] = rows(inbox)
        assert inbox.outbox.drain() == {}  # not due before its backoff
        clock.advance(minutes=1)
        assert inbox.outbox.drain() == {"sent": 1}
        final = citizen_rows(inbox)
        listed = outbound_of(inbox, result.complaint_id)
    assert waiting.status == "pending" and waiting.attempts == 1
    assert waiting.last_error is not None and waiting.last_error.startswith("RetryableError")
    assert "451" in waiting.last_error
    assert waiting.next_attempt_at is not None and waiting.next_attempt_at > T0
    assert [c for c, _ in smtp_server.commands if c == "DATA"] == ["DATA", "DATA"]
    [received] = smtp_server.messages
    assert str(result.ticket) in text_of(received)
    assert final == [("acknowledgement", CITIZEN_MAIL, "sent", 2)]
    assert listed == [("acknowledgement", "smtp", CITIZEN_MAIL)]


# == what writing these tests found wrong (fixed) ==============================================


def test_a_mail_without_a_message_id_is_acknowledged_without_a_made_up_thread(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A citizen's mail without a Message-ID has no id to answer: the acknowledgement
    carries the ticket in its subject (threading falls back to it) and no ``In-Reply-To`` or
    ``References`` at all."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        data = eml("Petugas loket informasi membentak warga.", message_id="")[1]
        assert b"Message-ID" not in data
        result = mail_in(inbox, tmp_path / "drop", data)
        assert inbox.outbox.drain() == {"sent": 1}
    [received] = smtp_server.messages
    assert str(result.ticket) in received.message["Subject"]
    assert received.message["In-Reply-To"] is None
    assert received.message["References"] is None


@pytest.mark.parametrize(
    "sender",
    ["Apple <no_reply@email.apple.example.com>", "Pajak <do_not_reply@pajak.example.go.id>"],
    ids=["no_reply", "do_not_reply"],
)
def test_a_no_reply_mailbox_spelt_with_underscores_is_not_acknowledged(
    smtp_server: SmtpServer, tmp_path: Path, sender: str
) -> None:
    """A mail from ``no_reply@`` or ``do_not_reply@`` (a mailbox nobody reads, like
    ``noreply@``) gets no acknowledgement."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[files_connector(tmp_path)], smtp=smtp_server
    ) as inbox:
        text = "Pembayaran retribusi Anda telah kami terima. Simpan bukti ini."
        result = mail_in(inbox, tmp_path / "drop", eml(text, sender=sender)[1])
        assert result.outcome is Outcome.NEW
        inbox.outbox.drain()
        final = citizen_rows(inbox)
    assert final == []
    assert smtp_server.messages == []


def test_inline_acknowledgements_count_against_the_daily_limit(
    twilio: Provider, tmp_path: Path
) -> None:
    """``daily_limit = 2`` with ``ack = "inline"``: three new complaints by SMS from one
    number on one day — the first two answers carry the acknowledgement, the third none."""
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[twilio_connector(twilio, ack="inline")],
        acknowledgements={"daily_limit": 2},
    ) as inbox:
        texts = [
            "Lampu jalan di Jalan Poros mati.",
            "Saluran air di depan pasar tersumbat.",
            "Ada pungli di kantor kelurahan.",
        ]
        answers = [twiml_texts(twilio_post(inbox, n, t)) for n, t in enumerate(texts, 1)]
        inbox.outbox.drain()
    assert [len(texts) for texts in answers] == [1, 1, 0]
    assert twilio.requests == []


def test_an_inline_acknowledgement_is_listed_under_outbound(
    twilio: Provider, tmp_path: Path
) -> None:
    """The acknowledgement that went out in the TwiML answer is listed under the complaint's
    ``outbound`` like one the outbox sent."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio, ack="inline")]
    ) as inbox:
        response = twilio_post(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        [result] = response.results or []
        [text] = twiml_texts(response)
        assert str(result.ticket) in text
        complaint = inbox.complaint(str(result.ticket))
    assert complaint is not None
    assert [(o.kind, o.to, o.body) for o in complaint.outbound] == [
        ("acknowledgement", CITIZEN, text)
    ]


def test_an_inline_acknowledgement_speaks_the_complaints_language(
    twilio: Provider, tmp_path: Path
) -> None:
    """An English SMS gets the English acknowledgement inline, as it would from the outbox."""
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio, ack="inline")]
    ) as inbox:
        response = twilio_post(
            inbox, 1, "The street light in front of my house has been off for days."
        )
    [text] = twiml_texts(response)
    assert text.startswith("Thank you. We have received your complaint")


def test_what_is_recorded_as_sent_on_whatsapp_is_what_went_out(
    graph: Provider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A team reply 25 hours after the citizen's last message goes out as the template; the
    complaint's ``outbound`` then records the template, not the reply text that was not
    sent."""
    clock = Clock()
    monkeypatch.setattr(connectors.whatsapp_cloud, "datetime", ClockedDatetime(clock))
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[whatsapp_connector(graph, template_name="status_pengaduan")],
        clock=clock,
    ) as inbox:
        result = whatsapp_in(inbox, "wamid.HBgNIN0003", "Jalan desa kami rusak parah.")
        assert result.complaint_id is not None
        inbox.outbox.drain()
        clock.advance(hours=25)
        inbox.queue.reply(result.complaint_id, "Petugas akan datang hari Kamis.", actor="ani")
        assert inbox.outbox.drain() == {"sent": 1}
        complaint = inbox.complaint(result.complaint_id)
    assert graph.requests[-1].json()["type"] == "template"
    assert complaint is not None
    recorded = complaint.outbound[-1].body
    assert "Petugas akan datang hari Kamis." not in recorded
    assert "status_pengaduan" in recorded
