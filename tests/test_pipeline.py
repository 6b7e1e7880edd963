"""The raw-first pipeline on both backends: outcomes, dedupe levels, quarantine, transactions."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import sqlalchemy as sa

from omnichannel import Inbox, Outcome, RawMessage
from omnichannel.connector import Connector
from omnichannel.errors import DecodeError, StorageUnavailable, UnknownConnector
from omnichannel.schema import InboundMessage
from omnichannel.store.tables import (
    complaints,
    cursors,
    messages,
    outbox,
    queue_items,
    raw_messages,
)
from tests.helpers import T0, raw_json


def count(inbox: Inbox, table: sa.Table) -> int:
    with inbox.store.transaction() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_new_then_duplicate(inbox: Inbox) -> None:
    """The same raw message twice is one complaint: `new`, then `duplicate` with the same ticket."""
    first = inbox.receive(raw_json("sms-1"))
    second = inbox.receive(raw_json("sms-1"))
    assert first.outcome is Outcome.NEW
    assert first.ticket is not None and first.ticket.startswith("ADU-2026-")
    assert second.outcome is Outcome.DUPLICATE
    assert (second.complaint_id, second.ticket) == (first.complaint_id, first.ticket)
    assert count(inbox, complaints) == 1
    assert count(inbox, raw_messages) == 1


def test_new_complaint_writes_message_queue_item_and_acknowledgement(inbox: Inbox) -> None:
    """A new complaint gets its message, one queue item and one acknowledgement outbox row,
    addressed to the citizen's E.164 number through the connector that sends SMS."""
    inbox.settings = dataclasses.replace(inbox.settings, sms_via="gateway")
    result = inbox.receive(raw_json("sms-2", sender={"phone": "0812-3456-7890"}))
    with inbox.store.transaction() as conn:
        queued = conn.execute(sa.select(queue_items)).mappings().one()
        ack = conn.execute(sa.select(outbox)).mappings().one()
        message = conn.execute(sa.select(messages)).mappings().one()
        reply = conn.execute(sa.select(complaints.c.reply_to, complaints.c.reply_via)).one()
    assert queued["complaint_id"] == result.complaint_id and queued["status"] == "pending"
    assert ack["kind"] == "acknowledgement" and ack["target"] == "+6281234567890"
    assert ack["payload"] == {"ticket": result.ticket, "via": "gateway"}
    assert tuple(reply) == ("+6281234567890", "gateway")
    assert message["outcome"] == "new" and message["complaint_id"] == result.complaint_id


def test_no_acknowledgement_is_queued_when_nothing_can_send_it(inbox: Inbox) -> None:
    """An SMS that came in through a connector that cannot answer, with no ``sms_connector``,
    is filed and queued without an acknowledgement row (one that could never be sent)."""
    result = inbox.receive(raw_json("sms-3", sender={"phone": "0812-3456-7890"}))
    assert result.outcome is Outcome.NEW
    assert count(inbox, outbox) == 0 and count(inbox, queue_items) == 1


def test_batch_form_files_each_message_once(inbox: Inbox) -> None:
    """receive_many gives one result per input in order; a repeat in the batch is a duplicate."""
    raws = [
        raw_json(f"b-{i}", text=f"Keluhan nomor {i}: jalan rusak di desa {i}.") for i in range(5)
    ]
    results = inbox.receive_many([*raws, raws[2]])
    assert [r.outcome for r in results] == [Outcome.NEW] * 5 + [Outcome.DUPLICATE]
    assert results[5].complaint_id == results[2].complaint_id
    tickets = [r.ticket for r in results[:5]]
    assert len(set(tickets)) == 5
    assert sorted(tickets) == [f"ADU-2026-{n:06d}" for n in range(1, 6)]


def test_corrupt_payload_is_quarantined_and_batch_continues(inbox: Inbox) -> None:
    """An undecodable payload is stored and quarantined; the rest of the batch is filed."""
    bad = RawMessage(
        connector="files",
        external_id="broken",
        received_at=T0,
        content_type="application/json",
        payload=b'{"channel": "sms", "text": ',
    )
    results = inbox.receive_many([raw_json("ok-1"), bad, raw_json("ok-2", text="Lain lagi.")])
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.QUARANTINED, Outcome.NEW]
    assert results[1].error and "JSON" in results[1].error
    listed = inbox.quarantined()
    assert [q["external_id"] for q in listed] == ["broken"]
    with inbox.store.transaction() as conn:
        status = conn.execute(
            sa.select(raw_messages.c.status).where(raw_messages.c.external_id == "broken")
        ).scalar_one()
    assert status == "quarantined"


def test_replay_with_corrected_payload_creates_complaint(inbox: Inbox) -> None:
    """Replaying a quarantined message with a corrected payload files it; the original is kept."""
    bad = RawMessage(
        connector="files",
        external_id="fixme",
        received_at=T0,
        content_type="application/json",
        payload=b'{"channel": "sms"',
    )
    result = inbox.receive(bad)
    assert result.outcome is Outcome.QUARANTINED
    fixed = raw_json("fixme", text="Sudah diperbaiki: lampu jalan mati.").payload
    replayed = inbox.replay([result.raw_id or 0], payload=fixed)
    assert [r.outcome for r in replayed] == [Outcome.NEW]
    assert inbox.quarantined() == []
    assert inbox.quarantined(include_resolved=True)[0]["resolved_at"] is not None
    assert inbox.receive(bad).outcome is Outcome.DUPLICATE


class FlakyDecoder(Connector):
    """Fails to decode until `fixed` is set: a decoder bug and its fix."""

    type = "flaky"
    fixed = False

    def decode(self, raw: RawMessage) -> InboundMessage:
        if not self.fixed:
            raise DecodeError("decoder bug")
        return InboundMessage(channel="web", external_id=raw.external_id, text=raw.payload.decode())


def test_replay_after_decoder_fix(inbox: Inbox) -> None:
    """A message quarantined by a decoder bug becomes a complaint when replayed after the fix."""
    flaky = FlakyDecoder("flaky")
    inbox.add_connector(flaky)
    raw = RawMessage(
        connector="flaky",
        external_id="f-1",
        received_at=T0,
        content_type="text/plain",
        payload=b"Pelayanan lambat sekali.",
    )
    assert inbox.receive(raw).outcome is Outcome.QUARANTINED
    assert inbox.replay().__len__() == 1  # still broken: quarantined again
    assert inbox.quarantined()[0]["attempts"] == 2
    flaky.fixed = True
    assert [r.outcome for r in inbox.replay()] == [Outcome.NEW]
    assert inbox.replay() == []


def test_unexpected_decoder_exception_quarantines(inbox: Inbox) -> None:
    """Even a decoder crash (not a DecodeError) quarantines the input instead of losing it."""

    class Crashing(Connector):
        def decode(self, raw: RawMessage) -> InboundMessage:
            raise KeyError("boom")

    inbox.add_connector(Crashing("crash"))
    raw = RawMessage(
        connector="crash",
        external_id="c-1",
        received_at=T0,
        content_type="text/plain",
        payload=b"x",
    )
    result = inbox.receive(raw)
    assert result.outcome is Outcome.QUARANTINED
    assert inbox.quarantined()[0]["error_type"] == "KeyError"


def test_unknown_connector_is_refused_before_storage(inbox: Inbox) -> None:
    """A raw message for a connector nobody configured raises and stores nothing."""
    with pytest.raises(UnknownConnector, match="did you mean 'files'"):
        inbox.receive(raw_json("x", connector="filse"))
    assert count(inbox, raw_messages) == 0


@pytest.mark.parametrize(
    "flags", [{"auto_reply": True}, {"bounce": True}, {"status_callback": True}]
)
def test_automatic_messages_are_ignored(inbox: Inbox, flags: dict[str, bool]) -> None:
    """Auto-replies, bounces and status callbacks are stored as messages but are no complaint."""
    result = inbox.receive(raw_json("auto", flags=flags))
    assert result.outcome is Outcome.IGNORED and result.complaint_id is None
    assert count(inbox, messages) == 1 and count(inbox, complaints) == 0
    assert count(inbox, outbox) == 0


def test_empty_message_is_ignored(inbox: Inbox) -> None:
    """A message with only whitespace, no attachment and no location is `ignored`."""
    result = inbox.receive(raw_json("empty", text=None, html="<p>  </p>"))
    assert result.outcome is Outcome.IGNORED


def test_reply_threads_by_in_reply_to(inbox: Inbox) -> None:
    """A message whose in_reply_to names a stored message-id is merged into its complaint."""
    first = inbox.receive(
        raw_json("m1", channel="email", headers={"message-id": "<a@warga.example.id>"})
    )
    reply = inbox.receive(
        raw_json(
            "m2",
            channel="email",
            text="Tambahan: sudah 2 minggu.",
            in_reply_to="<a@warga.example.id>",
        )
    )
    assert reply.outcome is Outcome.MERGED
    assert reply.complaint_id == first.complaint_id
    complaint = inbox.complaint(first.ticket or "")
    assert complaint is not None and [m.outcome for m in complaint.messages] == [
        Outcome.NEW,
        Outcome.MERGED,
    ]


def test_reply_threads_by_ticket_in_subject(inbox: Inbox) -> None:
    """A message whose subject carries an existing ticket number is merged into that complaint."""
    first = inbox.receive(raw_json("t1"))
    reply = inbox.receive(
        raw_json("t2", text="Bagaimana kelanjutannya?", subject=f"Re: [{first.ticket}] Jalan rusak")
    )
    assert (reply.outcome, reply.complaint_id) == (Outcome.MERGED, first.complaint_id)


def test_unknown_ticket_in_subject_is_a_new_complaint(inbox: Inbox) -> None:
    """A ticket number that does not exist does not merge anything."""
    inbox.receive(raw_json("t1"))
    other = inbox.receive(
        raw_json("t2", text="Hal lain sama sekali.", subject="Re: [ADU-2026-999999] Jalan rusak")
    )
    assert other.outcome is Outcome.NEW


def test_same_sender_same_text_across_channels_is_merged(inbox: Inbox) -> None:
    """The same phone sending the same complaint by SMS and WhatsApp is merged (level 3)."""
    text = "Mohon bantuan, izin usaha saya (NIB) belum terbit!"
    first = inbox.receive(raw_json("s1", text=text, sender={"phone": "0812-3456-7890"}))
    again = inbox.receive(
        raw_json(
            "w1",
            text=text.upper() + "  ",
            channel="whatsapp",
            sender={"phone": "+62 812 3456 7890"},
            received_at=T0 + timedelta(days=1),
        )
    )
    assert (again.outcome, again.complaint_id) == (Outcome.MERGED, first.complaint_id)


def test_same_text_from_another_sender_is_not_merged(inbox: Inbox) -> None:
    """Different citizens with the same words get separate complaints (precision first)."""
    text = "Jalan di depan kantor camat berlubang."
    a = inbox.receive(raw_json("a", text=text, sender={"phone": "081234567890"}))
    b = inbox.receive(raw_json("b", text=text, sender={"phone": "081298765432"}))
    assert b.outcome is Outcome.NEW and b.complaint_id != a.complaint_id


def test_same_sender_outside_window_is_new(inbox: Inbox) -> None:
    """The same words from the same sender long after the window are a new complaint."""
    text = "Lampu jalan mati lagi."
    inbox.receive(raw_json("o1", text=text, sender={"email": "budi@example.id"}))
    later = inbox.receive(
        raw_json(
            "o2",
            text=text,
            sender={"email": "BUDI@example.id"},
            received_at=T0 + timedelta(days=60),
        )
    )
    assert later.outcome is Outcome.NEW


def test_anonymous_complaint_exports_no_identity_and_gets_no_acknowledgement(inbox: Inbox) -> None:
    """An anonymous complaint keeps no identity in its export and is not acknowledged."""
    result = inbox.receive(
        raw_json("anon", anonymous=True, sender={"phone": "081234567890", "name": "Budi"})
    )
    complaint = inbox.complaint(result.complaint_id or 0)
    assert complaint is not None and complaint.anonymous
    assert complaint.sender.model_dump() == {
        "name": None,
        "email": None,
        "phone": None,
        "handle": None,
    }
    assert count(inbox, outbox) == 0


def test_cursor_is_saved_with_the_messages(inbox: Inbox) -> None:
    """A cursor passed with a batch is stored in the same transaction as its messages."""
    inbox.receive_many([raw_json("c1")], cursor=("files", {"uid": 41}))
    inbox.receive_many([raw_json("c2", text="Yang kedua.")], cursor=("files", {"uid": 42}))
    with inbox.store.transaction() as conn:
        value = conn.execute(sa.select(cursors.c.value)).scalar_one()
    assert value == {"uid": 42}


def test_crash_between_store_and_filing_is_recovered(inbox: Inbox) -> None:
    """A raw message stored but never filed (crash) is filed by the next delivery, once."""
    from omnichannel import pipeline

    raw = raw_json("crash-1")
    with inbox.store.transaction() as conn:
        pipeline.store_raw(conn, [raw], T0)
    assert count(inbox, complaints) == 0
    assert inbox.receive(raw).outcome is Outcome.NEW
    assert inbox.receive(raw).outcome is Outcome.DUPLICATE
    assert count(inbox, complaints) == 1


def test_a_message_that_breaks_filing_is_quarantined_and_replayable(
    inbox: Inbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Should filing fail for one message, whatever the reason, the others of its batch are
    filed, it is quarantined with its error (its raw payload kept), and a replay after the fix
    files it."""
    from omnichannel import filing

    real = filing.file_messages

    def broken(conn: sa.Connection, items: list[tuple[int, object]], *a: object) -> object:
        if any("bug" in getattr(m, "external_id", "") for _, m in items):
            raise RuntimeError("a bug in filing")
        return real(conn, items, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(filing, "file_messages", broken)
    batch = [raw_json(f"ok-{i}", text=f"Keluhan nomor {i}.") for i in range(5)]
    batch.insert(2, raw_json("bug-1"))
    results = inbox.receive_many(batch)
    expected = [Outcome.NEW] * 6
    expected[2] = Outcome.QUARANTINED
    assert [r.outcome for r in results] == expected
    assert results[2].error == "a bug in filing"
    assert count(inbox, raw_messages) == 6
    assert count(inbox, complaints) == 5
    monkeypatch.setattr(filing, "file_messages", real)
    [replayed] = inbox.replay([results[2].raw_id or 0])
    assert replayed.outcome is Outcome.NEW
    assert inbox.receive(raw_json("bug-1")).outcome is Outcome.DUPLICATE


def test_storing_and_filing_are_two_transactions(inbox: Inbox) -> None:
    """A batch is stored in one transaction (all a connector waits for), filed in another,
    and its results read in a third."""
    begins: list[object] = []

    def began(connection: object) -> None:
        begins.append(connection)

    sa.event.listen(inbox.store.engine, "begin", began)
    try:
        results = inbox.receive_many([raw_json(f"one-{i}", text=f"Teks {i}.") for i in range(3)])
    finally:
        sa.event.remove(inbox.store.engine, "begin", began)
    assert [r.outcome for r in results] == [Outcome.NEW] * 3
    assert len(begins) == 3


def test_storage_unavailable_is_reported(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A store that cannot be opened raises StorageUnavailable, not a driver error."""
    from omnichannel.config import default_config

    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    with pytest.raises(StorageUnavailable, match="storage unavailable"):
        Inbox(default_config(url=f"sqlite:///{blocked}/sub/x.db"))


def test_bounce_is_ignored_but_linked_to_the_complaint_it_bounced_from(inbox: Inbox) -> None:
    """A delivery report naming a stored message is `ignored` and attached to its complaint."""
    first = inbox.receive(
        raw_json("orig", channel="email", headers={"message-id": "<orig@example.id>"})
    )
    bounce = inbox.receive(
        raw_json(
            "dsn",
            channel="email",
            text="Delivery failed",
            in_reply_to="<orig@example.id>",
            flags={"bounce": True},
        )
    )
    assert bounce.outcome is Outcome.IGNORED and bounce.complaint_id == first.complaint_id
    complaint = inbox.complaint(first.complaint_id or 0)
    assert complaint is not None and [m.outcome for m in complaint.messages] == [
        Outcome.NEW,
        Outcome.IGNORED,
    ]


def test_reply_in_the_same_batch_is_merged(inbox: Inbox) -> None:
    """A reply filed in the same batch as the mail it answers joins that mail's complaint."""
    results = inbox.receive_many(
        [
            raw_json("a", channel="email", headers={"message-id": "<a@x.id>"}),
            raw_json("b", channel="email", text="Tambahan info.", in_reply_to="<a@x.id>"),
        ]
    )
    assert [r.outcome for r in results] == [Outcome.NEW, Outcome.MERGED]
    assert results[0].complaint_id == results[1].complaint_id


def test_complaint_subject_is_shown_without_reply_prefixes(inbox: Inbox) -> None:
    """A complaint opened by a forwarded or replied mail shows its subject without Fwd:/Balas:."""
    result = inbox.receive(raw_json("fw", channel="email", subject="Fwd: Balas: Izin PBG macet"))
    complaint = inbox.complaint(result.complaint_id or 0)
    assert complaint is not None and complaint.subject == "Izin PBG macet"


@pytest.mark.parametrize(
    "batch, stored_before",
    [
        (["m-3", "m-1", "m-2"], []),  # all new, not in key order
        (["m-3", "m-1", "m-3"], []),  # the same message twice in one batch
        (["m-3", "m-1", "m-2"], ["m-1"]),  # one stored before
    ],
)
def test_each_raw_message_gets_the_id_of_its_own_row(
    inbox: Inbox, batch: list[str], stored_before: list[str]
) -> None:
    """``store_raw`` returns, in the order given, the raw row id under which each message is
    stored, and which of them this call inserted (the first of a repeat only)."""
    from datetime import UTC, datetime

    from omnichannel import pipeline

    now = datetime(2026, 11, 30, tzinfo=UTC)
    if stored_before:
        inbox.receive_many([raw_json(e) for e in stored_before])
    with inbox.store.transaction() as conn:
        stored = pipeline.store_raw(conn, [raw_json(e) for e in batch], now)
        rows = dict(conn.execute(sa.select(raw_messages.c.external_id, raw_messages.c.id)).all())
    assert stored.ids == [rows[e] for e in batch]
    firsts = [e not in batch[:i] for i, e in enumerate(batch)]
    assert stored.new == [f and e not in stored_before for e, f in zip(batch, firsts, strict=True)]
