"""Anonymous and confidential complaints: who sees a sender, and where it never goes.

Anonymous: nobody on the team sees who (queue, ``complaints show``, the Python API), exports and
forwards hold no identity, the logs neither; the identity is kept sealed, for the
acknowledgement the citizen asked for and for dedupe only. Confidential: the team sees the
sender; exports and forwards do not, unless an operator asks with a flag that is recorded.
Set by the web form, by a keyword on SMS, WhatsApp and e-mail (``#ANONIM``, ``#RAHASIA``), or
by an operator.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from normalizer.keywords import take_keywords
from omnichannel import Inbox, Outcome
from omnichannel.cli import main
from omnichannel.demo.standins import GraphApi
from omnichannel.store.tables import outbox
from omnichannel.testing.http import serve_wsgi
from omnichannel.testing.signing import meta_signature, standard_webhooks_headers
from tests import smtp
from tests.receiver import SECRET, Receiver
from tests.smtp import SmtpServer

smtp_server = smtp.smtp_server  # the fixture: a real SMTP server on loopback
PORTAL_SECRET = "whsec_cHJpdmFjeS1wb3J0YWwtc2VjcmV0"
APP_SECRET, VERIFY, TOKEN, PNID = "rahasia-aplikasi", "verifikasi", "EAAG-akses-privasi", "1065403"
NAME, EMAIL, PHONE = "Siti Aminah", "siti.aminah@example.id", "+6281355550123"
WA_PHONE = "+6285299990001"
OUR_LOGGERS = ("omnichannel", "connectors", "normalizer", "waitress")
"""Whose log lines are ours (the test's SMTP server, aiosmtpd, logs every address it gets)."""


@pytest.fixture
def graph() -> Iterator[tuple[GraphApi, str]]:
    api = GraphApi(TOKEN, [PNID])
    with serve_wsgi(api) as url:
        yield api, url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def config_path(
    tmp_path: Path,
    database_url: str,
    smtp_server: SmtpServer,
    receiver: Receiver,
    graph: tuple[GraphApi, str],
) -> Path:
    """A deployment: the portal, WhatsApp Cloud, outgoing mail, a webhook forwarder."""
    path = tmp_path / "omnichannel.toml"
    path.write_text(
        f"""
[database]
url = "{database_url}"

[smtp]
host = "127.0.0.1"
port = {smtp_server.port}
from = "Pengaduan <pengaduan@example.go.id>"

[[forwarders]]
name = "agency"
type = "webhook"
url = "{receiver.url}"
secret = "{SECRET}"

[[connectors]]
name = "portal"
type = "web"
secret = "{PORTAL_SECRET}"

[[connectors]]
name = "wa"
type = "whatsapp-cloud"
app_secret = "{APP_SECRET}"
verify_token = "{VERIFY}"
access_token = "{TOKEN}"
phone_number_ids = ["{PNID}"]
graph_api_url = "{graph[1]}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def inbox(config_path: Path) -> Iterator[Inbox]:
    with Inbox.from_config(config_path) as opened:
        yield opened


def post_portal(inbox: Inbox, form: dict[str, Any]) -> Any:
    body = json.dumps(form).encode()
    headers = {"Content-Type": "application/json", **standard_webhooks_headers(PORTAL_SECRET, body)}
    url = "https://pengaduan.example.go.id/webhooks/portal"
    return inbox.handle_webhook("portal", "POST", url, headers, body)


def post_whatsapp(inbox: Inbox, wamid: str, text: str, phone: str = WA_PHONE) -> Any:
    wa_id = phone.lstrip("+")
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "6281100000002", "phone_number_id": PNID},
        "contacts": [{"profile": {"name": "Rahmat"}, "wa_id": wa_id}],
        "messages": [
            {
                "from": wa_id,
                "id": wamid,
                "timestamp": str(int(time.time())),
                "type": "text",
                "text": {"body": text},
            }
        ],
    }
    document = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }
    body = json.dumps(document).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Hub-Signature-256": meta_signature(body, APP_SECRET),
    }
    url = "https://pengaduan.example.go.id/webhooks/wa"
    return inbox.handle_webhook("wa", "POST", url, headers, body)


def deliver_all(inbox: Inbox, timeout: float = 30) -> None:
    """Run the outbox until nothing is pending or sending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        inbox.outbox.deliver_due()
        with inbox.store.transaction() as conn:
            waiting = conn.execute(
                sa.select(sa.func.count()).where(outbox.c.status.in_(("pending", "sending")))
            ).scalar_one()
        if not waiting:
            return
        time.sleep(0.02)
    raise AssertionError("the outbox did not drain")


def cli(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout, result.stderr


def holds_identity(text: str, *values: str) -> list[str]:
    """The identity values (and the phone's national digits) found in ``text``."""
    found = [v for v in values if v and v.lower() in text.lower()]
    return found + [p[3:] for p in values if p.startswith("+62") and p[3:] in text]


def test_keywords_are_whole_tokens_in_any_case_and_taken_out() -> None:
    """``#RAHASIA`` counts alone or with punctuation, in any case, never inside a word or an
    address, and leaves the text without it."""
    assert take_keywords("Jalan rusak #rahasia.", ("#RAHASIA",)) == ("Jalan rusak .", True)
    assert take_keywords("#RAHASIA\nPungli di loket", ("#RAHASIA",)) == ("Pungli di loket", True)
    assert take_keywords("tag #RAHASIAKU", ("#RAHASIA",)) == ("tag #RAHASIAKU", False)
    assert take_keywords("x##RAHASIA y", ("#RAHASIA",)) == ("x##RAHASIA y", False)
    assert take_keywords("Jalan rusak", ()) == ("Jalan rusak", False)


def test_an_anonymous_web_complaint_shows_nobody_anywhere(
    inbox: Inbox,
    config_path: Path,
    smtp_server: SmtpServer,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An anonymous portal complaint that asked to be answered: the export, the forward, the
    queue listing, the team's view and the logs hold no identity, and the acknowledgement still
    goes to the address the citizen gave."""
    for name in OUR_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    form = {
        "id": "anon-1",
        "name": NAME,
        "email": EMAIL,
        "phone": PHONE,
        "subject": "Pungutan liar di loket perizinan",
        "message": "Petugas loket meminta uang tambahan agar izin cepat terbit.",
        "anonymous": True,
        "contact_ok": True,
    }
    answer = post_portal(inbox, form)
    assert answer.status == 200, answer.body
    ticket = json.loads(answer.body)["ticket"]
    deliver_all(inbox)
    team = inbox.complaint(ticket)
    assert (
        team is not None
        and team.anonymous
        and team.sender.model_dump()
        == {
            "name": None,
            "email": None,
            "phone": None,
            "handle": None,
        }
    )
    shown = [
        cli(config_path, "complaints", "export", "--format", "jsonl")[1],
        cli(config_path, "complaints", "export", "--format", "csv")[1],
        cli(config_path, "queue", "list", "--format", "json")[1],
        cli(config_path, "queue", "list")[1],
        cli(config_path, "complaints", "show", ticket)[1],
        cli(config_path, "complaints", "list", "--format", "json")[1],
        json.dumps([seen.json() for seen in receiver.seen]),
        "\n".join(r.getMessage() for r in caplog.records if r.name.split(".")[0] in OUR_LOGGERS),
    ]
    assert receiver.seen, "the complaint was not forwarded"
    for where, text in zip(
        ["export", "csv", "queue", "table", "show", "list", "forward", "logs"], shown, strict=True
    ):
        assert not holds_identity(text, NAME, EMAIL, PHONE), where
    assert [m.rcpt_tos for m in smtp_server.messages] == [[EMAIL]]
    assert ticket in smtp_server.messages[0].message["Subject"]


def test_a_confidential_whatsapp_complaint_shows_its_sender_to_the_team_only(
    inbox: Inbox, config_path: Path, receiver: Receiver
) -> None:
    """``#RAHASIA`` on WhatsApp makes the complaint confidential and leaves its text: the
    team's queue and view show the sender; the export and the forward do not; an export with
    --include-confidential does, and records who asked and why on the complaint."""
    answer = post_whatsapp(
        inbox, "wamid.conf-1", "#RAHASIA Kepala seksi meminta imbalan untuk izin."
    )
    assert answer.status == 200
    deliver_all(inbox)
    [row], _ = inbox.queue.list()
    assert row.confidential and row.sender.phone == WA_PHONE
    team = inbox.complaint(row.id)
    assert team is not None and team.sender.phone == WA_PHONE and "#RAHASIA" not in team.body
    queue_json = cli(config_path, "queue", "list", "--format", "json")[1]
    assert json.loads(queue_json)["sender"]["phone"] == WA_PHONE
    exported = cli(config_path, "complaints", "export")[1]
    forwarded = json.dumps([seen.json() for seen in receiver.seen])
    assert receiver.seen and not holds_identity(exported + forwarded, WA_PHONE, "Rahmat")
    assert "wamid.conf-1" not in exported + forwarded  # a wamid can spell the phone: sealed
    code, _, err = cli(config_path, "complaints", "export", "--include-confidential")
    assert code == 2 and "--actor and --reason" in err
    code, disclosed, _ = cli(
        config_path,
        "complaints",
        "export",
        "--include-confidential",
        "--actor",
        "ani",
        "--reason",
        "permintaan Ombudsman no. 12/2026",
    )
    assert code == 0 and json.loads(disclosed)["sender"]["phone"] == WA_PHONE
    events = inbox.queue.events(row.id)
    assert [(e["kind"], e["actor"]) for e in events if e["kind"] == "disclosed"] == [
        ("disclosed", "ani")
    ]
    assert "Ombudsman" in events[-1]["note"]


def test_a_keyword_in_a_follow_up_makes_the_complaint_confidential(inbox: Inbox) -> None:
    """The same citizen's follow-up with ``#RAHASIA`` joins the complaint and makes it
    confidential; a later message without the keyword never makes it public again."""
    first = post_whatsapp(
        inbox, "wamid.f-1", "Jalan di depan SD Inpres 3 rusak berat, mohon diperbaiki."
    )
    assert first.status == 200
    [row], _ = inbox.queue.list()
    assert not row.confidential
    post_whatsapp(
        inbox, "wamid.f-2", "#rahasia jalan di depan SD Inpres 3 rusak berat, mohon diperbaiki"
    )
    post_whatsapp(
        inbox, "wamid.f-3", "Jalan di depan SD Inpres 3 rusak berat mohon diperbaiki segera"
    )
    [after], _ = inbox.queue.list()
    complaint = inbox.complaint(after.id)
    assert after.id == row.id and after.confidential
    assert complaint is not None and len(complaint.messages) == 3
    assert [m.outcome for m in complaint.messages][1:] == [Outcome.MERGED, Outcome.MERGED]


def test_an_operator_marks_a_complaint_and_it_is_recorded(inbox: Inbox, config_path: Path) -> None:
    """``complaints mark`` makes a complaint confidential, then no longer confidential, then
    anonymous — each recorded with who and why — and anonymity is for good."""
    post_whatsapp(inbox, "wamid.m-1", "Pelayanan IMB di kantor kecamatan sangat lambat.")
    [row], _ = inbox.queue.list()
    mark = ["complaints", "mark", row.ticket, "--actor", "budi"]
    assert cli(config_path, *mark, "--confidential", "--reason", "menyebut pejabat")[0] == 0
    assert inbox.queue.list()[0][0].confidential
    assert cli(config_path, *mark, "--not-confidential", "--reason", "salah tandai")[0] == 0
    assert not inbox.queue.list()[0][0].confidential
    code, out, _ = cli(config_path, *mark, "--anonymous", "--reason", "permintaan warga")
    assert code == 0 and "anonymous" in out
    anonymous = inbox.queue.list()[0][0]
    assert anonymous.anonymous and anonymous.sender.phone is None
    notes = [e["note"] for e in inbox.queue.events(row.id) if e["kind"] == "privacy"]
    assert notes == [
        "confidential on: menyebut pejabat",
        "confidential off: salah tandai",
        "anonymous on: permintaan warga",
    ]
    with pytest.raises(Exception, match="stays anonymous"):
        inbox.queue.set_privacy(row.id, actor="x", reason="y", anonymous=False)
    code, _, err = cli(config_path, *mark, "--reason", "nothing")
    assert code != 0 and "--anonymous, --confidential" in err
