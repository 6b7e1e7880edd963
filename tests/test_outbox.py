"""The outbox and the forwarders: at least once, one idempotency key per delivery, backoff,
dead letters, several workers, a worker killed mid-send.

The receiver is a real HTTP server on loopback that checks signatures with the
``standardwebhooks`` library (tests/receiver.py)."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from omnichannel import Inbox
from omnichannel.config import parse_config
from omnichannel.errors import RetryableError, Undeliverable
from omnichannel.forwarders import Forward
from omnichannel.outbound import retry_after_seconds
from omnichannel.outbox import DeliveryPolicy
from omnichannel.store.tables import outbox
from tests.helpers import raw_json
from tests.receiver import SECRET, Receiver

ROOT = Path(__file__).resolve().parent.parent


def make_inbox(url: str, forward_url: str, **outbox_options: Any) -> Inbox:
    options = {"backoff": 0.2, "backoff_max": 5, "max_attempts": 4, "lease": 30}
    options.update(outbox_options)
    config = parse_config(
        {
            "database": {"url": url},
            "outbox": options,
            "forwarders": [
                {"name": "agency", "type": "webhook", "url": forward_url, "secret": SECRET}
            ],
        }
    )
    return Inbox(config)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'omnichannel.db'}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def statuses(inbox: Inbox) -> list[tuple[str, str, int]]:
    with inbox.store.transaction() as conn:
        rows = conn.execute(
            sa.select(outbox.c.kind, outbox.c.status, outbox.c.attempts).order_by(outbox.c.id)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


def deliver_until_done(inbox: Inbox, *, timeout: float = 30) -> None:
    """Run the worker's rounds until nothing is pending or sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inbox.outbox.deliver_due()
        if not any(s in ("pending", "sending") for _, s, _ in statuses(inbox)):
            return
        time.sleep(0.02)
    raise AssertionError(f"still pending: {statuses(inbox)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_new_complaint_is_forwarded_once_signed_with_its_json(
    database_url: str, receiver: Receiver
) -> None:
    """Filing a new complaint queues a forward; the worker POSTs the complaint's JSON (the
    export form) with a valid Standard Webhooks signature and the delivery id as
    ``webhook-id``; the row ends ``sent``."""
    inbox = make_inbox(database_url, receiver.url)
    try:
        result = inbox.receive(raw_json("sms-1", sender={"phone": "081234567890"}))
        deliver_until_done(inbox)
        final = statuses(inbox)
    finally:
        inbox.close()
    assert len(receiver.seen) == 1
    seen = receiver.seen[0]
    assert seen.signature_ok
    assert seen.id == f"fwd-agency-c{result.complaint_id}"
    assert seen.headers["x-omnichannel-event"] == "complaint.created"
    body = seen.json()
    assert body["ticket"] == result.ticket and body["status"] == "open"
    assert body["messages"][0]["external_id"] == "sms-1"
    assert final == [("forward", "sent", 1)]


def test_failures_are_retried_with_backoff_then_accepted_once(
    database_url: str,
) -> None:
    """A receiver that fails the first three attempts: the fourth is accepted, with the same
    ``webhook-id`` every time, each retry spaced at least the configured backoff (0.2 s,
    doubling); the receiver accepts the event exactly once."""
    with Receiver(fail_first=3) as receiver:
        inbox = make_inbox(database_url, receiver.url, max_attempts=5)
        try:
            result = inbox.receive(raw_json("sms-1"))
            deliver_until_done(inbox)
            final = statuses(inbox)
        finally:
            inbox.close()
    key = f"fwd-agency-c{result.complaint_id}"
    assert receiver.ids() == [key] * 4
    assert receiver.accepted == {key: 1}
    assert all(s.signature_ok for s in receiver.seen)
    times = receiver.times(key)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert [round(g, 1) >= 0.2 * 2**i for i, g in enumerate(gaps)] == [True] * 3, gaps
    assert final == [("forward", "sent", 4)]


def test_retry_after_is_honoured(sqlite_url: str) -> None:
    """A 429 with ``Retry-After: 1`` is not tried again before a second has passed, though
    the configured backoff is 0.05 s."""
    with Receiver(fail_first=1, fail_status=429, retry_after="1") as receiver:
        inbox = make_inbox(sqlite_url, receiver.url, backoff=0.05)
        try:
            result = inbox.receive(raw_json("sms-1"))
            deliver_until_done(inbox)
        finally:
            inbox.close()
    first, second = receiver.times(f"fwd-agency-c{result.complaint_id}")
    assert second - first >= 1.0


def test_a_receiver_down_for_good_makes_the_delivery_dead_and_retry_sends_it(
    database_url: str,
) -> None:
    """Nothing listens: after ``max_attempts`` the row is ``dead`` with the error shown by
    ``outbox list``; once the receiver is back, ``outbox retry`` sends it, once."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/complaints"
    inbox = make_inbox(database_url, url, max_attempts=3, backoff=0.05)
    try:
        inbox.receive(raw_json("sms-1"))
        deliver_until_done(inbox)
        assert statuses(inbox) == [("forward", "dead", 3)]
        rows, _ = inbox.outbox.list(status="dead")
        assert rows[0].last_error and rows[0].last_error.startswith("RetryableError")
        with Receiver(port=port) as receiver:
            assert inbox.outbox.retry() == 1
            deliver_until_done(inbox)
        assert statuses(inbox) == [("forward", "sent", 1)]
        assert len(receiver.seen) == 1 and receiver.seen[0].signature_ok
    finally:
        inbox.close()


def test_a_refusal_that_will_not_change_is_dead_at_once(sqlite_url: str) -> None:
    """HTTP 400 (or 410) is not retried: the row is ``dead`` after one attempt."""
    with Receiver(fail_first=10, fail_status=400) as receiver:
        inbox = make_inbox(sqlite_url, receiver.url)
        try:
            inbox.receive(raw_json("sms-1"))
            deliver_until_done(inbox)
            final = statuses(inbox)
        finally:
            inbox.close()
    assert len(receiver.seen) == 1
    assert final == [("forward", "dead", 1)]


def test_a_wrong_secret_fails_the_receivers_check(sqlite_url: str) -> None:
    """The signature is checked for real: a receiver with another key refuses (401), so a
    test that passes above is not passing because anything verifies."""
    with Receiver(secret="whsec_" + "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXk=") as receiver:
        inbox = make_inbox(sqlite_url, receiver.url)
        try:
            inbox.receive(raw_json("sms-1"))
            deliver_until_done(inbox)
            final = statuses(inbox)
        finally:
            inbox.close()
    assert [s.signature_ok for s in receiver.seen] == [False]
    assert final == [("forward", "dead", 1)]


def test_assignments_and_status_changes_are_forwarded(
    database_url: str, receiver: Receiver
) -> None:
    """Assigning and resolving a complaint each queue a forward with its own key; the body
    is the complaint as it is when sent."""
    inbox = make_inbox(database_url, receiver.url)
    try:
        result = inbox.receive(raw_json("sms-1"))
        inbox.queue.assign(result.complaint_id, actor="ana", agency="PUPR")
        inbox.queue.resolve(result.complaint_id, actor="ana", note="diperbaiki")
        deliver_until_done(inbox)
    finally:
        inbox.close()
    events = [s.headers["x-omnichannel-event"] for s in receiver.seen]
    assert sorted(events) == [
        "complaint.assigned",
        "complaint.created",
        "complaint.status_changed",
    ]
    assert len(set(receiver.ids())) == 3
    assert all(s.json()["agency"] == "PUPR" for s in receiver.seen)


def test_forwarders_can_be_limited_to_agencies_and_events(
    sqlite_url: str, receiver: Receiver
) -> None:
    """A forwarder for PUPR's ``created`` events only gets nothing for a complaint of the
    default agency, and nothing for its assignment; a PUPR complaint is forwarded."""
    config = parse_config(
        {
            "database": {"url": sqlite_url},
            "routes": [{"pattern": "jalan", "agency": "PUPR", "category": "infrastructure"}],
            "forwarders": [
                {
                    "name": "pupr",
                    "type": "webhook",
                    "url": receiver.url,
                    "secret": SECRET,
                    "agencies": ["PUPR"],
                    "events": ["created"],
                }
            ],
        }
    )
    with Inbox(config) as inbox:
        inbox.receive(raw_json("a", text="Izin usaha saya belum terbit."))
        road = inbox.receive(raw_json("b", text="Jalan di desa kami rusak."))
        inbox.queue.assign(road.complaint_id, actor="ana", person="budi")
        inbox.outbox.drain()
    assert receiver.ids() == [f"fwd-pupr-c{road.complaint_id}"]


def test_an_entry_point_forwarder_is_used(sqlite_url: str) -> None:
    """A forwarder instance (what an entry-point type builds) gets the Forward; what it
    raises is handled like a built-in's: retryable, then delivered."""
    calls: list[Forward] = []

    class Flaky:
        name = "custom"

        def forward(self, item: Forward) -> str | None:
            calls.append(item)
            if len(calls) == 1:
                raise RetryableError("not yet")
            return "remote-42"

    config = parse_config({"database": {"url": sqlite_url}, "outbox": {"backoff": 0.05}})
    with Inbox(config) as inbox:
        inbox.add_forwarder(Flaky())
        result = inbox.receive(raw_json("sms-1"))
        deliver_until_done(inbox)
        rows, _ = inbox.outbox.list()
    assert [c.delivery_id for c in calls] == [f"fwd-custom-c{result.complaint_id}"] * 2
    assert calls[0].event == "complaint.created" and calls[0].complaint["ticket"] == result.ticket
    assert rows[0].status == "sent"


def test_an_unknown_forwarder_type_is_a_config_error() -> None:
    """``type = "nosuch"`` names the key and the known types."""
    from omnichannel.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"forwarders": [{"name": "x", "type": "nosuch"}]})
    assert "forwarders[0].type" in str(caught.value) and "webhook" in str(caught.value)


def test_an_email_forwarder_needs_smtp() -> None:
    """Without [smtp] the email forwarder is refused at load, by key."""
    from omnichannel.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        parse_config({"forwarders": [{"name": "x", "type": "email", "to": ["a@b.id"]}]})
    assert "forwarders[0]" in str(caught.value) and "[smtp]" in str(caught.value)


def test_backoff_doubles_with_jitter_and_respects_the_cap() -> None:
    """Attempt n waits backoff·2^(n-1) plus up to backoff of jitter, never more than the cap;
    a Retry-After longer than that wins."""
    policy = DeliveryPolicy(backoff=1.0, backoff_max=10.0)
    for attempt, low in ((1, 1.0), (2, 2.0), (3, 4.0)):
        assert low <= policy.delay(attempt) <= low + 1.0
    assert policy.delay(10) <= 10.0
    assert policy.delay(1, retry_after=30) == 30


def test_retry_after_reads_seconds_and_http_dates() -> None:
    """``Retry-After`` is seconds or an HTTP date; nonsense is ignored."""
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, 8, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Mon, 07 Dec 2026 08:00:30 GMT", now=now) == 30
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_undeliverable_from_a_sender_is_dead_at_once(sqlite_url: str) -> None:
    """A forwarder that raises Undeliverable is not tried again."""

    class Refusing:
        name = "refusing"

        def forward(self, item: Forward) -> str | None:
            raise Undeliverable("410 gone")

    with Inbox(parse_config({"database": {"url": sqlite_url}})) as inbox:
        inbox.add_forwarder(Refusing())
        inbox.receive(raw_json("sms-1"))
        inbox.outbox.drain()
        rows, _ = inbox.outbox.list()
    assert (rows[0].status, rows[0].attempts) == ("dead", 1)
    assert rows[0].last_error == "Undeliverable: 410 gone"


# -- processes ---------------------------------------------------------------------------------


def write_config(path: Path, url: str, forward_url: str, **outbox_options: Any) -> Path:
    options = {"backoff": 0.2, "max_attempts": 5, "lease": 2, "interval": 0.05}
    options.update(outbox_options)
    lines = [
        "[database]",
        f'url = "{url}"',
        "[filing]",
        "interval = 0.2",
        "[outbox]",
        *(f"{k} = {json.dumps(v)}" for k, v in options.items()),
        "[[forwarders]]",
        'name = "agency"',
        'type = "webhook"',
        f'url = "{forward_url}"',
        f'secret = "{SECRET}"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def start_worker(config: Path, log_name: str = "worker") -> subprocess.Popen[bytes]:
    with (config.parent / f"{log_name}.log").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "omnichannel", "--config", str(config), "work"],
            cwd=config.parent,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_a_worker_killed_between_sending_and_recording_sends_the_same_key_again(
    database_url: str, tmp_path: Path
) -> None:
    """kill -9 while the receiver has the request but has not answered: the row stays
    ``sending`` until its lease ends; another worker sends it again with the same
    ``webhook-id`` — never a different key for the same event — and records it."""
    with Receiver() as receiver:
        config = write_config(tmp_path / "omnichannel.toml", database_url, receiver.url)
        with Inbox.from_config(config) as inbox:
            result = inbox.receive(raw_json("sms-1"))
        receiver.hold.clear()  # take the request, hold the answer
        first = start_worker(config)
        try:
            assert receiver.arrived.wait(30), (tmp_path / "worker.log").read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        finally:
            stop(first)
        receiver.hold.set()
        with Inbox.from_config(config) as inbox:
            assert [s for _, s, _ in statuses(inbox)] == ["sending"]
        second = start_worker(config)
        try:
            with Inbox.from_config(config) as inbox:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline and statuses(inbox)[0][1] != "sent":
                    time.sleep(0.05)
                final = statuses(inbox)
        finally:
            stop(second)
    key = f"fwd-agency-c{result.complaint_id}"
    assert receiver.ids() == [key, key]
    assert all(s.signature_ok for s in receiver.seen)
    assert final == [("forward", "sent", 2)]


@pytest.mark.slow
@pytest.mark.postgres
def test_four_workers_on_postgresql_send_2000_deliveries_exactly_once(
    postgres_url: str, tmp_path: Path
) -> None:
    """2,000 complaints, one forward each, four ``omnichannel work`` processes on one
    PostgreSQL: the receiver gets every delivery exactly once and none is left behind."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    with Receiver() as receiver:
        config = write_config(
            tmp_path / "omnichannel.toml", postgres_url, receiver.url, batch_size=10
        )
        with Inbox.from_config(config) as inbox:
            for start in range(0, 2000, 500):
                inbox.receive_many(
                    [
                        raw_json(f"m-{i}", text=f"Keluhan nomor {i} tentang pelayanan izin.")
                        for i in range(start, start + 500)
                    ]
                )
            assert len(statuses(inbox)) == 2000
        workers = [start_worker(config) for _ in range(4)]
        try:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline and len(receiver.accepted) < 2000:
                time.sleep(0.2)
        finally:
            for worker in workers:
                stop(worker)
        with Inbox.from_config(config) as inbox:
            final = statuses(inbox)
    counts = receiver.accepted
    assert len(counts) == 2000 and set(counts.values()) == {1}
    assert len(receiver.seen) == 2000  # nothing sent twice, not even refused
    assert {s for _, s, _ in final} == {"sent"}
