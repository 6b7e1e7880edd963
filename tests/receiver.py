"""A real HTTP server on loopback standing in for an agency's system that takes our forwards.

It verifies each request's Standard Webhooks signature with the ``standardwebhooks`` library
(an implementation that is not ours), keeps every request (time, headers, body), and accepts
counts the requests it answered 2xx per ``webhook-id`` (``accepted``). It can be told to
fail the first attempts of each delivery, to answer with ``Retry-After``, or to hold its answer
until released (to kill a worker that is waiting for it).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook

SECRET = "whsec_" + "c2VjcmV0LWtleS1mb3ItdGhlLWZvcndhcmRlci10ZXN0cw=="


@dataclass
class Seen:
    at: float
    headers: dict[str, str]
    body: bytes
    signature_ok: bool

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """``with Receiver() as r: ... r.url``."""

    def __init__(
        self,
        *,
        secret: str = SECRET,
        fail_first: int = 0,
        fail_status: int = 503,
        retry_after: str | None = None,
        port: int = 0,
    ) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.retry_after = retry_after
        self.seen: list[Seen] = []
        self.accepted: Counter[str] = Counter()
        self.hold = threading.Event()
        self.hold.set()  # answer at once unless cleared
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self._tries: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/complaints"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        with self._lock:
            return [s.id for s in self.seen]

    def times(self, webhook_id: str) -> list[float]:
        with self._lock:
            return [s.at for s in self.seen if s.id == webhook_id]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    Webhook(receiver.secret).verify(body, headers)
                    ok = True
                except Exception:
                    ok = False
                seen = Seen(time.monotonic(), headers, body, ok)
                with receiver._lock:
                    receiver.seen.append(seen)
                    receiver._tries[seen.id] += 1
                    failing = receiver._tries[seen.id] <= receiver.fail_first
                receiver.arrived.set()
                receiver.hold.wait(60)
                if not ok:
                    self._answer(401)
                elif failing:
                    extra = {"Retry-After": receiver.retry_after} if receiver.retry_after else {}
                    self._answer(receiver.fail_status, extra)
                else:
                    with receiver._lock:
                        receiver.accepted[seen.id] += 1
                    self._answer(200)

            def _answer(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

        return Handler
