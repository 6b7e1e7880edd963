"""Webhook benchmark: signed Twilio webhooks through ``omnichannel serve``, against a floor.

Two HTTP servers, each a fresh subprocess on loopback serving with waitress (the same server,
the same thread count), are loaded in turn by the same client:

- **floor**: a minimal WSGI app (this script with a hidden ``--floor-server`` flag) that reads
  the body and does one SQLite ``INSERT`` and ``COMMIT`` per request (WAL, ``synchronous=NORMAL``,
  as the omnichannel store), answering an empty TwiML ``<Response/>``.  Nothing a webhook
  server that stores what it receives can do is cheaper.
- **omnichannel serve**: ``python -m omnichannel serve`` with a temporary configuration: SQLite
  in a temporary directory and one ``twilio`` connector (``mode = "webhook"``).  Every request
  is verified (``X-Twilio-Signature``, official validator), stored raw and committed, decoded,
  normalized, deduplicated and filed (complaint, queue item, acknowledgement), and answered
  with TwiML carrying the acknowledgement.  Checked afterwards: every answer 200 with a
  ``<Message>`` (every message ``new``) and one complaint per request; a failed check exits
  non-zero.

The load generator runs ``--concurrency`` threads, each with one keep-alive connection
(``--client``: prepared bytes on a socket, or ``http.client``), sending prebuilt signed
requests (unique ``MessageSid``, sender and complaint text, seeded) until ``--count`` requests
are sent or ``--duration`` seconds pass.
``--warmup`` requests go first and are not timed.  Reported: requests per second and the p50 /
p99 latency; each measurement is the best (highest rate) of ``--repeat`` runs, each on a fresh
server and database.  Rates depend on the machine: compare the ratio within one run.

Run from the repository root::

    .venv/bin/python benchmarks/webhooks.py                 # 3,000 requests, 8 threads
    .venv/bin/python benchmarks/webhooks.py --count 1000 --repeat 1 --json
"""

from __future__ import annotations

import argparse
import http.client
import json
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
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
import waitress
from twilio import __version__ as twilio_version
from twilio.request_validator import RequestValidator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.ingest import complaint_text

ACCOUNT = "AC" + "be" * 16
TOKEN = "benchmark-auth-token-0123456789"
OUR_NUMBER = "+6281100000001"
PATH = "/webhooks/sms"
FORM = "application/x-www-form-urlencoded"
TARGET_RATIO = 50.0  # percent of the floor's throughput the project aims for (informative)
SEED = 42
STARTUP_TIMEOUT = 60.0

# -- requests ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prepared:
    """One signed webhook request, ready to send."""

    body: bytes
    headers: dict[str, str]


def build_requests(count: int, port: int, *, first: int = 0) -> list[Prepared]:
    """``count`` signed inbound-SMS webhooks for the server on ``port``, numbered from ``first``:
    seeded, each from a different citizen, so that every one is a new complaint."""
    rng = random.Random(SEED + first)
    validator, url = RequestValidator(TOKEN), f"http://127.0.0.1:{port}{PATH}"
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
            "From": f"+62812{index:08d}",  # a different citizen for every request
            "ApiVersion": "2010-04-01",
        }
        headers = {
            "Content-Type": FORM,
            "X-Twilio-Signature": validator.compute_signature(url, fields),
        }
        prepared.append(Prepared(urlencode(fields).encode(), headers))
    return prepared


# -- servers -----------------------------------------------------------------------------------


def tail(log: Path, lines: int = 20) -> str:
    """The last lines of a server's output, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no output)"


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) used so far by process ``pid`` and its child processes (the
    filing process), from ``/proc``; None where there is no ``/proc`` (not Linux)."""
    try:
        total = sum(cpu_seconds(child) or 0.0 for child in children(pid))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return total + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (from ``/proc``)."""
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def pin(pid: int) -> None:
    """``--pin``: every thread of server process ``pid`` on the first CPU this script may use,
    its child processes (omnichannel's filing process) on the second. Threads started later
    inherit it from the thread that starts them."""
    first, second = sorted(os.sched_getaffinity(0))[:2]
    for process, cpu in [(pid, first), *[(child, second) for child in children(pid)]]:
        for task in Path(f"/proc/{process}/task").iterdir():
            os.sched_setaffinity(int(task.name), {cpu})


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def wait_until_up(port: int, path: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchmarkError(
                f"server exited with {process.returncode} while starting:\n{tail(log)}"
            )
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)  # a benchmark waiting for a subprocess to listen, not a test
    raise BenchmarkError(f"server on port {port} did not come up in {STARTUP_TIMEOUT:.0f} s")


@contextmanager
def running(
    command: list[str], port: int, ready_path: str, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """The server running; its output goes to ``log`` (a pipe nobody reads would fill up and
    stall the server once it logs enough, as waitress does when its task queue grows)."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        wait_until_up(port, ready_path, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def omnichannel_server(
    folder: Path, port: int, threads: int, filing: str = "process"
) -> tuple[list[str], dict[str, str]]:
    config = folder / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "sqlite:///{folder / "omnichannel.db"}"\n\n'
        '[[connectors]]\nname = "sms"\ntype = "twilio"\n'
        f'account_sid = "{ACCOUNT}"\nauth_token = "${{BENCH_TWILIO_AUTH_TOKEN}}"\n'
        'mode = "webhook"\n',
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "serve"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--threads", str(threads)]
    command += ["--filing", filing]
    return command, {**os.environ, "BENCH_TWILIO_AUTH_TOKEN": TOKEN}


def floor_server(folder: Path, port: int, threads: int) -> tuple[list[str], dict[str, str]]:
    command = [sys.executable, str(Path(__file__).resolve()), "--floor-server", str(port)]
    command += ["--floor-db", str(folder / "floor.db"), "--server-threads", str(threads)]
    return command, dict(os.environ)


def floor_app(database: Path) -> Callable[..., list[bytes]]:
    """The floor: read the body, one INSERT and COMMIT in SQLite, an empty TwiML answer."""
    local = threading.local()
    setup = sqlite3.connect(database)
    setup.executescript(
        "PRAGMA journal_mode=WAL;"
        "CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY, payload BLOB, received REAL)"
    )
    setup.close()
    answer = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'

    def connection() -> sqlite3.Connection:
        if not hasattr(local, "conn"):
            local.conn = sqlite3.connect(database, timeout=60, isolation_level=None)
            local.conn.execute("PRAGMA synchronous=NORMAL")
        conn: sqlite3.Connection = local.conn
        return conn

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        if environ.get("REQUEST_METHOD") == "POST":
            conn = connection()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO raw (payload, received) VALUES (?, ?)", (body, time.time()))
            conn.execute("COMMIT")
        start_response(
            "200 OK", [("Content-Type", "text/xml"), ("Content-Length", str(len(answer)))]
        )
        return [answer]

    return app


def serve_floor(port: int, database: Path, threads: int) -> int:
    """The hidden ``--floor-server`` mode: serve the floor app until terminated."""
    server = waitress.create_server(
        floor_app(database), host="127.0.0.1", port=port, threads=threads
    )
    server.run()  # until SIGTERM
    return 0


# -- load --------------------------------------------------------------------------------------


@dataclass
class Run:
    requests: int
    seconds: float
    latencies: list[float]
    answers: list[tuple[int, bytes]]
    server_cpu: float | None = None  # CPU seconds per request: the server and its children
    client_cpu: float | None = None  # CPU seconds per request: this process (the load generator)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


Send = Callable[[Prepared], tuple[int, bytes]]


def load(
    port: int,
    requests: Sequence[Prepared],
    concurrency: int,
    duration: float,
    client: str = "socket",
) -> Run:
    """Send ``requests`` from ``concurrency`` keep-alive connections, at most ``duration`` s.

    ``client``: ``socket`` (default) writes each request as prepared bytes and reads the answer
    by its ``Content-Length``, so that the load generator takes as little of the machine from
    the servers as it can (Twilio's requests come from other machines); ``http.client`` is the
    standard library's client, about four times the CPU per request."""
    connection = partial(_socket_client if client == "socket" else _stdlib_client, port)
    return drive(requests, concurrency, duration, connection)


@contextmanager
def _stdlib_client(port: int) -> Iterator[Send]:
    client = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(request: Prepared) -> tuple[int, bytes]:
        client.request("POST", PATH, request.body, request.headers)
        response = client.getresponse()
        return response.status, response.read()

    try:
        yield send
    finally:
        client.close()


@contextmanager
def _socket_client(port: int) -> Iterator[Send]:
    """HTTP/1.1 over one keep-alive socket: the request as prepared bytes, the answer's status
    and body (read by ``Content-Length``, which both servers always send)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    host = f"Host: 127.0.0.1:{port}\r\n".encode()
    pending = b""

    def send(request: Prepared) -> tuple[int, bytes]:
        nonlocal pending
        head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
        sock.sendall(
            b"POST "
            + PATH.encode()
            + b" HTTP/1.1\r\n"
            + host
            + head.encode()
            + b"Content-Length: "
            + str(len(request.body)).encode()
            + b"\r\n\r\n"
            + request.body
        )
        while (end := pending.find(b"\r\n\r\n")) < 0:
            pending += _received(sock)
        header, pending = pending[:end].decode("latin-1"), pending[end + 4 :]
        status = int(header.split(" ", 2)[1])
        length = next(
            int(line.split(":", 1)[1])
            for line in header.split("\r\n")[1:]
            if line.lower().startswith("content-length:")
        )
        while len(pending) < length:
            pending += _received(sock)
        body, pending = pending[:length], pending[length:]
        return status, body

    try:
        yield send
    finally:
        sock.close()


def _received(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("the server closed the connection")
    return chunk


def load_in_process(
    inbox: Any, port: int, requests: Sequence[Prepared], concurrency: int, duration: float
) -> Run:
    """As ``load``, but each thread calls ``Inbox.handle_webhook`` directly: no HTTP at all."""
    url = f"http://127.0.0.1:{port}{PATH}"

    @contextmanager
    def direct() -> Iterator[Send]:
        def send(request: Prepared) -> tuple[int, bytes]:
            response = inbox.handle_webhook("sms", "POST", url, request.headers, request.body)
            return response.status, response.body

        yield send

    return drive(requests, concurrency, duration, direct)


def drive(
    requests: Sequence[Prepared],
    concurrency: int,
    duration: float,
    sender: Callable[[], AbstractContextManager[Send]],
) -> Run:
    """``concurrency`` threads, each with its own ``sender()``, share out ``requests``."""
    lock, position = threading.Lock(), [0]
    latencies: list[float] = []
    answers: list[tuple[int, bytes]] = []
    deadline = time.perf_counter() + duration

    def take() -> Prepared | None:
        with lock:
            if position[0] >= len(requests) or time.perf_counter() > deadline:
                return None
            position[0] += 1
            return requests[position[0] - 1]

    def worker() -> None:
        mine_l, mine_a = [], []
        with sender() as send:
            while (request := take()) is not None:
                started = time.perf_counter()
                mine_a.append(send(request))
                mine_l.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine_l)
            answers.extend(mine_a)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Run(len(latencies), time.perf_counter() - started, latencies, answers)


# -- measurements ------------------------------------------------------------------------------


class BenchmarkError(RuntimeError):
    """A run did not do what it should have; the numbers would mean nothing."""


def check_answers(run: Run, *, acknowledged: bool, what: str) -> None:
    bad = [status for status, _ in run.answers if status != 200]
    if bad:
        raise BenchmarkError(f"{what}: {len(bad)} answers were not 200 (e.g. {bad[0]})")
    if acknowledged and sum(b"<Message>" in body for _, body in run.answers) != run.requests:
        raise BenchmarkError(f"{what}: not every answer acknowledged a new complaint")


def count_complaints(folder: Path) -> int:
    engine = sa.create_engine(f"sqlite:///{folder / 'omnichannel.db'}")
    with engine.connect() as conn:
        found = int(conn.execute(sa.text("SELECT count(*) FROM complaints")).scalar_one())
    engine.dispose()
    return found


Server = Callable[[Path, int, int], tuple[list[str], dict[str, str]]]
SERVERS: dict[str, Server] = {
    "floor": floor_server,
    "omnichannel": omnichannel_server,
    "omnichannel, filing in threads": partial(omnichannel_server, filing="thread"),
}


def measure_once(kind: str, args: argparse.Namespace) -> Run:
    """One run of ``kind`` (a key of ``SERVERS``) on a fresh server and database."""
    with tempfile.TemporaryDirectory(prefix="omnichannel-webhooks-") as tmp:
        folder, port = Path(tmp), free_port()
        command, env = SERVERS[kind](folder, port, args.server_threads)
        warmup = build_requests(args.warmup, port)
        timed = build_requests(args.count, port, first=args.warmup)
        ready = "/" if kind == "floor" else "/healthz"
        with running(command, port, ready, env, folder / "server.log") as server:
            if args.pin:
                pin(server.pid)
            load(port, warmup, args.concurrency, args.duration, args.client)
            before, client_before = cpu_seconds(server.pid), time.process_time()
            run = load(port, timed, args.concurrency, args.duration, args.client)
            after, client_after = cpu_seconds(server.pid), time.process_time()
        if before is not None and after is not None:
            run.server_cpu = (after - before) / run.requests
        run.client_cpu = (client_after - client_before) / run.requests
        acknowledged = kind != "floor"
        check_answers(run, acknowledged=acknowledged, what=kind)
        if acknowledged and count_complaints(folder) != run.requests + args.warmup:
            raise BenchmarkError(f"{kind}: complaints in the store differ from requests sent")
    return run


def measure_in_process(args: argparse.Namespace) -> Run:
    """The omnichannel side without HTTP: the same signed requests, the same store."""
    from omnichannel import Inbox

    with tempfile.TemporaryDirectory(prefix="omnichannel-webhooks-") as tmp:
        folder, port = Path(tmp), free_port()
        _, env = omnichannel_server(folder, port, args.server_threads)
        os.environ["BENCH_TWILIO_AUTH_TOKEN"] = env["BENCH_TWILIO_AUTH_TOKEN"]
        warmup = build_requests(args.warmup, port)
        timed = build_requests(args.count, port, first=args.warmup)
        with Inbox.from_config(folder / "omnichannel.toml") as inbox:
            load_in_process(inbox, port, warmup, args.concurrency, args.duration)
            run = load_in_process(inbox, port, timed, args.concurrency, args.duration)
        check_answers(run, acknowledged=True, what="in process")
        if count_complaints(folder) != run.requests + args.warmup:
            raise BenchmarkError("in process: complaints in the store differ from requests sent")
    return run


def rounds(kinds: Sequence[str], args: argparse.Namespace) -> dict[str, list[Run]]:
    """``--repeat`` rounds, each measuring every kind in turn (so that a slower or faster spell
    of a shared machine touches them all); every run of each kind, in round order."""
    runs: dict[str, list[Run]] = {kind: [] for kind in kinds}
    for attempt in range(1, args.repeat + 1):
        for kind in kinds:
            run = measure_in_process(args) if kind == "in process" else measure_once(kind, args)
            runs[kind].append(run)
            print(
                f"  {kind}: run {attempt}/{args.repeat}: {run.requests} requests in "
                f"{run.seconds:.2f} s, {run.rate:,.0f} req/s, p50 {1000 * run.percentile(0.5):.1f}"
                f" ms, p99 {1000 * run.percentile(0.99):.1f} ms",
                file=sys.stderr,
                flush=True,
            )
    return runs


# -- report ------------------------------------------------------------------------------------


def usable_cpus() -> int:
    """CPUs this script (and so the servers it starts) may run on."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def ceiling(run: Run, floor: Run) -> dict[str, Any] | None:
    """What the CPU spent per request allows: the rate at which the server, its filing process
    and the client, all on this machine's CPUs, would keep every CPU busy; and how busy the run
    kept them. None where CPU time cannot be read."""
    if run.server_cpu is None or run.client_cpu is None:
        return None
    per_request = run.server_cpu + run.client_cpu
    cpus = usable_cpus()
    return {
        "cpus": cpus,
        "cpu_ms_per_req_with_client": round(1000 * per_request, 3),
        "req_per_s": round(cpus / per_request, 1),
        "percent_of_floor": round(100 * cpus / per_request / floor.rate, 1),
        "cpus_busy_percent": round(100 * run.rate * per_request / cpus, 1),
    }


def row(name: str, run: Run, floor: Run | None) -> dict[str, Any]:
    return {
        "name": name,
        "requests": run.requests,
        "seconds": round(run.seconds, 3),
        "req_per_s": round(run.rate, 1),
        "p50_ms": round(1000 * run.percentile(0.5), 2),
        "p99_ms": round(1000 * run.percentile(0.99), 2),
        "percent_of_floor": round(100 * run.rate / floor.rate, 1) if floor else None,
        "server_cpu_ms_per_req": (
            None if run.server_cpu is None else round(1000 * run.server_cpu, 3)
        ),
        "client_cpu_ms_per_req": (
            None if run.client_cpu is None else round(1000 * run.client_cpu, 3)
        ),
    }


def header(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "webhooks",
        "count": args.count,
        "concurrency": args.concurrency,
        "client": args.client,
        "server_threads": args.server_threads,
        "pinned": args.pin,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "waitress": _version("waitress"),
        "twilio": twilio_version,
        "target_percent_of_floor": TARGET_RATIO,
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def report_text(
    args: argparse.Namespace, rows: list[dict[str, Any]], limit: dict[str, Any] | None
) -> str:
    info = header(args)
    lines = [
        f"omnichannel webhook benchmark — {args.count} signed Twilio webhooks, "
        f"{args.concurrency} client threads (keep-alive, {args.client}), "
        f"waitress {info['waitress']} with {args.server_threads} threads, "
        f"SQLite {info['sqlite']}, Python {info['python']}",
        f"best of {args.repeat} run(s) each, fresh server and database per run"
        f"{', servers pinned to CPUs (--pin)' if args.pin else ''}; "
        f"target: omnichannel >= {TARGET_RATIO:.0f}% of the floor's throughput",
        f"{'':<42}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'of floor':>10}{'CPU ms':>10}",
    ]
    for item in rows:
        ratio = f"{item['percent_of_floor']:.1f}%" if item["percent_of_floor"] else "100%"
        cpu = item["server_cpu_ms_per_req"]
        lines.append(
            f"{item['name']:<42}{item['req_per_s']:>10,.0f}{item['p50_ms']:>10.1f}"
            f"{item['p99_ms']:>10.1f}{ratio:>10}{'-' if cpu is None else f'{cpu:.2f}':>10}"
        )
    lines.append(
        "CPU ms: CPU time of the server process and its filing process per request (/proc);"
        " the client's own is not counted"
    )
    if limit is not None:
        lines.append(
            f"CPU ceiling: omnichannel serve and the client took "
            f"{limit['cpu_ms_per_req_with_client']:.2f} ms of CPU per request; "
            f"{limit['cpus']} CPU(s) allow at most {limit['req_per_s']:,.0f} req/s at that cost "
            f"({limit['percent_of_floor']:.1f}% of the floor); the run kept them "
            f"{limit['cpus_busy_percent']:.0f}% busy"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=3000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests first")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--server-threads", type=int, default=8, help="waitress threads")
    parser.add_argument("--duration", type=float, default=120.0, help="max seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per server, best kept")
    parser.add_argument(
        "--client",
        choices=["socket", "http.client"],
        default="socket",
        help="load generator: prepared bytes on a socket (lean), or the standard library's",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="pin each server process to one CPU (omnichannel's filing process to a second);"
        " Linux, two CPUs or more",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--floor-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--floor-db", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("count", "concurrency", "server_threads", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.pin and len(getattr(os, "sched_getaffinity", lambda _: ())(0)) < 2:
        parser.error("--pin needs Linux and at least two CPUs")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_server:
        return serve_floor(args.floor_server, Path(args.floor_db), args.server_threads)
    try:
        every = rounds([*SERVERS, "in process"], args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    best = {kind: max(runs, key=lambda r: r.rate) for kind, runs in every.items()}
    floor = best["floor"]
    per_round = [
        round(100 * ours.rate / base.rate, 1)
        for ours, base in zip(every["omnichannel"], every["floor"], strict=True)
    ]
    rows = [
        row("floor: waitress + 1 SQLite insert/commit", floor, None),
        row("omnichannel serve: twilio webhook", best["omnichannel"], floor),
        row("same, serve --filing thread", best["omnichannel, filing in threads"], floor),
        row("same, Inbox.handle_webhook, no HTTP", best["in process"], floor),
    ]
    limit = ceiling(best["omnichannel"], floor)
    if args.json:
        print(
            json.dumps(
                {
                    **header(args),
                    "results": rows,
                    "serve_percent_per_round": per_round,
                    "serve_cpu_ceiling": limit,
                }
            )
        )
    else:
        print(report_text(args, rows, limit))
        print(
            "omnichannel serve / floor within each round: "
            + ", ".join(f"{ratio:.1f}%" for ratio in per_round)
            + f" (median {statistics.median(per_round):.1f}%)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
