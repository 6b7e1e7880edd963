"""The tamper-evident record on both backends: what omnichannel writes verifies, and every
change made by hand in the database (rows edited, deleted, inserted; the chain itself edited,
cut or rewritten) is found and named by ``audit verify``."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from click.testing import CliRunner

from omnichannel import Inbox, audit, pipeline, queries
from omnichannel.cli import main
from omnichannel.config import default_config
from omnichannel.store import migrate
from omnichannel.store.tables import (
    attachments,
    audit_chain,
    complaint_events,
    complaints,
    messages,
    outbound_messages,
    outbox,
    quarantine,
    raw_messages,
)
from tests.helpers import T0, raw_json, run_threads

TEXTS = [
    "Jalan menuju kantor desa rusak parah dan berlubang sejak bulan lalu.",
    "Lampu penerangan jalan di depan pasar mati sudah dua minggu.",
    "Pelayanan KTP di kantor kecamatan sangat lambat, antrean sampai sore.",
    "Sampah menumpuk di pinggir sungai dan tidak pernah diangkut petugas.",
]


def file_several(inbox: Inbox) -> list[str]:
    """Complaints on four channels, a resend merged into its complaint, a related complaint
    clustered, and queue moves (claim, assign, comment, resolve) and an operator's merge; the
    tickets of the four, then of the related one (still open)."""
    channels = ["sms", "whatsapp", "web", "email"]
    results = inbox.receive_many(
        [
            raw_json(f"c-{n}", TEXTS[n], channel=channels[n], sender={"phone": f"0812000000{n}"})
            for n in range(4)
        ]
    )
    tickets = [r.ticket or "" for r in results]
    again = raw_json("c-again", TEXTS[0], channel="sms", sender={"phone": "08120000000"})
    related = raw_json("c-other", TEXTS[1], channel="sms", sender={"phone": "08129999999"})
    results = inbox.receive_many([again, related])
    assert [r.outcome.value for r in results] == ["merged", "new"]
    inbox.queue.claim("ani")
    inbox.queue.assign(tickets[1], actor="ani", agency="dishub")
    inbox.queue.comment(tickets[1], "sudah dicek ke lapangan", actor="ani")
    inbox.queue.resolve(tickets[1], actor="ani", note="lampu diganti")
    inbox.dedupe.merge(tickets[2], tickets[3], actor="budi", reason="satu lokasi")
    return [*tickets, results[-1].ticket or ""]


def verify(inbox: Inbox, *anchors: audit.Anchor) -> audit.Report:
    with audit.snapshot(inbox.store) as conn:
        return audit.verify(conn, anchors=anchors)


def head(inbox: Inbox) -> audit.Anchor:
    with audit.snapshot(inbox.store) as conn:
        return audit.anchor(conn)


@pytest.fixture
def by_hand(database_url: str) -> Iterator[sa.Engine]:
    """An engine of its own on the database under test: changes made outside omnichannel."""
    engine = sa.create_engine(database_url)
    yield engine
    engine.dispose()


def first_id(engine: sa.Engine, query: sa.Select[Any]) -> int:
    with engine.connect() as conn:
        return int(conn.execute(query.limit(1)).scalar_one())


def codes(report: audit.Report) -> list[str]:
    return [p.code for p in report.problems]


def test_what_omnichannel_writes_verifies(inbox: Inbox) -> None:
    """Filing on four channels, a merge, a cluster, queue moves and an operator's merge: every
    raw payload and complaint event has one entry, and the record is intact."""
    file_several(inbox)
    report = verify(inbox)
    assert report.intact, report.problems
    with inbox.store.transaction() as conn:
        kinds = set(conn.execute(sa.select(complaint_events.c.kind)).scalars())
        raws = conn.execute(sa.select(sa.func.count()).select_from(raw_messages)).scalar_one()
        events = conn.execute(sa.select(sa.func.count()).select_from(complaint_events)).scalar()
    assert {"merged", "clustered", "claimed", "assigned", "comment", "resolved"} <= kinds
    assert (report.raws, report.events) == (raws, events) and report.entries == raws + events
    assert report.head == head(inbox) and report.head.entry == report.entries


def test_an_edited_payload_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A raw payload rewritten in the database is named, with its entry."""
    file_several(inbox)
    raw_id = first_id(by_hand, sa.select(raw_messages.c.id).order_by(raw_messages.c.id.desc()))
    with by_hand.begin() as conn:
        conn.execute(
            sa.update(raw_messages).where(raw_messages.c.id == raw_id).values(payload=b"{}")
        )
    report = verify(inbox)
    assert codes(report) == ["changed"]
    assert report.problems[0].message.startswith(f"raw {raw_id}: payload changed since")


def test_an_edited_received_time_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A raw row's received time moved by hand (its payload untouched) is found too."""
    file_several(inbox)
    raw_id = first_id(by_hand, sa.select(raw_messages.c.id))
    with by_hand.begin() as conn:
        later = datetime(2026, 12, 1, tzinfo=UTC)
        conn.execute(
            sa.update(raw_messages).where(raw_messages.c.id == raw_id).values(received_at=later)
        )
    assert [p.message.split(":")[0] for p in verify(inbox).problems] == [f"raw {raw_id}"]


def _delete_raw(conn: sa.Connection, raw_id: int) -> None:
    """A raw row and what refers to it (foreign keys)."""
    message_ids = list(
        conn.execute(sa.select(messages.c.id).where(messages.c.raw_id == raw_id)).scalars()
    )
    outbox_ids = sa.select(outbox.c.id).where(outbox.c.message_id.in_(message_ids))
    conn.execute(sa.delete(outbound_messages).where(outbound_messages.c.outbox_id.in_(outbox_ids)))
    conn.execute(sa.delete(outbox).where(outbox.c.message_id.in_(message_ids)))
    conn.execute(sa.delete(attachments).where(attachments.c.message_id.in_(message_ids)))
    conn.execute(sa.delete(messages).where(messages.c.id.in_(message_ids)))
    conn.execute(sa.delete(quarantine).where(quarantine.c.raw_id == raw_id))
    conn.execute(sa.delete(raw_messages).where(raw_messages.c.id == raw_id))


def test_a_deleted_raw_payload_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A filed raw payload deleted with its message is named as recorded but missing."""
    file_several(inbox)
    raw_id = first_id(by_hand, sa.select(raw_messages.c.id).order_by(raw_messages.c.id.desc()))
    with by_hand.begin() as conn:
        _delete_raw(conn, raw_id)
    report = verify(inbox)
    assert codes(report) == ["missing"]
    assert report.problems[0].message == f"raw {raw_id} recorded but missing — deleted"


def test_an_inserted_raw_payload_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A raw row inserted outside omnichannel has no entry, and is named."""
    file_several(inbox)
    row = pipeline._raw_row(raw_json("forged", "Surat palsu."), "forged", T0)
    with by_hand.begin() as conn:
        raw_id = conn.execute(sa.insert(raw_messages).returning(raw_messages.c.id), row).scalar()
    report = verify(inbox)
    assert codes(report) == ["unrecorded"]
    assert report.problems[0].message == (
        f"raw {raw_id} is not in the record (inserted outside omnichannel?)"
    )


def test_edited_deleted_and_inserted_events_are_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A complaint event's note rewritten, another (a comment) deleted, and a third inserted
    by hand: each is named."""
    file_several(inbox)
    with by_hand.begin() as conn:
        rows = conn.execute(sa.select(complaint_events).order_by(complaint_events.c.id)).all()
        edited = rows[0]
        comment = next(r for r in rows if r.kind == "comment")
        conn.execute(
            sa.update(complaint_events)
            .where(complaint_events.c.id == edited.id)
            .values(note="tidak ada apa-apa")
        )
        conn.execute(sa.delete(complaint_events).where(complaint_events.c.id == comment.id))
        forged = {
            "complaint_id": edited.complaint_id,
            "at": T0,
            "actor": "budi",
            "kind": "comment",
            "from_status": None,
            "to_status": None,
            "note": "catatan palsu",
        }
        inserted = conn.execute(
            sa.insert(complaint_events).returning(complaint_events.c.id), forged
        ).scalar()
    messages_found = [p.message for p in verify(inbox).problems]
    assert messages_found == [
        f"event {edited.id} (complaint {edited.complaint_id}): changed since it was recorded",
        f"event {comment.id} recorded but missing — deleted",
        f"event {inserted} (complaint {edited.complaint_id}) is not in the record "
        "(inserted outside omnichannel?)",
    ]


def test_an_edited_entry_is_the_first_broken_link(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A chain entry whose hash is overwritten is named first, as edited, once."""
    file_several(inbox)
    with by_hand.begin() as conn:
        conn.execute(sa.update(audit_chain).where(audit_chain.c.id == 3).values(hash="f" * 64))
    report = verify(inbox)
    assert codes(report) == ["entry-edited"]
    assert report.problems[0].entry == 3
    assert report.problems[0].message == (
        "entry 3 (raw 3): hash does not match — the record was edited"
    )


def test_an_entry_edited_with_its_hash_computed_again_breaks_the_next_link(
    inbox: Inbox, by_hand: sa.Engine
) -> None:
    """An entry made to record other content, with its own hash made to match, no longer
    links to the entry after it."""
    file_several(inbox)
    with by_hand.begin() as conn:
        entry = conn.execute(sa.select(audit_chain).where(audit_chain.c.id == 2)).one()
        content = "e" * 64
        digest = audit.entry_hash(2, entry.prev_hash, entry.kind, entry.ref, content, entry.at)
        conn.execute(
            sa.update(audit_chain)
            .where(audit_chain.c.id == 2)
            .values(content_sha256=content, hash=digest)
        )
    report = verify(inbox)
    assert report.problems[0].code == "link" and report.problems[0].entry == 3
    assert report.problems[0].message.startswith("entry 3 (raw 3): does not follow entry 2")
    assert "changed" in codes(report)  # and raw 2 no longer matches what entry 2 now says


def test_a_deleted_entry_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A chain entry deleted leaves a gap, named first; what it recorded is then unrecorded."""
    file_several(inbox)
    with by_hand.begin() as conn:
        conn.execute(sa.delete(audit_chain).where(audit_chain.c.id == 4))
    report = verify(inbox)
    assert report.problems[0].message == (
        "entry 4 missing: entry 5 follows entry 3 — entries were deleted"
    )
    assert codes(report) == ["entry-missing", "unrecorded"]


def test_a_status_changed_by_hand_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A complaint's status set in the database, not by a recorded move, is named; so is one
    moved from open without any."""
    tickets = file_several(inbox)
    with by_hand.begin() as conn:
        for ticket in (tickets[1], tickets[4]):
            conn.execute(
                sa.update(complaints).where(complaints.c.ticket == ticket).values(status="closed")
            )
        ids = dict(conn.execute(sa.select(complaints.c.ticket, complaints.c.id)).all())
    found = [p.message for p in verify(inbox).problems]
    assert found == [
        f"complaint {ids[tickets[1]]} ({tickets[1]}): status closed, but its last recorded "
        "event says resolved",
        f"complaint {ids[tickets[4]]} ({tickets[4]}): status closed, but it has no recorded "
        "move from open",
    ]


def test_purged_at_without_a_recorded_purge_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A payload cleared and marked purged by hand is found: no purge is recorded for it."""
    file_several(inbox)
    raw_id = first_id(by_hand, sa.select(raw_messages.c.id))
    with by_hand.begin() as conn:
        conn.execute(
            sa.update(raw_messages)
            .where(raw_messages.c.id == raw_id)
            .values(payload=b"", purged_at=T0)
        )
    report = verify(inbox)
    assert codes(report) == ["changed", "purge"]
    assert report.problems[1].message == f"raw {raw_id}: marked purged, but no purge is recorded"


def test_a_recorded_purge_verifies_and_a_later_change_does_not(
    inbox: Inbox, by_hand: sa.Engine
) -> None:
    """A purge that records itself (``append_purges``) leaves the record intact; the purged
    row changed afterwards is found."""
    file_several(inbox)
    raw_id = first_id(by_hand, sa.select(raw_messages.c.id))
    with inbox.store.transaction() as conn:
        conn.execute(
            sa.update(raw_messages)
            .where(raw_messages.c.id == raw_id)
            .values(payload=b"", purged_at=T0)
        )
        audit.append_purges(conn, [raw_id])
    assert verify(inbox).intact
    with by_hand.begin() as conn:
        conn.execute(
            sa.update(raw_messages).where(raw_messages.c.id == raw_id).values(payload=b"x")
        )
    assert [p.message for p in verify(inbox).problems] == [
        f"raw {raw_id}: payload changed since its purge was recorded (or its connector, "
        "external id, received time or content type)"
    ]


def test_a_recorded_replacement_verifies(inbox: Inbox) -> None:
    """A quarantined payload replaced with ``append_replacements`` in its transaction is
    accepted with its new content."""
    file_several(inbox)
    with inbox.store.transaction() as conn:
        raw_id = conn.execute(sa.select(sa.func.min(raw_messages.c.id))).scalar_one()
        queries.replace_payload(conn, raw_id, b'{"text": "diganti"}', "application/json")
        audit.append_replacements(conn, [raw_id])
    assert verify(inbox).intact


def test_a_rewritten_chain_passes_its_links_but_not_an_anchor(
    inbox: Inbox, by_hand: sa.Engine
) -> None:
    """A payload edited and every hash from its entry on computed again: the chain links and
    matches its rows, but an anchor kept from before names the rewrite."""
    file_several(inbox)
    kept = head(inbox)
    with by_hand.begin() as conn:
        raw = conn.execute(sa.select(raw_messages).where(raw_messages.c.id == 2)).one()
        payload = b'{"channel": "sms", "external_id": "c-1", "text": "Semua baik-baik saja."}'
        conn.execute(
            sa.update(raw_messages)
            .where(raw_messages.c.id == 2)
            .values(payload=payload, sha256=audit._sha256(payload))
        )
        content = audit.raw_content(
            raw.connector,
            raw.external_id,
            raw.received_at,
            raw.content_type,
            audit._sha256(payload),
        )
        conn.execute(
            sa.update(audit_chain)
            .where(audit_chain.c.kind == "raw", audit_chain.c.ref == 2)
            .values(content_sha256=content)
        )
        prev = audit.ZERO_HASH
        for entry in conn.execute(sa.select(audit_chain).order_by(audit_chain.c.id)).all():
            digest = audit.entry_hash(
                entry.id, prev, entry.kind, entry.ref, entry.content_sha256, entry.at
            )
            conn.execute(
                sa.update(audit_chain)
                .where(audit_chain.c.id == entry.id)
                .values(prev_hash=prev, hash=digest)
            )
            prev = digest
    assert verify(inbox).intact  # without an anchor, a full rewrite goes unseen
    report = verify(inbox, kept)
    assert codes(report) == ["anchor"] and report.problems[0].entry == kept.entry
    assert f"rewritten at or before entry {kept.entry}" in report.problems[0].message


def test_an_anchor_past_the_end_names_a_cut_record(inbox: Inbox, by_hand: sa.Engine) -> None:
    """The last entries deleted with the rows they record: no link breaks, but an anchor of
    the old head is no longer in the record."""
    file_several(inbox)
    kept = head(inbox)
    with by_hand.begin() as conn:
        last = conn.execute(sa.select(audit_chain).where(audit_chain.c.id == kept.entry)).one()
        assert last.kind == "event"
        conn.execute(sa.delete(complaint_events).where(complaint_events.c.id == last.ref))
        conn.execute(sa.delete(audit_chain).where(audit_chain.c.id == kept.entry))
    problems = verify(inbox, kept).problems
    assert [p.message for p in problems if p.code == "anchor"] == [
        f"entry {kept.entry} of an anchor is not in the record (it ends at entry "
        f"{kept.entry - 1}) — entries were deleted"
    ]


REFUSE = {
    "sqlite": [
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_chain BEGIN SELECT RAISE(ABORT, 'no'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no'; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_chain FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
}
ALLOW = {
    "sqlite": ["DROP TRIGGER refuse"],
    "postgresql": ["DROP TRIGGER refuse ON audit_chain", "DROP FUNCTION refuse()"],
}


def test_an_entry_that_cannot_be_written_takes_its_rows_with_it(
    inbox: Inbox, by_hand: sa.Engine
) -> None:
    """When the chain cannot be appended to (here a trigger refuses it), the transaction fails
    whole: its raw payload is not stored, and the store works on."""
    inbox.receive_many([raw_json("first")])
    with by_hand.begin() as conn:
        for statement in REFUSE[by_hand.dialect.name]:
            conn.exec_driver_sql(statement)
    try:
        with pytest.raises(sa.exc.DBAPIError), inbox.store.transaction() as conn:
            pipeline.store_raw(conn, [raw_json("second")], T0)
    finally:
        with by_hand.begin() as conn:
            for statement in ALLOW[by_hand.dialect.name]:
                conn.exec_driver_sql(statement)
    inbox.receive_many([raw_json("third")])
    with by_hand.connect() as conn:
        stored = conn.execute(sa.select(raw_messages.c.external_id)).scalars().all()
    assert sorted(stored) == ["first", "third"] and verify(inbox).intact


def test_appends_inside_a_rolled_back_savepoint_are_dropped(inbox: Inbox) -> None:
    """An event inserted in a savepoint that is rolled back leaves no entry behind."""
    file_several(inbox)
    before = head(inbox).entry
    with inbox.store.transaction() as conn:
        cid = conn.execute(sa.select(sa.func.min(complaints.c.id))).scalar_one()
        row = {"complaint_id": cid, "at": T0, "actor": "x", "kind": "comment"}
        row |= {"from_status": None, "to_status": None, "note": "dibatalkan"}
        savepoint = conn.begin_nested()
        inserted = conn.execute(sa.insert(complaint_events).returning(complaint_events.c.id), row)
        audit.append_events(conn, [inserted.scalar_one()], [row])
        savepoint.rollback()
    assert head(inbox).entry == before and verify(inbox).intact


def test_rows_stored_before_the_record_existed_are_recorded_by_the_migration(
    inbox: Inbox,
) -> None:
    """A database at revision 0009 with complaints in it, upgraded: every raw payload and
    event gets an entry, and the record verifies."""
    file_several(inbox)
    engine = inbox.store.engine
    with engine.begin() as conn:
        config = migrate.alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    migrate.upgrade(engine)
    report = verify(inbox)
    assert report.intact and report.entries == report.raws + report.events > 10


@pytest.mark.postgres
def test_several_writers_on_postgresql_append_one_chain(postgres_url: str) -> None:
    """Four processes' worth of inboxes storing, filing and moving complaints at once: one
    entry per row, no two entries after the same one, and the record intact."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    boxes = [Inbox(default_config(url=postgres_url)) for _ in range(4)]
    errors: list[BaseException] = []

    def write(index: int) -> None:
        box = boxes[index]
        try:
            for batch in range(6):
                box.receive_many(
                    [
                        raw_json(
                            f"w{index}-{batch}-{n}",
                            f"{TEXTS[n % 4]} Laporan {index}-{batch}-{n}.",
                            sender={"phone": f"08131{index}{batch}{n:04d}"},
                        )
                        for n in range(5)
                    ]
                )
                item = box.queue.claim(f"member-{index}")
                if item is not None:
                    box.queue.resolve(item.ticket, actor=f"member-{index}")
        except BaseException as exc:
            errors.append(exc)

    threads = run_threads(write, [(i,) for i in range(4)])
    assert not [t for t in threads if t.is_alive()] and errors == []
    report = verify(boxes[0])
    with boxes[0].store.transaction() as conn:
        prevs = conn.execute(sa.select(audit_chain.c.prev_hash)).scalars().all()
        per_row = conn.execute(
            sa.select(
                audit_chain.c.kind, sa.func.count(), sa.func.count(audit_chain.c.ref.distinct())
            ).group_by(audit_chain.c.kind)
        ).all()
    for box in boxes:
        box.close()
    assert report.intact, report.problems
    assert report.raws == 120 and report.entries == report.raws + report.events
    assert len(prevs) == len(set(prevs))
    assert all(total == distinct for _, total, distinct in per_row)


# -- the commands ------------------------------------------------------------------------------


def _config(tmp_path: Path, url: str) -> str:
    path = tmp_path / "omnichannel.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    return str(path)


def test_audit_commands(inbox: Inbox, by_hand: sa.Engine, tmp_path: Path) -> None:
    """``audit anchor`` prints the head as one JSON line; ``audit verify`` exits 0 when the
    record is intact (also against that anchor, from a file), 1 with each problem when not,
    in text or JSON; a malformed anchor is a usage error."""
    file_several(inbox)
    config = _config(tmp_path, inbox.store.url.render_as_string(hide_password=False))
    runner = CliRunner()
    anchored = runner.invoke(main, ["--config", config, "audit", "anchor"])
    assert anchored.exit_code == 0, anchored.output
    kept = json.loads(anchored.output)
    assert kept == head(inbox).as_json() and set(kept) == {"entry", "hash", "at"}
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(f"2026-12-01 INFO omnichannel.audit: audit anchor {anchored.output}\n")
    intact = runner.invoke(main, ["--config", config, "audit", "verify", "--anchors", str(anchors)])
    assert intact.exit_code == 0 and intact.output.startswith("audit record intact: ")
    with by_hand.begin() as conn:
        conn.execute(sa.update(raw_messages).where(raw_messages.c.id == 1).values(payload=b"x"))
    broken = runner.invoke(main, ["--config", config, "audit", "verify"])
    assert broken.exit_code == 1
    assert broken.output.splitlines()[0].startswith("raw 1: payload changed since it was")
    assert "audit record NOT intact: 1 problem;" in broken.output
    as_json = runner.invoke(
        main,
        [
            "--config",
            config,
            "audit",
            "verify",
            "--format",
            "json",
            "--anchor",
            f"{kept['entry']}:{'a' * 64}",
        ],
    )
    document = json.loads(as_json.output)
    assert as_json.exit_code == 1 and document["intact"] is False
    assert [p["code"] for p in document["problems"]] == ["anchor", "changed"]
    bad = runner.invoke(main, ["--config", config, "audit", "verify", "--anchor", "12:zz"])
    assert bad.exit_code == 2 and "not an anchor" in bad.output


def test_audit_verify_never_creates_a_database(tmp_path: Path) -> None:
    """On a database that does not exist, ``audit verify`` fails (exit 3) and creates none."""
    missing = tmp_path / "none.db"
    config = _config(tmp_path, f"sqlite:///{missing}")
    result = CliRunner().invoke(main, ["--config", config, "audit", "verify"])
    assert result.exit_code == 3 and not missing.exists()


def test_audit_verify_on_a_database_without_the_record_says_so(sqlite_inbox: Inbox) -> None:
    """On a database at an older schema revision (no record yet), ``audit verify`` fails with
    exit 3 and says what to do, and leaves the database as it was."""
    engine = sqlite_inbox.store.engine
    with engine.begin() as conn:
        config = migrate.alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    url = sqlite_inbox.store.url.render_as_string(hide_password=False)
    config_path = _config(Path(str(sqlite_inbox.store.url.database)).parent, url)
    result = CliRunner().invoke(main, ["--config", config_path, "audit", "verify"])
    assert result.exit_code == 3
    newest = migrate.head_revision()
    assert f"schema revision 0009; the audit record needs {newest}" in result.output
    assert sqlite_inbox.store.revision() == "0009"


def test_the_daemon_logs_the_anchor(sqlite_inbox: Inbox, caplog: pytest.LogCaptureFixture) -> None:
    """``log_anchors`` (a thread of ``run``) logs the head at INFO when it starts."""
    file_several(sqlite_inbox)
    stop = threading.Event()
    stop.set()
    with caplog.at_level(logging.INFO, logger="omnichannel.audit"):
        audit.log_anchors(sqlite_inbox.store, stop)
    expected = json.dumps(head(sqlite_inbox).as_json())
    assert caplog.messages == [f"audit anchor {expected}"]


def test_a_report_lists_a_bounded_number_of_problems(
    sqlite_inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``MAX_PROBLEMS`` a report counts the problems it does not list."""
    monkeypatch.setattr(audit, "MAX_PROBLEMS", 2)
    with sqlite_inbox.store.transaction() as conn:
        rows = [pipeline._raw_row(raw_json(f"x{n}"), f"x{n}", T0) for n in range(5)]
        conn.execute(sa.insert(raw_messages), rows)  # by hand: not recorded
    report = verify(sqlite_inbox)
    assert len(report.problems) == 2 and report.unlisted == 3
    assert report.as_json()["unlisted"] == 3


def _documented(tag: bytes, *fields: object) -> str:
    """The encoding as docs/audit.md states it, written apart from the code it documents."""
    data = tag
    for field in fields:
        if field is None:
            data += b"\xff\xff\xff\xff"
            continue
        if isinstance(field, datetime):
            field = field.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
        encoded = str(field).encode("utf-8")
        data += len(encoded).to_bytes(4, "big") + encoded
    return hashlib.sha256(data).hexdigest()


def test_the_record_follows_its_documented_encoding(sqlite_inbox: Inbox) -> None:
    """Every hash of a filed database can be computed again from docs/audit.md alone."""
    file_several(sqlite_inbox)
    with sqlite_inbox.store.transaction() as conn:
        entries = conn.execute(sa.select(audit_chain).order_by(audit_chain.c.id)).all()
        raws = {r.id: r for r in conn.execute(sa.select(raw_messages))}
        events = {e.id: e for e in conn.execute(sa.select(complaint_events))}
    prev = "0" * 64
    for entry in entries:
        fields = (entry.id, prev, entry.kind, entry.ref, entry.content_sha256, entry.at)
        assert entry.prev_hash == prev and entry.hash == _documented(
            b"omnichannel-audit-1", *fields
        )
        if entry.kind == "raw":
            raw = raws[entry.ref]
            payload = hashlib.sha256(raw.payload).hexdigest()
            fields = (raw.connector, raw.external_id, raw.received_at, raw.content_type, payload)
            assert entry.content_sha256 == _documented(b"omnichannel-raw-1", *fields)
        else:
            e = events[entry.ref]
            fields = (e.complaint_id, e.kind, e.actor, e.from_status, e.to_status, e.note, e.at)
            assert entry.content_sha256 == _documented(b"omnichannel-event-1", *fields)
        prev = entry.hash
    assert len(entries) == len(raws) + len(events)


def test_a_complaint_deleted_by_hand_is_found(inbox: Inbox, by_hand: sa.Engine) -> None:
    """A complaint deleted with its messages, queue item and outbox rows (its payloads and
    events left alone) is named: its filed payload lost its message, its ticket its holder."""
    from omnichannel.store.tables import messages, metadata

    tickets = file_several(inbox)
    with by_hand.begin() as conn:
        cid = conn.execute(
            sa.select(complaints.c.id).where(complaints.c.ticket == tickets[0])
        ).scalar_one()
        for table in reversed(metadata.sorted_tables):  # what refers to it, children first
            if "complaint_id" in table.c and table.name not in ("messages", "raw_messages"):
                conn.execute(sa.delete(table).where(table.c.complaint_id == cid))
        raws = list(
            conn.execute(
                sa.select(messages.c.raw_id).where(messages.c.complaint_id == cid)
            ).scalars()
        )
        conn.execute(sa.delete(messages).where(messages.c.complaint_id == cid))
        conn.execute(
            sa.update(raw_messages).where(raw_messages.c.id.in_(raws)).values(complaint_id=None)
        )
        conn.execute(sa.delete(complaints).where(complaints.c.id == cid))
    found = [p.message for p in verify(inbox).problems if p.code == "missing"]
    assert f"raw {raws[0]} was filed (new), but its message is gone" in found
    assert any(m.startswith("tickets ADU-") and "1 complaint(s) deleted" in m for m in found)
