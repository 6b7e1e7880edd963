"""Group commit: concurrent webhook requests share their transactions.

Each request thread hands its items in and waits. One thread at a time leads: it takes
everything waiting, stores and files it with one call (one transaction for the whole group
instead of one per request), gives every request of the group its own results, and passes the
lead to the oldest request still waiting. A request is answered only after the group that holds
its items is committed; if that fails, every request of the group gets the error.

Each waiting thread sleeps on its own event and is woken exactly once: when its results are in,
or when it is handed the lead. (Waking every waiter after every group costs a GIL hand-off per
waiter, most of which only go back to sleep.)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Job(Generic[T, R]):
    items: Sequence[T]
    results: list[R] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False
    wake: threading.Event = field(default_factory=threading.Event)


class GroupCommit(Generic[T, R]):
    """Funnel concurrent ``receive(items)`` calls into shared batches of at most ``max_batch``.

    ``receive`` returns one result per item, in order.
    """

    def __init__(self, receive: Callable[[Sequence[T]], list[R]], *, max_batch: int = 200) -> None:
        self._receive = receive
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._pending: deque[_Job[T, R]] = deque()
        self._busy = False  # a thread is leading

    def submit(self, items: Sequence[T]) -> list[R]:
        """Store and file ``items`` (possibly together with other threads'); their results."""
        job: _Job[T, R] = _Job(items)
        with self._lock:
            self._pending.append(job)
            lead, self._busy = not self._busy, True
        if not lead:
            job.wake.wait()  # results in, or the lead handed over
        while not job.finished:
            with self._lock:
                group = self._take()
            self._run(group, job)
            with self._lock:
                if job.finished:
                    self._hand_over()
        if job.error is not None:
            raise job.error
        return job.results

    def _take(self) -> list[_Job[T, R]]:
        group: list[_Job[T, R]] = []
        size = 0
        pending = self._pending
        while pending and (not group or size + len(pending[0].items) <= self._max_batch):
            job = pending.popleft()
            group.append(job)
            size += len(job.items)
        return group

    def _hand_over(self) -> None:
        """Called with the lock held by a leader whose own job is done."""
        if self._pending:
            self._pending[0].wake.set()  # the oldest waiter leads the next group
        else:
            self._busy = False

    def _run(self, group: list[_Job[T, R]], leader: _Job[T, R]) -> None:
        try:
            results = self._receive([item for job in group for item in job.items])
            start = 0
            for job in group:
                job.results = results[start : start + len(job.items)]
                start += len(job.items)
        except BaseException as exc:  # every request of the group learns what happened
            for job in group:
                job.error = exc
        for job in group:
            job.finished = True
            if job is not leader:
                job.wake.set()
