"""Audit record benchmark: what the hash chain costs intake, and how long ``audit verify`` takes.

What is measured, on a fresh database each run (SQLite in a temporary directory, or with
``--postgres URL`` a throwaway database created on that server and dropped at the end):

- **intake with / without the record**: ``pipeline.store_raw`` of ``--count`` raw payloads
  (JSON ``InboundMessage`` documents of about 1 KB, every one unique), ``--batch`` per
  transaction, each batch committed: as shipped (an entry per payload, written at commit), and
  with ``audit.append_raws`` replaced by a no-op (no entry). Best of ``--repeat`` each.
- **verify**: on the database left by the last run with the record, plus ``--events`` complaint
  events over ``--complaints`` complaints (appended through ``audit.append_events``, as the
  queue does), ``audit.verify`` in ``audit.snapshot``: seconds, rows read per second, and the
  peak memory it added (Linux: ``VmHWM`` after resetting it; elsewhere not shown).

Run from the repository root::

    .venv/bin/python benchmarks/audit.py                       # 90,000 payloads + 10,000 events
    .venv/bin/python benchmarks/audit.py --count 10000 --events 1000 --repeat 1 --json
    .venv/bin/python benchmarks/audit.py --postgres postgresql://postgres@127.0.0.1:5432/test

Progress goes to stderr; the result (a table, or one JSON object with ``--json``) to stdout.
Compare intake with and without the record within one run, not across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omnichannel import audit, pipeline
from omnichannel.schema import RawMessage
from omnichannel.store import Store
from omnichannel.store.tables import complaint_events, complaints

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
WORDS = (
    "jalan rusak lampu mati sampah banjir izin kantor desa pelayanan lambat antrean pasar "
    "sekolah air bersih listrik padam jembatan retak puskesmas petugas warga mohon segera"
)


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def raws(count: int) -> list[RawMessage]:
    """``count`` unique JSON documents of about 1 KB, from a seeded generator."""
    rng = random.Random(42)
    words = WORDS.split()
    made = []
    for n in range(count):
        text = " ".join(rng.choice(words) for _ in range(130))
        doc = {"channel": "sms", "external_id": f"b-{n}", "text": text}
        doc["sender"] = {"phone": f"0812{n:08d}"}
        made.append(
            RawMessage(
                connector="files",
                external_id=f"b-{n}",
                received_at=T0 + timedelta(seconds=n),
                content_type="application/json",
                payload=json.dumps(doc).encode(),
            )
        )
    return made


@contextmanager
def database(postgres: str | None) -> Iterator[str]:
    """A URL of a fresh, empty database, removed afterwards."""
    if postgres is None:
        with tempfile.TemporaryDirectory(prefix="omni-audit-") as folder:
            yield f"sqlite:///{Path(folder) / 'bench.db'}"
        return
    name = f"omni_bench_audit_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield sa.make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def intake(store: Store, messages: list[RawMessage], batch: int) -> float:
    """Seconds to store ``messages``, ``batch`` per committed transaction."""
    started = time.perf_counter()
    for start in range(0, len(messages), batch):
        with store.transaction() as conn:
            pipeline.store_raw(conn, messages[start : start + batch], T0)
    return time.perf_counter() - started


@contextmanager
def without_record() -> Iterator[None]:
    original: Callable[..., None] = audit.append_raws
    audit.append_raws = lambda *_args, **_kw: None  # type: ignore[assignment]
    try:
        yield
    finally:
        audit.append_raws = original  # type: ignore[assignment]


def add_events(store: Store, complaint_count: int, event_count: int) -> None:
    """Complaints (inserted directly: filing is not what is measured) and comment events on
    them, each recorded as the queue records it."""
    rows = [
        {
            "ticket": f"ADU-2026-{n:06d}",
            "status": "open",
            "channel": "sms",
            "connector": "files",
            "received_at": T0,
            "updated_at": T0,
            "body": "Jalan rusak.",
            "anonymous": False,
            "confidential": False,
        }
        for n in range(1, complaint_count + 1)
    ]
    insert = sa.insert(complaint_events).returning(
        complaint_events.c.id, sort_by_parameter_order=True
    )
    with store.transaction() as conn:
        ids = (
            conn.execute(
                sa.insert(complaints).returning(complaints.c.id, sort_by_parameter_order=True), rows
            )
            .scalars()
            .all()
        )
    for start in range(0, event_count, 1000):
        events = [
            {
                "complaint_id": ids[n % len(ids)],
                "at": T0 + timedelta(minutes=n),
                "actor": "benchmark",
                "kind": "comment",
                "from_status": "open",
                "to_status": "open",
                "note": f"catatan {n}",
            }
            for n in range(start, min(start + 1000, event_count))
        ]
        with store.transaction() as conn:
            audit.append_events(conn, conn.execute(insert, events).scalars().all(), events)


def _peak_kib() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_verify(store: Store) -> dict[str, Any]:
    resettable = _reset_peak()
    before = _peak_kib()
    started = time.perf_counter()
    with audit.snapshot(store) as conn:
        rows = audit.size(conn)
        report = audit.verify(conn)
    seconds = time.perf_counter() - started
    after = _peak_kib()
    if not report.intact:
        raise SystemExit(f"the record does not verify: {report.problems[:3]}")
    added = (after - before) / 1024 if resettable and before and after else None
    return {
        "entries": report.entries,
        "rows_read": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds),
        "peak_added_mib": round(added, 1) if added is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=90_000, help="raw payloads")
    parser.add_argument("--batch", type=int, default=200, help="payloads per transaction")
    parser.add_argument("--events", type=int, default=10_000, help="complaint events")
    parser.add_argument("--complaints", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--postgres", help="a PostgreSQL server URL (default: SQLite)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    messages = raws(args.count)
    best: dict[str, float] = {}
    verified: dict[str, Any] = {}
    for run in range(1, args.repeat + 1):
        for mode in ("without", "with"):
            with database(args.postgres) as url:
                store = Store(url)
                if mode == "with":
                    seconds = intake(store, messages, args.batch)
                else:
                    with without_record():
                        seconds = intake(store, messages, args.batch)
                progress(f"  intake {mode} the record: run {run}/{args.repeat} {seconds:.3f} s")
                best[mode] = min(best.get(mode, seconds), seconds)
                if mode == "with" and run == args.repeat:
                    add_events(store, args.complaints, args.events)
                    verified = measure_verify(store)
                    progress(f"  verify: {verified['seconds']:.3f} s")
                store.dispose()
    backend = "PostgreSQL" if args.postgres else f"SQLite {_sqlite()}"
    result = {
        "backend": backend,
        "count": args.count,
        "batch": args.batch,
        "intake_without_record_per_s": round(args.count / best["without"]),
        "intake_with_record_per_s": round(args.count / best["with"]),
        "intake_ratio": round(best["without"] / best["with"], 3),
        "verify": verified,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"omnichannel audit benchmark — {backend}, {args.count:,} payloads of ~1 KB, batch "
        f"{args.batch}, best of {args.repeat}, Python {result['python']}, {result['cpus']} CPUs"
    )
    print(f"intake without the record   {result['intake_without_record_per_s']:>8,} payloads/s")
    print(
        f"intake with the record      {result['intake_with_record_per_s']:>8,} payloads/s   "
        f"(with/without {1 / result['intake_ratio']:.2f}x the time)"
    )
    peak = verified["peak_added_mib"]
    print(
        f"verify {verified['entries']:,} entries     {verified['seconds']:>8.2f} s   "
        f"({verified['rows_per_second']:,} rows/s of {verified['rows_read']:,}; peak memory "
        f"added {f'{peak} MiB' if peak is not None else 'n/a'})"
    )


def _sqlite() -> str:
    import sqlite3

    return sqlite3.sqlite_version


if __name__ == "__main__":
    main()
