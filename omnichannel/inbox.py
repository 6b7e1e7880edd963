"""``Inbox``: the public entry point that ties configuration, connectors and the store together."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omnichannel import filing, pipeline, queries
from omnichannel.config import Config, default_config, load_config
from omnichannel.connector import Connector, ConnectorContext, PollingConnector
from omnichannel.errors import OmnichannelError, StorageUnavailable, UnknownConnector
from omnichannel.groupcommit import GroupCommit
from omnichannel.media import MediaResult, fetch_pending_media
from omnichannel.pipeline import Prepared, Settings
from omnichannel.registry import connector_class
from omnichannel.schema import (
    Complaint,
    InboundMessage,
    Outcome,
    RawMessage,
    ReceiveResult,
    format_utc,
)
from omnichannel.store import Store
from omnichannel.store.tables import quarantine, raw_messages
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    json_response,
)

__all__ = ["FileResult", "Inbox"]

Clock = Callable[[], datetime]
Receiver = Callable[[Sequence[RawMessage]], list[ReceiveResult]]
"""Stores and files raw messages, one result each (``receive_many``'s shape)."""
log = logging.getLogger("omnichannel.inbox")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FileResult:
    """What ``ingest`` made of one file: a result, or the reason it could not be read."""

    __slots__ = ("error", "path", "result")

    def __init__(self, path: Path, result: ReceiveResult | None, error: str | None = None):
        self.path, self.result, self.error = path, result, error

    def as_json(self) -> dict[str, Any]:
        result = self.result
        return {
            "file": str(self.path),
            "outcome": result.outcome.value if result else None,
            "complaint_id": result.complaint_id if result else None,
            "ticket": result.ticket if result else None,
            "error": self.error or (result.error if result else None),
        }


class Inbox:
    """One omnichannel deployment: its connectors and its store.

    >>> inbox = Inbox(database_url="sqlite:///omnichannel.db")      # doctest: +SKIP
    >>> inbox.receive(raw_message).outcome                           # doctest: +SKIP
    <Outcome.NEW: 'new'>
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        database_url: str | None = None,
        connectors: Sequence[Connector] = (),
        clock: Clock = _utcnow,
    ) -> None:
        self.config = config if config is not None else default_config()
        if database_url is not None:
            self.config.database.url = database_url
        self.store = Store(self.config.database.url, auto_migrate=self.config.database.auto_migrate)
        acks = self.config.acknowledgements
        self.context = ConnectorContext(
            timezone=self.config.tz,
            region=self.config.region,
            public_url=self.config.server.public_url,
            acknowledgements=acks.enabled,
            ack_language=acks.language,
            ack_template=acks.template,
        )
        self.settings = Settings(
            ticket_prefix=self.config.tickets.prefix,
            timezone=self.config.tz,
            region=self.config.region,
            acknowledgements=self.config.acknowledgements.enabled,
            same_sender_window=timedelta(days=self.config.dedupe.same_sender_window_days),
        )
        self._connectors = {c.name: c for c in connectors}
        self._clock = clock
        self._status: dict[str, dict[str, Any]] = {}
        self._group: GroupCommit[Prepared, ReceiveResult] = GroupCommit(
            lambda decoded: self._receive_decoded(decoded)
        )
        self._delegate: Receiver | None = None
        self._delegate_status: Callable[[], dict[str, Any]] | None = None

    def status(self, name: str) -> dict[str, Any]:
        """How connector ``name`` is doing: last success, last error, failed (for /healthz)."""
        return dict(
            self._status.get(name, {"last_success": None, "last_error": None, "failed": False})
        )

    def record(self, name: str, error: str | None = None, *, failed: bool = False) -> None:
        """Note a success (no error) or a failure of connector ``name``."""
        status = self._status.setdefault(name, self.status(name))
        if error is None:
            status.update(last_success=format_utc(self._clock()), last_error=None, failed=False)
        else:
            status.update(last_error=error, failed=failed)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str] | None = None) -> Inbox:
        """An inbox configured from a TOML file (see :func:`omnichannel.config.load_config`)."""
        return cls(load_config(path))

    def __repr__(self) -> str:
        return f"<Inbox {self.store!r} connectors={self.connector_names()}>"

    def close(self) -> None:
        for connector in self._connectors.values():
            connector.close()
        self.store.dispose()

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connectors ----------------------------------------------------------------------------

    def connector_names(self) -> list[str]:
        names = {c.name for c in self.config.connectors if c.enabled} | set(self._connectors)
        return sorted(names)

    def connector(self, name: str) -> Connector:
        """The connector called ``name``, built from the configuration on first use."""
        if name not in self._connectors:
            entry = self.config.connector(name)
            cls = connector_class(entry.type)
            self.add_connector(cls.from_options(name, entry.options, self.context))
        return self._connectors[name]

    def add_connector(self, connector: Connector) -> None:
        """Use a connector instance that is not in the configuration (portals, tests)."""
        self._connectors[connector.name] = connector
        if connector.acknowledges_inline:
            inline = self.settings.inline_ack | {connector.name}
            self.settings = dataclasses.replace(self.settings, inline_ack=inline)

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, raw: RawMessage) -> ReceiveResult:
        """Store, decode, dedupe and file one raw message; return its outcome."""
        return self.receive_many([raw])[0]

    def receive_many(
        self, raws: Sequence[RawMessage], *, cursor: tuple[str, Any] | None = None
    ) -> list[ReceiveResult]:
        """The batch form: the raws are stored and filed together, in one transaction.

        Decoding is pure and runs first, outside any transaction; then one transaction stores
        the raw payloads, files them and saves ``cursor`` (connector name, value). Should filing
        fail unexpectedly, the raws are stored on their own first (raw-first, as ``replay``
        needs them) and filed again, so that the error cannot take the payloads with it.
        """
        for name in {raw.connector for raw in raws}:
            self.connector(name)  # unknown connectors fail before anything is stored
        return self._receive_decoded(self._decode(raws), cursor=cursor)

    def _decode(self, raws: Sequence[RawMessage]) -> list[Prepared]:
        """Decode and normalize (pure); the raw row ids are known once stored."""
        return [self._prepare(0, raw) for raw in raws]

    def _receive_decoded(
        self, decoded: Sequence[Prepared], *, cursor: tuple[str, Any] | None = None
    ) -> list[ReceiveResult]:
        """``receive_many`` once decoding is done: one transaction stores and files."""
        raws = [item.raw for item in decoded]
        now = self._clock()
        try:
            with self.store.transaction() as conn:
                raw_ids, claimable = pipeline.store_and_claim(conn, raws, now)
                prepared = _with_ids(decoded, raw_ids)
                results = pipeline.file_batch(
                    conn, prepared, self.settings, now, cursor=cursor, claimed=claimable
                )
                stored = pipeline.describe(conn, [rid for rid in raw_ids if rid not in results])
        except StorageUnavailable:
            raise
        except Exception:
            log.warning("filing failed; storing the raw messages first", exc_info=True)
            with self.store.transaction() as conn:
                raw_ids = pipeline.store_raw(conn, raws, now)
            return self._file(_with_ids(decoded, raw_ids), now, cursor=cursor)
        return self._results(prepared, results, stored)

    def receive_inbound(self, message: InboundMessage, *, connector: str) -> ReceiveResult:
        """Receive an already-decoded message (a portal's own form, say) via ``connector``."""
        raw = RawMessage(
            connector=connector,
            external_id=message.external_id,
            received_at=message.received_at or self._clock(),
            content_type="application/json",
            payload=message.model_dump_json(exclude_none=True).encode(),
        )
        return self.receive(raw)

    def _file(
        self,
        prepared: list[Prepared],
        now: datetime,
        *,
        from_status: str = pipeline.RECEIVED,
        cursor: tuple[str, Any] | None = None,
    ) -> list[ReceiveResult]:
        with self.store.transaction() as conn:
            results = pipeline.file_batch(
                conn, prepared, self.settings, now, from_status=from_status, cursor=cursor
            )
            unfiled = [item.raw_id for item in prepared if item.raw_id not in results]
            stored = pipeline.describe(conn, unfiled)
        return self._results(prepared, results, stored)

    def _results(
        self,
        prepared: list[Prepared],
        results: dict[int, ReceiveResult],
        stored: dict[int, tuple[str | None, int | None, str | None, str]],
    ) -> list[ReceiveResult]:
        out, seen = [], set()
        for item in prepared:
            filed = results.get(item.raw_id)
            if filed is not None and item.raw_id not in seen:
                out.append(filed)
            elif filed is not None:  # the same message twice in one batch
                out.append(filed.model_copy(update={"outcome": Outcome.DUPLICATE}))
            else:
                out.append(self._duplicate(item.raw_id, item.raw, stored.get(item.raw_id)))
            seen.add(item.raw_id)
        return out

    def _prepare(self, raw_id: int, raw: RawMessage) -> Prepared:
        try:
            decode = self.connector(raw.connector).decode
        except (OmnichannelError, LookupError) as exc:
            return Prepared(raw_id, raw, error=exc)
        return pipeline.prepare(raw_id, raw, decode, self.settings)

    def _duplicate(
        self,
        raw_id: int,
        raw: RawMessage,
        stored: tuple[str | None, int | None, str | None, str] | None,
    ) -> ReceiveResult:
        _, complaint_id, ticket, status = stored or (None, None, None, "")
        note = "stored earlier and quarantined" if status == pipeline.QUARANTINED else None
        return ReceiveResult(
            connector=raw.connector,
            external_id=raw.external_id,
            outcome=Outcome.DUPLICATE,
            complaint_id=complaint_id,
            ticket=ticket,
            raw_id=raw_id,
            error=note,
        )

    def ingest_files(
        self, connector: str, paths: Iterable[str | os.PathLike[str]], *, batch_size: int = 200
    ) -> Iterator[FileResult]:
        """Push payload files through ``connector`` (trusted local input); one result per file."""
        source = self.connector(connector)
        batch: list[tuple[Path, RawMessage]] = []
        for name in paths:
            path = Path(name)
            try:
                payload = path.read_bytes()
            except OSError as exc:
                yield from self._ingest_batch(batch)  # keep the output in input order
                batch = []
                yield FileResult(path, None, f"cannot read file: {exc.strerror}")
                continue
            batch.append((path, source.raw_from_file(path, payload, self._clock())))
            if len(batch) >= batch_size:
                yield from self._ingest_batch(batch)
                batch = []
        yield from self._ingest_batch(batch)

    def _ingest_batch(self, batch: list[tuple[Path, RawMessage]]) -> Iterator[FileResult]:
        if not batch:
            return
        results = self.receive_many([raw for _, raw in batch])
        for (path, _), result in zip(batch, results, strict=True):
            yield FileResult(path, result)

    def poll(
        self,
        name: str,
        *,
        since: date | None = None,
        on_batch: Callable[[list[ReceiveResult]], None] | None = None,
    ) -> list[ReceiveResult]:
        """One poll of one connector: fetch after the stored cursor, file, then acknowledge.

        ``since`` backfills everything received since that day. With ``on_batch``, each batch's
        results go to it as soon as they are committed and are not also collected (so memory
        stays flat however large the mailbox); the returned list is then empty.
        """
        source = self.connector(name)
        if not isinstance(source, PollingConnector):
            raise UnknownConnector("that polls, named", name, self._polling_names())
        with self.store.transaction() as conn:
            cursor = pipeline.load_cursor(conn, name)
        results: list[ReceiveResult] = []
        for batch in source.fetch(cursor, since=since):
            filed = self.receive_many(batch.messages, cursor=(name, batch.cursor))
            source.ack(batch.messages)
            if on_batch is not None:
                on_batch(filed)
            else:
                results += filed
        return results

    def _polling_names(self) -> list[str]:
        return [
            n for n in self.connector_names() if isinstance(self.connector(n), PollingConnector)
        ]

    # -- webhooks ------------------------------------------------------------------------------

    def handle_webhook(
        self,
        name: str,
        method: str,
        url: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
    ) -> WebhookResponse:
        """Verify, store, file and answer one webhook request (any web framework can call it).

        ``url`` is the URL as the provider called it (scheme, host, path and raw query).
        """
        request = WebhookRequest.build(method, url, headers, body)
        try:
            connector = self._webhook_connector(name)
            return self._handle(connector, request)
        except WebhookRejected as exc:
            payload = {"error": exc.reason} | ({"field": exc.field} if exc.field else {})
            return json_response(exc.status, payload)
        except StorageUnavailable as exc:
            log.warning("webhook %s: storage unavailable, answering 503", name)
            self.record(name, str(exc))
            return json_response(503, {"error": "storage unavailable, retry later"})

    def _webhook_connector(self, name: str) -> WebhookConnector:
        try:
            connector = self.connector(name)
        except UnknownConnector:
            raise WebhookRejected(404, "unknown connector") from None
        if not isinstance(connector, WebhookConnector):
            raise WebhookRejected(404, "unknown connector")
        return connector

    def _handle(self, connector: WebhookConnector, request: WebhookRequest) -> WebhookResponse:
        if request.method in ("GET", "HEAD"):
            return connector.handshake(request)
        if request.method != "POST":
            raise WebhookRejected(405, "method not allowed")
        if len(request.body) > connector.max_bytes():
            raise WebhookRejected(413, "request body too large")
        if request.content_type not in connector.content_types:
            raise WebhookRejected(415, "unsupported content type")
        connector.verify(request)
        raws = connector.parse(request)
        results = self._store_and_file(raws) if raws else []
        response = connector.respond(request, results)
        response.results = results
        self.record(connector.name)
        return response

    def delegate_filing(
        self, receive: Receiver | None, *, status: Callable[[], dict[str, Any]] | None = None
    ) -> None:
        """Have webhooks stored and filed by ``receive`` (``FilingProcess.receive_many``, as
        ``omnichannel serve`` does), or again in this process (``None``). ``status`` says how
        that filing fares, for ``/healthz`` (``FilingProcess.status``)."""
        self._delegate = receive
        self._delegate_status = status if receive is not None else None

    def filing_status(self) -> dict[str, Any]:
        """Where webhooks are filed, for ``/healthz``: ``{"mode": "thread"}`` in this process;
        delegated, what the delegate's ``status`` says (``running`` false: unhealthy)."""
        if self._delegate is None:
            return {"mode": "thread"}
        if self._delegate_status is None:
            return {"mode": "delegated"}
        return self._delegate_status()

    def _store_and_file(self, raws: list[RawMessage]) -> list[ReceiveResult]:
        if self._delegate is not None:
            return self._delegate(raws)
        # decoded here, in the request's thread: the group's leader only stores and files
        return self._group.submit(self._decode(raws))

    def fetch_media(
        self, *, limit: int = 50, max_bytes: int = 16 * 1024 * 1024, max_attempts: int = 8
    ) -> list[MediaResult]:
        """One round of background attachment downloads (see :mod:`omnichannel.media`)."""
        return fetch_pending_media(
            self.store,
            self.connector,
            self._clock(),
            limit=limit,
            max_bytes=max_bytes,
            max_attempts=max_attempts,
        )

    # -- quarantine ----------------------------------------------------------------------------

    def replay(
        self, raw_ids: Sequence[int] | None = None, *, payload: bytes | None = None
    ) -> list[ReceiveResult]:
        """Decode quarantined raw messages again (after a fix); all of them when no ids given.

        ``payload`` replaces the stored payload of the single given message (an operator's
        corrected copy); the original is kept in the quarantine record.
        """
        if payload is not None and (raw_ids is None or len(raw_ids) != 1):
            raise ValueError("a replacement payload needs exactly one quarantined message id")
        with self.store.transaction() as conn:
            rows = queries.quarantined_raws(conn, raw_ids)
            if payload is not None and rows:
                _replace_payload(conn, rows[0][0], payload)
                rows = queries.quarantined_raws(conn, raw_ids)
        prepared = [self._prepare(raw_id, raw) for raw_id, raw in rows]
        return self._file(prepared, self._clock(), from_status=pipeline.QUARANTINED)

    # -- reading -------------------------------------------------------------------------------

    def complaints(
        self, *, limit: int | None = 50, status: str | None = None, after_id: int = 0
    ) -> list[Complaint]:
        with self.store.transaction() as conn:
            return queries.load_complaints(conn, limit=limit, status=status, after_id=after_id)

    def complaint(self, key: int | str) -> Complaint | None:
        """A complaint by id or by ticket number."""
        with self.store.transaction() as conn:
            return queries.complaint(conn, key)

    def iter_complaints(self, *, batch: int = 500) -> Iterator[Complaint]:
        """Every complaint in id order, read in batches (for exports)."""
        after = 0
        while True:
            page = self.complaints(limit=batch, after_id=after)
            if not page:
                return
            yield from page
            after = page[-1].id

    def quarantined(self, *, include_resolved: bool = False) -> list[dict[str, Any]]:
        with self.store.transaction() as conn:
            return queries.list_quarantine(conn, include_resolved=include_resolved)


def _with_ids(decoded: Sequence[Prepared], raw_ids: list[int]) -> list[Prepared]:
    """The decoded messages with the raw row ids their payloads were stored under."""
    return [
        dataclasses.replace(item, raw_id=rid) for item, rid in zip(decoded, raw_ids, strict=True)
    ]


def _replace_payload(conn: sa.Connection, raw_id: int, payload: bytes) -> None:
    original = conn.execute(
        sa.select(raw_messages.c.payload).where(raw_messages.c.id == raw_id)
    ).scalar_one()
    conn.execute(
        sa.update(quarantine)
        .where(quarantine.c.raw_id == raw_id, quarantine.c.original_payload.is_(None))
        .values(original_payload=original)
    )
    conn.execute(
        sa.update(raw_messages)
        .where(raw_messages.c.id == raw_id)
        .values(payload=payload, size=len(payload), sha256=filing.sha256_hex(payload))
    )
