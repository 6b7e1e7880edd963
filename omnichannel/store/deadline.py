"""Deadlines for PostgreSQL transactions that answer a request: a database that hangs (accepts
connections, never answers) must cost a webhook a 503 within a second, not a minute.

libpq has no client-side timeout for a statement or a commit, and a server that keeps its TCP
connection open but silent is never noticed by the operating system. So a transaction run
under ``within(seconds)`` registers its connection with a watchdog thread, and a connection
still in use when its deadline passes has its socket shut down: the driver's wait returns at
once with a lost connection, SQLAlchemy discards that connection, and the store reports
``StorageUnavailable``. The same deadline bounds the pool's pre-ping of a pooled connection and
the opening of a new one. Outside ``within`` nothing is bounded (a filing worker may wait for a
lock as long as it needs).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Watchdog", "current_deadline", "remaining", "within"]

log = logging.getLogger("omnichannel.store")
_local = threading.local()


@contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Transactions begun in this thread inside this block must finish within ``seconds``
    each (None: no bound)."""
    previous = getattr(_local, "timeout", None)
    _local.timeout = seconds
    try:
        yield
    finally:
        _local.timeout = previous


def timeout() -> float | None:
    """The bound of this thread's transactions, if any."""
    value: float | None = getattr(_local, "timeout", None)
    return value


@contextmanager
def transaction_deadline() -> Iterator[float | None]:
    """The absolute deadline (``time.monotonic``) of the transaction begun here, set for this
    thread while it runs."""
    seconds = timeout()
    previous = getattr(_local, "deadline", None)
    _local.deadline = None if seconds is None else time.monotonic() + seconds
    try:
        yield _local.deadline
    finally:
        _local.deadline = previous


def current_deadline() -> float | None:
    value: float | None = getattr(_local, "deadline", None)
    return value


def remaining() -> float | None:
    """Seconds left before this thread's transaction deadline (None: no deadline)."""
    deadline = current_deadline()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


class Watchdog:
    """One thread that cuts the connections whose deadline has passed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._armed: dict[int, Any] = {}
        self._tokens = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, dbapi_connection: Any, deadline: float) -> int:
        """Cut ``dbapi_connection`` at ``deadline`` unless disarmed first; the token."""
        token = next(self._tokens)
        with self._condition:
            self._armed[token] = dbapi_connection
            heapq.heappush(self._heap, (deadline, token))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="omnichannel-deadlines", daemon=True
                )
                self._thread.start()
            self._condition.notify()
        return token

    def disarm(self, token: int) -> None:
        with self._condition:
            self._armed.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._heap or self._heap[0][1] not in self._armed:
                    if self._heap:  # disarmed: drop it
                        heapq.heappop(self._heap)
                        continue
                    self._condition.wait()
                deadline, token = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._condition.wait(wait)
                    continue
                heapq.heappop(self._heap)
                connection = self._armed.pop(token, None)
            if connection is not None:
                _cut(connection)


def _cut(dbapi_connection: Any) -> None:
    """Shut the connection's socket down: whoever waits on it gets a lost connection."""
    try:
        duplicate = os.dup(dbapi_connection.fileno())
    except Exception as exc:  # closed already
        log.debug("deadline: nothing to cut (%s)", type(exc).__name__)
        return
    with socket.socket(fileno=duplicate) as sock, contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    log.warning("database did not answer in time: connection cut")
