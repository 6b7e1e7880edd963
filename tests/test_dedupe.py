"""Dedupe levels 3 and 4: identities, same-sender merges, clusters, operators' merges and
links, the portal's own ids — through the real filing path, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from click.testing import CliRunner

from normalizer.similarity import bands, compare, related, same_complaint, signature
from omnichannel import Inbox, Outcome, filing, pipeline
from omnichannel.cli import main
from omnichannel.config import default_config, parse_config
from omnichannel.http import create_app
from omnichannel.merging import DedupeError, identity_key
from omnichannel.schema import InboundMessage, Sender
from omnichannel.store.tables import complaint_events, complaints, identity_events, messages
from omnichannel.testing.http import serve_wsgi
from tests.helpers import T0, raw_json, run_threads
from tests.test_web import SECRET, signed_headers

PHONE = "+6281234567890"
ROAD = (
    "Assalamualaikum pak, jalan di depan SDN 2 Sukamaju rusak parah, lubangnya besar2 dan "
    "kemarin ada anak jatuh dari motor. Mohon segera diperbaiki. Terima kasih."
)
ROAD_RESENT = (
    "jln didepan SDN 2 Sukamaju rusak prh, lubang nya besar2, kmrn ada anak jatuh dr motor. "
    "mohon sgr diperbaiki. tks"
)
PERMIT = "Izin PBG atas nama CV Maju Jaya nomor 640/123/DPMPTSP/2026 belum keluar sejak Oktober."


def same(a: str, b: str) -> bool:
    return same_complaint(compare(signature(a), signature(b)))


# -- the similarity, pure ------------------------------------------------------------------


def test_a_retyped_resend_is_the_same_complaint() -> None:
    """Typos, SMS abbreviations, case, punctuation, greetings and the closing do not make a
    second complaint."""
    assert same(ROAD, ROAD_RESENT)
    assert same(ROAD, ROAD.upper().replace(",", ""))
    assert same(
        "Dear Sir, the street light on Jl. Kenanga is out. Thanks",
        "street light on jl kenanga is out!!",
    )
    assert same(
        "Saya sdh daftar NIB lwt OSS tp blm keluar. Mohon info.\n\n"
        "Hormat saya,\nSiti\nHP: 0812-3456-7890",
        "saya sudah daftar nib lewat oss tapi belum keluar, mohon info",
    )


def test_numbers_are_compared_by_value_whatever_their_formatting() -> None:
    """Phones, amounts, dates and URLs written differently are one number."""
    assert same(
        "Dimintai Rp 1.500.000 tgl 05/12/2026, hub 0812-3456-7890, lihat https://www.oss.go.id/nib/",
        "dimintai 1500000 rupiah tanggal 5 Desember 2026 hub +62 812 3456 7890 lihat oss.go.id/nib",
    )
    assert same("bayar 300rb utk izin", "bayar Rp 300.000 untuk izin")


def test_what_identifies_a_complaint_keeps_two_apart_however_alike_the_rest() -> None:
    """A different permit number, client, village, house number, date or hamlet: two
    complaints, even from one sender and in otherwise the same words."""
    for a, b in [
        (PERMIT, PERMIT.replace("640/123", "640/124")),
        (PERMIT, PERMIT.replace("CV Maju Jaya", "UD Sinar Abadi")),
        (
            "Sumur bor di Desa Sukamaju rusak, pompa mati.",
            "Sumur bor di Desa Sukamakmur rusak, pompa mati.",
        ),
        ("Lampu jalan mati di Jl. Melati No. 12.", "Lampu jalan mati di Jl. Melati No. 14."),
        (
            "Penutupan jalan tgl 2 Desember sdh diajukan",
            "Penutupan jalan tgl 9 Desember sdh diajukan",
        ),
        ("Sumur bor di Dusun II rusak", "Sumur bor di Dusun III rusak"),
        ("Izin reklame saya belum keluar", "Izin usaha saya belum keluar"),
    ]:
        result = compare(signature(a), signature(b))
        assert not same_complaint(result), (a, b, result)
        assert not related(result) or result.apart is None, (a, b, result)


def test_a_count_that_changed_is_still_the_same_complaint() -> None:
    """``sudah 2 hari`` then, the next day, ``sudah 3 hari``: a count is not an identity."""
    assert same(
        "Air PDAM di Kel. Bumi Harapan mati sudah 2 hari, tolong.",
        "Air PDAM di Kel. Bumi Harapan mati sudah 3 hari, tolong!!",
    )


def test_a_nib_is_not_taken_for_a_phone() -> None:
    """``0809…`` is a NIB: different NIBs keep two complaints apart, as numbers."""
    a = signature("NIB 0309260011752 belum terverifikasi")
    b = signature("NIB 0809260023918 belum terverifikasi")
    assert compare(a, b).conflict and compare(a, b).apart


def test_a_short_report_of_a_long_one_is_related() -> None:
    """A one-line WhatsApp and a long e-mail about the same bridge share the sketch keys they
    are found by, and are related."""
    long = (
        "Jembatan Sei Lumut antara Rawa Indah dan Sungai Bening ambruk tadi malam setelah hujan "
        "deras. Warga tidak bisa lewat, anak sekolah terpaksa menyeberang sungai. Mohon PUPR "
        "segera membangun jembatan darurat."
    )
    short = "jembatan sei lumut putus pak, tdk ada yg bisa lewat"
    a, b = signature(long), signature(short)
    assert set(bands(a)) & set(bands(b))
    assert related(compare(a, b))
    assert not related(compare(b, signature("Lampu jalan di Jl. Melati mati sejak minggu lalu")))
    assert bands(signature("")) == []


# -- filing ---------------------------------------------------------------------------------


@pytest.fixture
def inbox(database_url: str) -> Iterator[Inbox]:
    box = Inbox(default_config(url=database_url))
    yield box
    box.close()


def send(
    inbox: Inbox,
    external_id: str,
    text: str,
    *,
    channel: str = "whatsapp",
    at: timedelta = timedelta(0),
    **sender: Any,
) -> Any:
    message = InboundMessage(
        channel=channel,
        external_id=external_id,
        received_at=T0 + at,
        sender=Sender(**sender),
        text=text,
    )
    return inbox.receive_inbound(message, connector="files")


def events(inbox: Inbox, complaint_id: int, kind: str) -> list[str]:
    with inbox.store.transaction() as conn:
        return list(
            conn.execute(
                sa.select(complaint_events.c.note).where(
                    complaint_events.c.complaint_id == complaint_id,
                    complaint_events.c.kind == kind,
                )
            ).scalars()
        )


def test_a_resend_on_another_channel_is_merged_with_its_score(inbox: Inbox) -> None:
    """WhatsApp, then the same complaint retyped by SMS from the same phone: one complaint;
    the message records why and how alike, and the complaint an event saying so."""
    first = send(inbox, "wa-1", ROAD, phone=PHONE)
    again = send(inbox, "sms-1", ROAD_RESENT, channel="sms", at=timedelta(hours=20), phone=PHONE)
    assert first.outcome is Outcome.NEW and again.outcome is Outcome.MERGED
    assert again.complaint_id == first.complaint_id
    complaint = inbox.complaint(first.complaint_id, team=True)
    assert complaint is not None
    merged = complaint.messages[1]
    assert merged.merge_reason == "same_sender" and merged.merge_score is not None
    assert 0.75 <= merged.merge_score <= 1
    (note,) = events(inbox, first.complaint_id, "merged")
    assert f"similarity {merged.merge_score:.2f}" in note


def test_different_complaints_of_one_person_on_one_day_stay_apart(inbox: Inbox) -> None:
    """The same person about a road and then about a permit, and two permits alike but for
    their number: three complaints."""
    results = [
        send(inbox, "a", ROAD, phone=PHONE),
        send(inbox, "b", PERMIT, phone=PHONE, at=timedelta(hours=1)),
        send(inbox, "c", PERMIT.replace("640/123", "640/124"), phone=PHONE, at=timedelta(hours=2)),
    ]
    assert [r.outcome for r in results] == [Outcome.NEW] * 3
    assert len({r.complaint_id for r in results}) == 3


def test_the_window_and_the_status_bound_a_merge(inbox: Inbox) -> None:
    """A resend after the window (72 hours), or into a complaint the team resolved, opens a
    new complaint."""
    first = send(inbox, "w-1", ROAD, phone=PHONE)
    late = send(inbox, "w-2", ROAD_RESENT, phone=PHONE, at=timedelta(hours=73))
    assert late.outcome is Outcome.NEW
    inbox.queue.resolve(late.complaint_id, actor="tim")
    inbox.queue.resolve(first.complaint_id, actor="tim")
    again = send(inbox, "w-3", ROAD, phone=PHONE, at=timedelta(hours=74))
    assert again.outcome is Outcome.NEW


def test_a_name_alone_links_nothing(inbox: Inbox) -> None:
    """Two phones under one name are two people: the same text from both is two complaints
    (related, so in one cluster)."""
    a = send(inbox, "n-1", ROAD, phone=PHONE, name="Budi Santoso")
    b = send(inbox, "n-2", ROAD, phone="+6281398765432", name="Budi Santoso", at=timedelta(hours=1))
    assert a.complaint_id != b.complaint_id
    ca, cb = inbox.complaint(a.complaint_id), inbox.complaint(b.complaint_id)
    assert ca and cb and ca.cluster_id and ca.cluster_id == cb.cluster_id


def test_a_web_form_with_phone_and_email_links_them(inbox: Inbox) -> None:
    """A form gives a phone and an e-mail: the same complaint by e-mail from that address,
    and by WhatsApp from that phone, joins it; the link is recorded."""
    form = send(
        inbox, "web-1", ROAD, channel="web", phone="0812-3456-7890", email="Budi@Example.com"
    )
    mail = send(
        inbox,
        "mail-1",
        ROAD_RESENT,
        channel="email",
        at=timedelta(hours=2),
        email="budi@example.com",
    )
    wa = send(inbox, "wa-1", ROAD, at=timedelta(hours=3), phone=PHONE)
    assert form.outcome is Outcome.NEW
    assert mail.complaint_id == form.complaint_id and wa.complaint_id == form.complaint_id
    (person,) = inbox.dedupe.identities()
    assert sorted(person["keys"]) == ["mailto:budi@example.com", f"tel:{PHONE}"]
    assert person["events"][0]["action"] == "link" and person["events"][0]["actor"] == "filing"


def test_an_email_signature_phone_links_the_sender(inbox: Inbox) -> None:
    """An e-mail whose signature carries a phone on a contact line is that phone's person:
    the same complaint sent before by SMS from that phone takes it in."""
    sms = send(inbox, "s-1", ROAD_RESENT, channel="sms", phone=PHONE)
    mail = send(
        inbox,
        "m-1",
        ROAD + "\n\nHormat saya,\nBudi Santoso\nHP/WA: 0812 3456 7890",
        channel="email",
        at=timedelta(hours=5),
        email="budi.s@example.net",
    )
    assert mail.outcome is Outcome.MERGED and mail.complaint_id == sms.complaint_id
    # a number in the text but not on a contact line proves nothing
    other = send(
        inbox,
        "m-2",
        "Petugas dengan nomor 0813 1111 2222 meminta uang di loket.",
        channel="email",
        at=timedelta(hours=6),
        email="someone@example.net",
    )
    assert other.outcome is Outcome.NEW
    keys = [k for p in inbox.dedupe.identities() for k in p["keys"]]
    assert "tel:+6281311112222" not in keys


def test_mass_reports_share_a_cluster_with_a_label_and_size(inbox: Inbox) -> None:
    """Three citizens report the same bridge in their own words: three complaints in one
    cluster, which the queue and the export show together; an unrelated complaint is not in
    it."""
    reports = [
        "Jembatan Sei Lumut di Desa Sungai Bening ambruk tadi malam, warga tidak bisa lewat.",
        "jembatan sei lumut putus pak, anak sekolah tdk bisa lewat. tolong",
        "Lapor, jembatan Sei Lumut Desa Sungai Bening runtuh, akses ke pasar terputus.",
    ]
    ids = [
        send(inbox, f"r-{i}", text, phone=f"+62812000000{i}", at=timedelta(hours=i)).complaint_id
        for i, text in enumerate(reports)
    ]
    lone = send(
        inbox, "x", "Lampu jalan di Jl. Melati mati sejak minggu lalu.", phone="+6281300000009"
    )
    found = [inbox.complaint(i) for i in ids]
    cluster = found[0].cluster_id if found[0] else None
    assert cluster and all(c and c.cluster_id == cluster for c in found)
    assert found[0] and found[0].cluster_size == 3 and "lumut" in (found[0].cluster_label or "")
    assert (inbox.complaint(lone.complaint_id) or found[0]).cluster_id is None
    rows, more = inbox.queue.list(cluster=cluster)
    assert sorted(r.id for r in rows) == sorted(ids) and not more
    assert sorted(c.id for c in inbox.iter_complaints(cluster=cluster)) == sorted(ids)
    notes = events(inbox, ids[1], "clustered")
    assert notes and cluster in notes[0] and "similarity" in notes[0]


# -- the operator's hand ----------------------------------------------------------------------


def test_merge_split_and_unmerge_are_recorded(inbox: Inbox) -> None:
    """An operator merges two complaints, splits messages off and unmerges one; each change
    has its event with who and why; the merged complaint leaves the queue."""
    a = send(inbox, "o-1", ROAD, phone=PHONE)
    b = send(inbox, "o-2", PERMIT, phone="+6281399990000")
    c = send(inbox, "o-3", "Sampah di pasar menumpuk.", phone="+6281399990001")
    merged = inbox.dedupe.merge(a.ticket, b.ticket, actor="rina", reason="the same citizen")
    assert len(merged.messages) == 2
    gone = inbox.complaint(b.complaint_id)
    assert gone and gone.status == "merged" and gone.merged_into == a.complaint_id
    assert inbox.queue.claim("x") is not None and inbox.queue.claim("y") is not None
    assert inbox.queue.claim("z") is None  # a, c claimed; b merged is not on the queue
    assert "merged into this: the same citizen" in events(inbox, a.complaint_id, "merged")[0]
    permit_message = merged.messages[1].id
    split = inbox.dedupe.split(a.ticket, [permit_message], actor="rina", reason="different")
    assert split.ticket not in (a.ticket, b.ticket) and [m.id for m in split.messages] == [
        permit_message
    ]
    assert split.agency == merged.agency and split.status == "open"
    with pytest.raises(DedupeError, match="keeps at least one"):
        inbox.dedupe.split(split.ticket, [permit_message], actor="rina")
    with pytest.raises(DedupeError, match="itself"):
        inbox.dedupe.merge(a.ticket, a.ticket, actor="rina")
    with pytest.raises(DedupeError, match="is merged"):
        inbox.dedupe.merge(a.ticket, b.ticket, actor="rina")
    inbox.dedupe.merge(c.ticket, split.ticket, actor="rina")
    single = inbox.dedupe.unmerge(permit_message, actor="budi", reason="oops")
    assert [m.id for m in single.messages] == [permit_message]
    assert "split off" in events(inbox, single.id, "split")[0]
    with pytest.raises(DedupeError):
        inbox.dedupe.unmerge(999_999, actor="budi")


def test_identities_link_and_unlink(inbox: Inbox) -> None:
    """An operator links a phone and an address (any common spelling); filing then merges
    across them; unlinking is recorded and filing does not link them again by itself."""
    keys = inbox.dedupe.link("0812-3456-7890", "Budi@Example.com", actor="rina", reason="called")
    assert sorted(keys) == ["mailto:budi@example.com", f"tel:{PHONE}"]
    first = send(inbox, "l-1", ROAD, phone=PHONE)
    mail = send(
        inbox, "l-2", ROAD_RESENT, channel="email", email="budi@example.com", at=timedelta(hours=1)
    )
    assert mail.complaint_id == first.complaint_id
    inbox.dedupe.unlink("budi@example.com", actor="rina", reason="wrong person")
    form = send(
        inbox,
        "l-3",
        "Sampah menumpuk di Pasar Sentral.",
        channel="web",
        phone=PHONE,
        email="budi@example.com",
    )
    assert form.outcome is Outcome.NEW
    (person,) = inbox.dedupe.identities("budi@example.com") or [None]
    assert person and person["keys"] == ["mailto:budi@example.com"]
    with inbox.store.transaction() as conn:
        actions = list(
            conn.execute(sa.select(identity_events.c.action, identity_events.c.actor)).all()
        )
    assert ("link", "rina") in actions and ("unlink", "rina") in actions
    for bad in ("not a thing", "mailto:", "12"):
        with pytest.raises(DedupeError):
            identity_key(bad)


def test_cli_merge_split_unmerge_and_identities(database_url: str, tmp_path: Path) -> None:
    """The operator's commands: one line each, a clear error and exit 1 on a mistake."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    box = Inbox.from_config(config)
    a = send(box, "c-1", ROAD, phone=PHONE)
    b = send(box, "c-2", PERMIT, phone="+6281399990000")
    box.close()
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), *args])

    done = run("complaints", "merge", a.ticket, b.ticket, "--reason", "same", "--actor", "rina")
    assert done.exit_code == 0 and f"into {a.ticket}" in done.output
    shown = run("complaints", "show", a.ticket)
    assert "merged" in shown.output and "by rina: " in shown.output
    message_id = json.loads(run("complaints", "show", a.ticket, "--format", "json").output)[
        "messages"
    ][1]["id"]
    split = run("complaints", "unmerge", str(message_id))
    assert split.exit_code == 0 and "a complaint of its own" in split.output
    linked = run(
        "identities", "link", "+62 812-3456-7890", "budi@example.com", "--reason", "phone call"
    )
    assert linked.exit_code == 0 and "mailto:budi@example.com" in linked.output
    listed = run("identities", "list", "--format", "json")
    person = json.loads(listed.output.splitlines()[0])
    assert sorted(person["keys"]) == ["mailto:budi@example.com", f"tel:{PHONE}"]
    assert run("identities", "unlink", "budi@example.com").exit_code == 0
    bad = run("complaints", "merge", a.ticket, "ADU-1999-000001")
    assert bad.exit_code == 1 and "no complaint" in bad.output and "Traceback" not in bad.output
    assert run("identities", "link", "x", "y").exit_code == 1


def test_queue_list_and_export_filter_by_cluster(database_url: str, tmp_path: Path) -> None:
    """``queue list --cluster`` and ``complaints export --cluster`` show a cluster's
    complaints together, with its label and size."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    box = Inbox.from_config(config)
    for i, text in enumerate(
        [
            "Banjir di Perumahan Griya Asri Blok C setinggi lutut, drainase tersumbat sampah.",
            "perumahan griya asri banjir lagi pak, drainase tersumbat",
        ]
    ):
        send(box, f"f-{i}", text, phone=f"+6281211110{i:03d}", at=timedelta(hours=i))
    send(box, "f-x", PERMIT, phone="+6281399990000")
    cluster = next(c.cluster_id for c in box.iter_complaints() if c.cluster_id)
    box.close()
    runner = CliRunner()
    listed = runner.invoke(
        main, ["--config", str(config), "queue", "list", "--cluster", cluster, "--format", "json"]
    )
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert len(rows) == 2 and {r["cluster_id"] for r in rows} == {cluster}
    exported = runner.invoke(
        main, ["--config", str(config), "complaints", "export", "--cluster", cluster]
    )
    lines = [json.loads(line) for line in exported.output.splitlines()]
    assert len(lines) == 2 and all(c["cluster_size"] == 2 and c["cluster_label"] for c in lines)


# -- the portal's own submission ids ------------------------------------------------------------


def test_a_resent_portal_submission_is_a_duplicate(tmp_path: Path) -> None:
    """A portal form carries its own submission id: the same submission posted again under a
    new webhook-id is a duplicate, not a second message."""
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'portal.db'}"},
            "connectors": [{"name": "portal", "type": "web", "secret": SECRET}],
        }
    )
    box = Inbox(config)
    try:
        with serve_wsgi(create_app(box)) as base:
            body = json.dumps({"id": "form-2026-0042", "message": ROAD, "phone": PHONE}).encode()
            answers = [
                requests.post(
                    f"{base}/webhooks/portal",
                    data=body,
                    headers=signed_headers(body, f"msg_{n}"),
                    timeout=10,
                ).json()
                for n in (1, 2)
            ]
        assert [a["outcome"] for a in answers] == ["new", "duplicate"]
        assert answers[0]["ticket"] == answers[1]["ticket"]
        with box.store.transaction() as conn:
            stored = conn.execute(sa.select(messages.c.external_id)).scalars().all()
        assert stored == ["form-2026-0042"]
    finally:
        box.close()


# -- several workers --------------------------------------------------------------------------


CITIZENS = 150
BATCH = 10


@pytest.mark.postgres
def test_two_worker_processes_file_cross_channel_resends_as_one_complaint(
    postgres_url: str, tmp_path: Path
) -> None:
    """150 citizens, known already, each send a complaint by WhatsApp and its resend by SMS at
    once; two ``omnichannel work`` processes file them side by side, ten messages a batch, the
    rows stored so that while one files ten citizens' WhatsApp messages the other files their
    SMS resends: one complaint of two messages per citizen, never two."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    box = Inbox(default_config(url=postgres_url))
    earlier = [  # each citizen is known already (what a first filing would serialize on)
        raw_json(f"old-{n}", PERMIT, channel="sms", sender={"phone": f"+628123400{n:04d}"})
        for n in range(CITIZENS)
    ]
    box.receive_many(earlier)
    raws = []
    for group in range(0, CITIZENS, BATCH):  # a batch of WhatsApp messages, then their resends
        for channel in ("whatsapp", "sms"):
            for n in range(group, group + BATCH):
                phone = f"+628123400{n:04d}"
                text = (
                    f"Jalan di depan rumah no {n} di Desa Sukamaju rusak parah, mohon diperbaiki."
                )
                raws.append(
                    raw_json(f"{channel}-{n}", text, channel=channel, sender={"phone": phone})
                )
    with box.store.transaction() as conn:
        pipeline.store_raw(conn, raws, T0)
    config = tmp_path / "omnichannel.toml"
    config.write_text(
        f'[database]\nurl = "{postgres_url}"\n[filing]\nbatch_size = {BATCH}\n',
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "omnichannel", "--config", str(config), "work", "--once"]
    env = os.environ | {"PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    workers = [
        subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=240)
        assert worker.returncode == 0, err.decode()
    with box.store.transaction() as conn:
        per_complaint = conn.execute(
            sa.select(messages.c.complaint_id, sa.func.count()).group_by(messages.c.complaint_id)
        ).all()
        opened = conn.execute(sa.select(sa.func.count()).select_from(complaints)).scalar_one()
    box.close()
    assert opened == 2 * CITIZENS
    assert sorted(n for _, n in per_complaint) == [1] * CITIZENS + [2] * CITIZENS


@pytest.mark.postgres
def test_a_known_citizens_two_messages_filed_in_the_same_instant_make_one_complaint(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worst moment, made to happen: two workers (two connections) each plan one of a
    known citizen's two messages and wait for each other before writing. The person's lock
    makes the second wait for the first's commit (the wait for the other times out), so it
    sees the complaint and merges: without the lock both would open one."""
    from tests.conftest import _truncate

    _truncate(postgres_url)
    boxes = [Inbox(default_config(url=postgres_url)) for _ in range(2)]
    try:
        boxes[0].receive_many([raw_json("earlier", PERMIT, sender={"phone": PHONE})])
        rendezvous = threading.Barrier(2)
        planned = filing._plan

        def plan_and_wait(*args: Any) -> Any:
            found = planned(*args)
            with contextlib.suppress(threading.BrokenBarrierError):
                rendezvous.wait(timeout=2)
            return found

        monkeypatch.setattr(filing, "_plan", plan_and_wait)
        raws = [
            raw_json(f"{channel}-1", ROAD, channel=channel, sender={"phone": PHONE})
            for channel in ("whatsapp", "sms")
        ]
        with boxes[0].store.transaction() as conn:
            pipeline.store_raw(conn, raws, T0)
        for box in boxes:
            box.worker.batch_size = 1
        threads = run_threads(lambda box: box.worker.file_backlog(), [(b,) for b in boxes])
        assert not any(t.is_alive() for t in threads)
        with boxes[0].store.transaction() as conn:
            outcomes = sorted(conn.execute(sa.select(messages.c.outcome)).scalars())
        assert outcomes == ["merged", "new", "new"]  # the earlier permit, the road, its resend
    finally:
        for box in boxes:
            box.close()


# -- what the review found ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a-" * 10000,
        "a." * 10000,
        "1.000." * 5000,
        "1" * 100_000,
        "㌫" * 20000,  # NFKC makes it five times longer
        "Rp " + "9" * 400,
        "1" * 400 + "rb",
        "jalan ᧚ rusak",  # a digit int() does not take
        "𐩀",
        "izin 1" + "1" * 5000 + "/2",
        "a@" * 20000,
        "ok\n" + "A" * 10000,
    ],
)
def test_hostile_texts_have_a_signature(text: str) -> None:
    """Texts made to break or stall the similarity code (overflowing amounts, digits that
    are not decimal, runs that make a regular expression backtrack) give a signature, as body
    and as subject."""
    for sig in (signature(text), signature("x", subject=text)):
        assert len(sig.words) <= 300
        compare(sig, sig)
        bands(sig)


def test_a_quoted_signature_links_nobody(inbox: Inbox) -> None:
    """A citizen's reply quoting the staff's signature (``> HP/WA: …``) does not make the
    citizen that phone's person."""
    staff = "+6281299990000"
    send(inbox, "s-1", ROAD, channel="sms", phone=staff)
    reply = (
        "Terima kasih, mohon dikabari.\n\nOn Mon, 1 Dec 2026 at 09:00, staf@example.go.id wrote:"
        "\n> Laporan sudah kami terima.\n> Salam,\n> HP/WA: 0812-9999-0000"
    )
    send(inbox, "m-1", reply, channel="email", email="warga@example.com", at=timedelta(hours=1))
    assert inbox.dedupe.identities() == []


def test_greetings_alone_resent_are_one_complaint(inbox: Inbox) -> None:
    """A message of nothing but politeness, sent twice: the second is the same complaint (the
    same text again); another such text is not."""
    first = send(inbox, "g-1", "Tolong segera ditindaklanjuti pak", phone=PHONE)
    again = send(inbox, "g-2", "tolong segera ditindaklanjuti pak!", phone=PHONE)
    other = send(inbox, "g-3", "Halo min", phone=PHONE, at=timedelta(minutes=5))
    assert again.complaint_id == first.complaint_id
    assert other.complaint_id != first.complaint_id


def test_a_merged_complaints_ticket_reaches_the_one_it_was_merged_into(inbox: Inbox) -> None:
    """A citizen quoting the ticket of a complaint an operator merged away reaches the
    complaint the team works on."""
    a = send(inbox, "t-1", ROAD, phone=PHONE)
    b = send(inbox, "t-2", PERMIT, phone="+6281399990000")
    inbox.dedupe.merge(a.ticket, b.ticket, actor="rina")
    asked = send(
        inbox,
        "t-3",
        f"Bagaimana perkembangan laporan {b.ticket}?",
        channel="sms",
        phone="+6281300000001",
    )
    assert asked.outcome is Outcome.MERGED and asked.complaint_id == a.complaint_id


def test_a_split_complaint_answers_its_own_citizen(tmp_path: Path) -> None:
    """Splitting a citizen's message out of another's complaint: the new complaint is answered
    at that citizen's address, and the original keeps its own."""
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{tmp_path / 's.db'}"},
            "smtp": {"host": "127.0.0.1", "port": 2525, "from": "pengaduan@example.go.id"},
        }
    )
    box = Inbox(config)
    try:
        ani = send(box, "a", ROAD, channel="email", email="ani@example.com")
        budi = send(box, "b", PERMIT, channel="email", email="budi@example.com")
        merged = box.dedupe.merge(ani.ticket, budi.ticket, actor="rina")
        split = box.dedupe.split(ani.ticket, [merged.messages[1].id], actor="rina")
        with box.store.transaction() as conn:
            routes = dict(conn.execute(sa.select(complaints.c.id, complaints.c.reply_to)).all())
        assert routes[split.id] == "budi@example.com"
        assert routes[ani.complaint_id] == "ani@example.com"
    finally:
        box.close()


def test_operator_mistakes_are_one_line_errors(database_url: str, tmp_path: Path) -> None:
    """A message id no database holds, an identity longer than any, a very long actor name:
    a clear error or a truncated record, never a traceback."""
    config = tmp_path / "omnichannel.toml"
    config.write_text(f'[database]\nurl = "{database_url}"\n', encoding="utf-8")
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(main, ["--config", str(config), *args])

    for args in (
        ("complaints", "unmerge", "99999999999999999999"),
        ("complaints", "merge", "99999999999999999999", "1"),
        ("identities", "link", "wa:" + "x" * 400, "budi@example.com"),
    ):
        result = run(*args)
        assert result.exit_code in (1, 2), (args, result.output)
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    linked = run("identities", "link", PHONE, "budi@example.com", "--actor", "x" * 300)
    assert linked.exit_code == 0, linked.output
