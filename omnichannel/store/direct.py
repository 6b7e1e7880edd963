"""The filing hot path: Core statements compiled once per dialect, their parameters processed
by the column types' own bind processors, executed as driver SQL.

``Connection.execute`` of a Core statement costs, on every call, a cache-key walk of the
statement, parameter construction for every row and column, and an execution context; for the
few multi-row writes of a webhook's filing that was most of its time. Here the SQL string, the
parameter order and each parameter's bind processor are worked out once per statement, dialect
and column set, and each row becomes one tuple (or dict, for named parameter styles).

Those run on the connection's DBAPI cursor: even ``Connection.exec_driver_sql`` builds an
execution context and a result object per statement, which cost more than SQLite's own work on
these statements. SQLAlchemy still owns the connection and the transaction, and a driver error
goes through its error handling (the same exception classes, ``handle_error`` events, and
invalidation of a connection that was lost). When anything listens to the engine's
``before_cursor_execute`` or ``after_cursor_execute`` events (tracing, SQL logging with
``echo``), every statement goes through ``exec_driver_sql`` instead, so that they see it.

Statements take plain parameters only; an IN list is written as ``in_list(n)`` separate
parameters, and ``fetch_in`` builds (once per list size, rounded up to a power of two) the
statement for a list of values. The values sent are those the compiled statement would send, and
the rows read back are processed by the selected columns' own result processors.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

__all__ = ["execute_many", "execute_sql", "fetch", "fetch_in", "in_list", "insert_many"]

Processor = Callable[[Any], Any]


@dataclass(frozen=True)
class _Plan:
    """A statement compiled for one dialect and one set of row keys."""

    sql: str
    names: tuple[str, ...]
    processors: tuple[Processor | None, ...]
    fixed: tuple[Any, ...]  # values written into the statement itself (``.values(x="y")``)
    keyed: tuple[bool, ...]  # True: the value comes from the row; False: from ``fixed``
    positional: bool
    results: tuple[Processor | None, ...] = ()  # per selected column, for statements with rows

    def parameters(self, row: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for ``row``."""
        values = [
            row[name] if keyed else fixed
            for name, keyed, fixed in zip(self.names, self.keyed, self.fixed, strict=True)
        ]
        processed = [  # the processors handle None themselves (JSON writes 'null')
            value if process is None else _processed(process, value)
            for value, process in zip(values, self.processors, strict=True)
        ]
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))


_datetimes: dict[tuple[Any, ...], Any] = {}
"""Processed datetimes, by processor and value: a transaction's rows carry the same few moments
("now" in most tables, a message's received time in four) and processing one costs several
microseconds. Kept small; emptied when full."""
_DATETIMES_KEPT = 256


def _processed(process: Processor, value: Any) -> Any:
    if type(value) is not datetime:
        return process(value)
    # equal instants in other zones may render otherwise, and times that differ only by their
    # fold (the repeated hour when clocks go back) compare equal in their own zone
    key = (process, value, value.tzinfo, value.fold)
    found = _datetimes.get(key)
    if found is None:
        if len(_datetimes) >= _DATETIMES_KEPT:
            _datetimes.clear()
        found = _datetimes[key] = process(value)
    return found


_plans: dict[tuple[str, str, str, sa.Executable, tuple[str, ...]], _Plan] = {}
_lock = threading.Lock()


def execute_many(
    conn: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Execute ``statement`` once per row (one ``executemany``); every row has the same keys.
    Returns the number of rows written (the driver's ``rowcount``; -1 when it does not tell).

    ``statement`` should be a module-level constant: its plan is kept for the process's life.
    """
    return _execute(conn, statement, rows)[0]


def insert_many(
    conn: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
) -> tuple[int, list[int] | None]:
    """``execute_many`` of an INSERT: the number of rows inserted, and their ids, in order,
    when every row was inserted and the ids are known for sure.

    SQLite: the store's transactions hold the write lock (``BEGIN IMMEDIATE``) and a new row's
    rowid is one more than the largest, so one multi-row insert takes consecutive ids ending at
    the last one inserted (every table's ``id`` is an ``INTEGER PRIMARY KEY``, the rowid): the
    cursor's ``lastrowid`` for a single row, ``last_insert_rowid()`` after an ``executemany``.
    Elsewhere the ids are ``None``, and the caller reads them back by a unique key.
    """
    count, last = _execute(conn, statement, rows)
    if conn.dialect.name != "sqlite" or not rows or count != len(rows):
        return count, None
    if last is None:
        [(last,)] = _run(conn, "SELECT last_insert_rowid()", (), many=False, rows=True)
    return count, list(range(int(last) - count + 1, int(last) + 1))


def _execute(
    conn: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
) -> tuple[int, int | None]:
    """``execute_many``'s work: the row count, and the driver's ``lastrowid`` when it was one
    ``execute`` (a single row) and the driver tells it."""
    if not rows:
        return 0, None
    plan = _plan(conn.dialect, statement, tuple(rows[0]))
    parameters = [plan.parameters(row) for row in rows]
    if len(parameters) == 1:
        return _write(conn, plan.sql, parameters[0], many=False)
    return _write(conn, plan.sql, parameters, many=True)


def fetch(
    conn: sa.Connection, statement: sa.Executable, params: Mapping[str, Any]
) -> list[tuple[Any, ...]]:
    """Execute ``statement`` once with ``params``; its rows, as the selected columns' types
    read them (``RETURNING`` included)."""
    plan = _plan(conn.dialect, statement, tuple(params))
    rows = _run(conn, plan.sql, plan.parameters(params), many=False, rows=True)
    if not any(plan.results):
        return [tuple(row) for row in rows]
    return [
        tuple(
            value if process is None else process(value)
            for value, process in zip(row, plan.results, strict=True)
        )
        for row in rows
    ]


def execute_sql(conn: sa.Connection, sql: str) -> None:
    """Execute a statement without parameters (``BEGIN IMMEDIATE``, say) as the others."""
    _run(conn, sql, (), many=False, rows=False)


def in_list(size: int, type_: sa.types.TypeEngine[Any]) -> list[sa.BindParameter[Any]]:
    """``size`` parameters for an IN list, for statements that ``fetch_in`` runs."""
    return [sa.bindparam(f"in_{k}", type_=type_) for k in range(size)]


def fetch_in(
    conn: sa.Connection,
    build: Callable[[int], sa.Executable],
    values: Sequence[Any],
    params: Mapping[str, Any] | None = None,
) -> list[tuple[Any, ...]]:
    """``fetch`` of ``build(size)``, a statement with an ``in_list(size)``, over ``values``.

    ``build`` should be a module-level function: each size's statement is kept for good.
    The list is padded to a power of two with its last value (an IN list repeats harmlessly),
    so that a handful of statements serve every size.
    """
    if not values:
        return []
    size = 1 << (len(values) - 1).bit_length()
    padded = [*values, *[values[-1]] * (size - len(values))]
    bound = {f"in_{k}": value for k, value in enumerate(padded)}
    return fetch(conn, _built(build, size), {**(params or {}), **bound})


@functools.cache
def _built(build: Callable[[int], sa.Executable], size: int) -> sa.Executable:
    return build(size)


def _run(conn: sa.Connection, sql: str, parameters: Any, *, many: bool, rows: bool) -> Any:
    """Execute on the DBAPI cursor (see the module's notes); the rows when ``rows``, else the
    row count."""
    if rows:
        return _cursor_run(conn, sql, parameters, many, lambda cursor: cursor.fetchall())
    return _write(conn, sql, parameters, many=many)[0]


def _write(conn: sa.Connection, sql: str, parameters: Any, *, many: bool) -> tuple[int, int | None]:
    """Execute a statement without rows: its row count and the driver's ``lastrowid``."""
    read = _count if many else _count_and_last
    written: tuple[int, int | None] = _cursor_run(conn, sql, parameters, many, read)
    return written


def _count(cursor: Any) -> tuple[int, int | None]:
    return cursor.rowcount, None


def _count_and_last(cursor: Any) -> tuple[int, int | None]:
    return cursor.rowcount, _last(cursor)


def _last(cursor: Any) -> int | None:
    """The driver's ``lastrowid`` where it has one (sqlite3; psycopg has none)."""
    try:
        last = cursor.lastrowid
    except Exception:  # SQLAlchemy's result raises where the driver has no such attribute
        return None
    return last if isinstance(last, int) else None


def _cursor_run(
    conn: sa.Connection,
    sql: str,
    parameters: Any,
    many: bool,
    read: Callable[[Any], Any],
) -> Any:
    dispatch = conn.dispatch
    if conn.engine.echo or dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        return read(conn.exec_driver_sql(sql, parameters))
    cursor = conn.connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        return read(cursor)
    except conn.dialect.loaded_dbapi.Error as exc:
        # SQLAlchemy's own handling: its exception classes, handle_error, invalidation
        conn._handle_dbapi_exception(exc, sql, parameters, cursor, None)
    finally:
        cursor.close()


def _plan(dialect: Dialect, statement: sa.Executable, keys: tuple[str, ...]) -> _Plan:
    # statements hash by identity; the key keeps each one alive along with its plan
    key = (dialect.name, dialect.driver, str(dialect.paramstyle), statement, keys)
    plan = _plans.get(key)
    if plan is None:
        with _lock:
            plan = _plans[key] = _compile(dialect, statement, keys)
    return plan


def _compile(dialect: Dialect, statement: sa.Executable, keys: tuple[str, ...]) -> _Plan:
    compiled = statement.compile(dialect=dialect, column_keys=list(keys))  # type: ignore[attr-defined]
    positional = compiled.positiontup is not None
    names = tuple(compiled.positiontup if positional else compiled.binds)
    binds = compiled.binds
    if any(binds[name].expanding for name in names):
        raise ValueError("execute_many does not take expanding (IN list) parameters")
    keyed = tuple(name in keys for name in names)
    fixed = tuple(
        None if k else binds[name].effective_value for name, k in zip(names, keyed, strict=True)
    )
    processors = tuple(_processor(binds[name].type, dialect) for name in names)
    columns = getattr(statement, "exported_columns", ())  # selected, or RETURNING
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
    )
    return _Plan(compiled.string, names, processors, fixed, keyed, positional, results)


def _processor(type_: sa.types.TypeEngine[Any], dialect: Dialect) -> Processor | None:
    process: Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return process
