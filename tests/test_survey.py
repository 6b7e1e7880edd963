"""Satisfaction surveys: asked when a complaint is resolved, answered on every channel, each
answer stored as the rating of the complaint it answers — never a complaint of its own — and
an answer that could be meant for more than one complaint never guessed.

The parser is a pure function (``normalizer.survey.parse_rating``), tested on a table of what
citizens type. End to end, everything goes over a real wire on loopback, as in
tests/test_acknowledgements.py: surveys by e-mail to a real SMTP server, by SMS and WhatsApp to
stand-ins for Twilio's REST API and Meta's Graph API; answers come in as signed webhooks and
``.eml`` files. The inbox's clock is moved by hand (the survey waits an hour after the
resolution, the reminder three days after the survey).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import connectors.whatsapp_cloud
from normalizer.survey import LABELS, Rating, parse_rating
from omnichannel import Inbox, Outcome
from omnichannel.config import parse_config
from omnichannel.errors import ConfigError
from omnichannel.outbox import plan_event
from omnichannel.queue import Queue
from omnichannel.schema import InboundMessage, ReceiveResult, Sender
from omnichannel.store.tables import messages, ratings
from omnichannel.survey import SurveySettings
from omnichannel.testing import meta_signature, post_webhook
from omnichannel.webhook import WebhookRequest
from tests import smtp
from tests import test_acknowledgements as acks
from tests.smtp import Received, SmtpServer
from tests.test_acknowledgements import (
    CITIZEN,
    CITIZEN_MAIL,
    CITIZEN_WA_ID,
    OUR_WHATSAPP,
    PNID,
    PORTAL_SECRET,
    WA_SECRET,
    Clock,
    ClockedDatetime,
    Provider,
    eml,
    files_connector,
    mail_in,
    make_inbox,
    portal_in,
    rows,
    sqlite_url,
    text_of,
    twilio_connector,
    twilio_in,
    whatsapp_connector,
    whatsapp_in,
)
from tests.test_twilio import sid

smtp_server = smtp.smtp_server  # the fixtures: a real SMTP server, Twilio's and Meta's APIs
twilio_server, twilio = acks.twilio_server, acks.twilio
graph_server, graph = acks.graph_server, acks.graph

NO_LIMIT = {"daily_limit": 0}
"""Many automatic messages to one address on one day (acknowledgements, notifications and
surveys of several complaints) all go out."""


def real_clock() -> Clock:
    """A hand-moved clock starting now: webhooks stamp what they receive with the real time,
    so the surveys the inbox sends must not be far from it."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


# == 1. reading an answer =======================================================================


@pytest.mark.parametrize(
    ("text", "score", "comment"),
    [
        ("5", 5, ""),
        ("  4  ", 4, ""),
        ("5/5", 5, ""),
        ("3 dari 5", 3, ""),
        ("nilai 4", 4, ""),
        ("Nilai: 2", 2, ""),
        ("4 bintang", 4, ""),
        ("⭐⭐⭐", 3, ""),
        ("\uff15", 5, ""),  # a full-width digit
        ("puas", 4, ""),
        ("Sangat puas!", 5, ""),
        ("puas sekali", 5, ""),
        ("cukup puas", 3, ""),
        ("biasa saja", 3, ""),
        ("cukup", 3, ""),
        ("kecewa", 1, ""),
        ("mantap", 5, ""),
        ("Very satisfied", 5, ""),
        ("dissatisfied", 2, ""),
        ("5, petugasnya ramah dan cepat", 5, "petugasnya ramah dan cepat"),
        ("4. Cepat, tapi hasilnya kurang bagus", 4, "Cepat, tapi hasilnya kurang bagus"),
        ("5\n\nTerima kasih, lampunya sudah menyala.", 5, "Terima kasih, lampunya sudah menyala"),
        ("Terima kasih, sangat puas", 5, ""),
        ("Terima kasih 5", 5, ""),
        ("Jalannya masih berlubang, tidak puas", 2, "Jalannya masih berlubang"),
        ("Petugasnya cepat. Nilai 5", 5, "Petugasnya cepat"),
        ("Saya sangat puas dengan pelayanannya", 5, "dengan pelayanannya"),
        ("5 terima kasih", 5, ""),
    ],
)  # fmt: skip
def test_plain_replies_read_as_their_score_and_the_rest_is_the_comment(
    text: str, score: int, comment: str
) -> None:
    """Digits, fractions, stars and Indonesian or English words read as a score of 1 to 5;
    what is not the rating at the start (after a greeting or thanks) or the end is the
    comment, as written."""
    assert parse_rating(text) == Rating(score, comment)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("tidak puas", 2),
        ("Tidak Puas!!", 2),
        ("tdk puas", 2),
        ("gak puas", 2),
        ("kurang puas", 2),
        ("belum puas", 2),
        ("tidak memuaskan", 2),
        ("tidak terlalu puas", 2),
        ("sangat tidak puas", 1),
        ("tidak puas sama sekali", 1),
        ("sangat kecewa", 1),
        ("tidak kecewa", 4),
        ("not satisfied", 2),
        ("very dissatisfied", 1),
    ],
)
def test_a_negation_is_never_read_as_the_word_it_negates(text: str, score: int) -> None:
    """The longest phrase wins: ``tidak puas`` is 2 and ``sangat tidak puas`` 1, never the 4
    or the 5 of the ``puas`` inside them."""
    found = parse_rating(text)
    assert found is not None and found.score == score


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Lampu jalan di depan rumah saya mati sudah seminggu, mohon diperbaiki.",
        "5 hari belum juga diperbaiki",
        "1 lagi pak, lampu di gang sebelah juga mati",
        "Lampu di RT 5",
        "Sudah saya laporkan sejak bulan 5",
        "Cukup lama prosesnya",
        "Baik, terima kasih",
        "ok",
        "2026",
        "10",
        "0",
        "5.000",
        "5,5",
    ],
)
def test_what_is_no_rating_reads_as_none(text: str) -> None:
    """A complaint, a number of days or lamps, a place (``RT 5``), a month, thanks alone, a
    number outside 1 to 5: no rating."""
    assert parse_rating(text) is None


@pytest.mark.parametrize("text", ["5, tidak puas", "Sangat puas, 1", "1 dari 5, sangat puas"])
def test_a_text_naming_two_scores_is_a_rating_whose_score_is_not_guessed(text: str) -> None:
    """Two different scores at the start: an answer, but which score is not told (None)."""
    found = parse_rating(text)
    assert found is not None and found.score is None


def test_every_name_of_the_scale_reads_back_as_its_score() -> None:
    """Each name of the scale (the rows of WhatsApp's list) reads as its own score, alone and
    as a picked row arrives (``title — description``)."""
    for language, labels in LABELS.items():
        of = "dari" if language == "id" else "of"
        for score, label in labels.items():
            assert parse_rating(label) == Rating(score, "")
            assert parse_rating(f"{label} — {score} {of} 5") == Rating(score, "")


def test_a_long_text_is_read_at_its_ends_only() -> None:
    """A rating opens or closes an answer: in a text of a megabyte it is found at the start
    or the end, never in the middle."""
    middle = "kata " * 200_000
    assert parse_rating("5, " + middle) == Rating(5, middle.strip())
    assert parse_rating(middle + "sangat puas " + middle) is None


# == 2. helpers =================================================================================


def rating_of(inbox: Inbox, complaint_id: int | None) -> dict[str, Any] | None:
    """The stored rating of a complaint: score, comment, channel, matched_by."""
    with inbox.store.transaction() as conn:
        row = conn.execute(
            sa.select(
                ratings.c.score, ratings.c.comment, ratings.c.channel, ratings.c.matched_by
            ).where(ratings.c.complaint_id == complaint_id)
        ).first()
    return dict(row._mapping) if row else None


def survey_rows(inbox: Inbox) -> list[tuple[int | None, str, str, str | None]]:
    """``(complaint_id, kind, status, last_error)`` of every survey row, oldest first."""
    return [
        (r.complaint_id, r.kind, r.status, r.last_error)
        for r in rows(inbox)
        if r.kind.startswith("survey")
    ]


def message_flags(inbox: Inbox, external_id: str) -> dict[str, Any]:
    """The flags of the stored message with this external id."""
    with inbox.store.transaction() as conn:
        flags = conn.execute(
            sa.select(messages.c.flags).where(messages.c.external_id == external_id)
        ).scalar_one()
    return dict(flags)


def resolve_and_ask(inbox: Inbox, clock: Clock, *complaint_ids: int | None) -> None:
    """Resolve the complaints, send the notifications, then, an hour later, the surveys."""
    for complaint_id in complaint_ids:
        assert complaint_id is not None
        inbox.queue.resolve(complaint_id, actor="ani", note="Sudah ditindaklanjuti.")
    assert inbox.outbox.drain() == {"sent": len(complaint_ids)}  # the notifications
    clock.advance(hours=1)
    assert inbox.outbox.drain() == {"sent": len(complaint_ids)}  # the surveys


class WithSurvey:
    """Filing's settings with other survey settings (as ``[survey]`` gives them)."""

    def __init__(self, settings: Any, survey: SurveySettings) -> None:
        self._settings = settings
        self.survey = survey

    def __getattr__(self, name: str) -> Any:
        return getattr(self._settings, name)


# == 3. SMS and WhatsApp through Twilio ==========================================================


@pytest.mark.parametrize("channel", ["sms", "whatsapp"])
def test_a_twilio_answer_is_the_complaints_rating_and_its_reminder_is_not_sent(
    database_url: str, twilio: Provider, channel: str
) -> None:
    """An SMS (or WhatsApp via Twilio) complaint is resolved: the notification goes at once,
    the survey an hour later, as text, from the number written to, with the ticket and the
    scale. The citizen's answer ``4, <comment>`` is ``merged`` into the complaint (which
    stays resolved, gets no acknowledgement for it, and shows a ``rated`` event); the rating
    is stored with its comment; three days later the reminder is skipped, as answered."""
    clock = real_clock()
    fields = {} if channel == "sms" else {"From": f"whatsapp:{CITIZEN}", "To": OUR_WHATSAPP}
    with make_inbox(database_url, connectors=[twilio_connector(twilio)], clock=clock) as inbox:
        first = twilio_in(inbox, 1, "Lampu jalan di depan SD Negeri 3 mati seminggu.", **fields)
        assert inbox.outbox.drain() == {"sent": 1}
        resolve_and_ask(inbox, clock, first.complaint_id)
        answer = twilio_in(inbox, 2, "4, petugasnya cepat tapi lampunya agak redup", **fields)
        assert inbox.outbox.drain() == {}
        clock.advance(days=3)
        assert inbox.outbox.drain() == {"skipped": 1}
        complaint = inbox.complaint(first.complaint_id)
        events = inbox.queue.events(first.complaint_id or 0)
        rating = rating_of(inbox, first.complaint_id)
        surveys = survey_rows(inbox)
    _, note, survey = twilio.forms()
    assert survey["To"] == note["To"] and survey["From"] == note["From"]
    assert str(first.ticket) in survey["Body"] and "1 sampai 5" in survey["Body"]
    assert answer.outcome is Outcome.MERGED and answer.complaint_id == first.complaint_id
    assert complaint is not None and complaint.status == "resolved"
    assert complaint.messages[-1].merge_reason == "survey"
    assert rating == {
        "score": 4,
        "comment": "petugasnya cepat tapi lampunya agak redup",
        "channel": channel,
        "matched_by": "sender",
    }
    assert events[-1]["kind"] == "rated" and "4/5" in events[-1]["note"]
    assert surveys == [
        (first.complaint_id, "survey", "sent", None),
        (first.complaint_id, "survey.reminder", "skipped", "the survey is answered"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "Pelayanan puskesmas sangat buruk, dokter tidak datang sejak pagi.",
        "Lampu jalan di RT 3 mati sudah 3 hari, kami sangat kecewa",
        "Mohon bantuan 2",
        "Jalan di depan pasar rusak, ada lubang 1",
    ],
)
def test_a_new_complaint_from_a_surveyed_citizen_is_not_taken_for_a_rating(
    database_url: str, twilio: Provider, text: str
) -> None:
    """A citizen with a survey waiting writes about something else, in words a rating also
    uses: it is a new complaint, and the resolved one gets no rating."""
    clock = real_clock()
    with make_inbox(database_url, connectors=[twilio_connector(twilio)], clock=clock) as inbox:
        first = twilio_in(inbox, 1, "Lampu jalan di depan SD Negeri 3 mati seminggu.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, first.complaint_id)
        other = twilio_in(inbox, 2, text)
        rating = rating_of(inbox, first.complaint_id)
    assert other.outcome is Outcome.NEW and other.complaint_id != first.complaint_id
    assert rating is None


def test_an_sms_rating_for_one_of_two_complaints_is_not_guessed(
    database_url: str, twilio: Provider
) -> None:
    """Two complaints of one number are resolved and surveyed. A bare ``5`` could rate either:
    it is ``ignored`` (flagged, with both tickets), rates neither, and the citizen is asked —
    once, however often the bare rating comes — to send it again with the ticket. ``<ticket>
    2, <comment>`` then rates that complaint; a new complaint from the number is no rating."""
    clock = real_clock()
    with make_inbox(
        database_url,
        connectors=[twilio_connector(twilio)],
        clock=clock,
        acknowledgements=NO_LIMIT,
    ) as inbox:
        a = twilio_in(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        b = twilio_in(inbox, 2, "Ada pungli di kantor kelurahan.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, a.complaint_id, b.complaint_id)
        vague = twilio_in(inbox, 3, "5")
        assert inbox.outbox.drain() == {"sent": 1}  # the question: which complaint?
        again = twilio_in(inbox, 4, "5")
        assert inbox.outbox.drain() == {}  # asked once
        pointed = twilio_in(inbox, 5, f"{b.ticket} 2, masih ada pungli")
        other = twilio_in(inbox, 6, "Jembatan di desa kami roboh, mohon segera diperbaiki.")
        flags = message_flags(inbox, sid(3))
        ratings_ = (rating_of(inbox, a.complaint_id), rating_of(inbox, b.complaint_id))
    asked = twilio.forms()[-1]["Body"]
    assert vague.outcome is again.outcome is Outcome.IGNORED
    assert vague.complaint_id is None and again.complaint_id is None
    assert flags["survey_ambiguous"] is True
    assert flags["survey_tickets"] == [a.ticket, b.ticket]
    assert str(a.ticket) in asked and str(b.ticket) in asked
    assert pointed.outcome is Outcome.MERGED and pointed.complaint_id == b.complaint_id
    assert other.outcome is Outcome.NEW
    assert ratings_ == (
        None,
        {"score": 2, "comment": "masih ada pungli", "channel": "sms", "matched_by": "ticket"},
    )


def test_an_answer_naming_two_scores_joins_the_complaint_without_a_rating(
    tmp_path: Path, twilio: Provider
) -> None:
    """``5, tidak puas`` answers the survey but says two things: it joins the complaint as a
    message flagged ``survey_unclear``, no score is guessed, and the reminder still goes."""
    clock = real_clock()
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio)], clock=clock
    ) as inbox:
        first = twilio_in(inbox, 1, "Saluran air di depan pasar tersumbat.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, first.complaint_id)
        unclear = twilio_in(inbox, 2, "5, tidak puas")
        flags = message_flags(inbox, sid(2))
        clock.advance(days=3)
        assert inbox.outbox.drain() == {"sent": 1}  # the reminder
        rating = rating_of(inbox, first.complaint_id)
    assert unclear.outcome is Outcome.MERGED and unclear.complaint_id == first.complaint_id
    assert flags.get("survey_unclear") is True
    assert rating is None


def test_one_reminder_only_and_an_answer_after_it_still_counts(
    tmp_path: Path, twilio: Provider
) -> None:
    """Unanswered, the survey is followed by one reminder three days later, and nothing more
    however long the wait; an answer after the reminder rates the complaint."""
    clock = real_clock()
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio)], clock=clock
    ) as inbox:
        first = twilio_in(inbox, 1, "Saluran air di depan pasar tersumbat.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, first.complaint_id)
        clock.advance(days=3)
        assert inbox.outbox.drain() == {"sent": 1}
        clock.advance(days=30)
        assert inbox.outbox.drain() == {}
        answer = twilio_in(inbox, 2, "Cukup puas")
        surveys = survey_rows(inbox)
        rating = rating_of(inbox, first.complaint_id)
    bodies = [form["Body"] for form in twilio.forms()]
    assert (
        len(bodies) == 4 and bodies[3].startswith("Pengingat:") and str(first.ticket) in bodies[3]
    )
    assert surveys == [
        (first.complaint_id, "survey", "sent", None),
        (first.complaint_id, "survey.reminder", "sent", None),
    ]
    assert answer.outcome is Outcome.MERGED and answer.complaint_id == first.complaint_id
    assert rating is not None and rating["score"] == 3


def test_a_complaint_reopened_before_its_survey_is_asked_when_resolved_again(
    tmp_path: Path, twilio: Provider
) -> None:
    """Reopened within the hour, the complaint's survey is skipped when due (and so is its
    reminder); resolved again, the same survey is due an hour later and goes out — one survey
    per complaint."""
    clock = real_clock()
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[twilio_connector(twilio)],
        clock=clock,
        acknowledgements=NO_LIMIT,
    ) as inbox:
        first = twilio_in(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        cid = first.complaint_id or 0
        inbox.outbox.drain()
        inbox.queue.resolve(cid, actor="ani")
        inbox.queue.reopen(cid, actor="ani", note="Warga melapor lampu mati lagi.")
        clock.advance(hours=1)
        assert inbox.outbox.drain() == {"sent": 1, "skipped": 1}  # notification, survey
        skipped = survey_rows(inbox)
        inbox.queue.resolve(cid, actor="ani")
        clock.advance(hours=1)
        assert inbox.outbox.drain() == {"sent": 2}  # the notification, then the survey
        surveys = survey_rows(inbox)
    assert skipped[0] == (cid, "survey", "skipped", "the complaint is open now")
    assert surveys[:1] == [(cid, "survey", "sent", None)]
    assert len(surveys) == 2 and surveys[1][1:3] == ("survey.reminder", "pending")


def test_an_answer_after_the_window_is_filed_as_any_message(
    tmp_path: Path, twilio: Provider
) -> None:
    """An answer counts within ``window_days`` (14) of the survey: a rating 13 days after it
    rates the complaint; the same 15 days after is no survey answer (here a new complaint,
    as any text of that number would be)."""
    clock = real_clock()
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio)], clock=clock
    ) as inbox:
        first = twilio_in(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, first.complaint_id)
        asked = clock()

        def sms(external_id: str, days: int) -> ReceiveResult:
            message = InboundMessage(
                channel="sms",
                external_id=external_id,
                received_at=asked + timedelta(days=days),
                sender=Sender(phone=CITIZEN),
                text="Sangat puas",
            )
            return inbox.receive_inbound(message, connector="sms")

        late = sms("late-1", 15)
        timely = sms("timely-1", 13)
        rating = rating_of(inbox, first.complaint_id)
    assert late.outcome is Outcome.NEW
    assert timely.outcome is Outcome.MERGED and timely.complaint_id == first.complaint_id
    assert rating is not None and rating["score"] == 5


def test_no_survey_when_surveys_are_off_and_no_reminder_when_none_is_set(
    tmp_path: Path, twilio: Provider
) -> None:
    """With ``[survey] enabled = false`` a resolution asks nothing; with ``reminder_days = 0``
    it queues the survey alone (the queue planned with those settings)."""
    clock = real_clock()
    with make_inbox(
        sqlite_url(tmp_path), connectors=[twilio_connector(twilio)], clock=clock
    ) as inbox:
        a = twilio_in(inbox, 1, "Lampu jalan di Jalan Poros mati.")
        b = twilio_in(inbox, 2, "Ada pungli di kantor kelurahan.")
        for options, complaint in (
            (SurveySettings(enabled=False), a),
            (SurveySettings(reminder=timedelta(0)), b),
        ):
            settings = WithSurvey(inbox.settings, options)
            queue = Queue(
                inbox.store,
                clock=clock,
                planner=lambda conn, event, s=settings: plan_event(conn, event, s),
            )
            queue.resolve(complaint.complaint_id or 0, actor="ani")
        surveys = survey_rows(inbox)
    assert surveys == [(b.complaint_id, "survey", "pending", None)]


def test_the_survey_section_is_validated_and_read() -> None:
    """``[survey]`` has defaults (on, an hour, 14 days, one reminder after 3 days); a bad
    value is reported by its key path."""
    config = parse_config({"survey": {"delay_hours": 0.5, "reminder_days": 0}})
    assert SurveySettings.from_config(config.survey) == SurveySettings(
        delay=timedelta(minutes=30), reminder=timedelta(0)
    )
    assert SurveySettings.from_config(parse_config({}).survey) == SurveySettings()
    with pytest.raises(ConfigError) as caught:
        parse_config({"survey": {"window_days": 0, "remind_days": 2}})
    assert "survey.window_days: Input should be greater than or equal to 1" in caught.value.problems
    assert "survey.remind_days: unknown key" in caught.value.problems


# == 4. e-mail ==================================================================================


def survey_mail(server: SmtpServer, ticket: str | None) -> Received:
    """The survey mail of the complaint ``ticket`` the SMTP server received."""
    [found] = [
        m
        for m in server.messages
        if str(ticket) in str(m.message["Subject"]) and "5 = sangat puas" in text_of(m)
    ]
    return found


def quoting(answer: str, received: Received) -> str:
    """A citizen's reply: ``answer`` above the quoted survey, as mail programs write it."""
    quoted = "\n".join(f"> {line}" for line in text_of(received).splitlines())
    return f"{answer}\n\nPada Sen, 7 Des 2026 pukul 10.00, Pengaduan DPMPTSP menulis:\n{quoted}\n"


def test_email_answers_land_on_the_complaint_their_thread_or_ticket_names(
    database_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """Two complaint mails from one address are resolved; each survey is a threaded mail with
    the ticket in its subject, marked automatic. A bare ``5`` (no thread, no ticket) rates
    neither: ignored, and the citizen is asked by mail which complaint it rates. A reply to
    B's survey (``In-Reply-To``, the survey quoted below the answer) rates B, its comment
    without the quote; then ``Cukup puas`` alone rates A — the one survey still waiting."""
    clock = real_clock()
    with make_inbox(
        database_url,
        connectors=[files_connector(tmp_path)],
        smtp=smtp_server,
        clock=clock,
        acknowledgements=NO_LIMIT,
    ) as inbox:
        drop = tmp_path / "drop"
        a_id, a_mail = eml("Lampu jalan mati di Jalan Poros.", subject="Lampu mati")
        a = mail_in(inbox, drop, a_mail)
        b = mail_in(inbox, drop, eml("Saluran di depan pasar tersumbat.", subject="Saluran")[1])
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, a.complaint_id, b.complaint_id)
        vague = mail_in(inbox, drop, eml("5", subject="Penilaian")[1])
        assert inbox.outbox.drain() == {"sent": 1}
        asked = smtp_server.messages[-1]
        ours = survey_mail(smtp_server, b.ticket)
        reply = quoting("5\n\nTerima kasih, saluran sudah lancar.", ours)
        headers = {"In-Reply-To": ours.message["Message-ID"]}
        threaded = mail_in(inbox, drop, eml(reply, subject="Re: penilaian", headers=headers)[1])
        alone = mail_in(inbox, drop, eml("Cukup puas", subject="Penilaian lampu")[1])
        rated = (rating_of(inbox, a.complaint_id), rating_of(inbox, b.complaint_id))
        assert inbox.outbox.drain() == {}  # no acknowledgement of an answer
    first = survey_mail(smtp_server, a.ticket).message
    assert first["In-Reply-To"] == a_id and first["Auto-Submitted"] is not None
    assert first["Subject"] == f"Re: Lampu mati [{a.ticket}]"
    assert vague.outcome is Outcome.IGNORED and vague.complaint_id is None
    assert asked.rcpt_tos == [CITIZEN_MAIL]
    assert str(a.ticket) in text_of(asked) and str(b.ticket) in text_of(asked)
    assert threaded.outcome is Outcome.MERGED and threaded.complaint_id == b.complaint_id
    assert alone.outcome is Outcome.MERGED and alone.complaint_id == a.complaint_id
    assert rated == (
        {"score": 3, "comment": None, "channel": "email", "matched_by": "sender"},
        {
            "score": 5,
            "comment": "Terima kasih, saluran sudah lancar",
            "channel": "email",
            "matched_by": "thread",
        },
    )


def test_a_web_complaint_is_surveyed_by_mail_and_an_anonymous_one_never(
    smtp_server: SmtpServer, tmp_path: Path
) -> None:
    """A portal complaint with an e-mail address is asked by mail, and a mail from that
    address rates it; an anonymous one that asked to be answered gets its acknowledgement
    and notification, but no survey."""
    clock = real_clock()
    portal = {"name": "portal", "type": "web", "secret": PORTAL_SECRET}
    with make_inbox(
        sqlite_url(tmp_path),
        connectors=[portal, files_connector(tmp_path)],
        smtp=smtp_server,
        clock=clock,
    ) as inbox:
        base = {"name": "Andi", "subject": "Calo di loket"}
        plain = portal_in(
            inbox, base | {"email": "andi@example.id", "message": "Ada calo di loket KTP."}, "m1"
        )
        hidden = portal_in(
            inbox,
            base
            | {
                "email": "mau.dijawab@example.id",
                "message": "Petugas meminta uang.",
                "anonymous": True,
                "contact_ok": True,
            },
            "m2",
        )
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, plain["complaint_id"])
        inbox.queue.resolve(hidden["complaint_id"], actor="ani", note="Petugas ditegur.")
        clock.advance(days=5)
        assert inbox.outbox.drain() == {"sent": 2}  # its notification; plain's reminder
        sender = "Andi <andi@example.id>"
        answer = mail_in(inbox, tmp_path / "drop", eml("Puas", sender=sender, subject="Re")[1])
        kinds = [(r.target, r.kind) for r in rows(inbox) if r.kind != "forward"]
        rating = rating_of(inbox, plain["complaint_id"])
    assert answer.outcome is Outcome.MERGED and answer.complaint_id == plain["complaint_id"]
    assert rating == {"score": 4, "comment": None, "channel": "email", "matched_by": "sender"}
    assert [kind for to, kind in kinds if to == "mau.dijawab@example.id"] == [
        "acknowledgement",
        "notification",
    ]


# == 5. WhatsApp Cloud ==========================================================================


def list_reply(inbox: Inbox, wamid: str, picked: dict[str, Any], context: str) -> ReceiveResult:
    """A signed Meta webhook: the citizen picked a row of our list message ``context``."""
    message = {
        "context": {"from": "6281100001111", "id": context},
        "from": CITIZEN_WA_ID,
        "id": wamid,
        "timestamp": "1796000000",
        "type": "interactive",
        "interactive": {"type": "list_reply", "list_reply": picked},
    }
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281100001111", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Siti Rahmah"}, "wa_id": CITIZEN_WA_ID}],
        "messages": [message],
    }
    envelope = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": value}]}],
    }
    body = json.dumps(envelope).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(body, WA_SECRET),
    }
    request = WebhookRequest.build("POST", "https://omni.example.go.id/webhooks/wa", headers, body)
    response = post_webhook(inbox, "wa", request)
    assert response.status == 200 and response.results is not None
    [result] = response.results
    return result


def lists_sent(graph: Provider) -> dict[str, tuple[dict[str, Any], str]]:
    """The interactive lists the Graph stand-in received, by the ticket their rows rate, each
    with the wamid it was given."""
    found = {}
    for request, answer in zip(graph.requests, graph.answers, strict=True):
        message = request.json()
        if message["type"] == "interactive":
            ticket = rows_of(message)[0]["id"].split(":")[1]
            found[ticket] = (message, answer["messages"][0]["id"])
    return found


def rows_of(message: dict[str, Any]) -> list[dict[str, Any]]:
    rows_: list[dict[str, Any]] = message["interactive"]["action"]["sections"][0]["rows"]
    return rows_


def test_a_whatsapp_list_pick_rates_the_complaint_whose_survey_it_quotes(
    database_url: str, graph: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two WhatsApp complaints of one number are resolved; inside the 24-hour window each
    survey is an interactive list of the five points (ids ``survey:<ticket>:<score>``, within
    Meta's limits). Picking "Puas" in B's list (the reply quotes it) rates B 4, although A's
    survey waits too; a plain ``5`` then rates A, the one still waiting."""
    clock = real_clock()
    monkeypatch.setattr(connectors.whatsapp_cloud, "datetime", ClockedDatetime(clock))
    with make_inbox(
        database_url,
        connectors=[whatsapp_connector(graph)],
        clock=clock,
        acknowledgements=NO_LIMIT,
    ) as inbox:
        a = whatsapp_in(inbox, "wamid.IN-A", "Lampu jalan di Jalan Poros mati.")
        b = whatsapp_in(inbox, "wamid.IN-B", "Ada pungli di kantor kelurahan.")
        inbox.outbox.drain()
        resolve_and_ask(inbox, clock, a.complaint_id, b.complaint_id)
        lists = lists_sent(graph)
        b_list, b_wamid = lists[str(b.ticket)]
        [picked] = [row for row in rows_of(b_list) if row["title"] == "Puas"]
        pick = list_reply(inbox, "wamid.IN-C", picked, b_wamid)
        plain = whatsapp_in(inbox, "wamid.IN-D", "5")
        rated = (rating_of(inbox, a.complaint_id), rating_of(inbox, b.complaint_id))
    interactive = b_list["interactive"]
    action = interactive["action"]
    rows_ = rows_of(b_list)
    assert sorted(lists) == sorted([str(a.ticket), str(b.ticket)])
    assert b_list["to"] == CITIZEN_WA_ID and interactive["type"] == "list"
    assert str(b.ticket) in interactive["body"]["text"] and len(interactive["body"]["text"]) <= 1024
    assert len(action["button"]) <= 20 and len(action["sections"][0]["title"]) <= 24
    assert [row["id"] for row in rows_] == [f"survey:{b.ticket}:{n}" for n in (5, 4, 3, 2, 1)]
    assert [row["title"] for row in rows_] == [LABELS["id"][n] for n in (5, 4, 3, 2, 1)]
    assert all(len(row["title"]) <= 24 and len(row["description"]) <= 72 for row in rows_)
    assert pick.outcome is Outcome.MERGED and pick.complaint_id == b.complaint_id
    assert plain.outcome is Outcome.MERGED and plain.complaint_id == a.complaint_id
    assert rated == (
        {"score": 5, "comment": None, "channel": "whatsapp", "matched_by": "sender"},
        {"score": 4, "comment": None, "channel": "whatsapp", "matched_by": "thread"},
    )


@pytest.mark.parametrize("template", ["survei_kepuasan", None])
def test_outside_the_24_hour_window_the_whatsapp_survey_is_its_own_template(
    tmp_path: Path, graph: Provider, monkeypatch: pytest.MonkeyPatch, template: str | None
) -> None:
    """Resolved two days after the citizen last wrote, the survey cannot be a list: it is
    the ``survey_template_name`` template with the ticket (never the acknowledgement's
    template, which says something else); with none configured it is ``dead``, saying why."""
    clock = real_clock()
    monkeypatch.setattr(connectors.whatsapp_cloud, "datetime", ClockedDatetime(clock))
    options = {"template_name": "status_pengaduan", "survey_template_name": template}
    connector = whatsapp_connector(graph, **{k: v for k, v in options.items() if v})
    with make_inbox(sqlite_url(tmp_path), connectors=[connector], clock=clock) as inbox:
        first = whatsapp_in(inbox, "wamid.IN-A", "Jalan desa kami rusak parah.")
        inbox.outbox.drain()
        clock.advance(days=2)
        inbox.queue.resolve(first.complaint_id or 0, actor="ani", note="Sudah ditambal.")
        inbox.outbox.drain()
        clock.advance(hours=1)
        inbox.outbox.drain()
        surveys = survey_rows(inbox)
    last = graph.requests[-1].json()
    if template is None:
        assert surveys[0][2:] == (
            "dead",
            "Undeliverable: outside WhatsApp's 24-hour window and no survey_template_name "
            "configured",
        )
        assert last["template"]["name"] == "status_pengaduan"  # the notification, no more
    else:
        assert surveys[0][2:] == ("sent", None)
        assert last["template"]["name"] == template
        assert last["template"]["components"][0]["parameters"] == [
            {"type": "text", "text": first.ticket}
        ]
