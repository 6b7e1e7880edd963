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
dead child is started again on the next request; after one that ended before it was ready,
only once ``restart_delay`` has passed (doubling while that repeats). The child is started
with ``spawn`` (a fresh interpreter), so starting it again from a server full of threads is
safe. It builds its own ``Inbox`` from the same configuration, so it decodes with the
configured connectors only (not with connectors added to the server's inbox in code).

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
import pickle
import select
import struct
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from typing import Any

from omnichannel.config import Config
from omnichannel.errors import StorageUnavailable
from omnichannel.schema import Outcome, RawMessage, ReceiveResult

__all__ = ["FilingProcess"]

log = logging.getLogger("omnichannel.filer")

MAX_BATCH = 200
"""At most this many raw messages per transaction in the child."""


class _Waiting:
    """One request waiting for its answer: a lock held until the answer is delivered (the
    cheapest hand-over between threads that CPython has)."""

    __slots__ = ("answer", "signal")

    def __init__(self) -> None:
        self.answer: tuple[str, Any] | None = None
        self.signal = threading.Lock()
        self.signal.acquire()

    def deliver(self, kind: str, payload: Any) -> None:
        """Called once, by whoever took this entry out of ``_waiting``."""
        self.answer = (kind, payload)
        self.signal.release()

    def wait(self, timeout: float) -> bool:
        """Until delivered, or ``timeout`` seconds (-1: no limit)."""
        return self.signal.acquire(timeout=timeout if timeout == -1 else max(timeout, 0.0))


class FilingProcess:
    """A child process that stores and files for many threads (``receive_many``, thread-safe).

    >>> filer = FilingProcess(config)                               # doctest: +SKIP
    >>> inbox.delegate_filing(filer.receive_many)                    # doctest: +SKIP
    """

    def __init__(
        self,
        config: Config,
        *,
        secrets: Sequence[str] = (),
        timeout: float = 60.0,
        restart_delay: float = 1.0,
        max_restart_delay: float = 60.0,
    ) -> None:
        """``secrets``: what the child's log lines must never show (connector credentials);
        ``timeout``: how long a request waits for its results (sending included);
        ``restart_delay``: after a child that ended before it was ready, how long until the
        next is started (every start costs a fresh interpreter); it doubles with each such
        child in a row, up to ``max_restart_delay``. A child that was ready is replaced at
        once."""
        self._config = config
        self._secrets = list(secrets)
        self._timeout = timeout
        self._context = multiprocessing.get_context("spawn")
        self._lock = threading.Lock()  # guards the child's life and _waiting
        self._waiting: dict[int, _Waiting] = {}
        self._ids = itertools.count(1)
        self._child: _Child | None = None
        self._closed = False
        self._starts = 0
        self._ended: tuple[str, Any] | None = None  # why the last child ended, and its process
        self._restart_delay, self._max_restart_delay = restart_delay, max_restart_delay
        self._failed_starts = 0  # children in a row that ended before they were ready
        self._not_before = 0.0  # time.monotonic() before which no child is started

    @property
    def pid(self) -> int | None:
        """The child's process id, while it runs."""
        child = self._child
        return child.pid if child is not None and child.process.is_alive() else None

    def start(self, *, wait: float = 60.0) -> None:
        """Start the child now (otherwise the first request does), and wait up to ``wait``
        seconds until it has opened the store (or found it unavailable) and reads requests.

        Raises StorageUnavailable when the child exits instead (it could not start at all),
        and while the delay after such a child runs (``restart_delay``): none is started then."""
        with self._lock:
            child = self._ensure_started()
        child.ready.wait(wait)
        if child.gone:
            self._ended = ("the filing process exited on start", child.process)
            raise StorageUnavailable(f"storage unavailable ({self._last_exit()})")

    def status(self, *, wait: float = 10.0) -> dict[str, Any]:
        """What ``/healthz`` says of filing: whether the child runs, its pid, how many times it
        was started again, and why the last one ended. A child that is not running is started
        first (waiting up to ``wait`` seconds), as the next request would start it: not while
        the delay after a child that ended on start runs."""
        if self.pid is None:
            with contextlib.suppress(StorageUnavailable):  # stopping, or it exited on start
                self.start(wait=wait)
        pid = self.pid
        return {
            "mode": "process",
            "running": pid is not None,
            "pid": pid,
            "restarts": max(self._starts - 1, 0),
            "last_exit": self._last_exit(),
        }

    def _last_exit(self) -> str | None:
        """Why the last child ended, with its exit code (read now: the reader reaps it after
        the pipe closed, so it is known by now where it was not yet when the pipe closed)."""
        if self._ended is None:
            return None
        reason, process = self._ended
        return f"{reason} (pid {process.pid}, exit code {process.exitcode})"

    def receive_many(self, raws: Sequence[RawMessage]) -> list[ReceiveResult]:
        """Store and file ``raws`` in the child; their results, once committed."""
        deadline = time.monotonic() + self._timeout
        waiting, job = _Waiting(), next(self._ids)
        frame = pickle.dumps((job, [_raw_fields(raw) for raw in raws]), pickle.HIGHEST_PROTOCOL)
        with self._lock:
            child = self._child or self._ensure_started()  # raises once the server is stopping
            self._waiting[job] = waiting
        try:
            child.send(frame, deadline)
        except TimeoutError:
            self._give_up(child, job, "the filing process does not read what it is sent")
        except (OSError, ValueError):
            self._give_up(child, job, "cannot reach the filing process")
        if not waiting.wait(deadline - time.monotonic()):
            with self._lock:
                mine = self._waiting.pop(job, None) is not None
            if mine:
                raise StorageUnavailable(
                    "storage unavailable (no answer from the filing process"
                    f" in {self._timeout:g} s)"
                )
            waiting.wait(-1)  # answered just now: whoever took it delivers it at once
        assert waiting.answer is not None
        kind, payload = waiting.answer
        if kind == "ok":
            return [_result(*fields) for fields in payload]
        if kind == "unavailable":
            raise StorageUnavailable(payload)
        if kind == "lost":
            raise StorageUnavailable(f"storage unavailable ({payload})")
        raise RuntimeError(f"filing failed in the filing process: {payload}")

    def close(self) -> None:
        """Stop the child: it files what was sent to it, then exits."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is None:
            return
        with contextlib.suppress(OSError):  # TimeoutError included: it is hung, and killed
            child.send(_STOP, time.monotonic() + 30)
        child.process.join(timeout=30)
        if child.process.is_alive():
            child.process.kill()
            child.process.join()
        if child.reader is not None:
            child.reader.join(timeout=30)  # it hands out the answers the child sent, then ends
        with self._lock:  # anything still waiting has no child left to answer it
            for waiting in self._waiting.values():
                waiting.deliver("lost", "the server is stopping")
            self._waiting.clear()

    # -- the parent's side -------------------------------------------------------------------

    def _ensure_started(self) -> _Child:
        """Called with the lock held: a running child, started if needed."""
        child = self._child
        if child is not None and child.process.is_alive():
            return child
        if self._closed:
            raise StorageUnavailable("storage unavailable (the server is stopping)")
        if child is not None:
            self._lost(child, _exit_reason(child))
        delay = self._not_before - time.monotonic()
        if delay > 0:
            raise StorageUnavailable(
                f"storage unavailable ({self._last_exit()}; next start in {delay:.1f} s)"
            )
        requests_theirs, requests_ours = self._context.Pipe(duplex=False)
        answers_ours, answers_theirs = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=_child_main,
            args=(requests_theirs, answers_theirs, self._config, self._secrets),
            name="omnichannel-filer",
            daemon=True,
        )
        process.start()
        requests_theirs.close()
        answers_theirs.close()
        child = self._child = _Child(process, requests_ours, answers_ours)
        child.reader = threading.Thread(
            target=self._read, args=(child,), name="omnichannel-filer-reader", daemon=True
        )
        child.reader.start()
        self._starts += 1
        log.info("filing process started (pid %s)", process.pid)
        return child

    def _read(self, child: _Child) -> None:
        """Hand each answer to the request waiting for it, until the child's pipe closes."""
        while True:
            try:
                answers = pickle.loads(_read_frame(child.answers.fileno()))
            except (EOFError, OSError):
                with self._lock:
                    if self._child is child:
                        self._lost(child, _exit_reason(child))
                child.close()
                child.reap()
                child.gone = True
                child.ready.set()  # whoever waits for it to start waits no longer
                return
            child.ready.set()
            with self._lock:
                found = [(self._waiting.pop(job, None), kind, data) for job, kind, data in answers]
            for waiting, kind, data in found:
                if waiting is not None:  # else its request timed out
                    waiting.deliver(kind, data)

    def _give_up(self, child: _Child, job: int, reason: str) -> None:
        """A send failed or stalled part-way: the pipe is of no more use, the child goes."""
        with self._lock:
            if self._child is child:
                self._lost(child, reason)
            waiting = self._waiting.pop(job, None)
        if waiting is not None:
            waiting.deliver("lost", reason)

    def _lost(self, child: _Child, reason: str) -> None:
        """Called with the lock held: fail every waiting request; the next one restarts."""
        for waiting in self._waiting.values():
            waiting.deliver("lost", reason)
        self._waiting.clear()
        if self._child is child:
            self._child = None
        if child.process.is_alive():
            child.process.kill()  # its reader sees the pipe close, and closes our ends
        self._ended = (reason, child.process)
        later = ""
        if child.ready.is_set():
            self._failed_starts = 0
        else:  # it never got going: starting the next one at once would likely do no better
            self._failed_starts += 1
            delay = min(
                self._restart_delay * 2 ** (self._failed_starts - 1), self._max_restart_delay
            )
            self._not_before = time.monotonic() + delay
            later = f"; next start in {delay:g} s at the earliest"
        log.warning("%s (pid %s, exit code %s)%s", reason, child.pid, child.process.exitcode, later)


def _exit_reason(child: _Child) -> str:
    return "the filing process exited" + ("" if child.ready.is_set() else " on start")


# -- frames: a length, then a pickle; the Connection objects only carry the pipes' ends --------

_STOP = pickle.dumps(None)
_HEADER = struct.Struct("!Q")


def _read_exactly(fd: int, size: int) -> bytes:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_frame(fd: int) -> bytes:
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    return _read_exactly(fd, size)


def _write_frame(fd: int, frame: bytes, deadline: float | None = None) -> None:
    """Write one frame. To a non-blocking pipe, by ``deadline`` or TimeoutError (a frame cut
    short leaves the pipe unusable); a blocking pipe's writes simply wait."""
    data = memoryview(_HEADER.pack(len(frame)) + frame)
    poller: select.poll | None = None
    while data:
        try:
            data = data[os.write(fd, data) :]
            continue
        except BlockingIOError:
            pass
        remaining = (deadline or 0.0) - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        if poller is None:
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
        poller.poll(remaining * 1000)


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


class _Child:
    """One child process and the two pipes to it: requests go down one, answers come up the
    other. The parent's end of the request pipe does not block, so that a child that stops
    reading costs a request its ``timeout``, not a thread for good."""

    def __init__(self, process: Any, requests: Connection, answers: Connection) -> None:
        self.process, self.requests, self.answers = process, requests, answers
        self._sending = threading.Lock()
        self._closed = False
        self.ready = threading.Event()  # set by the reader at the child's first (empty) answer
        self.gone = False  # set by the reader once the child's pipe closed
        self.reader: threading.Thread | None = None
        os.set_blocking(requests.fileno(), False)

    @property
    def pid(self) -> int:
        return int(self.process.pid)

    def send(self, frame: bytes, deadline: float) -> None:
        """Write one frame by ``deadline``, or raise TimeoutError; a frame cut short leaves the
        pipe unusable (the caller gives the child up)."""
        if not self._sending.acquire(timeout=max(deadline - time.monotonic(), 0.0)):
            raise TimeoutError
        try:
            if self._closed:
                raise OSError("the pipe to the filing process is closed")
            _write_frame(self.requests.fileno(), frame, deadline)
        finally:
            self._sending.release()

    def reap(self) -> None:
        """Wait for the child's exit (it closed its pipe, or was killed), so no zombie stays."""
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()

    def close(self) -> None:
        """Close our ends (by the reader, once the child is gone: no sender is left writing)."""
        with self._sending:
            self._closed = True
            self.requests.close()
        self.answers.close()


# -- what crosses the pipe: plain tuples (pickling a pydantic model costs several times more) -

_RawFields = tuple[str, str, int, str, bytes, dict[str, Any]]
_ResultFields = tuple[str, str, str, int | None, str | None, int | None, str | None]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _raw_fields(raw: RawMessage) -> _RawFields:
    # the time as whole microseconds since the epoch: exact, and pickled in a fraction of
    # what an aware datetime costs (its timezone goes through copyreg)
    return (
        raw.connector,
        raw.external_id,
        (raw.received_at - _EPOCH) // _MICROSECOND,
        raw.content_type,
        raw.payload,
        raw.meta,
    )


def _raw(fields: _RawFields) -> RawMessage:
    connector, external_id, received_at, content_type, payload, meta = fields
    return RawMessage.model_construct(  # validated in the server process already
        connector=connector,
        external_id=external_id,
        received_at=_EPOCH + received_at * _MICROSECOND,
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


def _child_main(
    requests: Connection, answers: Connection, config: Config, secrets: list[str]
) -> None:
    from omnichannel.logs import configure_logging

    configure_logging(secrets=secrets)
    with _Store(config) as store:
        with contextlib.suppress(StorageUnavailable):
            store.open()  # now rather than at the first request; it is tried again then
        try:
            _write_frame(answers.fileno(), pickle.dumps([]))  # ready
        except OSError:
            return
        _serve(requests.fileno(), answers.fileno(), store)


class _Store:
    """The child's ``Inbox``, opened on first use and again after the store was unavailable."""

    def __init__(self, config: Config) -> None:
        self._config = config
        self._inbox: Any = None

    def open(self) -> Any:
        if self._inbox is None:
            from omnichannel.inbox import Inbox

            self._inbox = Inbox(self._config)  # StorageUnavailable when the store is down
        return self._inbox

    def receive_many(self, raws: list[RawMessage]) -> list[ReceiveResult]:
        results: list[ReceiveResult] = self.open().receive_many(raws)
        return results

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._inbox is not None:
            self._inbox.close()


def _serve(requests: int, answers: int, store: _Store) -> None:
    """File what arrives, every waiting request at once, one answer frame per transaction,
    until the parent says stop (``None``) or goes away."""
    stopping = False
    while not stopping:
        try:
            first = pickle.loads(_read_frame(requests))
        except (EOFError, OSError):
            return
        if first is None:
            return
        batch: list[tuple[int, list[_RawFields]]] = [first]
        size = len(first[1])
        try:
            while size < MAX_BATCH and _readable(requests):
                more = pickle.loads(_read_frame(requests))
                if more is None:
                    stopping = True  # after this batch
                    break
                batch.append(more)
                size += len(more[1])
        except (EOFError, OSError):
            stopping = True
        try:
            _write_frame(answers, pickle.dumps(_file(store, batch), pickle.HIGHEST_PROTOCOL))
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
