"""Group commit: concurrent submitters share batches and each gets exactly its own results."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from omnichannel import Inbox, Outcome, RawMessage, ReceiveResult
from omnichannel.groupcommit import GroupCommit
from tests.helpers import raw_json


def test_concurrent_submitters_get_their_own_results_in_shared_batches(sqlite_inbox: Inbox) -> None:
    """Forty threads submitting at once: every one gets its own outcome; batches are shared."""
    sizes: list[int] = []

    def receive(raws: Sequence[RawMessage]) -> list[ReceiveResult]:
        sizes.append(len(raws))
        return sqlite_inbox.receive_many(raws)

    group = GroupCommit(receive, max_batch=8)
    results: dict[int, list[ReceiveResult]] = {}
    start = threading.Barrier(40)

    def worker(i: int) -> None:
        start.wait()
        results[i] = group.submit([raw_json(f"g{i}", text=f"Keluhan {i} tentang izin.")])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results) == list(range(40))
    assert all(
        r[0].external_id == f"g{i}" and r[0].outcome is Outcome.NEW for i, r in results.items()
    )
    assert sum(sizes) == 40 and max(sizes) <= 8 and len(sizes) < 40


def test_an_error_reaches_every_request_of_its_group() -> None:
    """When storing the group fails, each submitter of that group gets the error."""

    def failing(raws: Sequence[RawMessage]) -> list[ReceiveResult]:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        GroupCommit(failing).submit([raw_json("x")])
