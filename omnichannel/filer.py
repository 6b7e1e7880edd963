"""Filing in a process of its own: how ``omnichannel serve`` stores what its webhooks receive.

Verifying and parsing a webhook, and answering it, is the HTTP server's work; storing, decoding,
deduplicating and filing is the store's. In one Python process both take turns on one core
(the GIL), and every hand-over between the HTTP threads and the thread that files costs a
thread switch. ``FilingProcess`` moves the store's part into a child process:

- each request thread sends its raw messages to the child and waits for its own results;
- the child takes every request that is waiting, stores and files them in one transaction
  (``Inbox.receive_many``), and sends each request its results once that is committed;
- a reader thread in the server hands each answer to the thread that waits for it.

Guarantees are those of ``Inbox.handle_webhook``: a request is answered 200 only after the
child has committed its raw payload; if storage is down, if the child dies or does not answer
within ``timeout``, the request gets ``StorageUnavailable`` (503) and the provider retries. A
dead child is started again on the next request. The child is started with ``spawn`` (a fresh
interpreter), so starting it again from a server full of threads is safe. It builds its own
``Inbox`` from the same configuration, so it decodes with the configured connectors only (not
with connectors added to the server's inbox in code).

One case the server cannot tell apart: a child that commits a request after that request's
timeout has answered 503. The provider's retry is then a ``duplicate``, and the TwiML
acknowledgement of the first answer was never delivered (its outbox row says ``sent-inline``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
import os
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from omnichannel.config import Config
from omnichannel.errors import StorageUnavailable
from omnichannel.schema import Outcome, RawMessage, ReceiveResult

__all__ = ["FilingProcess"]

log = logging.getLogger("omnichannel.filer")

MAX_BATCH = 200
"""At most this many raw messages per transaction in the child."""


@dataclass
class _Waiting:
    results: list[ReceiveResult] = field(default_factory=list)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class FilingProcess:
    """A child process that stores and files for many threads (``receive_many``, thread-safe).

    >>> filer = FilingProcess(config)                               # doctest: +SKIP
    >>> inbox.delegate_filing(filer.receive_many)                    # doctest: +SKIP
    """

    def __init__(
        self, config: Config, *, secrets: Sequence[str] = (), timeout: float = 60.0
    ) -> None:
        """``secrets``: what the child's log lines must never show (connector credentials);
        ``timeout``: how long a request waits for its results (sending included)."""
        self._config = config
        self._secrets = list(secrets)
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # guards the child, its queue and _waiting
        self._waiting: dict[int, _Waiting] = {}
        self._ids = itertools.count(1)
        self._child: _Child | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        child = self._child
        return child.pid if child is not None and child.process.is_alive() else None

    def start(self) -> None:
        """Start the child now (otherwise the first request does)."""
        with self._lock:
            self._ensure_started()

    def receive_many(self, raws: Sequence[RawMessage]) -> list[ReceiveResult]:
        """Store and file ``raws`` in the child; their results, once committed."""
        waiting = _Waiting()
        fields = [_raw_fields(raw) for raw in raws]
        with self._lock:
            if self._closed:
                raise StorageUnavailable("storage unavailable (the server is stopping)")
            child = self._ensure_started()
            job = next(self._ids)
            self._waiting[job] = waiting
            child.outgoing.put((job, fields))  # sent by the child's sender thread
        if not waiting.done.wait(self._timeout):
            with self._lock:
                self._waiting.pop(job, None)
            raise StorageUnavailable(
                f"storage unavailable (no answer from the filing process in {self._timeout:g} s)"
            )
        if waiting.error is not None:
            raise waiting.error
        return waiting.results

    def close(self) -> None:
        """Stop the child: it files what was sent to it, then exits."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        child.outgoing.put(None)  # the sender tells the child to stop once all is sent
        child.process.join(timeout=30)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        child.conn.close()

    # -- the parent's side -------------------------------------------------------------------

    def _ensure_started(self) -> _Child:
        """Called with the lock held: a running child, started if needed."""
        child = self._child
        if child is not None and child.process.is_alive():
            return child
        if child is not None:
            self._lost(child, "the filing process exited")
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_child_main,
            args=(theirs, self._config, self._secrets),
            name="omnichannel-filer",
            daemon=True,
        )
        process.start()
        theirs.close()
        child = self._child = _Child(process, ours)
        for target, name in ((self._read, "reader"), (self._send, "sender")):
            thread = threading.Thread(
                target=target, args=(child,), name=f"omnichannel-filer-{name}", daemon=True
            )
            thread.start()
        log.info("filing process started (pid %s)", process.pid)
        return child

    def _send(self, child: _Child) -> None:
        """Send the child each request still waiting; a stop (``None``) ends it."""
        while True:
            item = child.outgoing.get()
            if item is None:
                with contextlib.suppress(OSError, ValueError):
                    child.conn.send(None)
                return
            with self._lock:
                if item[0] not in self._waiting:
                    continue  # timed out, or failed with a child that is gone
            try:
                child.conn.send(item)
            except (OSError, ValueError):
                with self._lock:
                    if self._child is child:
                        self._lost(child, "cannot reach the filing process")
                return
            except Exception as exc:  # a value that cannot be pickled: this request only
                self._fail(item[0], RuntimeError(f"cannot send to the filing process: {exc}"))

    def _read(self, child: _Child) -> None:
        """Hand each answer to the request waiting for it, until the child's pipe closes."""
        while True:
            try:
                job, kind, payload = child.conn.recv()
            except (EOFError, OSError):
                with self._lock:
                    if self._child is child:
                        self._lost(child, "the filing process exited")
                child.conn.close()
                return
            if kind == "ok":
                self._answer(job, [_result(*fields) for fields in payload])
            elif kind == "unavailable":
                self._fail(job, StorageUnavailable(payload))
            else:
                self._fail(job, RuntimeError(f"filing failed in the filing process: {payload}"))

    def _answer(self, job: int, results: list[ReceiveResult]) -> None:
        with self._lock:
            waiting = self._waiting.pop(job, None)
        if waiting is not None:  # else its request timed out
            waiting.results = results
            waiting.done.set()

    def _fail(self, job: int, error: BaseException) -> None:
        with self._lock:
            waiting = self._waiting.pop(job, None)
        if waiting is not None:
            waiting.error = error
            waiting.done.set()

    def _lost(self, child: _Child, reason: str) -> None:
        """Called with the lock held: fail every waiting request; the next one restarts."""
        for waiting in self._waiting.values():
            waiting.error = StorageUnavailable(f"storage unavailable ({reason})")
            waiting.done.set()
        self._waiting.clear()
        if self._child is child:
            self._child = None
        child.outgoing.put(None)  # ends its sender
        if child.process.is_alive():
            child.process.kill()
        log.warning("%s (pid %s, exit code %s)", reason, child.pid, child.process.exitcode)


@dataclass
class _Child:
    """One child process, its pipe, and what waits to be sent to it."""

    process: Any
    conn: Connection
    outgoing: queue.SimpleQueue[tuple[int, list[_RawFields]] | None] = field(
        default_factory=queue.SimpleQueue
    )

    @property
    def pid(self) -> int:
        return int(self.process.pid)


# -- what crosses the pipe: plain tuples (pickling a pydantic model costs several times more) -

_RawFields = tuple[str, str, Any, str, bytes, dict[str, Any]]
_ResultFields = tuple[str, str, str, int | None, str | None, int | None, str | None]


def _raw_fields(raw: RawMessage) -> _RawFields:
    return (
        raw.connector,
        raw.external_id,
        raw.received_at,
        raw.content_type,
        raw.payload,
        raw.meta,
    )


def _raw(fields: _RawFields) -> RawMessage:
    connector, external_id, received_at, content_type, payload, meta = fields
    return RawMessage.model_construct(  # validated in the server process already
        connector=connector,
        external_id=external_id,
        received_at=received_at,
        content_type=content_type,
        payload=payload,
        meta=meta,
    )


def _result_fields(result: ReceiveResult) -> _ResultFields:
    return (
        result.connector,
        result.external_id,
        result.outcome.value,
        result.complaint_id,
        result.ticket,
        result.raw_id,
        result.error,
    )


def _result(
    connector: str,
    external_id: str,
    outcome: str,
    complaint_id: int | None,
    ticket: str | None,
    raw_id: int | None,
    error: str | None,
) -> ReceiveResult:
    return ReceiveResult.model_construct(
        connector=connector,
        external_id=external_id,
        outcome=Outcome(outcome),
        complaint_id=complaint_id,
        ticket=ticket,
        raw_id=raw_id,
        error=error,
    )


# -- the child's side ------------------------------------------------------------------------


def _child_main(conn: Connection, config: Config, secrets: list[str]) -> None:
    from omnichannel.logs import configure_logging

    configure_logging(secrets=secrets)
    with _Store(config) as store:
        _serve(conn, store)


class _Store:
    """The child's ``Inbox``, opened on first use and again after the store was unavailable."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._inbox: Any = None

    def receive_many(self, raws: list[RawMessage]) -> list[ReceiveResult]:
        if self._inbox is None:
            from omnichannel.inbox import Inbox

            self._inbox = Inbox(self._config)  # StorageUnavailable when the store is down
        results: list[ReceiveResult] = self._inbox.receive_many(raws)
        return results

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._inbox is not None:
            self._inbox.close()


def _serve(conn: Connection, store: _Store) -> None:
    """File what arrives, every waiting request at once, until the parent says stop (``None``)
    or goes away."""
    stopping = False
    while not stopping:
        try:
            first = conn.recv()
        except (EOFError, OSError):
            return
        if first is None:
            return
        batch: list[tuple[int, list[_RawFields]]] = [first]
        size = len(first[1])
        try:
            while size < MAX_BATCH and conn.poll(0):
                more = conn.recv()
                if more is None:
                    stopping = True  # after this batch
                    break
                batch.append(more)
                size += len(more[1])
        except (EOFError, OSError):
            stopping = True
        try:
            for answer in _file(store, batch):
                conn.send(answer)
        except OSError:
            return  # the parent is gone; what was committed stays committed


def _file(store: _Store, batch: list[tuple[int, list[_RawFields]]]) -> list[tuple[int, str, Any]]:
    raws = [_raw(fields) for _, job_raws in batch for fields in job_raws]
    try:
        results = store.receive_many(raws)
    except StorageUnavailable as exc:
        return [(job, "unavailable", str(exc)) for job, _ in batch]
    except Exception as exc:
        log.exception("filing failed (pid %s)", os.getpid())
        return [(job, "error", type(exc).__name__) for job, _ in batch]
    answers, start = [], 0
    for job, job_raws in batch:
        mine = results[start : start + len(job_raws)]
        answers.append((job, "ok", [_result_fields(result) for result in mine]))
        start += len(job_raws)
    return answers
