"""Shared fixtures: a store on SQLite and, when a server is reachable, on PostgreSQL.

``database_url`` runs a test once per backend. PostgreSQL tests use a throwaway database created
for the session (``OMNICHANNEL_TEST_POSTGRES`` names the server, default
``postgresql+psycopg://postgres@127.0.0.1:5432/test``) and dropped at the end; without a server
they are skipped with the reason — unless ``OMNICHANNEL_REQUIRE_POSTGRES=1`` (set by CI), which
turns the skip into a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import sqlalchemy as sa

from omnichannel.config import default_config
from omnichannel.inbox import Inbox
from omnichannel.store import Store
from omnichannel.store.tables import metadata

pytest_plugins = ["pytester", "tests.logscan"]

ADMIN_URL = os.environ.get(
    "OMNICHANNEL_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REQUIRE_POSTGRES = os.environ.get("OMNICHANNEL_REQUIRE_POSTGRES") == "1"
ROOT = Path(__file__).resolve().parent.parent


def _admin_engine() -> sa.Engine:
    return sa.create_engine(
        ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated, dropped afterwards."""
    name = f"omni_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = _admin_engine()
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        reason = f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (OMNICHANNEL_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    url = sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    Store(url).dispose()  # migrate once
    yield url
    with admin.connect() as conn:
        conn.execute(
            sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name},
        )
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def _truncate(url: str) -> None:
    engine = sa.create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean, migrated database URL: once on SQLite, once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'omnichannel.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _truncate(url)
    return url


@pytest.fixture
def inbox(database_url: str) -> Iterator[Inbox]:
    """An Inbox with the default configuration on the backend under test."""
    box = Inbox(default_config(url=database_url))
    yield box
    box.close()


@pytest.fixture
def sqlite_inbox(tmp_path: Path) -> Iterator[Inbox]:
    """An Inbox on SQLite only (for tests that need no second backend)."""
    box = Inbox(default_config(url=f"sqlite:///{tmp_path / 'omnichannel.db'}"))
    yield box
    box.close()


REQUIRE_DOVECOT = os.environ.get("OMNICHANNEL_REQUIRE_DOVECOT") == "1"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Any]:
    """A private Dovecot on loopback for the session (skipped, with the reason, without one)."""
    from omnichannel.testing.dovecot import Dovecot

    external = os.environ.get("OMNICHANNEL_TEST_IMAP_URL")
    if external:  # another real server: a THROWAWAY account, the tests empty its mailbox
        yield ExternalImap(external)
        return
    if Dovecot.binary() is None:
        reason = "Dovecot is not installed (apt-get install dovecot-imapd)"
        if REQUIRE_DOVECOT:
            pytest.fail(reason + " (OMNICHANNEL_REQUIRE_DOVECOT=1)")
        pytest.skip(reason)
    server = Dovecot().start()
    yield server
    server.stop()


class ExternalImap:
    """``imap://user:password@host:port`` of another real server for the IMAP tests."""

    def __init__(self, url: str) -> None:
        parsed = urlsplit(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 143
        self.user, self.password = unquote(parsed.username or ""), unquote(parsed.password or "")
        self.tls_port = None
        self.root = None
