"""Webhook benchmark: signed Twilio webhooks through ``omnichannel serve``, beside a floor.

``omnichannel serve`` answers a provider webhook as soon as its raw payload is committed
(``raw_messages``, status ``received``); a filing worker thread in the same process then files
the stored rows (status ``processed``, a complaint each, the acknowledgement in the outbox).
This script measures both halves, in one run, on loopback, SQLite in a temporary directory:

1. **Acceptance** (closed loop). ``--concurrency`` client connections (keep-alive, one thread
   each) send prebuilt signed inbound-SMS webhooks as fast as they are answered, to each of two
   servers in turn, both waitress with ``--server-threads`` threads, each a fresh subprocess
   with a fresh database:

   - **floor**: a minimal WSGI app (this script with a hidden ``--floor-server`` flag) that
     reads the body, does one SQLite ``INSERT`` and ``COMMIT`` (WAL, ``synchronous=NORMAL``,
     as the omnichannel store) and answers an empty TwiML ``<Response/>``.  No webhook server
     that stores what it receives can do less.
   - **serve**: ``python -m omnichannel serve`` with one ``twilio`` connector
     (``mode = "webhook"``, acknowledgements through the outbox, the default): every request is
     verified (``X-Twilio-Signature``), stored and committed, then answered ``<Response/>``.

   ``--warmup`` requests go first, untimed; then ``--count`` timed requests (or fewer, if
   ``--duration`` seconds pass first).  Reported per server: requests/s, p50 / p99 latency
   (request written to answer read), non-2xx answers; and serve/floor.  ``--repeat`` rounds,
   each running the floor then serve (so that a slow spell of a shared machine touches both):
   the best (highest rate) run of each is shown, with the ratio within each round.  After each
   serve burst the script waits, server still running, until the backlog drains (every row of
   the run ``processed``, polled on a read-only SQLite connection), then checks one complaint
   and one outbox acknowledgement per request, nothing quarantined.  Reported: the rows still
   unfiled when the burst ended, and how long draining took after it.

2. **End to end** (open loop). On a fresh serve (after the warm-up has drained), requests are
   sent at a fixed rate, by default half the best acceptance rate just measured
   (``--e2e-rate`` overrides it), for ``--e2e-duration`` seconds: request *i* is due at
   ``start + i / rate`` on connection ``i % concurrency`` (sent at once when its connection is
   late).  The time each 2xx arrives is recorded; a watcher thread polls the database on a
   read-only connection every ``--poll-ms`` ms (``raw_messages`` rows ``processed`` since its
   last look) and records when each message is first seen filed.  Reported: p50 / p99 / max of
   (seen filed - 2xx received), and the send rate achieved.  The polling interval (plus one
   query) bounds the resolution: a message is seen filed up to that much after it was.

A run fails (exit status 1, after printing what it measured) on any non-2xx answer or
connection error, a backlog that does not drain within ``--drain-timeout`` seconds, a count of
complaints, acknowledgements or quarantined rows other than expected, or a server that exits.
Targets (informative, not checked): serve >= 60% of the floor's rate; end-to-end p99 < 1 s.

Absolute rates depend on the machine and on what else runs on it (the client shares its CPUs
with the servers; the header shows the load average at the start): compare the ratios within
one run, and raise ``--repeat`` on a busy machine.  Run from the repository root::

    .venv/bin/python benchmarks/webhooks.py                  # defaults, about a minute
    .venv/bin/python benchmarks/webhooks.py --count 1000 --repeat 1 --json
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import waitress
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import complaint_text

ACCOUNT = "AC" + "be" * 16
TOKEN = "benchmark-auth-token-0123456789"
OUR_NUMBER = "+6281100000001"
PATH = "/webhooks/sms"
TARGET_RATIO = 60.0  # percent of the floor's acceptance rate the project aims for
TARGET_E2E_P99_MS = 1000.0  # p99 of (seen filed - 2xx received) the project aims for
SEED = 42
STARTUP_TIMEOUT = 60.0
DRAIN_POLL = 0.01
LOAD_AT_START = os.getloadavg()[0]  # the machine's 1-minute load average: others' work on it


class BenchmarkError(RuntimeError):
    """Something went wrong that leaves nothing to measure."""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values`` (not empty)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One signed webhook as the bytes to write on the socket; ``sid`` is its external id."""

    sid: str
    wire: bytes


def build_requests(count: int, port: int, *, first: int = 0) -> list[Prepared]:
    """``count`` signed inbound-SMS webhooks for the server on ``port``, numbered from ``first``
    (seeded): each from a different citizen, so that each files a new complaint."""
    rng = random.Random(SEED + first)
    validator = RequestValidator(TOKEN)
    url = f"http://127.0.0.1:{port}{PATH}"
    prepared = []
    for index in range(first, first + count):
        sid = f"SM{index:032x}"
        fields = {
            "ToCountry": "ID",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": complaint_text(rng)[1],
            "FromCountry": "ID",
            "To": OUR_NUMBER,
            "NumSegments": "3",
            "MessageSid": sid,
            "AccountSid": ACCOUNT,
            "From": f"+62812{index:08d}",
            "ApiVersion": "2010-04-01",
        }
        body = urlencode(fields).encode()
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {validator.compute_signature(url, fields)}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        prepared.append(Prepared(sid, head.encode() + body))
    return prepared


# -- servers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


@dataclass
class Server:
    """A server subprocess: its port, database file and log."""

    kind: str
    port: int
    database: Path
    log: Path
    process: subprocess.Popen[bytes]

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise BenchmarkError(
                f"{self.kind} server exited with {self.process.returncode}:\n{tail(self.log)}"
            )

    def notable_log_lines(self) -> list[str]:
        """Lines of its log at WARNING level or above, and tracebacks."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return []
        marks = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback")
        return [line for line in text.splitlines() if any(m in line for m in marks)]


def server_command(kind: str, folder: Path, port: int, threads: int) -> list[str]:
    if kind == "floor":
        return [
            sys.executable,
            str(Path(__file__).resolve()),
            "--floor-server",
            str(port),
            "--floor-db",
            str(folder / "floor.db"),
            "--server-threads",
            str(threads),
        ]
    config = folder / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{folder / "omnichannel.db"}"\n\n'
        '[[connectors]]\nname = "sms"\ntype = "twilio"\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "${{BENCH_TWILIO_AUTH_TOKEN}}"\n'
        'mode = "webhook"\n',
        encoding="utf-8",
    )
    return [
        *(sys.executable, "-m", "omnichannel", "--config", str(config), "serve"),
        *("--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)),
    ]


def wait_until_up(server: Server, path: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        server.check_alive()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=2)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise BenchmarkError(f"{server.kind} server did not come up in {STARTUP_TIMEOUT:.0f} s")


@contextmanager
def running(kind: str, folder: Path, threads: int) -> Iterator[Server]:
    """A fresh ``kind`` server (``floor`` or ``serve``) with its database in ``folder``; its
    output goes to a file (a pipe nobody reads would stall it once full)."""
    port = free_port()
    log = folder / f"{kind}.log"
    env = {**os.environ, "BENCH_TWILIO_AUTH_TOKEN": TOKEN}
    with log.open("wb") as output:
        process = subprocess.Popen(
            server_command(kind, folder, port, threads),
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    database = folder / ("floor.db" if kind == "floor" else "omnichannel.db")
    server = Server(kind, port, database, log, process)
    try:
        wait_until_up(server, "/" if kind == "floor" else "/healthz")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


FLOOR_ANSWER = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'


def floor_app(database: Path) -> Callable[..., list[bytes]]:
    """The floor: read the body, one INSERT and COMMIT in SQLite, an empty TwiML answer."""
    local = threading.local()
    setup = sqlite3.connect(database)
    setup.executescript(
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, payload BLOB, received REAL)"
    )
    setup.close()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("REQUEST_METHOD") == "POST":
            if not hasattr(local, "conn"):
                local.conn = sqlite3.connect(database, timeout=60, isolation_level=None)
                local.conn.execute("PRAGMA synchronous=NORMAL")
            conn = local.conn
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raw (payload, received) VALUES (?, ?)", (body, time.time()))
            conn.execute("COMMIT")
        headers = [("Content-Type", "text/xml"), ("Content-Length", str(len(FLOOR_ANSWER)))]
        start_response("200 OK", headers)
        return [FLOOR_ANSWER]

    return app


def serve_floor(port: int, database: Path, threads: int) -> int:
    """The hidden ``--floor-server`` mode: serve the floor app until terminated."""
    app = floor_app(database)
    waitress.create_server(app, host="127.0.0.1", port=port, threads=threads).run()
    return 0


# -- the client --------------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection: writes prepared bytes, reads the status and the body
    (by ``Content-Length``, which both servers send).  Reconnects after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.pending = b""

    def send(self, request: Prepared) -> tuple[int, bytes]:
        """The answer's status and body; status 0 when the connection failed."""
        try:
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.pending = b""
            self.sock.sendall(request.wire)
            while (end := self.pending.find(b"\r\n\r\n")) < 0:
                self._receive()
            header = self.pending[:end].decode("latin-1")
            self.pending = self.pending[end + 4 :]
            lines = header.split("\r\n")
            length = next(
                int(line.split(":", 1)[1])
                for line in lines[1:]
                if line.lower().startswith("content-length:")
            )
            while len(self.pending) < length:
                self._receive()
            body, self.pending = self.pending[:length], self.pending[length:]
            return int(lines[0].split(" ", 2)[1]), body
        except (OSError, ValueError, StopIteration):
            self.close()
            return 0, b""

    def _receive(self) -> None:
        assert self.sock is not None
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        self.pending += chunk

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass
class Answers:
    """What came back: one entry per request sent."""

    statuses: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    inline_acks: int = 0  # answers carrying a <Message>: acknowledged inline, not via the outbox

    def add(self, status: int, body: bytes, latency: float) -> None:
        self.statuses.append(status)
        self.latencies.append(latency)
        self.inline_acks += b"<Message" in body

    def merge(self, other: Answers) -> None:
        self.statuses += other.statuses
        self.latencies += other.latencies
        self.inline_acks += other.inline_acks

    @property
    def failed(self) -> int:
        """Answers that were not 2xx (connection errors included)."""
        return sum(not 200 <= status < 300 for status in self.statuses)


@dataclass
class Burst:
    answers: Answers
    seconds: float

    @property
    def requests(self) -> int:
        return len(self.answers.statuses)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def figures(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "req_per_s": round(self.rate, 1),
            "p50_ms": round(1000 * percentile(self.answers.latencies, 0.50), 2),
            "p99_ms": round(1000 * percentile(self.answers.latencies, 0.99), 2),
            "non_2xx": self.answers.failed,
            "inline_acks": self.answers.inline_acks,
        }


def burst(port: int, requests: Sequence[Prepared], concurrency: int, duration: float) -> Burst:
    """Closed loop: ``concurrency`` connections share out ``requests``, each sending the next
    as soon as its answer is in, until all are sent or ``duration`` seconds have passed."""
    lock, position = threading.Lock(), [0]
    answers = Answers()
    deadline = time.perf_counter() + duration

    def take() -> Prepared | None:
        with lock:
            if position[0] >= len(requests) or time.perf_counter() > deadline:
                return None
            position[0] += 1
            return requests[position[0] - 1]

    def worker() -> None:
        mine, connection = Answers(), Connection(port)
        while (request := take()) is not None:
            started = time.perf_counter()
            status, body = connection.send(request)
            mine.add(status, body, time.perf_counter() - started)
        connection.close()
        with lock:
            answers.merge(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Burst(answers, time.perf_counter() - started)


@dataclass
class Paced:
    answers: Answers
    sent_at: list[float]  # perf_counter when each request was written (NaN: not sent)
    answered_at: dict[str, float]  # sid -> perf_counter when its 2xx was read


def paced(port: int, requests: Sequence[Prepared], concurrency: int, rate: float) -> Paced:
    """Open loop: request ``i`` is due at ``start + i / rate`` on connection
    ``i % concurrency``, and sent then (or at once, when that connection is late)."""
    lock = threading.Lock()
    answers = Answers()
    sent_at = [math.nan] * len(requests)
    answered_at: dict[str, float] = {}
    start = time.perf_counter() + 0.05

    def worker(first: int) -> None:
        mine, times, connection = Answers(), {}, Connection(port)
        for index in range(first, len(requests), concurrency):
            wait = start + index / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = sent_at[index] = time.perf_counter()
            status, body = connection.send(requests[index])
            done = time.perf_counter()
            mine.add(status, body, done - sent)
            if 200 <= status < 300:
                times[requests[index].sid] = done
        connection.close()
        with lock:
            answers.merge(mine)
            answered_at.update(times)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Paced(answers, sent_at, answered_at)


# -- the database, read-only -------------------------------------------------------------------


def read_only(database: Path) -> sqlite3.Connection:
    return sqlite3.connect(
        f"file:{database}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
    )


def statuses(conn: sqlite3.Connection) -> dict[str, int]:
    rows = conn.execute("SELECT status, count(*) FROM raw_messages GROUP BY status")
    return {status: count for status, count in rows}


def wait_drained(server: Server, expected: int, timeout: float) -> tuple[float, int]:
    """Wait until ``expected`` raw rows are stored and none is left ``received``; the seconds
    it took and the rows waiting when called.  Raises when ``timeout`` passes first."""
    started = time.perf_counter()
    conn = read_only(server.database)
    try:
        waiting = statuses(conn).get("received", 0)
        while True:
            found = statuses(conn)
            if found.get("received", 0) == 0 and sum(found.values()) >= expected:
                return time.perf_counter() - started, waiting
            if time.perf_counter() - started > timeout:
                raise BenchmarkError(
                    f"the backlog did not drain in {timeout:.0f} s: raw rows by status {found}"
                    f" (expected {expected} filed)\n{tail(server.log)}"
                )
            server.check_alive()
            time.sleep(DRAIN_POLL)
    finally:
        conn.close()


def store_problems(server: Server, expected: int) -> list[str]:
    """What differs from one raw row processed, one complaint and one outbox acknowledgement
    per request."""
    conn = read_only(server.database)
    try:
        found = {
            "processed raw rows": statuses(conn).get("processed", 0),
            "complaints": conn.execute("SELECT count(*) FROM complaints").fetchone()[0],
            "outbox acknowledgements": conn.execute(
                "SELECT count(*) FROM outbox WHERE kind = 'acknowledgement'"
            ).fetchone()[0],
        }
        quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
    finally:
        conn.close()
    problems = [f"{n} {what}, expected {expected}" for what, n in found.items() if n != expected]
    return problems + ([f"{quarantined} quarantined"] if quarantined else [])


class Watcher(threading.Thread):
    """Polls the database every ``interval`` seconds (read-only) and records, by external id,
    when each raw row is first seen ``processed``.

    Each look reads, in one snapshot, the processed rows above a mark and the lowest row still
    ``received``; the mark then moves up to just below that row (rows only ever go from
    ``received`` to ``processed``/``quarantined``, and new rows get higher ids), so a row filed
    out of id order is not missed and each look reads little."""

    def __init__(self, database: Path, interval: float) -> None:
        super().__init__(name="watcher", daemon=True)
        self.conn = read_only(database)
        self.interval = interval
        self.seen: dict[str, float] = {}
        self.looks = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        mark = 0
        try:
            while not self.stopping.is_set():
                self.conn.execute("BEGIN")
                rows = self.conn.execute(
                    "SELECT external_id FROM raw_messages WHERE status = 'processed' AND id > ?",
                    (mark,),
                ).fetchall()
                low, top = self.conn.execute(
                    "SELECT (SELECT min(id) FROM raw_messages WHERE status = 'received'),"
                    " (SELECT max(id) FROM raw_messages)"
                ).fetchone()
                self.conn.execute("COMMIT")
                now = time.perf_counter()
                for (external_id,) in rows:
                    self.seen.setdefault(external_id, now)
                mark = low - 1 if low is not None else (top or 0)
                self.looks += 1
                self.stopping.wait(self.interval)
        finally:
            self.conn.close()

    def wait_for(self, wanted: Sequence[str], timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while not all(sid in self.seen for sid in wanted):
            if time.perf_counter() > deadline or not self.is_alive():
                return False
            time.sleep(0.01)
        return True

    def stop(self) -> None:
        self.stopping.set()
        self.join()


# -- measurements ------------------------------------------------------------------------------


@dataclass
class Round:
    floor: Burst
    serve: Burst
    drain_seconds: float
    waiting_after_burst: int

    @property
    def ratio(self) -> float:
        return 100 * self.serve.rate / self.floor.rate


def warm_up(server: Server, args: argparse.Namespace) -> int:
    """Send the untimed warm-up requests; how many."""
    if args.warmup:
        warm = burst(server.port, build_requests(args.warmup, server.port), args.concurrency, 60)
        if warm.answers.failed:
            raise BenchmarkError(
                f"{server.kind}: {warm.answers.failed} warm-up answers were not 2xx, e.g. "
                f"{next(s for s in warm.answers.statuses if not 200 <= s < 300)}\n"
                f"{tail(server.log)}"
            )
    return args.warmup


def measure_floor(args: argparse.Namespace) -> Burst:
    with (
        tempfile.TemporaryDirectory(prefix="omnichannel-webhooks-") as tmp,
        running("floor", Path(tmp), args.server_threads) as server,
    ):
        warm_up(server, args)
        timed = build_requests(args.count, server.port, first=args.warmup)
        result = burst(server.port, timed, args.concurrency, args.duration)
        server.check_alive()
    return result


def measure_serve(args: argparse.Namespace, problems: list[str]) -> tuple[Burst, float, int]:
    """One serve run: the burst, then the drain; the burst, the drain's seconds and the rows
    left to file when the burst ended."""
    with (
        tempfile.TemporaryDirectory(prefix="omnichannel-webhooks-") as tmp,
        running("serve", Path(tmp), args.server_threads) as server,
    ):
        sent = warm_up(server, args)
        timed = build_requests(args.count, server.port, first=args.warmup)
        result = burst(server.port, timed, args.concurrency, args.duration)
        sent += result.requests - result.answers.failed  # rows stored: one per 2xx
        server.check_alive()
        drained, waiting = wait_drained(server, sent, args.drain_timeout)
        problems += [f"serve: {p}" for p in store_problems(server, sent)]
        report_log(server)
    return result, drained, waiting


def report_log(server: Server) -> None:
    notable = server.notable_log_lines()
    if notable:
        progress(f"  serve log: {len(notable)} line(s) at WARNING or above, e.g.:")
        for line in notable[:5]:
            progress(f"    {line}")


def acceptance(args: argparse.Namespace, problems: list[str]) -> list[Round]:
    rounds = []
    for attempt in range(1, args.repeat + 1):
        floor = measure_floor(args)
        progress(f"  round {attempt}/{args.repeat}: floor {describe(floor)}")
        serve, drained, waiting = measure_serve(args, problems)
        rounds.append(Round(floor, serve, drained, waiting))
        progress(
            f"  round {attempt}/{args.repeat}: serve {describe(serve)}; {waiting} unfiled at "
            f"the end, drained in {drained:.2f} s; serve/floor {rounds[-1].ratio:.1f}%"
        )
        for kind, run in (("floor", floor), ("serve", serve)):
            if run.answers.failed:
                problems.append(f"{kind}, round {attempt}: {run.answers.failed} non-2xx answers")
            if kind == "serve" and run.answers.inline_acks:
                problems.append(f"serve, round {attempt}: {run.answers.inline_acks} inline acks")
    return rounds


def describe(run: Burst) -> str:
    figures = run.figures()
    return (
        f"{run.requests} requests in {run.seconds:.2f} s, {run.rate:,.0f} req/s, "
        f"p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms, "
        f"{run.answers.failed} non-2xx"
    )


def end_to_end(args: argparse.Namespace, rate: float, problems: list[str]) -> dict[str, Any]:
    """The paced run on a fresh serve: (seen filed - 2xx received) per request."""
    count = max(1, round(rate * args.e2e_duration))
    with (
        tempfile.TemporaryDirectory(prefix="omnichannel-webhooks-") as tmp,
        running("serve", Path(tmp), args.server_threads) as server,
    ):
        sent = warm_up(server, args)
        wait_drained(server, sent, args.drain_timeout)
        requests = build_requests(count, server.port, first=args.warmup)
        watcher = Watcher(server.database, args.poll_ms / 1000)
        watcher.start()
        try:
            run = paced(server.port, requests, args.concurrency, rate)
            finished = time.perf_counter()
            complete = watcher.wait_for(list(run.answered_at), args.drain_timeout)
            drained = time.perf_counter() - finished
        finally:
            watcher.stop()
        server.check_alive()
        if not complete:
            missing = sum(sid not in watcher.seen for sid in run.answered_at)
            problems.append(f"end to end: {missing} messages not seen filed")
        if run.answers.failed:
            problems.append(f"end to end: {run.answers.failed} non-2xx answers")
        problems += [
            f"end to end: {p}" for p in store_problems(server, sent + len(run.answered_at))
        ]
        report_log(server)
    lags = [watcher.seen[sid] - t for sid, t in run.answered_at.items() if sid in watcher.seen]
    sends = [t for t in run.sent_at if not math.isnan(t)]
    achieved = (len(sends) - 1) / (max(sends) - min(sends)) if len(sends) > 1 else math.nan
    result = {
        "requests": count,
        "target_req_per_s": round(rate, 1),
        "achieved_req_per_s": round(achieved, 1),
        "answer_p50_ms": round(1000 * percentile(run.answers.latencies, 0.50), 2),
        "answer_p99_ms": round(1000 * percentile(run.answers.latencies, 0.99), 2),
        "non_2xx": run.answers.failed,
        "filed_after_2xx_p50_ms": round(1000 * percentile(lags, 0.50), 1) if lags else None,
        "filed_after_2xx_p99_ms": round(1000 * percentile(lags, 0.99), 1) if lags else None,
        "filed_after_2xx_max_ms": round(1000 * max(lags), 1) if lags else None,
        "measured": len(lags),
        "poll_ms": args.poll_ms,
        "watcher_looks": watcher.looks,
        "last_filed_after_last_2xx_s": round(drained, 3),
    }
    progress(
        f"  end to end: {count} requests at {rate:,.0f} req/s (achieved {achieved:,.0f}); "
        f"filed after 2xx p50 {ms(result['filed_after_2xx_p50_ms'])}, "
        f"p99 {ms(result['filed_after_2xx_p99_ms'])}"
    )
    return result


# -- report ------------------------------------------------------------------------------------


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "webhooks",
        "count": args.count,
        "warmup": args.warmup,
        "concurrency": args.concurrency,
        "server_threads": args.server_threads,
        "repeat": args.repeat,
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "load_average_at_start": LOAD_AT_START,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "waitress": version("waitress"),
        "twilio": version("twilio"),
        "target_percent_of_floor": TARGET_RATIO,
        "target_e2e_p99_ms": TARGET_E2E_P99_MS,
    }


def summary(rounds: list[Round], e2e: dict[str, Any] | None) -> dict[str, Any]:
    floor = max((r.floor for r in rounds), key=lambda run: run.rate)
    serve = max((r.serve for r in rounds), key=lambda run: run.rate)
    ratios = [round(r.ratio, 1) for r in rounds]
    return {
        "floor": floor.figures(),
        "serve": serve.figures(),
        "serve_percent_of_floor": round(100 * serve.rate / floor.rate, 1),
        "serve_percent_per_round": ratios,
        "serve_percent_median": round(statistics.median(ratios), 1),
        "drain_seconds_per_round": [round(r.drain_seconds, 3) for r in rounds],
        "unfiled_after_burst_per_round": [r.waiting_after_burst for r in rounds],
        "end_to_end": e2e,
    }


def report_text(args: argparse.Namespace, data: dict[str, Any]) -> str:
    info = header(args)
    floor, serve = data["floor"], data["serve"]
    lines = [
        f"omnichannel webhook benchmark: signed Twilio webhooks (acks through the outbox), "
        f"{args.concurrency} client connections, waitress {info['waitress']} with "
        f"{args.server_threads} threads, SQLite {info['sqlite']}, Python {info['python']}, "
        f"{info['cpus']} CPUs (load average {info['load_average_at_start']:.2f} at the start)",
        "",
        f"1. acceptance: {args.count} requests per run after {args.warmup} warm-up, best of "
        f"{args.repeat} run(s) each, fresh server and database per run",
        f"{'':<44}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'non-2xx':>9}",
    ]
    for name, item in (
        ("floor: waitress + 1 SQLite insert/commit", floor),
        ("omnichannel serve: twilio webhook", serve),
    ):
        lines.append(
            f"{name:<44}{item['req_per_s']:>9,.0f}{item['p50_ms']:>9.1f}{item['p99_ms']:>9.1f}"
            f"{item['non_2xx']:>9}"
        )
    ratio = data["serve_percent_of_floor"]
    lines += [
        f"serve / floor: {ratio:.1f}% (target >= {TARGET_RATIO:.0f}%: "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'}); within each round: "
        + ", ".join(f"{r:.1f}%" for r in data["serve_percent_per_round"])
        + f" (median {data['serve_percent_median']:.1f}%)",
        "backlog after each serve burst: "
        + ", ".join(
            f"{n} unfiled, drained in {s:.2f} s"
            for n, s in zip(
                data["unfiled_after_burst_per_round"], data["drain_seconds_per_round"], strict=True
            )
        ),
    ]
    e2e = data["end_to_end"]
    if e2e:
        p99 = e2e["filed_after_2xx_p99_ms"]
        lines += [
            "",
            f"2. end to end: {e2e['requests']} requests paced at {e2e['target_req_per_s']:,.0f}"
            f" req/s over {args.concurrency} connections (achieved "
            f"{e2e['achieved_req_per_s']:,.0f} req/s), fresh server",
            f"answer latency: p50 {e2e['answer_p50_ms']:.1f} ms, p99 {e2e['answer_p99_ms']:.1f} ms;"
            f" non-2xx {e2e['non_2xx']}",
            f"filed, seen after its 2xx: p50 {ms(e2e['filed_after_2xx_p50_ms'])}, p99 {ms(p99)}, "
            f"max {ms(e2e['filed_after_2xx_max_ms'])} (target p99 < {TARGET_E2E_P99_MS:.0f} ms: "
            f"{'met' if p99 is not None and p99 < TARGET_E2E_P99_MS else 'MISSED'}); "
            f"database polled every {args.poll_ms:g} ms",
        ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    add = parser.add_argument
    add("--count", type=int, default=4000, help="timed requests per acceptance run")
    add("--duration", type=float, default=30.0, help="at most this many seconds per burst")
    add("--warmup", type=int, default=200, help="untimed requests first, on every server")
    add("--concurrency", type=int, default=16, help="client connections (threads)")
    add("--server-threads", type=int, default=16, help="waitress threads, both servers")
    add("--repeat", type=int, default=3, help="acceptance rounds; the best run is kept")
    add("--drain-timeout", type=float, default=120.0, help="seconds to wait for filing")
    add("--e2e-rate", type=float, help="end-to-end send rate (default: half of serve's best)")
    add("--e2e-duration", type=float, default=5.0, help="seconds of end-to-end sending")
    add("--poll-ms", type=float, default=2.0, help="the end-to-end watcher's interval")
    add("--no-e2e", action="store_true", help="skip the end-to-end measurement")
    add("--json", action="store_true", help="print one JSON object instead of the text")
    add("--floor-server", type=int, help=argparse.SUPPRESS)
    add("--floor-db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("count", "concurrency", "server_threads", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.poll_ms <= 0 or args.e2e_duration <= 0:
        parser.error("--warmup must be >= 0, --poll-ms and --e2e-duration > 0")
    if args.e2e_rate is not None and args.e2e_rate <= 0:
        parser.error("--e2e-rate must be > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_server:
        return serve_floor(args.floor_server, Path(args.floor_db), args.server_threads)
    problems: list[str] = []
    try:
        progress("acceptance:")
        rounds = acceptance(args, problems)
        best = max(r.serve.rate for r in rounds)
        e2e = None
        if not args.no_e2e:
            e2e = end_to_end(args, args.e2e_rate or best / 2, problems)
    except BenchmarkError as exc:
        progress(f"benchmark failed: {exc}")
        return 1
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    data = summary(rounds, e2e)
    if args.json:
        print(json.dumps({**header(args), **data, "problems": problems}))
    else:
        print(report_text(args, data))
        for problem in problems:
            print(f"FAILED CHECK: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
