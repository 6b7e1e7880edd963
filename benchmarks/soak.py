"""Soak run: ``omnichannel run`` under a steady mixed load for minutes, watched for leaks.

One daemon (``python -m omnichannel run``, a subprocess on 127.0.0.1 with a fresh store) gets an
open-loop load of ``--rate`` messages per second for ``--minutes``, mixed by ``--mix`` (default
equal thirds) over its three ways in:

- **twilio**: inbound-SMS webhooks to ``POST /webhooks/sms``, signed with the official
  ``twilio`` ``RequestValidator`` (answered as soon as the payload is stored);
- **web**: portal submissions to ``POST /webhooks/portal``, signed the Standard Webhooks way
  (answered once filed, with the ticket; 202 with a receipt past ``filing.wait``);
- **files**: ``.json`` documents dropped (written under a dot-name, then renamed) into the
  ``files`` connector's folder, which the daemon polls every ``--poll-interval`` seconds and
  moves filed files out of, to ``processed/``.

Message *i* is due at ``start + i / rate``; ``--clients`` keep-alive connections (one thread
each) send the webhooks, the dispatcher drops the files itself.  Every message is unique: its
own external id, its own sender (phone number) and its own text, so each must become a new
complaint.  Every ``--sample`` seconds (and once before the load) the server process is
measured: RSS (``VmRSS`` from ``/proc/PID/status``, and ``RssAnon``, its heap part), open file
descriptors (``/proc/PID/fd``; under load they include the ``--clients`` connections), threads,
the raw backlog (``omnichannel_raw_backlog`` from ``/metrics``), whether ``/healthz`` answered
200, and the p99 answer time of the requests of the interval.

When the time is up the load stops, the backlog is left to drain (``--drain-timeout``), one last
sample is taken, and the daemon gets SIGTERM.  Then the store is read directly: every message
sent and every file dropped must be exactly one raw row (status ``processed``, outcome ``new``)
with a complaint of its own, nothing quarantined, every file moved to ``processed/`` once.

Checks (any failure exits 1, after the full report): every answer 2xx, /healthz 200 at every
sample, RSS at most ``--max-rss-mb`` (the target: 150 MB), RSS flat (least-squares slope over
the second half of the load at most ``--max-rss-slope`` MB/min), open FDs flat (the second
half's maximum at most ``--fd-slack`` above the first half's, and the drained sample at most
``--fd-slack`` above the one before the load), backlog drained, exit status 0 within 10 s of
SIGTERM, the store as described, and no ERROR line or traceback in the daemon's log.  In a
run of a few minutes the second half still holds warm-up (caches filling), so "RSS flat" needs
``--minutes`` 10 or more to mean anything.

SQLite in a temporary directory by default; ``--database-url`` names a PostgreSQL server on
which a throwaway database is created for the run and dropped after it.  Nothing is sent
anywhere but 127.0.0.1.  Run from the repository root::

    .venv/bin/python benchmarks/soak.py                       # 10 minutes, 30 msg/s, SQLite
    .venv/bin/python benchmarks/soak.py --minutes 2 --json
    .venv/bin/python benchmarks/soak.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import math
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import NAMES, SURNAMES, complaint_text

HOST = "127.0.0.1"  # the only address any request of this script goes to
ACCOUNT = "AC" + "50" * 16
TOKEN = "soak-auth-token-0123456789abcdef"
OUR_NUMBER = "+6281100000001"
WEB_KEY = b"kunci-portal-soak-32-bytes-nya!!"
WEB_SECRET = "whsec_" + base64.b64encode(WEB_KEY).decode()
CONNECTORS = {"twilio": "sms", "web": "portal", "files": "files"}
PATHS = {"twilio": "/webhooks/sms", "web": "/webhooks/portal"}
FILE_CHANNELS = ("sms", "whatsapp", "email", "web")
TARGET_RSS_MB = 150.0
SHUTDOWN_LIMIT = 10.0  # seconds the daemon promises to exit in after SIGTERM
STARTUP_TIMEOUT = 60.0
LOG_MARKS = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")


def library_version() -> str:
    """The repository's commit, "+changes" when the library's files differ from it (the run
    used the working tree); "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
        if done.returncode:
            raise OSError(done.stderr)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        changed = git("status", "--porcelain", "--", "omnichannel", "connectors", "normalizer")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


class SoakError(RuntimeError):
    """Something went wrong that leaves nothing (more) to measure."""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values``; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(x, y)`` points; None with fewer than two distinct x."""
    if len({x for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    num = sum((x - mean_x) * (y - mean_y) for x, y in points)
    return num / sum((x - mean_x) ** 2 for x, _ in points)


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# -- the messages ------------------------------------------------------------------------------


def parse_mix(text: str) -> list[str]:
    """``twilio=1,web=1,files=1`` -> the kinds in a repeating order spreading each evenly."""
    weights: dict[str, int] = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        kind = kind.strip()
        if kind not in CONNECTORS:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r} (twilio, web, files)")
        try:
            weights[kind] = int(weight or "1")
        except ValueError:
            raise argparse.ArgumentTypeError(f"weight of {kind} is not an integer") from None
        if weights[kind] < 0:
            raise argparse.ArgumentTypeError(f"weight of {kind} is negative")
    total = sum(weights.values())
    if total == 0 or total > 100:
        raise argparse.ArgumentTypeError("weights must add up to between 1 and 100")
    cycle: list[str] = []
    credit = dict.fromkeys(weights, 0)
    for _ in range(total):  # smooth weighted round robin
        for name, share in weights.items():
            credit[name] += share
        best = max(credit, key=lambda k: credit[k])
        credit[best] -= total
        cycle.append(best)
    return cycle


def external_id(kind: str, index: int) -> str:
    if kind == "twilio":
        return f"SM{index:032x}"
    return f"soak-{kind}-{index:07d}"


def message_text(index: int) -> tuple[random.Random, str]:
    rng = random.Random(f"soak-{index}")
    return rng, f"{complaint_text(rng)[1]} (laporan nomor {index})"


def twilio_request(
    index: int, port: int, validator: RequestValidator
) -> tuple[bytes, dict[str, str]]:
    _, text = message_text(index)
    sid = external_id("twilio", index)
    fields = {
        "ToCountry": "ID",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "SmsSid": sid,
        "SmsStatus": "received",
        "Body": text,
        "FromCountry": "ID",
        "To": OUR_NUMBER,
        "NumSegments": "3",
        "MessageSid": sid,
        "AccountSid": ACCOUNT,
        "From": f"+62812{index:08d}",
        "ApiVersion": "2010-04-01",
    }
    url = f"http://{HOST}:{port}{PATHS['twilio']}"
    headers = {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Twilio-Signature": validator.compute_signature(url, fields),
    }
    return urlencode(fields).encode(), headers


def web_request(index: int) -> tuple[bytes, dict[str, str]]:
    rng, text = message_text(index)
    body = json.dumps(
        {
            "name": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
            "phone": f"0813{index:08d}",
            "message": text,
        },
        ensure_ascii=False,
    ).encode()
    webhook_id, stamp = external_id("web", index), str(int(time.time()))
    digest = hmac.new(WEB_KEY, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "Content-Type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    return body, headers


def file_document(index: int) -> bytes:
    rng, text = message_text(index)
    channel = FILE_CHANNELS[index % len(FILE_CHANNELS)]
    document: dict[str, Any] = {
        "channel": channel,
        "external_id": external_id("files", index),
        "sender": {
            "name": f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
            "phone": f"0857{index:08d}",
        },
        "text": text,
    }
    if channel == "email":
        document["sender"]["email"] = f"warga{index:07d}@contoh.co.id"
        document["subject"] = f"Pengaduan nomor {index}"
    return json.dumps(document, ensure_ascii=False).encode()


# -- the daemon --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.create_server((HOST, 0)) as sock:
        return int(sock.getsockname()[1])


def toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def write_config(folder: Path, poll_interval: float) -> Path:
    config = folder / "omnichannel.toml"
    config.write_text(
        '[database]\nurl = "${SOAK_DATABASE_URL}"\n\n'
        f"[server]\nhost = {toml_string(HOST)}\n\n"
        "[[connectors]]\n"
        'name = "files"\ntype = "files"\n'
        f"path = {toml_string(str(folder / 'drop'))}\npoll_interval = {poll_interval}\n\n"
        "[[connectors]]\n"
        'name = "sms"\ntype = "twilio"\nmode = "webhook"\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "${{SOAK_TWILIO_AUTH_TOKEN}}"\n'
        "# nothing of this run leaves the machine (no media are sent, but to be sure)\n"
        f'api_base_url = "http://{HOST}:9"\n\n'
        "[[connectors]]\n"
        'name = "portal"\ntype = "web"\nsecret = "${SOAK_WEB_SECRET}"\n',
        encoding="utf-8",
    )
    return config


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_daemon(folder: Path, database_url: str, threads: int, poll_interval: float) -> Daemon:
    (folder / "drop").mkdir()
    config, port, log = write_config(folder, poll_interval), free_port(), folder / "run.log"
    env = {
        **os.environ,
        "SOAK_DATABASE_URL": database_url,
        "SOAK_TWILIO_AUTH_TOKEN": TOKEN,
        "SOAK_WEB_SECRET": WEB_SECRET,
    }
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "run"]
    command += ["--host", HOST, "--port", str(port), "--threads", str(threads)]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    daemon = Daemon(process, port, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while get(port, "/healthz")[0] != 200:
        if not daemon.alive():
            raise SoakError(f"the daemon exited with {process.returncode}:\n{daemon.log_tail()}")
        if time.monotonic() > deadline:
            stop_daemon(daemon)
            raise SoakError(f"the daemon did not answer /healthz in {STARTUP_TIMEOUT:.0f} s")
        time.sleep(0.1)
    return daemon


def stop_daemon(daemon: Daemon) -> tuple[int | None, float]:
    """SIGTERM; the exit status (None: killed after 30 s) and the seconds it took."""
    started = time.monotonic()
    daemon.process.send_signal(signal.SIGTERM)
    try:
        code: int | None = daemon.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        daemon.process.wait()
        code = None
    return code, time.monotonic() - started


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    """One GET on a fresh connection: status and body; status 0 when it failed."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.read()
    except (OSError, http.client.HTTPException):
        return 0, b""
    finally:
        connection.close()


def gauge(metrics: bytes, name: str) -> float | None:
    for line in metrics.decode("utf-8", "replace").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


# -- the load ----------------------------------------------------------------------------------


@dataclass
class Answer:
    kind: str
    index: int
    status: int  # 0: no answer (connection error)
    seconds: float
    done: float  # time.monotonic() when it came
    lateness: float  # seconds after its due time it was sent
    retried: bool
    body: bytes = b""


class Client:
    """One keep-alive HTTP/1.1 connection to the daemon on 127.0.0.1."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: http.client.HTTPConnection | None = None
        self.used = False

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, bool]:
        """Status, body and whether it was sent again; status 0 when no answer came.  A
        connection the server closed while idle is noticed only when used: then (and only when
        nothing was answered) the request is sent once more on a new connection, which every
        webhook allows (a message's id makes a second delivery a no-op)."""
        for attempt in range(2):
            reused = self.used
            try:
                if self.connection is None:
                    self.connection = http.client.HTTPConnection(HOST, self.port, timeout=60)
                    self.used = reused = False
                self.connection.request(method, path, body=body, headers=headers or {})
                self.used = True
                answer = self.connection.getresponse()
                return answer.status, answer.read(), attempt > 0
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()
                if not reused or attempt:
                    return 0, b"", attempt > 0
            except (OSError, http.client.HTTPException):
                self.close()
                return 0, b"", attempt > 0
        return 0, b"", True

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection, self.used = None, False


@dataclass
class Load:
    """The open-loop load: a dispatcher thread and ``clients`` sender threads."""

    port: int
    drop: Path
    rate: float
    seconds: float
    cycle: list[str]
    clients: int
    answers: list[Answer] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # file names
    sent: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    def __post_init__(self) -> None:
        self.jobs: queue.Queue[tuple[int, str, float] | None] = queue.Queue()
        self.abort = threading.Event()
        self.threads: list[threading.Thread] = []
        self.connections: list[Client] = []
        self.validator = RequestValidator(TOKEN)

    def start(self) -> None:
        """Open the connections (one GET /healthz each) and start sending."""
        self.connections = [Client(self.port) for _ in range(self.clients)]
        for client in self.connections:
            client.request("GET", "/healthz")
        self.started = time.monotonic()
        self.threads = [
            threading.Thread(target=self._send, args=(c,), name=f"client-{n}", daemon=True)
            for n, c in enumerate(self.connections)
        ]
        self.threads.append(threading.Thread(target=self._dispatch, name="dispatch", daemon=True))
        for thread in self.threads:
            thread.start()

    def _dispatch(self) -> None:
        index = 0
        try:
            while not self.abort.is_set():
                due = self.started + index / self.rate
                if due - self.started >= self.seconds:
                    break
                delay = due - time.monotonic()
                if delay > 0 and self.abort.wait(delay):
                    break
                kind = self.cycle[index % len(self.cycle)]
                if kind == "files":
                    self._drop(index)
                else:
                    self.jobs.put((index, kind, due))
                self.sent[kind] += 1
                index += 1
        finally:
            self.ended = time.monotonic()
            for _ in range(self.clients):
                self.jobs.put(None)

    def _drop(self, index: int) -> None:
        name = f"{external_id('files', index)}.json"
        hidden = self.drop / f".{name}.part"  # the connector skips dot-files
        hidden.write_bytes(file_document(index))
        os.replace(hidden, self.drop / name)
        self.dropped.append(name)

    def _send(self, client: Client) -> None:
        while (job := self.jobs.get()) is not None:
            index, kind, due = job
            if kind == "twilio":
                body, headers = twilio_request(index, self.port, self.validator)
            else:
                body, headers = web_request(index)
            sent = time.monotonic()
            status, answer, retried = client.request("POST", PATHS[kind], body, headers)
            done = time.monotonic()
            keep = answer if kind == "web" or not 200 <= status < 300 else b""
            self.answers.append(
                Answer(kind, index, status, done - sent, done, sent - due, retried, keep)
            )
            if not 200 <= status < 300 and len(self.errors) < 20:
                self.errors.append(f"{kind} #{index}: {status} {answer[:200]!r}")

    def close(self) -> None:
        """Close the connections (kept open after the load until its last sample)."""
        for client in self.connections:
            client.close()

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        return not self.running()

    def messages(self) -> list[tuple[str, int]]:
        """(kind, index) of every message sent or dropped."""
        sent = [(a.kind, a.index) for a in self.answers]
        return sent + [("files", int(name.split("-")[-1].split(".")[0])) for name in self.dropped]


# -- the samples -------------------------------------------------------------------------------


@dataclass
class Sample:
    t: float  # seconds since the load started
    phase: str  # before | load | drained
    sent: int
    failed: int
    rss_mb: float
    anon_mb: float  # RssAnon: the heap (Python objects, SQLite caches), not mapped files
    fds: int
    threads: int
    backlog: float | None
    healthz: int
    twilio_p99_ms: float | None
    web_p99_ms: float | None
    lag_max_s: float | None


def proc_status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return dict(
            (line.split(":", 1)[0], line.split(":", 1)[1].strip()) for line in status if ":" in line
        )


class Sampler:
    def __init__(self, daemon: Daemon, load: Load) -> None:
        self.daemon, self.load = daemon, load
        self.samples: list[Sample] = []
        self.seen = 0  # answers already counted in an interval

    def take(self, phase: str) -> Sample:
        pid = self.daemon.pid
        status = proc_status(pid)  # the process first, then the HTTP calls, which open sockets
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        code, metrics = get(self.daemon.port, "/metrics")
        health = get(self.daemon.port, "/healthz")[0]
        answers = self.load.answers[self.seen :]
        self.seen += len(answers)

        def p99(kind: str) -> float | None:
            return rounded(percentile([1000 * a.seconds for a in answers if a.kind == kind], 0.99))

        load = self.load
        sample = Sample(
            t=round(time.monotonic() - load.started, 1) if load.started else 0.0,
            phase=phase,
            sent=sum(load.sent.values()),
            failed=sum(not 200 <= a.status < 300 for a in load.answers),
            rss_mb=round(int(status["VmRSS"].split()[0]) / 1024, 1),
            anon_mb=round(int(status["RssAnon"].split()[0]) / 1024, 1),
            fds=fds,
            threads=int(status["Threads"]),
            backlog=gauge(metrics, "omnichannel_raw_backlog") if code == 200 else None,
            healthz=health,
            twilio_p99_ms=p99("twilio"),
            web_p99_ms=p99("web"),
            lag_max_s=rounded(max((a.lateness for a in answers), default=None), 2),
        )
        self.samples.append(sample)
        progress(
            f"[{sample.t:6.0f} s] {phase:7} sent {sample.sent:6}  non-2xx {sample.failed}  "
            f"RSS {sample.rss_mb:6.1f} MB  FDs {sample.fds:3}  threads {sample.threads:2}  "
            f"backlog {sample.backlog}  healthz {sample.healthz}"
        )
        return sample


# -- the store ---------------------------------------------------------------------------------


@contextmanager
def database(server_url: str | None, folder: Path, keep: bool) -> Iterator[str]:
    """SQLite in ``folder``; or a throwaway database on the PostgreSQL server of
    ``server_url`` (whose own database is only connected to for CREATE and DROP)."""
    if server_url is None:
        yield f"sqlite:///{folder / 'omnichannel.db'}"
        return
    server = sa.make_url(server_url)
    if server.get_backend_name() != "postgresql":
        raise SoakError("--database-url must name a PostgreSQL server (SQLite is the default)")
    name = f"omnichannel_soak_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        server, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.SQLAlchemyError as exc:
        raise SoakError(f"cannot create a database on {server_url}: {exc}") from None
    progress(f"created database {name}")
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        if keep:
            progress(f"kept database {name}")
        else:
            with admin.connect() as conn:
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                    ),
                    {"n": name},
                )
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            progress(f"dropped database {name}")
        admin.dispose()


def verify(url: str, load: Load, drop: Path) -> dict[str, Any]:
    """What became of every message sent and every file dropped, read from the store (after
    the daemon has exited) and from the drop folder."""
    expected = {(CONNECTORS[kind], external_id(kind, index)) for kind, index in load.messages()}
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            raws = conn.execute(
                sa.text(
                    "SELECT connector, external_id, status, outcome, complaint_id FROM raw_messages"
                )
            ).all()

            def count(table: str) -> int:
                return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())

            totals = {t: count(t) for t in ("complaints", "messages", "quarantine")}
    finally:
        engine.dispose()
    found = {(r.connector, r.external_id) for r in raws}
    ours = [r for r in raws if (r.connector, r.external_id) in expected]
    complaint_ids = Counter(r.complaint_id for r in ours if r.complaint_id is not None)
    processed = drop / "processed"
    moved = sorted(p.name for p in processed.iterdir()) if processed.is_dir() else []
    pending = sorted(p.name for p in drop.iterdir() if p.is_file())
    result: dict[str, Any] = {
        "expected": len(expected),
        "raw_rows": len(raws),
        "missing": len(expected - found),
        "missing_examples": sorted(expected - found)[:5],
        "unexpected": len(found - expected),
        "unexpected_examples": sorted(found - expected)[:5],
        "raw_status": dict(Counter(r.status for r in ours)),
        "raw_outcome": dict(Counter(str(r.outcome) for r in ours)),
        "without_complaint": sum(r.complaint_id is None for r in ours),
        "complaints_shared": sum(1 for n in complaint_ids.values() if n > 1),
        "complaints": totals["complaints"],
        "messages": totals["messages"],
        "quarantine_rows": totals["quarantine"],
        "files_dropped": len(load.dropped),
        "files_pending": len(pending),
        "files_moved": len(moved),
        "files_moved_unexpected": sorted(set(moved) - set(load.dropped))[:5],
        "files_not_moved": len(set(load.dropped) - set(moved)),
    }
    n = len(expected)
    result["ok"] = (
        result["missing"] == 0
        and result["unexpected"] == 0
        and result["raw_status"] == ({"processed": n} if n else {})
        and result["raw_outcome"] == ({"new": n} if n else {})
        and result["without_complaint"] == 0
        and result["complaints_shared"] == 0
        and result["complaints"] == n
        and result["messages"] == n
        and result["quarantine_rows"] == 0
        and result["files_pending"] == 0
        and not result["files_moved_unexpected"]
        and result["files_not_moved"] == 0
        and result["files_moved"] == len(load.dropped)
    )
    return result


def scan_log(log: Path) -> dict[str, Any]:
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    notable = [line for line in lines if any(mark in line for mark in LOG_MARKS)]
    levels = Counter(mark.strip() for line in notable for mark in LOG_MARKS if mark in line)
    return {
        "lines": len(lines),
        "warnings": levels["WARNING"],
        "errors": levels["ERROR"] + levels["CRITICAL"],
        "tracebacks": levels["Traceback"],
        "notable": notable[:15],
        "last": lines[-3:],
    }


# -- the run -----------------------------------------------------------------------------------


def soak(args: argparse.Namespace, folder: Path, url: str) -> dict[str, Any]:
    cycle: list[str] = args.mix
    library = library_version()
    progress(f"library at {library} (the daemon imports the working tree)")
    progress(
        f"soak: {args.minutes:g} min at {args.rate:g} msg/s ({'/'.join(cycle)}), "
        f"samples every {args.sample:g} s, store {url.split(':', 1)[0]}, work dir {folder}"
    )
    daemon = start_daemon(folder, url, args.server_threads, args.poll_interval)
    progress(f"daemon pid {daemon.pid} on {HOST}:{daemon.port}")
    load = Load(daemon.port, folder / "drop", args.rate, args.minutes * 60, cycle, args.clients)
    sampler = Sampler(daemon, load)
    problems: list[str] = []
    drain_seconds: float | None = None
    try:
        sampler.take("before")
        load.start()
        next_sample = load.started + args.sample
        while load.running():
            if not daemon.alive():
                load.abort.set()
                problems.append(f"the daemon exited with {daemon.process.returncode} under load")
                break
            if time.monotonic() >= next_sample:
                sampler.take("load")
                next_sample += args.sample
            time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
        if not load.join(timeout=120):
            problems.append("requests still unanswered 120 s after the load ended")
            load.abort.set()
        if sampler.samples[-1].t < load.ended - load.started - 1 and daemon.alive():
            sampler.take("load")  # the end of the load, when it fell between two samples
        load.close()  # the drained sample, as the one before the load, has no client connection
        drain_started = time.monotonic()
        while daemon.alive() and time.monotonic() - drain_started < args.drain_timeout:
            status, metrics = get(daemon.port, "/metrics")
            backlog = gauge(metrics, "omnichannel_raw_backlog") if status == 200 else None
            pending = any(p.is_file() for p in (folder / "drop").iterdir())
            if backlog == 0 and not pending:
                drain_seconds = time.monotonic() - drain_started
                break
            time.sleep(0.2)
        else:
            if daemon.alive():
                problems.append(f"backlog not drained within {args.drain_timeout:g} s")
        if daemon.alive():
            sampler.take("drained")
    finally:
        shutdown_seconds: float | None = None
        if daemon.alive():
            progress("SIGTERM")
            exit_code, shutdown_seconds = stop_daemon(daemon)
        else:
            exit_code = daemon.process.returncode
            if not any("exited" in problem for problem in problems):
                problems.append(f"the daemon exited by itself, with {exit_code}")
        load.abort.set()
    progress(f"exit {exit_code} after {rounded(shutdown_seconds, 2)} s; verifying the store")
    verification = verify(url, load, folder / "drop")
    log = scan_log(daemon.log)
    summary = summarize(args, load, sampler.samples, drain_seconds, exit_code, shutdown_seconds)
    checks = run_checks(args, summary, sampler.samples, verification, log, problems)
    return {
        "parameters": {
            "minutes": args.minutes,
            "rate": args.rate,
            "mix": dict(Counter(cycle)),
            "sample_seconds": args.sample,
            "clients": args.clients,
            "server_threads": args.server_threads,
            "poll_interval": args.poll_interval,
            "store": url.split(":", 1)[0],
            "library": library,
            "library_at_end": library_version(),
            "python": sys.version.split()[0],
            "load_average_at_start": LOAD_AT_START,
            "load_average_at_end": round(os.getloadavg()[0], 2),
        },
        "samples": [asdict(s) for s in sampler.samples],
        "summary": summary,
        "verification": verification,
        "log": log,
        "load_errors": load.errors,
        "checks": checks,
        "ok": all(c["ok"] for c in checks),
    }


def summarize(
    args: argparse.Namespace,
    load: Load,
    samples: list[Sample],
    drain_seconds: float | None,
    exit_code: int | None,
    shutdown_seconds: float | None,
) -> dict[str, Any]:
    seconds = args.minutes * 60
    during = [s for s in samples if s.phase == "load"]
    second_half = [s for s in during if s.t >= seconds / 2]
    rss = [s.rss_mb for s in samples]
    fds = [s.fds for s in samples]
    web_bodies = [json.loads(a.body) for a in load.answers if a.kind == "web" and a.status == 200]
    latency = {
        kind: {
            "p50_ms": rounded(
                percentile([1000 * a.seconds for a in load.answers if a.kind == kind], 0.5)
            ),
            "p99_ms": rounded(
                percentile([1000 * a.seconds for a in load.answers if a.kind == kind], 0.99)
            ),
            "max_ms": rounded(
                max((1000 * a.seconds for a in load.answers if a.kind == kind), default=None)
            ),
        }
        for kind in ("twilio", "web")
    }
    load_seconds = (load.ended or time.monotonic()) - load.started
    return {
        "load_seconds": round(load_seconds, 1),
        "sent": dict(load.sent),
        "sent_total": sum(load.sent.values()),
        "rate_achieved": round(sum(load.sent.values()) / load_seconds, 2) if load_seconds else None,
        "lateness_max_s": rounded(max((a.lateness for a in load.answers), default=None), 3),
        "non_2xx": sum(not 200 <= a.status < 300 for a in load.answers),
        "no_answer": sum(a.status == 0 for a in load.answers),
        "resent_after_idle_close": sum(a.retried for a in load.answers),
        "web_answered_202": sum(a.kind == "web" and a.status == 202 for a in load.answers),
        "web_outcomes": dict(Counter(b.get("outcome") for b in web_bodies)),
        "latency": latency,
        "rss_mb": {"first": rss[0], "last": rss[-1], "max": max(rss)},
        "anon_mb": {"first": samples[0].anon_mb, "last": samples[-1].anon_mb},
        "fds": {"first": fds[0], "last": fds[-1], "max": max(fds)},
        "fds_max_first_half": max(
            s.fds for s in samples if s.phase == "before" or s.t < seconds / 2
        ),
        "fds_max_second_half": max((s.fds for s in second_half), default=None),
        "threads": {"first": samples[0].threads, "last": samples[-1].threads},
        "rss_slope_mb_per_min_second_half": rounded(
            slope([(s.t / 60, s.rss_mb) for s in second_half]), 3
        ),
        "anon_slope_mb_per_min_second_half": rounded(
            slope([(s.t / 60, s.anon_mb) for s in second_half]), 3
        ),
        "fds_slope_per_min_second_half": rounded(
            slope([(s.t / 60, s.fds) for s in second_half]), 2
        ),
        "healthz_not_200": sum(s.healthz != 200 for s in samples),
        "backlog_max": max((s.backlog for s in samples if s.backlog is not None), default=None),
        "drain_seconds": rounded(drain_seconds, 1),
        "exit_code": exit_code,
        "shutdown_seconds": rounded(shutdown_seconds, 2),
    }


def run_checks(
    args: argparse.Namespace,
    summary: dict[str, Any],
    samples: list[Sample],
    verification: dict[str, Any],
    log: dict[str, Any],
    problems: list[str],
) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": bool(ok), "detail": detail})

    for problem in problems:
        check("run", False, problem)
    check("answers 2xx", summary["non_2xx"] == 0, f"{summary['non_2xx']} non-2xx")
    check(
        "healthz 200",
        summary["healthz_not_200"] == 0,
        f"{summary['healthz_not_200']} of {len(samples)} samples not 200",
    )
    rss_max = summary["rss_mb"]["max"]
    check("RSS max", rss_max <= args.max_rss_mb, f"{rss_max} MB (limit {args.max_rss_mb:g})")
    rss_slope = summary["rss_slope_mb_per_min_second_half"]
    check(
        "RSS flat",
        rss_slope is not None and rss_slope <= args.max_rss_slope,
        f"{rss_slope} MB/min over the second half (limit {args.max_rss_slope:g})",
    )
    first_half, second_half = summary["fds_max_first_half"], summary["fds_max_second_half"]
    check(
        "FDs flat under load",
        second_half is not None and second_half <= first_half + args.fd_slack,
        f"max {second_half} in the second half, {first_half} in the first (slack {args.fd_slack})",
    )
    fds = summary["fds"]
    drained = samples[-1].phase == "drained"
    check(
        "FDs back when idle",
        drained and fds["last"] <= fds["first"] + args.fd_slack,
        f"{fds['last']} drained, {fds['first']} before the load (slack {args.fd_slack})",
    )
    check(
        "backlog drained",
        summary["drain_seconds"] is not None,
        f"in {summary['drain_seconds']} s (limit {args.drain_timeout:g})",
    )
    check(
        "SIGTERM",
        summary["exit_code"] == 0
        and summary["shutdown_seconds"] is not None
        and summary["shutdown_seconds"] < SHUTDOWN_LIMIT,
        f"exit {summary['exit_code']} after {summary['shutdown_seconds']} s "
        f"(limit {SHUTDOWN_LIMIT:g})",
    )
    v = verification
    check(
        "store",
        v["ok"],
        f"{v['expected']} sent, {v['raw_rows']} raw rows {v['raw_status']}, outcomes "
        f"{v['raw_outcome']}, {v['complaints']} complaints, {v['quarantine_rows']} quarantined, "
        f"{v['missing']} missing, {v['complaints_shared']} complaints shared",
    )
    check(
        "files",
        v["files_pending"] == 0 and v["files_not_moved"] == 0 and not v["files_moved_unexpected"],
        f"{v['files_dropped']} dropped, {v['files_moved']} moved, {v['files_pending']} left",
    )
    check(
        "log",
        log["errors"] == 0 and log["tracebacks"] == 0,
        f"{log['errors']} ERROR, {log['tracebacks']} tracebacks, {log['warnings']} WARNING",
    )
    return checks


# -- the report --------------------------------------------------------------------------------


def cell(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def report(result: dict[str, Any]) -> str:
    columns = [
        ("t s", "t"),
        ("phase", "phase"),
        ("sent", "sent"),
        ("non-2xx", "failed"),
        ("RSS MB", "rss_mb"),
        ("anon MB", "anon_mb"),
        ("FDs", "fds"),
        ("threads", "threads"),
        ("backlog", "backlog"),
        ("healthz", "healthz"),
        ("twilio p99 ms", "twilio_p99_ms"),
        ("web p99 ms", "web_p99_ms"),
        ("lag max s", "lag_max_s"),
    ]
    rows = [[cell(sample[key]) for _, key in columns] for sample in result["samples"]]
    widths = [max(len(title), *(len(r[i]) for r in rows)) for i, (title, _) in enumerate(columns)]
    lines = ["  ".join(t.rjust(w) for (t, _), w in zip(columns, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    p, s, v = result["parameters"], result["summary"], result["verification"]
    rss, fds = s["rss_mb"], s["fds"]
    lines += [
        "",
        f"load: {s['sent_total']} messages in {s['load_seconds']} s ({s['rate_achieved']} msg/s; "
        + ", ".join(f"{k} {n}" for k, n in sorted(s["sent"].items()))
        + f"), {p['store']}, library {p['library']}"
        + ("" if p["library_at_end"] == p["library"] else f" (at the end {p['library_at_end']})")
        + ", load average "
        f"{p['load_average_at_start']} -> {p['load_average_at_end']}",
        f"RSS MB        first {rss['first']}  last {rss['last']}  max {rss['max']}  "
        f"(target <= {TARGET_RSS_MB:g})",
        f"RSS slope     {s['rss_slope_mb_per_min_second_half']} MB/min over the second half "
        f"(anon {s['anon_slope_mb_per_min_second_half']}; anon first {s['anon_mb']['first']}, "
        f"last {s['anon_mb']['last']} MB)",
        f"FDs           first {fds['first']}  last {fds['last']}  max {fds['max']}  "
        f"(slope {s['fds_slope_per_min_second_half']}/min over the second half)",
        f"answers       non-2xx {s['non_2xx']} (no answer {s['no_answer']}), resent after an "
        f"idle close {s['resent_after_idle_close']}, web 202 {s['web_answered_202']}, web "
        f"outcomes {s['web_outcomes']}",
        "latency       "
        + ", ".join(
            f"{kind} p50 {x['p50_ms']} / p99 {x['p99_ms']} / max {x['max_ms']} ms"
            for kind, x in s["latency"].items()
        )
        + f"; sent up to {s['lateness_max_s']} s late",
        f"drain         {s['drain_seconds']} s; backlog max {s['backlog_max']}",
        f"shutdown      exit {s['exit_code']} in {s['shutdown_seconds']} s",
        f"store         {v['expected']} sent, {v['raw_rows']} raw {v['raw_status']}, "
        f"{v['complaints']} complaints, {v['quarantine_rows']} quarantined; files "
        f"{v['files_dropped']} dropped / {v['files_moved']} moved / {v['files_pending']} left",
        "",
    ]
    lines += [
        f"{'ok  ' if c['ok'] else 'FAIL'}  {c['check']}: {c['detail']}" for c in result["checks"]
    ]
    if result["load_errors"]:
        lines += ["", "first failed requests:", *result["load_errors"]]
    if result["log"]["notable"]:
        lines += ["", "daemon log, WARNING and above (first 15):", *result["log"]["notable"]]
    lines += ["", "PASS" if result["ok"] else "FAIL"]
    return "\n".join(lines)


LOAD_AT_START = round(os.getloadavg()[0], 2)


def positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text}")
        return value

    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """The docstring as it is written, and each option's default."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--minutes", type=positive(float), default=10.0, help="load duration")
    parser.add_argument("--rate", type=positive(float), default=30.0, help="messages per second")
    parser.add_argument(
        "--mix", type=parse_mix, default="twilio=1,web=1,files=1", help="weights of the kinds"
    )
    parser.add_argument("--sample", type=positive(float), default=15.0, help="seconds apart")
    parser.add_argument(
        "--database-url",
        help="a PostgreSQL server (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres): "
        "a throwaway database is created on it and dropped afterwards; default SQLite in the "
        "temporary directory",
    )
    parser.add_argument("--clients", type=positive(int), default=6, help="sender connections")
    parser.add_argument("--server-threads", type=positive(int), default=8, help="run --threads")
    parser.add_argument(
        "--poll-interval", type=positive(float), default=1.0, help="files connector poll, s"
    )
    parser.add_argument("--drain-timeout", type=positive(float), default=120.0, help="seconds")
    parser.add_argument(
        "--max-rss-mb", type=positive(float), default=TARGET_RSS_MB, help="RSS limit (target)"
    )
    parser.add_argument(
        "--max-rss-slope", type=float, default=0.5, help="MB/min over the second half"
    )
    parser.add_argument("--fd-slack", type=int, default=10, help="FDs allowed above a baseline")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and database")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="omnichannel-soak-"))
    ok = False
    try:
        with database(args.database_url, folder, args.keep) as url:
            result = soak(args, folder, url)
        ok = result["ok"]
        print(json.dumps(result, indent=2) if args.json else report(result))
        return 0 if ok else 1
    except SoakError as exc:
        progress(f"soak: {exc}")
        return 1
    finally:
        if args.keep or not ok:
            progress(f"work dir kept: {folder} (daemon log: {folder / 'run.log'})")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
