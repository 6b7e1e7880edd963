"""Outbox benchmark: forwards delivered per second by 1 and 4 ``omnichannel work`` processes.

What is measured: a throwaway PostgreSQL database gets ``--count`` complaints filed with one
``webhook`` forwarder configured, so the outbox holds ``--count`` forwards (untimed). A
threaded HTTP server on loopback takes them (it checks nothing, answers 200 at once). Then:

- **floor**: one thread POSTs the same number of signed bodies of the same size with one
  ``requests.Session`` — what sending alone costs, with no database;
- **N workers**: ``--processes`` ``omnichannel work`` processes are started together and timed
  until the server has received every delivery (process start-up included); the outbox rows
  are then made pending again for the next run.

Checked after every run, else exit status 1: each delivery id arrived exactly once and every
row is ``sent``. Figures are deliveries/s, best of ``--repeat``, and their ratio to the floor.

    .venv/bin/python benchmarks/outbox.py                      # 2,000 deliveries, 1 and 4
    .venv/bin/python benchmarks/outbox.py --count 5000 --processes 1,2,4 --repeat 1

Progress goes to stderr, the result table to stdout.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from omnichannel import Inbox  # noqa: E402
from omnichannel.schema import RawMessage  # noqa: E402
from omnichannel.store.tables import outbox  # noqa: E402
from omnichannel.webhook import signing_key, standard_signature  # noqa: E402

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SECRET = "whsec_" + "YmVuY2htYXJrLXNlY3JldC1iZW5jaG1hcmstc2VjcmV0"


class Sink:
    """Counts the ``webhook-id`` s it receives."""

    def __init__(self) -> None:
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with sink.lock:
                    sink.seen[self.headers.get("webhook-id", "")] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def total(self) -> int:
        with self.lock:
            return sum(self.seen.values())


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def floor(sink: Sink, count: int, body: bytes) -> float:
    key = signing_key(SECRET)
    session = requests.Session()
    started = time.perf_counter()
    for i in range(count):
        wid, stamp = f"floor-{i}", str(int(time.time()))
        session.post(
            sink.url,
            data=body,
            headers={
                "Content-Type": "application/json",
                "webhook-id": wid,
                "webhook-timestamp": stamp,
                "webhook-signature": standard_signature(key, wid, stamp, body),
            },
            timeout=10,
        ).close()
    return time.perf_counter() - started


def workers(config: Path, processes: int, sink: Sink, count: int, timeout: float) -> float:
    sink.seen.clear()
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "omnichannel", "--config", str(config), "work"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(processes)
    ]
    try:
        while sink.total() < count:
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"timed out: {sink.total()} of {count} delivered")
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    return elapsed


def check_and_reset(url: str, sink: Sink, count: int) -> None:
    if len(sink.seen) != count or set(sink.seen.values()) != {1}:
        raise SystemExit(f"FAILED: {len(sink.seen)} ids, counts {set(sink.seen.values())}")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        query = sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
        statuses = {status: number for status, number in conn.execute(query)}
        if statuses != {"sent": count}:
            raise SystemExit(f"FAILED: outbox {statuses}")
        conn.execute(
            sa.update(outbox).values(
                status="pending", attempts=0, sent_at=None, next_attempt_at=sa.func.now()
            )
        )
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--processes", default="1,4")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    name = f"omni_bench_{secrets.token_hex(5)}"
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = ADMIN.rsplit("/", 1)[0] + f"/{name}"
    sink = Sink()
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "omnichannel.toml"
            config.write_text(
                f'[database]\nurl = "{url}"\n[outbox]\ninterval = 0.05\nbatch_size = 20\n'
                f'[[forwarders]]\nname = "agency"\ntype = "webhook"\nurl = "{sink.url}"\n'
                f'secret = "{SECRET}"\n',
                encoding="utf-8",
            )
            progress(f"filing {args.count} complaints (untimed)")
            with Inbox.from_config(config) as inbox:
                now = datetime.now(UTC)
                raws = [
                    RawMessage(
                        connector="files",
                        external_id=f"bench-{i}",
                        received_at=now,
                        content_type="application/json",
                        payload=json.dumps(
                            {
                                "channel": "sms",
                                "external_id": f"bench-{i}",
                                "text": f"Keluhan nomor {i}: izin usaha belum terbit.",
                                "sender": {"phone": f"0812{i:08d}"},
                            }
                        ).encode(),
                    )
                    for i in range(args.count)
                ]
                for start in range(0, args.count, 500):
                    inbox.receive_many(raws[start : start + 500])
                sample = inbox.complaint(1)
            body = json.dumps(sample.model_dump(mode="json") if sample else {}).encode()
            floors = []
            for run in range(args.repeat):
                floors.append(floor(sink, args.count, body))
                progress(f"  floor: run {run + 1}/{args.repeat} {floors[-1]:.3f} s")
            best_floor = args.count / min(floors)
            rows = [("floor (1 thread, no database)", best_floor, 1.0)]
            for processes in [int(p) for p in args.processes.split(",")]:
                times = []
                for run in range(args.repeat):
                    times.append(workers(config, processes, sink, args.count, args.timeout))
                    check_and_reset(url, sink, args.count)
                    progress(
                        f"  {processes} workers: run {run + 1}/{args.repeat} {times[-1]:.3f} s"
                    )
                rate = args.count / min(times)
                rows.append((f"{processes} x omnichannel work", rate, rate / best_floor))
    finally:
        sink.server.shutdown()
        with admin.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                ),
                {"n": name},
            )
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()
    print(f"{args.count} deliveries, best of {args.repeat}, body {len(body)} bytes")
    print(f"{'':32} {'deliveries/s':>12} {'vs floor':>9}")
    for label, rate, ratio in rows:
        print(f"{label:32} {rate:12,.0f} {ratio:9.2f}")


if __name__ == "__main__":
    main()
