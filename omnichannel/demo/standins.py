"""Loopback stand-ins for what the demo's deployment talks to: Twilio's Messages API, Meta's
Graph API, an agency's system that takes forwards, and an SMTP server.

Each one checks what a real one would check (Basic auth of the account, the bearer token, a
Standard Webhooks signature) and records what it accepted as a :class:`Delivery`, with the id
it answered (a message SID, a wamid, a Message-ID), so that the demo can show which stand-in
each acknowledgement reached. Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import socketserver
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from typing import Any
from urllib.parse import parse_qs

import waitress

from omnichannel.webhook import same_secret, signing_key, standard_signature

__all__ = [
    "Delivery",
    "ForwardReceiver",
    "GraphApi",
    "SmtpSink",
    "TwilioApi",
    "stand_in",
]

HOST = "127.0.0.1"
log = logging.getLogger("omnichannel.demo")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Delivery:
    """One thing a stand-in accepted: for whom, the id it answered, and the text."""

    to: str
    provider_id: str
    text: str


@dataclass
class _Recorder:
    deliveries: list[Delivery] = field(default_factory=list)
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, to: str, provider_id: str, text: str) -> None:
        with self.lock:
            self.deliveries.append(Delivery(to, provider_id, text))

    def ids(self) -> set[str]:
        with self.lock:
            return {d.provider_id for d in self.deliveries}


def _answer(start_response: StartResponse, status: int, payload: Any) -> list[bytes]:
    data = json.dumps(payload).encode()
    start_response(
        f"{status} {'OK' if status < 300 else 'Refused'}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def _body(environ: dict[str, Any]) -> bytes:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return bytes(environ["wsgi.input"].read(min(length, 1 << 20)))


class TwilioApi(_Recorder):
    """``POST /2010-04-01/Accounts/{sid}/Messages.json`` with Basic auth of the account:
    a queued message resource with a fresh ``SM…`` SID (as Twilio answers)."""

    def __init__(self, account_sid: str, auth_token: str) -> None:
        super().__init__()
        self.account_sid = account_sid
        self._auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        path = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if not same_secret(self._auth, environ.get("HTTP_AUTHORIZATION", "")):
            self.refused += 1
            return _answer(start_response, 401, {"code": 20003, "message": "Authenticate"})
        if environ["REQUEST_METHOD"] != "POST" or environ.get("PATH_INFO") != path:
            return _answer(start_response, 404, {"code": 20404, "message": "Not found"})
        form = {k: v[0] for k, v in parse_qs(_body(environ).decode(), True).items()}
        sid = "SM" + secrets.token_hex(16)
        self.record(form.get("To", ""), sid, form.get("Body", ""))
        resource = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": form.get("Body"),
            "direction": "outbound-api",
            "from": form.get("From"),
            "num_media": "0",
            "num_segments": "1",
            "sid": sid,
            "status": "queued",
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        return _answer(start_response, 201, resource)


class GraphApi(_Recorder):
    """``POST /{version}/{phone_number_id}/messages`` with the bearer token: the wamid of the
    message sent (as the WhatsApp Cloud API answers)."""

    def __init__(self, access_token: str, phone_number_ids: Iterable[str]) -> None:
        super().__init__()
        self._bearer = f"Bearer {access_token}"
        self._numbers = set(phone_number_ids)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if not same_secret(self._bearer, environ.get("HTTP_AUTHORIZATION", "")):
            self.refused += 1
            error = {"message": "Error validating access token", "code": 190}
            return _answer(start_response, 401, {"error": error})
        parts = str(environ.get("PATH_INFO", "")).strip("/").split("/")
        if environ["REQUEST_METHOD"] != "POST" or len(parts) != 3 or parts[2] != "messages":
            return _answer(start_response, 400, {"error": {"message": "Unsupported", "code": 100}})
        if parts[1] not in self._numbers:
            return _answer(start_response, 400, {"error": {"message": "Unknown id", "code": 100}})
        message = json.loads(_body(environ))
        to = str(message.get("to", ""))
        text = str((message.get("text") or {}).get("body") or f"[{message.get('type')}]")
        wamid = "wamid.OUT" + secrets.token_hex(12)
        self.record(to, wamid, text)
        answer = {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to}],
            "messages": [{"id": wamid, "message_status": "accepted"}],
        }
        return _answer(start_response, 200, answer)


class ForwardReceiver(_Recorder):
    """An agency's system: accepts forwards whose Standard Webhooks signature is good (once per
    ``webhook-id``), refuses the others with 401."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self._key = signing_key(secret)
        self.events: dict[str, str] = {}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        body = _body(environ)
        webhook_id = str(environ.get("HTTP_WEBHOOK_ID", ""))
        stamp = str(environ.get("HTTP_WEBHOOK_TIMESTAMP", ""))
        given = str(environ.get("HTTP_WEBHOOK_SIGNATURE", "")).split()
        expected = standard_signature(self._key, webhook_id, stamp, body)
        fresh = stamp.isdigit() and abs(time.time() - int(stamp)) < 300
        if not webhook_id or not fresh or not any(same_secret(expected, g) for g in given):
            self.refused += 1
            return _answer(start_response, 401, {"error": "bad signature"})
        complaint = json.loads(body)
        with self.lock:
            if webhook_id not in self.events:
                self.events[webhook_id] = str(environ.get("HTTP_X_OMNICHANNEL_EVENT", ""))
                self.deliveries.append(Delivery(str(complaint.get("agency")), webhook_id, ""))
        return _answer(start_response, 200, {"received": webhook_id})


# -- SMTP ----------------------------------------------------------------------------------------


class _SmtpSession(socketserver.StreamRequestHandler):
    """One SMTP session: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT (RFC 5321's minimum)."""

    server: _SmtpServer
    timeout = 30

    def handle(self) -> None:
        self._say("220 sink.demo.invalid ESMTP omnichannel demo sink")
        sender: str | None = None
        recipients: list[str] = []
        while line := self.rfile.readline(4096):
            verb, _, argument = line.decode("latin-1").strip().partition(" ")
            verb = verb.upper()
            if verb == "EHLO":
                self._say(
                    "250-sink.demo.invalid", "250-8BITMIME", "250-SMTPUTF8", "250 SIZE 10485760"
                )
            elif verb in ("HELO", "NOOP"):
                self._say("250 OK")
            elif verb == "MAIL":
                sender, recipients = argument, []
                self._say("250 OK")
            elif verb == "RCPT" and sender is not None:
                recipients.append(_address(argument))
                self._say("250 OK")
            elif verb == "DATA" and recipients:
                self._say("354 End data with <CR><LF>.<CR><LF>")
                self.server.sink.accept(recipients, self._data())
                sender, recipients = None, []
                self._say("250 OK: queued")
            elif verb == "RSET":
                sender, recipients = None, []
                self._say("250 OK")
            elif verb == "QUIT":
                self._say("221 Bye")
                return
            elif verb in ("RCPT", "DATA"):
                self._say("503 Bad sequence of commands")
            else:
                self._say("502 Command not implemented")

    def _data(self) -> bytes:
        lines: list[bytes] = []
        size = 0
        while (line := self.rfile.readline(1 << 16)) and line.rstrip(b"\r\n") != b".":
            size += len(line)
            if size <= SmtpSink.MAX_BYTES:
                lines.append(line[1:] if line.startswith(b"..") else line)
        return b"".join(lines)

    def _say(self, *lines: str) -> None:
        self.wfile.write("".join(f"{line}\r\n" for line in lines).encode("ascii"))


def _address(argument: str) -> str:
    """``TO:<a@b> PARAMS`` -> ``a@b``."""
    value = argument.partition(":")[2].strip()
    return value[1 : value.find(">")] if value.startswith("<") else value.split(" ")[0]


class _SmtpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, sink: SmtpSink) -> None:
        super().__init__((HOST, 0), _SmtpSession)
        self.sink = sink

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A session that broke off (the client hung up, timed out): logged, not printed."""
        log.info("demo SMTP stand-in: a session ended with an error", exc_info=True)


class SmtpSink(_Recorder):
    """An SMTP server on loopback that keeps every message (nothing is relayed)."""

    MAX_BYTES = 10 * 1024 * 1024

    def accept(self, recipients: list[str], data: bytes) -> None:
        message = BytesParser(policy=policy.default).parsebytes(data)
        body = message.get_body(("plain",))
        text = body.get_content() if body is not None else ""
        self.record(", ".join(recipients), str(message.get("Message-ID", "")), str(text))

    @contextmanager
    def running(self) -> Iterator[int]:
        """Serve until the ``with`` block ends; its port."""
        server = _SmtpServer(self)
        thread = threading.Thread(target=server.serve_forever, name="demo-smtp", daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


# -- HTTP ----------------------------------------------------------------------------------------


def stand_in(app: WsgiApp) -> Any:
    """A waitress server for a stand-in, listening on a free loopback port."""
    return waitress.create_server(app, host=HOST, port=0, threads=2, ident="demo-stand-in")
