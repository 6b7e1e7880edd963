"""The team queue on both backends: claims that never collide, leases that expire, the story
of a complaint in its events, listings, and the ``queue`` commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnichannel import Inbox
from omnichannel.cli import main
from omnichannel.config import default_config
from omnichannel.queue import Queue, QueueError
from tests.helpers import T0, raw_json, run_threads


def file_complaints(inbox: Inbox, count: int, *, start: int = 0) -> list[str]:
    results = inbox.receive_many(
        [
            raw_json(
                f"q-{n}", text=f"Keluhan nomor {n} tentang izin.", sender={"phone": f"0812{n:08d}"}
            )
            for n in range(start, start + count)
        ]
    )
    assert {r.outcome.value for r in results} == {"new"}
    return [r.ticket or "" for r in results]


def test_concurrent_claims_never_return_the_same_complaint(inbox: Inbox) -> None:
    """8 team members claiming at once over 100 complaints: each complaint is claimed exactly
    once, and every claim after the last is empty."""
    tickets = file_complaints(inbox, 100)
    claimed: list[list[str]] = [[] for _ in range(8)]
    errors: list[BaseException] = []

    def member(index: int) -> None:
        try:
            while (item := inbox.queue.claim(f"member-{index}")) is not None:
                claimed[index].append(item.ticket)
        except BaseException as exc:
            errors.append(exc)

    threads = run_threads(member, [(i,) for i in range(8)])
    assert not [t for t in threads if t.is_alive()] and errors == []
    every = [t for mine in claimed for t in mine]
    assert sorted(every) == sorted(tickets)  # all of them, none twice
    assert inbox.queue.claim("late") is None


def test_an_expired_lease_returns_the_complaint(inbox: Inbox) -> None:
    """A claim holds for its lease; once it has run out, another member can claim the same
    complaint, and both claims are in its story."""
    now = [T0 + timedelta(days=1)]
    queue = Queue(inbox.store, clock=lambda: now[0])
    [ticket] = file_complaints(inbox, 1)
    first = queue.claim("ani", lease=timedelta(minutes=10))
    assert first is not None and first.ticket == ticket and first.status == "in_progress"
    now[0] += timedelta(minutes=9)
    assert queue.claim("budi") is None  # still held
    now[0] += timedelta(minutes=2)
    second = queue.claim("budi")
    assert second is not None and second.ticket == ticket
    story = [(e["kind"], e["actor"], e["from"], e["to"]) for e in queue.events(ticket)]
    assert story == [
        ("claimed", "ani", "open", "in_progress"),
        ("claimed", "budi", "in_progress", "in_progress"),
    ]


def test_the_events_tell_the_whole_story_and_wrong_moves_are_refused(inbox: Inbox) -> None:
    """Assign, comment, resolve, close, reopen, reject: each is an event (who, when, from,
    to, note); a move its state does not allow is refused and leaves no event."""
    [ticket] = file_complaints(inbox, 1)
    queue = inbox.queue
    assert queue.assign(ticket, actor="kabid", agency="PUPR", person="ani").status == "assigned"
    queue.comment(ticket, "Sudah dicek ke lokasi.", actor="ani")
    with pytest.raises(QueueError, match="cannot be closed"):
        queue.close(ticket, actor="ani")
    assert queue.resolve(ticket, actor="ani", note="Jalan diperbaiki.").status == "resolved"
    assert queue.close(ticket, actor="kabid").status == "closed"
    with pytest.raises(QueueError, match="cannot be rejected"):
        queue.reject(ticket, actor="kabid", reason="salah kirim")
    assert queue.reopen(ticket, actor="kabid", note="Warga melapor lagi.").status == "open"
    with pytest.raises(QueueError, match="needs a reason"):
        queue.reject(ticket, actor="kabid", reason=" ")
    assert queue.reject(ticket, actor="kabid", reason="Bukan wewenang daerah.").status == "rejected"
    with pytest.raises(QueueError, match="no complaint"):
        queue.resolve("ADU-2026-999999", actor="x")
    story = queue.events(ticket)
    assert [(e["kind"], e["from"], e["to"]) for e in story] == [
        ("assigned", "open", "assigned"),
        ("comment", "assigned", "assigned"),
        ("resolved", "assigned", "resolved"),
        ("closed", "resolved", "closed"),
        ("reopened", "closed", "open"),
        ("rejected", "open", "rejected"),
    ]
    assert story[0]["note"] == "agency PUPR, person ani" and story[5]["actor"] == "kabid"
    assert all(e["at"].tzinfo is not None for e in story)
    assert inbox.complaint(ticket).agency == "PUPR"  # type: ignore[union-attr]


def test_list_filters_newest_first_overdue_and_more(inbox: Inbox) -> None:
    """``list`` shows the newest first, filters by status, agency, channel, overdue and date,
    and says when more rows match than it shows."""
    old = inbox.receive(raw_json("old-1", received_at=T0, text="Lama sekali."))
    new = inbox.receive(
        raw_json("new-1", received_at=datetime.now(UTC), text="Baru saja.", channel="email")
    )
    inbox.queue.assign(new.ticket or "", actor="x", agency="PUPR")
    rows, more = inbox.queue.list()
    assert [r.ticket for r in rows] == [new.ticket, old.ticket] and not more
    rows, more = inbox.queue.list(limit=1)
    assert [r.ticket for r in rows] == [new.ticket] and more
    assert [r.ticket for r in inbox.queue.list(overdue=True)[0]] == [old.ticket]
    assert [r.ticket for r in inbox.queue.list(agency="PUPR")[0]] == [new.ticket]
    assert [r.ticket for r in inbox.queue.list(channel="email")[0]] == [new.ticket]
    assert [r.ticket for r in inbox.queue.list(status="open")[0]] == [old.ticket]
    since = T0 + timedelta(days=1)
    assert [r.ticket for r in inbox.queue.list(since=since)[0]] == [new.ticket]


def test_queue_commands(tmp_path: Path, database_url: str) -> None:
    """``queue claim --format json`` prints the claimed complaint, then nothing when none is
    left; ``queue list --format json`` one object per complaint with status, agency, due_at
    and claimed_by; a refused move is one line and exit 1; ``complaints show`` tells the
    story."""
    with Inbox(default_config(url=database_url)) as inbox:
        [ticket] = file_complaints(inbox, 1)
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")

    def run(*args: str) -> tuple[int, list[str], str]:
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        return result.exit_code, result.stdout.splitlines(), result.stderr

    code, lines, _ = run("queue", "claim", "--worker", "ani", "--format", "json")
    assert code == 0 and json.loads(lines[0])["ticket"] == ticket
    assert run("queue", "claim", "--worker", "budi", "--format", "json")[:2] == (0, [])
    code, lines, _ = run("queue", "list", "--format", "json")
    [row] = [json.loads(line) for line in lines]
    assert row["status"] == "in_progress" and row["claimed_by"] == "ani"
    assert row["due_at"].endswith("Z") and "agency" in row
    assert run("queue", "comment", ticket, "Dicek.", "--actor", "ani")[1] == [
        f"{ticket}: in_progress"
    ]
    assert run("queue", "resolve", ticket, "--actor", "ani")[1] == [f"{ticket}: resolved"]
    code, _, err = run("queue", "reject", ticket, "--reason", "dobel")
    assert (
        code == 1
        and err.strip() == f"omnichannel: complaint {ticket} is resolved: it cannot be rejected"
    )
    code, lines, _ = run("complaints", "show", ticket)
    assert any("resolved  in_progress -> resolved  by ani" in line for line in lines)
    code, lines, _ = run("queue", "list")
    assert lines[0].split()[:3] == ["TICKET", "STATUS", "CHANNEL"] and ticket in lines[1]


def test_deadlines_skip_weekends_and_the_configured_holidays(database_url: str) -> None:
    """A complaint received on Thursday 24 December 2026 (10:00 in Makassar) is due three
    working days later: Christmas (configured) and the weekend do not count, so Wednesday
    30 December at 10:00; without the holiday, Tuesday 29 December."""
    from omnichannel.config import parse_config

    received = datetime(2026, 12, 24, 2, 0, tzinfo=UTC)  # 10:00 WITA
    due = {}
    for holidays in ([], ["2026-12-25", "2027-01-01"]):
        config = parse_config(
            {
                "database": {"url": database_url},
                "deadlines": {"verify_days": 3, "holidays": holidays},
            }
        )
        with Inbox(config) as inbox:
            result = inbox.receive(raw_json(f"d-{len(holidays)}", received_at=received))
            complaint = inbox.complaint(result.ticket or "")
            assert complaint is not None and complaint.due_at is not None
            due[len(holidays)] = complaint.due_at
    assert due[0] == datetime(2026, 12, 29, 2, 0, tzinfo=UTC)
    assert due[2] == datetime(2026, 12, 30, 2, 0, tzinfo=UTC)


def test_routing_rules_first_match_wins_and_the_rule_is_recorded(database_url: str) -> None:
    """Rules are tried in order (regular expression, keywords, channel, connector); the first
    that matches gives agency and category and is recorded on the complaint; an agency the
    form already gave is kept; no match goes to the coordinating office; a pattern that is
    not a regular expression is a configuration error naming its key."""
    import sqlalchemy as sa

    from omnichannel.config import parse_config
    from omnichannel.errors import ConfigError
    from omnichannel.store.tables import complaints

    routes = [
        {"name": "roads", "pattern": "jalan|jembatan", "agency": "PUPR", "category": "infra"},
        {
            "name": "permits",
            "keywords": ["PBG", "izin"],
            "agency": "DPMPTSP",
            "category": "licensing",
        },
        {"name": "whatsapp", "channel": "whatsapp", "agency": "DISKOMINFO"},
        {"name": "everything-roads", "pattern": ".", "agency": "NEVER"},
    ]
    config = parse_config(
        {
            "database": {"url": database_url},
            "routing": {"default_agency": "SEKDA"},
            "routes": routes,
        }
    )
    cases = {
        "r-1": (
            {"text": "Jembatan di desa retak dan izin belum keluar."},
            ("PUPR", "infra", "roads"),
        ),
        "r-2": ({"text": "PBG saya belum terbit."}, ("DPMPTSP", "licensing", "permits")),
        "r-3": (
            {"text": "Tolong bantu.", "channel": "whatsapp"},
            ("DISKOMINFO", "other", "whatsapp"),
        ),
        "r-4": ({"text": "Jalan rusak.", "agency": "DINSOS"}, ("DINSOS", "infra", "roads")),
        "r-5": ({"text": "Pelayanan lambat sekali."}, ("NEVER", "other", "everything-roads")),
    }
    with Inbox(config) as inbox:
        for external_id, (fields, _) in cases.items():
            inbox.receive(raw_json(external_id, **fields))
        with inbox.store.transaction() as conn:
            rows = conn.execute(
                sa.select(
                    complaints.c.body,
                    complaints.c.agency,
                    complaints.c.category,
                    complaints.c.route,
                ).order_by(complaints.c.id)
            ).all()
    assert [tuple(r[1:]) for r in rows] == [expected for _, expected in cases.values()]
    plain = parse_config(
        {"database": {"url": database_url}, "routing": {"default_agency": "SEKDA"}}
    )
    with Inbox(plain) as inbox:
        result = inbox.receive(raw_json("r-9", text="Pelayanan lambat."))
        complaint = inbox.complaint(result.ticket or "")
        assert complaint is not None and (complaint.agency, complaint.category) == (
            "SEKDA",
            "other",
        )
    with pytest.raises(ConfigError, match=r"routes\[0\]\.pattern: not a regular expression"):
        parse_config({"routes": [{"pattern": "(", "agency": "X"}]})
