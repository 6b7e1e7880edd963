"""IMAP benchmark: how fast the IMAP connector files a mailbox, against the transport limit.

A private Dovecot (``omnichannel.testing.dovecot``) is started on loopback and ``--count``
synthetic complaint mails are delivered into INBOX with MULTIAPPEND; the first fifth of them
also go into a second folder, for the memory comparison.  Then, in the same run:

- **raw IMAP fetch (transport limit)**: a bare ``imapclient`` session: login, select,
  ``UID SEARCH ALL``, ``UID FETCH BODY.PEEK[]`` in chunks of ``--batch``, keeping only a byte
  count.  No connector can read the mailbox faster over the same transport.
- **connector fetch only**: ``ImapConnector.fetch(None)`` iterated and its batches discarded:
  what the connector's own IMAP work costs, without storage.
- **connector poll**: ``Inbox.poll("email")`` with the connector (plain IMAP, ``mark_seen``
  off so the mailbox is the same for every run) on a fresh SQLite database in a temporary
  directory: fetch, store raw, decode, dedupe, file.  Checked afterwards: one result, one raw
  row and one complaint per mail, all ``new``; a failed check exits non-zero.

Each measurement runs in a fresh child process (this script with a hidden ``--child`` flag),
which reports its time and its peak RSS (``VmHWM`` on Linux, see :func:`start_peak_tracking`);
every kind runs against the full mailbox and against the one a fifth its size, so that the two
peaks show whether memory stays flat as the mailbox grows.  Times are the best of ``--repeat``
runs (of at least 3 for the two short fetch reads, the noisiest), peaks the highest.  The mails
(seeded, so every run sees the same input) are built before anything is timed.  Rates are
machine-dependent: compare the ratios within one run, not across machines.

Run from the repository root (needs Dovecot: ``apt-get install dovecot-imapd``)::

    .venv/bin/python benchmarks/imap.py                    # 5,000 mails, batch 100
    .venv/bin/python benchmarks/imap.py --count 1000 --json
    .venv/bin/python benchmarks/imap.py --profile          # + cProfile of one poll on stderr
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import gc
import json
import platform
import pstats
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import imapclient
import sqlalchemy as sa
from imapclient import IMAPClient

from connectors.imap import ImapConnector, ImapOptions
from normalizer.normalize import normalize
from omnichannel import Inbox, Outcome
from omnichannel.config import parse_config
from omnichannel.store.tables import complaints, raw_messages
from omnichannel.testing.dovecot import Dovecot

CONNECTOR = "email"
FOLDER = "INBOX"
SMALL_FOLDER = "Kecil"  # the first count // 5 mails, for the memory comparison
SMALL_DIVISOR = 5
APPEND_CHUNK = 200  # mails per MULTIAPPEND command while delivering
FETCH_MIN_REPEAT = 3  # the two fetch-only reads take a second or two: always best of 3 or more
TARGET_RATIO = 50.0  # percent of the raw fetch rate the project aims for (informative only)
SEED = 42
EPOCH = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)

# -- synthetic complaint mails -----------------------------------------------------------------

OPENINGS = (
    "Selamat pagi Bapak/Ibu,",
    "Selamat siang,",
    "Selamat sore admin,",
    "Assalamualaikum wr. wb.,",
    "Yth. Bapak/Ibu petugas pengaduan,",
    "Dengan hormat,",
    "Halo tim pengaduan,",
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
    "izin usaha tidak kunjung diproses",
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
    "Desa Lempake",
)
DURATIONS = (
    "sejak dua minggu",
    "sudah satu bulan",
    "hampir tiga bulan",
    "sejak awal tahun",
    "sudah berhari-hari",
    "sejak minggu lalu",
)
EFFECTS = (
    "warga kesulitan lewat",
    "anak sekolah harus memutar jauh",
    "sudah ada korban jatuh dari motor",
    "rumah warga tergenang",
    "pedagang pasar mengeluh",
    "lansia tidak bisa keluar rumah",
    "warga terpaksa membeli air galon",
    "malam hari sangat gelap dan rawan",
    "usaha kecil kami rugi",
)
FOLLOW_UPS = (
    "Sudah kami laporkan ke RT tetapi belum ada tindak lanjut.",
    "Kami sudah gotong royong namun masalahnya kembali lagi.",
    "Petugas pernah datang mengecek tetapi tidak diperbaiki.",
    "Laporan lewat kelurahan belum dijawab sampai sekarang.",
    "Bersama ini saya lampirkan keterangan dari warga sekitar.",
    "Kalau diperlukan, saya bersedia menunjukkan lokasinya.",
)
REQUESTS = (
    "Mohon segera ditindaklanjuti.",
    "Kami berharap dinas terkait turun ke lokasi.",
    "Tolong diperbaiki secepatnya.",
    "Mohon perhatian pemerintah kota.",
    "Kami minta kejelasan kapan akan diperbaiki.",
)
CLOSINGS = ("Terima kasih.", "Terima kasih atas perhatiannya.", "Hormat kami,", "Salam,")
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
    "Eko",
    "Ayu",
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
)
DOMAINS = (
    "gmail.com",
    "gmail.com",
    "gmail.com",
    "yahoo.co.id",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "ymail.com",
    "telkom.net",
    "contoh.co.id",
)
MAILERS = (
    None,
    None,
    "Microsoft Outlook 16.0",
    "Apple Mail (2.3774)",
    "Thunderbird 115.6",
    "K-9 Mail for Android",
)
ATTACHMENTS = (
    ("foto-lokasi.jpg", "image", "jpeg"),
    ("surat-pengantar.pdf", "application", "pdf"),
    ("bukti.png", "image", "png"),
)
MAILBOX_ADDRESS = "pengaduan@kota.go.id"


def _paragraph(rng: random.Random, problem: str) -> str:
    return (
        f"Di {rng.choice(PLACES)} No. {rng.randint(1, 250)} RT {rng.randint(1, 40):02d} "
        f"RW {rng.randint(1, 15):02d}, {rng.choice(DISTRICTS)}, ada {problem} "
        f"{rng.choice(DURATIONS)}, akibatnya {rng.choice(EFFECTS)}. {rng.choice(FOLLOW_UPS)}"
    )


def _body(rng: random.Random, problem: str, name: str) -> str:
    """Two to five short paragraphs and a signature: roughly 400 to 1,400 characters."""
    paragraphs = [rng.choice(OPENINGS), "Saya ingin melaporkan masalah berikut."]
    paragraphs += [_paragraph(rng, problem)]
    for other in rng.sample(PROBLEMS, rng.randint(0, 3)):
        paragraphs.append(_paragraph(rng, other))
    paragraphs.append(rng.choice(REQUESTS))
    signature = [rng.choice(CLOSINGS), name]
    if rng.random() < 0.5:
        signature.append(f"HP 08{rng.randint(11, 99)}{rng.randrange(10**7, 10**8)}")
    return "\n\n".join(paragraphs) + "\n\n" + "\n".join(signature) + "\n"


def _address(rng: random.Random, name: str) -> str:
    first, last = name.split(" ", 1)
    local = rng.choice(
        (
            f"{first}.{last}",
            f"{first}{last}{rng.randint(1, 99)}",
            f"{first}_{rng.randint(1970, 2005)}",
            f"warga.{first}{rng.randint(1, 999)}",
        )
    ).lower()
    return f"{local}@{rng.choice(DOMAINS)}"


def _mail(index: int, rng: random.Random, body: str, problem: str, name: str) -> bytes:
    address = _address(rng, name)
    domain = address.split("@", 1)[1]
    sent = EPOCH + timedelta(seconds=37 * index + rng.randint(0, 30))
    hop = rng.randint(10, 250)
    message = EmailMessage()
    message["Return-Path"] = f"<{address}>"
    message["Received"] = (
        f"from mx{rng.randint(1, 4)}.{domain} (mx{rng.randint(1, 4)}.{domain} "
        f"[203.0.113.{hop}]) by mail.kota.go.id with ESMTPS id {rng.getrandbits(48):012x} "
        f"for <{MAILBOX_ADDRESS}>; {format_datetime(sent + timedelta(seconds=3))}"
    )
    message["Received"] = (
        f"by 2002:a05:{rng.getrandbits(16):x}:{rng.getrandbits(16):x} with SMTP id "
        f"{rng.getrandbits(40):010x}; {format_datetime(sent + timedelta(seconds=1))}"
    )
    if rng.random() < 0.7:  # the big providers sign their mail
        message["DKIM-Signature"] = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}; s=s{rng.randint(2019, 2025)}; "
            f"t={int(sent.timestamp())}; h=to:subject:message-id:date:from:mime-version; "
            f"bh={base64.b64encode(rng.randbytes(32)).decode()}; "
            f"b={base64.b64encode(rng.randbytes(256)).decode()}"
        )
    message["From"] = f"{name} <{address}>" if rng.random() < 0.9 else address
    message["To"] = f"Layanan Pengaduan <{MAILBOX_ADDRESS}>"
    message["Subject"] = rng.choice(
        (f"Pengaduan: {problem}", f"Laporan {problem}", f"Keluhan warga - {problem}", problem)
    )
    message["Date"] = format_datetime(sent)
    message["Message-ID"] = f"<bench.{index:07d}.{rng.getrandbits(48):012x}@{domain}>"
    mailer = rng.choice(MAILERS)
    if mailer:
        message["X-Mailer"] = mailer
    message.set_content(body)
    if rng.random() < 0.15:  # webmail: an HTML alternative as well
        html = "".join(f"<p>{p}</p>" for p in body.split("\n\n"))
        message.add_alternative(f"<html><body>{html}</body></html>", subtype="html")
    if rng.random() < 0.04:  # a few: a small photo or scan
        filename, maintype, subtype = rng.choice(ATTACHMENTS)
        message.add_attachment(
            rng.randbytes(rng.randint(300, 1200)),
            maintype=maintype,
            subtype=subtype,
            filename=filename,
        )
    return bytes(message)


def synthetic_mails(count: int, *, seed: int = SEED) -> list[bytes]:
    """``count`` distinct complaint mails (distinct texts, unique Message-IDs), CRLF-ended."""
    rng = random.Random(seed)
    mails: list[bytes] = []
    seen: set[str] = set()
    while len(mails) < count:
        problem = rng.choice(PROBLEMS)
        name = f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"
        body = _body(rng, problem, name)
        key = " ".join(body.casefold().split())
        if key in seen:
            continue
        seen.add(key)
        mail = _mail(len(mails), rng, body, problem, name)
        mails.append(mail.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    return mails


# -- the server --------------------------------------------------------------------------------


class BenchmarkError(RuntimeError):
    """A run did not do what it should have; the numbers would mean nothing."""


def dovecot_version() -> str:
    binary = Dovecot.binary()
    if binary is None:
        return "not installed"
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip().split(" ")[0] or "unknown"


def login(server: dict[str, Any]) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=server["port"], ssl=False, timeout=120)
    client.login(server["user"], server["password"])
    return client


def deliver(server: dict[str, Any], folder: str, mails: Sequence[bytes]) -> float:
    """MULTIAPPEND ``mails`` into ``folder`` (created if needed); seconds taken."""
    client = login(server)
    try:
        if not client.has_capability("MULTIAPPEND"):
            raise BenchmarkError("the server does not offer MULTIAPPEND")
        if not client.folder_exists(folder):
            client.create_folder(folder)
        start = time.perf_counter()
        for first in range(0, len(mails), APPEND_CHUNK):
            client.multiappend(folder, mails[first : first + APPEND_CHUNK])
        elapsed = time.perf_counter() - start
        exists = int(client.select_folder(folder, readonly=True)[b"EXISTS"])
        if exists != len(mails):
            raise BenchmarkError(f"{folder}: delivered {len(mails)} mails, it holds {exists}")
    finally:
        client.logout()
    return elapsed


def warm_up(server: dict[str, Any], folder: str) -> None:
    """Read the folder once, untimed, so Dovecot's index and cache (and the OS's) are built."""
    client = login(server)
    try:
        client.select_folder(folder, readonly=True)
        uids = client.search(["ALL"])
        for first in range(0, len(uids), 500):
            chunk = uids[first : first + 500]
            client.fetch(chunk, ["RFC822.SIZE", "INTERNALDATE", "BODY.PEEK[]"])
    finally:
        client.logout()


def unseen_everywhere(server: dict[str, Any], folders: Sequence[str]) -> bool:
    """No mail was flagged \\Seen: every run saw the same mailbox."""
    client = login(server)
    try:
        for folder in folders:
            client.select_folder(folder, readonly=True)
            if client.search(["SEEN"]):
                return False
    finally:
        client.logout()
    return True


# -- the measured work (run in a child process) ------------------------------------------------


def imap_options(server: dict[str, Any], folder: str, batch: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server["port"],
        "ssl": False,
        "username": server["user"],
        "password": server["password"],
        "folder": folder,
        "mark_seen": False,
        "idle": False,
        "batch_size": batch,
        "timeout": 120,
    }


def raw_fetch(server: dict[str, Any], folder: str, batch: int) -> tuple[float, int, int]:
    """Seconds, messages and body bytes for a bare imapclient read of the whole folder."""
    start = time.perf_counter()
    client = login(server)
    client.select_folder(folder)
    uids = sorted(client.search(["ALL"]))
    messages = size = 0
    for first in range(0, len(uids), batch):
        fetched = client.fetch(uids[first : first + batch], ["BODY.PEEK[]"])
        messages += len(fetched)
        size += sum(len(item[b"BODY[]"]) for item in fetched.values())
        del fetched
    elapsed = time.perf_counter() - start
    client.logout()
    return elapsed, messages, size


def connector_fetch(server: dict[str, Any], folder: str, batch: int) -> tuple[float, int, int]:
    """Seconds, messages and payload bytes for ``ImapConnector.fetch(None)``, batches dropped."""
    connector = ImapConnector(
        CONNECTOR, ImapOptions.model_validate(imap_options(server, folder, batch))
    )
    messages = size = 0
    start = time.perf_counter()
    for fetched in connector.fetch(None):
        messages += len(fetched.messages)
        size += sum(len(raw.payload) for raw in fetched.messages)
        del fetched
    elapsed = time.perf_counter() - start
    connector.close()
    return elapsed, messages, size


def decode_only(server: dict[str, Any], folder: str, batch: int) -> tuple[float, int, int]:
    """Seconds spent in ``ImapConnector.decode`` + ``normalize`` alone, for every mail.

    The mails are fetched by the connector batch by batch as above, but only the decoding and
    normalizing of each batch is timed: the CPU every poll must spend per mail whatever its I/O,
    to set beside the transport limit.
    """
    connector = ImapConnector(
        CONNECTOR, ImapOptions.model_validate(imap_options(server, folder, batch))
    )
    messages = size = 0
    elapsed = 0.0
    for fetched in connector.fetch(None):
        start = time.perf_counter()
        for raw in fetched.messages:
            normalize(connector.decode(raw), connector=CONNECTOR, received_at=raw.received_at)
        elapsed += time.perf_counter() - start
        messages += len(fetched.messages)
        size += sum(len(raw.payload) for raw in fetched.messages)
        del fetched
    connector.close()
    return elapsed, messages, size


@contextmanager
def fresh_inbox(server: dict[str, Any], folder: str, batch: int) -> Iterator[Inbox]:
    """An Inbox with the IMAP connector, on a new, migrated SQLite file in a temp directory."""
    with tempfile.TemporaryDirectory(prefix="omnichannel-bench-") as tmp:
        entry = {"name": CONNECTOR, "type": "imap", **imap_options(server, folder, batch)}
        config = {"database": {"url": f"sqlite:///{Path(tmp) / 'bench.db'}"}, "connectors": [entry]}
        inbox = Inbox(parse_config(config, env={}))
        try:
            inbox.connector(CONNECTOR)  # built from the config outside the timed region
            yield inbox
        finally:
            inbox.close()


def count_rows(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def poll_counting(inbox: Inbox) -> Counter[str]:
    """``Inbox.poll`` as ``omnichannel poll`` runs it: results counted batch by batch, not kept
    (so memory does not grow with the mailbox)."""
    outcomes: Counter[str] = Counter()
    inbox.poll(CONNECTOR, on_batch=lambda batch: outcomes.update(r.outcome.value for r in batch))
    return outcomes


def check_polled(inbox: Inbox, outcomes: Counter[str], expected: int) -> None:
    """One result, one raw row and one complaint per mail, every outcome ``new``."""
    raw_rows, filed = count_rows(inbox, raw_messages), count_rows(inbox, complaints)
    if sum(outcomes.values()) != expected or outcomes.get(Outcome.NEW.value, 0) != expected:
        raise BenchmarkError(f"poll: expected {expected} results all 'new', got {outcomes}")
    if raw_rows != expected or filed != expected:
        raise BenchmarkError(
            f"poll: expected {expected} raw rows and complaints, found {raw_rows} and {filed}"
        )


def connector_poll(
    server: dict[str, Any], folder: str, batch: int, expected: int
) -> tuple[float, int, int]:
    """Seconds, messages and stored payload bytes for ``Inbox.poll`` on a fresh database."""
    with fresh_inbox(server, folder, batch) as inbox:
        start = time.perf_counter()
        outcomes = poll_counting(inbox)
        elapsed = time.perf_counter() - start
        check_polled(inbox, outcomes, expected)
        with inbox.store.engine.connect() as conn:
            size = conn.execute(sa.select(sa.func.sum(raw_messages.c.size))).scalar_one()
    return elapsed, sum(outcomes.values()), int(size or 0)


PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")


def _proc_status_mib(field: str) -> float | None:
    """``VmRSS`` or ``VmHWM`` of this process from /proc (Linux), in MiB."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def start_peak_tracking() -> tuple[float, str]:
    """The current RSS, and the high-water mark reset to it: (MiB, how the peak is measured).

    On Linux the peak is ``VmHWM``, reset here by writing 5 to ``/proc/self/clear_refs``.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is not used there: Linux folds the RSS of the process
    that forked us (the benchmark parent, holding every mail) into it at ``exec``, so a child's
    ``ru_maxrss`` is never below its parent's.  Elsewhere ``ru_maxrss`` is all there is.
    """
    current = _proc_status_mib("VmRSS")
    if current is not None:
        try:
            PROC_CLEAR_REFS.write_text("5")
        except OSError:
            return current, "VmHWM (not reset)"
        return current, "VmHWM"
    return _ru_maxrss_mib(), "ru_maxrss"


def peak_rss_mib() -> float:
    """This process's peak resident set size since :func:`start_peak_tracking`, in MiB."""
    peak = _proc_status_mib("VmHWM")
    return peak if peak is not None else _ru_maxrss_mib()


def _ru_maxrss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # bytes / KiB


KINDS = {
    "raw": "raw IMAP fetch (transport limit)",
    "fetch": "connector fetch only",
    "decode": "decode + normalize only (CPU)",
    "poll": "connector poll (Inbox.poll)",
}


def child(spec: dict[str, Any]) -> int:
    """The hidden ``--child`` mode: one measurement, one JSON line on stdout."""
    server, folder, batch = spec["server"], spec["folder"], spec["batch"]
    gc.collect()
    baseline, method = start_peak_tracking()  # after the imports: interpreter and libraries
    try:
        if spec["kind"] == "raw":
            seconds, messages, size = raw_fetch(server, folder, batch)
        elif spec["kind"] == "fetch":
            seconds, messages, size = connector_fetch(server, folder, batch)
        elif spec["kind"] == "decode":
            seconds, messages, size = decode_only(server, folder, batch)
        else:
            seconds, messages, size = connector_poll(server, folder, batch, spec["expected"])
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    if messages != spec["expected"]:
        print(f"{spec['kind']}: read {messages} of {spec['expected']} mails", file=sys.stderr)
        return 1
    report = {
        "seconds": seconds,
        "messages": messages,
        "bytes": size,
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak_rss_mib(),
        "rss_method": method,
    }
    print(json.dumps(report))
    return 0


# -- running the children ----------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    messages: int
    bytes: int
    baseline_rss_mib: float
    peak_rss_mib: float
    rss_method: str


def run_child(kind: str, server: dict[str, Any], folder: str, batch: int, expected: int) -> Run:
    spec = {
        "kind": kind,
        "server": server,
        "folder": folder,
        "batch": batch,
        "expected": expected,
    }
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchmarkError(f"{KINDS[kind]} on {folder}: child exited {done.returncode}")
    return Run(**json.loads(done.stdout.strip().splitlines()[-1]))


@dataclass
class Measurement:
    """The best time of ``repeat`` runs at the full size, and peak RSS at both sizes."""

    name: str
    messages: int
    seconds: float
    bytes: int
    peak_rss_mib: float
    small_messages: int
    small_seconds: float
    small_peak_rss_mib: float
    growth_mib: float
    small_growth_mib: float
    baseline_rss_mib: float
    rss_method: str

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def memory_ratio(self) -> float:
        return self.peak_rss_mib / self.small_peak_rss_mib


def repeats(kind: str, args: argparse.Namespace) -> int:
    """``--repeat`` for the poll; at least FETCH_MIN_REPEAT for the short, noisy fetch reads."""
    wanted = int(args.repeat)
    return wanted if kind == "poll" else max(wanted, FETCH_MIN_REPEAT)


def measure(
    kind: str, server: dict[str, Any], args: argparse.Namespace, small_count: int
) -> Measurement:
    full: list[Run] = []
    small: list[Run] = []
    runs_wanted = repeats(kind, args)
    for attempt in range(1, runs_wanted + 1):
        for folder, count, runs in ((FOLDER, args.count, full), (SMALL_FOLDER, small_count, small)):
            runs.append(run_child(kind, server, folder, args.batch, count))
            print(
                f"  {KINDS[kind]}, {count} mails: run {attempt}/{runs_wanted} "
                f"{runs[-1].seconds:.3f} s, peak RSS {runs[-1].peak_rss_mib:.1f} MiB",
                file=sys.stderr,
                flush=True,
            )
    best, best_small = min(full, key=lambda r: r.seconds), min(small, key=lambda r: r.seconds)
    return Measurement(
        name=KINDS[kind],
        messages=args.count,
        seconds=best.seconds,
        bytes=best.bytes,
        peak_rss_mib=max(r.peak_rss_mib for r in full),
        small_messages=small_count,
        small_seconds=best_small.seconds,
        small_peak_rss_mib=max(r.peak_rss_mib for r in small),
        growth_mib=max(r.peak_rss_mib - r.baseline_rss_mib for r in full),
        small_growth_mib=max(r.peak_rss_mib - r.baseline_rss_mib for r in small),
        baseline_rss_mib=min(r.baseline_rss_mib for r in full + small),
        rss_method=full[0].rss_method,
    )


def profile_poll(server: dict[str, Any], args: argparse.Namespace, top: int = 25) -> None:
    """One extra (untimed) poll of the full mailbox under cProfile; top functions to stderr."""
    with fresh_inbox(server, FOLDER, args.batch) as inbox:
        profiler = cProfile.Profile()
        profiler.enable()
        outcomes = poll_counting(inbox)
        profiler.disable()
        check_polled(inbox, outcomes, args.count)
    print(
        f"\ncProfile of Inbox.poll, {args.count} mails, batch {args.batch} "
        f"(top {top} by cumulative time):",
        file=sys.stderr,
    )
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)


# -- report ------------------------------------------------------------------------------------


def report_json(
    args: argparse.Namespace,
    versions: dict[str, str],
    mails: dict[str, Any],
    raw: Measurement,
    rows: Sequence[Measurement],
) -> dict[str, Any]:
    def entry(m: Measurement) -> dict[str, Any]:
        return {
            **asdict(m),
            "msg_per_s": round(m.rate, 1),
            "percent_of_raw": round(100 * m.rate / raw.rate, 2),
            "memory_ratio": round(m.memory_ratio, 3),
        }

    return {
        "benchmark": "imap",
        "backend": "sqlite",
        "count": args.count,
        "small_count": args.count // SMALL_DIVISOR,
        "batch": args.batch,
        "repeat": args.repeat,
        "fetch_repeat": repeats("raw", args),
        **versions,
        "target_percent_of_raw": TARGET_RATIO,
        "mails": mails,
        "raw": entry(raw),
        "connector": [entry(m) for m in rows],
    }


def report_text(
    args: argparse.Namespace,
    versions: dict[str, str],
    mails: dict[str, Any],
    raw: Measurement,
    rows: Sequence[Measurement],
) -> str:
    small = args.count // SMALL_DIVISOR
    lines = [
        f"omnichannel IMAP benchmark — Dovecot {versions['dovecot']} on loopback (plain IMAP), "
        f"SQLite {versions['sqlite']}, {args.count} mails, batch {args.batch}, "
        f"Python {versions['python']}, imapclient {versions['imapclient']}, "
        f"SQLAlchemy {versions['sqlalchemy']}",
        f"mails: {mails['bytes']:,} bytes, {mails['min_bytes']:,} to {mails['max_bytes']:,} each "
        f"(mean {mails['mean_bytes']:,.0f}), {mails['with_attachment']} with an attachment; "
        f"MULTIAPPEND of all {args.count} took {mails['deliver_seconds']:.2f} s",
        f"best of {repeats('raw', args)} run(s) for the fetch reads, {repeats('poll', args)} for "
        "the poll, one child process per run; "
        f"target: connector poll >= {TARGET_RATIO:.0f}% of raw, memory flat in mailbox size",
        "",
        f"{'':<34}{'msg/s':>9}{'% of raw':>10}{'seconds':>9}"
        f"{'peak RSS, MiB':>20}{'':>8}{'above imports, MiB':>22}",
        f"{'':<34}{'':>9}{'':>10}{'':>9}{f'{small:,} / {args.count:,}':>20}{'ratio':>8}"
        f"{f'{small:,} / {args.count:,}':>22}",
    ]
    for m in (raw, *rows):
        percent = "" if m is raw else f"{100 * m.rate / raw.rate:.1f}%"
        lines.append(
            f"{m.name:<34}{m.rate:>9,.0f}{percent:>10}{m.seconds:>9.3f}"
            f"{m.small_peak_rss_mib:>11.1f} / {m.peak_rss_mib:>6.1f}{m.memory_ratio:>7.2f}x"
            f"{m.small_growth_mib:>+13.1f} / {m.growth_mib:>+6.1f}"
        )
    baseline = min(m.baseline_rss_mib for m in (raw, *rows))
    lines.append(
        f"(peak RSS: {raw.rss_method} of each child; ~{baseline:.0f} MiB of it is the "
        "interpreter and imports, measured before any work; ratio = full peak / small peak)"
    )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=5_000, help="mails (default 5000)")
    parser.add_argument(
        "--batch", type=int, default=100, help="fetch chunk and connector batch_size (default 100)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement, best kept")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile one poll of the full mailbox (top 25 cumulative, stderr)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is None:
        if args.count < SMALL_DIVISOR:
            parser.error(f"--count must be at least {SMALL_DIVISOR}")
        if not 1 <= args.batch <= 5000:
            parser.error("--batch must be between 1 and 5000 (the connector's limit)")
        if args.repeat < 1:
            parser.error("--repeat must be at least 1")
    return args


def describe_mails(mails: Sequence[bytes], deliver_seconds: float) -> dict[str, Any]:
    sizes = [len(m) for m in mails]
    return {
        "bytes": sum(sizes),
        "min_bytes": min(sizes),
        "max_bytes": max(sizes),
        "mean_bytes": sum(sizes) / len(sizes),
        "with_attachment": sum(b"Content-Disposition: attachment" in m for m in mails),
        "deliver_seconds": round(deliver_seconds, 3),
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child is not None:
        return child(json.loads(args.child))
    if Dovecot.binary() is None:
        print("benchmark needs Dovecot (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    mails = synthetic_mails(args.count)
    small_count = args.count // SMALL_DIVISOR
    versions = {
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sa.__version__,
        "imapclient": str(imapclient.__version__),
        "dovecot": dovecot_version(),
    }
    dovecot = Dovecot()
    try:
        dovecot.start()
        server = {"port": dovecot.port, "user": dovecot.user, "password": dovecot.password}
        print(f"delivering {args.count} + {small_count} mails …", file=sys.stderr, flush=True)
        deliver_seconds = deliver(server, FOLDER, mails)
        deliver(server, SMALL_FOLDER, mails[:small_count])
        for folder in (FOLDER, SMALL_FOLDER):
            warm_up(server, folder)
        raw = measure("raw", server, args, small_count)
        kinds = ("fetch", "decode", "poll")
        rows = [measure(kind, server, args, small_count) for kind in kinds]
        for m in rows:
            if m.bytes != raw.bytes:
                raise BenchmarkError(f"{m.name}: {m.bytes} bytes read, raw fetch read {raw.bytes}")
        if not unseen_everywhere(server, (FOLDER, SMALL_FOLDER)):
            raise BenchmarkError("some mail was flagged \\Seen: runs did not see the same mailbox")
        if args.profile:
            profile_poll(server, args)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        dovecot.stop()
    described = describe_mails(mails, deliver_seconds)
    if args.json:
        print(json.dumps(report_json(args, versions, described, raw, rows)))
    else:
        print(report_text(args, versions, described, raw, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
