"""Retention on both backends: ``omnichannel purge`` removes the personal data of complaints
finished long ago — from every table and column — and keeps the anonymized complaints, their
counts and a verifiable audit record; a dry run changes nothing; a second run finds nothing.

The test database is filed as in production, with a clock the test moves: complaints on every
channel (an e-mail with an attachment, acknowledged and answered over a real SMTP server on
loopback; SMS; WhatsApp; a web form with a location; an anonymous and a confidential one), a
resend merged, an operator's merges, queue moves; most finished in 2019, one still open since
then, one finished last week.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel import Inbox, audit, retention
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.retention import Age, Policy, Summary, parse_age, purge
from omnichannel.store.tables import (
    attachments,
    audit_chain,
    complaint_events,
    complaints,
    identities,
    messages,
    metadata,
    outbound_messages,
    quarantine,
    ratings,
    raw_messages,
)
from tests import smtp
from tests.smtp import SmtpServer
from tests.test_acknowledgements import Clock

smtp_server = smtp.smtp_server  # the fixture: a real SMTP server on loopback

LONG_AGO = datetime(2019, 3, 4, 2, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
TEAM = "petugas-satu"
OUR_MAIL = "pengaduan@dpmptsp.example.go.id"
ATTACHMENT = b"\xff\xd8\xff\xe0 scan KTP milik pelapor 7f3a9c \x00\x01"
NIK = "3174050101800001"
RAHMAT_WA_ID = "6285799990000"
MEDIA_URL = "https://media.example.net/v1/6285799990000/foto.jpg?token=rahasia-9f8e"


@dataclass(frozen=True)
class Person:
    """A citizen of the scenario and every form their data takes."""

    name: str
    phone: str | None = None
    email: str | None = None

    @property
    def values(self) -> list[str]:
        """What must not be found after their complaints are purged."""
        found = [self.name, *self.name.split()]
        if self.phone:
            national = "0" + self.phone[3:]
            found += [self.phone, self.phone[1:], national, f"{national[:4]}-{national[4:8]}"]
        if self.email:
            found.append(self.email)
        return found

    @property
    def keys(self) -> list[str]:
        found = [f"tel:{self.phone}"] if self.phone else []
        return found + ([f"mailto:{self.email}"] if self.email else [])


BUDI = Person("Budi Santoso", "+6281234567890", "budi.santoso@example.com")
SITI = Person("Siti Aminah", "+6281311112222")
RAHMAT = Person("Rahmat Hidayat", "+6285799990000")
DEWI = Person("Dewi Lestari", "+6281299998888", "dewi.lestari@example.org")
EKO = Person("Eko Prasetyo", email="eko.prasetyo@example.net")
JOKO = Person("Joko Susilo", email="joko.susilo@example.net")
ANI = Person("Ani Wijaya", "+6281577776666")
YANTO = Person("Yanto Kusuma", "+6281900001111")
FAJAR = Person("Fajar Nugroho", "+6281688887777")
WATI = Person("Wati Handayani", "+6281766665555")
PURGED = [BUDI, SITI, RAHMAT, DEWI, EKO, JOKO, ANI]
"""Whose complaints are finished since 2019."""
KEPT = [YANTO, FAJAR, WATI]
"""Yanto's complaint is open since 2019 (Fajar's was merged into it); Wati's was closed last
week. Yanto also has a complaint closed in 2019: his identity stays, its sender does not."""


@dataclass
class Scenario:
    inbox: Inbox
    clock: Clock
    folder: Path
    old: dict[str, str] = field(default_factory=dict)
    """Ticket of each complaint to be purged: its status."""
    kept: list[str] = field(default_factory=list)
    """Tickets of the complaints that stay as they are."""

    def file(self, name: str, data: bytes) -> str:
        """One file through the files connector; the ticket."""
        path = self.folder / name
        path.write_bytes(data)
        [filed] = list(self.inbox.ingest_files("files", [path]))
        assert filed.result is not None and filed.result.ticket, filed.error
        return filed.result.ticket

    def doc(self, name: str, person: Person, text: str, **fields: Any) -> str:
        """An InboundMessage document from ``person``."""
        sender = {"name": person.name, "phone": person.phone, "email": person.email}
        sender = {k: v for k, v in sender.items() if v} | fields.pop("sender", {})
        doc = {"external_id": name, "sender": sender, "text": text, **fields}
        doc.setdefault("channel", "sms")
        return self.file(f"{name}.json", json.dumps(doc).encode())

    def finish(self, ticket: str, status: str, note: str | None = None) -> None:
        queue = self.inbox.queue
        queue.assign(ticket, actor=TEAM, agency="DPMPTSP")
        self.clock.advance(hours=2)
        if status == "rejected":
            queue.reject(ticket, actor=TEAM, reason=note or "bukan kewenangan kami")
            return
        queue.resolve(ticket, actor=TEAM, note=note)
        if status == "closed":
            self.clock.advance(days=3)
            queue.close(ticket, actor=TEAM)


def budi_mail() -> bytes:
    mail = EmailMessage()
    mail["From"] = f"{BUDI.name} <{BUDI.email}>"
    mail["To"] = f"Pengaduan DPMPTSP <{OUR_MAIL}>"
    mail["Subject"] = "Izin usaha Budi Santoso ditolak"
    mail["Date"] = "Mon, 04 Mar 2019 09:55:00 +0800"
    mail["Message-ID"] = "<izin-1@mail.example.com>"
    mail.set_content(
        f"Izin usaha saya ditolak tanpa alasan. NIK saya {NIK}, mohon dicek.\n\n"
        f"Salam,\nBudi Santoso\nHP/WA: 0812-3456-7890\n"
    )
    mail.add_attachment(
        ATTACHMENT, maintype="image", subtype="jpeg", filename="ktp-budi-santoso.jpg"
    )
    return bytes(mail)


def build(scenario: Scenario) -> None:
    """The complaints of the module docstring."""
    s, queue = scenario, scenario.inbox.queue
    budi = s.file("keluhan-budi-santoso.eml", budi_mail())
    assert s.inbox.outbox.drain() == {"sent": 1}  # the acknowledgement, over SMTP
    queue.reply(budi, "Bapak Budi Santoso, mohon datang ke loket 3 membawa KTP.", actor=TEAM)
    assert s.inbox.outbox.drain() == {"sent": 1}
    s.finish(budi, "closed", note="izin diterbitkan untuk Budi Santoso")
    siti = s.doc("sms-1", SITI, "Lampu jalan di depan rumah saya mati, hubungi 081311112222.")
    s.clock.advance(hours=1)
    resend = s.doc("sms-2", SITI, "Lampu jalan di depan rumah saya mati, hubungi 081311112222.")
    assert resend == siti  # the same complaint again: merged
    s.finish(siti, "rejected", note=f"laporan ganda dari Siti Aminah ({SITI.phone})")
    rahmat = s.doc(
        "wa-1",
        RAHMAT,
        "Pak, jalan di gang kami berlubang besar dan membahayakan pengendara motor.",
        channel="whatsapp",
        sender={"handle": RAHMAT_WA_ID},
        attachments=[{"url": MEDIA_URL, "content_type": "image/jpeg", "filename": "rahmat.jpg"}],
    )
    s.finish(rahmat, "resolved", note="ditambal")
    dewi = s.doc(
        "web-1",
        DEWI,
        "Trotoar di depan kantor kelurahan rusak dan banyak pedagang berjualan di atasnya.",
        channel="web",
        location={"lat": -6.2001234, "lon": 106.8166789, "address": "Jl. Melati No. 5 RT 03"},
    )
    eko = s.doc(
        "web-2",
        EKO,
        "Trotoar di depan kantor kelurahan rusak, dan banyak pedagang yang berjualan di atasnya.",
        channel="web",
    )
    s.inbox.dedupe.merge(dewi, eko, actor=TEAM, reason="satu lokasi")
    s.finish(dewi, "closed")
    joko = s.doc(
        "web-3",
        JOKO,
        "Petugas loket meminta uang tambahan untuk mempercepat izin.",
        channel="web",
        anonymous=True,
    )
    s.finish(joko, "closed")
    ani = s.doc(
        "wa-2",
        ANI,
        "Saya melihat pegawai dinas membuang sampah ke sungai setiap pagi.",
        channel="whatsapp",
        confidential=True,
    )
    queue.comment(ani, f"pelapor Ani Wijaya bisa dihubungi di {ANI.phone}", actor=TEAM)
    s.finish(ani, "closed")
    yanto_old = s.doc("sms-3", YANTO, "Pelayanan di kantor camat lambat sekali kemarin.")
    s.finish(yanto_old, "closed")
    s.clock.advance(days=10)
    yanto = s.doc("sms-4", YANTO, "Air PDAM di kompleks kami tidak mengalir tiga hari ini.")
    fajar = s.doc("sms-5", FAJAR, "Air PDAM tidak mengalir di perumahan sejak hari Senin.")
    s.inbox.dedupe.merge(yanto, fajar, actor=TEAM, reason="satu masalah")
    s.clock.now = NOW - timedelta(days=7)
    wati = s.doc("sms-6", WATI, "Lampu lalu lintas di perempatan pasar mati sejak kemarin.")
    s.finish(wati, "closed")
    s.clock.now = NOW
    s.old = {
        budi: "closed",
        siti: "rejected",
        rahmat: "resolved",
        dewi: "closed",
        eko: "merged",
        joko: "closed",
        ani: "closed",
        yanto_old: "closed",
    }
    s.kept = [yanto, fajar, wati]


@pytest.fixture
def scenario(database_url: str, smtp_server: SmtpServer, tmp_path: Path) -> Iterator[Scenario]:
    """The test database, filed; the clock at ``NOW``."""
    clock = Clock(LONG_AGO)
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [{"name": "files", "type": "files", "path": str(tmp_path / "drop")}],
            "smtp": {"host": smtp_server.host, "port": smtp_server.port, "from": OUR_MAIL},
        }
    )
    folder = tmp_path / "files"
    folder.mkdir()
    inbox = Inbox(config, clock=clock)
    built = Scenario(inbox, clock, folder)
    build(built)
    yield built
    inbox.close()


# -- reading the whole database ------------------------------------------------------------------


def dump(inbox: Inbox) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in id order."""
    found = {}
    with inbox.store.transaction() as conn:
        for table in metadata.sorted_tables:
            order = [c for c in table.primary_key.columns]
            found[table.name] = [tuple(r) for r in conn.execute(sa.select(table).order_by(*order))]
    return found


def texts(rows: dict[str, list[tuple[Any, ...]]]) -> Iterator[tuple[str, str | bytes]]:
    """Every text and blob value of a dump: (table, value); JSON values as JSON text."""
    for table, items in rows.items():
        for row in items:
            for value in row:
                if isinstance(value, bytes | str):
                    yield table, value
                elif isinstance(value, dict | list):
                    yield table, json.dumps(value, ensure_ascii=False)


def where_found(rows: dict[str, list[tuple[Any, ...]]], needle: str | bytes) -> list[str]:
    """The tables holding ``needle``: bytes as they are, text case-insensitively, as a whole
    word when it starts and ends with a letter (``Ani`` is not in ``Pelayanan``)."""
    if isinstance(needle, bytes):
        pattern = re.compile(re.escape(needle))
    else:
        word = rb"\b" if needle[:1].isalpha() and needle[-1:].isalpha() else b""
        pattern = re.compile(word + re.escape(needle.encode()) + word, re.IGNORECASE)
    found = []
    for table, value in texts(rows):
        data = value if isinstance(value, bytes) else value.encode()
        if pattern.search(data):
            found.append(table)
    return found


def count(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def ids_of(inbox: Inbox, tickets: list[str]) -> list[int]:
    with inbox.store.transaction() as conn:
        query = sa.select(complaints.c.id).where(complaints.c.ticket.in_(tickets))
        return sorted(conn.execute(query).scalars())


def rows_of(inbox: Inbox, tickets: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of these complaints and of their messages, attachments and events."""
    ids = ids_of(inbox, tickets)
    with inbox.store.transaction() as conn:
        return {
            table.name: [
                tuple(r)
                for r in conn.execute(sa.select(table).where(column.in_(ids)).order_by(table.c.id))
            ]
            for table, column in (
                (complaints, complaints.c.id),
                (messages, messages.c.complaint_id),
                (attachments, attachments.c.complaint_id),
                (complaint_events, complaint_events.c.complaint_id),
            )
        }


def payloads_of(inbox: Inbox, tickets: list[str]) -> list[bytes]:
    """The raw payloads of these complaints' messages."""
    ids = ids_of(inbox, tickets)
    with inbox.store.transaction() as conn:
        query = (
            sa.select(raw_messages.c.payload)
            .join(messages, messages.c.raw_id == raw_messages.c.id)
            .where(messages.c.complaint_id.in_(ids))
        )
        return list(conn.execute(query).scalars())


def verified(inbox: Inbox) -> audit.Report:
    with audit.snapshot(inbox.store) as conn:
        return audit.verify(conn)


def run(s: Scenario, *, apply: bool, policy: Policy | None = None, **options: Any) -> Summary:
    chosen = policy or Policy.uniform("5y")
    return purge(s.inbox.store, chosen, apply=apply, now=s.clock(), **options)


# -- the tests -----------------------------------------------------------------------------------


def expected_counts(s: Scenario) -> dict[str, Any]:
    """What the scenario holds of the complaints to be purged, read from the database."""
    ids = ids_of(s.inbox, list(s.old))
    with s.inbox.store.transaction() as conn:

        def number(query: Any) -> int:
            return int(conn.execute(query).scalar_one())

        raws = number(
            sa.select(sa.func.count()).select_from(messages).where(messages.c.complaint_id.in_(ids))
        )
        sent = number(
            sa.select(sa.func.count())
            .select_from(outbound_messages)
            .where(outbound_messages.c.complaint_id.in_(ids))
        )
        gone_keys = [k for person in PURGED for k in person.keys]
        people = number(
            sa.select(sa.func.count())
            .select_from(identities)
            .where(identities.c.key.in_(gone_keys) | identities.c.key.like("wa:%"))
        )
    statuses: dict[str, int] = {}
    for status in s.old.values():
        statuses[status] = statuses.get(status, 0) + 1
    return {"complaints": statuses, "raws": raws, "sent": sent, "identities": people}


def test_a_dry_run_changes_nothing_and_says_what_would_go(scenario: Scenario) -> None:
    """Without --apply the database is left byte for byte as it was, and the summary counts
    the complaints due by status (the one merged into a due one as ``merged``), their raw
    payloads, the attachment and its bytes, what was sent to citizens, the identities nothing
    else refers to, and the oldest and newest last update."""
    s = scenario
    before = dump(s.inbox)
    summary = run(s, apply=False)
    assert dump(s.inbox) == before
    expected = expected_counts(s)
    assert not summary.applied
    assert summary.complaints == expected["complaints"]
    assert (summary.raw_payloads, summary.messages) == (expected["raws"], expected["raws"])
    assert (summary.attachments, summary.attachment_bytes) == (2, len(ATTACHMENT))
    assert summary.outbound_messages == expected["sent"] == 2
    assert summary.identities == expected["identities"] > len(PURGED)
    assert summary.oldest is not None and summary.newest is not None
    assert LONG_AGO < summary.oldest < summary.newest < LONG_AGO + timedelta(days=30)
    assert summary.cutoffs == {s: datetime(2021, 11, 30, 2, 0, tzinfo=UTC) for s in summary.cutoffs}


def test_apply_removes_every_personal_value_and_keeps_the_complaints(scenario: Scenario) -> None:
    """After --apply no name, phone (in any written form), e-mail address, NIK, raw payload or
    attachment byte of a purged sender is anywhere in the database — any table, any column;
    the complaints, messages, events and payload rows are as many as before, the open and
    recent complaints are untouched, and the audit record verifies."""
    s = scenario
    tables = (complaints, messages, complaint_events, raw_messages, attachments)
    counts = {t.name: count(s.inbox, t) for t in tables}
    payloads = payloads_of(s.inbox, list(s.old))
    untouched = rows_of(s.inbox, s.kept)
    before = dump(s.inbox)
    for person in PURGED:
        assert where_found(before, person.email or person.phone or ""), person
    summary = run(s, apply=True)
    after = dump(s.inbox)
    assert summary.applied and summary.total == len(s.old)
    for person in PURGED:
        for value in person.values:
            assert where_found(after, value) == [], (person.name, value)
    gone = (NIK, ATTACHMENT, MEDIA_URL, "media.example", "Jl. Melati", "-6.2001234", "keluhan-budi")
    for value in (*gone, *payloads):
        assert where_found(after, value) == [], value
    assert {t.name: count(s.inbox, t) for t in tables} == counts
    assert rows_of(s.inbox, s.kept) == untouched
    for person in KEPT:
        assert where_found(after, person.phone or ""), person.name
    with s.inbox.store.transaction() as conn:
        keys = set(conn.execute(sa.select(identities.c.key)).scalars())
    assert keys == {key for person in KEPT for key in person.keys}  # Yanto's too
    assert summary.identities == len(before["identities"]) - len(keys)
    report = verified(s.inbox)
    assert report.intact, report.problems
    with s.inbox.store.transaction() as conn:  # the masked comment is recorded as a redaction
        kinds = set(conn.execute(sa.select(audit_chain.c.kind).distinct()).scalars())
    assert "redact" in kinds


def test_what_a_purged_complaint_keeps(scenario: Scenario) -> None:
    """The purged complaint keeps its ticket, status, channel, dates, agency and text with
    the personal data masked; its attachment keeps its type, size and hash under a neutral
    name; its location is rounded to about a kilometre; its raw payloads are marked purged
    and what was sent to the citizen keeps its kind and time."""
    s = scenario
    tickets = list(s.old)
    budi, dewi = tickets[0], tickets[3]
    before = s.inbox.complaint(budi)
    run(s, apply=True)
    after = s.inbox.complaint(budi)
    assert before is not None and after is not None
    for name in ("ticket", "status", "channel", "received_at", "updated_at", "agency"):
        assert getattr(after, name) == getattr(before, name)
    assert after.sender.name is None and after.sender.email is None
    assert after.subject == "Izin usaha B*** S*** ditolak"
    assert "NIK saya 31**************" in after.body
    assert [a.model_dump() for a in after.attachments] == [
        a.model_dump() | {"filename": "attachment-1.jpg"} for a in before.attachments
    ]
    place = s.inbox.complaint(dewi)
    assert place is not None and place.location is not None
    assert (place.location.lat, place.location.lon, place.location.address) == (-6.2, 106.82, None)
    with s.inbox.store.transaction() as conn:
        raws = conn.execute(
            sa.select(raw_messages.c.payload, raw_messages.c.purged_at, raw_messages.c.meta)
            .join(messages, messages.c.raw_id == raw_messages.c.id)
            .where(messages.c.complaint_id == after.id)
        ).all()
        sent = conn.execute(
            sa.select(outbound_messages.c.kind, outbound_messages.c.to_address)
            .where(outbound_messages.c.complaint_id == after.id)
            .order_by(outbound_messages.c.id)
        ).all()
    assert raws == [(b"", NOW, {})]
    assert [tuple(r) for r in sent] == [("acknowledgement", ""), ("reply", "")]


def test_a_second_run_finds_nothing(scenario: Scenario) -> None:
    """Once applied, a dry run and another --apply find nothing and change nothing."""
    s = scenario
    run(s, apply=True)
    before = dump(s.inbox)
    for apply in (False, True):
        again = run(s, apply=apply)
        assert (again.total, again.raw_payloads, again.identities) == (0, 0, 0)
    assert dump(s.inbox) == before


def purged_tickets(inbox: Inbox) -> list[str]:
    with inbox.store.transaction() as conn:
        query = sa.select(complaints.c.ticket).where(complaints.c.purged_at.is_not(None))
        return sorted(conn.execute(query).scalars())


def test_a_run_stopped_between_batches_leaves_whole_batches(scenario: Scenario) -> None:
    """Batches of four complaints, the run stopped after the first: those four and the one
    merged into one of them are purged whole, the rest untouched, the record intact; the next
    run purges the rest."""
    s = scenario
    tickets = list(s.old)

    def stop(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(s, apply=True, batch_size=4, progress=stop)
    assert purged_tickets(s.inbox) == sorted(tickets[:5])
    assert verified(s.inbox).intact
    rest = run(s, apply=True, batch_size=4)
    assert rest.total == len(tickets) - 5
    assert purged_tickets(s.inbox) == sorted(tickets)
    assert verified(s.inbox).intact


def test_a_batch_that_fails_midway_leaves_nothing_of_it(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second batch fails after most of its writes: its complaints keep every value (its
    raw payloads too), the first batch is purged, the record is intact; a run after that
    purges the rest."""
    s = scenario
    tickets = list(s.old)
    later = tickets[5:]
    payloads, rows = payloads_of(s.inbox, later), rows_of(s.inbox, later)
    batches: list[object] = []
    write_rest = retention._write_rest

    def failing(conn: sa.Connection, batch: object) -> None:
        batches.append(batch)
        write_rest(conn, batch)  # type: ignore[arg-type]
        if len(batches) == 2:
            raise RuntimeError("the process died here")

    monkeypatch.setattr(retention, "_write_rest", failing)
    with pytest.raises(RuntimeError, match="died"):
        run(s, apply=True, batch_size=4)
    assert purged_tickets(s.inbox) == sorted(tickets[:5])
    assert (payloads_of(s.inbox, later), rows_of(s.inbox, later)) == (payloads, rows)
    assert verified(s.inbox).intact
    monkeypatch.undo()
    assert run(s, apply=True).total == len(later)
    assert verified(s.inbox).intact


def test_the_policy_gives_an_age_per_status(scenario: Scenario) -> None:
    """[retention] with ``rejected = "30d"`` and ten years for the rest: only the complaint
    rejected in 2019 is due."""
    s = scenario
    config = parse_config({"retention": {"closed": "10y", "resolved": "120m", "rejected": "30d"}})
    summary = run(s, apply=False, policy=Policy.from_config(config.retention))
    assert summary.complaints == {"rejected": 1}
    assert summary.ages == {"closed": "10y", "resolved": "120m", "rejected": "30d"}


def test_a_replayed_payloads_original_goes_too(database_url: str, tmp_path: Path) -> None:
    """A payload that was quarantined and replayed with a corrected copy: purging its complaint
    clears the original kept in the quarantine entry as well."""
    clock = Clock(LONG_AGO)
    config = parse_config(
        {
            "database": {"url": database_url},
            "connectors": [{"name": "files", "type": "files", "path": str(tmp_path)}],
        }
    )
    phone = "+6281244445555"
    with Inbox(config, clock=clock) as inbox:
        broken = tmp_path / "broken.json"
        broken.write_text(f'{{"channel": "sms", "sender": {{"phone": "{phone}"}}, "text": "Jal')
        [filed] = list(inbox.ingest_files("files", [broken]))
        assert filed.result is not None and filed.result.outcome.value == "quarantined"
        assert filed.result.raw_id is not None
        fixed = {"channel": "sms", "external_id": "q", "sender": {"phone": phone}}
        fixed["text"] = "Jalan rusak parah di depan sekolah."
        [replayed] = inbox.replay([filed.result.raw_id], payload=json.dumps(fixed).encode())
        assert replayed.ticket
        inbox.queue.resolve(replayed.ticket, actor=TEAM)
        before = dump(inbox)
        assert where_found(before, phone) and where_found(before, '"Jal')
        summary = purge(inbox.store, Policy.uniform("5y"), apply=True, now=NOW)
        assert summary.total == 1
        with inbox.store.transaction() as conn:
            kept = conn.execute(sa.select(quarantine.c.original_payload)).scalars().all()
        assert kept == [None]
        after = dump(inbox)
        assert where_found(after, phone[3:]) == [] and where_found(after, '"Jal') == []


# -- ages ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "before"),
    [
        ("5y", datetime(2026, 11, 30, tzinfo=UTC), datetime(2021, 11, 30, tzinfo=UTC)),
        ("1y", datetime(2024, 2, 29, 8, tzinfo=UTC), datetime(2023, 2, 28, 8, tzinfo=UTC)),
        ("18m", datetime(2026, 3, 31, tzinfo=UTC), datetime(2024, 9, 30, tzinfo=UTC)),
        ("1M", datetime(2026, 1, 15, tzinfo=UTC), datetime(2025, 12, 15, tzinfo=UTC)),
        ("90d", datetime(2026, 3, 31, tzinfo=UTC), datetime(2025, 12, 31, tzinfo=UTC)),
        (" 2w ", datetime(2026, 1, 10, tzinfo=UTC), datetime(2025, 12, 27, tzinfo=UTC)),
    ],
)
def test_ages_count_years_and_months_by_the_calendar(
    text: str, now: datetime, before: datetime
) -> None:
    """``5y``, ``18m``, ``90d``, ``2w``: a year or month less lands on the same day, or the
    month's last when it has none (29 February less a year is 28 February)."""
    assert parse_age(text).before(now) == before


@pytest.mark.parametrize("text", ["", "5", "y", "5x", "0d", "-1y", "1.5y", "5 years", "201y"])
def test_a_bad_age_is_refused_with_what_an_age_looks_like(text: str) -> None:
    """Not a whole number of at least 1 with y, m, w or d (or past 200 years): a ValueError
    that says what an age looks like."""
    with pytest.raises(ValueError, match="not an age"):
        parse_age(text)


def test_ages_read_back_as_written() -> None:
    """An age keeps its text, lower-cased (what the summary prints)."""
    assert parse_age("18M") == Age(months=18, text="18m")
    assert Policy.uniform("2w").ages["closed"].text == "2w"


# -- the command -------------------------------------------------------------------------------


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "omnichannel.toml"
    path.write_text(f'[database]\nurl = "{url}"\n{extra}', encoding="utf-8")
    return path


@pytest.mark.parametrize("age", ["5x", "0y", "lima tahun"])
def test_a_bad_older_than_is_one_line_and_exit_2(tmp_path: Path, age: str) -> None:
    """``purge --older-than 5x``: one line naming the option and what an age looks like, exit
    status 2, and no database created."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'omni.db'}")
    result = CliRunner().invoke(main, ["--config", str(config), "purge", "--older-than", age])
    assert result.exit_code == 2
    [line] = result.output.splitlines()
    assert line.startswith("omnichannel: --older-than: not an age") and "5y, 18m" in line
    assert not (tmp_path / "omni.db").exists()


def test_a_bad_retention_section_is_a_configuration_error(tmp_path: Path) -> None:
    """``[retention] closed = "lama"`` and an unknown status: a configuration error by key,
    exit status 2."""
    extra = '[retention]\nclosed = "lama"\nopen = "1y"\n'
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'omni.db'}", extra)
    result = CliRunner().invoke(main, ["--config", str(config), "purge"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        "omnichannel: configuration: retention.closed: not an age: 'lama' (a whole number and "
        "y, m, w or d: 5y, 18m, 90d, 2w)",
        "omnichannel: configuration: retention.open: unknown key",
    ]


def test_a_dry_run_on_a_missing_database_creates_none(tmp_path: Path) -> None:
    """``purge`` without a database: one line, exit status 3, nothing created."""
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'nope' / 'omni.db'}")
    for args in (["purge"], ["purge", "--apply"]):
        result = CliRunner().invoke(main, ["--config", str(config), *args])
        assert result.exit_code == 3 and len(result.output.splitlines()) == 1
        assert "no database at" in result.output
    assert not (tmp_path / "nope").exists()


def test_the_command_says_what_it_would_do_then_does_it(scenario: Scenario, tmp_path: Path) -> None:
    """``purge --older-than 5y --format json`` prints the summary as one JSON object and
    changes nothing; ``--apply`` prints the same counts as done; a table for people."""
    s = scenario
    config = write_config(tmp_path, s.inbox.config.database.url.replace("\\", "/"))
    runner = CliRunner()
    args = ["--config", str(config), "purge", "--older-than", "5y", "--format", "json"]
    before = dump(s.inbox)
    dry = runner.invoke(main, args)
    assert dry.exit_code == 0, dry.output
    assert dump(s.inbox) == before
    planned = json.loads(dry.output)
    assert planned["applied"] is False
    assert planned["complaints"]["by_status"] == expected_counts(s)["complaints"]
    assert set(planned) >= {"raw_payloads", "attachments", "attachment_bytes", "identities"}
    done = runner.invoke(main, [*args, "--apply"])
    assert done.exit_code == 0, done.output
    applied = json.loads(done.output)
    assert applied["applied"] is True
    assert {k: v for k, v in applied.items() if k not in ("applied", "policy")} == {
        k: v for k, v in planned.items() if k not in ("applied", "policy")
    }
    table = runner.invoke(main, ["--config", str(config), "purge"])
    assert table.exit_code == 0, table.output
    assert table.output.startswith("dry run, nothing changed: --apply would purge 0 complaints")
    assert "closed last updated before" in table.output


def test_a_complaint_merged_later_into_a_purged_one_is_purged_with_it(scenario: Scenario) -> None:
    """A new complaint merged into a purged one (its messages join it, its last update is the
    merge's): not due until the purged one is due again; then its sender and messages go too,
    and the complaint purged before is not counted again."""
    s = scenario
    run(s, apply=True)
    budi = next(iter(s.old))
    gita = Person("Gita Permata", "+6281355554444")
    late = s.doc("sms-9", gita, "Izin usaha saya juga belum keluar, nomor surat 12/2026.")
    s.inbox.dedupe.merge(budi, late, actor=TEAM, reason="urusan yang sama")
    assert run(s, apply=True).total == 0
    later = purge(s.inbox.store, Policy.uniform("5y"), apply=True, now=NOW + timedelta(days=1830))
    # Gita's, and Wati's closed last week (due by then too); not Budi's again
    assert later.complaints == {"merged": 1, "closed": 1}
    assert later.messages == later.raw_payloads == 2
    after = dump(s.inbox)
    for value in gita.values:
        assert where_found(after, value) == [], value
    assert verified(s.inbox).intact


def test_nothing_purged_is_left_in_the_sqlite_files(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """On SQLite, with ``secure_delete`` off on the store's connection (as some builds have it
    by default): after --apply the database file and its write-ahead log hold none of the
    purged values as bytes — free pages and old page images included."""
    path = tmp_path / "omnichannel.db"
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{path}"},
            "connectors": [{"name": "files", "type": "files", "path": str(tmp_path / "drop")}],
            "smtp": {"host": smtp_server.host, "port": smtp_server.port, "from": OUR_MAIL},
        }
    )
    (tmp_path / "files").mkdir()
    clock = Clock(LONG_AGO)
    with Inbox(config, clock=clock) as inbox:
        s = Scenario(inbox, clock, tmp_path / "files")
        build(s)
        with inbox.store.transaction() as conn:
            conn.exec_driver_sql("PRAGMA secure_delete = OFF")
        run(s, apply=True)
        with inbox.store.transaction() as conn:
            assert conn.exec_driver_sql("PRAGMA secure_delete").scalar() == 0
        files = b"".join(p.read_bytes() for p in tmp_path.glob("omnichannel.db*"))
    for person in PURGED:
        for value in person.values:
            assert value.encode() not in files, (person.name, value)
    for value in (NIK.encode(), ATTACHMENT, MEDIA_URL.encode()):
        assert value not in files
    assert YANTO.name.encode() in files


def test_a_satisfaction_comment_is_masked_too(scenario: Scenario) -> None:
    """The comment of a purged complaint's satisfaction rating loses the phone and the
    sender's name it mentions; its score stays (the report still counts it)."""
    s = scenario
    budi = s.inbox.complaint(next(iter(s.old)))
    assert budi is not None and budi.sender.name
    comment = f"puas, terima kasih, {budi.sender.name} 0812-9876-5432"
    with s.inbox.store.transaction() as conn:
        message = conn.execute(
            sa.select(messages.c.id, messages.c.raw_id).where(messages.c.complaint_id == budi.id)
        ).first()
        assert message is not None
        conn.execute(
            sa.insert(ratings).values(
                complaint_id=budi.id,
                score=4,
                comment=comment,
                channel="sms",
                matched_by="ticket",
                message_id=message.id,
                raw_id=message.raw_id,
                received_at=s.clock(),
            )
        )
    run(s, apply=True)
    with s.inbox.store.transaction() as conn:
        score, kept = conn.execute(sa.select(ratings.c.score, ratings.c.comment)).one()
    assert score == 4 and "9876" not in kept and budi.sender.name.split()[0] not in kept


def test_a_purged_messages_provider_ids_are_sealed(scenario: Scenario) -> None:
    """A provider's message id can spell the sender (a wamid holds the phone, a Message-ID
    the address): a purged message keeps a digest of it and no thread ids."""
    s = scenario
    run(s, apply=True)
    old = [c.id for c in (s.inbox.complaint(t) for t in s.old) if c is not None]
    with s.inbox.store.transaction() as conn:
        rows = conn.execute(
            sa.select(messages.c.external_id, messages.c.message_id, messages.c.in_reply_to).where(
                messages.c.complaint_id.in_(old)
            )
        ).all()
    assert rows and all(r.external_id.startswith("sealed:") for r in rows)
    assert all(r.message_id is None and r.in_reply_to is None for r in rows)
