"""Filing-worker benchmark: ``omnichannel work --once`` on PostgreSQL with 1 and 2 processes.

What is measured: a throwaway PostgreSQL database gets ``--count`` raw messages stored without
filing (``pipeline.store_raw``, status ``received``, untimed); then ``--processes`` worker
processes, each ``python -m omnichannel --config CFG work --once``, are started together and
timed until every one has exited; afterwards ``raw_messages`` must hold no row still
``received``.  The database is dropped and made again (and the messages stored again) before
every run.  With ``--sqlite-processes`` the same is done on an SQLite file as a reference (one
process by default: on SQLite the workers take turns on the one write lock).

Input: JSON documents of the ``files`` connector (content type ``application/json``), seeded:
``{"channel": "sms", "external_id": "bench-0000001", "text": ..., "sender": {"phone": ...}}``,
every text different and every sender a different ``0812`` mobile number, so every message must
become a complaint of its own (outcome ``new``).

There is no floor here: the figures are throughput (messages/s over the whole run, process
start-up included) and the **speed-up** of N processes over 1.  Each run also ends with one
idle ``work --once`` on the filed database, whose time (interpreter start, imports, connect,
migration check, one empty claim) is shown as the fixed cost per run; ``net msg/s`` is the
rate with that cost taken off.

Checked after every run, else exit status 1 and the workers' log lines on stderr: every process
exited 0 within ``--timeout`` and printed its ``filed N messages; M waiting`` line; no raw row
``received`` or ``quarantined``; every row ``processed`` with outcome ``new``; complaints ==
messages == ``--count``, tickets unique, one message per raw row and per complaint; no
WARNING/ERROR line in their logs.  A run that times out (a deadlock, say) is killed, after a
snapshot of ``pg_stat_activity`` (with ``pg_blocking_pids``) is printed.  When the processes'
own ``filed N`` counts do not add up to ``--count`` while the database shows every message
filed once, that is printed as a note (SQLite with 2+ processes does this).

Run from the repository root (PostgreSQL with trust authentication, 2 cores or more)::

    .venv/bin/python benchmarks/workers.py                       # 5,000 messages, 1 and 2
    .venv/bin/python benchmarks/workers.py --count 20000 --processes 1,2,4 --repeat 1
    .venv/bin/python benchmarks/workers.py --sample-waits        # + what the backends wait on
    .venv/bin/python benchmarks/workers.py --sqlite-processes '' --json

How to read it: each figure is the best of ``--repeat`` runs (fastest run, and its split
between processes).  The speed-up is N processes' rate over 1 process's on the same backend;
it cannot exceed the number of free cores (the workers and PostgreSQL share them; the load
average before and after is printed, since other work on the machine moves these figures a
lot).  ``--sample-waits`` shows, as the mean number of backends per sample, how often they
were running SQL, idle in a transaction (the worker's Python busy: decoding, building rows),
or waiting for a lock, and which one.  Every throwaway database is named ``omni_bench_<hex>``
and dropped at the end, whatever happens.  Progress goes to stderr, the result (a table, or one
JSON object with ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

from omnichannel import pipeline
from omnichannel.config import default_config
from omnichannel.inbox import Inbox
from omnichannel.schema import RawMessage

CONNECTOR = "files"
SEED = 42
STORE_CHUNK = 1_000
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
_FILED = re.compile(r"filed (\d+) messages; (\d+) waiting")
_BAD_LOG = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b")

PROBLEMS = (
    "jalan berlubang",
    "lampu jalan mati",
    "saluran air tersumbat",
    "sampah menumpuk",
    "banjir setiap hujan",
    "pipa PDAM bocor",
    "jembatan retak",
    "pohon tumbang",
    "air bersih tidak mengalir",
    "listrik sering padam",
)
PLACES = (
    "Jalan Merdeka",
    "Jalan Sudirman",
    "Jalan Ahmad Yani",
    "Gang Mawar",
    "Perumahan Griya Indah",
    "Desa Sukamaju",
    "Kelurahan Air Hitam",
)
PLEAS = (
    "Mohon segera ditindaklanjuti.",
    "Tolong diperbaiki secepatnya.",
    "Kami menunggu kabar dari petugas.",
    "Terima kasih atas perhatiannya.",
)


class BenchmarkError(RuntimeError):
    """A run did not do what it should have; its numbers would mean nothing."""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load() -> float:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


# -- input -------------------------------------------------------------------------------------


def json_documents(count: int, *, seed: int = SEED) -> list[RawMessage]:
    """``count`` raw JSON documents: unique external id, text and sender each."""
    rng = random.Random(seed)
    numbers = rng.sample(range(10_000_000, 100_000_000), count)
    start = datetime.now(UTC) - timedelta(hours=1)
    raws = []
    for index in range(count):
        text = (
            f"Laporan warga nomor {index + 1}: {rng.choice(PROBLEMS)} di {rng.choice(PLACES)} "
            f"No. {rng.randint(1, 250)} RT {rng.randint(1, 40):02d} sejak "
            f"{rng.randint(2, 30)} hari. {rng.choice(PLEAS)}"
        )
        document = {
            "channel": "sms",
            "external_id": f"bench-{index + 1:07d}",
            "text": text,
            "sender": {"phone": f"0812{numbers[index]}"},
        }
        raws.append(
            RawMessage(
                connector=CONNECTOR,
                external_id=document["external_id"],
                received_at=start + timedelta(milliseconds=index),
                content_type="application/json",
                payload=json.dumps(document).encode(),
            )
        )
    return raws


def store_unfiled(url: str, raws: Sequence[RawMessage]) -> None:
    """Migrate the database at ``url`` and store ``raws`` as ``received``, nothing filed."""
    inbox = Inbox(default_config(url=url))
    try:
        now = datetime.now(UTC)
        for start in range(0, len(raws), STORE_CHUNK):
            with inbox.store.transaction() as conn:
                pipeline.store_raw(conn, raws[start : start + STORE_CHUNK], now)
    finally:
        inbox.close()


# -- databases ---------------------------------------------------------------------------------


class Postgres:
    """Throwaway databases on one server, made and dropped through its admin database."""

    def __init__(self, admin_url: str) -> None:
        self.admin = make_url(admin_url)
        if self.admin.get_backend_name() != "postgresql":
            raise SystemExit(f"workers: --pg-url must be a postgresql:// URL, not {admin_url}")
        self.name = f"omni_bench_{secrets.token_hex(4)}"
        self.created = False

    def _connect(self) -> psycopg.Connection[Any]:
        admin = self.admin
        return psycopg.connect(
            host=admin.host or "127.0.0.1",
            port=admin.port or 5432,
            user=admin.username or "postgres",
            password=admin.password,
            dbname=admin.database or "postgres",
            autocommit=True,
            connect_timeout=10,
        )

    @property
    def url(self) -> str:
        url: URL = self.admin.set(drivername="postgresql+psycopg", database=self.name)
        return url.render_as_string(hide_password=False)

    def reset(self) -> None:
        with self._connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.name}"')
        self.created = True

    def drop(self) -> None:
        if self.created:
            with self._connect() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.created = False

    def version(self) -> str:
        with self._connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "?"

    def lock_snapshot(self) -> list[str]:
        """Who waits for what in the benchmark database (for a run that timed out)."""
        query = """
            SELECT a.pid, a.state, a.wait_event_type, a.wait_event,
                   left(regexp_replace(a.query, '\\s+', ' ', 'g'), 160),
                   pg_blocking_pids(a.pid)
            FROM pg_stat_activity a WHERE a.datname = %s ORDER BY a.pid"""
        with self._connect() as conn:
            rows = conn.execute(query, (self.name,)).fetchall()
        return [" | ".join(str(value) for value in row) for row in rows]


class WaitSampler:
    """Samples, every ``interval`` seconds in a thread, what the benchmark database's client
    backends are doing: ``active``, ``idle in transaction`` (the worker's Python is busy
    inside its transaction), or waiting (``Lock/transactionid: UPDATE ticket_counters ...``)."""

    def __init__(self, postgres: Postgres, interval: float = 0.01) -> None:
        self.postgres, self.interval = postgres, interval
        self.counts: dict[str, int] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wait-sampler", daemon=True)

    def _run(self) -> None:
        query = """
            SELECT state, wait_event_type, wait_event, left(query, 50) FROM pg_stat_activity
            WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"""
        with self.postgres._connect() as conn:
            while not self._stop.is_set():
                for state, kind, event, sql in conn.execute(query, (self.postgres.name,)):
                    key = str(state)
                    if kind and kind not in ("Client", "Activity"):
                        key = f"{state}, waiting {kind}/{event}"
                        if kind == "Lock":
                            key += f": {' '.join(str(sql).split())}"
                    self.counts[key] = self.counts.get(key, 0) + 1
                self.samples += 1
                self._stop.wait(self.interval)

    def __enter__(self) -> WaitSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


@dataclass
class Backend:
    name: str
    url: str
    reset: Any
    snapshot: Any = None
    postgres: Postgres | None = None


@contextmanager
def backends(args: argparse.Namespace, folder: Path) -> Iterator[list[Backend]]:
    """The PostgreSQL and SQLite targets; the throwaway database is dropped at the end."""
    found: list[Backend] = []
    postgres = Postgres(args.pg_url) if args.processes else None
    try:
        if postgres is not None:
            args.pg_version = postgres.version()
            found.append(
                Backend(
                    "postgresql", postgres.url, postgres.reset, postgres.lock_snapshot, postgres
                )
            )
        if args.sqlite_processes:
            database = folder / "bench.db"

            def reset_sqlite() -> None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{database}{suffix}").unlink(missing_ok=True)

            found.append(Backend("sqlite", f"sqlite:///{database}", reset_sqlite))
        yield found
    finally:
        if postgres is not None:
            postgres.drop()


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Worker:
    process: subprocess.Popen[str]
    log: Path
    out: Path
    seconds: float | None = None


@dataclass
class Run:
    backend: str
    processes: int
    seconds: float
    per_process: list[float]
    filed: list[int]
    waiting: list[int]
    """What each process said was still waiting as it exited (rows others held locked)."""
    idle_seconds: float
    checks: dict[str, Any] = field(default_factory=dict)
    waits: dict[str, float] | None = None
    """Share of the samples of the backends' states (``--sample-waits``, PostgreSQL)."""
    notes: list[str] = field(default_factory=list)
    """Odd but harmless to the figures: the processes' own counts disagree with the database."""

    def rate(self, count: int) -> float:
        return count / self.seconds

    def net_rate(self, count: int) -> float:
        return count / max(self.seconds - self.idle_seconds, 1e-9)


def write_config(folder: Path, url: str, batch_size: int) -> Path:
    path = folder / "omnichannel.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n\n[filing]\nbatch_size = {batch_size}\n', encoding="utf-8"
    )
    return path


def start_workers(config: Path, count: int, folder: Path, tag: str) -> list[Worker]:
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "work", "--once"]
    workers = []
    for index in range(count):
        log, out = folder / f"{tag}-{index}.log", folder / f"{tag}-{index}.out"
        with log.open("w") as err, out.open("w") as std:
            process = subprocess.Popen(command, stdout=std, stderr=err, text=True, cwd=folder)
        workers.append(Worker(process, log, out))
    return workers


def wait_workers(workers: list[Worker], start: float, timeout: float) -> bool:
    """Wait until every worker has exited (True) or ``timeout`` has passed (False)."""
    while True:
        now = time.perf_counter()
        for worker in workers:
            if worker.seconds is None and worker.process.poll() is not None:
                worker.seconds = now - start
        if all(w.seconds is not None for w in workers):
            return True
        if now - start > timeout:
            return False
        time.sleep(0.005)


def kill_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()  # our own child, by its Popen handle
            worker.process.wait(timeout=30)


def log_excerpt(workers: Sequence[Worker], lines: int = 20) -> str:
    parts = []
    for index, worker in enumerate(workers):
        text = worker.log.read_text(errors="replace").splitlines()
        out = worker.out.read_text(errors="replace").splitlines()
        parts.append(
            f"--- worker {index} (exit {worker.process.returncode}), stdout: {out[-3:]}\n"
            + "\n".join(text[-lines:])
        )
    return "\n".join(parts)


def verify(url: str, count: int) -> dict[str, Any]:
    """What the database says about the run (every figure the checks use)."""
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:

            def scalar(sql: str) -> int:
                return int(conn.execute(sa.text(sql)).scalar_one())

            def grouped(sql: str) -> dict[str, int]:
                return {str(k): int(v) for k, v in conn.execute(sa.text(sql))}

            complaints, tickets = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT ticket) FROM complaints")
            ).one()
            messages, raw_ids = conn.execute(
                sa.text("SELECT count(*), count(DISTINCT raw_id) FROM messages")
            ).one()
            return {
                "status": grouped("SELECT status, count(*) FROM raw_messages GROUP BY status"),
                "outcome": grouped("SELECT outcome, count(*) FROM raw_messages GROUP BY outcome"),
                "complaints": int(complaints),
                "distinct_tickets": int(tickets),
                "messages": int(messages),
                "distinct_message_raw_ids": int(raw_ids),
                "complaints_with_several_messages": scalar(
                    "SELECT count(*) FROM (SELECT complaint_id FROM messages "
                    "GROUP BY complaint_id HAVING count(*) > 1) AS several"
                ),
                "quarantine_rows": scalar("SELECT count(*) FROM quarantine"),
                "queue_items": scalar("SELECT count(*) FROM queue_items"),
                "outbox": scalar("SELECT count(*) FROM outbox"),
            }
    finally:
        engine.dispose()


def problems_of(state: dict[str, Any], count: int, filed: Sequence[int]) -> list[str]:
    """What makes the run worthless: the database's own account (exactly once, all new)."""
    problems = []
    if state["status"].get("received"):
        problems.append(f"{state['status']['received']} raw rows still received")
    if state["status"] != {"processed": count}:
        problems.append(f"raw statuses {state['status']}, expected processed {count}")
    if state["outcome"] != {"new": count}:
        problems.append(f"outcomes {state['outcome']}, expected new {count}")
    for key in ("complaints", "distinct_tickets", "messages", "distinct_message_raw_ids"):
        if state[key] != count:
            problems.append(f"{key} {state[key]}, expected {count}")
    if state["complaints_with_several_messages"]:
        problems.append(f"{state['complaints_with_several_messages']} complaints with >1 message")
    if state["quarantine_rows"]:
        problems.append(f"{state['quarantine_rows']} quarantine rows")
    if -1 in filed:
        problems.append("a worker did not print its 'filed N messages; M waiting' line")
    return problems


def filed_counts(workers: Sequence[Worker], group: int = 1) -> list[int]:
    """Per process, N of its last line ``filed N messages; M waiting`` (M with group 2)."""
    counts = []
    for worker in workers:
        found = _FILED.search(worker.out.read_text(errors="replace"))
        counts.append(int(found.group(group)) if found else -1)
    return counts


def one_run(
    backend: Backend,
    processes: int,
    raws: Sequence[RawMessage],
    args: argparse.Namespace,
    folder: Path,
    tag: str,
) -> Run:
    backend.reset()
    store_unfiled(backend.url, raws)
    config = write_config(folder, backend.url, args.batch_size)
    sampler = WaitSampler(backend.postgres) if args.sample_waits and backend.postgres else None
    workers: list[Worker] = []
    try:
        with sampler or nullcontext():
            start = time.perf_counter()
            workers = start_workers(config, processes, folder, tag)
            finished = wait_workers(workers, start, args.timeout)
            elapsed = time.perf_counter() - start
    except BaseException:  # interrupted: leave no worker of ours running
        kill_workers(workers)
        raise
    if not finished:
        snapshot = backend.snapshot() if backend.snapshot else []
        kill_workers(workers)
        raise BenchmarkError(
            f"{backend.name} x{processes}: not finished after {args.timeout:.0f} s (killed)\n"
            + "pg_stat_activity: pid | state | wait type | wait event | query | blocked by\n"
            + "\n".join(snapshot)
            + "\n"
            + log_excerpt(workers)
        )
    state = verify(backend.url, len(raws))
    filed = filed_counts(workers)
    problems = problems_of(state, len(raws), filed)
    codes = [w.process.returncode for w in workers]
    if any(codes):
        problems.append(f"exit codes {codes}")
    bad = [
        line
        for w in workers
        for line in w.log.read_text(errors="replace").splitlines()
        if _BAD_LOG.search(line)
    ]
    if bad:
        problems.append(f"{len(bad)} WARNING/ERROR log lines, first: {bad[0]}")
    if problems:
        raise BenchmarkError(
            f"{backend.name} x{processes}: " + "; ".join(problems) + "\n" + log_excerpt(workers)
        )
    idle = idle_run(config, folder, tag)
    waits = None
    if sampler is not None and sampler.samples:
        waits = {
            key: round(value / sampler.samples, 3)
            for key, value in sorted(sampler.counts.items(), key=lambda kv: -kv[1])
        }
    return Run(
        backend.name,
        processes,
        elapsed,
        [round(w.seconds or 0.0, 3) for w in workers],
        filed,
        filed_counts(workers, 2),
        idle,
        state,
        waits,
        notes_of(filed, len(raws)),
    )


def notes_of(filed: Sequence[int], count: int) -> list[str]:
    if sum(filed) == count:
        return []
    return [
        f"the processes printed 'filed {' + '.join(map(str, filed))} = {sum(filed)} messages' "
        f"for {count} messages, each filed once according to the database"
    ]


def idle_run(config: Path, folder: Path, tag: str) -> float:
    """Seconds of one ``work --once`` with nothing waiting (the fixed cost of a process)."""
    start = time.perf_counter()
    workers = start_workers(config, 1, folder, f"{tag}-idle")
    if not wait_workers(workers, start, 120) or workers[0].process.returncode:
        kill_workers(workers)
        raise BenchmarkError("idle work --once failed\n" + log_excerpt(workers))
    if filed_counts(workers) != [0]:
        raise BenchmarkError("idle work --once filed something\n" + log_excerpt(workers))
    return time.perf_counter() - start


# -- reporting ---------------------------------------------------------------------------------


def summary(args: argparse.Namespace, runs: dict[tuple[str, int], list[Run]]) -> dict[str, Any]:
    results = []
    for (backend, processes), attempts in runs.items():
        best = min(attempts, key=lambda r: r.seconds)
        single = runs.get((backend, 1))
        base = min(single, key=lambda r: r.seconds) if single else None
        results.append(
            {
                "backend": backend,
                "processes": processes,
                "seconds": [round(r.seconds, 3) for r in attempts],
                "msg_per_s": round(best.rate(args.count), 1),
                "net_msg_per_s": round(best.net_rate(args.count), 1),
                "idle_process_seconds": round(best.idle_seconds, 3),
                "speedup": round(base.seconds / best.seconds, 3) if base else None,
                "per_process_seconds": best.per_process,
                "per_process_filed": best.filed,
                "per_process_waiting_at_exit": best.waiting,
                "checks": best.checks,
                "backend_states": best.waits,
                "notes": sorted({note for r in attempts for note in r.notes}),
            }
        )
    return {
        "benchmark": "workers",
        "count": args.count,
        "batch_size": args.batch_size,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "postgresql": getattr(args, "pg_version", None),
        "cpus": os.cpu_count(),
        "load_average_1min": {"before": args.load_before, "after": _load()},
        "results": results,
    }


def report_text(result: dict[str, Any]) -> str:
    lines = [
        f"omnichannel filing-worker benchmark — {result['count']:,} messages, "
        f"batch_size {result['batch_size']}, PostgreSQL {result['postgresql'] or '-'}, "
        f"Python {result['python']}, SQLAlchemy {result['sqlalchemy']}, {result['cpus']} CPUs",
        f"`work --once` processes started together, timed until all exit; best of "
        f"{result['repeat']} run(s), fresh database each; load average (1 min) "
        f"{result['load_average_1min']['before']:.2f} before, "
        f"{result['load_average_1min']['after']:.2f} after",
        f"{'backend':<11}{'procs':>5}{'msg/s':>9}{'speed-up':>10}{'net msg/s':>11}"
        f"{'idle proc':>11}   per process: seconds / filed",
    ]
    for r in result["results"]:
        speedup = f"{r['speedup']:.2f}x" if r["speedup"] is not None else "-"
        split = ", ".join(
            f"{s:.2f} s / {n}"
            for s, n in zip(r["per_process_seconds"], r["per_process_filed"], strict=True)
        )
        lines.append(
            f"{r['backend']:<11}{r['processes']:>5}{r['msg_per_s']:>9,.0f}{speedup:>10}"
            f"{r['net_msg_per_s']:>11,.0f}{r['idle_process_seconds']:>10.2f}s   {split}"
        )
    for r in result["results"]:
        lines += [f"note ({r['backend']} x{r['processes']}): {note}" for note in r["notes"]]
        if r["backend_states"]:
            lines.append(
                f"{r['backend']} x{r['processes']}, backends' states (mean number of backends "
                "per sample; --sample-waits):"
            )
            lines += [f"    {share:5.2f}  {key}" for key, share in r["backend_states"].items()]
    lines.append(
        "checks passed on every run: no row left received or quarantined, every message filed "
        "once as new (complaints = messages = count, tickets unique)"
    )
    return "\n".join(lines)


def _counts(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of counts: {text!r}"
        ) from None
    if any(v < 1 or v > 64 for v in values):
        raise argparse.ArgumentTypeError("process counts must be between 1 and 64")
    return sorted(set(values))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    description = __doc__.split("\n\n")[0] if __doc__ else None
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--count", type=int, default=5_000, help="messages (default 5000)")
    parser.add_argument(
        "--processes",
        type=_counts,
        default=[1, 2],
        help="PostgreSQL worker process counts, comma-separated (default 1,2; '' for none)",
    )
    parser.add_argument(
        "--sqlite-processes",
        type=_counts,
        default=[1],
        help="SQLite reference process counts (default 1; '' for none)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=100, help="[filing] batch_size (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (3)")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds before a run counts as hung (600)"
    )
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG,
        help=f"admin database URL; the benchmark database is made beside it ({DEFAULT_PG})",
    )
    parser.add_argument(
        "--sample-waits",
        action="store_true",
        help="sample pg_stat_activity every 10 ms during PostgreSQL runs (lock waits; costs CPU)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    for name in ("count", "batch_size", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.processes and not args.sqlite_processes:
        parser.error("nothing to measure: --processes and --sqlite-processes are both empty")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = _load()
    raws = json_documents(args.count)
    try:
        return run_all(args, raws)
    except psycopg.OperationalError as exc:  # the server, before any run
        print(f"workers: PostgreSQL unavailable: {exc}".rstrip(), file=sys.stderr)
        return 2


def run_all(args: argparse.Namespace, raws: Sequence[RawMessage]) -> int:
    runs: dict[tuple[str, int], list[Run]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="omni-bench-workers-") as tmp,
        backends(args, Path(tmp)) as targets,
    ):
        plan = [
            (backend, n)
            for backend in targets
            for n in (args.processes if backend.name == "postgresql" else args.sqlite_processes)
        ]
        try:
            for attempt in range(1, args.repeat + 1):
                for backend, processes in plan:
                    tag = f"{backend.name}-{processes}-{attempt}"
                    run = one_run(backend, processes, raws, args, Path(tmp), tag)
                    runs.setdefault((backend.name, processes), []).append(run)
                    progress(
                        f"  {backend.name} x{processes}: run {attempt}/{args.repeat} "
                        f"{run.seconds:.3f} s (idle process {run.idle_seconds:.2f} s), "
                        f"filed per process {run.filed}, waiting at exit {run.waiting}"
                    )
                    for note in run.notes:
                        progress(f"    note: {note}")
        except BenchmarkError as exc:
            print(f"workers: check failed: {exc}", file=sys.stderr)
            return 1
        except (psycopg.OperationalError, sa.exc.OperationalError) as exc:
            print(f"workers: database unavailable: {exc}".rstrip(), file=sys.stderr)
            return 2
    result = summary(args, runs)
    print(json.dumps(result, indent=2) if args.json else report_text(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
