"""Running pollers: once, or continuously (one thread per connector) until told to stop.

Each connector polls, then waits (IMAP IDLE, or its interval) and polls again. Retryable errors
back off and try again; a fatal error (bad credentials, missing folder) stops that connector
only and is reported; the others keep running.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from omnichannel.connector import PollingConnector
from omnichannel.errors import ConnectorError, FatalError, StorageUnavailable
from omnichannel.inbox import Inbox
from omnichannel.schema import ReceiveResult

__all__ = ["ConnectorStatus", "poll_once", "run_pollers"]

log = logging.getLogger("omnichannel.poller")
Report = Callable[[str, list[ReceiveResult]], None]


@dataclass
class ConnectorStatus:
    """How a connector is doing (also what /healthz will show)."""

    name: str
    last_success: datetime | None = None
    last_error: str | None = None
    failed: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)


def _poll(inbox: Inbox, status: ConnectorStatus, since: date | None, report: Report | None) -> None:
    def on_batch(results: list[ReceiveResult]) -> None:
        status.outcomes.update(r.outcome.value for r in results)
        if report is not None:
            report(status.name, results)

    try:
        inbox.poll(status.name, since=since, on_batch=on_batch)
    except FatalError as exc:
        status.failed, status.last_error = True, str(exc)
        inbox.record_health(status.name, str(exc), failed=True)
        log.error("connector %s disabled: %s", status.name, exc)
    except (ConnectorError, StorageUnavailable) as exc:
        status.last_error = str(exc)
        inbox.record_health(status.name, str(exc))
        log.warning("connector %s: %s (will retry)", status.name, exc)
    else:
        status.last_success, status.last_error = datetime.now(UTC), None
        inbox.record_health(status.name)


def poll_once(
    inbox: Inbox, names: Sequence[str], *, since: date | None = None, report: Report | None = None
) -> list[ConnectorStatus]:
    """Poll each named connector once; a failing connector does not stop the others."""
    statuses = [ConnectorStatus(name) for name in names]
    for status in statuses:
        _poll(inbox, status, since, report)
        if status.last_error and not status.failed:
            status.failed = True
    return statuses


def _loop(
    inbox: Inbox, status: ConnectorStatus, stop: threading.Event, report: Report | None
) -> None:
    connector = inbox.connector(status.name)
    assert isinstance(connector, PollingConnector)
    backoff = 1.0
    while not stop.is_set():
        _poll(inbox, status, None, report)
        if status.failed:
            return
        if status.last_error:
            stop.wait(backoff)
            backoff = min(backoff * 2, 300.0)
            continue
        backoff = 1.0
        connector.wait(connector.interval(), stop)


def run_pollers(
    inbox: Inbox, names: Sequence[str], stop: threading.Event, report: Report | None = None
) -> list[ConnectorStatus]:
    """Poll every named connector continuously, each in its own thread, until ``stop`` is set."""
    statuses = [ConnectorStatus(name) for name in names]
    threads = [
        threading.Thread(
            target=_loop, args=(inbox, s, stop, report), name=f"poll-{s.name}", daemon=True
        )
        for s in statuses
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.5)
    return statuses
