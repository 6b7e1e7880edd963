"""A stand-in for the Telegram Bot API: a real HTTP server on loopback, for tests.

It keeps Telegram's rules where a connector can get them wrong: every method answers
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}`` (with
``parameters.retry_after`` on a 429); ``getUpdates`` gives the updates from ``offset`` on
(default: the earliest unconfirmed), at most ``limit``, holds the request up to ``timeout``
seconds while there are none, and forgets every update below the offset it is sent. It answers
``getMe``, ``getUpdates``, ``sendMessage``, ``getFile`` and ``/file/bot<token>/<path>``::

    with BotAPI("123:abc") as api:
        api.push({"message": {...}})          # an update, numbered like Telegram's
        api.fail_next(429, retry_after=7)     # or 500, 401, 403; api.stop(): unreachable
        ...                                   # point the connector at api.url
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = ["BotAPI"]

DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict: can't use getUpdates method while webhook is active",
    429: "Too Many Requests: retry after {retry_after}",
    500: "Internal Server Error",
}


class BotAPI:
    """The Bot API of one bot, served at :attr:`url` while the ``with`` block runs."""

    def __init__(self, token: str, *, first_update_id: int = 700_000_000) -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.next_update_id = first_update_id
        self.sent: list[dict[str, Any]] = []
        self.files: dict[str, tuple[str, bytes]] = {}
        self.blocked: set[int] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._failures: list[tuple[int, int | None]] = []
        self._stopped = False
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> BotAPI:
        serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        serve.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving and close the port: connections to :attr:`url` are refused."""
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()

    # -- what a test does ----------------------------------------------------------------------

    def push(self, update: dict[str, Any]) -> int:
        """Add an update (without ``update_id``: it is numbered here); its update_id."""
        with self._changed:
            update_id = self.next_update_id
            self.next_update_id += 1
            self.updates.append({"update_id": update_id, **update})
            self._changed.notify_all()
        return update_id

    def fail_next(self, status: int, *, retry_after: int | None = None) -> None:
        """Answer the next request with this error (Telegram's body for it)."""
        self._failures.append((status, retry_after))

    def add_file(self, file_id: str, path: str, content: bytes) -> None:
        self.files[file_id] = (path, content)

    def pending(self) -> list[int]:
        """The update_ids Telegram still holds (not confirmed)."""
        with self._changed:
            return [u["update_id"] for u in self.updates]

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    # -- the API -------------------------------------------------------------------------------

    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, params))
        if self._failures:
            return _error(*self._failures.pop(0))
        handler = getattr(self, f"_{method}", None)
        if handler is None:
            return _error(404)
        try:
            answer: tuple[int, dict[str, Any]] = handler(params)
        except (KeyError, TypeError, ValueError):
            return _error(400, description="Bad Request: wrong parameters")
        return answer

    def _getMe(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        bot = {"id": 4242, "is_bot": True, "first_name": "Pengaduan", "username": "aduan_bot"}
        return _ok(bot)

    def _getUpdates(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        offset = int(params.get("offset", 0))
        limit = max(1, min(100, int(params.get("limit", 100))))
        timeout = max(0.0, min(50.0, float(params.get("timeout", 0))))
        with self._changed:
            self._confirm(offset)
            if not self.updates and timeout:
                self._changed.wait_for(lambda: bool(self.updates), timeout=timeout)
            return _ok(list(self.updates[:limit]))

    def _confirm(self, offset: int) -> None:
        """Telegram forgets the updates below a positive offset; a negative one keeps only the
        last ``-offset`` updates."""
        if offset > 0:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        elif offset < 0:
            self.updates = self.updates[offset:]

    def _sendMessage(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat_id, text = int(params["chat_id"]), str(params["text"])
        if chat_id in self.blocked:
            return _error(403)
        if not text or len(text) > 4096:
            return _error(400, description="Bad Request: message text is empty or too long")
        message = {
            "message_id": 9000 + len(self.sent),
            "date": 1_796_000_000,
            "chat": {"id": chat_id, "type": "private"},
            "from": {"id": 4242, "is_bot": True, "first_name": "Pengaduan"},
            "text": text,
        }
        self.sent.append(params)
        return _ok(message)

    def _getFile(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        found = self.files.get(str(params["file_id"]))
        if found is None:
            return _error(400, description="Bad Request: invalid file_id")
        path, content = found
        return _ok({"file_id": params["file_id"], "file_path": path, "file_size": len(content)})

    def file(self, path: str) -> bytes | None:
        return next((content for p, content in self.files.values() if p == path), None)


def _ok(result: Any) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True, "result": result}


def _error(
    status: int, retry_after: int | None = None, *, description: str | None = None
) -> tuple[int, dict[str, Any]]:
    text = description or DESCRIPTIONS.get(status, "Error").format(retry_after=retry_after)
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": text}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return status, body


def _handler(api: BotAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            segments = parts.path.split("/")
            if len(segments) >= 4 and segments[1] == "file":  # /file/bot<token>/<path>
                self._file(segments[2], "/".join(segments[3:]))
                return
            if len(segments) != 3 or segments[1] != f"bot{api.token}":
                self._send(*_error(401 if segments[1].startswith("bot") else 404))
                return
            params = dict(parse_qsl(parts.query))
            params.update(self._params(body))
            self._send(*api.answer(segments[2], params))

        def _params(self, body: bytes) -> dict[str, Any]:
            kind = self.headers.get("content-type", "").split(";")[0].strip()
            if kind == "application/json" and body:
                loaded = json.loads(body)
                return loaded if isinstance(loaded, dict) else {}
            if kind == "application/x-www-form-urlencoded":
                return dict(parse_qsl(body.decode()))
            return {}

        def _file(self, bot: str, path: str) -> None:
            content = api.file(path) if bot == f"bot{api.token}" else None
            if content is None:
                self._send(*_error(404))
                return
            self.send_response(200)
            self.send_header("content-type", "application/octet-stream")
            self.send_header("content-length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request line holds the token."""

    return Handler
