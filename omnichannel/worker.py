"""The filing worker: takes stored raw rows out of the database and files them.

The database is the engine of work. Connectors only store raw payloads (``pipeline.store_raw``);
a ``FilingWorker`` claims rows still ``received``, in batches, decodes and normalizes them, and
files them — one transaction per batch. Any number of workers in any number of processes can
run against one PostgreSQL (rows are claimed ``FOR UPDATE SKIP LOCKED``); on SQLite, each
process's worker takes the database's write lock per batch.

- **Where decoding runs.** PostgreSQL: inside the claiming transaction (row locks do not keep
  anyone else from storing). SQLite: before it — the batch is read, decoded, then claimed again
  in the write transaction (rows another process filed meanwhile are left alone), so the one
  write lock is not held while Python decodes.
- **Poison.** When a batch fails for any reason other than the store being unavailable, its
  transaction is rolled back and the batch is filed again in halves, down to the one message
  that fails alone, which is quarantined with its error (``pipeline.error_text``: a database
  error keeps only the driver's first line, without values). The rest are filed.
- **Giving way.** A worker thread in a process that answers webhooks files between requests:
  while any is being answered it files at most one batch every ``YIELD_MAX`` seconds, so a
  burst is answered first and its backlog filed after.
- **Waiting.** ``wait_filed`` lets a request wait, up to a bound, for its own rows: rows this
  worker filed are known at once; rows filed by another process are seen by asking the
  database four times a second.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import tenacity

from omnichannel import pipeline
from omnichannel.errors import StorageUnavailable
from omnichannel.pipeline import QUARANTINED, RECEIVED, Prepared, Settings
from omnichannel.schema import RawMessage
from omnichannel.store import Store
from omnichannel.store.tables import raw_messages

__all__ = ["FilingWorker"]

log = logging.getLogger("omnichannel.worker")
Clock = Callable[[], datetime]
DecoderFor = Callable[[str], pipeline.Decoder]
"""The decoder of a connector, by name (raises when there is no such connector)."""
YIELD_MAX = 1.0
"""While webhooks are being answered in its process, a worker thread files one batch at most
every this many seconds; it files as soon as none is being answered. So a burst is answered
first, its backlog filed after it, and under a steady load between its requests."""
RECENT = 10_000
"""How many ids of rows it filed a worker remembers for ``wait_filed`` (about 1 MB); one
forgotten already is found in the database, as a row filed by another process is."""
DB_CHECK_INTERVAL = 0.25


def _utcnow() -> datetime:
    return datetime.now(UTC)


class FilingWorker:
    """Files raw rows of ``store``; thread-safe (one batch at a time per worker).

    >>> worker = FilingWorker(store, inbox.connector_decoder, lambda: settings)  # doctest: +SKIP
    >>> worker.file_backlog()                                                    # doctest: +SKIP
    12
    """

    def __init__(
        self,
        store: Store,
        decoder_for: DecoderFor,
        settings: Callable[[], Settings],
        *,
        clock: Clock = _utcnow,
        batch_size: int = 100,
    ) -> None:
        self.store = store
        self._decoder_for = decoder_for
        self._settings = settings
        self._clock = clock
        self.batch_size = batch_size
        self._recent: OrderedDict[int, None] = OrderedDict()
        self._filed = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._busy = 0
        self._busy_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread: threading.Thread | None = None
        self.filed_total = 0
        self.last_error: str | None = None

    def __repr__(self) -> str:
        return f"<FilingWorker {self.store!r}>"

    # -- filing ------------------------------------------------------------------------------------

    def file_backlog(self, *, status: str = RECEIVED, ids: Sequence[int] | None = None) -> int:
        """File batches until no row in ``status`` (among ``ids``) is left to claim; how many
        rows were filed or quarantined."""
        total = 0
        while not self._stop.is_set():
            count = self.file_batch(status=status, ids=ids)
            if count == 0:
                break
            total += count
        return total

    def file_batch(self, *, status: str = RECEIVED, ids: Sequence[int] | None = None) -> int:
        """Claim one batch of rows in ``status`` (among ``ids``) and file it; how many rows it
        filed (0 only when there was nothing to claim)."""
        now = self._clock()
        replay = status == QUARANTINED
        prepared: list[Prepared] = []
        if self.store.dialect == "postgresql":
            try:
                with self.store.transaction() as conn:
                    rows = pipeline.claim(conn, status=status, ids=ids, limit=self.batch_size)
                    prepared = [self.prepare(rid, raw) for rid, raw in rows]
                    pipeline.file_claimed(conn, prepared, self._settings(), now, replay=replay)
                filed = {item.raw_id for item in prepared}
            except StorageUnavailable:
                raise
            except Exception as exc:
                self._failed(prepared, exc)
                filed = self._file_halves(prepared, status, now, replay)
            self._done(filed)
            return len(prepared)
        with self.store.transaction() as conn:
            rows = pipeline.claim(conn, status=status, ids=ids, limit=self.batch_size)
        prepared = [self.prepare(rid, raw) for rid, raw in rows]
        filed = self.file_prepared(prepared, status=status, now=now)
        # rows another process filed meanwhile are not counted, but the batch was not empty
        return len(filed) or (1 if prepared else 0)

    def file_raws(self, raws: dict[int, RawMessage]) -> set[int]:
        """File these stored rows (id: the raw message, as the caller has it in memory; filed
        in this order) where they are still to be filed; the ids it filed (others were filed,
        or are being filed, elsewhere). Decoded and filed ``batch_size`` at a time, as the
        worker's own batches: each transaction stays short (a webhook's storage timeout), and
        only one batch of decoded messages is held at once."""
        items, filed = list(raws.items()), set()
        for start in range(0, len(items), self.batch_size):
            prepared = [
                self.prepare(rid, raw) for rid, raw in items[start : start + self.batch_size]
            ]
            filed |= self.file_prepared(prepared, status=RECEIVED, now=self._clock())
        return filed

    def file_prepared(
        self, prepared: Sequence[Prepared], *, status: str, now: datetime
    ) -> set[int]:
        """Claim again and file decoded rows, isolating what fails; the ids it filed."""
        filed = self._file_halves(prepared, status, now, status == QUARANTINED)
        self._done(filed)
        return filed

    def _file_halves(
        self, prepared: Sequence[Prepared], status: str, now: datetime, replay: bool
    ) -> set[int]:
        if not prepared:
            return set()
        try:
            return self._file_together(prepared, status, now, replay)
        except StorageUnavailable:
            raise
        except Exception as exc:
            if len(prepared) == 1:
                return self._quarantine(prepared[0], status, exc, now)
            self._failed(prepared, exc)
        middle = len(prepared) // 2
        first = self._file_halves(prepared[:middle], status, now, replay)
        return first | self._file_halves(prepared[middle:], status, now, replay)

    def _file_together(
        self, prepared: Sequence[Prepared], status: str, now: datetime, replay: bool
    ) -> set[int]:
        with self.store.transaction() as conn:
            mine = _lock(conn, status, [item.raw_id for item in prepared])
            todo = [item for item in prepared if item.raw_id in mine]
            pipeline.file_claimed(conn, todo, self._settings(), now, replay=replay)
        return mine

    def _quarantine(
        self, item: Prepared, status: str, error: BaseException, now: datetime
    ) -> set[int]:
        log.warning(
            "raw message %s (%s) cannot be filed (%s): quarantined",
            item.raw_id,
            item.raw.connector,
            type(error).__name__,
        )
        with self.store.transaction() as conn:
            if not _lock(conn, status, [item.raw_id]):
                return set()
            pipeline.quarantine_one(conn, item.raw_id, item.raw.connector, error, now)
        return {item.raw_id}

    def _failed(self, prepared: Sequence[Prepared], error: BaseException) -> None:
        if prepared:
            log.info(
                "a batch of %d failed (%s); filing it again in parts",
                len(prepared),
                type(error).__name__,
            )

    def prepare(self, raw_id: int, raw: RawMessage) -> Prepared:
        """Decode and normalize a stored row with its connector's decoder (pure)."""
        try:
            decode = self._decoder_for(raw.connector)
        except Exception as exc:  # a connector no longer configured: quarantine, replay later
            return Prepared(raw_id, raw, error=exc)
        return pipeline.prepare(raw_id, raw, decode, self._settings())

    # -- waiting -----------------------------------------------------------------------------------

    def _done(self, ids: Collection[int] | Any) -> None:
        ids = list(ids)
        if not ids:
            return
        with self._filed:
            for rid in ids:
                self._recent[rid] = None
            while len(self._recent) > RECENT:
                self._recent.popitem(last=False)
            self.filed_total += len(ids)
            self._filed.notify_all()

    def wait_filed(self, ids: Collection[int], timeout: float) -> bool:
        """Wait until every row of ``ids`` is filed (here or in another process), at most
        ``timeout`` seconds; whether they are."""
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if self._wait_recent(frozenset(wanted), max(0.0, min(remaining, DB_CHECK_INTERVAL))):
                return True
            with self.store.transaction() as conn:
                states = pipeline.describe(conn, wanted)
            wanted = {rid for rid in wanted if rid in states and not states[rid].done}
            if not wanted:
                return True
            if time.monotonic() >= deadline:
                return False

    def _wait_recent(self, wanted: frozenset[int], timeout: float) -> bool:
        with self._filed:
            return self._filed.wait_for(lambda: wanted.issubset(self._recent), timeout=timeout)

    @contextmanager
    def serving(self) -> Iterator[None]:
        """A request of this process is being answered: a worker thread lets it go first."""
        with self._busy_lock:
            self._busy += 1
            self._idle.clear()
        try:
            yield
        finally:
            with self._busy_lock:
                self._busy -= 1
                if not self._busy:
                    self._idle.set()

    def _file_giving_way(self) -> None:
        """The thread's ``file_backlog``: before each batch, wait for the requests in hand to
        be answered (at most ``YIELD_MAX``)."""
        while not self._stop.is_set():
            self._idle.wait(YIELD_MAX)
            if self.file_batch() == 0:
                return

    # -- running in a thread -----------------------------------------------------------------------

    def wake(self) -> None:
        """Something was stored: look for work now rather than at the next interval."""
        self._wake.set()

    def backlog(self) -> int:
        """How many raw rows wait to be filed."""
        with self.store.transaction() as conn:
            query = sa.select(sa.func.count()).where(raw_messages.c.status == RECEIVED)
            return int(conn.execute(query).scalar_one())

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, *, interval: float = 1.0) -> None:
        """File in a thread of this process until ``close``: what is stored here at once
        (``wake``), and every ``interval`` seconds what other processes stored."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.run, args=(interval,), name="omnichannel-filing", daemon=True
        )
        self._thread.start()

    def run(self, interval: float = 1.0) -> None:
        """The worker's loop (``start`` runs it in a thread; ``omnichannel work`` in the main
        one) until ``close``: it looks for work at once when woken, else every ``interval``
        seconds. A failure (the store unavailable, or a bug) is retried by tenacity after
        ``interval`` doubling to a minute, with jitter."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(Exception),
            wait=tenacity.wait_random_exponential(multiplier=interval, max=60),
            stop=tenacity.stop_when_event_set(self._stop),
            sleep=self._sleep,
            before_sleep=self._failed_round,
            reraise=True,
        )
        while not self._stop.is_set():
            self._wake.clear()
            with contextlib.suppress(Exception):  # only when stopping: reported already
                retrying(self._file_giving_way)
                self.last_error = None
            self._wake.wait(interval)

    def _sleep(self, seconds: float) -> None:
        self._stop.wait(seconds)

    def _failed_round(self, state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, StorageUnavailable):
            if self.last_error is None:
                log.warning("filing paused: %s", error)
            self.last_error = str(error)
        else:  # a bug: keep the loop, say what kind
            log.error("filing failed (%s); will try again", type(error).__name__)
            self.last_error = type(error).__name__

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop after the batch in hand (its transaction commits or rolls back)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)


def _lock(conn: sa.Connection, status: str, ids: Sequence[int]) -> set[int]:
    """Lock the rows of ``ids`` still in ``status`` (PostgreSQL: skipping rows another
    transaction holds); their ids."""
    query = (
        sa.select(raw_messages.c.id)
        .where(raw_messages.c.id.in_(sorted(set(ids))), raw_messages.c.status == status)
        .order_by(raw_messages.c.id)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return set(conn.execute(query).scalars())
