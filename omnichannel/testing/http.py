"""Real HTTP on loopback for tests: serve a WSGI app (ours, or a provider stand-in) with waitress.

::

    with serve_wsgi(create_app(inbox)) as base_url:      # "http://127.0.0.1:PORT"
        requests.post(base_url + "/webhooks/sms", ...)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import waitress

from omnichannel.daemon import serve_in_thread

__all__ = ["serve_wsgi"]

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@contextmanager
def serve_wsgi(app: WsgiApp, *, threads: int = 4) -> Iterator[str]:
    """Run ``app`` on a free loopback port for the duration of the ``with`` block."""
    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    with serve_in_thread(server, "serve-wsgi") as base_url:
        yield base_url
