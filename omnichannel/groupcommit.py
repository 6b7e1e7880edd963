"""Group commit: concurrent webhook requests share their transactions.

Each request thread hands its raw messages in and waits. One thread at a time leads: it takes
everything waiting, stores and files it with one ``receive_many`` (one transaction for the
whole group instead of one per request), gives every waiting request its own results, and the
next waiting thread leads the next group. A request is answered only after the group that
holds its messages is committed; if that fails, every request of the group gets the error.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from omnichannel.schema import RawMessage, ReceiveResult

__all__ = ["GroupCommit"]

Receive = Callable[[Sequence[RawMessage]], list[ReceiveResult]]


@dataclass
class _Job:
    raws: Sequence[RawMessage]
    results: list[ReceiveResult] = field(default_factory=list)
    error: BaseException | None = None
    finished: bool = False


class GroupCommit:
    """Funnel concurrent ``receive_many`` calls into shared batches of at most ``max_batch``."""

    def __init__(self, receive: Receive, *, max_batch: int = 200) -> None:
        self._receive = receive
        self._max_batch = max_batch
        self._cond = threading.Condition()
        self._pending: list[_Job] = []
        self._busy = False

    def submit(self, raws: Sequence[RawMessage]) -> list[ReceiveResult]:
        """Store and file ``raws`` (possibly together with other threads'); their results."""
        job = _Job(raws)
        with self._cond:
            self._pending.append(job)
        while True:
            with self._cond:
                while self._busy and not job.finished:
                    self._cond.wait()
                if job.finished:
                    break
                self._busy = True  # lead: the group may not reach this job if it is full
                group = self._take()
            self._run(group)
        if job.error is not None:
            raise job.error
        return job.results

    def _take(self) -> list[_Job]:
        group: list[_Job] = []
        size = 0
        while self._pending and (not group or size + len(self._pending[0].raws) <= self._max_batch):
            job = self._pending.pop(0)
            group.append(job)
            size += len(job.raws)
        return group

    def _run(self, group: list[_Job]) -> None:
        try:
            results = self._receive([raw for job in group for raw in job.raws])
            start = 0
            for job in group:
                job.results = results[start : start + len(job.raws)]
                start += len(job.raws)
        except BaseException as exc:  # every request of the group learns what happened
            for job in group:
                job.error = exc
        finally:
            with self._cond:
                for job in group:
                    job.finished = True
                self._busy = False
                self._cond.notify_all()
