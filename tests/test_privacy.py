"""Masking of personal data (omnichannel.privacy) and where it is applied: log lines, error
texts, /healthz and /metrics, exports and forwards."""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from omnichannel import Inbox
from omnichannel.cli import main
from omnichannel.config import parse_config
from omnichannel.errors import ConfigError, Undeliverable
from omnichannel.forwarders import Forward
from omnichannel.http import create_app
from omnichannel.logs import configure_logging
from omnichannel.mail import Mailer, SmtpOptions
from omnichannel.outbound import Outbound
from omnichannel.privacy import (
    MAX_SCAN,
    Masker,
    looks_like_nik,
    mask_email,
    mask_name,
    mask_phone,
    mask_text,
)
from omnichannel.store.tables import outbox
from omnichannel.testing.hostile import HOSTILE_STRINGS
from omnichannel.testing.http import serve_wsgi
from tests.helpers import json_doc, raw_json
from tests.receiver import SECRET, Receiver
from tests.smtp import SmtpServer, smtp_server  # noqa: F401

TOKEN_SECRET = "tok-privacy-8f2e1c"
PHONE = "+6281234567890"
EMAIL = "budi.santoso@example.id"
NIK = "3273011508850001"  # Kota Bandung, born 15-08-1985, serial 0001
NIK_WOMAN = "3273015508850002"  # the same day, a woman: day + 40
NPWP = "12.345.678.9-012.345"
COMPLAINT_TEXT = f"Izin saya belum terbit. NIK {NIK}, NPWP {NPWP}. Tiket ADU-2026-000123."
MASKED_TEXT = (
    "Izin saya belum terbit. NIK 32**************, NPWP 12.***.***.*-***.***. "
    "Tiket ADU-2026-000123."
)

# -- one value ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "+6281234567890",
        "0812-3456-7890",
        "0812 3456 7890",
        "081234567890",
        "6281234567890",
        "whatsapp:+6281234567890",
        "tel:+62 812-3456-7890",
        " +62 (812) 3456-7890 ",
    ],
)
def test_a_mobile_number_in_any_written_form_is_masked_alike(written: str) -> None:
    """Every form an Indonesian mobile number is written in masks to the country code, the
    operator's prefix and the last four digits."""
    assert mask_phone(written) == "+62812****7890"


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("+62215551234", "+6221****234"),  # Jakarta: the area code, not a subscriber digit
        ("(0361) 234-567", "+62361****567"),
        ("+12025550123", "+1202****123"),
        ("+6281234567", "+6281****567"),  # too short to be valid: less is kept
    ],
)
def test_landlines_foreign_and_short_numbers_keep_less(number: str, expected: str) -> None:
    """An area code or a number too short to be valid keeps fewer digits; never more than
    half of those after the codes."""
    assert mask_phone(number) == expected


@pytest.mark.parametrize("number", ["+6281234567890", "+62215551234", "+6281234567", "0812345"])
def test_a_masked_phone_shows_at_most_half_of_the_subscriber_digits(number: str) -> None:
    """Of the digits after the country and operator or area codes, at most half are shown."""
    masked = mask_phone(number)
    parsed = phonenumbers.parse(number, "ID")
    national = phonenumbers.national_significant_number(parsed)
    shown = re.sub(r"\D", "", masked.split("****")[0])[len(str(parsed.country_code)) :]
    code = len(shown)
    tail = re.sub(r"\D", "", masked.split("****")[1])
    assert "****" in masked and code <= 3
    assert len(tail) <= (len(national) - code) // 2


@pytest.mark.parametrize("service", ["TELKOMSEL", "3636", "14045", ""])
def test_sender_names_and_short_codes_are_services_and_stay(service: str) -> None:
    """A sender name or a short code is a service, not a person: it is returned as it is."""
    assert mask_phone(service) == service


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        (EMAIL, "bu***@example.id"),
        ("ab@kantor.go.id", "a***@kantor.go.id"),
        ("x@gmail.com", "***@gmail.com"),
        ("mailto:Siti@Example.ID", "Si***@Example.ID"),
    ],
)
def test_an_email_address_keeps_two_characters_at_most_half_and_the_domain(
    address: str, expected: str
) -> None:
    """The first two characters of the local part (at most half of it) and the domain."""
    assert mask_email(address) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Budi Santoso", "B*** S***"), ("  Siti  Nur Aisyah ", "S*** N*** A***"), ("", "")],
)
def test_a_name_keeps_the_initial_of_each_word(name: str, expected: str) -> None:
    """Each word of a name becomes its initial and ``***``."""
    assert mask_name(name) == expected


@pytest.mark.parametrize(
    ("digits", "expected"),
    [
        (NIK, True),
        (NIK_WOMAN, True),
        ("0073011508850001", False),  # no province 00
        ("9973011508850001", False),  # no province 99
        ("3200011508850001", False),  # regency 00
        ("3273013208850001", False),  # day 32
        ("3273017208850001", False),  # day 72 (a woman's days end at 71)
        ("3273011513850001", False),  # month 13
        ("3273011508850000", False),  # serial 0000
        ("327301150885000", False),  # 15 digits
    ],
)
def test_the_nik_structure_is_checked(digits: str, expected: bool) -> None:
    """A NIK has a province code, a regency and district, a birth date (day + 40 for a
    woman) and a non-zero serial."""
    assert looks_like_nik(digits) is expected


# -- text --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("hubungi 0812-3456-7890 ya", "hubungi +62812****7890 ya"),
        ("WA: whatsapp:+6281234567890", "WA: whatsapp:+62812****7890"),
        ("nomor 62812 3456 7890.", "nomor +62812****7890."),
        ("kantor (021) 5551234", "kantor +6221****234"),
        ("HP 084123456789", "HP +6284****6789"),  # a range phonenumbers does not know
        (f"surel {EMAIL}, terima kasih", "surel bu***@example.id, terima kasih"),
        (f"Budi <{EMAIL}> menulis:", "Budi <bu***@example.id> menulis:"),
        (f"{NIK} adalah NIK saya", "32************** adalah NIK saya"),
        ("KTP 3273 0115 0885 0001", "KTP 32** **** **** ****"),
        ("nik: 32.73.01.150885.0001", "nik: 32.**.**.******.****"),
        ("NIK saya 1234567890123456.", "NIK saya 12**************."),  # after the word NIK
        (f"NPWP {NPWP}", "NPWP 12.***.***.*-***.***"),
        ("npwp: 123456789012000", "npwp: 12*************"),  # bare: after the word only
        ("NPWP 0123456789012345", "NPWP 01**************"),  # the 16-digit NPWP since 2024
    ],
)
def test_text_has_each_kind_masked_in_place(text: str, masked: str) -> None:
    """Phones, e-mail addresses, NIK and NPWP numbers in their Indonesian written forms are
    masked where they stand; the words around them are kept."""
    assert mask_text(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "Tiket ADU-2026-000123 belum dijawab",
        "izin PBG-2026-000123 dan nomor izin 503/1234/DPMPTSP/2026",
        "retribusi Rp 1.500.000, denda Rp1.500.000,00, Rp 62.500.000",
        "Rp 1.500.000.000.000.000",
        "tanggal 12-03-2026, 2026-03-12, 12/03/2026, jam 08.30 atau 14:30",
        "2026-11-30T02:00:00Z",
        "NIB 1234567890123",
        "transaksi 9876543210987654",  # 16 digits without a NIK's structure
        "rekening BRI 012301012345505",  # 15 digits, no NPWP's form nor the word
        "phone_number_id 106540352242922",
        "meter PLN 512345678901, ID pelanggan 0123456789",
        "call center 14045, SMS ke 3636",
        "kode pos 40115, RT 003/RW 005, 150 m2, 3,5 km",
        "server 127.0.0.1:8080, versi 9.0.43",
        "kode 3273011508850001x",  # a NIK's digits inside a longer code
        "SM0123456789abcdef0123456789abcdef sha256:08123456789012345678abcdef",
    ],
)
def test_tickets_amounts_dates_and_permit_numbers_stay(text: str) -> None:
    """What is not personal data (tickets, permit and business numbers, amounts, dates,
    times, accounts, service numbers, ids) is left exactly as it is."""
    assert mask_text(text) == text


def test_only_the_kinds_asked_for_are_masked() -> None:
    """Each kind can be turned off; the 16-digit number is masked for either ``nik`` or
    ``npwp`` (a person's NPWP is their NIK), the written NPWP for ``npwp`` only."""
    text = f"{PHONE} {EMAIL} {NIK} {NPWP}"
    assert (
        mask_text(text, phones=False, emails=False)
        == f"{PHONE} {EMAIL} 32{'*' * 14} 12.***.***.*-***.***"
    )
    assert mask_text(text, nik=False, npwp=False) == f"+62812****7890 bu***@example.id {NIK} {NPWP}"
    assert mask_text(text, nik=False, phones=False, emails=False).count("*") == 14 + 13
    assert (
        mask_text(text, npwp=False, phones=False, emails=False)
        == f"{PHONE} {EMAIL} 32{'*' * 14} {NPWP}"
    )


def test_masking_twice_changes_nothing_more() -> None:
    """A masked text has nothing left to mask: the masks are not themselves found."""
    text = f"{COMPLAINT_TEXT} HP 0812-3456-7890, {EMAIL}, KTP {NIK_WOMAN}"
    once = mask_text(text)
    assert mask_text(once) == once
    assert not any(value in once for value in ("3456", "santoso", NIK_WOMAN[2:]))


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS, ids=range(len(HOSTILE_STRINGS)))
def test_hostile_strings_pass_through_every_function(hostile: str) -> None:
    """Every hostile string (and fifty of it in a row) gives a string from every masking
    function, and no full phone number is left in text."""
    for value in (hostile, hostile * 50 if len(hostile) < 100 else hostile):
        for function in (mask_text, mask_phone, mask_email, mask_name):
            assert isinstance(function(value), str)
        assert PHONE not in mask_text(value)


def test_past_the_first_mebibyte_digit_runs_are_masked_whole() -> None:
    """A text longer than MAX_SCAN is searched value by value up to it; past it every run
    of 7 or more digits and every e-mail address is masked without looking further."""
    filler = "Jalan rusak di depan pasar. " * (MAX_SCAN // 28 + 10)
    text = f"HP 0812-3456-7890. {filler}HP 0812-3456-7890, {EMAIL}, NIK {NIK}, Rp 1.500.000."
    masked = mask_text(text)
    assert masked.startswith("HP +62812****7890. Jalan")
    tail = "HP ****-****-****, bu***@example.id, NIK ****************, Rp *.***.***."
    assert masked.endswith(f"pasar. {tail}")


def test_a_masker_applies_the_configured_kinds() -> None:
    """``[privacy] mask_in_text`` picks the kinds; the default is NIK and NPWP, and an unknown
    kind is a configuration error naming the key."""
    config = parse_config({"privacy": {"mask_in_text": ["phones", "nik"]}})
    masker = Masker.from_config(config)
    assert (
        masker.text(f"{PHONE} {NIK} {NPWP} {EMAIL}")
        == f"+62812****7890 32{'*' * 14} {NPWP} {EMAIL}"
    )
    default = Masker.from_config(parse_config({}))
    assert default.kinds == {"nik", "npwp"} and parse_config({}).privacy.mask_logs is True
    with pytest.raises(ConfigError, match=r"privacy\.mask_in_text"):
        parse_config({"privacy": {"mask_in_text": ["names"]}})


def test_an_outbound_repr_shows_neither_address_nor_text() -> None:
    """An Outbound (what is sent to a citizen) never shows its address or text in a
    traceback or a log line."""
    item = Outbound("ack-1", "reply", PHONE, f"NIK Anda {NIK}", "ADU-2026-000001", subject=EMAIL)
    shown = repr(item)
    assert "ack-1" in shown and PHONE not in shown and NIK not in shown and EMAIL not in shown


# -- logs --------------------------------------------------------------------------------------


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    """The omnichannel logger is put back as it was after the test configures it."""
    logger = logging.getLogger("omnichannel")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_log_lines_mask_personal_data_and_still_redact_secrets(
    restore_loggers: None, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    """A log line and an exception's text holding a phone, an e-mail address and a NIK are
    written masked, and a configured secret is still ``[redacted]``."""
    configure_logging(secrets=[TOKEN_SECRET], fmt=fmt)
    log = logging.getLogger("omnichannel.test_privacy")
    log.warning("ack to %s <%s>, NIK %s, token=%s", PHONE, EMAIL, NIK, TOKEN_SECRET)
    try:
        raise Undeliverable(f"550 <{EMAIL}>: no such user, {PHONE}")
    except Undeliverable:
        log.exception("sending failed")
    err = capsys.readouterr().err
    assert "+62812****7890" in err and "bu***@example.id" in err and "32**************" in err
    assert "token=[redacted]" in err and "550 <bu***@example.id>: no such user" in err
    for raw in (PHONE, EMAIL, NIK, TOKEN_SECRET, "081234567890"):
        assert raw not in err


def test_log_masking_can_be_turned_off(
    restore_loggers: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With ``mask=False`` (``[privacy] mask_logs = false``) the line is written as it is."""
    configure_logging(mask=False)
    logging.getLogger("omnichannel.test_privacy").warning("NIK %s", NIK)
    assert f"NIK {NIK}" in capsys.readouterr().err


# -- errors ------------------------------------------------------------------------------------


def test_an_smtp_refusal_quoting_the_recipient_is_masked(smtp_server: SmtpServer) -> None:  # noqa: F811
    """An SMTP server's refusal that quotes the citizen's address reaches the outbox (and any
    operator) with the address masked."""
    options = SmtpOptions.model_validate(
        {"host": smtp_server.host, "port": smtp_server.port, "from": "pengaduan@example.go.id"}
    )
    smtp_server.fail_next("RCPT", 550, f"5.1.1 <{EMAIL}>: Recipient address rejected")
    item = Outbound("ack-1", "acknowledgement", EMAIL, "Terima kasih.", "ADU-2026-000001")
    with pytest.raises(Undeliverable) as caught:
        Mailer(options).send(item)
    assert "5.1.1 <bu***@example.id>: Recipient address rejected" in str(caught.value)
    assert EMAIL not in str(caught.value)


class _Refusing:
    """A forwarder whose far side refuses, quoting personal data in its answer."""

    name = "refusing"

    def forward(self, item: Forward) -> str | None:
        raise Undeliverable(f"refused {PHONE} / {EMAIL} / NIK {NIK}")


def test_the_outbox_keeps_error_texts_masked(tmp_path: Path) -> None:
    """A delivery refused with an answer that quotes a phone, an address and a NIK is dead
    with that answer masked in ``last_error``."""
    inbox = Inbox(parse_config({"database": {"url": f"sqlite:///{tmp_path / 'o.db'}"}}))
    try:
        inbox.add_forwarder(_Refusing())
        inbox.receive(raw_json("sms-1", sender={"phone": "081234567890"}))
        inbox.outbox.drain()
        with inbox.store.transaction() as conn:
            [error] = conn.execute(
                sa.select(outbox.c.last_error).where(outbox.c.kind == "forward")
            ).scalars()
    finally:
        inbox.close()
    assert (
        error == "Undeliverable: refused +62812****7890 / bu***@example.id / NIK 32**************"
    )


# -- /healthz and /metrics ---------------------------------------------------------------------


def _get(base_url: str, path: str) -> str:
    host, port = base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", path)
    body = connection.getresponse().read().decode()
    connection.close()
    return body


def test_healthz_and_metrics_hold_no_personal_data(sqlite_inbox: Inbox) -> None:
    """A connector whose last error quotes a phone, an address and a NIK, and a webhook
    request to a path naming a NIK: /healthz and /metrics show none of them, masked or not
    (their labels are connector names, states and outcomes)."""
    sqlite_inbox.record_health("files", f"login failed for {EMAIL} at {PHONE}, NIK {NIK}")
    with serve_wsgi(create_app(sqlite_inbox)) as base_url:
        host, port = base_url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("POST", f"/webhooks/{NIK}", body=b"{}")
        connection.getresponse().read()
        connection.close()
        health, metrics = _get(base_url, "/healthz"), _get(base_url, "/metrics")
    assert json.loads(health)["connectors"]["files"]["last_error"] == "error, see the log"
    for body in (health, metrics):
        for value in ("81234567890", "budi", "example.id", "3273", "****"):
            assert value not in body


# -- exports and forwards ----------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, database_url: str) -> Path:
    """A config for the backend under test and a complaint whose text has a NIK and NPWP."""
    (tmp_path / "omnichannel.toml").write_text(
        f'[database]\nurl = "{database_url}"\n\n[[connectors]]\nname = "files"\ntype = "files"\n',
        encoding="utf-8",
    )
    (tmp_path / "nik.json").write_bytes(
        json_doc(
            "nik-1",
            COMPLAINT_TEXT,
            channel="web",
            subject=f"NIK {NIK_WOMAN}",
            sender={"name": "Siti", "phone": "081234567890"},
        )
    )
    return tmp_path


def run(workdir: Path, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(workdir / "omnichannel.toml"), *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_exports_mask_the_nik_and_npwp_in_the_text(workdir: Path) -> None:
    """``complaints export`` (JSON Lines and CSV) gives the subject, body and messages with
    the NIK and NPWP masked and the rest of the text as written; the team's own view
    (``complaints show``) shows the text as written."""
    run(workdir, "ingest", "--connector", "files", str(workdir / "nik.json"))
    exported = json.loads(run(workdir, "complaints", "export", "--format", "jsonl"))
    body = MASKED_TEXT
    assert exported["body"] == body and exported["messages"][0]["body"] == body
    assert exported["subject"] == "NIK 32**************"
    [row] = list(
        csv.DictReader(io.StringIO(run(workdir, "complaints", "export", "--format", "csv")))
    )
    assert row["body"] == body and row["subject"] == "NIK 32**************"
    shown = json.loads(run(workdir, "complaints", "show", exported["ticket"], "--format", "json"))
    assert shown["body"] == COMPLAINT_TEXT and shown["subject"] == f"NIK {NIK_WOMAN}"


def _forwarding_inbox(url: str, forward_url: str, **privacy: Any) -> Inbox:
    forwarder = {"name": "agency", "type": "webhook", "url": forward_url, "secret": SECRET}
    data: dict[str, Any] = {"database": {"url": url}, "forwarders": [forwarder]}
    if privacy:
        data["privacy"] = privacy
    return Inbox(parse_config(data))


def test_a_forward_carries_the_nik_and_npwp_masked(database_url: str) -> None:
    """The complaint's JSON a real receiver gets from the webhook forwarder has the NIK and
    NPWP in its text masked, and the ticket as it is."""
    with Receiver() as receiver:
        inbox = _forwarding_inbox(database_url, receiver.url)
        try:
            result = inbox.receive(raw_json("sms-9", COMPLAINT_TEXT))
            inbox.outbox.drain()
        finally:
            inbox.close()
    [seen] = receiver.seen
    assert seen.signature_ok
    body = seen.json()
    assert body["ticket"] == result.ticket
    assert body["body"] == MASKED_TEXT
    assert NIK not in seen.body.decode() and NPWP not in seen.body.decode()


def test_a_bracket_before_a_phone_stays() -> None:
    """A phone written in brackets keeps its opening bracket (the text's, not the number's)."""
    from omnichannel.privacy import mask_text

    assert mask_text("hubungi (+6281311112222) ya", phones=True) == "hubungi (+62813****2222) ya"
