"""Who is answered and how (reply routes), follow-up deadlines per category, ``sent_at`` in
exports, the ``outbox`` and ``queue reply`` commands, and threading a citizen's answer back."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel import Inbox
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.errors import Undeliverable
from omnichannel.filing import reply_route
from omnichannel.outbound import Outbound
from omnichannel.pipeline import Settings
from omnichannel.queue import QueueError
from omnichannel.schema import NormalizedMessage, Sender
from omnichannel.store.tables import outbox
from tests.helpers import T0, raw_json

SMTP = Settings(smtp=True, senders=frozenset({"twilio"}), sms_via="gammu")
NOTHING = Settings()


def message(channel: str = "email", connector: str = "mail", **fields: Any) -> NormalizedMessage:
    sender = Sender(**fields.pop("sender", {"email": "warga@example.id"}))
    return NormalizedMessage(
        channel=channel,
        connector=connector,
        external_id="x-1",
        received_at=T0,
        sender=sender,
        body="Jalan rusak.",
        **fields,
    )


@pytest.mark.parametrize(
    ("made", "settings", "route"),
    [
        (message(), SMTP, ("warga@example.id", "smtp")),
        (message(), NOTHING, None),  # no [smtp]: nothing could send it
        (message(sender={"email": "noreply@bank.example.id"}), SMTP, None),
        (message(sender={"email": "MAILER-DAEMON@mx.example.id"}), SMTP, None),
        (message(flags={"auto_reply": True}), SMTP, None),
        (message(flags={"bounce": True}), SMTP, None),
        (message(flags={"auto_reply_suspect": True}), SMTP, None),
        (message(anonymous=True), SMTP, None),
        (
            message("web", "portal", anonymous=True, flags={"contact_ok": True}),
            SMTP,
            ("warga@example.id", "smtp"),
        ),
        (
            message("sms", "twilio", sender={"phone": "+6281234567890"}),
            SMTP,
            ("+6281234567890", "twilio"),
        ),
        (message("sms", "twilio", sender={"phone": "TELKOMSEL"}), SMTP, None),
        (message("sms", "twilio", sender={"phone": "+62123"}), SMTP, None),  # a short code
        (
            message("sms", "files", sender={"phone": "+6281234567890"}),
            SMTP,
            ("+6281234567890", "gammu"),
        ),
        (message("whatsapp", "files", sender={"phone": "+6281234567890"}), SMTP, None),
        (
            message("web", "portal", sender={"phone": "+6281234567890"}),
            SMTP,
            ("+6281234567890", "gammu"),
        ),
        (message("web", "portal", sender={"phone": "+6281234567890"}), NOTHING, None),
    ],
)
def test_reply_routes(
    made: NormalizedMessage, settings: Settings, route: tuple[str, str] | None
) -> None:
    """A complaint is answered only where something can send and someone reads: never an
    automatic sender, a no-reply mailbox, an operator name or a short code, never an anonymous
    citizen who did not ask for it; web answers by e-mail, else SMS through ``sms_connector``."""
    assert reply_route(made, settings) == route


def test_a_web_form_can_ask_an_anonymous_complaint_to_be_answered() -> None:
    """``contact_ok`` on the portal form sets the flag that lets an anonymous complaint be
    answered at the contact given; without it the flag is absent."""
    from normalizer.web import PORTAL_MAPPING, map_payload

    now = datetime(2026, 12, 7, tzinfo=UTC)
    base = {"id": "w-1", "message": "Pungli di loket.", "email": "a@b.id", "anonymous": "ya"}
    options: dict[str, Any] = {
        "channel": "web",
        "external_id": "w-1",
        "received_at": now,
        "timezone": "Asia/Makassar",
        "portal": True,
    }
    asked = map_payload({**base, "contact_ok": "ya"}, PORTAL_MAPPING, **options)
    silent = map_payload(base, PORTAL_MAPPING, **options)
    assert asked.anonymous and asked.flags.get("contact_ok") is True
    assert silent.anonymous and "contact_ok" not in silent.flags


class Recording:
    """A connector-like sender that records what it is asked to send."""

    def __init__(self) -> None:
        self.sent: list[Outbound] = []

    def send(self, outbound: Outbound) -> str | None:
        self.sent.append(outbound)
        return f"SM{len(self.sent):032d}"


def sms_inbox(url: str, **config: Any) -> tuple[Inbox, Recording]:
    """An inbox whose SMS are answered through a recording sender called ``gateway``."""
    inbox = Inbox(parse_config({"database": {"url": url}, **config}))
    recording = Recording()
    inbox.settings = dataclasses.replace(inbox.settings, sms_via="gateway")
    inbox.sender = lambda via: recording if via == "gateway" else Inbox.sender(inbox, via)  # type: ignore[method-assign]
    return inbox, recording


def test_a_team_reply_reaches_the_citizen_and_their_sms_answer_joins_the_complaint(
    database_url: str,
) -> None:
    """``queue reply`` sends the text with the ticket, records it as an outbound message of
    the complaint; the citizen's next SMS (another text) is merged into that complaint, while
    the same number writing before any reply made a new one."""
    inbox, recording = sms_inbox(database_url)
    with inbox:
        phone = {"phone": "081234567890"}
        first = inbox.receive(raw_json("s-1", sender=phone, text="Lampu jalan mati."))
        other = inbox.receive(
            raw_json("s-2", sender=phone, text="Ada pungli di kantor desa.", received_at=T0)
        )
        assert other.outcome.value == "new"  # no reply yet: a new matter
        inbox.outbox.drain()
        assert [o.kind for o in recording.sent] == ["acknowledgement", "acknowledgement"]
        inbox.queue.reply(first.complaint_id or 0, "Sudah kami teruskan ke PLN.", actor="ani")
        inbox.outbox.drain()
        reply = recording.sent[-1]
        assert reply.kind == "reply" and reply.to == "+6281234567890" and not reply.automatic
        assert reply.text.startswith("Sudah kami teruskan ke PLN.") and first.ticket in reply.text
        answer = inbox.receive(
            raw_json(
                "s-3",
                sender=phone,
                text="Terima kasih, kapan diperbaiki?",
                received_at=datetime.now(UTC),
            )
        )
        complaint = inbox.complaint(first.complaint_id or 0)
    assert answer.outcome.value == "merged" and answer.complaint_id == first.complaint_id
    assert complaint is not None
    assert [o.kind for o in complaint.outbound] == ["acknowledgement", "reply"]
    assert [m.external_id for m in complaint.messages] == ["s-1", "s-3"]


def test_a_ticket_in_an_sms_joins_that_complaint(database_url: str) -> None:
    """An SMS quoting the tracking number (any case) joins that complaint."""
    with Inbox(parse_config({"database": {"url": database_url}})) as inbox:
        first = inbox.receive(raw_json("t-1", text="Jalan berlubang."))
        ticket = first.ticket or ""
        later = inbox.receive(raw_json("t-2", text=f"{ticket.lower()} bagaimana perkembangannya?"))
    assert later.outcome.value == "merged" and later.complaint_id == first.complaint_id


def test_resolving_and_rejecting_notify_the_citizen(database_url: str) -> None:
    """Resolve and reject queue one notification each, in the complaint's language, with
    the ticket and the note or reason; a comment or a claim sends nothing."""
    inbox, recording = sms_inbox(database_url)
    with inbox:
        a = inbox.receive(raw_json("n-1", sender={"phone": "081200000001"}))
        b = inbox.receive(
            raw_json("n-2", sender={"phone": "081200000002"}, text="The road is broken again.")
        )
        inbox.outbox.drain()
        recording.sent.clear()
        inbox.queue.claim("ani")
        inbox.queue.comment(a.complaint_id or 0, "cek lokasi", actor="ani")
        inbox.queue.resolve(a.complaint_id or 0, actor="ani", note="Sudah diperbaiki.")
        inbox.queue.reject(b.complaint_id or 0, actor="ani", reason="Bukan kewenangan kami.")
        inbox.outbox.drain()
    texts = {o.ticket: o.text for o in recording.sent}
    assert [o.kind for o in recording.sent] == ["notification", "notification"]
    assert "selesai" in texts[a.ticket or ""] and "Sudah diperbaiki." in texts[a.ticket or ""]
    assert "Bukan kewenangan kami." in texts[b.ticket or ""]


def test_a_complaint_without_an_address_cannot_be_replied_to(database_url: str) -> None:
    """``queue reply`` on a complaint nothing can answer is a QueueError that says why."""
    with Inbox(parse_config({"database": {"url": database_url}})) as inbox:
        result = inbox.receive(raw_json("r-1", sender={"phone": "081234567890"}))
        with pytest.raises(QueueError, match="cannot be answered"):
            inbox.queue.reply(result.complaint_id or 0, "Halo", actor="ani")


def test_the_daily_limit_counts_per_address_and_day(tmp_path: Path) -> None:
    """With ``daily_limit = 2`` the third automatic message to one number on one day is
    ``skipped`` (the reason shown); a team member's reply is not limited."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    inbox, recording = sms_inbox(url, acknowledgements={"daily_limit": 2})
    with inbox:
        phone = {"phone": "081234567890"}
        results = [
            inbox.receive(raw_json(f"l-{i}", sender=phone, text=f"Keluhan berbeda nomor {i}."))
            for i in range(3)
        ]
        inbox.outbox.drain()
        inbox.queue.reply(results[0].complaint_id or 0, "Kami cek.", actor="ani")
        inbox.outbox.drain()
        rows, _ = inbox.outbox.list()
    by_status = sorted((r.kind, r.status) for r in rows)
    assert by_status == [
        ("acknowledgement", "sent"),
        ("acknowledgement", "sent"),
        ("acknowledgement", "skipped"),
        ("reply", "sent"),
    ]
    skipped = next(r for r in rows if r.status == "skipped")
    assert skipped.last_error == "daily limit of 2 reached for this address"
    assert len(recording.sent) == 3


def test_assigning_to_an_agency_starts_its_follow_up_deadline(database_url: str) -> None:
    """Assigned to an agency on Monday 7 December 2026, a licensing complaint is due after
    that category's follow-up days (2), a complaint of another category after the default
    (5), in working days."""
    config = {
        "database": {"url": database_url},
        "routes": [{"keywords": ["izin"], "agency": "DPMPTSP", "category": "licensing"}],
        "deadlines": {"categories": {"licensing": {"follow_up_days": 2}}},
    }
    monday = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)  # 10:00 WITA
    with Inbox(parse_config(config), clock=lambda: monday) as inbox:
        licence = inbox.receive(raw_json("f-1", text="Izin usaha belum terbit."))
        road = inbox.receive(raw_json("f-2", text="Jalan rusak."))
        a = inbox.queue.assign(licence.complaint_id or 0, actor="ani", agency="DPMPTSP")
        b = inbox.queue.assign(road.complaint_id or 0, actor="ani", agency="PUPR")
    assert a.due_at == monday + timedelta(days=2)
    assert b.due_at == monday + timedelta(days=7)  # five working days: Monday next week


def test_exports_carry_the_senders_own_time(database_url: str) -> None:
    """Each exported message has ``sent_at`` (the document's own time) beside
    ``received_at``."""
    with Inbox(parse_config({"database": {"url": database_url}})) as inbox:
        result = inbox.receive(raw_json("e-1", sent_at="2026-11-30T09:55:00+08:00"))
        complaint = inbox.complaint(result.complaint_id or 0)
    assert complaint is not None
    data = json.loads(complaint.model_dump_json())
    assert data["messages"][0]["sent_at"] == "2026-11-30T01:55:00Z"
    assert data["messages"][0]["received_at"] == "2026-11-30T02:00:00Z"


def test_outbox_commands_list_and_retry(tmp_path: Path) -> None:
    """``outbox list --format json`` shows each delivery with its status and error;
    ``outbox retry ID`` makes a dead one pending again (exit 0), and a row that is not dead
    is one line and exit 1; ``queue reply`` queues a reply."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n[acknowledgements]\nsms_connector = "files"\n',
        encoding="utf-8",
    )
    with Inbox.from_config(config) as inbox:
        result = inbox.receive(raw_json("c-1", sender={"phone": "081234567890"}))
        inbox.outbox.drain()  # the files connector cannot send: dead at once

    def run(*args: str) -> tuple[int, list[str], str]:
        outcome = CliRunner().invoke(main, ["--config", str(config), *args])
        return outcome.exit_code, outcome.stdout.splitlines(), outcome.stderr

    code, lines, _ = run("outbox", "list", "--format", "json")
    [row] = [json.loads(line) for line in lines]
    assert code == 0 and row["status"] == "dead" and row["kind"] == "acknowledgement"
    assert row["target"] == "+62812****7890"  # operators see a citizen's address masked
    assert row["last_error"] == "Undeliverable: connector 'files' cannot send messages"
    assert run("outbox", "retry", str(row["id"]))[:2] == (0, ["1 deliveries pending again"])
    code, _, err = run("outbox", "retry", str(row["id"]))
    assert code == 1 and "is not dead or skipped" in err
    code, lines, _ = run("queue", "reply", result.ticket or "", "Sedang kami proses.")
    assert code == 0 and lines == [f"{result.ticket}: reply queued"]
    code, lines, _ = run("outbox", "list")
    assert lines[0].split()[:4] == ["ID", "KIND", "TO", "STATUS"] and len(lines) == 3


def test_a_sender_error_is_recorded_without_secrets(tmp_path: Path) -> None:
    """What a sender raises is kept as its class and first line; a dead row can be
    retried by ID after the cause is fixed."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    inbox, recording = sms_inbox(url)

    def refuse(outbound: Outbound) -> str | None:
        raise Undeliverable("HTTP 400, error 21211")

    with inbox:
        inbox.receive(raw_json("u-1", sender={"phone": "081234567890"}))
        recording.send = refuse  # type: ignore[method-assign]
        inbox.outbox.drain()
        [row] = inbox.outbox.list()[0]
        assert row.status == "dead" and row.last_error == "Undeliverable: HTTP 400, error 21211"
        recording.send = Recording.send.__get__(recording)  # type: ignore[method-assign]
        assert inbox.outbox.retry(row.id) == 1
        inbox.outbox.drain()
        with inbox.store.transaction() as conn:
            status = conn.execute(sa.select(outbox.c.status)).scalar_one()
    assert status == "sent" and len(recording.sent) == 1


def test_the_team_sees_a_confidential_sender_exports_and_forwards_do_not(
    sqlite_url_path: Path,
) -> None:
    """A confidential complaint: the team's view (``complaints show``, a claim) names the
    sender; the export and the forwarded JSON do not, nor what was sent to them."""
    from omnichannel.forwarders import Forward

    received: list[Forward] = []

    class Keeping:
        name = "keeping"

        def forward(self, item: Forward) -> str | None:
            received.append(item)
            return None

    inbox, _ = sms_inbox(f"sqlite:///{sqlite_url_path}")
    with inbox:
        inbox.add_forwarder(Keeping())
        result = inbox.receive(
            raw_json("k-1", sender={"phone": "081234567890", "name": "Sari"}, confidential=True)
        )
        inbox.outbox.drain()
        team = inbox.complaint(result.complaint_id or 0, team=True)
        export = inbox.complaint(result.complaint_id or 0, team=False)
        claimed = inbox.queue.claim("ani")
    assert team is not None and team.sender.phone == "+6281234567890"
    assert team.outbound and team.outbound[0].to == "+6281234567890"
    assert claimed is not None and claimed.sender.name == "Sari"
    assert export is not None and export.sender.phone is None and export.outbound == []
    assert received[0].complaint["sender"] == {
        "name": None,
        "email": None,
        "phone": None,
        "handle": None,
    }
    assert "+6281234567890" not in json.dumps(received[0].complaint)


@pytest.fixture
def sqlite_url_path(tmp_path: Path) -> Path:
    return tmp_path / "o.db"
