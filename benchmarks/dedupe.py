"""Dedupe benchmark: one lookup's cost with 10,000, 100,000 and 1,000,000 stored complaints.

What is measured: the cluster lookup that filing makes for every new complaint
(``omnichannel.dedupe.best_related``: the MinHash band keys of its text looked up in
``similarity_bands`` within the cluster window, the candidates read and verified on their text),
timed for ``--queries`` new complaints against an archive that grows, in one database, from the
smallest size to the largest. The archive grows the way a real one does: a steady flow of
``--per-day`` complaints a day, so 1,000,000 complaints are about four years of a busy office and
the 30-day window holds the same number of complaints at every size. The complaints' texts are
synthetic complaints (a vocabulary of real complaint words, invented places and numbers), so
their band keys collide as real ones do; the query texts are variants of recent complaints, so
lookups find and verify candidates.

The baseline, measured in the same run on the same database: the same band lookup without the
window bound — what the index costs if the archive is not cut by time — which grows with it.

    .venv/bin/python benchmarks/dedupe.py                       # 10k, 100k, 1M on SQLite
    .venv/bin/python benchmarks/dedupe.py --sizes 10000,100000 --queries 300
    .venv/bin/python benchmarks/dedupe.py --database postgresql+psycopg://postgres@127.0.0.1/bench

Progress goes to stderr, the result table to stdout. Exit status 1 if the largest size's lookup
takes more than 1.5 times the smallest's.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from normalizer.similarity import bands, signature  # noqa: E402
from omnichannel.dedupe import best_related  # noqa: E402
from omnichannel.store import Store  # noqa: E402
from omnichannel.store.tables import complaints, similarity_bands  # noqa: E402


def _words(text: str) -> list[str]:
    return text.split()


WORDS = _words(
    """
    jalan rusak berlubang jembatan putus banjir drainase saluran tersumbat lampu mati sampah
    menumpuk bau air pdam keruh mati listrik izin usaha bangunan reklame lingkungan belum
    keluar terbit ditolak lambat pelayanan antrian panjang petugas kasar pungutan liar biaya
    tambahan sekolah puskesmas rumah sakit pasar terminal angkot ojek parkir liar macet
    trotoar pohon tumbang kabel menjuntai tiang miring longsor tebing sungai meluap sawah
    irigasi pupuk bantuan sosial ktp kartu keluarga akta kelahiran kematian nib oss siup pbg
    imb amdal upl ukl tdp npwp pajak retribusi tarif mahal kebisingan pabrik limbah asap
    debu tambang galian truk muatan berlebih warga anak sekolah motor mobil jatuh kecelakaan
    malam hari hujan deras minggu bulan tahun
    """
)
SYLLABLES = _words("su ka ma ju ri ta ba ra sa ng ti pa wa di lo ne go ro mu ya")
VILLAGE_WORDS = ("desa", "kelurahan", "dusun", "jalan")


def _place(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).capitalize()


def synthetic_text(rng: random.Random) -> str:
    """A complaint-like text: common complaint words, a place, sometimes a number."""
    words = rng.sample(WORDS, rng.randint(8, 18))
    place = f"{rng.choice(VILLAGE_WORDS)} {_place(rng)}"
    number = f" no {rng.randint(1, 300)}" if rng.random() < 0.5 else ""
    return f"{' '.join(words[:4])} di {place}{number}, {' '.join(words[4:])}"


def variant(text: str, rng: random.Random) -> str:
    """A retyped report of the same thing: a word dropped and one added."""
    words = text.split()
    words.pop(rng.randrange(4))
    words.insert(rng.randrange(len(words)), rng.choice(WORDS))
    return " ".join(words)


class Archive:
    """A database of complaints that grows by ``per_day`` complaints a day, oldest first."""

    def __init__(self, url: str, per_day: int, pool: int, seed: int) -> None:
        self.store = Store(url)
        self.rng = random.Random(seed)
        self.per_day = per_day
        self.start = datetime(2022, 1, 1, tzinfo=UTC)
        self.size = 0
        print(f"preparing {pool:,} synthetic texts ...", file=sys.stderr, flush=True)
        texts = [synthetic_text(self.rng) for _ in range(pool)]
        self.pool = [(t, sorted(set(bands(signature(t))))) for t in texts]

    def moment(self, index: int) -> datetime:
        return self.start + timedelta(days=index / self.per_day)

    def grow(self, size: int, chunk: int = 20_000) -> None:
        while self.size < size:
            upto = min(size, self.size + chunk)
            rows, band_rows = [], []
            for i in range(self.size, upto):
                text, keys = self.pool[i % len(self.pool)]
                at = self.moment(i)
                rows.append(_complaint_row(i + 1, text, at))
                band_rows += [{"band": k, "received_at": at, "complaint_id": i + 1} for k in keys]
            with self.store.transaction() as conn:
                conn.execute(sa.insert(complaints), rows)
                conn.execute(sa.insert(similarity_bands), band_rows)
            self.size = upto
            print(f"  {self.size:,} complaints stored", file=sys.stderr, flush=True)

    def queries(self, count: int) -> list[tuple[Any, list[int], datetime]]:
        """New complaints at the end of the timeline: variants of the last month's texts."""
        now = self.moment(self.size)
        recent = range(max(0, self.size - 30 * self.per_day), self.size)
        out = []
        for _ in range(count):
            text = variant(self.pool[self.rng.choice(recent) % len(self.pool)][0], self.rng)
            sig = signature(text)
            out.append((sig, bands(sig), now))
        return out


def _complaint_row(number: int, text: str, at: datetime) -> dict[str, Any]:
    return {
        "id": number,
        "ticket": f"BEN-{number:09d}",
        "status": "open",
        "channel": "sms",
        "connector": "bench",
        "received_at": at,
        "updated_at": at,
        "body": text,
        "anonymous": False,
        "confidential": False,
    }


def time_lookups(
    archive: Archive, queries: list[tuple[Any, list[int], datetime]], window: timedelta | None
) -> tuple[float, int]:
    """Median seconds per lookup, and how many lookups found a related complaint."""
    found = 0
    timings = []
    with archive.store.transaction() as conn:
        for sig, _, now in queries:
            since = now - window if window else datetime(1970, 1, 1, tzinfo=UTC)
            began = time.perf_counter()
            best = best_related(conn, sig, since, 0.34)
            timings.append(time.perf_counter() - began)
            found += best is not None
    return statistics.median(timings), found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--per-day", type=int, default=700, help="complaints a day")
    parser.add_argument("--pool", type=int, default=40_000, help="distinct synthetic texts")
    parser.add_argument("--window-days", type=float, default=30)
    parser.add_argument("--database", help="SQLAlchemy URL of an empty database")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    window = timedelta(days=args.window_days)
    with tempfile.TemporaryDirectory() as folder:
        url = args.database or f"sqlite:///{folder}/dedupe-bench.db"
        archive = Archive(url, args.per_day, args.pool, args.seed)
        results = []
        for size in sizes:
            archive.grow(size)
            queries = archive.queries(args.queries)
            time_lookups(archive, queries[:50], window)  # warm the cache
            windowed, found = time_lookups(archive, queries, window)
            unbounded, _ = time_lookups(archive, queries[: max(20, len(queries) // 10)], None)
            results.append((size, windowed, found, unbounded))
            print(f"  measured at {size:,}", file=sys.stderr, flush=True)
        archive.store.dispose()
    print(f"database: {url.split(':')[0]}; {args.queries} lookups per size, median")
    print(f"{'complaints':>12} {'lookup (ms)':>12} {'found':>7} {'no window (ms)':>15}")
    for size, windowed, found, unbounded in results:
        print(f"{size:>12,} {windowed * 1000:>12.3f} {found:>7} {unbounded * 1000:>15.3f}")
    ratio = results[-1][1] / results[0][1]
    baseline = results[-1][3] / results[0][3]
    print(
        f"largest / smallest: lookup {ratio:.2f} (limit 1.5); "
        f"without the window bound {baseline:.2f}"
    )
    return 0 if ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
