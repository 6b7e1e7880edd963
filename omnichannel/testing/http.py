"""Real HTTP on loopback for tests: serve a WSGI app (ours, or a provider stand-in) with waitress.

::

    with serve_wsgi(create_app(inbox)) as base_url:      # "http://127.0.0.1:PORT"
        requests.post(base_url + "/webhooks/sms", ...)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import waitress

__all__ = ["serve_wsgi"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@contextmanager
def serve_wsgi(app: WsgiApp, *, threads: int = 4) -> Iterator[str]:
    """Run ``app`` on a free loopback port for the duration of the ``with`` block."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # the loop's sockets closed under it while stopping
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name="serve-wsgi", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.effective_port}"
    finally:
        stopping.set()
        server.task_dispatcher.shutdown(timeout=5)
        for channel in list(server._map.values()):
            if channel is not server:
                channel.close()  # connections a client left open (keep-alive)
        server.close()
        thread.join(timeout=10)
