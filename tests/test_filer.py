"""``omnichannel serve``'s filing process: signed webhooks over real HTTP, stored and filed in a
child process, answered only after its commit; a child that dies or hangs costs a 503, never a
message."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from omnichannel import Inbox, Outcome
from omnichannel.config import Config, parse_config
from omnichannel.errors import StorageUnavailable
from omnichannel.filer import FilingProcess
from omnichannel.http import create_app
from omnichannel.store.tables import complaints, raw_messages
from omnichannel.testing.http import serve_wsgi
from tests.test_twilio import ACCOUNT, TOKEN, Answer, count, post, sid, sms_fields, twiml_messages


def twilio_config(database: str) -> Config:
    return parse_config(
        {
            "database": {"url": database},
            "connectors": [
                {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
            ],
        }
    )


class Served:
    """An inbox whose webhooks are filed by a FilingProcess, served on loopback."""

    def __init__(self, inbox: Inbox, filer: FilingProcess, base_url: str) -> None:
        self.inbox, self.filer, self.base_url = inbox, filer, base_url

    def post(self, n: int, **extra: str) -> Answer:
        return post(self.base_url, sms_fields(n, **extra))

    def child(self) -> int:
        pid = self.filer.pid
        assert pid is not None and pid != os.getpid()
        return pid


def served(config: Config, **options: Any) -> Iterator[Served]:
    inbox = Inbox(config)
    filer = FilingProcess(config, secrets=[TOKEN], **options)
    filer.start()
    inbox.delegate_filing(filer.receive_many, status=filer.status)
    try:
        with serve_wsgi(create_app(inbox), threads=8) as base_url:
            yield Served(inbox, filer, base_url)
    finally:
        filer.close()
        inbox.close()


@pytest.fixture
def server(database_url: str) -> Iterator[Served]:
    """On SQLite and, when a server is reachable, on PostgreSQL."""
    yield from served(twilio_config(database_url))


def wait_for_exit(pid: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)  # polling a process we killed, not a timing assumption
    raise AssertionError(f"process {pid} did not exit")


def test_concurrent_webhooks_are_filed_by_the_child_once_each(server: Served) -> None:
    """Twenty webhooks at once, one of them posted three times: every answer is 200, each new
    message gets its own ticket in TwiML, the repeats none; the child, not the server process,
    wrote one complaint per message."""
    answers: dict[int, list[Answer]] = {}
    lock = threading.Lock()
    start = threading.Barrier(22)

    def send(n: int) -> None:
        start.wait()
        answer = server.post(n)
        with lock:
            answers.setdefault(n, []).append(answer)

    threads = [threading.Thread(target=send, args=(n,)) for n in [*range(1, 21), 1, 1]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert server.child() != os.getpid()
    messages = {n: [twiml_messages(a) for a in found] for n, found in answers.items()}
    assert sorted(messages) == list(range(1, 21))
    assert sorted(len(m) for m in messages[1]) == [0, 0, 1]  # one new, two duplicates
    assert all(len(found) == 1 and len(found[0]) == 1 for n, found in messages.items() if n != 1)
    texts = [m[0] for found in messages.values() for m in found if m]
    assert len(texts) == 20
    assert {c.ticket for c in server.inbox.complaints()} == {
        ticket for text in texts for ticket in re.findall(r"ADU-\d{4}-\d{6}", text)
    }
    assert count(server.inbox, complaints) == 20 and count(server.inbox, raw_messages) == 20


def test_a_killed_child_costs_the_waiting_request_a_503_and_is_started_again(
    server: Served,
) -> None:
    """The child is stopped while a request waits for it, then killed: that request is answered
    503 (Twilio retries or the reconciliation poll recovers it), nothing was stored for it; the
    next request starts a new child, and the retried message is filed once."""
    assert len(twiml_messages(server.post(1))) == 1
    first = server.child()
    os.kill(first, signal.SIGSTOP)
    waiting: list[Answer] = []
    sender = threading.Thread(target=lambda: waiting.append(server.post(2)))
    sender.start()
    deadline = time.monotonic() + 10
    while not server.filer._waiting and time.monotonic() < deadline:
        time.sleep(0.01)  # until the request is handed to the (stopped) child
    os.kill(first, signal.SIGKILL)
    sender.join(timeout=30)
    assert waiting[0].status_code == 503
    assert waiting[0].json() == {"error": "storage unavailable, retry later"}
    wait_for_exit(first)
    with server.inbox.store.transaction() as conn:
        stored = conn.execute(sa.select(raw_messages.c.external_id)).scalars().all()
    assert stored == [sid(1)]
    retried = server.post(2)
    assert len(twiml_messages(retried)) == 1
    assert server.child() != first
    assert count(server.inbox, complaints) == 2 and count(server.inbox, raw_messages) == 2


def health(base_url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"{base_url}/healthz", timeout=60) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_healthz_reports_the_filing_process_and_starts_a_dead_one_again(server: Served) -> None:
    """/healthz says the child runs and which it is; once it was killed, /healthz starts a new
    one (as the next webhook would), and says so: started again once, and why the last one
    ended."""
    first = server.child()
    status, body = health(server.base_url)
    assert status == 200 and body["healthy"]
    assert body["filing"] == {
        "mode": "process",
        "running": True,
        "pid": first,
        "restarts": 0,
        "last_exit": None,
    }
    os.kill(first, signal.SIGKILL)
    wait_for_exit(first)
    status, body = health(server.base_url)
    filing = body["filing"]
    assert status == 200 and body["healthy"] and filing["running"]
    assert filing["pid"] == server.child() != first and filing["restarts"] == 1
    assert filing["last_exit"] == f"the filing process exited (pid {first}, exit code -9)"
    assert len(twiml_messages(server.post(1))) == 1


def test_healthz_is_unhealthy_while_the_filing_process_cannot_start(tmp_path: Path) -> None:
    """A filing process that exits whenever it starts makes /healthz answer 503, with the
    reason; the server's own store is fine, so nothing else would show it."""
    inbox = Inbox(twilio_config(f"sqlite:///{tmp_path / 'x.db'}"))
    filer = FilingProcess(twilio_config("nosuchdriver://nowhere"))
    inbox.delegate_filing(filer.receive_many, status=filer.status)
    try:
        with serve_wsgi(create_app(inbox), threads=2) as base_url:
            status, body = health(base_url)
    finally:
        filer.close()
        inbox.close()
    assert status == 503 and not body["healthy"] and body["database"] == "ok"
    assert body["filing"]["running"] is False and body["filing"]["pid"] is None
    assert "exited on start" in body["filing"]["last_exit"]


def test_a_child_that_does_not_answer_in_time_gets_a_503(tmp_path: Path) -> None:
    """A hung child: the request is answered 503 once ``timeout`` has passed, not held until
    the provider gives up; when the child runs again, the message is there exactly once."""
    config = twilio_config(f"sqlite:///{tmp_path / 'omnichannel.db'}")
    for server in served(config, timeout=1.0):
        pid = server.child()
        os.kill(pid, signal.SIGSTOP)
        try:
            answer = server.post(1)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert answer.status_code == 503
        again = server.post(1)  # the provider's retry; the child filed the first one late
        assert twiml_messages(again) == []  # a duplicate: acknowledged (or not) the first time
        with server.inbox.store.transaction() as conn:
            outcomes = conn.execute(sa.select(raw_messages.c.outcome)).scalars().all()
        assert outcomes == [Outcome.NEW.value]
        assert count(server.inbox, complaints) == 1


def test_a_hung_child_does_not_hold_large_requests_past_the_timeout(tmp_path: Path) -> None:
    """Payloads larger than the pipe holds, to a child that does not read: each request still
    gets its 503 once ``timeout`` has passed (sending is part of the wait), the child that does
    not read is replaced, and the next request is filed by the new one."""
    config = twilio_config(f"sqlite:///{tmp_path / 'omnichannel.db'}")
    filer = FilingProcess(config, timeout=1.0)
    filer.start()
    try:
        [result] = filer.receive_many([raw(1)])  # the child is up and filing
        pid = filer.pid
        assert pid is not None and result.outcome is Outcome.NEW
        big = [raw(n).model_copy(update={"payload": b"Body=" + b"x" * 2_000_000}) for n in (2, 3)]
        errors: list[BaseException] = []

        def send(item: Any) -> None:
            try:
                filer.receive_many([item])
            except StorageUnavailable as exc:
                errors.append(exc)

        os.kill(pid, signal.SIGSTOP)
        try:
            senders = [threading.Thread(target=send, args=(item,)) for item in big]
            for thread in senders:
                thread.start()
            for thread in senders:
                thread.join(timeout=30)
            assert [thread.is_alive() for thread in senders] == [False, False]
            assert len(errors) == 2
            assert all("does not read" in str(e) or "no answer" in str(e) for e in errors)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        wait_for_exit(pid)
        filer.start()  # the new child is ready (starting one takes longer than the timeout)
        [result] = filer.receive_many([raw(4)])
        assert result.outcome is Outcome.NEW and filer.pid not in (None, pid)
    finally:
        filer.close()


def test_closing_fails_the_requests_the_child_can_no_longer_answer(tmp_path: Path) -> None:
    """The server stops while a request waits for a child that does not answer (stopped, then
    killed during ``close``): the request gets StorageUnavailable once the child is gone, not
    after its own (here ten-minute) timeout; the provider retries it."""
    config = twilio_config(f"sqlite:///{tmp_path / 'omnichannel.db'}")
    filer = FilingProcess(config, timeout=600)
    filer.start()
    pid = filer.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    errors: list[BaseException] = []

    def wait_for_answer() -> None:
        try:
            filer.receive_many([raw(1)])
        except StorageUnavailable as exc:
            errors.append(exc)

    waiting = threading.Thread(target=wait_for_answer)
    waiting.start()
    deadline = time.monotonic() + 30
    while not filer._waiting and time.monotonic() < deadline:
        time.sleep(0.01)  # until the request is handed to the (stopped) child
    closing = threading.Thread(target=filer.close)
    closing.start()
    while not filer._closed and time.monotonic() < deadline:
        time.sleep(0.01)  # until close has begun
    os.kill(pid, signal.SIGKILL)
    closing.join(timeout=60)
    waiting.join(timeout=60)
    assert not waiting.is_alive() and not closing.is_alive()
    assert len(errors) == 1 and "stopping" in str(errors[0])


def test_a_child_that_cannot_start_is_reported_by_start() -> None:
    """A filing process that exits while starting (here: a database driver that does not
    exist) makes ``start`` raise at once, instead of letting the server come up and answer
    every webhook 503; ``start`` does not sit out its wait for a child that is gone."""
    filer = FilingProcess(twilio_config("nosuchdriver://nowhere"))
    try:
        with pytest.raises(StorageUnavailable, match="exited on start"):
            filer.start(wait=3600)  # the suite's timeout (300 s) fails the test if it waits
    finally:
        filer.close()


def test_a_child_that_keeps_failing_to_start_is_tried_again_only_after_a_doubling_delay() -> None:
    """While children exit on start, requests get a 503 at once instead of each starting an
    interpreter that fails again; one is tried after the delay, and the next delay is twice
    as long. /healthz's status does not start one early either."""
    filer = FilingProcess(twilio_config("nosuchdriver://nowhere"), restart_delay=0.5)
    try:
        with pytest.raises(StorageUnavailable, match="exited on start"):
            filer.start()
        tried = time.monotonic()
        for _ in range(5):
            with pytest.raises(StorageUnavailable, match=r"exited on start.*next start in"):
                filer.receive_many([raw(1)])
        status = filer.status()
        assert status["running"] is False and status["restarts"] == 0
        time.sleep(max(0.0, tried + 0.6 - time.monotonic()))
        with pytest.raises(StorageUnavailable, match="exited on start"):
            filer.receive_many([raw(1)])  # started one: it exited too
        assert filer.status()["restarts"] == 1
        with pytest.raises(StorageUnavailable) as refused:
            filer.receive_many([raw(1)])
        delay = float(re.findall(r"next start in ([\d.]+) s", str(refused.value))[0])
        assert 0.5 < delay <= 1.0  # doubled from 0.5
    finally:
        filer.close()


def test_storage_down_in_the_child_is_a_503_and_it_recovers(tmp_path: Path) -> None:
    """The child cannot open the store (a directory where the database file should be): 503
    for every request, the child stays up; once the store is back, requests are filed."""
    database = tmp_path / "omnichannel.db"
    config = twilio_config(f"sqlite:///{database}")
    Inbox(config).close()  # the schema exists; the server process has its own connection
    filer = FilingProcess(config, timeout=30)
    try:
        database.rename(tmp_path / "away.db")
        database.mkdir()
        with pytest.raises(StorageUnavailable):
            filer.receive_many([raw(1)])
        child = filer.pid
        assert child is not None
        database.rmdir()
        (tmp_path / "away.db").rename(database)
        [result] = filer.receive_many([raw(1)])
        assert result.outcome is Outcome.NEW and filer.pid == child
    finally:
        filer.close()


def raw(n: int) -> Any:
    from datetime import UTC, datetime
    from urllib.parse import urlencode

    from omnichannel import RawMessage

    return RawMessage(
        connector="sms",
        external_id=sid(n),
        received_at=datetime.now(UTC),
        content_type="application/x-www-form-urlencoded",
        payload=urlencode(sms_fields(n)).encode(),
        meta={"source": "webhook"},
    )


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_omnichannel_serve_files_in_a_child_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """``omnichannel serve`` as an operator runs it: a signed webhook is answered with its
    ticket, filed by the server's filing process; SIGTERM stops the server (exit 0) and its
    filing process, and the complaint is in the database."""
    database = tmp_path / "omnichannel.db"
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{database}"\n\n'
        f'[[connectors]]\nname = "sms"\ntype = "twilio"\naccount_sid = "{ACCOUNT}"\n'
        'auth_token = "${TEST_TWILIO_TOKEN}"\n',
        encoding="utf-8",
    )
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "serve"]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "TEST_TWILIO_TOKEN": TOKEN},
        stderr=subprocess.PIPE,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, server)
        [text] = twiml_messages(post(base_url, sms_fields(1)))
        ticket = re.search(r"ADU-\d{4}-000001", text)
        assert ticket is not None
        filers = [pid for pid in children(server.pid) if b"spawn_main" in cmdline(pid)]
        assert len(filers) == 1
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        wait_for_exit(filers[0])
    finally:
        if server.poll() is None:
            server.kill()
        _, errors = server.communicate(timeout=30)
    assert b"filing process started" in errors and TOKEN.encode() not in errors
    # waitress's own lines in the same form (they went unformatted to stderr before, if at all)
    assert f"INFO waitress: Serving on http://127.0.0.1:{port}".encode() in errors
    inbox = Inbox(twilio_config(f"sqlite:///{database}"))
    try:
        assert [c.ticket for c in inbox.complaints()] == [ticket.group(0)]
    finally:
        inbox.close()


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_until_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert server.poll() is None, "the server exited while starting"
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=5) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.05)  # waiting for a subprocess to listen
    raise AssertionError("omnichannel serve did not come up")


@pytest.mark.parametrize(
    "received_at",
    [
        "2026-11-30T06:15:00.123456+00:00",
        "2026-11-30T14:15:00.000001+08:00",  # another zone: the same instant, in UTC
        "1969-12-31T23:59:59.999999+00:00",  # before the epoch
    ],
)
def test_raw_messages_cross_to_the_child_unchanged(received_at: str) -> None:
    """What the server sends the child for a raw message is that message again, to the
    microsecond (the time travels as microseconds since the epoch)."""
    from datetime import datetime

    from omnichannel.filer import _raw, _raw_fields

    sent = raw(1).model_copy(update={"received_at": datetime.fromisoformat(received_at)})
    sent = type(sent).model_validate(sent.model_dump())
    back = _raw(_raw_fields(sent))
    assert back == sent and back.received_at.utcoffset() is not None
