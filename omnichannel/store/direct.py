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

__all__ = ["execute_many", "execute_sql", "fetch", "fetch_in", "in_list", "inserted_ids"]

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

    def parameters(
        self, row: Mapping[str, Any], seen: dict[tuple[Any, ...], Any] | None = None
    ) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for ``row``. ``seen``: processed datetimes, shared by the
        rows of one call (a batch's rows carry the same few moments: "now", received at)."""
        values = [
            row[name] if keyed else fixed
            for name, keyed, fixed in zip(self.names, self.keyed, self.fixed, strict=True)
        ]
        processed = [  # the processors handle None themselves (JSON writes 'null')
            value if process is None else _processed(process, value, seen)
            for value, process in zip(values, self.processors, strict=True)
        ]
        if self.positional:
            return tuple(processed)
        return dict(zip(self.names, processed, strict=True))


def _processed(process: Processor, value: Any, seen: dict[tuple[Any, ...], Any] | None) -> Any:
    if seen is None or type(value) is not datetime:
        return process(value)
    key = (process, value, value.tzinfo)  # equal instants in other zones may render otherwise
    if key not in seen:
        seen[key] = process(value)
    return seen[key]


_plans: dict[tuple[str, str, str, sa.Executable, tuple[str, ...]], _Plan] = {}
_lock = threading.Lock()


def execute_many(
    conn: sa.Connection, statement: sa.Executable, rows: Sequence[Mapping[str, Any]]
) -> int:
    """Execute ``statement`` once per row (one ``executemany``); every row has the same keys.
    Returns the number of rows written (the driver's ``rowcount``; -1 when it does not tell).

    ``statement`` should be a module-level constant: its plan is kept for the process's life.
    """
    if not rows:
        return 0
    plan = _plan(conn.dialect, statement, tuple(rows[0]))
    seen: dict[tuple[Any, ...], Any] = {}
    parameters = [plan.parameters(row, seen) for row in rows]
    if len(parameters) == 1:
        count: int = _run(conn, plan.sql, parameters[0], many=False, rows=False)
    else:
        count = _run(conn, plan.sql, parameters, many=True, rows=False)
    return count


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


def inserted_ids(conn: sa.Connection, count: int) -> list[int] | None:
    """The ids of the ``count`` rows just inserted by one ``execute_many``, when known for sure.

    SQLite: the store's transactions hold the write lock (``BEGIN IMMEDIATE``) and a new row's
    rowid is one more than the largest, so one multi-row insert takes consecutive ids ending at
    ``last_insert_rowid()`` (every table's ``id`` is an ``INTEGER PRIMARY KEY``, the rowid).
    Elsewhere: ``None``, and the caller reads the ids back by a unique key.
    """
    if conn.dialect.name != "sqlite" or count <= 0:
        return None
    [(last,)] = _run(conn, "SELECT last_insert_rowid()", (), many=False, rows=True)
    first = int(last) - count + 1
    return list(range(first, int(last) + 1))


def _run(conn: sa.Connection, sql: str, parameters: Any, *, many: bool, rows: bool) -> Any:
    """Execute on the DBAPI cursor (see the module's notes); the rows when ``rows``, else the
    row count."""
    dispatch = conn.dispatch
    if conn.engine.echo or dispatch.before_cursor_execute or dispatch.after_cursor_execute:
        result = conn.exec_driver_sql(sql, parameters)
        return result.fetchall() if rows else result.rowcount
    cursor = conn.connection.cursor()
    try:
        if many:
            cursor.executemany(sql, parameters)
        else:
            cursor.execute(sql, parameters)
        return cursor.fetchall() if rows else cursor.rowcount
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
