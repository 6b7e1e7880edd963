"""The daemon and the operator: ``omnichannel run`` as a process, poller leases on PostgreSQL,
retries that keep one broken connector from stopping the others, and an operator's mistakes
answered with one line and a non-zero exit."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel import Inbox
from omnichannel.cli import main
from omnichannel.config import ConnectorConfig, default_config
from omnichannel.connector import Batch, PollingConnector
from omnichannel.errors import FatalError
from omnichannel.leases import Lease
from omnichannel.poller import run_pollers
from omnichannel.store.engine import create_engine
from omnichannel.store.tables import complaints, raw_messages
from tests.helpers import json_doc
from tests.receiver import SECRET as FORWARD_SECRET
from tests.receiver import Receiver
from tests.test_imap import mailbox  # noqa: F401 - fixture
from tests.test_twilio import (
    ACCOUNT,
    FORM,
    TOKEN,
    fake,  # noqa: F401 - fixture
    sign,
    sms_fields,
)
from tests.test_web import SECRET, signed_headers

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "omnichannel", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
    )


# -- omnichannel run ----------------------------------------------------------------------------


def daemon_config(folder: Path, url: str, forward_url: str | None = None) -> Path:
    (folder / "drop").mkdir()
    path = folder / "omnichannel.toml"
    forward = (
        "[outbox]\ninterval = 0.1\n\n"
        f'[[forwarders]]\nname = "agency"\ntype = "webhook"\nurl = "{forward_url}"\n'
        f'secret = "{FORWARD_SECRET}"\n\n'
        if forward_url
        else ""
    )
    path.write_text(
        f'[database]\nurl = "{url}"\n\n[filing]\ninterval = 0.2\n\n{forward}'
        f'[[connectors]]\nname = "files"\ntype = "files"\npath = "{folder / "drop"}"\n'
        "poll_interval = 0.2\n\n"
        f'[[connectors]]\nname = "sms"\ntype = "twilio"\nmode = "webhook"\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "{TOKEN}"\n\n'
        f'[[connectors]]\nname = "portal"\ntype = "web"\nsecret = "{SECRET}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def daemon(
    tmp_path: Path, database_url: str, receiver: Receiver
) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    config, port = daemon_config(tmp_path, database_url, receiver.url), free_port()
    log = (tmp_path / "run.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "omnichannel", "--config", str(config), "run", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: healthz(port) is not None, what="the daemon to answer")
        yield proc, port, tmp_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        log.close()


def wait_for(check: Any, *, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def healthz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        answer = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    except requests.ConnectionError:
        return None
    return answer.status_code, answer.json()


def complaint_count(url: str) -> int:
    """Complaints in the store (0 while it has no schema yet)."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(complaints)
            return int(conn.execute(query).scalar_one())
    except (sa.exc.OperationalError, sa.exc.ProgrammingError):
        return 0
    finally:
        engine.dispose()


@pytest.mark.slow
def test_run_files_every_channel_and_stops_on_sigterm(
    daemon: tuple[subprocess.Popen[bytes], int, Path], database_url: str, receiver: Receiver
) -> None:
    """``omnichannel run`` in one process: a dropped file, a Twilio webhook and a web
    submission each become a complaint, forwarded by its outbox worker; /healthz is 200 and
    /metrics counts the webhooks; SIGTERM exits 0 within 10 s; started again, nothing is
    filed twice."""
    proc, port, folder = daemon
    (folder / "drop" / "a.json").write_bytes(json_doc("drop-1", sender={"phone": "0812000111"}))
    base_url = f"http://127.0.0.1:{port}"
    assert timed_post(base_url, 1)[0] == 200
    body = json.dumps({"message": "Lampu jalan mati sejak minggu lalu.", "phone": "0813"}).encode()
    web = requests.post(
        f"http://127.0.0.1:{port}/webhooks/portal",
        data=body,
        headers=signed_headers(body, "msg_run_1"),
        timeout=10,
    )
    assert web.status_code == 200 and web.json()["outcome"] == "new"
    wait_for(lambda: complaint_count(database_url) == 3, what="three complaints")
    wait_for(lambda: not list((folder / "drop").glob("*.json")), what="the file moved")
    wait_for(lambda: len(receiver.accepted) == 3, what="three forwards")
    assert all(seen.signature_ok for seen in receiver.seen)
    status, health = healthz(port) or (0, {})
    assert status == 200 and health["healthy"] and health["filing"]["mode"] == "worker"
    assert health["connectors"]["files"]["last_success"]
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    assert 'omnichannel_webhook_requests_total{connector="sms",status="200"} 1.0' in metrics
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    config = folder / "omnichannel.toml"
    again = subprocess.Popen(
        [sys.executable, "-m", "omnichannel", "--config", str(config), "run", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: healthz(port) is not None, what="the restart")
        assert timed_post(base_url, 1)[0] == 200  # a redelivery
        time.sleep(0.5)
        assert complaint_count(database_url) == 3
    finally:
        again.send_signal(signal.SIGTERM)
        assert again.wait(timeout=10) == 0


def test_serve_on_a_port_in_use_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """A port another program holds: one line naming the address, exit 1, no traceback."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in ("serve", "run"):
            done = cli(command, "--port", str(port), cwd=tmp_path)
            assert done.returncode == 1, done.stderr
            lines = [line for line in done.stderr.splitlines() if "omnichannel:" in line]
            assert lines == [
                f"omnichannel: cannot listen on 127.0.0.1:{port}: Address already in use"
            ]
            assert "Traceback" not in done.stderr


# -- leases -------------------------------------------------------------------------------------

HOLD = """
import sys, time
from omnichannel.leases import Lease
from omnichannel.store import Store
lease = Lease(Store(sys.argv[1]), "email")
assert lease.hold()
print("held", flush=True)
time.sleep(600)
"""


@pytest.mark.postgres
def test_one_replica_holds_a_pollers_lease_and_another_takes_it_when_it_dies(
    postgres_url: str,
) -> None:
    """A lease is held by one replica at a time; when its holder is killed with SIGKILL the
    database ends its session and another replica takes the lease at its next try."""
    from omnichannel.store import Store

    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, postgres_url], stdout=subprocess.PIPE, text=True
    )
    store = Store(postgres_url)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine, other = Lease(store, "email"), Lease(store, "imap-2")
        assert not mine.hold()  # held elsewhere
        assert other.hold()  # another poller's lease is free
        other.release()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        wait_for(mine.hold, what="the lease taken over", timeout=10)
        assert mine.hold()  # kept
        mine.release()
        assert Lease(store, "email").hold()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        if holder.stdout is not None:
            holder.stdout.close()
        store.dispose()


# -- retries ------------------------------------------------------------------------------------


class _Counting(PollingConnector):
    type: ClassVar[str] = "counting"
    channel: ClassVar[str] = "sms"
    poll_interval = 0.01
    fail_with: BaseException | None = None

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls = 0

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        self.calls += 1
        if self.fail_with is not None:
            raise self.fail_with
        return iter(())

    def ack(self, messages: Sequence[Any]) -> None:
        pass


def test_a_connector_with_bad_credentials_is_retried_slowly_while_the_others_run(
    sqlite_inbox: Inbox,
) -> None:
    """A fatal error (bad credentials) marks that connector failed in its health and is
    retried only after a long wait, while the other connector goes on polling."""
    good, bad = _Counting("good"), _Counting("bad")
    bad.fail_with = FatalError("login refused")
    sqlite_inbox.add_connector(good)
    sqlite_inbox.add_connector(bad)
    stop = threading.Event()
    runner = threading.Thread(target=run_pollers, args=(sqlite_inbox, ["good", "bad"], stop))
    runner.start()
    try:
        wait_for(lambda: good.calls >= 20, what="the good connector to poll on")
    finally:
        stop.set()
        runner.join(timeout=10)
    assert not runner.is_alive()
    assert bad.calls == 1  # the next try is a minute away
    health = sqlite_inbox.connector_health("bad")
    assert health["failed"] and health["last_error"] == "login refused"
    assert not sqlite_inbox.connector_health("good")["failed"]


# -- operator mistakes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "database.url: not a database URL"),
        ("mysql+pymysql://root@127.0.0.1/test", "database.url: mysql is not supported"),
        ("postgresql+pg8000://u@127.0.0.1/x", "database.url: the postgresql driver is not"),
    ],
)
def test_check_refuses_a_database_url_it_cannot_use(tmp_path: Path, url: str, message: str) -> None:
    """A malformed URL, a backend the store does not support, a driver that is not
    installed: ``check`` says so in one line (exit 2), as every other command does."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{url}"\n', encoding="utf-8")
    for args in (("check",), ("init-db",), ("complaints", "list")):
        result = CliRunner().invoke(main, [*args, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"omnichannel: configuration: {message}")
        assert len(result.stderr.splitlines()) == 1


def test_a_missing_drop_folder_is_reported_not_taken_for_an_empty_one(tmp_path: Path) -> None:
    """``poll --once`` with a files connector whose folder does not exist: FAILED with the
    folder named, exit 1."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n\n'
        f'[[connectors]]\nname = "files"\ntype = "files"\npath = "{tmp_path / "nope"}"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["poll", "--once", "--config", str(config)])
    assert result.exit_code == 1
    assert f"files: FAILED: drop folder {tmp_path / 'nope'} does not exist" in result.stdout


def test_read_only_commands_create_no_database(tmp_path: Path) -> None:
    """``complaints list``, ``complaints export``, ``quarantine list`` and ``check --connect``
    on a fresh folder: a one-line error (exit 3) and no database file or folder made."""
    config = tmp_path / "omnichannel.toml"
    database = tmp_path / "sub" / "x.db"
    config.write_text(f'[database]\nurl = "sqlite:///{database}"\n', encoding="utf-8")
    for args in (
        ("complaints", "list"),
        ("complaints", "export"),
        ("quarantine", "list"),
        ("check", "--connect"),
    ):
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 3, (args, result.output)
        assert "run 'omnichannel init-db'" in result.stderr
        assert not (tmp_path / "sub").exists()
    assert CliRunner().invoke(main, ["--config", str(config), "init-db"]).exit_code == 0
    assert CliRunner().invoke(main, ["--config", str(config), "complaints", "list"]).exit_code == 0


def test_config_is_taken_before_or_after_the_command(tmp_path: Path) -> None:
    """``--config PATH`` works before the command, after it, and as ``--config=PATH``."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n', encoding="utf-8")
    for args in (
        ["--config", str(config), "check"],
        ["check", "--config", str(config)],
        ["check", f"--config={config}"],
    ):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0 and str(config) in result.stdout, args


def test_the_default_store_is_supported() -> None:
    """The embedded default passes the store checks (a guard for the validator itself)."""
    assert default_config().database.url.startswith("sqlite:///")
    with Inbox(default_config(url="sqlite://")) as inbox, inbox.store.transaction() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar() == 0


@pytest.mark.postgres
def test_two_replicas_poll_a_connector_one_at_a_time(postgres_url: str) -> None:
    """Two replicas (an inbox each) run the same poller on one PostgreSQL: only the lease
    holder polls; when it stops, the other takes over within the lease retry time."""
    from omnichannel.leases import LEASE_RETRY

    replicas = [Inbox(default_config(url=postgres_url)) for _ in range(2)]
    sources = [_Counting("shared"), _Counting("shared")]
    stops = [threading.Event(), threading.Event()]
    runners = []
    try:
        for inbox, source, stop in zip(replicas, sources, stops, strict=True):
            inbox.add_connector(source)
            runner = threading.Thread(target=run_pollers, args=(inbox, ["shared"], stop))
            runner.start()
            runners.append(runner)
        wait_for(lambda: max(s.calls for s in sources) >= 20, what="one replica polling")
        holder = 0 if sources[0].calls >= 20 else 1
        assert sources[1 - holder].calls == 0
        stops[holder].set()
        runners[holder].join(timeout=10)
        wait_for(
            lambda: sources[1 - holder].calls > 0,
            what="the takeover",
            timeout=LEASE_RETRY * 2 + 5,
        )
    finally:
        for stop in stops:
            stop.set()
        for runner in runners:
            runner.join(timeout=10)
        for inbox in replicas:
            inbox.close()


# -- abuse ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_slow_clients_do_not_keep_webhooks_or_healthz_waiting(tmp_path: Path) -> None:
    """300 connections that send a request a byte every two seconds are held open while
    signed webhooks and /healthz are answered within a second each; a body declared at 2 GB
    is refused with 413 at once, before any of it is sent."""
    config, port = daemon_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"), free_port()
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "serve"]
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
    slow: list[socket.socket] = []
    stop = threading.Event()
    try:
        wait_for(lambda: healthz(port) is not None, what="the server")
        for _ in range(300):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"POST /webhooks/sms HTTP/1.1\r\nHost: x\r\n")
            slow.append(sock)

        def drip() -> None:
            while not stop.wait(2):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X")

        dripper = threading.Thread(target=drip, daemon=True)
        dripper.start()
        time.sleep(2.5)  # the drip has started: every slow connection is open and busy
        for n in range(10):
            assert timed_post(f"http://127.0.0.1:{port}", n, timeout=1)[0] == 200
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
        with socket.create_connection(("127.0.0.1", port), timeout=1) as big:
            big.sendall(
                b"POST /webhooks/sms HTTP/1.1\r\nHost: x\r\nContent-Type: "
                + FORM.encode()
                + b"\r\nContent-Length: 2147483648\r\n\r\n"
            )
            assert big.recv(100).startswith(b"HTTP/1.1 413")
        # over the Twilio connector's 1 MiB, under the web connector's: refused as well, from
        # the declared length alone (nothing of the body is sent)
        with socket.create_connection(("127.0.0.1", port), timeout=1) as mid:
            mid.sendall(
                b"POST /webhooks/sms HTTP/1.1\r\nHost: x\r\nContent-Type: "
                + FORM.encode()
                + b"\r\nContent-Length: 5000000\r\n\r\n"
            )
            assert mid.recv(100).startswith(b"HTTP/1.1 413")
        assert proc.poll() is None
    finally:
        stop.set()
        for sock in slow:
            sock.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


# -- what operators see ---------------------------------------------------------------------------


def test_metrics_and_status_show_the_backlog_quarantine_and_outbox(
    tmp_path: Path, database_url: str
) -> None:
    """Two messages stored but not filed, one quarantined, one filed (its acknowledgement
    pending, the complaint past its due time): ``/metrics`` gauges and ``omnichannel status
    --format json`` both say so."""
    from omnichannel import pipeline
    from omnichannel.http import create_app
    from omnichannel.testing.http import serve_wsgi
    from tests.helpers import T0, raw_json

    with Inbox(default_config(url=database_url)) as inbox:
        # an SMS gateway to answer with (never asked to send here)
        inbox.settings = dataclasses.replace(inbox.settings, sms_via="gateway")
        filed = inbox.receive_many(
            [raw_json("m-1", sender={"phone": "081234500001"}), raw_json("m-2", text=None)]
        )
        assert [r.outcome.value for r in filed] == ["new", "quarantined"]
        with inbox.store.transaction() as conn:
            pipeline.store_raw(conn, [raw_json("m-3"), raw_json("m-4")], T0)
        with serve_wsgi(create_app(inbox)) as base_url:
            text = requests.get(f"{base_url}/metrics", timeout=10).text
            health = requests.get(f"{base_url}/healthz", timeout=10).json()
    assert health["connectors"]["files"]["backlog"] == 2
    for line in (
        "omnichannel_store_up 1.0",
        "omnichannel_raw_backlog 2.0",
        "omnichannel_quarantined 1.0",
        'omnichannel_outbox{status="pending"} 1.0',
        "omnichannel_complaints_overdue 1.0",  # received 2026-11-30: due three working days on
    ):
        assert line in text.splitlines(), line
    [age] = [
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith("omnichannel_raw_backlog_age_seconds ")
    ]
    assert age > 0
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    result = CliRunner().invoke(main, ["status", "--format", "json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    numbers = json.loads(result.stdout)
    assert numbers["raw_backlog"] == 2 and numbers["quarantined"] == 1
    assert numbers["outbox"] == {"pending": 1} and numbers["complaints"] == {"open": 1}
    assert numbers["overdue"] == 1
    text_result = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert "raw backlog  2 waiting to be filed" in text_result.stdout


def test_logs_as_json_lines_with_the_level_chosen(tmp_path: Path) -> None:
    """``--log-format json`` writes one JSON object per line (time, level, logger, message);
    ``--log-level`` takes a level by name and refuses one it does not know."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n\n'
        f'[[connectors]]\nname = "files"\ntype = "files"\npath = "{tmp_path / "nope"}"\n',
        encoding="utf-8",
    )
    done = cli("--log-format", "json", "--config", str(config), "poll", "--once")
    assert done.returncode == 1
    [line] = [json.loads(text) for text in done.stderr.splitlines()]
    assert line["level"] == "ERROR" and line["logger"] == "omnichannel.poller"
    assert "does not exist" in line["message"] and line["time"].endswith("Z")
    errors_only = cli("--log-level", "error", "--config", str(config), "poll", "--once")
    assert "ERROR omnichannel.poller: connector files failed" in errors_only.stderr
    wrong = cli("--log-level", "loud", "--config", str(config), "poll", "--once")
    assert wrong.returncode == 2 and "'loud' is not one of" in wrong.stderr


@pytest.mark.slow
def test_sighup_reloads_the_configuration_in_place(tmp_path: Path) -> None:
    """SIGHUP with a valid new configuration: the same process comes back with it (a new
    connector appears in /healthz); with an invalid one it says why and runs on unchanged;
    SIGTERM still exits 0."""
    config, port = daemon_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}"), free_port()
    log_path = tmp_path / "run.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "omnichannel", "--config", str(config)),
                "run",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=log,
        )
    try:
        wait_for(lambda: healthz(port) is not None, what="the daemon")
        (tmp_path / "more").mkdir()
        original = config.read_text(encoding="utf-8")
        config.write_text(
            original
            + f'\n[[connectors]]\nname = "more"\ntype = "files"\npath = "{tmp_path / "more"}"\n',
            encoding="utf-8",
        )
        proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: "more" in ((healthz(port) or (0, {}))[1].get("connectors") or {}),
            what="the new connector",
        )
        assert proc.poll() is None  # the same process, started again in place
        config.write_text(original + "\n[server]\nport = -1\n", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration not reloaded" in log_path.read_text(), what="the refusal")
        assert "more" in (healthz(port) or (0, {}))[1]["connectors"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.postgres
@pytest.mark.slow
def test_serve_starts_while_the_database_is_down_and_answers_503_until_it_is_back(
    tmp_path: Path, postgres_url: str
) -> None:
    """``serve`` started while PostgreSQL refuses connections: it listens, /healthz and a
    signed webhook are answered 503 (the provider retries) rather than refused; once the
    database is back the same webhook is stored and filed."""
    from tests.conftest import _truncate
    from tests.proxy import SwitchableProxy

    _truncate(postgres_url)
    target = sa.make_url(postgres_url)
    proxy = SwitchableProxy(target.host or "127.0.0.1", target.port or 5432)
    proxy.down("refuse")
    url = target.set(host="127.0.0.1", port=proxy.port, query={"connect_timeout": "0.5"})
    config = daemon_config(tmp_path, url.render_as_string(hide_password=False))
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "omnichannel",
                "--config",
                str(config),
                "serve",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=log,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: healthz(port) is not None, what="the server to listen")
        status, health = healthz(port) or (0, {})
        assert status == 503 and health["database"] == "unavailable"
        assert timed_post(base_url, 5, timeout=5)[0] == 503
        proxy.up()
        wait_for(lambda: timed_post(base_url, 5, timeout=5)[0] == 200, what="the database back")
        wait_for(lambda: complaint_count(postgres_url) == 1, what="the complaint")
        assert (healthz(port) or (0, {}))[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        proxy.close()


@pytest.mark.slow
def test_run_with_imap_twilio_web_and_files(
    tmp_path: Path,
    mailbox: Any,  # noqa: F811 - the fixture
    fake: Any,  # noqa: F811 - the fixture
) -> None:
    """``omnichannel run`` with every kind of channel at once — a real Dovecot mailbox, Twilio
    (webhooks, and its message log on a loopback stand-in), the web form and a drop folder:
    each message becomes one complaint; SIGTERM exits 0; a restart continues from the cursors
    and files nothing twice."""
    from tests.test_imap import imap_options, mail
    from tests.test_twilio import sid

    imap = imap_options(mailbox.server)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    (tmp_path / "drop").mkdir()
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[filing]\ninterval = 0.2\n\n'
        "[[connectors]]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in imap.items())
        + "poll_interval = 0.3\n\n"
        f'[[connectors]]\nname = "sms"\ntype = "twilio"\nmode = "both"\npoll_interval = 0.3\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "{TOKEN}"\napi_base_url = "{fake.base_url}"\n\n'
        f'[[connectors]]\nname = "portal"\ntype = "web"\nsecret = "{SECRET}"\n\n'
        f'[[connectors]]\nname = "files"\ntype = "files"\npath = "{tmp_path / "drop"}"\n'
        "poll_interval = 0.3\n",
        encoding="utf-8",
    )
    mailbox.client.append("INBOX", mail(1, body="Jalan rusak di depan pasar."))
    fake.add(70, "Izin usaha belum terbit.")  # only in Twilio's log: the poll finds it
    (tmp_path / "drop" / "a.json").write_bytes(json_doc("drop-1", sender={"phone": "0812777"}))
    port = free_port()
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "run"]
    for attempt in range(2):
        with (tmp_path / "run.log").open("ab") as log:
            proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
        try:
            wait_for(lambda: healthz(port) is not None, what="the daemon")
            if attempt == 0:
                assert timed_post(f"http://127.0.0.1:{port}", 71)[0] == 200
                body = json.dumps({"message": "Petugas loket meminta uang.", "phone": "0814"})
                answer = requests.post(
                    f"http://127.0.0.1:{port}/webhooks/portal",
                    data=body.encode(),
                    headers=signed_headers(body.encode(), "msg_all_1"),
                    timeout=10,
                )
                assert answer.json()["outcome"] == "new"
            wait_for(lambda: complaint_count(url) == 5, what="five complaints", timeout=60)
            if attempt == 1:
                time.sleep(1.5)  # several polls of every connector after the restart
                assert complaint_count(url) == 5
            health = (healthz(port) or (0, {}))[1]
            assert {n: c["state"] for n, c in health["connectors"].items()} == {
                "email": "ok",
                "sms": "ok",
                "portal": "ok" if attempt == 0 else "waiting",
                "files": "ok",
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
    engine = create_engine(url)
    with engine.connect() as conn:
        ids = set(conn.execute(sa.select(raw_messages.c.external_id)).scalars())
    engine.dispose()
    assert {sid(70), sid(71), "drop-1"} <= ids and len(ids) == 5
    assert mailbox.uids(criteria="UNSEEN") == []


@pytest.fixture
def proxied(postgres_url: str) -> Iterator[tuple[Any, Any]]:
    """A proxy in front of the test PostgreSQL, and a configuration (one Twilio connector)
    whose database is reached through it."""
    from tests.conftest import _truncate
    from tests.proxy import SwitchableProxy

    _truncate(postgres_url)
    target = sa.make_url(postgres_url)
    proxy = SwitchableProxy(target.host or "127.0.0.1", target.port or 5432)
    url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    config = default_config(url=url)
    config.connectors = [
        ConnectorConfig.model_validate(
            {"name": "sms", "type": "twilio", "account_sid": ACCOUNT, "auth_token": TOKEN}
        )
    ]
    yield proxy, config
    proxy.close()


def timed_post(base_url: str, n: int, *, timeout: float = 30) -> tuple[int, float]:
    """POST signed SMS webhook ``n``; its status and how long the answer took."""
    webhook = f"{base_url}/webhooks/sms"
    fields = sms_fields(n)
    headers = {"Content-Type": FORM, "X-Twilio-Signature": sign(webhook, fields)}
    started = time.monotonic()
    answer = requests.post(webhook, data=fields, headers=headers, timeout=timeout)
    return answer.status_code, time.monotonic() - started


@pytest.mark.postgres
def test_a_database_that_hangs_costs_a_webhook_a_503_within_a_second(
    proxied: tuple[Any, Any], postgres_url: str
) -> None:
    """PostgreSQL behind a proxy that turns into a black hole (open connections go silent, new
    ones are accepted and never answered): a signed webhook and /healthz are answered 503
    within a second each; when it forwards again, webhooks are stored again."""
    from omnichannel.http import create_app
    from omnichannel.testing.http import serve_wsgi

    proxy, config = proxied
    with Inbox(config) as inbox, serve_wsgi(create_app(inbox)) as base_url:
        assert timed_post(base_url, 1)[0] == 200  # a pooled connection now exists
        proxy.down("blackhole")
        status, elapsed = timed_post(base_url, 2)
        assert status == 503 and elapsed < 1.0, elapsed  # the contract's deadline
        started = time.monotonic()
        health = requests.get(f"{base_url}/healthz", timeout=30)
        assert health.status_code == 503 and time.monotonic() - started < 1.0
        status, elapsed = timed_post(base_url, 3)  # a new connection never answered
        assert status == 503 and elapsed < 1.0, elapsed
        proxy.up()
        wait_for(lambda: timed_post(base_url, 2)[0] == 200, what="the database back")
        assert complaint_count(postgres_url) == 2


@pytest.mark.slow
def test_run_rides_out_an_imap_outage(tmp_path: Path) -> None:
    """The IMAP server stops for 30 s under ``run``: the connector reports the error and
    backs off while webhooks go on being answered; when the server is back, the mail that
    arrived meanwhile is filed, once."""
    from omnichannel.testing.dovecot import Dovecot
    from tests.test_imap import Mailbox, imap_options, mail

    if Dovecot.binary() is None:
        pytest.skip("Dovecot is not installed (apt-get install dovecot-imapd)")
    server = Dovecot().start()
    try:
        box = Mailbox(server)
        box.client.append("INBOX", mail(1, body="Lampu jalan mati."))
        box.close()
        url = f"sqlite:///{tmp_path / 'x.db'}"
        config = daemon_config(tmp_path, url)
        options = imap_options(server, poll_interval=0.3)
        config.write_text(
            config.read_text(encoding="utf-8")
            + "\n[[connectors]]\n"
            + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items()),
            encoding="utf-8",
        )
        port = free_port()
        command = [sys.executable, "-m", "omnichannel", "--config", str(config), "run"]
        with (tmp_path / "run.log").open("wb") as log:
            proc = subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
        try:
            wait_for(lambda: complaint_count(url) == 1, what="the first mail")
            server.stop(keep_mail=True)
            wait_for(
                lambda: (
                    ((healthz(port) or (0, {}))[1].get("connectors") or {})
                    .get("email", {})
                    .get("last_error")
                ),
                what="the outage noticed",
            )
            assert timed_post(f"http://127.0.0.1:{port}", 1)[0] == 200
            time.sleep(30)  # the outage
            server.start()
            box = Mailbox(server)
            box.client.append("INBOX", mail(2, body="Jembatan retak."))
            box.close()
            wait_for(
                lambda: complaint_count(url) == 3, what="the mail after the outage", timeout=150
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        assert complaint_count(url) == 3
    finally:
        server.stop()


@pytest.mark.postgres
@pytest.mark.slow
def test_three_replicas_share_the_work_and_the_mailbox_lease(
    tmp_path: Path,
    postgres_url: str,
    mailbox: Any,  # noqa: F811 - the fixture
) -> None:
    """Three ``run`` replicas on one PostgreSQL: one of them holds the mailbox's lease and
    polls it; webhooks sent to all three are answered by all three; after ``kill -9`` of the
    lease holder another replica takes the mailbox over within the lease retry time; every
    mail and every webhook is one complaint, once."""
    from omnichannel.leases import LEASE_RETRY
    from tests.conftest import _truncate
    from tests.test_imap import imap_options, mail

    _truncate(postgres_url)
    config = daemon_config(tmp_path, postgres_url)
    options = imap_options(mailbox.server, poll_interval=0.3)
    config.write_text(
        config.read_text(encoding="utf-8")
        + "\n[[connectors]]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items()),
        encoding="utf-8",
    )
    for n in range(10):
        mailbox.client.append("INBOX", mail(n))
    ports = [free_port() for _ in range(3)]
    logs = [tmp_path / f"replica-{i}.log" for i in range(3)]
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "run"]
    replicas = []
    for port, log_path in zip(ports, logs, strict=True):
        with log_path.open("wb") as log:
            replicas.append(
                subprocess.Popen([*command, "--port", str(port)], stdout=log, stderr=log)
            )
    try:
        for port in ports:
            wait_for(lambda port=port: healthz(port) is not None, what="every replica")
        for n in range(30):
            assert timed_post(f"http://127.0.0.1:{ports[n % 3]}", 100 + n)[0] == 200
        wait_for(lambda: complaint_count(postgres_url) == 40, what="40 complaints", timeout=60)
        holders = [i for i, path in enumerate(logs) if "lease email taken" in path.read_text()]
        assert len(holders) == 1, [path.read_text()[-500:] for path in logs]
        [holder] = holders
        os.kill(replicas[holder].pid, signal.SIGKILL)
        replicas[holder].wait(timeout=10)
        killed_at = time.monotonic()
        for n in range(10, 15):
            mailbox.client.append("INBOX", mail(n))
        wait_for(
            lambda: sum("lease email taken" in path.read_text() for path in logs) == 2,
            what="the takeover",
            timeout=LEASE_RETRY * 2 + 5,
        )
        assert time.monotonic() - killed_at < LEASE_RETRY * 2 + 5
        wait_for(lambda: complaint_count(postgres_url) == 45, what="45 complaints", timeout=60)
    finally:
        for proc in replicas:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=15)
    engine = create_engine(postgres_url)
    with engine.connect() as conn:
        tickets = list(conn.execute(sa.select(complaints.c.ticket)).scalars())
        raws = conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one()
    engine.dispose()
    assert len(tickets) == len(set(tickets)) == raws == 45
    assert mailbox.uids(criteria="UNSEEN") == []


@pytest.mark.postgres
@pytest.mark.slow
def test_postgresql_refusing_and_hanging_under_webhook_load(
    proxied: tuple[Any, Any], postgres_url: str
) -> None:
    """Under webhook load from 8 threads, PostgreSQL (behind a proxy) goes silent, comes
    back, refuses connections, comes back: every answer is 200 or a 503 given within a
    second; it recovers on its own; every message answered 200 is stored, and once the
    provider has retried the others, each is filed exactly once."""
    from omnichannel.http import create_app
    from omnichannel.testing.http import serve_wsgi

    proxy, config = proxied
    answers: list[tuple[int, int, float]] = []
    stop = threading.Event()
    with Inbox(config) as inbox, serve_wsgi(create_app(inbox)) as base_url:
        inbox.worker.start(interval=0.2)
        counter = iter(range(1, 1_000_000))
        lock = threading.Lock()

        def client() -> None:
            while not stop.is_set():
                with lock:
                    n = next(counter)
                answers.append((n, *timed_post(base_url, n)))

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        try:
            for phase in ("blackhole", "up", "refuse", "up"):
                time.sleep(2)
                if phase == "up":
                    proxy.up()
                else:
                    proxy.down(phase)
            time.sleep(3)
        finally:
            stop.set()
            for thread in clients:
                thread.join(timeout=60)
        late = [(s, e) for _, s, e in answers if s != 200 and (s != 503 or e >= 1.0)]
        assert late == []
        statuses = {s for _, s, _ in answers}
        assert statuses == {200, 503}  # the outages were seen, and the recoveries
        assert answers[-1][1] == 200
        retried = [n for n, s, _ in answers if s != 200]
        assert all(timed_post(base_url, n)[0] == 200 for n in retried)  # provider's retries
        wait_for(lambda: inbox.worker.backlog() == 0, what="the backlog")
    sent = {n for n, _, _ in answers}
    assert complaint_count(postgres_url) == len(sent)


def test_a_webhook_only_connector_gets_no_poller(tmp_path: Path) -> None:
    """A Twilio connector in ``mode = "webhook"`` is not polled by ``poll`` (nor ``run``):
    only the drop folder is, and asking for it by name is a usage error."""
    config = daemon_config(tmp_path, f"sqlite:///{tmp_path / 'x.db'}")
    result = CliRunner().invoke(main, ["poll", "--once", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert [line.split(":")[0] for line in result.stdout.splitlines()] == ["files"]
    chosen = CliRunner().invoke(
        main, ["poll", "--once", "--connector", "sms", "--config", str(config)]
    )
    assert chosen.exit_code == 2 and "does not poll" in chosen.output
