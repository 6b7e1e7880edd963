"""Outgoing mail over SMTP: acknowledgements and replies to citizens, and the e-mail forwarder.

A :class:`Mailer` is built from the ``[smtp]`` table (:class:`SmtpOptions`) and is a
:class:`~omnichannel.outbound.Sender`: ``send(outbound)`` opens one SMTP session, sends one
message and returns its Message-ID. What it raises follows the outbox's contract:

- :class:`~omnichannel.errors.RetryableError`: the server could not be reached, timed out or
  hung up, or answered 4xx (greylisting, a full queue, 421 closing);
- :class:`~omnichannel.errors.Undeliverable`: this message is refused for good: every recipient
  refused with 5xx, another 5xx to MAIL, RCPT or DATA, or a recipient that is no address;
- :class:`~omnichannel.errors.FatalError`: the configuration is wrong (credentials refused,
  STARTTLS or AUTH not offered, the certificate not trusted, the server refusing us at
  greeting/EHLO, 530/534/538 "authentication/encryption required"): every delivery would fail
  the same way, so none is marked dead for it.

Error messages carry the SMTP code, where in the session it came and a short reason, never
the password. The Message-ID is ``<{delivery id}@{domain}>``: the same on every attempt of one
delivery, so a receiver (or a person) can recognise a repeat after a crash between sending
and recording. Acknowledgements carry ``Auto-Submitted``, ``X-Auto-Response-Suppress: All``
and the thread's ``In-Reply-To``/``References``; the subject carries the ticket.
"""

from __future__ import annotations

import base64
import logging
import re
import smtplib
import ssl as _ssl
from collections.abc import Iterable, Sequence
from datetime import datetime
from email import policy
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any, NoReturn

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from omnichannel.errors import (
    ConfigError,
    ConnectorError,
    FatalError,
    RetryableError,
    Undeliverable,
)
from omnichannel.outbound import Outbound
from omnichannel.privacy import LOG_MASKER

__all__ = ["Mailer", "SmtpOptions", "message_id_token", "parse_address"]

log = logging.getLogger("omnichannel.mail")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_RUNS = re.compile(r"[\x00-\x1f\x7f]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
"""RFC 5322 field-name: printable US-ASCII except the colon."""
_MSG_ID = re.compile(r"<[!-;=?-~]+>")
"""A bracketed id of printable US-ASCII without ``<``, ``>`` or spaces."""
_ID_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+")
_MAX_REFERENCES = 20
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)
"""Headers :meth:`Mailer.build_mail` sets itself and ``headers`` may not override."""
_CONFIG_CODES = frozenset({530, 534, 535, 538})
"""Authentication required / mechanism too weak / credentials invalid / encryption required."""


def _ascii_domain(domain: str) -> str:
    """``domain`` as US-ASCII (IDNA for an internationalised one); ValueError if not a
    host name."""
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise ValueError(f"not a domain name: {domain!r}") from None
    if len(domain) > 253 or not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain name: {domain!r}")
    return domain


def parse_address(value: str) -> Address:
    """One address, ``local@domain`` or ``Display Name <local@domain>``.

    Raises ValueError for anything else: several addresses, no ``@``, a domain that is no host
    name, or any control character (CR and LF included: no header can be smuggled in)."""
    if _CONTROL.search(value):
        raise ValueError("an address may not contain control characters (CR, LF, …)")
    found = getaddresses([value])
    if len(found) != 1:
        raise ValueError("expected exactly one address")
    name, addr_spec = found[0]
    if "@" not in addr_spec:
        raise ValueError("not an e-mail address (local@domain)")
    try:
        address = Address(display_name=name, addr_spec=addr_spec)
    except (ValueError, IndexError, HeaderParseError):
        raise ValueError("not an e-mail address (local@domain)") from None
    if not address.username:
        raise ValueError("not an e-mail address (local@domain)")
    _ascii_domain(address.domain)
    return address


def message_id_token(key: str) -> str:
    """``key`` as the left part of a Message-ID: letters, digits, ``-``, ``_``, ``+`` and
    inner single dots kept, every other character (its UTF-8 bytes) written ``=XX``.

    Deterministic and one-to-one: two different delivery ids never share a Message-ID."""
    if not key:
        raise ValueError("an empty key makes no Message-ID")
    out: list[str] = []
    last = len(key) - 1
    for index, char in enumerate(key):
        if char in _ID_SAFE or (
            char == "." and 0 < index < last and key[index - 1] != "." and key[index + 1] != "."
        ):
            out.append(char)
        else:
            out.extend(f"={byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _shown_id(message_id: str) -> str:
    """Our Message-ID as a log shows it: its left part, the delivery id (the whole would
    read as an e-mail address and be masked)."""
    left, at, _ = str(message_id).strip().strip("<>").rpartition("@")
    return left if at and left else str(message_id)


def _one_line(value: str) -> str:
    """Free text for a header: control characters (CR, LF, tab, …) and the spaces around them
    become one space, so a value can never start a new header line."""
    return " ".join(_CONTROL_RUNS.sub(" ", value).split())


def _safe_text(value: str) -> str:
    """Text that encodes to UTF-8 (a lone surrogate becomes ``?``)."""
    return value.encode("utf-8", "replace").decode("utf-8")


def _thread_ids(values: Iterable[str | None]) -> list[str]:
    """The usable message ids among ``values``, bracketed, without repeats, in order."""
    ids: list[str] = []
    for value in values:
        if not value:
            continue
        token = value.strip()
        if not token.startswith("<"):
            token = f"<{token}>"
        if _MSG_ID.fullmatch(token) and "@" in token and token not in ids:  # id-left@id-right
            ids.append(token)
    return ids


class SmtpOptions(BaseModel):
    """The ``[smtp]`` table: where and how outgoing mail is sent."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    ssl: bool = False
    """SMTP over TLS from the first byte (submissions, port 465)."""
    starttls: bool = False
    """Upgrade a plain connection with STARTTLS (submission, port 587); never falls back to
    plain text when the server does not offer it."""
    username: str | None = None
    password: SecretStr | None = None
    from_: str | None = Field(default=None, alias="from")
    """``Display Name <address@domain>`` or a bare address; required to send."""
    timeout: float = Field(default=30.0, gt=0, le=3600)
    """Seconds any one network operation may take."""
    message_id_domain: str | None = None
    """The right part of our Message-IDs; default the domain of ``from``."""
    ca_file: str | None = None
    """PEM file of the CA(s) that sign the server's certificate (a private CA); default the
    system's trust store."""
    local_hostname: str | None = None
    """The name we give in EHLO; default this machine's fully qualified name."""

    @field_validator(
        "username",
        "password",
        "from_",
        "message_id_domain",
        "ca_file",
        "local_hostname",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``${SMTP_USER:-}`` and friends expand to "": the same as not set."""
        if isinstance(value, str) and not value.strip():
            return None
        if isinstance(value, SecretStr) and not value.get_secret_value():
            return None
        return value

    @field_validator("from_")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        return None if value is None else str(parse_address(value))

    @field_validator("message_id_domain", "local_hostname")
    @classmethod
    def _a_domain(cls, value: str | None) -> str | None:
        return None if value is None else _ascii_domain(value.strip())

    @model_validator(mode="after")
    def _consistent(self) -> SmtpOptions:
        if self.ssl and self.starttls:
            raise ValueError(
                "ssl and starttls exclude each other (ssl: TLS from the first byte, port 465; "
                "starttls: upgrade a plain connection, port 587)"
            )
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        return self


class Mailer:
    """Builds and sends mail with one SMTP session per message; a
    :class:`~omnichannel.outbound.Sender` for e-mail."""

    def __init__(self, options: SmtpOptions) -> None:
        if options.from_ is None:
            raise ConfigError(["smtp.from: missing (the address outgoing mail is sent from)"])
        self.options = options
        self.sender = parse_address(options.from_)
        self.domain = options.message_id_domain or _ascii_domain(self.sender.domain)
        self._tls: _ssl.SSLContext | None = None

    def __repr__(self) -> str:
        o = self.options
        return f"Mailer({o.host}:{o.port}, from={self.sender.addr_spec!r})"

    # --- building ---------------------------------------------------------------------------

    def message_id(self, key: str) -> str:
        """``<{key, sanitised}@{domain}>``: the same for the same key on every attempt."""
        return f"<{message_id_token(key)}@{self.domain}>"

    def build(self, outbound: Outbound) -> EmailMessage:
        """The message for one :class:`Outbound` to a citizen.

        Raises :class:`~omnichannel.errors.Undeliverable` when ``outbound.to`` is not one
        e-mail address (a phone number, CR/LF in it, several addresses)."""
        message = self._start(
            [self._recipient(outbound.to)],
            self._subject(outbound),
            outbound.delivery_id,
        )
        thread = _thread_ids([*outbound.references, outbound.in_reply_to])
        if thread:
            if len(thread) > _MAX_REFERENCES:
                thread = thread[:1] + thread[-(_MAX_REFERENCES - 1) :]
            parent = _thread_ids([outbound.in_reply_to]) or thread[-1:]
            message["In-Reply-To"] = parent[0]
            message["References"] = " ".join(thread)
        if outbound.automatic:
            # RFC 3834: a direct answer to the citizen's message is auto-replied; a status
            # notification is generated on its own. Either way: no auto-reply to it, please.
            generated = ("notification", "survey", "survey.reminder")
            kind = "auto-generated" if outbound.kind in generated else "auto-replied"
            message["Auto-Submitted"] = kind
            message["X-Auto-Response-Suppress"] = "All"
        self._body(message, outbound.text)
        return message

    def build_mail(
        self,
        to: list[str],
        subject: str,
        text: str,
        *,
        message_id_key: str,
        headers: dict[str, str] | None = None,
        json_attachment: tuple[str, bytes] | None = None,
    ) -> EmailMessage:
        """A message for the e-mail forwarder: ``text`` as the body and, with
        ``json_attachment`` (file name, bytes), that document attached as ``application/json``.

        ``headers`` adds fields (``X-Ticket``, ``Auto-Submitted``…); their values are put on
        one line; a name that is not a field name, or one the mailer sets itself (From, To,
        Subject, Date, Message-ID, Content-*…), is a ValueError. A recipient that is not an
        address is :class:`~omnichannel.errors.Undeliverable`."""
        if isinstance(to, str):
            to = [to]
        if not to:
            raise Undeliverable("no recipient")
        extra = dict(headers or {})
        for name in extra:
            if not _FIELD_NAME.fullmatch(name):
                raise ValueError(f"not a header name: {name!r}")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the mailer, not by headers")
        message = self._start(
            [self._recipient(address) for address in to], _one_line(subject), message_id_key
        )
        for name, value in extra.items():
            message[name] = _one_line(_safe_text(value))
        self._body(message, text)
        if json_attachment is not None:
            filename, data = json_attachment
            message.add_attachment(
                bytes(data),
                maintype="application",
                subtype="json",
                filename=_one_line(_safe_text(filename)) or "complaint.json",
            )
        return message

    def _start(self, to: Sequence[Address], subject: str, key: str) -> EmailMessage:
        message = EmailMessage(policy=policy.default)
        message["From"] = self.sender
        message["To"] = list(to)
        message["Subject"] = _safe_text(subject)
        message["Date"] = format_datetime(datetime.now().astimezone())
        message["Message-ID"] = self.message_id(key)
        return message

    @staticmethod
    def _body(message: EmailMessage, text: str) -> None:
        text = _safe_text(text)
        if text.isascii():
            message.set_content(text, subtype="plain", charset="utf-8")
        else:
            # not 8bit: a relay without 8BITMIME must not mangle the Indonesian text
            message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")

    @staticmethod
    def _recipient(value: str) -> Address:
        try:
            return parse_address(value)
        except ValueError as exc:
            raise Undeliverable(f"recipient: {exc}") from None

    @staticmethod
    def _subject(outbound: Outbound) -> str:
        ticket = _one_line(outbound.ticket)
        subject = _one_line(outbound.subject or "")
        if not subject:
            english = outbound.language.lower().startswith("en")
            subject = f"Complaint {ticket}" if english else f"Pengaduan {ticket}"
        elif ticket and ticket not in subject:
            subject = f"{subject} [{ticket}]"  # threading falls back to the ticket in it
        return subject.strip()

    # --- sending ----------------------------------------------------------------------------

    def send(self, outbound: Outbound) -> str | None:
        """Build and send ``outbound``; its Message-ID."""
        return self.send_message(self.build(outbound))

    def send_message(self, message: EmailMessage) -> str:
        """Send ``message`` in one SMTP session; return its Message-ID.

        Recipients are those of To/Cc/Bcc (Bcc is not transmitted). When the server accepts
        some recipients and refuses others the message counts as sent (sending it again
        would repeat it to those who have it) and the refusals are logged."""
        message_id = message.get("Message-ID")
        if not message_id:
            raise ValueError("the message has no Message-ID")
        o = self.options
        stage = "connect"
        smtp: smtplib.SMTP | None = None
        try:
            if o.ssl:
                smtp = smtplib.SMTP_SSL(
                    o.host,
                    o.port,
                    local_hostname=o.local_hostname,
                    timeout=o.timeout,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(
                    o.host, o.port, local_hostname=o.local_hostname, timeout=o.timeout
                )
            stage = "EHLO"
            smtp.ehlo()
            if o.starttls:
                stage = "STARTTLS"
                smtp.starttls(context=self._tls_context())
                stage = "EHLO"
                smtp.ehlo()
            if o.username is not None:
                stage = "AUTH"
                secret = o.password.get_secret_value() if o.password else ""
                smtp.login(o.username, secret)
            stage = "send"
            refused = smtp.send_message(message)
        except Exception as exc:
            if smtp is not None:
                smtp.close()
            self._raise(exc, stage)
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass  # the message was accepted; a lost QUIT changes nothing
        finally:
            smtp.close()
        if refused:
            answers = ", ".join(f"{code} {self._reason(text)}" for code, text in refused.values())
            log.warning(
                "mail %s accepted for some recipients, refused for %d: %s",
                _shown_id(message_id),
                len(refused),
                answers,
            )
        else:
            log.debug("mail %s sent via %s:%d", _shown_id(message_id), o.host, o.port)
        return str(message_id)

    def _tls_context(self) -> _ssl.SSLContext:
        if self._tls is None:
            try:
                self._tls = _ssl.create_default_context(cafile=self.options.ca_file)
            except (OSError, ValueError) as exc:
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise FatalError(
                    f"smtp.ca_file: cannot load {self.options.ca_file!r}: {reason}"
                ) from None
        return self._tls

    # --- errors -----------------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    def _reason(self, text: bytes | str) -> str:
        """The server's reply on one short line, the password (as typed or as AUTH encodes
        it) blanked out should a server ever echo it, and personal data masked (a refusal
        quotes the recipient)."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        reason = _one_line(text)
        o = self.options
        if o.password is not None:
            secret = o.password.get_secret_value()
            user = o.username or ""
            forms = {
                secret,
                base64.b64encode(secret.encode()).decode(),
                base64.b64encode(f"\0{user}\0{secret}".encode()).decode(),
            }
            for form in sorted(forms, key=len, reverse=True):
                reason = reason.replace(form, "***")
        reason = LOG_MASKER.text(reason)  # "550 <budi@example.id>: no such user"
        return reason[:200] + ("…" if len(reason) > 200 else "")

    def _by_code(
        self, code: int, text: bytes | str, stage: str, *, setup: bool, note: str = ""
    ) -> ConnectorError:
        message = f"SMTP {code} at {stage} ({self._where()}): {self._reason(text)}{note}"
        if 400 <= code < 500:
            return RetryableError(message)
        if 500 <= code < 600:
            if setup or code in _CONFIG_CODES:
                return FatalError(message)
            return Undeliverable(message)
        return RetryableError(message)  # not a reply code: a garbled or cut answer

    def _raise(self, exc: Exception, stage: str) -> NoReturn:
        where = self._where()
        setup = stage in ("connect", "EHLO", "STARTTLS", "AUTH")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            raise FatalError(
                f"SMTP {exc.smtp_code} at AUTH ({where}): login refused for user "
                f"{self.options.username!r}: {self._reason(exc.smtp_error)}"
            ) from None
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            answers = list(exc.recipients.values())
            code, text = min(answers, key=lambda answer: answer[0] >= 500)  # a 4xx first
            note = f" (all {len(answers)} recipients refused)" if len(answers) > 1 else ""
            raise self._by_code(code, text, "RCPT", setup=False, note=note) from exc
        if isinstance(exc, smtplib.SMTPSenderRefused):
            raise self._by_code(exc.smtp_code, exc.smtp_error, "MAIL", setup=False) from exc
        if isinstance(exc, smtplib.SMTPDataError):
            raise self._by_code(exc.smtp_code, exc.smtp_error, "DATA", setup=False) from exc
        if isinstance(exc, smtplib.SMTPResponseException):
            stage = "greeting" if isinstance(exc, smtplib.SMTPConnectError) else stage
            raise self._by_code(exc.smtp_code, exc.smtp_error, stage, setup=setup) from exc
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if isinstance(exc.__context__, TimeoutError):  # smtplib's wrapping of a timeout
                raise RetryableError(
                    f"SMTP server {where}: no answer within {self.options.timeout:g}s at {stage}"
                ) from exc
            raise RetryableError(
                f"SMTP server {where} closed the connection at {stage}: {self._reason(str(exc))}"
            ) from exc
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            if setup:
                hint = " (does AUTH need STARTTLS first?)" if stage == "AUTH" else ""
                raise FatalError(f"SMTP server {where}: {exc}{hint}") from exc
            raise Undeliverable(f"SMTP server {where}: {exc}") from exc
        if isinstance(exc, smtplib.SMTPException):
            # e.g. "No suitable authentication method found."
            raise FatalError(f"SMTP at {stage} ({where}): {self._reason(str(exc))}") from exc
        if isinstance(exc, _ssl.SSLCertVerificationError):
            raise FatalError(
                f"TLS with {where}: certificate not trusted ({exc.verify_message}); "
                "set smtp.ca_file to the CA that signed it"
            ) from exc
        if isinstance(exc, TimeoutError):
            raise RetryableError(
                f"SMTP server {where}: no answer within {self.options.timeout:g}s at {stage}"
            ) from exc
        if isinstance(exc, OSError):  # refused, reset, unreachable, DNS, TLS handshake
            reason = exc.strerror or str(exc) or type(exc).__name__
            raise RetryableError(
                f"SMTP server {where}: {type(exc).__name__} at {stage}: {reason}"
            ) from exc
        raise exc
