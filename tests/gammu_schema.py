"""Real Gammu SMSD gateway databases for the tests: SQLite, MariaDB and PostgreSQL, v17 and v18.

The ``gammu`` and ``inbox`` tables come from ``tests/testdata/gammu/<backend>-<version>.sql`` (as
Gammu's docs/sql scripts create them). MariaDB and PostgreSQL tests use a throwaway database per
test module, dropped afterwards; without a server they are skipped with the reason, unless
``OMNICHANNEL_REQUIRE_MARIADB=1`` / ``OMNICHANNEL_REQUIRE_POSTGRES=1`` turn the skip into a
failure. ``OMNICHANNEL_TEST_MARIADB`` names the MariaDB server (default root on 127.0.0.1:3306).

:class:`Gateway` writes rows the way Gammu SMSD does: ``Text`` as UTF-16BE hex, the UDH
concatenation element, ``TextDecoded`` with the whole text in the first part (Gammu >= 1.40),
and for v18 ``MessageID`` (the first stored part's ``ID``), ``SequencePosition``, ``PartCount``.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import ADMIN_URL, REQUIRE_POSTGRES

TESTDATA = Path(__file__).resolve().parent / "testdata" / "gammu"
MARIADB_URL = os.environ.get("OMNICHANNEL_TEST_MARIADB", "mysql+pymysql://root@127.0.0.1:3306/test")
REQUIRE_MARIADB = os.environ.get("OMNICHANNEL_REQUIRE_MARIADB") == "1"
LOCAL_TIME = "2026-11-30 10:00:00"  # WITA: 02:00 UTC
GATEWAYS = [
    "sqlite-17",
    "sqlite-18",
    "mariadb-17",
    "mariadb-18",
    pytest.param("postgresql-17", marks=pytest.mark.postgres),
    pytest.param("postgresql-18", marks=pytest.mark.postgres),
]


def ddl(backend: str, version: int) -> str:
    """The schema script of a backend (``sqlite``, ``mysql``, ``pgsql``) and version."""
    return (TESTDATA / f"{backend}-{version}.sql").read_text(encoding="utf-8")


def utf16_hex(data: bytes) -> str:
    return data.hex().upper()


@dataclass
class Sms:
    """One SMS as a phone sent it: its parts' UTF-16BE bytes, reference and coding."""

    sender: str
    text: str
    chunks: list[bytes]
    reference: int = 0x42
    reference_bits: int = 8
    coding: str = "Default_No_Compression"
    decoded: str = "first"  # TextDecoded: "first" (Gammu >= 1.40), "each" part, or "none"
    at: str = LOCAL_TIME
    recipient: str = "modem1"
    ids: dict[int, int] = field(default_factory=dict)  # sequence -> inbox ID

    @property
    def total(self) -> int:
        return len(self.chunks)

    def udh(self, sequence: int) -> str:
        if self.total == 1:
            return ""
        if self.reference_bits == 16:
            return f"060804{self.reference:04X}{self.total:02X}{sequence:02X}"
        return f"050003{self.reference:02X}{self.total:02X}{sequence:02X}"

    def text_decoded(self, sequence: int) -> str:
        if self.decoded == "each":
            return self.chunks[sequence - 1].decode("utf-16-be", errors="replace")
        if self.decoded == "first" and sequence == 1:
            return self.text
        return ""


def split_units(data: bytes, parts: int) -> list[bytes]:
    """``data`` cut into ``parts`` pieces at UTF-16 code-unit boundaries (pairs may split)."""
    units = len(data) // 2
    cuts = [round(units * i / parts) * 2 for i in range(parts + 1)]
    return [data[cuts[i] : cuts[i + 1]] for i in range(parts)]


def sms(sender: str, text: str, parts: int = 1, *, cuts: Sequence[int] = (), **extra: Any) -> Sms:
    """An SMS of ``parts`` parts (or cut at the given byte offsets)."""
    data = text.encode("utf-16-be")
    if cuts:
        bounds = [0, *cuts, len(data)]
        chunks = [data[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]
    else:
        chunks = split_units(data, parts)
    return Sms(sender, text, chunks, **extra)


class Gateway:
    """A Gammu SMSD database with the real ``gammu`` and ``inbox`` tables of one version."""

    def __init__(self, url: str, backend: str, version: int) -> None:
        self.url, self.backend, self.version = url, backend, version
        self.engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")

    def __repr__(self) -> str:
        return f"<Gateway {self.backend} v{self.version}>"

    # -- schema --------------------------------------------------------------------------------

    def create(self, version: int | None = None) -> Gateway:
        """Drop and create the tables (a recreated gateway database reuses IDs)."""
        self.version = version or self.version
        self.execute_script("DROP TABLE IF EXISTS inbox; DROP TABLE IF EXISTS gammu;")
        self.execute_script(self.schema_script())
        return self

    def schema_script(self) -> str:
        name = {"mariadb": "mysql", "postgresql": "pgsql"}.get(self.backend, self.backend)
        return ddl(name, self.version)

    def execute_script(self, script: str) -> None:
        raw = self.engine.raw_connection()
        try:
            driver: Any = raw.driver_connection
            if self.backend == "sqlite":
                assert isinstance(driver, sqlite3.Connection)
                driver.executescript(script)
            elif self.backend == "postgresql":
                driver.execute(script)  # psycopg: several statements when there are no params
            else:
                with driver.cursor() as cursor:
                    for statement in _statements(script):
                        cursor.execute(statement)
        finally:
            raw.close()

    def set_version(self, version: int) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text(f"UPDATE gammu SET {self.quote('Version')} = {int(version)}"))

    def quote(self, name: str) -> str:
        return self.engine.dialect.identifier_preparer.quote(name)

    # -- rows ----------------------------------------------------------------------------------

    def _value(self, column: str, value: Any) -> Any:
        if column == "Processed":
            truth = value in (True, "true")
            return truth if self.backend == "postgresql" else ("true" if truth else "false")
        if column in ("ReceivingDateTime", "InsertIntoDB") and self.backend != "sqlite":
            return datetime.fromisoformat(value) if isinstance(value, str) else value
        return value

    def insert(self, **columns: Any) -> int:
        """Insert one inbox row (NOT NULL text columns default to ``""``); return its ID."""
        row = {"Text": "", "UDH": "", "TextDecoded": "", "RecipientID": "modem1"}
        row.update(columns)
        row.setdefault("Processed", False)
        row.setdefault("ReceivingDateTime", LOCAL_TIME)
        if self.version >= 18:
            row.setdefault("InsertIntoDB", row["ReceivingDateTime"])
        values = {k: self._value(k, v) for k, v in row.items()}
        table = sa.table("inbox", *(sa.column(k) for k in values), sa.column("ID"))
        statement = sa.insert(table).values(values)
        with self.engine.connect() as conn:
            if self.backend == "postgresql":
                return int(conn.execute(statement.returning(table.c.ID)).scalar_one())
            result = conn.execute(statement)
            return int(result.lastrowid)

    def _update_message_id(self, row_id: int, message_id: int) -> None:
        table = sa.table("inbox", sa.column("ID"), sa.column("MessageID"))
        with self.engine.connect() as conn:
            conn.execute(
                sa.update(table).where(table.c["ID"] == row_id).values(MessageID=message_id)
            )

    def insert_part(self, message: Sms, sequence: int, **extra: Any) -> int:
        """Store one part of ``message`` as Gammu SMSD would."""
        chunk = message.chunks[sequence - 1]
        columns: dict[str, Any] = {
            "SenderNumber": message.sender,
            "Text": utf16_hex(chunk),
            "Coding": message.coding,
            "UDH": message.udh(sequence),
            "TextDecoded": message.text_decoded(sequence),
            "ReceivingDateTime": message.at,
            "RecipientID": message.recipient,
            "SMSCNumber": "+6281100000",
        }
        first = min(message.ids.values()) if message.ids else None
        if self.version >= 18:
            columns.update(MessageID=first or 0, SequencePosition=sequence, PartCount=message.total)
        columns.update(extra)
        row_id = self.insert(**columns)
        if self.version >= 18 and first is None and "MessageID" not in extra:
            self._update_message_id(row_id, row_id)
        message.ids[sequence] = row_id
        return row_id

    def deliver(self, *messages: Sms, order: Sequence[int] | None = None) -> list[int]:
        """Store every part of each message (parts in ``order`` of sequence numbers)."""
        ids = []
        for message in messages:
            for sequence in order or range(1, message.total + 1):
                ids.append(self.insert_part(message, sequence))
        return ids

    def processed(self) -> dict[int, bool]:
        """``{ID: Processed}`` of every inbox row."""
        table = sa.table("inbox", sa.column("ID"), sa.column("Processed"))
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table.c.ID, table.c.Processed)).all()
        return {int(i): value in (True, "true") for i, value in rows}

    def delete_all(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("DELETE FROM inbox"))

    def dispose(self) -> None:
        self.engine.dispose()


def _statements(script: str) -> list[str]:
    lines = [line for line in script.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


# -- servers -----------------------------------------------------------------------------------


def _throwaway(admin_url: str, quote: str) -> Iterator[str]:
    name = f"gammu_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {quote}{name}{quote}"))
    try:
        yield sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if admin.dialect.name == "postgresql":
                conn.execute(
                    sa.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
                    ),
                    {"n": name},
                )
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quote}{name}{quote}"))
        admin.dispose()


def _reachable(url: str, connect_args: dict[str, Any]) -> str | None:
    """None when a server answers at ``url``, else why not."""
    try:
        engine = sa.create_engine(url, connect_args=connect_args)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:
        return type(exc).__name__
    return None


@pytest.fixture(scope="module")
def mariadb_url() -> Iterator[str]:
    """A throwaway MariaDB database for this test module (skipped without a server)."""
    problem = _reachable(MARIADB_URL, {"connect_timeout": 3})
    if problem is not None:
        reason = f"MariaDB not reachable at {MARIADB_URL}: {problem}"
        if REQUIRE_MARIADB:
            pytest.fail(reason + " (OMNICHANNEL_REQUIRE_MARIADB=1)")
        pytest.skip(reason)
    yield from _throwaway(MARIADB_URL, "`")


@pytest.fixture(scope="module")
def postgres_gateway_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this test module (skipped without a server)."""
    problem = _reachable(ADMIN_URL, {"connect_timeout": 3})
    if problem is not None:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {problem}"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (OMNICHANNEL_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    yield from _throwaway(ADMIN_URL, '"')


def open_gateway(request: pytest.FixtureRequest, kind: str, tmp_path: Path) -> Gateway:
    """A fresh gateway database of ``kind`` (``sqlite-17``, ``mariadb-18``, …)."""
    backend, version = kind.rsplit("-", 1)
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'smsd.db'}"
    elif backend == "mariadb":
        url = request.getfixturevalue("mariadb_url")
    else:
        url = request.getfixturevalue("postgres_gateway_url")
    gateway = Gateway(url, backend, int(version))
    return gateway.create()


@pytest.fixture(params=GATEWAYS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """A Gammu SMSD database: SQLite, MariaDB and PostgreSQL, schema v17 and v18."""
    db = open_gateway(request, request.param, tmp_path)
    yield db
    db.dispose()
