"""Outgoing mail (omnichannel.mail) against a real SMTP server on loopback (tests/smtp.py)."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from email.message import EmailMessage, MIMEPart
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from omnichannel.errors import ConfigError, FatalError, RetryableError, Undeliverable
from omnichannel.mail import Mailer, SmtpOptions, message_id_token, parse_address
from omnichannel.outbound import Outbound, Sender
from tests import smtp
from tests.smtp import SmtpServer, make_certificate, server_tls_context

smtp_server = smtp.smtp_server  # the fixture

FROM = "Pengaduan DPMPTSP <pengaduan@example.go.id>"
CITIZEN = "budi.santoso@warga.test"
PASSWORD = "rahasia-Sekali-123"
BODY = (
    "Terima kasih, Bapak Budi. Pengaduan Anda tentang jalan rusak di Jl. Ahmad Yani "
    "telah kami terima dengan nomor ADU-2026-000123 — simpan nomor ini.\n"
    "Biaya perbaikan ± Rp 1.500.000; lokasi: Kelurahan Sungai Pinang, Samarinda 🚧\n"
)


def mailer(server: SmtpServer | None = None, **options: Any) -> Mailer:
    values: dict[str, Any] = {"from": FROM, "timeout": 5}
    if server is not None:
        values["port"] = server.port
    values.update(options)
    return Mailer(SmtpOptions.model_validate(values))


def ack(**fields: Any) -> Outbound:
    values: dict[str, Any] = {
        "delivery_id": "ack-123",
        "kind": "acknowledgement",
        "to": CITIZEN,
        "text": BODY,
        "ticket": "ADU-2026-000123",
        "in_reply_to": "<CAF1x9@mail.warga.test>",
        "references": ("<root-7@mail.warga.test>", "<CAF1x9@mail.warga.test>"),
    }
    values.update(fields)
    return Outbound(**values)


def only(server: SmtpServer) -> EmailMessage:
    (received,) = server.messages
    return received.message


def text_of(part: MIMEPart) -> str:
    """A text part's content with the wire's CRLF line ends read as ``\\n``."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (``cert.pem``, ``key.pem``)."""
    try:
        return make_certificate(tmp_path_factory.mktemp("tls"))
    except RuntimeError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[SmtpServer]:
    """A server offering STARTTLS with that certificate, AUTH only after it."""
    context = server_tls_context(*certificate)
    with SmtpServer(
        users={"omni": PASSWORD},
        auth_required=True,
        auth_require_tls=True,
        tls_context=context,
    ) as server:
        yield server


# --- acknowledgements and replies --------------------------------------------------------------


def test_acknowledgement_arrives_threaded_marked_automatic_and_intact(
    smtp_server: SmtpServer,
) -> None:
    """An acknowledgement reaches the server from our address to the citizen's, with the
    thread's In-Reply-To/References, Auto-Submitted: auto-replied, X-Auto-Response-Suppress:
    All, a Message-ID in our domain, the ticket in the subject and its UTF-8 Indonesian body
    unchanged."""
    message_id = mailer(smtp_server).send(ack())

    (received,) = smtp_server.messages
    assert received.mail_from == "pengaduan@example.go.id"
    assert received.rcpt_tos == [CITIZEN]
    message = received.message
    assert message["From"] == FROM
    assert message["To"] == CITIZEN
    assert "ADU-2026-000123" in message["Subject"]
    assert message["Message-ID"] == message_id == "<ack-123@example.go.id>"
    assert message["In-Reply-To"] == "<CAF1x9@mail.warga.test>"
    assert message["References"] == "<root-7@mail.warga.test> <CAF1x9@mail.warga.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["X-Auto-Response-Suppress"] == "All"
    assert message["Date"] is not None
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert text_of(message) == BODY
    assert received.raw.isascii()  # no 8-bit body for a relay without 8BITMIME


def test_mailer_is_a_sender() -> None:
    """A Mailer satisfies the outbox's Sender protocol."""
    assert isinstance(mailer(), Sender)


def test_human_reply_has_no_auto_submitted(smtp_server: SmtpServer) -> None:
    """A team member's reply (automatic=False) is threaded but not marked automatic, so the
    citizen's auto-responder rules treat it as a person's mail."""
    text = "Baik Pak, jalan sudah diperbaiki — terima kasih 🙏\n"
    mailer(smtp_server).send(ack(delivery_id="reply-9", kind="reply", automatic=False, text=text))

    (received,) = smtp_server.messages
    message = received.message
    assert message["Auto-Submitted"] is None
    assert message["X-Auto-Response-Suppress"] is None
    assert message["In-Reply-To"] == "<CAF1x9@mail.warga.test>"
    assert text_of(message) == text
    assert received.raw.isascii()  # a short line is not sent 8-bit either


def test_status_notification_is_auto_generated(smtp_server: SmtpServer) -> None:
    """A status notification is automatic but answers no message of the citizen's: RFC 3834
    ``auto-generated``, and auto-replies to it are still suppressed."""
    mailer(smtp_server).send(ack(delivery_id="note-5", kind="notification"))

    message = only(smtp_server)
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Auto-Response-Suppress"] == "All"


def test_default_subject_carries_the_ticket_in_the_outbounds_language() -> None:
    """Without a subject it is "Pengaduan <ticket>" (Indonesian) or "Complaint <ticket>"
    (English); a given subject without the ticket gets it appended, one with it is kept."""
    m = mailer()
    assert m.build(ack())["Subject"] == "Pengaduan ADU-2026-000123"
    assert m.build(ack(language="en"))["Subject"] == "Complaint ADU-2026-000123"
    assert m.build(ack(subject="Re: Jalan rusak"))["Subject"] == (
        "Re: Jalan rusak [ADU-2026-000123]"
    )
    assert m.build(ack(subject="Re: Jalan rusak [ADU-2026-000123]"))["Subject"] == (
        "Re: Jalan rusak [ADU-2026-000123]"
    )


def test_references_fall_back_to_in_reply_to_and_bad_ids_are_dropped() -> None:
    """Without references, References is the In-Reply-To id; a bare id gets its brackets and
    ids with spaces are left out; without any id, neither header is set."""
    m = mailer()
    only_parent = m.build(ack(references=(), in_reply_to="abc@warga.test"))
    assert only_parent["In-Reply-To"] == "<abc@warga.test>"
    assert only_parent["References"] == "<abc@warga.test>"

    messy = m.build(ack(references=("<not an id>", "<ok@x.test>"), in_reply_to=None))
    assert messy["References"] == "<ok@x.test>"
    assert messy["In-Reply-To"] == "<ok@x.test>"

    fresh = m.build(ack(references=(), in_reply_to=None))
    assert fresh["In-Reply-To"] is None
    assert fresh["References"] is None


def test_same_delivery_id_gives_the_same_message_id(smtp_server: SmtpServer) -> None:
    """Two attempts of one delivery carry the same Message-ID (the receiver can spot the
    repeat); another delivery gets another one."""
    m = mailer(smtp_server)
    first = m.send(ack(delivery_id="ack:42/retry x"))
    second = m.send(ack(delivery_id="ack:42/retry x"))
    other = m.send(ack(delivery_id="ack:43/retry x"))

    ids = [received.message["Message-ID"] for received in smtp_server.messages]
    assert ids == [first, second, other]
    assert first == second != other
    assert first == "<ack=3A42=2Fretry=20x@example.go.id>"


def test_message_id_token_is_dot_atom_and_one_to_one() -> None:
    """Sanitising keeps ids apart (``a:b`` vs ``a;b`` vs ``a=3Ab``) and yields only dot-atom
    characters, whatever the delivery id holds."""
    keys = ["a:b", "a;b", "a=3Ab", "a.b", ".a", "a..b", "a.", "ä<b>@c\r\nd", "a b"]
    tokens = [message_id_token(key) for key in keys]
    assert len(set(tokens)) == len(keys)
    for token in tokens:
        assert token.isascii()
        assert not token.startswith(".") and not token.endswith(".") and ".." not in token
        assert all(c.isalnum() or c in "-_+=." for c in token)
    assert message_id_token("ack-7") == "ack-7"
    assert message_id_token("a.b") == "a.b"
    with pytest.raises(ValueError):
        message_id_token("")


def test_message_id_domain_can_be_configured() -> None:
    """``message_id_domain`` replaces the From domain on the right of our Message-IDs."""
    message = mailer(message_id_domain="pengaduan.samarindakota.go.id").build(ack())
    assert message["Message-ID"] == "<ack-123@pengaduan.samarindakota.go.id>"


# --- header injection -----------------------------------------------------------------------


def test_crlf_in_subject_cannot_add_a_header(smtp_server: SmtpServer) -> None:
    """A subject with CR/LF and a header after it arrives as one subject line: no Bcc header,
    no extra recipient."""
    evil = "Jalan rusak\r\nBcc: attacker@evil.test\r\nX-Injected: yes"
    mailer(smtp_server).send(ack(subject=evil))

    (received,) = smtp_server.messages
    assert received.rcpt_tos == [CITIZEN]
    assert received.message["Bcc"] is None
    assert received.message["X-Injected"] is None
    assert "\n" not in received.message["Subject"] and "\r" not in received.message["Subject"]
    assert received.message["Subject"].startswith("Jalan rusak Bcc: attacker@evil.test")


@pytest.mark.parametrize(
    "to",
    [
        f"{CITIZEN}\r\nBcc: attacker@evil.test",
        f"{CITIZEN}\nX-Injected: yes",
        f"{CITIZEN}, attacker@evil.test",
        "+6281234567890",
        "",
    ],
)
def test_a_recipient_that_is_not_one_address_is_undeliverable(
    smtp_server: SmtpServer, to: str
) -> None:
    """CR/LF in the recipient, several addresses or a phone number: Undeliverable, and
    nothing reaches the server."""
    with pytest.raises(Undeliverable, match="recipient"):
        mailer(smtp_server).send(ack(to=to))
    assert smtp_server.commands == []


def test_build_mail_headers_stay_on_one_line_and_cannot_replace_ours() -> None:
    """Extra header values lose their CR/LF; a header name that is not a field name or one the
    mailer sets itself (From, To, Bcc, Message-ID…) is refused."""
    m = mailer()
    message = m.build_mail(
        [CITIZEN],
        "Subjek\nBcc: attacker@evil.test",
        "isi",
        message_id_key="fwd-1",
        headers={"X-Omnichannel-Event": "created\r\nBcc: attacker@evil.test"},
    )
    assert message["Bcc"] is None
    assert message["X-Omnichannel-Event"] == "created Bcc: attacker@evil.test"
    assert message["Subject"] == "Subjek Bcc: attacker@evil.test"
    for name in ("Bcc", "message-id", "From", "Content-Type", "X-Bad\nName", "X Space", ""):
        with pytest.raises(ValueError):
            m.build_mail([CITIZEN], "s", "t", message_id_key="k", headers={name: "v"})


# --- the e-mail forwarder ---------------------------------------------------------------------


def test_forwarder_mail_carries_the_complaint_as_json(smtp_server: SmtpServer) -> None:
    """A forwarded complaint reaches every agency address with a readable text part and its
    JSON attached as application/json under the given file name; its Message-ID comes from the
    delivery key."""
    document = {"ticket": "ADU-2026-000123", "body": "Jalan berlubang — mohon segera", "n": 1}
    data = json.dumps(document, ensure_ascii=False).encode()
    m = mailer(smtp_server)
    message = m.build_mail(
        ["pupr@samarindakota.go.id", "Dinas PUPR <arsip@samarindakota.go.id>"],
        "[ADU-2026-000123] created: Jalan berlubang",
        "Ticket: ADU-2026-000123\n\nJalan berlubang — mohon segera",
        message_id_key="fwd-agency-system-123",
        headers={"X-Omnichannel-Event": "created"},
        json_attachment=("ADU-2026-000123.json", data),
    )
    returned = m.send_message(message)

    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["pupr@samarindakota.go.id", "arsip@samarindakota.go.id"]
    got = received.message
    assert returned == got["Message-ID"] == "<fwd-agency-system-123@example.go.id>"
    assert got["X-Omnichannel-Event"] == "created"
    assert got.get_content_type() == "multipart/mixed"
    body = got.get_body(preferencelist=("plain",))
    assert body is not None
    assert text_of(body) == "Ticket: ADU-2026-000123\n\nJalan berlubang — mohon segera\n"
    (attachment,) = list(got.iter_attachments())
    assert attachment.get_content_type() == "application/json"
    assert attachment.get_filename() == "ADU-2026-000123.json"
    assert json.loads(attachment.get_content()) == document


def test_some_recipients_refused_counts_as_sent(
    smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """When one of two addresses is refused the message still counts as sent (sending again
    would repeat it to the other), and the refusal is logged with its code."""
    smtp_server.fail_next("RCPT", 550)
    m = mailer(smtp_server)
    message = m.build_mail(["a@x.test", "b@x.test"], "s", "t", message_id_key="fwd-2")
    with caplog.at_level(logging.WARNING, logger="omnichannel.mail"):
        assert m.send_message(message) == "<fwd-2@example.go.id>"
    (received,) = smtp_server.messages
    assert received.rcpt_tos == ["b@x.test"]
    assert "550" in caplog.text


# --- errors -------------------------------------------------------------------------------------


def test_451_is_retryable_and_the_next_attempt_goes_through(smtp_server: SmtpServer) -> None:
    """A 451 to DATA (greylisting, a full queue) is a RetryableError with the code; the same
    delivery sent again is accepted with the same Message-ID."""
    smtp_server.fail_next("DATA", 451)
    m = mailer(smtp_server)
    with pytest.raises(RetryableError, match=r"SMTP 451 at DATA .*try again later"):
        m.send(ack())
    assert smtp_server.messages == []

    assert m.send(ack()) == "<ack-123@example.go.id>"
    assert only(smtp_server)["Message-ID"] == "<ack-123@example.go.id>"


def test_550_on_rcpt_is_undeliverable(smtp_server: SmtpServer) -> None:
    """A 550 to the only RCPT (no such mailbox) makes the delivery Undeliverable, with the
    code and the server's reason in the message."""
    smtp_server.fail_next("RCPT", 550, "5.1.1 <budi.santoso@warga.test>: user unknown")
    with pytest.raises(Undeliverable, match=r"SMTP 550 at RCPT .*user unknown") as caught:
        mailer(smtp_server).send(ack())
    assert not isinstance(caught.value, RetryableError)
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("command", "code", "error"),
    [
        ("MAIL", 421, RetryableError),
        ("MAIL", 451, RetryableError),
        ("MAIL", 553, Undeliverable),
        ("MAIL", 530, FatalError),
        ("RCPT", 450, RetryableError),
        ("RCPT", 553, Undeliverable),
        ("DATA", 452, RetryableError),
        ("DATA", 552, Undeliverable),
        ("DATA", 554, Undeliverable),
    ],
)
def test_smtp_codes_map_to_the_outbox_errors(
    smtp_server: SmtpServer, command: str, code: int, error: type[Exception]
) -> None:
    """4xx anywhere is retryable, 5xx to MAIL/RCPT/DATA refuses the message for good, and
    530 (authentication required) is a configuration problem, not the message's."""
    smtp_server.fail_next(command, code)
    with pytest.raises(error, match=f"SMTP {code} at {command}"):
        mailer(smtp_server).send(ack())
    assert smtp_server.messages == []


def test_every_recipient_refused_with_one_4xx_is_retryable(smtp_server: SmtpServer) -> None:
    """All recipients refused, one of them only for now (451): retry, not dead."""
    smtp_server.fail_next("RCPT", 550)
    smtp_server.fail_next("RCPT", 451)
    m = mailer(smtp_server)
    message = m.build_mail(["a@x.test", "b@x.test"], "s", "t", message_id_key="fwd-3")
    with pytest.raises(RetryableError, match=r"SMTP 451 at RCPT .*all 2 recipients refused"):
        m.send_message(message)


def test_auth_login_works() -> None:
    """With username and password the mailer logs in (AUTH over plain text here) and the
    server required it before accepting the message."""
    with SmtpServer(users={"omni": PASSWORD}, auth_required=True) as server:
        mailer(server, username="omni", password=PASSWORD).send(ack())
        (received,) = server.messages
        assert received.login == "omni"

        with pytest.raises(FatalError, match="SMTP 530"):
            mailer(server).send(ack())  # no credentials: a configuration problem
        assert len(server.messages) == 1


def test_wrong_password_is_fatal_and_never_shows_the_password() -> None:
    """A refused login is a FatalError with the code and the user, and neither its message,
    its repr nor any exception chained to it contains the password."""
    with SmtpServer(users={"omni": PASSWORD}, auth_required=True) as server:
        wrong = "Salah-Sandi-999"
        with pytest.raises(FatalError) as caught:
            mailer(server, username="omni", password=wrong).send(ack())
        assert server.messages == []

    error = caught.value
    assert "535" in str(error) and "omni" in str(error)
    texts = [str(error), repr(error)]
    chained: BaseException | None = error.__cause__ or error.__context__
    while chained is not None:
        texts += [str(chained), repr(chained)]
        chained = chained.__cause__ or chained.__context__
    assert not any(wrong in text for text in texts)


def test_server_down_is_retryable() -> None:
    """Nothing listening on the port (connection refused): RetryableError."""
    with pytest.raises(RetryableError, match="ConnectionRefusedError"):
        mailer(port=closed_port()).send(ack())


def test_server_that_never_answers_times_out_as_retryable() -> None:
    """A server that accepts the connection but never greets: after ``timeout`` seconds a
    RetryableError, not a hang."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(RetryableError, match=r"no answer within 0.3s"):
            mailer(port=port, timeout=0.3).send(ack())


def test_server_stopped_and_restarted(smtp_server: SmtpServer) -> None:
    """While the server is down sending is retryable; once it is back the same delivery
    goes through."""
    m = mailer(smtp_server)
    smtp_server.stop()
    with pytest.raises(RetryableError):
        m.send(ack())
    smtp_server.start()
    m.send(ack())
    assert only(smtp_server)["Message-ID"] == "<ack-123@example.go.id>"


# --- TLS -----------------------------------------------------------------------------------------


def test_starttls_with_a_private_ca(tls_server: SmtpServer, certificate: tuple[Path, Path]) -> None:
    """STARTTLS verified against ``ca_file`` (a self-signed certificate made here), then AUTH
    (which this server offers only over TLS): the message arrives over an encrypted session."""
    cert, _ = certificate
    m = mailer(tls_server, starttls=True, ca_file=str(cert), username="omni", password=PASSWORD)
    m.send(ack())
    (received,) = tls_server.messages
    assert received.tls is True
    assert received.login == "omni"
    assert text_of(received.message) == BODY


def test_starttls_with_an_untrusted_certificate_is_fatal(tls_server: SmtpServer) -> None:
    """Without ``ca_file`` the self-signed certificate is not trusted: FatalError (fix the
    configuration), never a fallback to plain text."""
    m = mailer(tls_server, starttls=True, username="omni", password=PASSWORD)
    with pytest.raises(FatalError, match="certificate not trusted"):
        m.send(ack())
    assert tls_server.commands == []


def test_starttls_not_offered_is_fatal(smtp_server: SmtpServer, certificate: Any) -> None:
    """``starttls = true`` against a server that does not offer it: FatalError, and the
    message is not sent in plain text."""
    cert, _ = certificate
    with pytest.raises(FatalError, match="STARTTLS"):
        mailer(smtp_server, starttls=True, ca_file=str(cert)).send(ack())
    assert smtp_server.messages == []


def test_auth_offered_only_after_tls_is_fatal_without_starttls(tls_server: SmtpServer) -> None:
    """Credentials against a server that offers AUTH only after STARTTLS, without starttls:
    FatalError that hints at STARTTLS; the password is not sent in plain text."""
    with pytest.raises(FatalError, match="STARTTLS"):
        mailer(tls_server, username="omni", password=PASSWORD).send(ack())
    assert tls_server.messages == []


def test_smtp_over_tls_port_465_style(certificate: tuple[Path, Path]) -> None:
    """``ssl = true`` speaks TLS from the first byte, verified against ``ca_file``."""
    cert, key = certificate
    with SmtpServer(implicit_tls=server_tls_context(cert, key)) as server:
        mailer(server, ssl=True, ca_file=str(cert)).send(ack())
        (received,) = server.messages
        assert received.tls is True


def test_missing_ca_file_is_fatal(tls_server: SmtpServer, tmp_path: Path) -> None:
    """A ``ca_file`` that cannot be read is a FatalError naming the setting."""
    m = mailer(tls_server, starttls=True, ca_file=str(tmp_path / "nope.pem"))
    with pytest.raises(FatalError, match=r"smtp\.ca_file"):
        m.send(ack())


# --- options --------------------------------------------------------------------------------------


def test_options_read_the_smtp_table() -> None:
    """The ``[smtp]`` table's keys (``from`` included) load; empty values from
    ``${SMTP_USER:-}`` count as unset; the password is hidden in repr."""
    options = SmtpOptions.model_validate(
        {
            "host": "smtp.samarindakota.go.id",
            "port": 587,
            "starttls": True,
            "username": "pengaduan",
            "password": PASSWORD,
            "from": FROM,
        }
    )
    assert options.from_ == FROM
    assert options.port == 587 and options.starttls and options.timeout == 30
    assert PASSWORD not in repr(options) and PASSWORD not in str(options)
    assert PASSWORD not in repr(Mailer(options))

    blank = SmtpOptions.model_validate({"username": "", "password": "", "from": FROM})
    assert blank.username is None and blank.password is None
    assert SmtpOptions(from_=FROM).from_ == FROM


@pytest.mark.parametrize(
    "values",
    [
        {"from": "not an address"},
        {"from": "a@x.test, b@x.test"},
        {"from": "Pengaduan <pengaduan@example.go.id>\r\nBcc: x@evil.test"},
        {"from": "pengaduan@"},
        {"from": FROM, "ssl": True, "starttls": True},
        {"from": FROM, "password": "p"},
        {"from": FROM, "port": 0},
        {"from": FROM, "message_id_domain": "not a domain"},
        {"from": FROM, "relay": "x"},
    ],
)
def test_options_refuse_bad_values(values: dict[str, Any]) -> None:
    """A ``from`` that is not one address, ssl with starttls, a password without user, a bad
    port or Message-ID domain, or an unknown key is a validation error."""
    with pytest.raises(ValidationError):
        SmtpOptions.model_validate(values)


def test_a_mailer_needs_a_from_address() -> None:
    """Sending without ``from`` is a ConfigError naming smtp.from."""
    with pytest.raises(ConfigError, match=r"smtp\.from"):
        Mailer(SmtpOptions())


def test_parse_address_keeps_the_display_name() -> None:
    """A display name with the address is kept; a bare address has none."""
    address = parse_address(FROM)
    assert (address.display_name, address.addr_spec) == (
        "Pengaduan DPMPTSP",
        "pengaduan@example.go.id",
    )
    assert parse_address(CITIZEN).display_name == ""
