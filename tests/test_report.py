"""``omnichannel report``: a seeded month of complaints (four channels, five agencies, a
mass report of six, anonymous and confidential ones, assignments, forwards, resolutions,
rejections, a merge) gives a report whose every figure matches SQL written here on its own,
on SQLite and PostgreSQL; the HTML report renders in headless Chromium with its charts.

The seed runs the real pipeline and queue with a fake clock: each complaint is filed at its
own time, each team action happens at its own time, and the outbox sends the forwards to a
real HTTP server every afternoon.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel import Inbox
from omnichannel.cli import main
from omnichannel.config import Config, parse_config
from omnichannel.report import Period, generate, satisfaction
from omnichannel.store import Store
from tests.browser import chromium, keep_screenshot
from tests.conftest import _truncate
from tests.helpers import raw_json
from tests.receiver import SECRET, Receiver
from tests.smtp import SmtpServer

TZ = ZoneInfo("Asia/Makassar")
START, END = date(2026, 11, 2), date(2026, 11, 30)
"""Four ISO weeks, 2026-W45 to W48, Monday to Monday."""
HOLIDAY = date(2026, 11, 17)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=TZ).astimezone(UTC)
"""When the report is made: the last complaints are still within their deadlines."""
AGENCIES = ("PUPR", "DINKES", "DISDUKCAPIL", "DLH", None)
CATEGORIES = ("infrastructure", "health", "civil_registry", "environment", None)
CHANNELS = ("email", "sms", "whatsapp", "web")
FIRST = ("Budi", "Siti", "Andi", "Dewi", "Rahmat", "Nur", "Agus", "Wati", "Yusuf", "Rina", "Hasan")
LAST = ("Santoso", "Rahayu", "Pratama", "Lestari", "Hidayat", "Saputra", "Wijaya", "Kusuma")
OPENINGS = (
    "Mohon bantuan",
    "Saya ingin melaporkan",
    "Tolong ditindaklanjuti",
    "Kami mengeluhkan",
    "Izin menyampaikan",
    "Dengan hormat melaporkan",
    "Mau komplain",
    "Laporan warga",
)
PROBLEMS = (
    "lampu penerangan jalan padam",
    "sampah menumpuk di pinggir pasar",
    "air PDAM keruh berbau",
    "antrean perekaman KTP sangat panjang",
    "izin usaha belum terbit",
    "puskesmas tutup lebih awal",
    "saluran drainase tersumbat lumpur",
    "jalan berlubang besar",
    "pungutan liar di loket pelayanan",
    "petugas loket tidak ramah",
    "sertifikat tanah belum selesai",
    "bantuan sosial belum cair",
    "pohon tumbang menutup jalan",
    "banjir setiap hujan deras",
    "jaringan internet kantor desa mati",
    "obat di apotek puskesmas habis",
)
PLACES = (
    "Mekarsari",
    "Bontoala",
    "Tamalate",
    "Sukadamai",
    "Pallangga",
    "Borong",
    "Somba Opu",
    "Bajeng",
    "Parangloe",
    "Manuju",
    "Tinggimoncong",
    "Bungaya",
    "Tompobulu",
    "Biringbulu",
    "Bontonompo",
    "Barombong",
)
SINCE = ("sejak minggu lalu", "sudah tiga hari", "sejak awal bulan", "setiap malam", "hari ini")
CLOSINGS = ("Terima kasih.", "Mohon segera diperbaiki.", "Warga resah.", "Tolong dicek.", "")
BRIDGE = "Jembatan gantung di Desa Sukamaju putus, warga tidak bisa menyeberang ke sekolah"


# -- the seeded month --------------------------------------------------------------------------


@dataclass
class Seeded:
    """A database holding the month, and what the privacy checks look for."""

    url: str
    config: Config
    period: Period
    names: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    """National forms (``0812…``), as the citizens wrote them."""
    answering: dict[int, str] = field(default_factory=dict)
    """Complaints answered by e-mail (so surveyed once resolved): their address."""


def _config(url: str, forward_url: str, smtp: SmtpServer) -> Config:
    return parse_config(
        {
            "database": {"url": url},
            "smtp": {"host": smtp.host, "port": smtp.port, "from": "Pengaduan <p@example.id>"},
            "deadlines": {"verify_days": 3, "follow_up_days": 5, "holidays": [str(HOLIDAY)]},
            "forwarders": [
                {
                    "name": "pupr",
                    "type": "webhook",
                    "url": forward_url,
                    "secret": SECRET,
                    "agencies": ["PUPR"],
                    "events": ["created"],
                }
            ],
        }
    )


def _local(day: date, hour: float) -> datetime:
    return (datetime.combine(day, time(), TZ) + timedelta(hours=hour)).astimezone(UTC)


def _document(n: int, at: datetime, rng: random.Random, seeded: Seeded) -> dict[str, Any]:
    """Complaint ``n``: a channel's sender, a text of its own, maybe a place, a privacy flag."""
    channel = CHANNELS[n % len(CHANNELS)]
    name = f"{FIRST[n % len(FIRST)]} {LAST[n // len(FIRST) % len(LAST)]}"
    email, phone = f"warga{n:03d}@contoh.id", f"0812{n:08d}"
    seeded.names.append(name)
    seeded.emails.append(email)
    seeded.phones.append(phone)
    sender = {
        "email": {"name": name, "email": email},
        "sms": {"phone": phone},
        "whatsapp": {"phone": phone, "name": name},
        "web": {"name": name, "email": email, "phone": phone},
    }[channel]
    text = (
        f"{rng.choice(OPENINGS)}, {rng.choice(PROBLEMS)} di Desa {rng.choice(PLACES)} "
        f"{rng.choice(SINCE)} nomor {n}. {rng.choice(CLOSINGS)}"
    )
    if n % 7 == 0:  # the citizen's own contact in the text, as people write it
        written = f"{phone[:4]}-{phone[4:8]}-{phone[8:]}"
        if channel == "sms":  # a name the channel does not give: introduced as one
            text += f" Nama saya {name}, hubungi saya di {written} atau {email}."
        else:
            text += f" Hubungi saya di {written} atau {email}, {name}."
    doc: dict[str, Any] = {
        "channel": channel,
        "sender": sender,
        "subject": f"Pengaduan {n}" if channel == "email" else None,
        "agency": AGENCIES[n % len(AGENCIES)],
        "category": CATEGORIES[n * 3 % len(CATEGORIES)],
        "anonymous": n % 10 == 3,
        "confidential": n % 9 == 4,
    }
    if "email" in sender and not doc["anonymous"]:
        seeded.answering[n] = email
    if n % 3 == 0:
        lat, lon = -5.2 - rng.random() / 10, 119.4 + rng.random() / 10
        doc["location"] = {"lat": lat, "lon": lon, "address": f"Jl. Poros {n}, Desa Borong"}
    return {"text": text, **{k: v for k, v in doc.items() if v is not None}}


Action = tuple[datetime, int, Callable[[Inbox], Any]]


def _story(
    n: int, key: str, received: datetime, rng: random.Random, seeded: Seeded
) -> list[Action]:
    """What the team does with complaint ``n`` (before NOW): some nothing, most a first
    response, an assignment, a resolution, some a rejection; and what citizens asked for
    their satisfaction answer."""
    roll = rng.random()
    if roll < 0.1:
        return []
    at = received + timedelta(hours=rng.choice((0.5, 2, 6, 20, 50, 100, 150)))
    steps: list[tuple[timedelta, Callable[[Inbox], Any]]] = [
        (timedelta(), lambda i: i.queue.comment(key, "Sudah diterima.", actor="ani"))
    ]
    if roll < 0.17:
        steps.append((timedelta(hours=3), lambda i: i.queue.reject(key, actor="ani", reason="x")))
    else:
        if roll < 0.8:
            agency = ("PUPR", "DINKES", None)[n % 3]
            steps.append(
                (
                    timedelta(hours=rng.choice((1, 30))),
                    lambda i: i.queue.assign(key, actor="kabid", agency=agency, person="budi"),
                )
            )
        if roll < 0.7:
            later = timedelta(hours=rng.choice((20, 60, 120, 200)))
            steps.append((later, lambda i: i.queue.resolve(key, actor="budi")))
            if roll < 0.35:
                steps.append((timedelta(days=1), lambda i: i.queue.close(key, actor="kabid")))
            elif roll > 0.66:  # reopened, resolved again: the first resolution counts
                steps.append((timedelta(hours=5), lambda i: i.queue.reopen(key, actor="kabid")))
                steps.append((timedelta(hours=9), lambda i: i.queue.resolve(key, actor="budi")))
    actions = []
    for delay, act in steps:
        at += delay
        if at < NOW:
            actions.append((at, n, act))
    address = seeded.answering.get(n)
    if address and 0.17 <= roll < 0.6 and rng.random() < 0.8:  # resolved, maybe closed
        score = (5, 4, 2, 5, 3, 4, 1, 5)[n // 4 % 8]
        answer = at + timedelta(hours=rng.choice((30, 35)))  # after the 16:00 survey
        if answer < NOW:
            actions.append((answer, n, lambda i: _answer(i, n, address, score, answer)))
    return actions


def _answer(inbox: Inbox, n: int, address: str, score: int, at: datetime) -> None:
    """The citizen answers the survey by e-mail: a rating, and a word of comment."""
    words = {1: "kecewa sekali", 2: "lambat", 3: "cukup", 4: "terima kasih", 5: "mantap"}
    result = inbox.receive(
        raw_json(
            f"a-{n}",
            text=f"{score}, {words[score]}",
            channel="email",
            sender={"email": address},
            received_at=at,
        )
    )
    assert result.outcome.value == "merged", (n, result)


def seed_month(url: str) -> Seeded:
    """File the month through the pipeline and work it through the queue, in time order;
    acknowledgements, notifications and surveys go to a real SMTP server, forwards to a real
    HTTP server."""
    with Receiver() as receiver, SmtpServer() as smtp:
        return _seed(url, _config(url, receiver.url, smtp))


def _seed(url: str, config: Config) -> Seeded:
    seeded = Seeded(url, config, Period(START, END, TZ))
    rng = random.Random(21)
    clock = [_local(START, -48)]
    inbox = Inbox(config, clock=lambda: clock[0])
    arrivals = [
        _local(START + timedelta(days=rng.randrange(28)), rng.uniform(7, 22)) for _ in range(112)
    ]
    arrivals += [_local(START, 0.1), _local(END, -0.1)]  # inside, by minutes
    arrivals += [_local(date(2026, 11, 10), 8 + k * 3) for k in range(6)]  # the bridge
    arrivals += [_local(START, -0.1), _local(END, 0.1), _local(END, 30)]  # outside
    timeline: list[Action] = []
    for n, at in enumerate(arrivals):
        timeline.append((at, n, lambda i, n=n, at=at: _file(i, n, at, rng, seeded)))
    day = START - timedelta(days=2)
    while (afternoon := _local(day, 16)) < NOW:
        timeline.append((afternoon, -1, lambda i: i.outbox.drain()))
        day += timedelta(days=1)
    tickets: dict[int, str] = {}
    try:
        _run(inbox, clock, timeline, tickets, rng, seeded)
        clock[0] = NOW - timedelta(hours=1)
        inbox.dedupe.merge(tickets[5], tickets[9], actor="kabid", reason="the same complaint")
        inbox.queue.claim("sari")  # the most urgent, whichever it is
    finally:
        inbox.close()
    return seeded


def _file(inbox: Inbox, n: int, at: datetime, rng: random.Random, seeded: Seeded) -> str:
    if 114 <= n < 120:
        name = f"{FIRST[n - 114]} Bridge"
        doc: dict[str, Any] = {
            "channel": "whatsapp",
            "sender": {"phone": f"0813{n:08d}", "name": name},
            "agency": "PUPR",
            "category": "infrastructure",
            "text": f"{BRIDGE}{'.' * (n % 3 + 1)} Laporan {FIRST[n - 114]}",
        }
        seeded.names.append(name)
        seeded.phones.append(f"0813{n:08d}")
    else:
        doc = _document(n, at, rng, seeded)
    text = doc.pop("text")
    result = inbox.receive(raw_json(f"m-{n}", text=text, received_at=at, **doc))
    assert result.outcome.value == "new", (n, result)
    return result.ticket or ""


def _run(
    inbox: Inbox,
    clock: list[datetime],
    timeline: list[Action],
    tickets: dict[int, str],
    rng: random.Random,
    seeded: Seeded,
) -> None:
    """Run the timeline in time order; a filed complaint adds its story to it."""
    pending = sorted(timeline, key=lambda a: (a[0], a[1]))
    while pending:
        at, n, act = pending.pop(0)
        clock[0] = at
        result = act(inbox)
        if isinstance(result, str) and n >= 0 and n not in tickets:
            tickets[n] = result
            story = _story(n, result, at, rng, seeded)
            pending = sorted(pending + story, key=lambda a: (a[0], a[1]))


_SEEDED: dict[Path, Seeded] = {}


def sqlite_month(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The month on SQLite, seeded once per test session (the tests only read it)."""
    path = tmp_path_factory.getbasetemp() / "seeded-month" / "omnichannel.db"
    if path not in _SEEDED:
        path.parent.mkdir(exist_ok=True)
        _SEEDED[path] = seed_month(f"sqlite:///{path}")
    return _SEEDED[path]


@pytest.fixture(scope="module")
def seeded_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    return sqlite_month(tmp_path_factory)


@pytest.fixture(scope="module")
def seeded_postgresql(postgres_url: str) -> Seeded:
    _truncate(postgres_url)
    return seed_month(postgres_url)


def make_report(seeded: Seeded) -> dict[str, Any]:
    """The report of the month as ``omnichannel report`` makes it (in a read-only snapshot)."""
    store = Store(seeded.url)
    try:
        return generate(store, seeded.config, seeded.period, now=NOW)
    finally:
        store.dispose()


# -- the figures, recomputed here --------------------------------------------------------------


def sql(conn: sa.Connection, text: str, **params: Any) -> list[Any]:
    return list(conn.execute(sa.text(text), params))


def utc(value: Any) -> datetime | None:
    """A timestamp as the driver returns it (SQLite: text, naive) made aware UTC."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


PERIOD_SQL = "received_at >= :since AND received_at < :until AND status <> 'merged'"


def params(conn: sa.Connection) -> dict[str, Any]:
    """The period's bounds as the backend stores times (SQLite: naive UTC text)."""
    since, until = _local(START, 0), _local(END, 0)
    if conn.dialect.name == "sqlite":
        stored = "%Y-%m-%d %H:%M:%S.%f"
        return {"since": since.strftime(stored), "until": until.strftime(stored)}
    return {"since": since, "until": until}


def working_deadline(received: datetime, days: int) -> datetime:
    """``days`` working days after ``received``: Monday to Friday in Makassar, not HOLIDAY."""
    local = received.astimezone(TZ)
    while days:
        local += timedelta(days=1)
        if local.isoweekday() <= 5 and local.date() != HOLIDAY:
            days -= 1
    return local.astimezone(UTC)


def rank(values: list[float], p: int) -> float | None:
    if not values:
        return None
    return sorted(values)[math.ceil(len(values) * p / 100) - 1]


def expected_timing(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each measure as the report defines it, from the rows of ``complaint_rows``."""
    found: dict[str, dict[str, Any]] = {}
    for name in ("first_response", "forwarding", "resolution"):
        hours, counts = [], Counter[str]()
        for row in rows:
            reached, deadline = row[name], row[f"{name}_deadline"]
            if reached is not None:
                hours.append((reached - row["received_at"]).total_seconds() / 3600)
                counts["within_deadline" if reached <= deadline else "late"] += 1
            elif row["status"] not in ("open", "assigned", "in_progress"):
                counts["skipped"] += 1
            else:
                counts["overdue" if deadline < NOW else "pending"] += 1
        due = counts["within_deadline"] + counts["late"] + counts["overdue"]
        found[name] = {
            "reached": len(hours),
            "median_hours": rank(hours, 50),
            "p90_hours": rank(hours, 90),
            **{k: counts[k] for k in ("within_deadline", "late", "overdue", "pending", "skipped")},
            "within_deadline_share": counts["within_deadline"] / due if due else None,
        }
    return found


def complaint_rows(conn: sa.Connection) -> list[dict[str, Any]]:
    """The period's complaints with their milestones, read table by table."""
    rows = {
        r.id: {
            "received_at": utc(r.received_at),
            "status": r.status,
            "agency": r.agency,
            "channel": r.channel,
            "due_at": utc(r.due_at),
        }
        for r in sql(
            conn,
            f"SELECT id, received_at, status, agency, channel, due_at FROM complaints "
            f"WHERE {PERIOD_SQL}",
            **params(conn),
        )
    }
    events: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for r in sql(conn, "SELECT complaint_id, at, kind FROM complaint_events"):
        events[r.complaint_id].append((utc(r.at), r.kind))  # type: ignore[arg-type]
    forwards: dict[int, list[datetime]] = defaultdict(list)
    for r in sql(
        conn,
        "SELECT complaint_id, sent_at FROM outbox WHERE kind = 'forward' AND status = 'sent'",
    ):
        forwards[r.complaint_id].append(utc(r.sent_at))  # type: ignore[arg-type]
    team = {"claimed", "assigned", "comment", "reply", "resolved", "closed", "rejected"}
    for cid, row in rows.items():
        mine = events[cid]
        row["first_response"] = min((at for at, k in mine if k in team), default=None)
        assigned = [at for at, k in mine if k == "assigned"]
        row["forwarding"] = min(assigned + forwards[cid], default=None)
        row["resolution"] = min((at for at, k in mine if k in ("resolved", "closed")), default=None)
        verify = working_deadline(row["received_at"], 3)
        row["first_response_deadline"] = row["forwarding_deadline"] = verify
        row["resolution_deadline"] = row["due_at"]
    return list(rows.values())


def counted(conn: sa.Connection, column: str) -> dict[Any, int]:
    return {
        r[0]: r[1]
        for r in sql(
            conn,
            f"SELECT {column}, COUNT(*) FROM complaints WHERE {PERIOD_SQL} GROUP BY {column}",
            **params(conn),
        )
    }


def as_counts(items: list[dict[str, Any]], key: str) -> dict[Any, int]:
    return {item[key]: item["complaints"] for item in items}


def check_report(seeded: Seeded, report: dict[str, Any]) -> None:
    """Every figure of ``report`` against SQL of this test's own."""
    engine = sa.create_engine(seeded.url)
    with engine.connect() as conn:
        p = params(conn)
        totals = sql(
            conn,
            "SELECT COUNT(*), SUM(CASE WHEN anonymous THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN confidential THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN location_lat IS NOT NULL THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN cluster_id IS NOT NULL THEN 1 ELSE 0 END) FROM complaints "
            f"WHERE {PERIOD_SQL}",
            **p,
        )[0]
        merged = sql(
            conn,
            "SELECT COUNT(*) FROM complaints WHERE received_at >= :since "
            "AND received_at < :until AND status = 'merged'",
            **p,
        )[0][0]
        by = {key: counted(conn, key) for key in ("channel", "category", "agency", "status")}
        rows = complaint_rows(conn)
        scores = sql(
            conn,
            "SELECT c.id, c.agency, r.score FROM ratings r JOIN complaints c "
            "ON c.id = r.complaint_id WHERE c.received_at >= :since "
            "AND c.received_at < :until AND c.status <> 'merged'",
            **p,
        )
        surveyed = sql(
            conn,
            "SELECT DISTINCT c.id, c.agency FROM complaints c JOIN outbox o "
            "ON o.complaint_id = c.id AND o.kind = 'survey' AND o.status = 'sent' "
            "WHERE c.received_at >= :since AND c.received_at < :until "
            "AND c.status <> 'merged'",
            **p,
        )
        clusters = sql(
            conn,
            "SELECT k.id, k.size, COUNT(*) AS n FROM complaints c "
            "JOIN clusters k ON k.id = c.cluster_id WHERE c.received_at >= :since "
            "AND c.received_at < :until AND c.status <> 'merged' GROUP BY k.id, k.size",
            **p,
        )
    engine.dispose()
    assert [int(v) for v in totals] == [
        report["totals"][k]
        for k in ("complaints", "anonymous", "confidential", "with_location", "in_clusters")
    ]
    assert report["totals"]["merged"] == merged == 1
    assert report["totals"]["complaints"] == 119  # 120 filed in the period, one merged away
    for key in ("channel", "category", "agency", "status"):
        assert as_counts(report[f"by_{key}"], key) == by[key], key
    expected = expected_timing(rows)
    for name, figures in expected.items():
        got = report["timing"][name]
        for key, value in figures.items():
            assert got[key] == pytest.approx(value, abs=0.006), (name, key)
    for entry in report["timing_by_agency"]:
        mine = expected_timing([r for r in rows if r["agency"] == entry["agency"]])
        for name, figures in mine.items():
            for key, value in figures.items():
                assert entry[name][key] == pytest.approx(value, abs=0.006), (entry, name, key)
    active = [r for r in rows if r["status"] in ("open", "assigned", "in_progress")]
    late = Counter(r["agency"] for r in active if r["due_at"] < NOW)
    assert report["overdue"]["open_past_due"] == sum(late.values()) > 0
    assert {r["agency"]: r["open_past_due"] for r in report["overdue"]["by_agency"]} == late
    check_weeks(report["weeks"], rows)
    biggest = sorted(clusters, key=lambda r: (-r.n, -r.size, r.id))[:10]
    assert [(c["id"], c["size"], c["in_period"]) for c in report["clusters"]] == [
        (r.id, r.size, r.n) for r in biggest
    ]
    assert report["clusters"][0]["in_period"] == 6
    check_satisfaction(report["satisfaction"], scores, surveyed)


def expected_satisfaction(scores: list[Any], surveyed: set[int]) -> dict[str, Any]:
    """Mean, distribution and response rate of ``(complaint id, score)`` rows."""
    distribution = Counter(str(score) for _, score in scores)
    rated = {cid for cid, _ in scores}
    return {
        "ratings": len(scores),
        "mean": round(sum(score for _, score in scores) / len(scores), 2) if scores else None,
        "distribution": {str(k): distribution[str(k)] for k in range(1, 6)},
        "surveyed": len(surveyed),
        "response_rate": len(rated & surveyed) / len(surveyed) if surveyed else None,
    }


def check_satisfaction(found: dict[str, Any], scores: list[Any], surveyed: list[Any]) -> None:
    overall = expected_satisfaction([(r.id, r.score) for r in scores], {r.id for r in surveyed})
    assert overall["ratings"] >= 10 and overall["surveyed"] > overall["ratings"]
    for key, value in overall.items():
        assert found[key] == pytest.approx(value, abs=0.0001), key
    agencies = sorted({r.agency for r in [*scores, *surveyed]})
    assert [a["agency"] for a in found["by_agency"]] == agencies
    for entry in found["by_agency"]:
        mine = expected_satisfaction(
            [(r.id, r.score) for r in scores if r.agency == entry["agency"]],
            {r.id for r in surveyed if r.agency == entry["agency"]},
        )
        for key, value in mine.items():
            assert entry[key] == pytest.approx(value, abs=0.0001), (entry["agency"], key)


def check_weeks(weeks: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    assert [w["week"] for w in weeks] == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    expected: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        year, week, _ = row["received_at"].astimezone(TZ).isocalendar()
        mine = expected[f"{year}-W{week:02d}"]
        mine["received"] += 1
        mine[f"channel:{row['channel']}"] += 1
        mine["resolved"] += row["resolution"] is not None
        mine["rejected"] += row["status"] == "rejected"
        active = row["status"] in ("open", "assigned", "in_progress")
        mine["open"] += active
        mine["overdue"] += active and row["due_at"] < NOW
    for week in weeks:
        mine = expected[week["week"]]
        assert week["received"] == mine["received"] > 0
        assert week["by_channel"] == {
            k[8:]: v for k, v in mine.items() if k.startswith("channel:") and v
        }
        figures = ("resolved", "rejected", "open", "overdue")
        assert [week[k] for k in figures] == [mine[k] for k in figures]


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_every_figure_of_the_report_matches_sql_of_its_own(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """The JSON report of the seeded month: totals, counts by channel, category, agency and
    status, the three timings (nearest-rank median and p90, within the working-day
    deadlines, late, overdue, pending) overall and by agency, overdue counts, weeks and the
    largest clusters all equal what SQL of this test computes."""
    seeded: Seeded = request.getfixturevalue(f"seeded_{backend}")
    report = make_report(seeded)
    check_report(seeded, report)
    timing = report["timing"]
    for name in ("first_response", "forwarding", "resolution"):  # the seed exercises each case
        assert timing[name]["within_deadline"] and timing[name]["late"], name
    assert timing["resolution"]["skipped"] and timing["first_response"]["overdue"]
    assert timing["resolution"]["pending"]


@pytest.mark.postgres
def test_open_data_reads_the_same_from_postgresql(seeded_postgresql: Seeded) -> None:
    """The open-data records and Open311 requests of the month read from PostgreSQL: every
    complaint neither confidential nor merged away (the located ones for Open311), and no
    identity (tests/test_opendata.py checks the command on SQLite)."""
    from omnichannel.opendata import open311_requests, opendata_records
    from tests.test_opendata import assert_no_identity, tickets

    store = Store(seeded_postgresql.url)
    try:
        period = {"since": seeded_postgresql.period.since, "until": seeded_postgresql.period.until}
        records = list(opendata_records(store, **period))
        requests = list(open311_requests(store, **period))
    finally:
        store.dispose()
    public = "NOT confidential AND status <> 'merged'"
    assert {r["ticket"] for r in records} == tickets(seeded_postgresql, public)
    located = tickets(seeded_postgresql, public + " AND location_lat IS NOT NULL")
    assert {r["service_request_id"] for r in requests} == located
    assert_no_identity(seeded_postgresql, json.dumps([records, requests], ensure_ascii=False))


def test_the_report_shows_no_identity(seeded_sqlite: Seeded) -> None:
    """No name, e-mail address or phone of any complainant is anywhere in the JSON, CSV or
    HTML report, in any written form."""
    report = make_report(seeded_sqlite)
    out = io.StringIO()
    from omnichannel.report import write_csv
    from omnichannel.report_html import render

    write_csv(report, out)
    for text in (json.dumps(report), out.getvalue(), render(report)):
        for value in [*seeded_sqlite.names, *seeded_sqlite.emails, *seeded_sqlite.phones]:
            assert value not in text
        for phone in seeded_sqlite.phones:
            assert "+62" + phone[1:] not in text and phone[1:] not in text


def test_the_csv_report_holds_the_json_figures(seeded_sqlite: Seeded) -> None:
    """The CSV form has one row per figure (section, key, measure, value) with the same
    values as the JSON form."""
    from omnichannel.report import write_csv

    report = make_report(seeded_sqlite)
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0]) == ["section", "key", "measure", "value"]
    cells = {(r["section"], r["key"], r["measure"]): r["value"] for r in rows}
    assert cells[("totals", "", "complaints")] == str(report["totals"]["complaints"])
    for item in report["by_channel"]:
        assert cells[("by_channel", item["channel"], "complaints")] == str(item["complaints"])
    median = report["timing"]["resolution"]["median_hours"]
    assert cells[("timing", "", "resolution.median_hours")] == str(median)
    pupr = next(a for a in report["timing_by_agency"] if a["agency"] == "PUPR")
    assert cells[("timing_by_agency", "PUPR", "forwarding.late")] == str(pupr["forwarding"]["late"])
    week = report["weeks"][1]
    assert cells[("weeks", week["week"], "by_channel.sms")] == str(week["by_channel"]["sms"])


def test_names_from_the_database_are_text_everywhere(seeded_sqlite: Seeded) -> None:
    """An agency, category or cluster label that looks like markup, mathtext or a formula is
    shown as text: escaped in the HTML and its SVG charts, never run in a spreadsheet."""
    from omnichannel.report import write_csv
    from omnichannel.report_html import render

    report = make_report(seeded_sqlite)
    hostile = "<script>alert(1)</script> $\\frac{1}{2}$"
    report["by_agency"][0]["agency"] = hostile
    report["timing_by_agency"][0]["agency"] = hostile
    report["by_category"][0]["category"] = "=HYPERLINK(1)"
    report["clusters"][0]["label"] = "<b>jembatan</b> $x^2$"
    page = render(report)
    assert "<script>" not in page and "<b>jembatan" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 2  # a table and a chart
    assert "$x^2$" in page  # as written, not typeset
    out = io.StringIO()
    write_csv(report, out)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert ["by_category", "'=HYPERLINK(1)", "complaints"] in [r[:3] for r in rows]


def test_satisfaction_reads_ratings_when_they_exist(tmp_path: Path) -> None:
    """Without a ratings table the satisfaction figures are empty ("no ratings yet"); with
    one, the mean, the distribution and the response rate (rated of surveyed) are those of
    the period's complaints, overall and by agency."""
    meta = sa.MetaData()
    complaints = sa.Table(
        "complaints",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("received_at", sa.DateTime),
        sa.Column("status", sa.String),
        sa.Column("agency", sa.String),
    )
    outbox = sa.Table(
        "outbox",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("complaint_id", sa.Integer),
        sa.Column("kind", sa.String),
        sa.Column("status", sa.String),
    )
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ratings.db'}")
    meta.create_all(engine)
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    inside, outside = datetime(2026, 11, 5), datetime(2026, 12, 5)
    with engine.begin() as conn:
        conn.execute(
            complaints.insert(),
            [
                {"id": 1, "received_at": inside, "status": "resolved", "agency": "PUPR"},
                {"id": 2, "received_at": inside, "status": "resolved", "agency": "PUPR"},
                {"id": 3, "received_at": inside, "status": "closed", "agency": "PUPR"},
                {"id": 4, "received_at": inside, "status": "resolved", "agency": "DINKES"},
                {"id": 5, "received_at": outside, "status": "resolved", "agency": "DINKES"},
                {"id": 6, "received_at": inside, "status": "merged", "agency": "DINKES"},
            ],
        )
        conn.execute(
            outbox.insert(),
            [{"complaint_id": i, "kind": "survey", "status": "sent"} for i in (1, 2, 3, 4, 5, 6)]
            + [{"complaint_id": 1, "kind": "acknowledgement", "status": "sent"}],
        )
        assert satisfaction(conn, since, until)["note"] == "no ratings yet"
        conn.execute(sa.text("CREATE TABLE ratings (complaint_id INTEGER, score INTEGER)"))
        empty = satisfaction(conn, since, until)
        assert (empty["ratings"], empty["surveyed"], empty["mean"]) == (0, 4, None)
        conn.execute(sa.text("INSERT INTO ratings VALUES (1, 5), (2, 2), (4, 4), (5, 1), (6, 1)"))
        found = satisfaction(conn, since, until)
    engine.dispose()
    assert found["ratings"] == 3 and found["surveyed"] == 4
    assert found["mean"] == pytest.approx((5 + 2 + 4) / 3, abs=0.005)
    assert found["response_rate"] == 0.75
    assert found["distribution"] == {"1": 0, "2": 1, "3": 0, "4": 1, "5": 1}
    dinkes, pupr = found["by_agency"]
    assert (pupr["agency"], pupr["ratings"], pupr["mean"], pupr["surveyed"]) == ("PUPR", 2, 3.5, 3)
    assert pupr["response_rate"] == pytest.approx(2 / 3, abs=0.0001)
    assert (dinkes["agency"], dinkes["mean"], dinkes["response_rate"]) == ("DINKES", 4.0, 1.0)


def test_nearest_rank_percentiles() -> None:
    """The median and p90 are nearest-rank: values of the data, checkable by hand."""
    from omnichannel.report import nearest_rank

    assert nearest_rank([], 50) is None
    assert nearest_rank([7.0], 90) == 7.0
    assert nearest_rank([4.0, 1.0, 3.0, 2.0], 50) == 2.0
    assert nearest_rank([float(v) for v in range(1, 11)], 90) == 9.0
    assert nearest_rank([float(v) for v in range(1, 12)], 90) == 10.0


def test_a_period_is_dates_in_the_office_timezone() -> None:
    """``--from 2026-11-02 --to 2026-11-30`` is 2026-11-01T16:00Z to 2026-11-29T16:00Z in
    Makassar, four ISO weeks; a period that ends before it starts is refused."""
    period = Period(START, END, TZ)
    assert (period.since, period.until) == (
        datetime(2026, 11, 1, 16, tzinfo=UTC),
        datetime(2026, 11, 29, 16, tzinfo=UTC),
    )
    assert period.weeks() == ["2026-W45", "2026-W46", "2026-W47", "2026-W48"]
    assert Period(date(2026, 12, 30), date(2027, 1, 6), TZ).weeks() == ["2026-W53", "2027-W01"]
    with pytest.raises(ValueError, match="before it starts"):
        Period(END, START, TZ)


# -- the command and the HTML ------------------------------------------------------------------


def write_config(seeded: Seeded, tmp_path: Path) -> Path:
    path = tmp_path / "omnichannel.toml"
    path.write_text(
        f'[database]\nurl = "{seeded.url}"\n\n[deadlines]\nverify_days = 3\n'
        f'holidays = ["{HOLIDAY}"]\n',
        encoding="utf-8",
    )
    return path


def test_the_report_command_writes_json_csv_and_html(
    seeded_sqlite: Seeded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``report --format json`` prints the report, ``--format csv`` its rows, and the default
    HTML goes to ``report-FROM-TO.html``; the command writes nothing to the database."""
    config = write_config(seeded_sqlite, tmp_path)
    db = Path(seeded_sqlite.url.removeprefix("sqlite:///"))
    before = db.stat().st_mtime_ns
    runner = CliRunner()
    base = ["--config", str(config), "report", "--from", str(START), "--to", str(END)]
    done = runner.invoke(main, [*base, "--format", "json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["period"]["from"] == "2026-11-02" and report["totals"]["complaints"] == 119
    done = runner.invoke(main, [*base, "--format", "csv"])
    assert done.exit_code == 0 and done.stdout.startswith("section,key,measure,value")
    monkeypatch.chdir(tmp_path)
    done = runner.invoke(main, base)
    assert done.exit_code == 0, done.output
    assert done.stdout.strip() == "report-2026-11-02-2026-11-30.html"
    page = (tmp_path / done.stdout.strip()).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 10
    assert db.stat().st_mtime_ns == before


def test_operator_mistakes_are_one_line(seeded_sqlite: Seeded, tmp_path: Path) -> None:
    """A period that ends before it starts, a malformed date, and an HTML report without
    matplotlib are each a one-line error and a non-zero exit."""
    config = write_config(seeded_sqlite, tmp_path)
    runner = CliRunner()
    base = ["--config", str(config), "report"]
    done = runner.invoke(main, [*base, "--from", "2026-11-30", "--to", "2026-11-02"])
    assert done.exit_code == 2 and "before it starts" in done.output
    done = runner.invoke(main, [*base, "--from", "2026-11", "--to", "2026-12-01"])
    assert done.exit_code == 2 and "--from" in done.output
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "matplotlib"}
    try:
        for name in [*saved, "matplotlib"]:
            sys.modules[name] = None  # type: ignore[assignment]  # import fails
        done = runner.invoke(main, [*base, "--from", str(START), "--to", str(END)])
    finally:
        sys.modules.pop("matplotlib")
        sys.modules.update(saved)
    assert done.exit_code == 1
    assert done.output.strip().splitlines() == [
        "omnichannel: report --format html needs matplotlib: pip install 'omnichannel[report]'"
    ]


# -- in a real browser -------------------------------------------------------------------------


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium, its console log kept."""
    with chromium(console_log=True) as driver:
        yield driver


def test_the_html_report_renders_its_charts_in_a_browser(
    seeded_sqlite: Seeded, browser: Any, tmp_path: Path
) -> None:
    """The HTML report opens in headless Chromium without a console message; every chart
    is an inline SVG that is displayed with a real size; nothing is fetched; a screenshot
    of the whole page is saved."""
    from selenium.webdriver.common.by import By

    from omnichannel.report_html import render

    page = tmp_path / "report.html"
    page.write_text(render(make_report(seeded_sqlite)), encoding="utf-8")
    browser.get(page.as_uri())
    names = [
        "weeks",
        "channels",
        "categories",
        "agencies",
        "statuses",
        "timing",
        "deadlines",
        "satisfaction",
        "satisfaction_agencies",
        "clusters",
    ]
    figures = browser.find_elements(By.CSS_SELECTOR, "figure.chart")
    assert [f.get_attribute("data-chart") for f in figures] == names
    for figure in figures:
        svg = figure.find_element(By.TAG_NAME, "svg")
        assert svg.is_displayed() and svg.size["width"] > 500 and svg.size["height"] > 100
        assert figure.find_elements(By.CSS_SELECTOR, "svg text")  # labels are text
    assert browser.get_log("browser") == []
    loaded = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded == []
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1280, min(int(height) + 100, 16000))
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot))
    keep_screenshot(shot)
    assert shot.stat().st_size > 50_000
