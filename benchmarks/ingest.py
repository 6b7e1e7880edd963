"""Ingest benchmark: how fast the public API files complaints, against the storage floor.

What is measured, all on SQLite in a temporary directory and all in one run:

- **raw Core insert (floor)**: the same raw payload rows the pipeline stores first, built the way
  ``pipeline.store_raw`` builds them (sha256 computed inside the timed region), inserted with one
  ``executemany`` ``INSERT`` into ``raw_messages`` of a freshly migrated database, in a single
  transaction.  Nothing the pipeline does can be cheaper than this.
- **pipeline receive_many**: ``Inbox.receive_many`` over the ``files`` connector in batches of
  ``--batch``: store raw, decode the JSON document, normalize, dedupe, file a complaint, queue
  item and acknowledgement per message.
- **pipeline receive (one by one)**: ``Inbox.receive`` per message, on a smaller sample.

The synthetic complaints (seeded, so every run sees the same input) are JSON ``InboundMessage``
documents with varied Indonesian-looking text and a unique local-format mobile number each, over
the channels sms, whatsapp, web and email; they are built before any timing starts.  Every
measurement is the best of ``--repeat`` runs, each on a fresh database; the pipeline runs are
checked afterwards (every message ``new``, one complaint per message) and a failed check exits
non-zero.  Rates are machine-dependent: compare the ratios within one run, not across machines.

Run from the repository root::

    .venv/bin/python benchmarks/ingest.py                  # 10,000 messages, batch 200
    .venv/bin/python benchmarks/ingest.py --count 2000 --repeat 1 --json
    .venv/bin/python benchmarks/ingest.py --profile        # + cProfile of receive_many on stderr
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import platform
import pstats
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omnichannel import Inbox, Outcome, RawMessage, ReceiveResult
from omnichannel.config import default_config
from omnichannel.store.tables import complaints, raw_messages

CONNECTOR = "files"
CHANNELS = ("sms", "whatsapp", "web", "email")
PHONE_PREFIXES = ("0811", "0812", "0813", "0821", "0852", "0857", "0878", "0896")
TARGET_RATIO = 25.0  # percent of the raw floor the project aims for (informative only)
SEED = 42
EPOCH = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

# -- synthetic complaints ----------------------------------------------------------------------

OPENINGS = (
    "Selamat pagi",
    "Selamat siang",
    "Selamat sore",
    "Assalamualaikum",
    "Permisi",
    "Yth. Bapak/Ibu petugas",
    "Mohon maaf mengganggu",
    "Halo admin",
    "Salam sejahtera",
)
PROBLEMS = (
    "jalan berlubang",
    "lampu penerangan jalan mati",
    "saluran air tersumbat",
    "sampah menumpuk",
    "banjir setiap hujan deras",
    "pipa PDAM bocor",
    "jembatan retak",
    "pohon tumbang",
    "trotoar rusak",
    "air bersih tidak mengalir",
    "pungutan liar",
    "pelayanan KTP lambat",
    "listrik sering padam",
    "parkir liar",
    "bau limbah pabrik",
    "antrean puskesmas terlalu panjang",
    "guru sering tidak hadir",
    "drainase meluap",
)
PLACES = (
    "Jalan Merdeka",
    "Jalan Sudirman",
    "Jalan Ahmad Yani",
    "Jalan Diponegoro",
    "Jalan Gatot Subroto",
    "Jalan Pahlawan",
    "Jalan Veteran",
    "Jalan Kartini",
    "Jalan Hasanuddin",
    "Jalan Pattimura",
    "Gang Mawar",
    "Gang Melati",
    "Perumahan Griya Indah",
)
DISTRICTS = (
    "Kelurahan Karang Anyar",
    "Kelurahan Sungai Pinang",
    "Kelurahan Tanjung Harapan",
    "Desa Sukamaju",
    "Desa Tanah Merah",
    "Kecamatan Samarinda Ulu",
    "Kecamatan Balikpapan Kota",
    "Kelurahan Air Hitam",
    "Desa Lempake",
    "Kecamatan Sungai Kunjang",
)
DURATIONS = (
    "sejak dua minggu",
    "sudah satu bulan",
    "hampir tiga bulan",
    "sejak awal tahun",
    "sudah berhari-hari",
    "sejak minggu lalu",
    "lebih dari setengah tahun",
)
EFFECTS = (
    "warga kesulitan lewat",
    "anak sekolah harus memutar jauh",
    "sudah ada korban jatuh dari motor",
    "rumah warga tergenang",
    "pedagang pasar mengeluh",
    "lansia tidak bisa keluar rumah",
    "kendaraan sering mogok",
    "warga terpaksa membeli air galon",
    "nyamuk semakin banyak",
    "malam hari sangat gelap dan rawan",
    "usaha kecil kami rugi",
)
ACTIONS = (
    "sudah kami laporkan ke RT tetapi belum ada tindak lanjut",
    "kami sudah gotong royong namun masalahnya kembali lagi",
    "petugas pernah datang mengecek tetapi tidak diperbaiki",
    "laporan lewat kelurahan belum dijawab",
    "kami sudah menunggu cukup lama",
)
REQUESTS = (
    "Mohon segera ditindaklanjuti",
    "Kami berharap dinas terkait turun ke lokasi",
    "Tolong diperbaiki secepatnya",
    "Mohon perhatian pemerintah kota",
    "Kami minta kejelasan kapan akan diperbaiki",
    "Mohon dibantu agar tidak berlarut-larut",
)
CLOSINGS = ("Terima kasih", "Terima kasih atas perhatiannya", "Hormat kami", "Salam", "Wassalam")
NAMES = (
    "Budi",
    "Siti",
    "Agus",
    "Dewi",
    "Rahmat",
    "Nur",
    "Andi",
    "Yuni",
    "Hendra",
    "Rina",
    "Fajar",
    "Wati",
    "Joko",
    "Sri",
    "Bambang",
    "Lestari",
    "Eko",
    "Ayu",
    "Irfan",
    "Maya",
)
SURNAMES = (
    "Santoso",
    "Wijaya",
    "Hidayat",
    "Saputra",
    "Lestari",
    "Pratama",
    "Nugroho",
    "Rahayu",
    "Kusuma",
    "Siregar",
    "Harahap",
    "Setiawan",
    "Syahputra",
    "Utami",
)


def _sentence(rng: random.Random, problem: str) -> str:
    return (
        f"Di {rng.choice(PLACES)} No. {rng.randint(1, 250)} RT {rng.randint(1, 40):02d} "
        f"RW {rng.randint(1, 15):02d}, {rng.choice(DISTRICTS)}, ada {problem} "
        f"{rng.choice(DURATIONS)}, akibatnya {rng.choice(EFFECTS)}."
    )


def complaint_text(rng: random.Random) -> tuple[str, str]:
    """A complaint of roughly 200 to 400 characters, and the problem it is mainly about."""
    problem, other = rng.sample(PROBLEMS, 2)
    parts = [f"{rng.choice(OPENINGS)}, saya ingin melaporkan.", _sentence(rng, problem)]
    if rng.random() < 0.6:
        parts.append(f"Selain itu ada juga {other}, {rng.choice(EFFECTS)}.")
    parts.append(f"Masalah ini {rng.choice(ACTIONS)}.")
    parts.append(f"{rng.choice(REQUESTS)}. {rng.choice(CLOSINGS)}.")
    text = " ".join(parts)
    while len(text) < 200:
        text += f" Sekali lagi, {problem} di {rng.choice(PLACES)}."
    return problem, text[:400]


def _unique_phones(rng: random.Random, count: int) -> list[str]:
    phones: set[str] = set()
    while len(phones) < count:
        phones.add(rng.choice(PHONE_PREFIXES) + str(rng.randrange(10_000_000, 100_000_000)))
    return rng.sample(sorted(phones), count)


def _unique_texts(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """``count`` (problem, text) pairs whose texts differ even ignoring case and spacing."""
    texts: list[tuple[str, str]] = []
    seen: set[str] = set()
    while len(texts) < count:
        problem, text = complaint_text(rng)
        key = " ".join(text.casefold().split())
        if key not in seen:
            seen.add(key)
            texts.append((problem, text))
    return texts


def _document(
    index: int, channel: str, phone: str, complaint: tuple[str, str], rng: random.Random
) -> dict[str, Any]:
    problem, text = complaint
    name = f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"
    document: dict[str, Any] = {
        "channel": channel,
        "external_id": f"bench-{index:07d}",
        "sent_at": (EPOCH + timedelta(seconds=index)).isoformat().replace("+00:00", "Z"),
        "sender": {"name": name, "phone": phone},
        "text": text,
    }
    if channel == "email":
        document["sender"]["email"] = f"warga{index:07d}@contoh.co.id"
        document["subject"] = f"Pengaduan: {problem}"
    return document


def synthetic_messages(count: int, *, seed: int = SEED, prefix: str = "") -> list[RawMessage]:
    """``count`` distinct complaints as raw JSON documents of the ``files`` connector."""
    rng = random.Random(seed)
    phones, texts = _unique_phones(rng, count), _unique_texts(rng, count)
    raws = []
    for index in range(count):
        document = _document(
            index, CHANNELS[index % len(CHANNELS)], phones[index], texts[index], rng
        )
        document["external_id"] = prefix + document["external_id"]
        raws.append(
            RawMessage(
                connector=CONNECTOR,
                external_id=document["external_id"],
                received_at=EPOCH + timedelta(seconds=index, milliseconds=500),
                content_type="application/json",
                payload=json.dumps(document, ensure_ascii=False).encode("utf-8"),
            )
        )
    return raws


# -- databases ---------------------------------------------------------------------------------


@contextmanager
def fresh_inbox() -> Iterator[Inbox]:
    """An Inbox on a new, migrated SQLite file in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="omnichannel-bench-") as tmp:
        inbox = Inbox(default_config(url=f"sqlite:///{Path(tmp) / 'bench.db'}"))
        try:
            inbox.connector(CONNECTOR)  # built from the config outside the timed region
            yield inbox
        finally:
            inbox.close()


def count_rows(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


class BenchmarkError(RuntimeError):
    """A run did not do what it should have; the numbers would mean nothing."""


def check_filed(inbox: Inbox, results: Sequence[ReceiveResult], expected: int, what: str) -> None:
    """Every message ``new`` and exactly one complaint per message, else BenchmarkError."""
    outcomes: dict[str, int] = {}
    for result in results:
        outcomes[result.outcome.value] = outcomes.get(result.outcome.value, 0) + 1
    stored = count_rows(inbox, complaints)
    if len(results) != expected or outcomes.get(Outcome.NEW.value, 0) != expected:
        raise BenchmarkError(f"{what}: expected {expected} results all 'new', got {outcomes}")
    if stored != expected:
        raise BenchmarkError(f"{what}: expected {expected} complaints, found {stored}")


# -- measurements ------------------------------------------------------------------------------


def raw_rows(raws: Sequence[RawMessage], now: datetime) -> list[dict[str, Any]]:
    """The rows ``pipeline.store_raw`` inserts, built the same way (sha256 included)."""
    return [
        {
            "connector": r.connector,
            "external_id": r.external_id,
            "received_at": r.received_at,
            "stored_at": now,
            "content_type": r.content_type,
            "payload": r.payload,
            "size": len(r.payload),
            "sha256": hashlib.sha256(r.payload).hexdigest(),
            "meta": r.meta,
            "status": "received",
        }
        for r in raws
    ]


def time_raw_insert(raws: Sequence[RawMessage]) -> float:
    """Seconds for one executemany INSERT of all raw rows in one transaction."""
    with fresh_inbox() as inbox:
        start = time.perf_counter()
        with inbox.store.engine.begin() as conn:
            conn.execute(sa.insert(raw_messages), raw_rows(raws, datetime.now(UTC)))
        elapsed = time.perf_counter() - start
        if count_rows(inbox, raw_messages) != len(raws):
            raise BenchmarkError("raw insert: row count differs from the message count")
    return elapsed


def receive_batches(inbox: Inbox, raws: Sequence[RawMessage], batch: int) -> list[ReceiveResult]:
    results: list[ReceiveResult] = []
    for start in range(0, len(raws), batch):
        results += inbox.receive_many(raws[start : start + batch])
    return results


def time_receive_many(raws: Sequence[RawMessage], batch: int) -> float:
    with fresh_inbox() as inbox:
        start = time.perf_counter()
        results = receive_batches(inbox, raws, batch)
        elapsed = time.perf_counter() - start
        check_filed(inbox, results, len(raws), "receive_many")
    return elapsed


def time_receive_single(raws: Sequence[RawMessage]) -> float:
    with fresh_inbox() as inbox:
        start = time.perf_counter()
        results = [inbox.receive(raw) for raw in raws]
        elapsed = time.perf_counter() - start
        check_filed(inbox, results, len(raws), "receive")
    return elapsed


def best_of(repeat: int, name: str, run: Callable[[], float]) -> float:
    """The shortest of ``repeat`` runs (progress on stderr: a full run takes minutes)."""
    times = []
    for attempt in range(1, repeat + 1):
        times.append(run())
        print(f"  {name}: run {attempt}/{repeat} {times[-1]:.3f} s", file=sys.stderr, flush=True)
    return min(times)


def profile_receive_many(raws: Sequence[RawMessage], batch: int, top: int = 25) -> None:
    """One extra (untimed) receive_many loop under cProfile; top functions to stderr."""
    with fresh_inbox() as inbox:
        profiler = cProfile.Profile()
        profiler.enable()
        results = receive_batches(inbox, raws, batch)
        profiler.disable()
        check_filed(inbox, results, len(raws), "receive_many (profiled)")
    print(
        f"\ncProfile of receive_many, {len(raws)} messages, batch {batch} "
        f"(top {top} by cumulative time):",
        file=sys.stderr,
    )
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)


# -- report ------------------------------------------------------------------------------------


@dataclass
class Measurement:
    name: str
    messages: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


def report_json(
    args: argparse.Namespace, raw: Measurement, rows: Sequence[Measurement]
) -> dict[str, Any]:
    def entry(m: Measurement) -> dict[str, Any]:
        return {
            **asdict(m),
            "msg_per_s": round(m.rate, 1),
            "percent_of_raw": round(100 * m.rate / raw.rate, 2),
        }

    return {
        "benchmark": "ingest",
        "backend": "sqlite",
        "count": args.count,
        "batch": args.batch,
        "single_count": args.single_count,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "sqlalchemy": sa.__version__,
        "sqlite": sqlite3.sqlite_version,
        "target_percent_of_raw": TARGET_RATIO,
        "raw": {**asdict(raw), "msg_per_s": round(raw.rate, 1)},
        "pipeline": [entry(m) for m in rows],
    }


def report_text(args: argparse.Namespace, raw: Measurement, rows: Sequence[Measurement]) -> str:
    lines = [
        f"omnichannel ingest benchmark — SQLite {sqlite3.sqlite_version}, {args.count} messages, "
        f"batch {args.batch}, Python {platform.python_version()}, SQLAlchemy {sa.__version__}",
        f"best of {args.repeat} run(s) each, fresh database per run; "
        f"target: pipeline >= {TARGET_RATIO:.0f}% of raw",
        f"{raw.name:<34}{raw.rate:>12,.0f} msg/s   ({raw.messages:,} msgs in {raw.seconds:.3f} s)",
    ]
    for m in rows:
        lines.append(
            f"{m.name:<34}{m.rate:>12,.0f} msg/s {100 * m.rate / raw.rate:>6.1f}% of raw"
            f"   ({m.messages:,} msgs in {m.seconds:.3f} s)"
        )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10_000, help="messages (default 10000)")
    parser.add_argument("--batch", type=int, default=200, help="receive_many batch (default 200)")
    parser.add_argument(
        "--single-count",
        type=int,
        default=1_000,
        help="messages for the one-by-one receive run (default 1000)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement, best kept")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one receive_many loop (top 25 cumulative, stderr)",
    )
    args = parser.parse_args(argv)
    for name in ("count", "batch", "single_count", "repeat"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def measure(
    name: str, args: argparse.Namespace, messages: int, run: Callable[[], float]
) -> Measurement:
    return Measurement(name, messages, best_of(args.repeat, name, run))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    raws = synthetic_messages(args.count)
    singles = synthetic_messages(args.single_count, prefix="single-")
    try:
        raw = measure("raw Core insert (floor)", args, args.count, lambda: time_raw_insert(raws))
        rows = [
            measure(
                "pipeline receive_many",
                args,
                args.count,
                lambda: time_receive_many(raws, args.batch),
            ),
            measure(
                "pipeline receive (one by one)",
                args,
                args.single_count,
                lambda: time_receive_single(singles),
            ),
        ]
        if args.profile:
            profile_receive_many(raws, args.batch)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report_json(args, raw, rows)) if args.json else report_text(args, raw, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
