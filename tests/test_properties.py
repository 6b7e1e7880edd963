"""Property-based tests (hypothesis) of every decoder and of the HTTP app: hostile values in
real payloads, arbitrary headers and bodies.

- a decoder gives a message or its ``DecodeError`` (a webhook's ``parse`` a 4xx refusal),
  and what it gives normalizes;
- a stored payload always ends in an outcome (filed or quarantined), never in an exception or
  a row left behind;
- the HTTP app never answers 500 and never raises, whatever the headers and the body.

The inputs are the test corpus's real payloads with some values replaced by
:mod:`omnichannel.testing.hostile` (NUL, lone surrogates, 5,000-digit numbers, NaN, paths,
formulas, 70,000-character strings, deep nesting, thousands of fields); ``benchmarks/fuzz.py``
runs the same generators over 100,000 inputs per decoder.
"""

from __future__ import annotations

import io
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnichannel import DecodeError, Inbox, NormalizedMessage, Outcome, RawMessage
from omnichannel.config import default_config
from omnichannel.connector import Connector
from omnichannel.http import create_app
from omnichannel.store.tables import raw_messages
from omnichannel.testing import meta_signature, standard_webhooks_headers
from omnichannel.testing.hostile import HOSTILE_STRINGS, hostile_form, hostile_json
from omnichannel.webhook import WebhookRejected
from tests.hostile_corpus import (
    APP_SECRET,
    KINDS,
    WEB_FORM,
    WEB_JSON,
    WEB_SECRET,
    build_connectors,
    decode_for_filing,
    hostile_raws,
    whatsapp_samples,
)

EXAMPLES = 60
PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@pytest.fixture(scope="module")
def connectors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Connector]:
    return build_connectors(tmp_path_factory.mktemp("connectors"))


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1))
def test_a_decoder_gives_a_message_or_its_decode_error(
    connectors: dict[str, Connector], kind: str, seed: int
) -> None:
    """Hostile values anywhere in a real payload: the connector's ``parse`` refuses with a
    4xx, or what the filing worker does with the stored payload (decode, make storable,
    normalize) gives a message or a ``DecodeError`` (a clear quarantine) — never another
    exception."""
    connector = connectors[kind]
    try:
        raws = hostile_raws(kind, connector, random.Random(seed))
    except WebhookRejected as exc:
        assert 400 <= exc.status < 500
        return
    for raw in raws:
        try:
            message = decode_for_filing(connector, raw)
        except DecodeError:
            continue
        assert isinstance(message, NormalizedMessage)


# -- what is stored ends in an outcome ---------------------------------------------------------


@pytest.fixture(scope="module")
def store_inbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Inbox]:
    folder = tmp_path_factory.mktemp("store")
    config = default_config(url=f"sqlite:///{folder / 'omnichannel.db'}")
    with Inbox(config) as inbox:
        for connector in build_connectors(folder).values():
            inbox.add_connector(connector)
        yield inbox


def stored_state(inbox: Inbox, raw: RawMessage) -> tuple[str, str | None]:
    with inbox.store.transaction() as conn:
        row = conn.execute(
            sa.select(raw_messages.c.status, raw_messages.c.outcome).where(
                raw_messages.c.connector == raw.connector,
                raw_messages.c.external_id == raw.external_id,
            )
        ).one()
    return row.status, row.outcome


@pytest.mark.parametrize("kind", KINDS)
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1))
def test_every_stored_payload_ends_in_an_outcome(store_inbox: Inbox, kind: str, seed: int) -> None:
    """A hostile payload that was stored (as a provider webhook or a poll stores it before
    decoding) is filed or quarantined by ``receive``: an outcome, never an exception, never a
    row left ``received``."""
    connector = store_inbox.connector(kind)
    try:
        raws = hostile_raws(kind, connector, random.Random(seed))
    except WebhookRejected:
        return
    for raw in raws:
        result = store_inbox.receive(raw)
        assert result.outcome in set(Outcome)
        status, outcome = stored_state(store_inbox, raw)
        assert status in ("processed", "quarantined"), (status, outcome)
        if result.outcome is not Outcome.DUPLICATE:  # (a value repeated by another example)
            assert (status == "quarantined") == (result.outcome is Outcome.QUARANTINED)


# -- the HTTP app ------------------------------------------------------------------------------


HEADER_NAMES = [
    "Content-Type",
    "Content-Length",
    "Content-Encoding",
    "Host",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Twilio-Signature",
    "X-Hub-Signature-256",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "Authorization",
    "Transfer-Encoding",
]
PATHS = [
    "/webhooks/sms",
    "/webhooks/wa",
    "/webhooks/portal",
    "/webhooks/files",
    "/webhooks/nope",
    "/webhooks/",
    "/webhooks/%2e%2e/healthz",
    "/healthz",
    "/metrics",
    "/receipts/abcdefgh12",
    "/receipts/../../etc/passwd",
    "/",
]
ALLOWED = {200, 202, 204, 400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503}

header_value = st.one_of(
    st.sampled_from(HOSTILE_STRINGS).map(lambda s: s.encode("utf-8", "replace").decode("latin-1")),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.text(max_size=60).map(lambda s: s.encode("utf-8", "replace").decode("latin-1")),
)


def environ(
    method: str, path: str, query: str, headers: dict[str, str], body: bytes
) -> dict[str, Any]:
    """A WSGI environ as a server builds it: header values are latin-1 ``str``."""
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            env[key] = value
        else:
            env["HTTP_" + key] = value
    return env


def call(app: Callable[..., Any], env: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of the app's answer to ``env``."""
    statuses: list[str] = []
    sent: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)
        for name, value in headers:  # what a server would send must be sendable
            assert "\n" not in value and "\r" not in value, (name, value)
            value.encode("latin-1")
            sent[name.lower()] = value
        return lambda data: None

    chunks = app(env, start_response)
    body = b"".join(chunks)
    getattr(chunks, "close", lambda: None)()
    return int(statuses[0].split()[0]), sent, body


@pytest.fixture(scope="module")
def app(store_inbox: Inbox) -> Callable[..., Any]:
    return create_app(store_inbox)


@PROPERTY
@given(
    method=st.sampled_from(["POST", "GET", "PUT", "DELETE", "OPTIONS", "HEAD", "POST\x00"]),
    path=st.one_of(st.sampled_from(PATHS), st.text(max_size=40).map(lambda s: "/" + s)),
    query=st.one_of(st.just(""), header_value),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), header_value, max_size=6),
    body=st.one_of(
        st.binary(max_size=2000),
        st.sampled_from(HOSTILE_STRINGS).map(lambda s: s.encode("utf-8", "surrogatepass")),
    ),
)
def test_the_app_never_answers_500_whatever_it_is_sent(
    app: Callable[..., Any],
    method: str,
    path: str,
    query: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Arbitrary methods, paths, headers (non-ASCII, huge numbers, CRLF) and bodies: an
    answer from the contract's list, never a 500, never an exception out of the app."""
    status, _, _ = call(app, environ(method, path, query, headers, body))
    assert status in ALLOWED


@pytest.mark.parametrize("kind", ["wa", "portal"])
@PROPERTY
@given(seed=st.integers(0, 2**32 - 1))
def test_signed_hostile_bodies_are_stored_and_filed_or_refused_with_a_4xx(
    app: Callable[..., Any], store_inbox: Inbox, kind: str, seed: int
) -> None:
    """Correctly signed requests carrying hostile payloads get past ``verify``: the answer is
    2xx (stored; filed or quarantined) or a 4xx naming what is wrong, never a 500."""
    rng = random.Random(seed)
    if kind == "wa":
        body = hostile_json(rng.choice(whatsapp_samples()), rng)
        signature = meta_signature(body, APP_SECRET)
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
    else:
        json_body = rng.random() < 0.6
        body = hostile_json(WEB_JSON, rng) if json_body else hostile_form(WEB_FORM, rng)
        ctype = "application/json" if json_body else "application/x-www-form-urlencoded"
        signed = standard_webhooks_headers(WEB_SECRET, body, webhook_id=f"msg_{seed}")
        headers = {"Content-Type": ctype, **signed}
    status, _, answer = call(app, environ("POST", f"/webhooks/{kind}", "", headers, body))
    assert status in ALLOWED - {401, 403, 404, 405}, answer[:300]
    if status == 400 and kind == "portal":
        problem = json.loads(answer)
        assert set(problem) >= {"error", "field"}
    with store_inbox.store.transaction() as conn:
        left = conn.execute(
            sa.select(sa.func.count())
            .select_from(raw_messages)
            .where(raw_messages.c.status == "received", raw_messages.c.connector == kind)
        ).scalar_one()
    if kind == "portal" or status >= 400:
        assert left == 0
