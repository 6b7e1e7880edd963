"""The daemon's parts, shared by ``run``, ``serve``, ``work`` and ``demo``: the waitress
server for the WSGI app (with per-connector body limits enforced before a body is read), and
the background workers (filing, media downloads, outbox) started and stopped together.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from omnichannel.errors import OmnichannelError
from omnichannel.inbox import Inbox
from omnichannel.media import run_media_worker

__all__ = [
    "create_server",
    "outbox_thread",
    "serve_in_thread",
    "start_background",
    "stop_background",
]

log = logging.getLogger("omnichannel.daemon")


def create_server(inbox: Inbox, host: str | None, port: int | None, threads: int) -> Any:
    """The waitress server for the WSGI app, listening; a port in use is a one-line error."""
    import waitress

    from omnichannel.http import create_app

    server = inbox.config.server
    address = (host or server.host, port or server.port)
    try:
        created = waitress.create_server(
            create_app(inbox),
            host=address[0],
            port=address[1],
            threads=threads,
            ident="omnichannel",
            clear_untrusted_proxy_headers=True,
            connection_limit=server.connection_limit,
            channel_timeout=server.idle_timeout,
            cleanup_interval=max(1, min(10, server.idle_timeout // 2)),
        )
    except OSError as exc:
        raise OmnichannelError(
            f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
        ) from None
    # waitress reads a body whole before the app sees it: each request gets the limit of the
    # connector its path names, so a body declared larger is refused before it is read
    created.channel_class = _channel_limited_by(_body_limits(inbox))
    return created


def _body_limits(inbox: Inbox) -> Callable[[str], tuple[str | None, int]]:
    """For a request path: the webhook connector it names (None for other paths) and the
    largest body it accepts."""
    from omnichannel.http import PREFIX
    from omnichannel.webhook import DEFAULT_MAX_BYTES, WebhookConnector

    limits: dict[str, int] = {}
    for name in inbox.connector_names():
        connector = inbox.connector(name)
        if isinstance(connector, WebhookConnector):
            limits[name] = connector.max_bytes()

    def limit_for(path: str) -> tuple[str | None, int]:
        name = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        if name in limits:
            return name, limits[name]
        return None, DEFAULT_MAX_BYTES

    return limit_for


def _channel_limited_by(limit_for: Callable[[str], tuple[str | None, int]]) -> Any:
    """A waitress channel whose requests are refused (413) from their declared
    ``Content-Length`` when it is over the limit of the connector they are for, before a byte
    of the body is read; a chunked body is cut off once it passes that limit."""
    import copy

    from waitress.channel import HTTPChannel
    from waitress.parser import HTTPRequestParser

    class Parser(HTTPRequestParser):  # type: ignore[misc]
        def parse_header(self, header_plus: bytes) -> None:
            super().parse_header(header_plus)
            name, limit = limit_for(self.path or "")
            adjustments: Any = copy.copy(getattr(self, "adj"))  # noqa: B009 - untyped
            adjustments.max_request_body_size = limit + 1  # waitress refuses at >=
            setattr(self, "adj", adjustments)  # noqa: B010
            if self.content_length > limit and name is not None:
                log.warning("webhook %s refused: 413 request body too large", name)

    class Channel(HTTPChannel):  # type: ignore[misc]
        parser_class = Parser

    return Channel


def start_background(
    inbox: Inbox, stop: threading.Event, *, outbox: bool = False
) -> list[threading.Thread]:
    """The filing worker (a thread of the inbox), the media downloads and, for ``run``, the
    outbox worker."""
    inbox.worker.start(interval=inbox.config.filing.interval)
    threads = [
        threading.Thread(
            target=run_media_worker, args=(inbox.fetch_media, stop), name="media", daemon=True
        )
    ]
    if outbox:
        threads.append(outbox_thread(inbox, stop))
    for thread in threads:
        thread.start()
    return threads


def outbox_thread(inbox: Inbox, stop: threading.Event) -> threading.Thread:
    from omnichannel.outbox import run_outbox_worker

    return threading.Thread(
        target=run_outbox_worker,
        args=(inbox.outbox, stop),
        kwargs={"interval": inbox.config.outbox.interval},
        name="outbox",
        daemon=True,
    )


def stop_background(
    inbox: Inbox, stop: threading.Event, threads: list[threading.Thread], deadline: float
) -> None:
    """Stop taking work, let what is in hand finish (its transaction commits or rolls back),
    within ``deadline`` (a ``time.monotonic()`` value)."""
    import time

    stop.set()
    inbox.worker.close(timeout=max(0.1, deadline - time.monotonic()))
    for thread in threads:
        thread.join(timeout=max(0.1, deadline - time.monotonic()))


@contextmanager
def serve_in_thread(server: Any, name: str) -> Iterator[str]:
    """Run a waitress ``server`` (created, listening) in a thread until the ``with`` block
    ends; its base URL. Connections left open by clients (keep-alive) are closed on the way
    out. The demo's server and stand-ins, and tests' loopback servers, run this way."""
    stopping = threading.Event()

    def run() -> None:
        try:
            server.run()
        except (OSError, ValueError):  # its sockets closed under it while stopping
            if not stopping.is_set():
                raise

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        yield f"http://{server.effective_host}:{server.effective_port}"
    finally:
        stopping.set()
        server.task_dispatcher.shutdown(timeout=5)
        for channel in list(server._map.values()):
            if channel is not server:
                channel.close()
        server.close()
        thread.join(timeout=10)
