"""WAL checkpoints for a file-based SQLite store, in a thread of their own.

In WAL mode a commit appends the changed pages to the write-ahead log; now and then the log is
copied back into the database file (a checkpoint), which reads the log, writes the pages and
waits for two ``fsync`` calls. By default SQLite does that inside whichever commit takes the
log past 1,000 pages, so one transaction in every few dozen waits milliseconds longer than the
others (on the hot path, a webhook waiting for its 200 waits for it too).

Here a thread checkpoints shortly after commits instead (``PASSIVE``: it never blocks a writer
or a reader, it copies what it can), on a connection of its own; SQLite releases the GIL while
it works and mostly waits for the disk. The writers' own automatic checkpoint stays on with a
larger threshold (``BACKSTOP_PAGES``), so the log cannot grow without bound if the thread falls
behind or is stopped.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

__all__ = ["BACKSTOP_PAGES", "Checkpointer"]

log = logging.getLogger("omnichannel.store")

BACKSTOP_PAGES = 10_000
"""The writers' ``wal_autocheckpoint``: about 40 MB of log with 4 KiB pages."""


class Checkpointer:
    """Checkpoints the database at ``path`` about ``interval`` seconds after a commit.

    ``committed()`` is cheap (one flag); the thread starts at the first one and sleeps while
    nothing is written. ``close()`` stops it (a last checkpoint is SQLite's own, when the
    last connection closes)."""

    def __init__(self, path: str, *, interval: float = 0.2, busy_timeout_ms: int = 1000) -> None:
        self._path = path
        self._interval = interval
        self._busy_timeout_ms = busy_timeout_ms
        self._written = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.checkpoints = 0
        """How many checkpoints the thread has run (for tests and diagnostics)."""

    def committed(self) -> None:
        """A writer committed: checkpoint soon."""
        if self._thread is None:
            self._start()
        if not self._written.is_set():
            self._written.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopping.is_set():
                return
            self._thread = threading.Thread(
                target=self._run, name="omnichannel-checkpoint", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the thread and close its connection."""
        with self._lock:
            self._stopping.set()
            thread = self._thread
        self._written.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while not self._stopping.is_set():  # (close sets it before it wakes the thread)
                self._written.wait()
                if self._stopping.wait(self._interval):
                    return
                self._written.clear()
                connection = connection or self._connect()
                if connection is not None:
                    self._checkpoint(connection)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection | None:
        try:
            connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
            connection.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.Error as exc:
            log.debug("checkpoint connection failed: %s", exc)
            return None
        return connection

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # busy, or the disk: the writers' own checkpoint remains
            log.debug("checkpoint failed: %s", exc)
        else:
            self.checkpoints += 1
