"""Hostile input that is neither a header, a value out of range, a name nor a size: SQL
metacharacters in every field, script in complaint text, forged log lines, and what every
HTTP answer tells a browser."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from omnichannel import InboundMessage, Inbox, Outcome
from omnichannel.config import default_config
from omnichannel.http import create_app
from omnichannel.logs import configure_logging, one_line
from omnichannel.store.tables import metadata
from tests.test_properties import call, environ

SQL = [
    "'; DROP TABLE complaints; --",
    "x' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM messages",
    "%' UNION SELECT payload FROM raw_messages --",
    "\\'; SELECT pg_sleep(5); --",
]
SCRIPT = '<script>alert("xss")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def box(database_url: str) -> Iterator[Inbox]:
    with Inbox(default_config(url=database_url)) as inbox:
        yield inbox


def hostile_message(n: int, value: str) -> InboundMessage:
    return InboundMessage.model_validate(
        {
            "channel": "web",
            "external_id": f"sql-{n}-{value}",
            "subject": value,
            "text": f"Jalan rusak {value} di depan pasar {n}",
            "html": f"<p>{value}</p>",
            "sender": {"name": value, "handle": value},
            "location": {"address": value},
            "headers": {"x-note": value},
            "category": value,
            "agency": value,
        }
    )


def test_sql_metacharacters_in_every_field_are_stored_as_text(box: Inbox) -> None:
    """A complaint whose every field holds SQL is filed verbatim; no table is dropped or
    emptied, and a filter given SQL matches only what equals it literally."""
    results = [
        box.receive_inbound(hostile_message(n, v), connector="files") for n, v in enumerate(SQL)
    ]
    assert [r.outcome for r in results] == [Outcome.NEW] * len(SQL)
    with box.store.transaction() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    assert {t.name for t in metadata.sorted_tables} <= tables
    for result, value in zip(results, SQL, strict=True):
        complaint = box.complaint(str(result.ticket), team=True)
        assert complaint is not None
        assert complaint.subject == value
        assert complaint.sender.name == value
    for value in SQL:
        rows, more = box.queue.list(agency=value)
        assert not more
        assert all(row.agency == value for row in rows)
    rows, _ = box.queue.list(agency="x' OR '1'='1")
    assert len(rows) <= 1
    assert len(box.complaints(limit=100)) == len(SQL)


def test_script_in_a_complaint_is_text_and_answers_are_never_html(box: Inbox) -> None:
    """Script in a complaint is kept as text (a portal shows it escaped); an HTML mail body
    becomes text without its script; no answer of the app is HTML, and every answer says
    ``nosniff`` so that a browser never renders one as a page."""
    result = box.receive_inbound(
        InboundMessage(channel="web", external_id="xss-1", text=f"Pungli {SCRIPT}"),
        connector="files",
    )
    mail = box.receive_inbound(
        InboundMessage(
            channel="email",
            external_id="xss-2",
            html=f"<p>Jalan rusak</p><script>document.cookie</script>{SCRIPT}",
        ),
        connector="files",
    )
    complaint = box.complaint(str(result.ticket))
    assert complaint is not None and SCRIPT in complaint.body
    from_mail = box.complaint(str(mail.ticket))
    assert from_mail is not None
    assert "document.cookie" not in from_mail.body
    assert "Jalan rusak" in from_mail.body
    app = create_app(box)
    for method, path in [
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/nope"),
        ("POST", "/webhooks/nope"),
        ("GET", f"/receipts/{'a' * 20}"),
    ]:
        _, headers, _ = call(app, environ(method, path, "", {}, b""))
        assert headers.get("x-content-type-options") == "nosniff", path
        assert "html" not in headers.get("content-type", ""), path


@pytest.mark.parametrize(
    "text",
    [
        "Jalan rusak\n2026-12-07 10:00:00,000 INFO omnichannel: admin logged in",
        "Jalan rusak\r\n2026-12-07 10:00:00,000 ERROR omnichannel: forged",
        "Jalan rusak\u2028forged line",
        "\x1b[2J\x1b[31mred and cleared",
    ],
)
def test_a_message_cannot_forge_a_log_line(text: str) -> None:
    """What a sender wrote, logged by the daemon, stays on its own line: line breaks and
    terminal escapes are written escaped (``\\n``, ``\\x1b``)."""
    stream = io.StringIO()
    configure_logging(logging.INFO)
    logger = logging.getLogger("omnichannel")
    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("omnichannel.test").warning("subject was %s", text)
    finally:
        logger.handlers.clear()
        logger.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert "\x1b" not in lines[0]
    assert one_line(text) in lines[0]


def test_json_logs_hold_a_message_on_one_line() -> None:
    """``--log-format json``: a message with line breaks is one JSON object on one line."""
    stream = io.StringIO()
    configure_logging(logging.INFO, fmt="json")
    logger = logging.getLogger("omnichannel")
    handler = logger.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    try:
        logging.getLogger("omnichannel.test").warning("a\nb\r\nc")
    finally:
        logger.handlers.clear()
        logger.propagate = True
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["message"] == "a\nb\r\nc"
