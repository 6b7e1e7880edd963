"""Durable storage: engine, migrations, transactions, and the few portable SQL idioms we need."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL

from omnichannel.errors import StorageUnavailable
from omnichannel.store import deadline, migrate
from omnichannel.store.engine import create_engine, in_memory, normalize_url

__all__ = ["Store", "insert_ignore"]


def insert_ignore(
    conn: sa.Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    conflict: Sequence[str],
    *,
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """``INSERT … ON CONFLICT DO NOTHING``: insert-if-absent without check-then-insert races.
    Returns the ``returning`` columns of the rows inserted, in no particular order."""
    if not rows:
        return []
    statement = _insert_ignore(conn.dialect.name, table, tuple(conflict), tuple(returning))
    parameters: Any = rows[0] if len(rows) == 1 else list(rows)
    result = conn.execute(statement, parameters)
    return [tuple(row) for row in result] if returning else []


@functools.lru_cache(maxsize=64)
def _insert_ignore(
    dialect_name: str, table: sa.Table, conflict: tuple[str, ...], returning: tuple[str, ...]
) -> sa.Insert:
    # built once per table: SQLAlchemy then finds the compiled form in its cache directly
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    statement: sa.Insert = dialect.insert(table).on_conflict_do_nothing(
        index_elements=list(conflict)
    )
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    return statement


class _Breaker:
    """For transactions that answer a request: once the store has failed one, the others fail
    at once (``StorageUnavailable``) while a single one at a time tries it again, so that a
    database that hangs does not make every request wait out its own deadline in turn."""

    PAUSE = 0.5
    """Seconds after a failure before the next try."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._closed_until = 0.0  # monotonic time before which requests fail at once

    def enter(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._closed_until:
                raise StorageUnavailable("storage unavailable (not answering; retry later)")
            if self._closed_until:  # the one that tries again; the rest wait for its answer
                self._closed_until = now + 60.0

    def passed(self) -> None:
        with self._lock:
            self._closed_until = 0.0

    def failed(self) -> None:
        with self._lock:
            self._closed_until = time.monotonic() + self.PAUSE


class Store:
    """The omnichannel database (SQLite or PostgreSQL) and its schema."""

    def __init__(
        self, url: str | URL, *, auto_migrate: bool = True, wait_for_database: bool = False
    ) -> None:
        self.url = normalize_url(url)
        self.engine = create_engine(self.url)
        # SQLite has one writer at a time; threads of one process queue here instead of
        # spinning in SQLite's busy handler (which adds up to hundreds of ms of tail latency)
        self._writer = threading.RLock() if self.dialect == "sqlite" else None
        # ... and, as they take turns anyway, they share one connection: checking one out of
        # the pool and back in for every transaction cost more than a small transaction itself
        self._shared: sa.Connection | None = None
        self._breaker = _Breaker()
        self._migration_pending = False
        if auto_migrate:
            try:
                self.migrate(only_if_needed=True)
            except StorageUnavailable:
                if not wait_for_database:
                    raise
                # a server that starts before its database: every transaction tries again
                # (and fails with StorageUnavailable, a 503) until the schema is in place
                self._migration_pending = True

    def __repr__(self) -> str:
        return f"<Store {self.url.render_as_string(hide_password=True)}>"

    @property
    def in_memory(self) -> bool:
        """An SQLite database in this process's memory (no other process can open it)."""
        return self.dialect == "sqlite" and in_memory(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def migrate(self, *, only_if_needed: bool = False) -> None:
        """Create or upgrade the schema to the newest revision."""
        with self._serialized(), self._translate_errors():
            if only_if_needed and migrate.is_current(self.engine):
                return
            migrate.upgrade(self.engine)

    def revision(self) -> str | None:
        with self._translate_errors():
            return migrate.current_revision(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One atomic unit of work; connection failures become StorageUnavailable."""
        bounded = deadline.timeout() is not None
        if bounded:
            self._breaker.enter()
        try:
            if self._migration_pending:
                self.migrate(only_if_needed=True)
                self._migration_pending = False
            with deadline.transaction_deadline(), self._serialized(), self._translate_errors():
                if self._writer is None:
                    with self.engine.begin() as connection:
                        yield connection
                else:
                    connection = self._connection()
                    with connection.begin():
                        yield connection
        except StorageUnavailable:
            if bounded:
                self._breaker.failed()
            raise
        except BaseException:  # the store answered; the error is the caller's
            if bounded:
                self._breaker.passed()
            raise
        if bounded:
            self._breaker.passed()

    def _connection(self) -> sa.Connection:
        """SQLite: the connection the process's transactions take turns on (writer lock held)."""
        shared = self._shared
        if shared is None or shared.closed or shared.invalidated:
            if shared is not None:
                shared.close()
            shared = self._shared = self.engine.connect()
        return shared

    @contextmanager
    def _serialized(self) -> Iterator[None]:
        if self._writer is None:
            yield
            return
        with self._writer:
            yield

    @contextmanager
    def _translate_errors(self) -> Iterator[None]:
        try:
            yield
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            detail = str(exc.orig if exc.orig is not None else exc).strip().splitlines()
            reason = detail[0] if detail else type(exc).__name__
            raise StorageUnavailable(f"storage unavailable ({self.dialect}: {reason})") from exc

    @staticmethod
    def within(seconds: float | None) -> contextlib.AbstractContextManager[None]:
        """Transactions begun in this thread in this block finish within ``seconds`` each, or
        fail with ``StorageUnavailable`` (PostgreSQL: a hanging server is cut off)."""
        return deadline.within(seconds)

    def dispose(self) -> None:
        with self._serialized():
            shared, self._shared = self._shared, None
            if shared is not None:
                shared.close()
        self.engine.dispose()
