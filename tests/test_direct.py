"""The filing hot path's driver-level execution (``omnichannel.store.direct``): it must write and
read exactly what SQLAlchemy's own execution of the same statements does, on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from omnichannel import Inbox
from omnichannel.store import direct, insert_ignore
from omnichannel.store.tables import UTCDateTime, messages, raw_messages

T0 = datetime(2026, 11, 30, 6, 15, 0, 123456, tzinfo=UTC)
INSERT_RAW = sa.insert(raw_messages)


def raw_row(n: int, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "connector": "files",
        "external_id": f"x{n}",
        "received_at": T0 + timedelta(seconds=n),
        "stored_at": T0,
        "content_type": "application/json",
        "payload": b"\x00\xffpayload",
        "size": 9,
        "sha256": "0" * 64,
        "meta": {"n": n, "nested": [1, "dua"]},
        "status": "received",
    }
    return row | changes


def stored(
    inbox: Inbox, table: sa.Table, exclude: tuple[str, ...] = ("id",)
) -> list[tuple[Any, ...]]:
    columns = [c for c in table.c if c.name not in exclude]
    with inbox.store.transaction() as conn:
        return [tuple(r) for r in conn.execute(sa.select(*columns).order_by(table.c.external_id))]


def test_rows_written_are_those_core_writes(inbox: Inbox) -> None:
    """The same rows inserted by Core and by ``execute_many`` (aware datetimes, JSON with and
    without None, bytes) read back identically, through Core's own result processing."""
    full, bare = raw_row(0), raw_row(0, meta={}, content_type="text/plain")
    core_rows = [full | {"external_id": "c1"}, bare | {"external_id": "c2"}]
    direct_rows = [full | {"external_id": "d1"}, bare | {"external_id": "d2"}]
    with inbox.store.transaction() as conn:
        conn.execute(INSERT_RAW, core_rows)
        direct.execute_many(conn, INSERT_RAW, direct_rows)
        direct.execute_many(conn, INSERT_RAW, [raw_row(5)])  # a single row is one execute
        direct.execute_many(conn, INSERT_RAW, [])  # nothing to do
    rows = stored(inbox, raw_messages, ("id", "external_id"))  # c1, c2, d1, d2, x5
    assert rows[2] == rows[0] and rows[3] == rows[1]
    assert rows[2][1] == T0 and rows[2][1].tzinfo is UTC
    assert rows[2][7] == {"n": 0, "nested": [1, "dua"]} and rows[2][4] == b"\x00\xffpayload"
    assert rows[3][7] == {} and rows[3][3] == "text/plain"
    assert len(rows) == 5


def test_values_fixed_in_the_statement_and_null_json(inbox: Inbox) -> None:
    """A value written into the statement (``.values(status="filing")``) is sent as Core
    would; JSON ``none_as_null`` columns store SQL NULL, the others JSON ``null``."""
    with inbox.store.transaction() as conn:
        direct.execute_many(conn, INSERT_RAW, [raw_row(1)])
        raw_id = conn.execute(sa.select(raw_messages.c.id)).scalar_one()
        mark = (
            sa.update(raw_messages)
            .where(raw_messages.c.id == sa.bindparam("rid"))
            .values(status="filing", processed_at=sa.bindparam("t", type_=UTCDateTime()))
        )
        direct.execute_many(conn, mark, [{"rid": raw_id, "t": T0}])
        row = conn.execute(sa.select(raw_messages.c.status, raw_messages.c.processed_at)).one()
    assert tuple(row) == ("filing", T0)


def size_query(size: int) -> sa.Select[Any]:
    return (
        sa.select(raw_messages.c.external_id, raw_messages.c.received_at)
        .where(raw_messages.c.external_id.in_(direct.in_list(size, sa.String())))
        .where(raw_messages.c.received_at >= sa.bindparam("since", type_=UTCDateTime()))
        .order_by(raw_messages.c.external_id)
    )


@pytest.mark.parametrize("wanted", [1, 2, 3, 5, 8, 9])
def test_fetch_in_pads_the_list_and_reads_typed_values(inbox: Inbox, wanted: int) -> None:
    """Lists of any size find exactly their rows (padding repeats the last value), and the
    selected columns come back as their types read them (aware UTC datetimes)."""
    with inbox.store.transaction() as conn:
        direct.execute_many(conn, INSERT_RAW, [raw_row(n) for n in range(10)])
        ids = [f"x{n}" for n in range(wanted)] + ["absent"]
        rows = direct.fetch_in(conn, size_query, ids, {"since": T0 + timedelta(seconds=1)})
        assert direct.fetch_in(conn, size_query, [], {"since": T0}) == []
    expected = [(f"x{n}", T0 + timedelta(seconds=n)) for n in range(1, wanted)]
    assert rows == expected
    assert all(when.tzinfo is UTC for _, when in rows)


def test_inserted_ids_are_the_ids_the_rows_got(inbox: Inbox) -> None:
    """On SQLite the ids of an insert are known without reading them back (a single row's from
    the cursor, several rows' from ``last_insert_rowid()``) and they are the ones the rows
    carry; when a row was not inserted, or elsewhere, the caller is told to read them back."""
    with inbox.store.transaction() as conn:
        direct.execute_many(conn, INSERT_RAW, [raw_row(n) for n in range(3)])
        conn.execute(sa.delete(raw_messages).where(raw_messages.c.external_id == "x2"))
        many = direct.insert_many(conn, INSERT_RAW, [raw_row(n) for n in range(10, 14)])
        direct.execute_many(conn, INSERT_RAW, [raw_row(20)])  # a later id, then one row again
        conn.execute(sa.delete(raw_messages).where(raw_messages.c.external_id == "x20"))
        one = direct.insert_many(conn, INSERT_RAW, [raw_row(15)])
        key = ("connector", "external_id")
        none_new = insert_ignore(conn, raw_messages, [raw_row(15)], key)
        some_new = insert_ignore(conn, raw_messages, [raw_row(15), raw_row(16)], key)
        ids = dict(conn.execute(sa.select(raw_messages.c.external_id, raw_messages.c.id)).all())
    if inbox.store.dialect == "sqlite":
        assert many == (4, [ids[f"x{n}"] for n in range(10, 14)])
        assert one == (1, [ids["x15"]])
    else:
        assert many == (4, None) and one == (1, None)
    assert none_new == (0, None) and some_new == (1, None)


def test_expanding_parameters_are_refused(inbox: Inbox) -> None:
    """An ``expanding`` IN parameter has no fixed SQL: ``execute_many`` says so."""
    statement = sa.update(messages).where(messages.c.id.in_(sa.bindparam("ids", expanding=True)))
    with inbox.store.transaction() as conn, pytest.raises(ValueError, match="expanding"):
        direct.execute_many(conn, statement.values(outcome="new"), [{"ids": [1]}])


def test_equal_instants_in_other_zones_are_processed_each_on_their_own(inbox: Inbox) -> None:
    """Repeated datetimes are processed once, but an equal instant in another zone, or a time
    that differs only by its fold (New York's repeated hour; equal in its own zone), is not
    taken for the same value: a plain ``DateTime`` column renders each as Core does."""
    table = sa.Table(
        "direct_moments",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime()),
        sa.Column("utc", UTCDateTime()),
    )
    jakarta = T0.astimezone(timezone(timedelta(hours=7)))
    first = datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    second = first.replace(fold=1)
    assert jakarta == T0 and first == second and first.utcoffset() != second.utcoffset()
    moments = [{"at": at, "utc": at} for at in (T0, jakarta, T0, first, second, first)]
    table.create(inbox.store.engine)
    try:
        with inbox.store.transaction() as conn:
            direct.execute_many(conn, sa.insert(table), moments)
            conn.execute(sa.insert(table), moments)
            found = [
                (str(at), utc.isoformat())
                for at, utc in conn.execute(sa.select(table.c.at, table.c.utc).order_by(table.c.id))
            ]
        assert found[:6] == found[6:]
        assert [utc for _, utc in found[3:6]] == [
            "2026-11-01T05:30:00+00:00",
            "2026-11-01T06:30:00+00:00",
            "2026-11-01T05:30:00+00:00",
        ]
    finally:
        table.drop(inbox.store.engine)


def test_driver_errors_are_sqlalchemys_and_the_transaction_is_rolled_back(inbox: Inbox) -> None:
    """A statement the database refuses (a second row with the same connector and external id)
    raises SQLAlchemy's ``IntegrityError``, as ``Connection.execute`` would, and nothing of the
    transaction stays."""
    with pytest.raises(sa.exc.IntegrityError), inbox.store.transaction() as conn:
        direct.execute_many(conn, INSERT_RAW, [raw_row(1)])
        direct.execute_many(conn, INSERT_RAW, [raw_row(2), raw_row(1)])
    assert stored(inbox, raw_messages) == []


def test_statements_go_through_sqlalchemy_when_cursor_events_listen(inbox: Inbox) -> None:
    """With a ``before_cursor_execute`` listener on the engine (tracing, query logging), the
    statements are executed by SQLAlchemy so that the listener sees each of them (a multi-row
    insert once, as an ``executemany``), and they do what they do without it."""
    seen: list[str] = []

    def listen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement.split()[0])

    with inbox.store.transaction() as conn:
        direct.execute_many(conn, INSERT_RAW, [raw_row(1)])
    sa.event.listen(inbox.store.engine, "before_cursor_execute", listen)
    try:
        with inbox.store.transaction() as conn:
            direct.execute_many(conn, INSERT_RAW, [raw_row(2), raw_row(3)])
            rows = direct.fetch_in(conn, _raw_ids, ["x1", "x2", "x3"])
    finally:
        sa.event.remove(inbox.store.engine, "before_cursor_execute", listen)
    assert sorted(r[1] for r in rows) == ["x1", "x2", "x3"]
    assert seen.count("INSERT") == 1 and seen.count("SELECT") == 1


def _raw_ids(size: int) -> sa.Select[Any]:
    return sa.select(raw_messages.c.id, raw_messages.c.external_id).where(
        raw_messages.c.external_id.in_(direct.in_list(size, sa.String()))
    )
