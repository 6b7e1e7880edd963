"""The filing worker: raw-first answers, poison isolation, receipts, workers side by side.

Webhooks here are served over real HTTP on loopback with the worker running in the process, as
``omnichannel serve`` runs it: the answer follows the commit of the raw payload, filing
follows the answer.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from omnichannel import Inbox, Outcome
from omnichannel.config import default_config, parse_config
from omnichannel.http import create_app
from omnichannel.pipeline import error_text, storable_id
from omnichannel.store.tables import complaints, messages, quarantine, raw_messages
from omnichannel.testing.http import serve_wsgi
from tests.helpers import T0, raw_json
from tests.test_twilio import ACCOUNT, TOKEN, post, sms_fields
from tests.test_web import SECRET, signed_headers


def scalar(inbox: Inbox, query: Any) -> Any:
    with inbox.store.transaction() as conn:
        return conn.execute(query).scalar_one()


def rows(inbox: Inbox, query: Any) -> list[Any]:
    with inbox.store.transaction() as conn:
        return list(conn.execute(query).all())


def drain(inbox: Inbox, timeout: float = 30) -> None:
    """Wait until the worker thread has filed every stored row."""
    deadline = time.monotonic() + timeout
    while inbox.worker.backlog():
        assert time.monotonic() < deadline, "the backlog did not drain"
        time.sleep(0.05)


@pytest.fixture
def twilio_inbox(database_url: str) -> Iterator[Inbox]:
    """A twilio connector (acknowledgements through the outbox) with the worker running."""
    config = parse_config(
        {
            "database": {"url": database_url},
            "filing": {"interval": 0.2},
            "connectors": [
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
            ],
        }
    )
    with Inbox(config) as inbox:
        inbox.worker.start(interval=0.2)
        yield inbox


# -- poison ------------------------------------------------------------------------------------

POISON_FIELDS = [
    "Body",
    "From",
    "ProfileName",
    "MessageSid",
    "Latitude",
    "Longitude",
    "Address",
    "Label",
    "OriginalRepliedMessageSid",
    "NumMedia",
    "MediaUrl0",
    "MediaContentType0",
    "WaId",
    "ToCountry",
]
PHONE_DIGITS = "81299990000"


def poisoned(n: int) -> list[dict[str, str]]:
    """Signed SMS webhooks with a NUL character, or a value longer than any column, in one
    field each; every one from a phone number the logs must never show whole."""
    sender = f"+62{PHONE_DIGITS[:-3]}{n % 1000:03d}"
    cases = []
    for index, name in enumerate(POISON_FIELDS):
        for kind, value in (("nul", "ab\x00cd"), ("long", "9" * 5000), ("big", "1" + "0" * 400)):
            fields = sms_fields(n + len(cases), sender=sender)
            fields[name] = value if name != "MessageSid" else fields[name] + value
            if name == "MediaUrl0":
                fields["NumMedia"] = "1"
            fields["Body"] = fields["Body"] if name != "Body" else value
            fields[f"X-Case-{index}"] = kind
            cases.append(fields)
    return cases


@pytest.mark.slow
def test_poisoned_webhooks_never_block_the_legitimate_ones(
    twilio_inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed webhooks with a NUL character, an over-long value or a huge number in every
    field, mixed into 200 legitimate ones and sent 24 at a time: every legitimate one is
    answered 200 and filed once; every poisoned one is filed, quarantined with its error or
    refused with 400 before storage; nothing is left unfiled; no log line shows a whole phone
    number or e-mail address."""
    caplog.set_level(logging.DEBUG)
    legit = [
        sms_fields(n, f"Izin usaha nomor {n} belum selesai.", f"+6281300{n:05d}")
        for n in range(200)
    ]
    poison = poisoned(10_000)
    mixed = [("ok", f) for f in legit] + [("poison", f) for f in poison]
    mixed.sort(key=lambda item: item[1]["MessageSid"][-7:])  # interleaved, deterministically
    with serve_wsgi(create_app(twilio_inbox)) as base_url, ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda item: (item[0], post(base_url, item[1])), mixed))
        drain(twilio_inbox)
    assert all(a.status_code == 200 for kind, a in answers if kind == "ok")
    assert {a.status_code for kind, a in answers if kind == "poison"} <= {200, 400}
    stored = rows(twilio_inbox, sa.select(raw_messages.c.external_id, raw_messages.c.status))
    assert not [s for _, s in stored if s not in ("processed", "quarantined")]
    legit_ids = {f["MessageSid"] for f in legit}
    filed = {e for e, s in stored if e in legit_ids and s == "processed"}
    assert filed == legit_ids
    assert scalar(twilio_inbox, sa.select(sa.func.count()).select_from(messages)) == len(
        [s for _, s in stored if s == "processed"]
    )
    errors = rows(twilio_inbox, sa.select(quarantine.c.error))
    assert all(e for (e,) in errors)
    leaked = [
        r.getMessage()
        for r in caplog.records
        if re.search(r"\+?62?8\d{8,}|[\w.]+@[\w.]+\.\w+", r.getMessage())
    ]
    assert leaked == []


def test_a_value_no_column_can_hold_is_quarantined_with_a_clean_error(
    inbox: Inbox, caplog: pytest.LogCaptureFixture
) -> None:
    """A phone number far longer than its column (a DataError on PostgreSQL) or an integer
    beyond any column quarantines its message alone; the error kept names the problem without
    the statement's values, and the rest of the batch is filed."""
    caplog.set_level(logging.DEBUG)
    secret = "rahasia@example.id"
    batch = [
        raw_json("fine-1", text="Lampu jalan mati."),
        raw_json("bad-1", text=f"Hubungi {secret}.", sender={"handle": "x" * 5000}),
        raw_json("fine-2", text="Jalan berlubang."),
    ]
    results = inbox.receive_many(batch)
    assert results[0].outcome is Outcome.NEW and results[2].outcome is Outcome.NEW
    assert results[1].outcome in (Outcome.NEW, Outcome.QUARANTINED)
    if inbox.store.dialect == "postgresql":  # SQLite does not enforce VARCHAR lengths
        assert results[1].outcome is Outcome.QUARANTINED
        assert results[1].error and "too long" in results[1].error
        assert secret not in (results[1].error or "")
    assert not any(secret in r.getMessage() or "x" * 50 in r.getMessage() for r in caplog.records)


def test_error_text_keeps_no_statement_values() -> None:
    """A database error is kept as the driver's first line, without quoted values, NULs or the
    statement's parameters."""
    orig = ValueError('invalid input syntax for type integer: "+6281234567890"\nDETAIL: x')
    error = sa.exc.DataError("INSERT INTO t VALUES (%s)", {"p": "+6281234567890"}, orig)
    text = error_text(error)
    assert text == "ValueError: invalid input syntax for type integer: …"
    assert error_text(RuntimeError("a\x00b")) == "a\\0b"


def test_an_over_long_external_id_is_hashed_never_cut() -> None:
    """Ids the column holds are kept whole; longer ones (or with NULs) become their sha256, so
    two ids that share the first 512 characters never collide."""
    assert storable_id("SM123") == "SM123"
    long_a, long_b = "x" * 600 + "a", "x" * 600 + "b"
    assert storable_id(long_a).startswith("sha256:") and storable_id(long_a) != storable_id(long_b)
    assert storable_id("a\x00b").startswith("sha256:")


# -- provider webhooks are answered before filing ----------------------------------------------


def test_a_provider_webhook_is_answered_once_stored_and_filed_after(database_url: str) -> None:
    """With the worker running and held up, a Twilio webhook is still answered 200 at once:
    its raw row is committed and waits; once the worker runs it is filed."""
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
            ],
        }
    )
    with Inbox(config) as inbox, serve_wsgi(create_app(inbox)) as base_url:
        held = threading.Event()
        real = inbox.worker.file_batch
        inbox.worker.file_batch = lambda **kw: held.wait(10) and real(**kw)  # type: ignore[method-assign]
        inbox.worker.start(interval=0.05)
        answer = post(base_url, sms_fields(1))
        assert answer.status_code == 200
        assert scalar(inbox, sa.select(raw_messages.c.status)) == "received"
        held.set()
        drain(inbox)
        assert scalar(inbox, sa.select(sa.func.count()).select_from(complaints)) == 1


# -- web submissions: ticket, or 202 and a receipt ---------------------------------------------


@pytest.fixture
def portal(database_url: str) -> Iterator[Inbox]:
    config = parse_config(
        {
            "database": {"url": database_url},
            "filing": {"wait": 0.3},
            "connectors": [{"name": "portal", "type": "web", "secret": SECRET}],
        }
    )
    with Inbox(config) as inbox:
        yield inbox


def submit(base_url: str, n: int) -> requests.Response:
    form = {"id": f"form-{n}", "message": f"Pengaduan ke-{n}.", "phone": "0812"}
    body = json.dumps(form).encode()
    return requests.post(
        f"{base_url}/webhooks/portal",
        data=body,
        headers=signed_headers(body, f"msg_{n}"),
        timeout=10,
    )


def test_a_web_submission_waits_for_its_ticket(portal: Inbox) -> None:
    """With the worker running, a web submission waits for its own message to be filed and
    gets its ticket."""
    portal.worker.start(interval=0.05)
    with serve_wsgi(create_app(portal)) as base_url:
        answer = submit(base_url, 1)
    assert answer.status_code == 200
    assert answer.json()["outcome"] == "new" and answer.json()["ticket"].startswith("ADU-")


def test_a_web_submission_held_up_gets_a_receipt_that_later_gives_the_ticket(
    portal: Inbox,
) -> None:
    """When filing is held up past ``filing.wait``, the submission is answered 202 with a
    receipt; ``GET /receipts/<receipt>`` says pending, then — once filed — the ticket. An
    unknown or malformed receipt is a 404."""
    held = threading.Event()
    real = portal.worker.file_batch
    portal.worker.file_batch = lambda **kw: held.wait(10) and real(**kw)  # type: ignore[method-assign]
    portal.worker.start(interval=0.05)
    with serve_wsgi(create_app(portal)) as base_url:
        answer = submit(base_url, 2)
        assert answer.status_code == 202, answer.text
        status_url = answer.json()["status_url"]
        assert status_url == f"{base_url}/receipts/{answer.json()['receipt']}"
        pending = requests.get(status_url, timeout=10)
        assert (pending.status_code, pending.json()) == (202, {"status": "pending"})
        held.set()
        drain(portal)
        filed = requests.get(status_url, timeout=10)
        assert filed.status_code == 200
        assert filed.json()["outcome"] == "new" and filed.json()["ticket"].startswith("ADU-")
        again = submit(base_url, 2)  # the portal retries: the same ticket, as a duplicate
        assert again.status_code == 200
        assert again.json()["ticket"] == filed.json()["ticket"]
        assert again.json()["outcome"] == "duplicate"
        for bad in ("nope-nope-nope", "../../etc", "x"):
            assert requests.get(f"{base_url}/receipts/{bad}", timeout=10).status_code == 404


# -- several workers -------------------------------------------------------------------------


@pytest.mark.postgres
def test_workers_of_several_processes_file_each_message_once(postgres_url: str) -> None:
    """Four workers (as in four processes: one Inbox each) drain one backlog on PostgreSQL
    together: every message filed exactly once, unique tickets, nothing left."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    inboxes = [Inbox(default_config(url=postgres_url)) for _ in range(4)]
    try:
        stored = [raw_json(f"w-{i}", text=f"Keluhan nomor {i}.") for i in range(400)]
        with inboxes[0].store.transaction() as conn:
            from omnichannel import pipeline

            pipeline.store_raw(conn, stored, stored[0].received_at)
        for box in inboxes:
            box.worker.batch_size = 10
        with ThreadPoolExecutor(4) as pool:
            counts = list(pool.map(lambda box: box.worker.file_backlog(), inboxes))
        assert sum(counts) == 400 and all(counts)
        box = inboxes[0]
        assert box.worker.backlog() == 0
        assert scalar(box, sa.select(sa.func.count()).select_from(messages)) == 400
        assert scalar(box, sa.select(sa.func.count(sa.distinct(complaints.c.ticket)))) == 400
    finally:
        for box in inboxes:
            box.close()


def test_the_worker_thread_gives_way_to_requests_but_not_for_ever(sqlite_inbox: Inbox) -> None:
    """While a request is being answered the worker thread does not start a batch; once none
    is, it files; and under requests that never stop it still files a batch every
    ``YIELD_MAX`` seconds, so the backlog of a long burst cannot grow without end."""
    from omnichannel import pipeline, worker

    inbox = sqlite_inbox
    with inbox.store.transaction() as conn:
        pipeline.store_raw(conn, [raw_json(f"g-{i}") for i in range(3)], T0)
    with inbox.worker.serving():
        inbox.worker.start(interval=0.01)
        time.sleep(min(0.3, worker.YIELD_MAX / 2))
        assert inbox.worker.backlog() == 3  # it waits for the request
    drain(inbox)
    with inbox.store.transaction() as conn:
        pipeline.store_raw(conn, [raw_json(f"h-{i}") for i in range(3)], T0)
    inbox.worker.wake()
    with inbox.worker.serving():  # a request that lasts: filed all the same
        drain(inbox, timeout=worker.YIELD_MAX * 10 + 10)


def test_a_number_too_big_for_its_column_quarantines_only_its_message(inbox: Inbox) -> None:
    """An attachment size beyond any integer column (SQLite's OverflowError, PostgreSQL's
    out-of-range error) quarantines that message alone, with an error that names no value."""
    big = 10**30
    batch = [
        raw_json("size-ok", text="Berkas terlampir."),
        raw_json(
            "size-big",
            text="Berkas besar.",
            attachments=[
                {
                    "filename": "a.pdf",
                    "content_type": "application/pdf",
                    "size": big,
                    "url": "https://example.id/a.pdf",
                }
            ],
        ),
    ]
    results = inbox.receive_many(batch)
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.QUARANTINED]
    assert results[1].error and str(big) not in results[1].error
    [row] = rows(inbox, sa.select(quarantine.c.error_type, quarantine.c.error))
    assert str(big) not in row[1]
