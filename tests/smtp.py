"""A real SMTP server on loopback for tests (aiosmtpd in a thread), and a self-signed
certificate for TLS.

:class:`SmtpServer` needs no pytest::

    with SmtpServer(users={"omni": "s3cret"}) as server:
        ...  # send to ("127.0.0.1", server.port)
        assert server.messages[0].message["Subject"] == "Pengaduan ADU-1"

    server.fail_next("RCPT", 451)      # the next RCPT is answered 451, later ones accepted
    server.fail_next("DATA", 550, times=2)

In a test module, import the fixture (it is a plain server on a free port, no AUTH, no TLS)::

    from tests.smtp import SmtpServer, smtp_server  # noqa: F401

    def test_it(smtp_server: SmtpServer) -> None: ...

aiosmtpd warns (``warnings.warn``, a UserWarning) when AUTH is required over plain text, which
the project's ``filterwarnings = ["error"]`` turns into an exception in the server's thread (the
filters are process-wide), and it logs a deprecation for every AUTH (``Session.login_data``).
The protocol class here is told ``auth_required`` only after aiosmtpd's check, and its session
keeps the login without the log line: no warning filter is changed, in any thread.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SmtpServer", "make_certificate", "server_tls_context", "smtp_server"]

HOST = "127.0.0.1"
_COMMANDS = ("MAIL", "RCPT", "DATA")
_DEFAULT_TEXT = {
    421: "4.3.0 Service not available, closing channel",
    450: "4.2.0 Mailbox busy, try later",
    451: "4.3.0 Local error, try again later",
    452: "4.3.1 Insufficient storage",
    550: "5.1.1 Mailbox unavailable",
    552: "5.3.4 Message too big",
    553: "5.1.3 Mailbox name not allowed",
    554: "5.7.1 Transaction failed",
}


@dataclass(frozen=True)
class Received:
    """One message the server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    message: EmailMessage
    """Parsed with ``policy.default``."""
    login: str | None
    """The user that authenticated for it, if any."""
    tls: bool
    """Whether the session was encrypted (STARTTLS or implicit TLS)."""


@dataclass
class _Handler:
    """aiosmtpd handler: answers scripted failures, records what it accepts."""

    implicit_tls: bool
    messages: list[Received] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)
    failures: dict[str, deque[str]] = field(
        default_factory=lambda: {command: deque() for command in _COMMANDS}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _scripted(self, command: str, argument: str) -> str | None:
        with self.lock:
            self.commands.append((command, argument))
            queue = self.failures[command]
            return queue.popleft() if queue else None

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        failure = self._scripted("MAIL", address)
        if failure:
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        failure = self._scripted("RCPT", address)
        if failure:
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        failure = self._scripted("DATA", "")
        if failure:
            return failure
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        received = Received(
            mail_from=str(envelope.mail_from),
            rcpt_tos=list(envelope.rcpt_tos),
            raw=raw,
            message=message,
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            tls=self.implicit_tls or session.ssl is not None,
        )
        with self.lock:
            self.messages.append(received)
        return "250 2.0.0 Message accepted for delivery"


class _Session(Session):
    """A session whose legacy ``login_data`` is kept without a deprecation log line."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SMTP(SMTP):
    """aiosmtpd's SMTP protocol without its warnings (see the module's docstring)."""

    def __init__(self, handler: Any, *, auth_required: bool = False, **kwargs: Any) -> None:
        super().__init__(handler, auth_required=False, **kwargs)
        self._auth_required = auth_required  # after the plain-text AUTH warning's check

    def _create_session(self) -> Session:
        return _Session(self.loop)


class _Controller(Controller):
    """A Controller that binds a free port itself (``port=0``) and keeps it, so no free-port
    guess can race another process, and a restart listens on the same port."""

    def _create_server(self) -> Any:
        async def bind() -> asyncio.AbstractServer:
            server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=self.port, ssl=self.ssl_context
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return bind()

    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)

    def start(self) -> None:
        if self.loop.is_closed():  # stopped before: the old loop was closed with it
            self.loop = asyncio.new_event_loop()
        super().start()


class SmtpServer:
    """An SMTP server on 127.0.0.1 (a free port) that keeps what it receives.

    ``users`` enables AUTH PLAIN/LOGIN with these credentials (advertised over plain text
    unless ``auth_require_tls``); ``auth_required`` answers 530 to MAIL before AUTH.
    ``tls_context`` (a server context) offers STARTTLS; ``implicit_tls`` (a server context)
    speaks TLS from the first byte, like port 465."""

    def __init__(
        self,
        *,
        users: dict[str, str] | None = None,
        auth_required: bool = False,
        auth_require_tls: bool = False,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: ssl.SSLContext | None = None,
        smtputf8: bool = True,
        hostname: str = "mail.test",
    ) -> None:
        self.users = dict(users or {})
        self.host = HOST
        self._handler = _Handler(implicit_tls=implicit_tls is not None)
        self._controller = _Controller(
            self._handler,
            hostname=HOST,
            port=0,
            ssl_context=implicit_tls,
            server_hostname=hostname,
            authenticator=self._authenticate,
            auth_required=auth_required,
            auth_require_tls=auth_require_tls,
            tls_context=tls_context,
            require_starttls=require_starttls,
            enable_SMTPUTF8=smtputf8,
        )
        self._running = False

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        port = self._controller.port
        assert port, "the server has not been started"
        return int(port)

    def start(self) -> SmtpServer:
        """Start listening (again: on the same port as before)."""
        self._controller.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop listening; connections are refused until :meth:`start`."""
        if self._running:
            self._controller.stop()
            self._running = False

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what happened ------------------------------------------------------------------------

    @property
    def messages(self) -> list[Received]:
        """The messages accepted so far, oldest first."""
        with self._handler.lock:
            return list(self._handler.messages)

    @property
    def commands(self) -> list[tuple[str, str]]:
        """``(MAIL|RCPT|DATA, argument)`` for every such command, refused ones included."""
        with self._handler.lock:
            return list(self._handler.commands)

    def fail_next(self, command: str, code: int, text: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` ``MAIL``/``RCPT``/``DATA`` commands with ``code``
        (and ``text``, else a usual text for that code); later ones are accepted again."""
        command = command.upper()
        if command not in _COMMANDS:
            raise ValueError(f"command must be one of {_COMMANDS}, not {command!r}")
        if not 400 <= code < 600:
            raise ValueError(f"a failure is a 4xx or 5xx code, not {code}")
        reply = f"{code} {text or _DEFAULT_TEXT.get(code, 'Refused')}"
        with self._handler.lock:
            self._handler.failures[command].extend([reply] * times)

    def reset(self) -> None:
        """Forget messages, commands and pending failures."""
        with self._handler.lock:
            self._handler.messages.clear()
            self._handler.commands.clear()
            for queue in self._handler.failures.values():
                queue.clear()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = data.login.decode("utf-8", "replace")
        password = data.password.decode("utf-8", "replace")
        ok = login in self.users and self.users[login] == password
        return AuthResult(success=ok, handled=False, auth_data=data)


def make_certificate(
    directory: Path, *, hostname: str = "localhost", ip: str = HOST
) -> tuple[Path, Path]:
    """A self-signed certificate for ``hostname`` and ``ip`` (``cert.pem``, ``key.pem``),
    made with the ``openssl`` command; RuntimeError when there is none."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname},IP:{ip}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side context for :class:`SmtpServer` (``tls_context``/``implicit_tls``)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server on 127.0.0.1 (no AUTH, no TLS), stopped after the test."""
    with SmtpServer() as server:
        yield server
