"""Storage: migrations match the table metadata, SQLite pragmas, concurrent
first start."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from omnichannel.store import Store, migrate
from omnichannel.store.migrate import head_revision
from omnichannel.store.tables import complaints, metadata
from tests.helpers import T0, run_threads


def test_migrations_produce_exactly_the_table_metadata(database_url: str) -> None:
    """After `upgrade head`, Alembic finds no difference between the database and the code."""
    store = Store(database_url)
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        differences = compare_metadata(context, metadata)
    store.dispose()
    assert differences == []


def test_store_is_at_head_revision(database_url: str) -> None:
    """Opening a store migrates it to the newest revision."""
    store = Store(database_url)
    assert store.revision() == head_revision() == "0012"
    store.dispose()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    """The embedded SQLite store uses WAL journaling and enforces foreign keys."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.dispose()


def test_auto_migrate_off_leaves_an_empty_database(tmp_path: Path) -> None:
    """With auto_migrate off nothing is created until migrate() is called."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}", auto_migrate=False)
    assert store.revision() is None
    store.migrate()
    assert store.revision() == head_revision()
    store.dispose()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_concurrent_first_start_migrates_once(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Several processes opening a fresh database at once all succeed (the schema is made once)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # make it fresh again: drop everything
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    code = f"from omnichannel.store import Store; Store({url!r}).dispose()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    store = Store(url, auto_migrate=False)
    assert store.revision() == head_revision()
    store.dispose()


def test_threads_opening_a_fresh_sqlite_file_at_once(tmp_path: Path) -> None:
    """Threads opening one new SQLite file together all get a store (WAL switch races retried)."""

    for attempt in range(10):
        url = f"sqlite:///{tmp_path / f'fresh{attempt}.db'}"
        errors: list[BaseException] = []

        def open_store(url: str = url, errors: list[BaseException] = errors) -> None:
            try:
                Store(url).dispose()
            except BaseException as exc:
                errors.append(exc)

        run_threads(open_store, [()] * 4, timeout=120)
        assert errors == []


def test_postgresql_urls_get_a_connect_timeout_unless_they_set_one() -> None:
    """A PostgreSQL URL gets connect_timeout=5 (a hanging server answers 503 in time)."""
    from omnichannel.store.engine import normalize_url

    assert normalize_url("postgresql://u@db/x").query == {"connect_timeout": "5"}
    assert normalize_url("postgresql://u@db/x").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql://u@db/x?connect_timeout=1").query == {"connect_timeout": "1"}
    assert normalize_url("sqlite:///x.db").query == {}


class _FakeDriver:
    class OperationalError(Exception):
        pass


class _Connection:
    def __init__(self) -> None:
        self.closed = threading.Event()

    def close(self) -> None:
        self.closed.set()


def test_connect_within_keeps_its_deadline_and_closes_a_late_connection() -> None:
    """A connection attempt that outlasts the deadline is answered with the driver's
    OperationalError at the deadline; the connection it makes later is closed, not leaked.
    Quick attempts and their errors come through unchanged."""
    from omnichannel.store.engine import connect_within

    quick = _Connection()
    assert connect_within(5.0, lambda: quick, _FakeDriver) is quick

    def refused() -> _Connection:
        raise _FakeDriver.OperationalError("connection refused")

    with pytest.raises(_FakeDriver.OperationalError, match="refused"):
        connect_within(5.0, refused, _FakeDriver)

    release, late = threading.Event(), _Connection()

    def hanging() -> _Connection:
        release.wait(10)
        return late

    with pytest.raises(_FakeDriver.OperationalError, match="timeout expired"):
        connect_within(0.05, hanging, _FakeDriver)
    release.set()
    assert late.closed.wait(10)


def test_sqlite_transactions_of_all_threads_share_one_connection(tmp_path: Path) -> None:
    """On SQLite the threads of a process take turns (one writer at a time) on one connection:
    concurrent read-modify-write transactions lose no update, a failed transaction is rolled
    back and the next one works, and a connection that was invalidated is replaced."""
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE counter (n INTEGER)")
        conn.exec_driver_sql("INSERT INTO counter VALUES (0)")
    connections: set[int] = set()

    def add(times: int) -> None:
        for _ in range(times):
            with store.transaction() as conn:
                connections.add(id(conn))
                n = conn.exec_driver_sql("SELECT n FROM counter").scalar_one()
                conn.exec_driver_sql("UPDATE counter SET n = ?", (n + 1,))

    run_threads(add, [(50,)] * 4)
    with pytest.raises(ZeroDivisionError), store.transaction() as conn:
        conn.exec_driver_sql("UPDATE counter SET n = 0")
        raise ZeroDivisionError
    with pytest.raises(ZeroDivisionError), store.transaction() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 200
        connections.add(id(conn))
        conn.invalidate()  # as SQLAlchemy does when the driver reports a lost connection
        raise ZeroDivisionError
    with store.transaction() as conn:
        assert conn.exec_driver_sql("SELECT n FROM counter").scalar_one() == 200
        replaced = id(conn)
    assert len(connections) == 1 and replaced not in connections
    store.dispose()


def test_an_in_memory_store_is_one_database_for_every_thread() -> None:
    """``sqlite://`` (in memory, as in tests and demos): what one thread writes, another reads;
    each thread used to get a database of its own, without the schema."""
    store = Store("sqlite://")
    with store.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE seen (n INTEGER)")
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            with store.transaction() as conn:
                conn.exec_driver_sql("INSERT INTO seen VALUES (?)", (n,))
        except BaseException as exc:
            errors.append(exc)

    run_threads(write, [(n,) for n in range(4)])
    with store.transaction() as conn:
        seen = sorted(conn.exec_driver_sql("SELECT n FROM seen").scalars())
    assert errors == [] and seen == [0, 1, 2, 3]
    store.dispose()


PARTIAL_INDEXES = [
    ("complaints", "sender_email"),
    ("complaints", "sender_phone"),
    ("complaints", "agency"),
    ("complaints", "cluster_id"),
    ("queue_items", "agency"),
]


def _index_definitions(engine: sa.Engine) -> dict[str, str]:
    names = [f"ix_{table}_{column}" for table, column in PARTIAL_INDEXES]
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name, sql FROM sqlite_master WHERE type = 'index'"
        else:
            query = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
        return {n: d for n, d in conn.exec_driver_sql(query).all() if n in names}


def _uses_index(engine: sa.Engine, sql: str) -> str:
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            return " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
        conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return " ".join(str(r[0]) for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_sender_agency_and_cluster_indexes_hold_only_the_rows_that_have_one(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Revision 0003 makes five indexes partial (``IS NOT NULL``): a database at 0002 with a
    complaint in it is upgraded, the complaint stays, lookups by value still use the indexes,
    and a downgrade restores the full ones."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'x.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
        engine = sa.create_engine(url)
        with engine.begin() as conn:  # a fresh schema, migrated to head again at the end
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    store = Store(url, auto_migrate=False)
    engine = store.engine
    migrate.upgrade(engine, "0002")
    assert all("WHERE" not in d for d in _index_definitions(engine).values())
    row = {"ticket": "ADU-2026-000001", "status": "open", "channel": "sms", "connector": "sms"}
    row |= {"received_at": T0, "updated_at": T0, "body": "Jalan rusak.", "sender_phone": "+62812"}
    with engine.begin() as conn:
        conn.execute(sa.insert(complaints).values(**row, anonymous=False, confidential=False))
    migrate.upgrade(engine)
    definitions = _index_definitions(engine)
    assert len(definitions) == 5
    for table, column in PARTIAL_INDEXES:
        assert f"{column} IS NOT NULL" in definitions[f"ix_{table}_{column}"]
    plan = _uses_index(engine, "SELECT id FROM complaints WHERE sender_phone = '+62812'")
    assert "ix_complaints_sender_phone" in plan
    with engine.connect() as conn:
        tickets = conn.execute(sa.select(complaints.c.ticket)).scalars().all()
    assert tickets == ["ADU-2026-000001"]
    with engine.begin() as conn:
        config = migrate.alembic_config(engine)
        config.attributes["connection"] = conn
        command.downgrade(config, "0002")
    assert all("WHERE" not in d for d in _index_definitions(engine).values())
    migrate.upgrade(engine)
    store.dispose()


def test_after_a_failure_requests_fail_at_once_while_one_tries_again() -> None:
    """Under a request's deadline: once a transaction found the store unavailable, the next
    fail at once for a pause; then one tries again, and the others fail at once until it has
    its answer; a success, or an error that is not the store's, lets everyone through."""
    from omnichannel.errors import StorageUnavailable
    from omnichannel.store import _Breaker

    breaker = _Breaker()
    breaker.enter()
    breaker.failed()
    with pytest.raises(StorageUnavailable, match="not answering"):
        breaker.enter()
    breaker._closed_until = time.monotonic() - 0.001  # the pause is over
    breaker.enter()  # the one that tries again
    with pytest.raises(StorageUnavailable):
        breaker.enter()  # the others, while it tries
    breaker.passed()
    breaker.enter()
    breaker.enter()


def test_a_database_from_a_newer_version_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database at a schema revision this version does not know is refused in one line
    naming both revisions, and is left as it was (never downgraded)."""
    from omnichannel.errors import OmnichannelError

    store = Store(f"sqlite:///{tmp_path / 'newer.db'}")
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(OmnichannelError, match=r"revision 0999, newer .* \(up to 0"):
        store.migrate()
    assert store.revision() == "0999"
    store.dispose()
