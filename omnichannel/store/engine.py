"""Engines for the two first-class backends, SQLite (embedded default) and PostgreSQL.

SQLite runs in WAL mode with foreign keys on, and every transaction starts with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the busy timeout instead of failing
with "database is locked" half-way through a transaction.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.pool import StaticPool

from omnichannel.errors import StorageUnavailable
from omnichannel.store import deadline as limits

__all__ = ["create_engine", "normalize_url"]

SQLITE_BUSY_TIMEOUT_S = 60
SQLITE_CACHE_KIB = 32 * 1024


PG_CONNECT_TIMEOUT_S = "5"


def normalize_url(url: str | URL) -> URL:
    """``postgresql://`` means psycopg 3 here (the driver we ship in the ``postgres`` extra).

    PostgreSQL connections get a ``connect_timeout`` (5 s) unless the URL sets one: libpq waits
    for the operating system otherwise (minutes), far beyond the 15 s a provider waits for a
    webhook's answer — a 503 in time lets it retry.
    """
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        parsed = parsed.update_query_dict({"connect_timeout": PG_CONNECT_TIMEOUT_S})
    return parsed


def _use_wal(cursor: Any) -> None:
    """Switch to WAL once; two processes opening a fresh file at once may both try, and the
    loser gets "database is locked" at once (the busy handler does not cover this pragma)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def in_memory(url: URL) -> bool:
    """Whether an SQLite URL names a database in the process's memory (``sqlite://``,
    ``:memory:``, or a ``mode=memory`` URI): no other process can open it."""
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"


def _sqlite_engine(url: URL, **kwargs: Any) -> Engine:
    if url.database and not in_memory(url):
        folder = Path(url.database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(
                f"storage unavailable (sqlite: cannot create {folder}: {exc.strerror})"
            ) from None
    connect_args: dict[str, Any] = {"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}
    if in_memory(url):
        # an in-memory database exists in one connection: every thread of the process uses
        # that one (the store's transactions take turns on it), not one database per thread
        kwargs.setdefault("poolclass", StaticPool)
        connect_args["check_same_thread"] = False
    engine = sa.create_engine(url, connect_args=connect_args, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        # 32 MiB of page cache (SQLite's default is 2 MiB): the indexes that dedupe and the
        # queue read at random stay in memory for an archive of a million complaints
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # on the driver's connection: SQLAlchemy's statement machinery cost more than this
        connection.connection.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]

    return engine


def _postgres_engine(url: URL, **kwargs: Any) -> Engine:
    """``connect_timeout`` is kept to the fraction of a second: libpq (and psycopg after it)
    makes anything under 2 s into 2 s, and a webhook that finds the database hanging should
    be answered 503 well before that. Values of 0 or less keep libpq's meaning (no limit)."""
    try:
        deadline = float(url.query.get("connect_timeout", PG_CONNECT_TIMEOUT_S))  # type: ignore[arg-type]
    except ValueError:
        deadline = 0.0  # psycopg reports the bad value itself
    if deadline > 0:
        url = url.update_query_dict({"connect_timeout": str(max(2, math.ceil(deadline)))})
    engine = sa.create_engine(url, pool_pre_ping=True, **kwargs)

    @event.listens_for(engine, "do_connect")
    def _connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        own = deadline if deadline > 0 else None
        bounds = [b for b in (own, limits.remaining()) if b is not None]
        if not bounds:  # neither connect_timeout nor a transaction deadline: as usual
            return None
        seconds = min(bounds)  # a transaction's deadline bounds its connect as well
        return connect_within(
            seconds, lambda: dialect.connect(*cargs, **cparams), dialect.loaded_dbapi
        )

    _bound_pings_and_transactions(engine)
    return engine


def _bound_pings_and_transactions(engine: Engine) -> None:
    """Under ``deadline.within``: the pool's pre-ping and the whole transaction on the
    connection it hands out are cut at the transaction's deadline (see ``deadline``)."""
    watchdog = limits.Watchdog()
    dialect = engine.dialect
    ping = dialect.do_ping

    def bounded_ping(dbapi_connection: Any) -> bool:
        deadline = limits.current_deadline()
        if deadline is None:
            return ping(dbapi_connection)
        token = watchdog.arm(dbapi_connection, deadline)
        try:
            return ping(dbapi_connection)
        finally:
            watchdog.disarm(token)

    dialect.do_ping = bounded_ping  # type: ignore[method-assign]

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        deadline = limits.current_deadline()
        if deadline is not None:
            record.info["deadline_token"] = watchdog.arm(dbapi_connection, deadline)

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        token = record.info.pop("deadline_token", None) if record is not None else None
        if token is not None:
            watchdog.disarm(token)


def connect_within(seconds: float, connect: Callable[[], Any], dbapi: Any) -> Any:
    """``connect()``, or the driver's ``OperationalError`` once ``seconds`` have passed.

    The attempt goes on in a thread of its own until the driver gives up (its own timeout);
    a connection it makes after the deadline is closed at once, never used.
    """
    lock, done = threading.Lock(), threading.Event()
    outcome: dict[str, Any] = {}

    def attempt() -> None:
        try:
            connection = connect()
        except BaseException as exc:
            outcome.setdefault("error", exc)
        else:
            with lock:
                late = "abandoned" in outcome
                outcome.setdefault("connection", connection)
            if late:
                connection.close()
        finally:
            done.set()

    threading.Thread(target=attempt, name="connect", daemon=True).start()
    if not done.wait(seconds):
        with lock:
            if "connection" not in outcome:
                outcome["abandoned"] = True
                raise dbapi.OperationalError(f"connection timeout expired ({seconds:g} s)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["connection"]


def create_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine configured for safe concurrent use of the omnichannel store."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, **kwargs)
    if parsed.get_backend_name() == "postgresql":
        return _postgres_engine(parsed, **kwargs)
    return sa.create_engine(parsed, pool_pre_ping=True, **kwargs)
