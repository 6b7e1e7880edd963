"""``Inbox``: the public entry point that ties configuration, connectors and the store together."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import sqlalchemy as sa

from normalizer.jsondoc import decode_json_document
from normalizer.keywords import PrivacyKeywords
from omnichannel import filing, pipeline, queries
from omnichannel.acks import Templates
from omnichannel.config import Config, default_config, load_config
from omnichannel.connector import Connector, ConnectorContext, PollingConnector
from omnichannel.errors import StorageUnavailable, Undeliverable, UnknownConnector
from omnichannel.forwarders import (
    EVENTS,
    Forward,
    Forwarder,
    ForwarderContext,
    ForwarderSpec,
    build_forwarder,
)
from omnichannel.media import MediaResult, fetch_pending_media
from omnichannel.merging import Dedupe
from omnichannel.outbound import Sender, Sent
from omnichannel.outbox import (
    CITIZEN_KINDS,
    DeliveryPolicy,
    Outbox,
    OutboxRow,
    citizen_outbound,
    plan_event,
)
from omnichannel.pipeline import Decoder, Settings
from omnichannel.privacy import LOG_MASKER, Masker
from omnichannel.queue import Queue
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
from omnichannel.survey import SurveySettings
from omnichannel.values import storable_inbound
from omnichannel.webhook import (
    WebhookConnector,
    WebhookRejected,
    WebhookRequest,
    WebhookResponse,
    checked_url,
    json_response,
)
from omnichannel.worker import FilingWorker

__all__ = ["FileResult", "Inbox"]

Clock = Callable[[], datetime]
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
        wait_for_database: bool = False,
    ) -> None:
        self.config = config if config is not None else default_config()
        if database_url is not None:
            self.config.database.url = database_url
        self.store = Store(
            self.config.database.url,
            auto_migrate=self.config.database.auto_migrate,
            wait_for_database=wait_for_database,
        )
        ack = self.config.acknowledgements
        self.templates = Templates(ack.templates, ack.language, ack.template)
        self.context = ConnectorContext(
            timezone=self.config.tz,
            region=self.config.region,
            public_url=self.config.server.public_url,
        )
        deadlines = self.config.deadlines
        self.settings = Settings(
            ticket_prefix=self.config.tickets.prefix,
            timezone=self.config.tz,
            region=self.config.region,
            acknowledgements=self.config.acknowledgements.enabled,
            same_sender_window=self.config.dedupe.window,
            merge_threshold=self.config.dedupe.merge_threshold,
            related_threshold=self.config.dedupe.related_threshold,
            clusters=self.config.dedupe.clusters,
            cluster_window=timedelta(days=self.config.dedupe.cluster_window_days),
            inline_hold=timedelta(seconds=self.config.filing.wait + 30),
            verify_working_days=deadlines.verify_days,
            holidays=frozenset(deadlines.holidays),
            router=self.config.router(),
            deadlines=deadlines.days,
            smtp=self.config.smtp is not None,
            senders=frozenset(self._sending_connectors()),
            sms_via=ack.sms_connector,
            forwarders=tuple(
                ForwarderSpec(f.name, f.type, tuple(f.events), tuple(f.agencies), f.options)
                for f in self.config.forwarders
            ),
            reply_window=timedelta(days=ack.reply_window_days),
            privacy_keywords=PrivacyKeywords(
                anonymous=tuple(self.config.privacy.keywords_anonymous),
                confidential=tuple(self.config.privacy.keywords_confidential),
            ),
            survey=SurveySettings.from_config(self.config.survey),
        )
        self._connectors = {c.name: c for c in connectors}
        self._clock = clock
        self._health: dict[str, dict[str, Any]] = {}
        self.worker = FilingWorker(
            self.store,
            self.decoder,
            lambda: self.settings,
            clock=clock,
            batch_size=self.config.filing.batch_size,
        )
        """Files what is stored: in the caller's thread by default; ``worker.start()`` runs
        it in a thread of its own (``omnichannel serve``), so webhooks are answered first."""
        self.queue = Queue(
            self.store,
            clock=clock,
            planner=lambda conn, event: plan_event(conn, event, self.settings),
            follow_up=self._follow_up_due,
        )
        """The team queue: claim, assign, comment, reply, resolve, close, reject, reopen."""
        self.dedupe = Dedupe(
            self.queue, settings=lambda: self.settings, region=self.config.region, clock=clock
        )
        """Operators' merges, splits and identity links (``omnichannel.merging``)."""
        out = self.config.outbox
        self.outbox = Outbox(
            self.store,
            self._dispatcher,
            DeliveryPolicy(
                max_attempts=out.max_attempts,
                backoff=out.backoff,
                backoff_max=out.backoff_max,
                lease=out.lease,
                batch_size=out.batch_size,
                daily_limit=ack.daily_limit,
                timezone=self.config.tz,
            ),
            clock=clock,
        )
        """Acknowledgements, notifications, replies and forwards: ``outbox.deliver_due()``
        sends what is due (``run`` and ``work`` do, in a thread)."""
        self._mailer: Any = None
        self._forwarders: dict[str, Forwarder] = {}

    # -- the outbound side ---------------------------------------------------------------------

    def _sending_connectors(self) -> list[str]:
        """Enabled connectors whose type can answer on its channel (has ``send``)."""
        names = []
        for entry in self.config.connectors:
            if not entry.enabled:
                continue
            try:
                cls = connector_class(entry.type)
            except UnknownConnector:
                continue
            if callable(getattr(cls, "send", None)):
                names.append(entry.name)
        return names

    def _follow_up_due(self, category: str | None, since: datetime) -> datetime:
        days = self.config.deadlines.days(category)[1]
        return filing.add_working_days(
            since, days, self.config.tz, frozenset(self.config.deadlines.holidays)
        )

    @property
    def mailer(self) -> Any:
        """Outgoing mail (``[smtp]``), or None when not configured."""
        if self._mailer is None and self.config.smtp is not None:
            from omnichannel.mail import Mailer

            self._mailer = Mailer(self.config.smtp)
        return self._mailer

    def forwarder(self, name: str) -> Forwarder:
        """The ``[[forwarders]]`` entry called ``name``, built on first use."""
        if name not in self._forwarders:
            spec = next((f for f in self.settings.forwarders if f.name == name), None)
            if spec is None:
                raise Undeliverable(f"no forwarder named {name!r} is configured")
            context = ForwarderContext(mailer=self.mailer, timezone=self.config.tz)
            self._forwarders[name] = build_forwarder(spec, context)
        return self._forwarders[name]

    def add_forwarder(self, forwarder: Forwarder, *, events: Sequence[str] = EVENTS) -> None:
        """Use a forwarder instance that is not in the configuration (tests, portals)."""
        self._forwarders[forwarder.name] = forwarder
        spec = ForwarderSpec(forwarder.name, "instance", tuple(events))
        kept = tuple(f for f in self.settings.forwarders if f.name != forwarder.name)
        self.settings = dataclasses.replace(self.settings, forwarders=(*kept, spec))

    def sender(self, via: str) -> Sender:
        """What sends to citizens ``via`` a route: ``smtp`` or a connector's name."""
        if via == "smtp":
            if self.mailer is None:
                raise Undeliverable("no [smtp] section: e-mail cannot be sent")
            return cast(Sender, self.mailer)
        try:
            connector = self.connector(via)
        except UnknownConnector:
            raise Undeliverable(f"no connector named {via!r} to send with") from None
        if not isinstance(connector, Sender):
            raise Undeliverable(f"connector {via!r} cannot send messages")
        return connector

    def _dispatcher(self, rows: Sequence[OutboxRow]) -> Callable[[OutboxRow], Any]:
        """What sends a claimed batch: the complaints its forwards carry are read at once."""
        wanted = sorted({r.complaint_id for r in rows if r.kind == "forward" and r.complaint_id})
        forwarded: dict[int, dict[str, Any]] = {}
        if wanted:
            with self.store.transaction() as conn:
                masker = Masker.from_config(self.config)
                for item in queries.load_complaints(conn, ids=wanted, limit=None, masker=masker):
                    forwarded[item.id] = item.model_dump(mode="json")
        return lambda row: self._dispatch(row, forwarded)

    def _dispatch(
        self, row: OutboxRow, forwarded: Mapping[int, dict[str, Any]]
    ) -> tuple[str | None, str | None]:
        """Send one outbox row: to a citizen (the text sent is returned) or a forwarder."""
        if row.kind in CITIZEN_KINDS:
            with self.store.transaction() as conn:
                outbound = citizen_outbound(conn, row, self.templates)
            sender = self.sender(str(row.payload.get("via") or ""))
            sent = sender.send(outbound)
            if isinstance(sent, Sent):
                return sent.provider_id, sent.text
            return sent, outbound.text
        forwarder = self.forwarder(row.target)
        data = forwarded.get(row.complaint_id or 0)
        if data is None:
            raise Undeliverable("the complaint is gone")
        at = datetime.fromisoformat(str(row.payload.get("at")).replace("Z", "+00:00"))
        item = Forward(row.delivery_id, str(row.payload.get("event")), data, at)
        return forwarder.forward(item), None

    def connector_health(self, name: str) -> dict[str, Any]:
        """How connector ``name`` is doing: last success, last error, failed (for /healthz)."""
        return dict(
            self._health.get(name, {"last_success": None, "last_error": None, "failed": False})
        )

    def record_health(self, name: str, error: str | None = None, *, failed: bool = False) -> None:
        """Note a success (no error) or a failure of connector ``name``."""
        status = self._health.setdefault(name, self.connector_health(name))
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
        self.worker.close()
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

    def decoder(self, name: str) -> Decoder:
        """The decoder of connector ``name`` (for the filing worker). A message given already
        decoded (``receive_inbound``) is read back as the InboundMessage it was, whatever the
        connector's own payload format."""
        decode = self.connector(name).decode
        timezone = self.context.timezone

        def decoder(raw: RawMessage) -> InboundMessage:
            if raw.content_type != INBOUND_TYPE:
                return decode(raw)
            return decode_json_document(
                raw.payload, connector=name, received_at=raw.received_at, timezone=timezone
            )

        return decoder

    def add_connector(self, connector: Connector) -> None:
        """Use a connector instance that is not in the configuration (portals, tests)."""
        self._connectors[connector.name] = connector
        if connector.acknowledges_inline:
            inline = self.settings.inline_ack | {connector.name}
            self.settings = dataclasses.replace(self.settings, inline_ack=inline)
        if isinstance(connector, Sender):
            senders = self.settings.senders | {connector.name}
            self.settings = dataclasses.replace(self.settings, senders=senders)

    # -- receiving -----------------------------------------------------------------------------

    def receive(self, raw: RawMessage) -> ReceiveResult:
        """Store, decode, dedupe and file one raw message; return its outcome."""
        return self.receive_many([raw])[0]

    def receive_many(
        self, raws: Sequence[RawMessage], *, cursor: tuple[str, Any] | None = None
    ) -> list[ReceiveResult]:
        """The batch form: the raws (and ``cursor``: connector name, value) are stored in one
        transaction, then filed in this thread (the worker's path); one result each, in order.
        """
        for name in {raw.connector for raw in raws}:
            self.connector(name)  # unknown connectors fail before anything is stored
        stored = self._store(raws, cursor=cursor)
        return self._file_and_report(raws, stored)

    def receive_inbound(self, message: InboundMessage, *, connector: str) -> ReceiveResult:
        """Receive an already-decoded message (a portal's own form, say) via ``connector``;
        a value no column can hold raises ``UnstorableValue`` (a DecodeError) naming the field,
        before anything is stored."""
        message = storable_inbound(message.model_copy(deep=True))
        raw = RawMessage(
            connector=connector,
            external_id=message.external_id,
            received_at=message.received_at or self._clock(),
            content_type=INBOUND_TYPE,
            payload=message.model_dump_json(exclude_none=True).encode(),
        )
        return self.receive(raw)

    def _store(
        self, raws: Sequence[RawMessage], *, cursor: tuple[str, Any] | None = None
    ) -> pipeline.Stored:
        """Intake: the raw payloads (and the cursor) committed; nothing filed yet."""
        with self.store.transaction() as conn:
            return pipeline.store_raw(conn, raws, self._clock(), cursor=cursor)

    def _file_and_report(
        self, raws: Sequence[RawMessage], stored: pipeline.Stored
    ) -> list[ReceiveResult]:
        """File the stored rows still to be filed, in this thread; wait for those another
        worker holds; the result of each raw message."""
        todo = _to_file(raws, stored)
        filed = self.worker.file_raws(todo) if todo else set()
        elsewhere = set(todo) - filed
        if elsewhere and not self.worker.wait_filed(elsewhere, CALLER_WAIT):
            raise StorageUnavailable("storage unavailable (filing did not finish in time)")
        return self._results(raws, stored, filed)

    def _results(
        self, raws: Sequence[RawMessage], stored: pipeline.Stored, own: set[int]
    ) -> list[ReceiveResult]:
        """One result per raw message: its filing outcome for the rows this call answers for
        (``own``: those it filed), ``duplicate`` for the others and for a repeat in the list.
        So when two callers deliver the same message at once, exactly one gets its outcome."""
        with self.store.transaction() as conn:
            states = pipeline.describe(conn, stored.ids)
        out, seen = [], set()
        for raw, rid in zip(raws, stored.ids, strict=True):
            state = states.get(rid) or pipeline.Filing(pipeline.RECEIVED)
            mine = rid in own and rid not in seen and state.done
            seen.add(rid)
            note = (
                "stored earlier and quarantined" if state.status == pipeline.QUARANTINED else None
            )
            out.append(
                ReceiveResult(
                    connector=raw.connector,
                    external_id=raw.external_id,
                    outcome=state.outcome if mine and state.outcome else Outcome.DUPLICATE,
                    complaint_id=state.complaint_id,
                    ticket=state.ticket,
                    raw_id=rid,
                    error=state.error if mine else note,
                )
            )
        return out

    def ingest_files(
        self, connector: str, paths: Iterable[str | os.PathLike[str]], *, batch_size: int = 200
    ) -> Iterator[FileResult]:
        """Push payload files through ``connector`` (trusted local input); one result per file,
        each filed before it is given."""
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
        """One poll of one connector: fetch after the stored cursor; each batch stored with its
        cursor, then acknowledged to the source, then filed.

        ``since`` backfills everything received since that day. With ``on_batch``, each batch's
        results go to it as soon as they are filed and are not also collected (so memory
        stays flat however large the mailbox); the returned list is then empty.
        """
        source = self.connector(name)
        if not isinstance(source, PollingConnector):
            raise UnknownConnector("that polls, named", name, self.polling_names())
        with self.store.transaction() as conn:
            cursor = pipeline.load_cursor(conn, name)
        results: list[ReceiveResult] = []
        for batch in source.fetch(cursor, since=since):
            stored = self._store(batch.messages, cursor=(name, batch.cursor))
            source.ack(batch.messages)
            filed = self._file_and_report(batch.messages, stored)
            if on_batch is not None:
                on_batch(filed)
            else:
                results += filed
        return results

    def polling_names(self) -> list[str]:
        """The connectors that have something to poll (``poll`` and ``run`` poll them)."""
        return [
            n
            for n in self.connector_names()
            if isinstance(c := self.connector(n), PollingConnector) and c.polls()
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
        """Verify, store and answer one webhook request (any web framework can call it).

        ``url`` is the URL as the provider called it (scheme, host, path and raw query). The
        raw payload is committed before any 2xx. With the worker running in this process
        (``inbox.worker.start()``, as ``omnichannel serve`` does), provider webhooks are
        answered at once and filed by it; a ``web`` connector (or inline TwiML) waits for its
        own message up to ``filing.wait`` seconds. Without it, the message is filed in the
        caller's thread before the answer.
        """
        try:
            connector = self._webhook_connector(name)
            url = checked_url(url, connector.public_url())
            request = WebhookRequest.build(method, url, headers, body)
            with self.store.within(self.config.server.storage_timeout):
                return self._handle(connector, request)
        except WebhookRejected as exc:
            log.warning(  # one line per refusal: who, what answer, why; never the payload
                "webhook %s refused: %d %s%s",
                LOG_MASKER.text(repr(name[:64])) if not name.isidentifier() else name,
                exc.status,
                exc.reason,
                f" ({exc.field})" if exc.field else "",
            )
            payload = {"error": exc.reason} | ({"field": exc.field} if exc.field else {})
            return json_response(exc.status, payload)
        except StorageUnavailable:
            log.warning("webhook %s: storage unavailable, answering 503", name)
            # the driver's text stays out of /healthz
            self.record_health(name, "storage unavailable")
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
        if request.headers.get("content-encoding", "").strip().lower() not in ("", "identity"):
            # nothing here inflates a body: a gzip bomb is refused, never decompressed
            raise WebhookRejected(415, "content encoding not supported (send it uncompressed)")
        with self.worker.serving():
            _verify(connector, request)
            raws = connector.parse(request)
            stored = self._store_webhook(raws) if raws else None
        if stored is None:
            response = connector.respond(request, [])
        elif not self.worker.running:
            # the payload is committed: filing it here (dedupe lookups, a first statement
            # compiled) may take longer than storing it should, up to what a caller waits
            bound = max(self.config.server.storage_timeout, self.config.filing.wait)
            with self.store.within(bound):
                filed = self._file_and_report(raws, stored)
                response = self._respond(connector, request, filed)
        else:
            self.worker.wake()
            response = self._answer_from_worker(connector, request, raws, stored)
        self.record_health(connector.name)
        return response

    def _store_webhook(self, raws: Sequence[RawMessage]) -> pipeline.Stored:
        """Commit a request's raw messages, at most ``WEBHOOK_CHUNK`` per transaction: each
        stays within the storage timeout however many a provider batches in one request (a
        redelivery after a later chunk failed finds the earlier ones stored: duplicates)."""
        try:
            chunks = [
                self._store(raws[start : start + WEBHOOK_CHUNK])
                for start in range(0, len(raws), WEBHOOK_CHUNK)
            ]
        except (StorageUnavailable, WebhookRejected):
            raise
        except sa.exc.DBAPIError as exc:  # a value no column can hold, in the raw row itself
            log.warning("webhook payload cannot be stored (%s)", type(exc.orig).__name__)
            raise WebhookRejected(400, "payload cannot be stored") from None
        if len(chunks) == 1:
            return chunks[0]
        return pipeline.Stored(
            [rid for chunk in chunks for rid in chunk.ids],
            [new for chunk in chunks for new in chunk.new],
            {rid: status for chunk in chunks for rid, status in chunk.status.items()},
        )

    def _answer_from_worker(
        self,
        connector: WebhookConnector,
        request: WebhookRequest,
        raws: Sequence[RawMessage],
        stored: pipeline.Stored,
    ) -> WebhookResponse:
        if not connector.waits_for_filing():
            return connector.respond(request, [])
        todo = set(_to_file(raws, stored))
        if todo and not self.worker.wait_filed(todo, self.config.filing.wait):
            with self.store.transaction() as conn:
                receipt = pipeline.issue_receipt(conn, stored.ids[0])
            return connector.respond_pending(request, receipt, _status_url(request, receipt))
        inserted = {rid for rid, new in zip(stored.ids, stored.new, strict=True) if new}
        return self._respond(connector, request, self._results(raws, stored, inserted))

    def _respond(
        self, connector: WebhookConnector, request: WebhookRequest, results: list[ReceiveResult]
    ) -> WebhookResponse:
        new = [r.complaint_id for r in results if r.outcome is Outcome.NEW and r.complaint_id]
        if connector.acknowledges_inline and new:  # (a redelivery has none to take)
            with self.store.transaction() as conn:
                request.scratch["inline_acks"] = self.outbox.take_inline(conn, new, self.templates)
        response = connector.respond(request, results)
        response.results = results
        return response

    def receipt(self, receipt: str) -> dict[str, Any] | None:
        """What became of a web submission answered 202: ``{"status": "pending"}`` while it
        waits, then ``{"status": "filed", "ticket", "complaint_id", "outcome"}``; None for an
        unknown receipt."""
        with self.store.transaction() as conn:
            found = pipeline.find_receipt(conn, receipt)
        if found is None:
            return None
        state = found[1]
        if not state.done or state.outcome is None:
            return {"status": "pending"}
        return {
            "status": "filed",
            "ticket": state.ticket,
            "complaint_id": state.complaint_id,
            "outcome": state.outcome.value,
        }

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
        self,
        raw_ids: Sequence[int] | None = None,
        *,
        payload: bytes | None = None,
        decoder: str = "connector",
    ) -> list[ReceiveResult]:
        """Decode quarantined raw messages again (after a fix); all of them when no ids given.

        ``payload`` replaces the stored payload of the single given message (an operator's
        corrected copy); the original is kept in the quarantine record. ``decoder`` says who
        reads it: ``connector`` (its connector's decoder, as it arrived) or ``inbound`` (an
        InboundMessage JSON document — the files connector's ``.json`` form — read by
        omnichannel itself, whatever the connector).
        """
        if decoder not in REPLAY_DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(REPLAY_DECODERS)}")
        if payload is not None and (raw_ids is None or len(raw_ids) != 1):
            raise ValueError("a replacement payload needs exactly one quarantined message id")
        if decoder != "connector" and payload is None:
            raise ValueError("a decoder is named for a replacement payload (give one)")
        content_type = INBOUND_TYPE if decoder == "inbound" else None
        with self.store.transaction() as conn:
            rows = queries.quarantined_raws(conn, raw_ids)
            if payload is not None and rows:
                queries.replace_payload(conn, rows[0][0], payload, content_type)
                rows = queries.quarantined_raws(conn, raw_ids)
        prepared = [self.worker.prepare(rid, raw) for rid, raw in rows]
        filed = self.worker.file_prepared(prepared, status=pipeline.QUARANTINED, now=self._clock())
        raws = [raw for _, raw in rows]
        stored = pipeline.Stored([rid for rid, _ in rows], [False] * len(rows), {})
        return self._results(raws, stored, filed)

    # -- reading -------------------------------------------------------------------------------

    def complaints(
        self,
        *,
        limit: int | None = 50,
        status: str | None = None,
        after_id: int = 0,
        cluster: str | None = None,
        team: bool = True,
        masked: bool | None = None,
    ) -> list[Complaint]:
        """Complaints in id order (``cluster``: only those of that cluster), as the team sees
        them: a confidential complaint's sender shown, an anonymous one's never; with
        ``team=False`` as exports and forwards give them (neither sender). ``masked`` (the
        default: not for the team) masks ``[privacy] mask_in_text`` in their texts."""
        mask = (not team) if masked is None else masked
        with self.store.transaction() as conn:
            return queries.load_complaints(
                conn,
                limit=limit,
                status=status,
                after_id=after_id,
                cluster=cluster,
                team=team,
                masker=Masker.from_config(self.config) if mask else None,
            )

    def complaint(self, key: int | str, *, team: bool = True) -> Complaint | None:
        """A complaint by id or by ticket number, as the team sees it (``team=False``: as
        exported, without a confidential complaint's sender)."""
        with self.store.transaction() as conn:
            return queries.complaint(conn, key, team=team)

    def iter_complaints(
        self, *, batch: int = 500, cluster: str | None = None, team: bool = False
    ) -> Iterator[Complaint]:
        """Every complaint (of ``cluster``) in id order, read in batches, in the exported form
        (``team=True``: with confidential complaints' senders, for a recorded disclosure)."""
        after = 0
        while True:
            page = self.complaints(
                limit=batch, after_id=after, cluster=cluster, team=team, masked=True
            )
            if not page:
                return
            yield from page
            after = page[-1].id

    def quarantined(self, *, include_resolved: bool = False) -> list[dict[str, Any]]:
        with self.store.transaction() as conn:
            return queries.list_quarantine(conn, include_resolved=include_resolved)


CALLER_WAIT = 60.0
"""Seconds the Python API waits for rows another worker is filing (PostgreSQL)."""
INBOUND_TYPE = "application/vnd.omnichannel.inbound+json"
"""The stored form of a message given already decoded (``receive_inbound``)."""
REPLAY_DECODERS = ("connector", "inbound")
WEBHOOK_CHUNK = 500
"""Raw messages of one webhook request committed per transaction (Meta batches up to 1,000)."""


def _to_file(raws: Sequence[RawMessage], stored: pipeline.Stored) -> dict[int, RawMessage]:
    """The stored rows still to be filed, each once: id -> raw message."""
    todo: dict[int, RawMessage] = {}
    for raw, rid in zip(raws, stored.ids, strict=True):
        if stored.status.get(rid) == pipeline.RECEIVED:
            todo.setdefault(rid, raw)
    return todo


def _verify(connector: WebhookConnector, request: WebhookRequest) -> None:
    """``connector.verify``, failing closed: a header it could not even check (compare_digest
    refuses non-ASCII text, int() a 5000-digit one) is a refusal like a bad signature, never
    a 500 — whichever connector, ours or a third party's."""
    try:
        connector.verify(request)
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        reason = f"signature headers cannot be checked ({type(exc).__name__})"
        raise WebhookRejected(403, reason) from None


def _status_url(request: WebhookRequest, receipt: str) -> str:
    """``…/receipts/<receipt>`` beside the ``…/webhooks/<name>`` the request was sent to."""
    parts = urlsplit(request.url)
    base = parts.path.rsplit("/webhooks/", 1)[0]
    return urlunsplit((parts.scheme, parts.netloc, f"{base}/receipts/{receipt}", "", ""))
