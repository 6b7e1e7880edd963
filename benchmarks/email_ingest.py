"""E-mail ingest benchmark: the real-world e-mail corpus through ``ingest``, beside a stdlib floor.

What is measured, on SQLite in a temporary directory, both in the same run:

- **floor: stdlib parse + insert**: for each ``.eml`` file, read it,
  ``email.message_from_bytes(data, policy=email.policy.default)``, take Subject, From, Date,
  Message-ID and the text body (``get_body(preferencelist=("plain", "html")).get_content()``),
  and insert one row (raw bytes + those fields) into one table of a fresh SQLite file with the
  store's settings (WAL, ``synchronous=NORMAL``), one ``executemany`` and one commit per
  ``--batch`` files.  The least any "parse and keep it" path does: no MIME cleanup, no
  charset repair, no quote trimming, no dedupe, no tickets, no queue.
- **ours: Inbox.ingest_files**: ``Inbox(default_config(url=...)).ingest_files("files", paths,
  batch_size=--batch)`` on a fresh, migrated SQLite file, the iterator consumed: per batch the
  raw payloads are stored and committed, then each mail is decoded (``normalizer.email``),
  normalized, deduplicated and filed (complaint or merge, message, attachments, queue item,
  acknowledgement) in a second transaction.  Building the Inbox and migrating the database are
  outside the timed region; reading the files is inside it, for both.

Input: ``tests/testdata/email/*.eml`` (about 60 real-world-shaped mails: replies, attachments,
encodings, auto-replies, bounces, one 270 KB attachment) replicated to ``--count`` files in a
temporary directory before any timing.  Round 0 is every corpus file unchanged; each further
round copies every mail that has a Message-ID header with only that header's value changed (a
``bNNNNNN.`` prefix inside its ``<...>``), so every file is unique.  A mail without a Message-ID
is used once (any copy would be byte-identical, i.e. a redelivery).  Since a copy has the same
sender and text as its original, most copies are filed as ``merged`` into the original's
complaint (auto-replies and bounces as ``ignored``); the outcome counts are printed.

Each measurement is the best of ``--repeat`` runs (floor and ours alternate), each on a fresh
database.  Checked after every run of ours, else exit status 1: one result per file, none with
a reading ``error``, every one with an outcome, no ``duplicate``, one raw row per file.

Run from the repository root::

    .venv/bin/python benchmarks/email_ingest.py                 # 5,000 files, best of 3
    .venv/bin/python benchmarks/email_ingest.py --count 1000 --repeat 1 --json

How to read it: messages/s depend on the machine and its load; the figure that means something
is **ours/floor** within one run (the issue's target: at least 0.75).  Progress goes to stderr,
the result (a table, or one JSON object with ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import email
import email.header
import email.message
import email.policy
import hashlib
import json
import os
import platform
import re
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omnichannel.config import default_config
from omnichannel.inbox import Inbox
from omnichannel.store.tables import complaints, raw_messages

CONNECTOR = "files"
TARGET_RATIO = 0.75
CORPUS = Path(__file__).resolve().parent.parent / "tests" / "testdata" / "email"
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"message-id[ \t]*:", re.IGNORECASE)


class BenchmarkError(RuntimeError):
    """A run did not do what it should have; its numbers would mean nothing."""


def _load() -> float:
    """The 1-minute load average (0 where the platform has none): other work on the machine."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return 0.0


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the replicated corpus ---------------------------------------------------------------------


def rewrite_message_id(data: bytes, copy: int) -> bytes | None:
    """``data`` with the top-level Message-ID value prefixed by ``b<copy>.`` (inside ``<...>``
    when there is one); every other byte unchanged.  None when there is no Message-ID header."""
    end = _HEADER_END.search(data)
    header_end = end.start() if end else len(data)
    position = 0
    for line in data[:header_end].splitlines(keepends=True):
        if _MESSAGE_ID.match(line):  # a header line (continuations start with a blank)
            colon = position + line.index(b":") + 1
            rest = data[colon : position + len(line)]
            mark = f"b{copy:06d}.".encode()
            angle = rest.find(b"<")  # inside <...>, else before the first non-blank byte
            skip = angle + 1 if angle >= 0 else len(rest) - len(rest.lstrip(b" \t"))
            at = colon + skip
            return data[:at] + mark + data[at:]
        position += len(line)
    return None


def replicate(corpus: Sequence[Path], count: int, folder: Path) -> list[Path]:
    """``count`` unique ``.eml`` files in ``folder``: the corpus unchanged, then rounds of
    copies with a rewritten Message-ID, in order."""
    originals = [(path.name, path.read_bytes()) for path in corpus]
    rounds: list[list[tuple[str, bytes]]] = [originals]
    copyable = [(name, data) for name, data in originals if rewrite_message_id(data, 0)]
    if not copyable:
        raise BenchmarkError("no corpus mail has a Message-ID header to rewrite")
    copy = 1
    while sum(len(r) for r in rounds) < count:
        this_round = []
        for name, data in copyable:
            changed = rewrite_message_id(data, copy)
            assert changed is not None
            this_round.append((f"{Path(name).stem}.c{copy:06d}.eml", changed))
        rounds.append(this_round)
        copy += 1
    paths, digests = [], set()
    for index, (name, data) in enumerate(item for r in rounds for item in r):
        if index >= count:
            break
        digests.add(hashlib.sha256(data).digest())
        path = folder / f"{index:07d}-{name}"
        path.write_bytes(data)
        paths.append(path)
    if len(digests) != len(paths):
        raise BenchmarkError("replicated files are not all different")
    return paths


# -- the floor ---------------------------------------------------------------------------------

FLOOR_TABLE = """CREATE TABLE mails (
    id INTEGER PRIMARY KEY,
    file TEXT NOT NULL,
    message_id TEXT,
    subject TEXT,
    sender TEXT,
    date TEXT,
    body TEXT,
    raw BLOB NOT NULL
)"""
FLOOR_INSERT = (
    "INSERT INTO mails (file, message_id, subject, sender, date, body, raw) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _header(message: email.message.EmailMessage, name: str, failures: Counter[str]) -> str | None:
    try:
        value = message[name]
        return None if value is None else str(value)
    except Exception:
        failures[name] += 1
        return None


def floor_row(path: Path, data: bytes, failures: Counter[str]) -> tuple[Any, ...]:
    """Parse one mail with the stdlib (``policy.default``); a field it cannot read is None
    (counted in ``failures``)."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    body = None
    try:
        part = message.get_body(preferencelist=("plain", "html"))
        body = part.get_content() if part is not None else None
    except Exception:
        failures["body"] += 1
    return (
        path.name,
        _header(message, "message-id", failures),
        _header(message, "subject", failures),
        _header(message, "from", failures),
        _header(message, "date", failures),
        body,
        data,
    )


def _compat32_header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except Exception:  # unknown charset, malformed encoded word: keep the raw text
        return str(value)


def _compat32_body(message: email.message.Message) -> str | None:
    for wanted in ("plain", "html"):
        for part in message.walk():
            if part.get_content_maintype() != "text" or part.get_content_subtype() != wanted:
                continue
            if part.get_content_disposition() == "attachment":
                continue
            raw = part.get_payload(decode=True)
            if not isinstance(raw, bytes):
                continue
            try:
                return raw.decode(part.get_content_charset() or "utf-8", "replace")
            except LookupError:
                return raw.decode("utf-8", "replace")
    return None


def floor_row_compat32(path: Path, data: bytes, failures: Counter[str]) -> tuple[Any, ...]:
    """The same fields with the stdlib's ``compat32`` policy (the one ``normalizer.email``
    parses with first): RFC 2047 headers via ``decode_header``, the first text/plain (else
    text/html) part that is not an attachment, decoded with its charset."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    return (
        path.name,
        _compat32_header(message, "message-id"),
        _compat32_header(message, "subject"),
        _compat32_header(message, "from"),
        _compat32_header(message, "date"),
        _compat32_body(message),
        data,
    )


RowMaker = Callable[[Path, bytes, Counter[str]], tuple[Any, ...]]
FLOORS: dict[str, RowMaker] = {"default": floor_row, "compat32": floor_row_compat32}


def run_floor(
    paths: Sequence[Path], folder: Path, batch: int, make_row: RowMaker = floor_row
) -> tuple[float, Counter[str]]:
    """Seconds for the stdlib parse + insert of every file; fields it could not read."""
    database = folder / "floor.db"
    conn = sqlite3.connect(database, isolation_level=None)
    failures: Counter[str] = Counter()
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(FLOOR_TABLE)
        start = time.perf_counter()
        rows: list[tuple[Any, ...]] = []
        for path in paths:
            rows.append(make_row(path, path.read_bytes(), failures))
            if len(rows) >= batch:
                _insert_batch(conn, rows)
                rows = []
        _insert_batch(conn, rows)
        elapsed = time.perf_counter() - start
        stored = conn.execute("SELECT count(*) FROM mails").fetchone()[0]
    finally:
        conn.close()
    if stored != len(paths):
        raise BenchmarkError(f"floor: {stored} rows stored for {len(paths)} files")
    return elapsed, failures


def _insert_batch(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(FLOOR_INSERT, rows)
        conn.execute("COMMIT")


# -- ours --------------------------------------------------------------------------------------


@dataclass
class IngestRun:
    seconds: float
    outcomes: Counter[str] = field(default_factory=Counter)
    quarantined_errors: Counter[str] = field(default_factory=Counter)
    complaints: int = 0


def _count(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def run_ours(paths: Sequence[Path], folder: Path, batch: int) -> IngestRun:
    """Seconds for ``Inbox.ingest_files`` over every file (iterator consumed), checked."""
    inbox = Inbox(default_config(url=f"sqlite:///{folder / 'ours.db'}"))
    try:
        inbox.connector(CONNECTOR)  # built from the configuration outside the timed region
        start = time.perf_counter()
        results = list(inbox.ingest_files(CONNECTOR, paths, batch_size=batch))
        run = IngestRun(time.perf_counter() - start)
        reading = [r for r in results if r.error is not None]
        missing = [r for r in results if r.result is None or r.result.outcome is None]
        for item in results:
            if item.result is not None and item.result.outcome is not None:
                run.outcomes[item.result.outcome.value] += 1
                if item.result.outcome.value == "quarantined":
                    run.quarantined_errors[f"{item.path.name}: {item.result.error}"] += 1
        stored = _count(inbox, raw_messages)
        run.complaints = _count(inbox, complaints)
    finally:
        inbox.close()
    problems = []
    if len(results) != len(paths):
        problems.append(f"{len(results)} results for {len(paths)} files")
    if reading:
        problems.append(f"{len(reading)} reading errors, first: {reading[0].error}")
    if missing:
        problems.append(f"{len(missing)} results without an outcome, first: {missing[0].path}")
    if run.outcomes.get("duplicate"):
        problems.append(f"{run.outcomes['duplicate']} duplicates among unique files")
    if stored != len(paths):
        problems.append(f"{stored} raw rows stored for {len(paths)} files")
    if problems:
        raise BenchmarkError("ingest_files: " + "; ".join(problems))
    return run


# -- running and reporting ---------------------------------------------------------------------


@dataclass
class Runs:
    floors: dict[str, list[float]] = field(default_factory=dict)
    unreadable: dict[str, Counter[str]] = field(default_factory=dict)
    ours: list[IngestRun] = field(default_factory=list)


def run_all(args: argparse.Namespace, paths: Sequence[Path]) -> Runs:
    """``--repeat`` rounds of: each floor, then ours; each on a fresh database."""
    runs = Runs()
    for attempt in range(1, args.repeat + 1):
        for name in args.floors:
            with tempfile.TemporaryDirectory(prefix="omni-bench-floor-") as tmp:
                seconds, failures = run_floor(paths, Path(tmp), args.batch, FLOORS[name])
            runs.floors.setdefault(name, []).append(seconds)
            runs.unreadable[name] = failures
            progress(f"  floor ({name}): run {attempt}/{args.repeat} {seconds:.3f} s")
        with tempfile.TemporaryDirectory(prefix="omni-bench-ours-") as tmp:
            runs.ours.append(run_ours(paths, Path(tmp), args.batch))
        progress(f"  ingest_files: run {attempt}/{args.repeat} {runs.ours[-1].seconds:.3f} s")
    return runs


def summary(
    args: argparse.Namespace, corpus: Sequence[Path], paths: Sequence[Path], runs: Runs
) -> dict[str, Any]:
    best = min(runs.ours, key=lambda r: r.seconds)
    ours_rate = len(paths) / best.seconds
    floors = {
        name: {
            "seconds": [round(s, 4) for s in times],
            "msg_per_s": round(len(paths) / min(times), 1),
            "unreadable_fields": dict(runs.unreadable[name]),
            "ratio": round(ours_rate * min(times) / len(paths), 3),
        }
        for name, times in runs.floors.items()
    }
    return {
        "benchmark": "email_ingest",
        "backend": "sqlite",
        "files": len(paths),
        "corpus_files": len(corpus),
        "megabytes": round(sum(p.stat().st_size for p in paths) / 1e6, 2),
        "batch": args.batch,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "sqlite": sqlite3.sqlite_version,
        "cpus": os.cpu_count(),
        "load_average_1min": {"before": round(args.load_before, 2), "after": _load()},
        "floor": floors,
        "ours": {
            "seconds": [round(r.seconds, 4) for r in runs.ours],
            "msg_per_s": round(ours_rate, 1),
            "outcomes": dict(sorted(best.outcomes.items())),
            "complaints": best.complaints,
            "quarantined": dict(best.quarantined_errors),
        },
        "ratio": floors["default"]["ratio"] if "default" in floors else None,
        "target_ratio": TARGET_RATIO,
    }


def report_text(result: dict[str, Any]) -> str:
    ours = result["ours"]
    outcomes = ", ".join(f"{k} {v}" for k, v in ours["outcomes"].items())
    lines = [
        f"omnichannel e-mail ingest benchmark — {result['files']:,} files "
        f"({result['corpus_files']} corpus mails replicated, {result['megabytes']} MB), "
        f"batch {result['batch']}, SQLite {result['sqlite']}, Python {result['python']}, "
        f"SQLAlchemy {result['sqlalchemy']}, {result['cpus']} CPUs",
        f"best of {result['repeat']} run(s) each, fresh database per run; load average (1 min) "
        f"{result['load_average_1min']['before']:.2f} before, "
        f"{result['load_average_1min']['after']:.2f} after",
    ]
    for name, floor in result["floor"].items():
        label = f"floor: stdlib {name} parse + insert"
        lines.append(
            f"{label:<40}{floor['msg_per_s']:>9,.0f} msg/s   ({min(floor['seconds']):.3f} s)"
            f"   ours/floor {floor['ratio']:.2f}"
        )
    lines.append(
        f"{'ours: Inbox.ingest_files':<40}{ours['msg_per_s']:>9,.0f} msg/s   "
        f"({min(ours['seconds']):.3f} s)"
    )
    if result["ratio"] is not None:
        met = "met" if result["ratio"] >= result["target_ratio"] else "NOT met"
        lines.append(
            f"ratio ours/floor (policy.default floor): {result['ratio']:.2f}  "
            f"(target >= {result['target_ratio']:.2f}: {met})"
        )
    lines.append(f"ours, outcomes: {outcomes}; complaints {ours['complaints']:,}")
    for name, floor in result["floor"].items():
        unreadable = ", ".join(f"{k} {v}" for k, v in floor["unreadable_fields"].items())
        lines.append(f"floor ({name}), fields the stdlib could not read: {unreadable or 'none'}")
    for item, times in ours["quarantined"].items():
        lines.append(f"  quarantined x{times}: {item}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    description = __doc__.split("\n\n")[0] if __doc__ else None
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--count", type=int, default=5_000, help="files (default 5000)")
    parser.add_argument(
        "--batch", type=int, default=200, help="files per batch, both paths (default 200)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, best kept (3)")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="folder of .eml files (the test corpus)"
    )
    parser.add_argument(
        "--floor",
        dest="floors",
        action="append",
        choices=sorted(FLOORS),
        help="floor(s) to measure (default: both; the target ratio is against 'default')",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    args.floors = sorted(set(args.floors or FLOORS), key=list(FLOORS).index)
    for name in ("count", "batch", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.load_before = _load()
    corpus = sorted(args.corpus.glob("*.eml"))
    if not corpus:
        print(f"email_ingest: no .eml files in {args.corpus}", file=sys.stderr)
        return 2
    render: Callable[[dict[str, Any]], str] = (
        (lambda r: json.dumps(r, indent=2)) if args.json else report_text
    )
    with tempfile.TemporaryDirectory(prefix="omni-bench-mail-") as tmp:
        paths = replicate(corpus, args.count, Path(tmp))
        progress(f"{len(paths)} files written from {len(corpus)} corpus mails to {tmp}")
        try:
            runs = run_all(args, paths)
        except BenchmarkError as exc:
            print(f"email_ingest: check failed: {exc}", file=sys.stderr)
            return 1
        result = summary(args, corpus, paths, runs)
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
