"""Gammu SMSD: SMS that an office's GSM modem received, read from the SMSD database, and SMS to
send, written to its ``outbox``.

- **Channel**: ``sms``.
- **Mode**: poll (every ``poll_interval`` seconds) of the ``inbox`` table that Gammu SMSD fills,
  on MySQL/MariaDB, PostgreSQL or SQLite.
- **Configuration**: ``url`` (**secret**: the SQLAlchemy URL of the SMSD database; ``mysql://``
  means PyMySQL and ``postgresql://`` psycopg; shown only with the password hidden),
  ``poll_interval`` (default 10 s), ``gateway_timezone`` (the gateway's local time zone, WIB
  ``Asia/Jakarta``, WITA ``Asia/Makassar``, WIT ``Asia/Jayapura``; default: the deployment's
  ``timezone``), ``gateway_id`` (the gateway's name in external ids; default: the connector
  name), ``multipart_timeout`` (seconds to wait for missing parts, default 600),
  ``multipart_window`` (schema v17: how far apart in time the parts of one message may be,
  default 3600), ``batch_size``, ``ignore_operator_messages`` (default on), ``connect_timeout``,
  ``sender_id`` (the Gammu ``PhoneID`` that sends our SMS; default: any phone of the gateway).
- **Schema**: ``SELECT Version FROM gammu`` must say 17 or 18 (Gammu 1.44 added ``InsertIntoDB``,
  ``MessageID``, ``SequencePosition`` and ``PartCount``); anything else, or no ``gammu`` /
  ``inbox`` table, is a fatal error for this connector.
- **Reading**: rows with ``Processed='false'`` in ``ID`` order. Multipart SMS are grouped by
  ``MessageID`` (v18) or by sender + modem + UDH reference + total within ``multipart_window``
  (v17), and reassembled by :mod:`normalizer.sms` (UTF-16BE bytes joined before decoding, so an
  emoji split across parts survives). A message still missing parts waits until
  ``multipart_timeout`` has passed since its newest part's ``ReceivingDateTime`` (against the
  injectable ``clock``); then it is ingested with what arrived, flagged ``incomplete``, the gaps
  marked ``[…]``. Just before that, its rows are checked to be still unclaimed, so a second
  poller that already filed the whole message is not answered with a fragment.
- **Cursor**: none; ``Processed`` is the state (``Batch.cursor`` is None).
- **Dedupe key**: ``<gateway_id>:<lowest row ID of the message>:<hash of its content>`` (sender,
  coding, UDH, Text, TextDecoded and time of each part). Rows read again after a crash between our
  commit and the claim give the same key (the core answers ``duplicate``); an ``ID`` reused by a
  recreated gateway database with other content gives another.
- **Acknowledgement** (claim): after the core's commit, one statement per message,
  ``UPDATE inbox SET Processed='true' WHERE ID IN (…) AND Processed='false'`` (for a single SMS
  exactly ``WHERE ID=? AND Processed='false'``), its row count checked: 0 means another poller
  claimed it first (its copy was a ``duplicate`` here). One statement per message keeps a
  message's parts claimed together even on MyISAM, which has no transactions; where there are
  transactions the batch's statements share one commit. A failed claim is only logged: the rows
  are read again and come back ``duplicate``.
- **Times**: ``ReceivingDateTime`` (naive, the gateway's local time; Gammu writes the SMSC time
  stamp there) is read in ``gateway_timezone`` and converted to UTC: the newest part's is the
  message's ``received_at``, the oldest part's its ``sent_at`` (the same for a single SMS).
- **Senders**: the raw ``SenderNumber`` as the phone; the core's normalizer makes ``0812…``,
  ``+62…`` and ``0062…`` E.164 and keeps alphanumeric names and short codes as handles flagged
  ``non_personal_sender``. Messages from those (operator notices, promotions) and USSD replies
  (``Class`` 127) are flagged ``operator_message``, and, while ``ignore_operator_messages`` is on,
  also ``ignore``, which makes the core store them as ``ignored`` (and never acknowledge them).
- **Raw message**: ``application/vnd.gammu.inbox+json``: the rows as read (all columns, bytes as
  ``{"hex": …}``) with the schema version and time zone; ``meta.ids`` lists the rows to claim.
- **Errors**: an unreachable database (refused, timed out, locked, SQLite file absent) is
  retryable; bad credentials, an unknown database, a missing or unknown schema are fatal. Errors
  and logs show the URL with its password hidden.
- **Sending** (``send``, the :class:`~omnichannel.outbound.Sender` of the outbox): one message
  in ``outbox`` (and, when it is long, ``outbox_multipart``) written the way
  ``gammu-smsd-inject`` writes it, so Gammu SMSD sends it: ``DestinationNumber`` the E.164
  number (``+`` kept), ``CreatorID`` the delivery id, ``Coding`` ``Default_No_Compression`` when
  the text is all GSM 03.38 default alphabet (extension characters count two septets), else
  ``Unicode_No_Compression``, ``TextDecoded`` each part's text (``Text`` its UTF-16BE hex),
  ``Class`` -1, ``DeliveryReport`` ``default``, ``SenderID`` the ``sender_id`` option. Up to 160
  septets / 70 UTF-16 units is one SMS; longer text is cut into parts of 153 septets / 67 units
  (never inside an escape sequence or a surrogate pair) carrying the UDH ``050003RRTTSS``, the
  first in ``outbox`` (``MultiPart='true'``), the others in ``outbox_multipart``; at most 50
  parts (Gammu's ``GSM_MAX_MULTI_SMS``). A multipart message is held back (``SendingDateTime``
  far ahead) until its last part is written, then released at the gateway's local time.
  Idempotent: a row with the delivery id as ``CreatorID`` in ``outbox`` or ``sentitems`` is
  answered with its ``ID`` and nothing is written (one still held back, left by a crash
  half-way, is deleted and written again). The ``outbox`` ``ID`` is the returned id. A
  destination that is not ``+`` and 8 to 15 digits, an empty text or one of more than 50 parts
  is ``Undeliverable``; database errors are retryable or fatal as for reading, their messages
  without SQL parameters or the number.
- **Provider docs**: Gammu SMSD manual, "SMSD Database Structure" (docs/manual/smsd/tables.rst)
  and the schema scripts docs/sql/{mysql,pgsql,sqlite}.sql.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from normalizer.sms import (
    GAMMU_INBOX_TYPE,
    Assembler,
    Group,
    decode_gammu_inbox,
    group_external_id,
    inbox_payload,
    jsonable_row,
    part_of,
)
from normalizer.timeutil import to_utc
from omnichannel.connector import Batch, ConnectorContext, PollingConnector
from omnichannel.errors import ConnectorError, FatalError, RetryableError, Undeliverable
from omnichannel.outbound import Outbound
from omnichannel.schema import InboundMessage, RawMessage

__all__ = ["GammuConnector", "GammuOptions", "sms_parts"]

log = logging.getLogger("omnichannel.connectors.gammu")
Clock = Callable[[], datetime]

SUPPORTED_VERSIONS = (17, 18)
_V17_COLUMNS = frozenset(
    {"ID", "Processed", "ReceivingDateTime", "SenderNumber", "Coding", "UDH", "Text"}
    | {"TextDecoded", "Class", "SMSCNumber", "RecipientID"}
)
REQUIRED_COLUMNS = {
    17: _V17_COLUMNS,
    18: _V17_COLUMNS | {"MessageID", "SequencePosition", "PartCount"},
}
inbox_table = sa.table(
    "inbox", sa.column("ID"), sa.column("Processed"), sa.column("ReceivingDateTime")
)
gammu_table = sa.table("gammu", sa.column("Version"))
_row_id, _processed = inbox_table.c["ID"], inbox_table.c["Processed"]
_receiving = inbox_table.c["ReceivingDateTime"]
# literals, not parameters: PostgreSQL's Processed is a boolean, MySQL's an enum, SQLite's text
_FALSE: sa.ColumnClause[Any] = sa.literal_column("'false'")
_TRUE: sa.ColumnClause[Any] = sa.literal_column("'true'")
_DRIVERS = {
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
}
_FATAL_MYSQL_CODES = {1044, 1045, 1049, 1142, 1146}  # access denied, unknown database/table
_FATAL_PG_STATES = {"28000", "28P01", "3D000", "42P01", "42501"}
_FATAL_TEXT = re.compile(
    r"password authentication failed|no password supplied|does not exist|no such table"
    r"|file is not a database",
    re.IGNORECASE,
)
_CHUNK = 500

# -- sending -------------------------------------------------------------------------------------
GSM7 = "Default_No_Compression"
UCS2 = "Unicode_No_Compression"
# GSM 03.38 default alphabet (0x1B, the escape, left out) and its extension table (escape + one)
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION = frozenset("\f^{}\\[~]|€")
# (one SMS, one part of a concatenated SMS): septets for GSM-7, UTF-16 code units for UCS-2;
# a part loses 6 octets to the UDH 05 00 03 RR TT SS
_CAPACITY = {GSM7: (160, 153), UCS2: (70, 67)}
MAX_PARTS = 50  # Gammu's GSM_MAX_MULTI_SMS: SMSD reads no more parts than that
_DESTINATION = re.compile(r"\+[0-9]{8,15}")
# SendingDateTime of a multipart message whose parts are still being written: in the future for
# Gammu, and within MySQL's TIMESTAMP range (which ends in January 2038) in any time zone
_HELD = datetime(2037, 12, 31, 23, 59, 59)
_HELD_SINCE = _HELD - timedelta(days=1)  # a held row read back in another session time zone
_metadata = sa.MetaData()
outbox_table = sa.Table(
    "outbox",
    _metadata,
    sa.Column("ID", sa.Integer, primary_key=True),
    *(
        sa.Column(name)
        for name in (
            "InsertIntoDB",
            "SendingDateTime",
            "SendingTimeOut",
            "Text",
            "DestinationNumber",
            "Coding",
            "UDH",
            "Class",
            "TextDecoded",
            "MultiPart",
            "SenderID",
            "DeliveryReport",
            "CreatorID",
        )
    ),
)
outbox_multipart_table = sa.table(
    "outbox_multipart",
    *(
        sa.column(name)
        for name in ("ID", "SequencePosition", "Text", "Coding", "UDH", "Class", "TextDecoded")
    ),
)
sentitems_table = sa.table("sentitems", sa.column("ID"), sa.column("CreatorID"))
_outbox_id = outbox_table.c["ID"]
_multipart_id = outbox_multipart_table.c["ID"]
_sent_id = sentitems_table.c["ID"]


class GammuOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: SecretStr
    poll_interval: float = Field(default=10, gt=0)
    gateway_timezone: str | None = None
    gateway_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    multipart_timeout: float = Field(default=600, ge=0)
    multipart_window: float = Field(default=3600, gt=0)
    batch_size: int = Field(default=100, ge=1, le=5000)
    ignore_operator_messages: bool = True
    connect_timeout: float = Field(default=10, gt=0)
    sender_id: str | None = Field(default=None, min_length=1, max_length=255)

    @field_validator("url")
    @classmethod
    def _sqlalchemy_url(cls, value: SecretStr) -> SecretStr:
        try:
            make_url(value.get_secret_value())
        except (ArgumentError, ValueError):
            raise ValueError("not a SQLAlchemy database URL") from None
        return value

    @field_validator("gateway_timezone")
    @classmethod
    def _known_zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {value!r}") from None
        return value


def gateway_url(url: str) -> URL:
    """The URL with the drivers we ship for a bare ``mysql://`` or ``postgresql://``."""
    parsed = make_url(url)
    driver = _DRIVERS.get(parsed.drivername)
    return parsed.set(drivername=driver) if driver else parsed


def _connect_args(url: URL, timeout: float) -> dict[str, Any]:
    backend = url.get_backend_name()
    if backend == "sqlite":  # the driver in autocommit; BEGIN IMMEDIATE for claims (below)
        return {"timeout": timeout, "isolation_level": None}
    if backend in ("mysql", "mariadb", "postgresql"):
        return {"connect_timeout": max(1, round(timeout))}
    return {}


def _sqlite_begin(conn: sa.Connection) -> None:
    """Claims take SQLite's write lock up front (``BEGIN IMMEDIATE``), so a second poller or
    Gammu itself waits its turn on the busy timeout; a deferred transaction upgrading from a
    read lock can fail at once with "database is locked" instead. Reads run without one."""
    if conn.get_execution_options().get("claim"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_file_missing(url: URL) -> bool:
    """SQLite would create an empty file; an absent gateway database is an outage instead."""
    database = url.database
    if url.get_backend_name() != "sqlite" or database in (None, "", ":memory:"):
        return False
    return not Path(str(database)).exists()


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GammuConnector(PollingConnector[GammuOptions]):
    """The ``inbox`` table of one Gammu SMSD database (read), and its ``outbox`` (``send``)."""

    type = "gammu"
    channel = "sms"
    Options = GammuOptions

    def __init__(
        self,
        name: str,
        options: GammuOptions | None = None,
        context: ConnectorContext | None = None,
        *,
        clock: Clock = _utcnow,
    ) -> None:
        super().__init__(name, options, context)
        self.clock = clock
        self._engine: Engine | None = None
        self._checked_version: int | None = None

    # -- configuration -------------------------------------------------------------------------

    @property
    def gateway_id(self) -> str:
        return self.options.gateway_id or self.name

    @property
    def zone(self) -> ZoneInfo:
        name = self.options.gateway_timezone
        return ZoneInfo(name) if name else self.context.timezone

    @property
    def url(self) -> URL:
        return gateway_url(self.options.url.get_secret_value())

    @property
    def shown_url(self) -> str:
        """The database URL with its password hidden (for logs and errors)."""
        return self.url.render_as_string(hide_password=True)

    def secrets(self) -> list[str]:
        """The URL and its password; a URL without a password (SQLite) holds no secret and is
        shown whole, so that a log says which database failed instead of ``***``."""
        password = self.url.password
        return [*super().secrets(), str(password)] if password else []

    # -- database ------------------------------------------------------------------------------

    def _engine_for_use(self) -> Engine:
        if self._engine is None:
            url = self.url
            self._engine = sa.create_engine(
                url,
                pool_pre_ping=True,
                connect_args=_connect_args(url, self.options.connect_timeout),
            )
            if url.get_backend_name() == "sqlite":
                event.listen(self._engine, "begin", _sqlite_begin)
        return self._engine

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    @contextlib.contextmanager
    def _connection(
        self, *, commit: bool = False, hide: Sequence[str] = ()
    ) -> Iterator[sa.Connection]:
        """A gateway connection (committed at the end when ``commit``); database errors come
        out as Retryable or Fatal errors, ``hide`` (and the password) scrubbed from them."""
        if _sqlite_file_missing(self.url):
            raise RetryableError(f"Gammu database {self.shown_url} unreachable: no such file")
        try:
            with self._engine_for_use().connect() as conn:
                if not commit:
                    yield conn
                    return
                with conn.execution_options(claim=True).begin():
                    yield conn
        except SQLAlchemyError as exc:
            raise self._error(exc, hide) from None

    def _reason(self, exc: SQLAlchemyError, hide: Sequence[str] = ()) -> str:
        """The driver's first line (never SQLAlchemy's, which shows the statement and its
        parameters), without secrets or the ``hide`` strings."""
        orig = getattr(exc, "orig", None)
        text = str(orig) if orig is not None else type(exc).__name__
        text = (text.strip().splitlines() or [type(exc).__name__])[0][:300]
        for secret in [*self.secrets(), *hide]:
            if secret:
                text = text.replace(secret, "***")
        return text

    def _error(self, exc: SQLAlchemyError, hide: Sequence[str] = ()) -> ConnectorError:
        reason = self._reason(exc, hide)
        if _is_fatal(exc, reason):
            return FatalError(f"Gammu database {self.shown_url}: {reason}")
        return RetryableError(f"Gammu database {self.shown_url} unreachable: {reason}")

    def _schema(self, conn: sa.Connection) -> int:
        """The schema version (17 or 18), checked against the tables' columns."""
        inspector = sa.inspect(conn)
        for table in ("gammu", "inbox"):
            if not inspector.has_table(table):
                raise FatalError(
                    f"no Gammu SMSD schema at {self.shown_url}: table {table!r} is missing "
                    "(create it with Gammu's docs/sql/*.sql)"
                )
        versions = [int(v) for v in conn.execute(sa.select(gammu_table.c.Version)).scalars()]
        if not versions:
            raise FatalError(f"Gammu SMSD schema at {self.shown_url}: table 'gammu' is empty")
        version = max(versions)
        if version not in SUPPORTED_VERSIONS:
            raise FatalError(
                f"Gammu SMSD schema version {version} at {self.shown_url} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        if version != self._checked_version:
            columns = {str(c["name"]) for c in inspector.get_columns("inbox")}
            missing = sorted(REQUIRED_COLUMNS[version] - columns)
            if missing:
                raise FatalError(
                    f"Gammu SMSD table 'inbox' at {self.shown_url} lacks the schema "
                    f"v{version} columns {', '.join(missing)}"
                )
            self._checked_version = version
        return version

    def check(self) -> None:
        try:
            with self._connection() as conn:
                self._schema(conn)
        finally:
            self.close()

    # -- fetching ------------------------------------------------------------------------------

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        """Complete messages as their last part is read; timed-out incomplete ones at the end."""
        with self._connection() as conn:
            schema = self._schema(conn)
        size = self.options.batch_size
        assembler = Assembler(timedelta(seconds=self.options.multipart_window))
        ready: list[Group] = []
        for page in self._pages(since):
            assembler.extend(part_of(row, schema) for row in page)
            ready += assembler.pop_complete()
            while len(ready) >= size:
                yield self._batch(ready[:size], schema)
                del ready[:size]
        ready += self._due(assembler.pending(), recheck=since is None)
        for start in range(0, len(ready), size):
            yield self._batch(ready[start : start + size], schema)

    def _select(self, after: int, since: date | None, dialect: str) -> sa.Select[Any]:
        query: sa.Select[Any] = (
            sa.select(sa.literal_column("*"))
            .select_from(inbox_table)
            .where(_row_id > after)
            .order_by(_row_id)
            .limit(self.options.batch_size)
        )
        if since is None:
            return query.where(_processed == _FALSE)
        start = datetime.combine(since, time())
        bound: Any = start.isoformat(sep=" ") if dialect == "sqlite" else start
        kind = sa.String() if dialect == "sqlite" else sa.DateTime()
        return query.where(_receiving >= sa.bindparam("since", bound, kind))

    def _pages(self, since: date | None) -> Iterator[list[dict[str, Any]]]:
        """Unprocessed rows (or, for a backfill, every row since that day), page by page."""
        after = 0
        while True:
            with self._connection() as conn:
                query = self._select(after, since, conn.dialect.name)
                rows = [jsonable_row(dict(row._mapping)) for row in conn.execute(query)]
            if not rows:
                return
            yield rows
            after = int(rows[-1]["ID"])
            if len(rows) < self.options.batch_size:
                return

    def _due(self, pending: list[Group], *, recheck: bool) -> list[Group]:
        """Incomplete messages whose wait is over (and whose rows nobody claimed meanwhile)."""
        limit = timedelta(seconds=self.options.multipart_timeout)
        now = self.clock()
        due = [g for g in pending if g.newest is None or now - self._utc(g.newest) >= limit]
        waiting = len(pending) - len(due)
        if waiting:
            log.debug("gammu %s: %d messages wait for missing parts", self.name, waiting)
        if not due or not recheck:
            return due
        unclaimed = self._unclaimed([i for g in due for i in g.ids])
        return [g for g in due if set(g.ids) <= unclaimed]

    def _unclaimed(self, ids: Sequence[int]) -> set[int]:
        found: set[int] = set()
        with self._connection() as conn:
            for start in range(0, len(ids), _CHUNK):
                chunk = list(ids[start : start + _CHUNK])
                query = sa.select(_row_id).where(_row_id.in_(chunk), _processed == _FALSE)
                found.update(int(i) for i in conn.execute(query).scalars())
        return found

    def _utc(self, local: datetime) -> datetime:
        return to_utc(local, self.zone)

    def _batch(self, groups: Sequence[Group], schema: int) -> Batch:
        return Batch([self._raw(group, schema) for group in groups], None)

    def _raw(self, group: Group, schema: int) -> RawMessage:
        newest = group.newest
        meta: dict[str, Any] = {"ids": group.ids, "gateway": self.gateway_id, "schema": schema}
        if not group.complete:
            meta["incomplete"] = True
        return RawMessage(
            connector=self.name,
            external_id=group_external_id(self.gateway_id, group),
            received_at=self._utc(newest) if newest else self.clock(),
            content_type=GAMMU_INBOX_TYPE,
            payload=inbox_payload(
                group.rows(), gateway=self.gateway_id, schema=schema, timezone=self.zone.key
            ),
            meta=meta,
        )

    # -- acknowledging -------------------------------------------------------------------------

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Claim the rows of committed messages; a failure is logged (they come back duplicate).

        One statement per message, all in one transaction where the database has them (SQLite,
        PostgreSQL, InnoDB: one commit per batch); on MyISAM each statement stands alone.
        """
        try:
            with self._connection(commit=True) as conn:
                for raw in messages:
                    ids = [int(i) for i in raw.meta.get("ids", [])]
                    if raw.connector == self.name and ids:
                        self._claim(conn, raw.external_id, ids)
        except ConnectorError as exc:
            log.warning("gammu %s: claim postponed (%s)", self.name, exc)

    def _claim(self, conn: sa.Connection, external_id: str, ids: list[int]) -> None:
        statement = (
            sa.update(inbox_table)
            .where(_row_id.in_(ids), _processed == _FALSE)
            .values({_processed: _TRUE})
        )
        claimed = conn.execute(statement).rowcount
        if claimed == 0:
            log.info("gammu %s: %s was claimed by another poller", self.name, external_id)
        elif claimed != len(ids):
            log.warning(
                "gammu %s: claimed %d of the %d rows of %s (the others were claimed already)",
                self.name,
                claimed,
                len(ids),
                external_id,
            )

    # -- sending -------------------------------------------------------------------------------

    def send(self, outbound: Outbound) -> str | None:
        """Queue ``outbound`` in the gateway's ``outbox``; return the row's ``ID``.

        A message already there or in ``sentitems`` with this delivery id as ``CreatorID`` is
        answered with its ``ID`` and not written again: a crash between writing it and
        recording the delivery must not send the citizen a second SMS.
        """
        to = outbound.to.strip()
        if not _DESTINATION.fullmatch(to):
            raise Undeliverable("the recipient is not an E.164 phone number (+ and 8 to 15 digits)")
        coding, parts = sms_parts(outbound.text)
        key = outbound.delivery_id
        with self._connection(commit=True, hide=[to, to[1:]]) as conn:
            found = self._queued(conn, key)
            if found is None:
                found = self._queue(conn, to, coding, parts, key)
                log.info(
                    "gammu %s: queued %s %s as outbox %s (%d part%s, %s)",
                    self.name,
                    outbound.kind,
                    key,
                    found,
                    len(parts),
                    "" if len(parts) == 1 else "s",
                    coding,
                )
            else:
                log.info("gammu %s: %s was queued before, as %s", self.name, key, found)
        return str(found)

    def _gateway_time(self, dialect: str, local: datetime | None = None) -> Any:
        """``local`` (default: now in the gateway's time zone, to the second) as the gateway
        database stores a time: naive, and on SQLite the text Gammu writes and compares."""
        if local is None:
            local = self.clock().astimezone(self.zone).replace(tzinfo=None, microsecond=0)
        return local.isoformat(sep=" ") if dialect == "sqlite" else local

    def _queued(self, conn: sa.Connection, key: str) -> int | None:
        """The ``ID`` of the message already written for this delivery, if any (in ``outbox``,
        or moved to ``sentitems`` once sent). One still held back is what a crash in the
        middle of :meth:`_queue` left: Gammu never saw it, so it is deleted and written again."""
        outbox = outbox_table.c
        rows = conn.execute(
            sa.select(_outbox_id, outbox.SendingDateTime)
            .where(outbox.CreatorID == key)
            .order_by(_outbox_id)
        ).all()
        for row_id, sending in rows:
            if not _is_held(sending):
                return int(row_id)
        for row_id, _sending in rows:
            log.warning("gammu %s: rewriting %s, left half-written as %s", self.name, key, row_id)
            conn.execute(sa.delete(outbox_multipart_table).where(_multipart_id == int(row_id)))
            conn.execute(sa.delete(outbox_table).where(_outbox_id == int(row_id)))
        sent = sentitems_table.c
        found = conn.execute(
            sa.select(_sent_id).where(sent.CreatorID == key).order_by(_sent_id).limit(1)
        ).scalar()
        return None if found is None else int(found)

    def _queue(self, conn: sa.Connection, to: str, coding: str, parts: list[str], key: str) -> int:
        """Write the message; its first part in ``outbox``, the others in ``outbox_multipart``.

        MyISAM (Gammu's MySQL script) has no transactions, so each statement is visible to
        Gammu SMSD as soon as it runs, and SMSD sends an ``outbox`` row with the parts it finds
        in ``outbox_multipart`` at that moment: a message caught half-written would go out cut
        short, and its missing parts never. So a multipart message's ``outbox`` row is written
        first with ``SendingDateTime`` far in the future (SMSD only takes rows whose
        ``SendingDateTime`` has passed), then its other parts, then ``SendingDateTime`` is set
        to now: SMSD sees the message whole or not at all, on every backend (elsewhere the
        transaction already hides it until the commit). A crash before the release leaves a
        held row that the next attempt replaces (:meth:`_queued`). A single SMS is one
        statement and goes in released.
        """
        dialect = conn.dialect.name
        now = self._gateway_time(dialect)
        total = len(parts)
        reference = self._reference(conn, to, key) if total > 1 else 0
        first = {
            "InsertIntoDB": now,
            "SendingTimeOut": now,
            "SendingDateTime": now if total == 1 else self._gateway_time(dialect, _HELD),
            "DestinationNumber": to,
            "Coding": coding,
            "Class": -1,
            "Text": _utf16_hex(parts[0]),
            "TextDecoded": parts[0],
            "UDH": _udh(reference, total, 1),
            "MultiPart": _TRUE if total > 1 else _FALSE,
            "SenderID": self.options.sender_id,
            "DeliveryReport": "default",
            "CreatorID": key,
        }
        inserted = conn.execute(sa.insert(outbox_table).values(first)).inserted_primary_key
        if inserted is None or inserted[0] is None:
            raise RetryableError(f"Gammu database {self.shown_url}: no ID for the outbox row")
        row_id = int(inserted[0])
        if total == 1:
            return row_id
        conn.execute(
            sa.insert(outbox_multipart_table),
            [
                {
                    "ID": row_id,
                    "SequencePosition": sequence,
                    "Coding": coding,
                    "Class": -1,
                    "Text": _utf16_hex(part),
                    "TextDecoded": part,
                    "UDH": _udh(reference, total, sequence),
                }
                for sequence, part in enumerate(parts[1:], start=2)
            ],
        )
        release = self._gateway_time(dialect)
        conn.execute(
            sa.update(outbox_table).where(_outbox_id == row_id).values(SendingDateTime=release)
        )
        return row_id

    def _reference(self, conn: sa.Connection, to: str, key: str) -> int:
        """The concatenation reference: one derived from the delivery id, the next free one
        when a multipart message to the same number waiting in ``outbox`` already uses it."""
        outbox = outbox_table.c
        used = {
            int(udh[6:8], 16)
            for udh in conn.execute(
                sa.select(outbox.UDH).where(
                    outbox.DestinationNumber == to, outbox.MultiPart == _TRUE
                )
            ).scalars()
            if isinstance(udh, str) and len(udh) == 12 and udh[:6] == "050003"
        }
        start = hashlib.sha256(key.encode("utf-8")).digest()[0]
        return next(((start + i) % 256 for i in range(256) if (start + i) % 256 not in used), start)

    # -- decoding ------------------------------------------------------------------------------

    def decode(self, raw: RawMessage) -> InboundMessage:
        return decode_gammu_inbox(
            raw.payload,
            connector=self.name,
            external_id=raw.external_id,
            timezone=self.zone,
            ignore_operator_messages=self.options.ignore_operator_messages,
        )


def _is_fatal(exc: SQLAlchemyError, reason: str) -> bool:
    """Credentials, an unknown database or table, a file that is no database: not worth retrying."""
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in _FATAL_MYSQL_CODES:
        return True
    if getattr(orig, "sqlstate", None) in _FATAL_PG_STATES:
        return True
    if isinstance(exc, sa.exc.ProgrammingError):
        return True
    return bool(_FATAL_TEXT.search(reason))


def sms_parts(text: str) -> tuple[str, list[str]]:
    """The coding of ``text`` (GSM-7 when it is all GSM 03.38 default alphabet, else UCS-2) and
    its SMS parts: the whole text when it fits one SMS (160 septets / 70 UTF-16 units), else
    pieces of at most 153 septets / 67 units, cut between characters (an extension character's
    escape sequence, a surrogate pair, stays in one part). Empty or longer than ``MAX_PARTS``
    parts: Undeliverable."""
    if not text:
        raise Undeliverable("the SMS text is empty")
    gsm = all(char in _GSM_BASIC or char in _GSM_EXTENSION for char in text)
    coding = GSM7 if gsm else UCS2

    def width(char: str) -> int:
        if gsm:
            return 2 if char in _GSM_EXTENSION else 1
        return 2 if ord(char) > 0xFFFF else 1

    single, part = _CAPACITY[coding]
    if sum(map(width, text)) <= single:
        return coding, [text]
    parts: list[str] = []
    start = used = 0
    for index, char in enumerate(text):
        if used + width(char) > part:
            parts.append(text[start:index])
            start, used = index, 0
        used += width(char)
    parts.append(text[start:])
    if len(parts) > MAX_PARTS:
        raise Undeliverable(
            f"the SMS text needs {len(parts)} parts; Gammu SMSD sends at most {MAX_PARTS}"
        )
    return coding, parts


def _udh(reference: int, total: int, sequence: int) -> str:
    """The concatenation UDH (8-bit reference) of part ``sequence``; none for a single SMS."""
    return "" if total == 1 else f"050003{reference:02X}{total:02X}{sequence:02X}"


def _utf16_hex(text: str) -> str:
    """``Text`` as Gammu writes it for text codings: UTF-16BE, hexadecimal."""
    return text.encode("utf-16-be").hex().upper()


def _is_held(value: Any) -> bool:
    """Whether a ``SendingDateTime`` is the far-future hold of a half-written message."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return False
    return isinstance(value, datetime) and value.replace(tzinfo=None) >= _HELD_SINCE
