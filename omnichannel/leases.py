"""Leases: one replica at a time polls a given source.

On PostgreSQL a lease is a session advisory lock (``pg_try_advisory_lock``) held on a connection
of its own for as long as the replica polls. The database ends it with the session: a replica
that exits, is killed or loses its connection frees the lease at once, and another replica
takes it at its next try (``LEASE_RETRY`` seconds). Nothing is coordinated in process memory.

SQLite is one host's store: every lease is granted (two processes polling one mailbox into one
SQLite file still store each message once, by its unique key).
"""

from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa

from omnichannel.store import Store

__all__ = ["LEASE_RETRY", "Lease"]

log = logging.getLogger("omnichannel.leases")
LEASE_RETRY = 5.0
"""Seconds between a replica's tries to take a lease another holds."""


def lease_key(name: str) -> int:
    """The advisory lock key of lease ``name``: 64 bits of its sha256, signed."""
    digest = hashlib.sha256(f"omnichannel:lease:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class Lease:
    """The lease on ``name`` (a poller's connector name); ``hold()`` takes or keeps it."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self.name = name
        self._connection: sa.Connection | None = None

    def __repr__(self) -> str:
        return f"<Lease {self.name!r} held={self._connection is not None}>"

    def hold(self) -> bool:
        """Whether this process holds the lease now: kept if it was held and its session is
        alive, else taken if free. Never raises for a database that is down (False)."""
        if self.store.dialect != "postgresql":
            return True
        if self._connection is not None and self._alive(self._connection):
            return True
        self.release()
        try:
            connection = self.store.engine.connect()
        except sa.exc.DBAPIError:
            return False
        try:
            taken = bool(
                connection.exec_driver_sql(
                    "SELECT pg_try_advisory_lock(%(k)s)", {"k": lease_key(self.name)}
                ).scalar()
            )
            connection.commit()
        except sa.exc.DBAPIError:
            connection.invalidate()
            connection.close()
            return False
        if not taken:
            connection.close()
            return False
        log.info("lease %s taken", self.name)
        self._connection = connection
        return True

    @staticmethod
    def _alive(connection: sa.Connection) -> bool:
        try:
            connection.exec_driver_sql("SELECT 1").scalar()
            connection.commit()
        except sa.exc.DBAPIError:
            return False
        return True

    def release(self) -> None:
        """Give the lease up (closing its session ends the advisory lock)."""
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.invalidate()  # never back to the pool with the lock held
            connection.close()
        except Exception as exc:  # the session is gone either way
            log.debug("lease %s: close failed (%s)", self.name, type(exc).__name__)
