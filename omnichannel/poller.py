"""Running pollers: once, or continuously (one thread per connector) until told to stop.

Each connector polls, then waits (IMAP IDLE, or its ``poll_interval``) and polls again. Its
failures are retried with tenacity: a retryable error (the network, the store) after a short
exponential backoff with jitter (1 s doubling to 5 minutes); a fatal one (bad credentials, a
missing folder) is reported and retried slowly (a minute doubling to an hour), while the other
connectors run on. On PostgreSQL a connector is polled by one replica at a time: the one that
holds its lease (:mod:`omnichannel.leases`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import tenacity

from omnichannel.connector import PollingConnector
from omnichannel.errors import ConnectorError, FatalError, RetryableError, StorageUnavailable
from omnichannel.inbox import Inbox
from omnichannel.leases import LEASE_RETRY, Lease
from omnichannel.schema import ReceiveResult

__all__ = ["ConnectorStatus", "poll_once", "run_pollers"]

log = logging.getLogger("omnichannel.poller")
Report = Callable[[str, list[ReceiveResult]], None]
RETRYABLE = tenacity.wait_random_exponential(multiplier=1, max=300)
FATAL = tenacity.wait_exponential(multiplier=60, max=3600)


@dataclass
class ConnectorStatus:
    """How a connector's polling went (what ``poll`` reports, and /healthz through the inbox)."""

    name: str
    last_success: datetime | None = None
    last_error: str | None = None
    failed: bool = False
    outcomes: Counter[str] = field(default_factory=Counter)


def _poll(inbox: Inbox, status: ConnectorStatus, since: date | None, report: Report | None) -> None:
    """One poll; its error is recorded and raised again."""

    def on_batch(results: list[ReceiveResult]) -> None:
        status.outcomes.update(r.outcome.value for r in results)
        if report is not None:
            report(status.name, results)

    try:
        inbox.poll(status.name, since=since, on_batch=on_batch)
    except FatalError as exc:
        status.failed, status.last_error = True, str(exc)
        inbox.record_health(status.name, str(exc), failed=True)
        log.error("connector %s failed: %s (retried slowly)", status.name, exc)
        raise
    except (ConnectorError, StorageUnavailable) as exc:
        status.last_error = str(exc)
        inbox.record_health(status.name, str(exc))
        log.warning("connector %s: %s (will retry)", status.name, exc)
        raise
    status.last_success, status.last_error, status.failed = datetime.now(UTC), None, False
    inbox.record_health(status.name)


def _poll_unless_stopping(
    inbox: Inbox, status: ConnectorStatus, stop: threading.Event, report: Report | None
) -> None:
    if not stop.is_set():
        _poll(inbox, status, None, report)


def poll_once(
    inbox: Inbox, names: Sequence[str], *, since: date | None = None, report: Report | None = None
) -> list[ConnectorStatus]:
    """Poll each named connector once; a failing connector does not stop the others."""
    statuses = [ConnectorStatus(name) for name in names]
    for status in statuses:
        try:
            _poll(inbox, status, since, report)
        except (ConnectorError, StorageUnavailable):
            status.failed = True
    return statuses


def _wait(state: tenacity.RetryCallState) -> float:
    """The backoff for the error; a longer wait the source asked for (``Retry-After``) wins."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, FatalError):
        return float(FATAL(state))
    asked = error.retry_after if isinstance(error, RetryableError) else None
    return max(float(RETRYABLE(state)), min(float(asked or 0), 3600.0))


def _retrying(stop: threading.Event) -> tenacity.Retrying:
    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type((ConnectorError, StorageUnavailable)),
        wait=_wait,
        stop=tenacity.stop_when_event_set(stop),
        sleep=lambda seconds: _sleep(stop, seconds),
        reraise=True,
    )


def _sleep(stop: threading.Event, seconds: float) -> None:
    stop.wait(seconds)


def _loop(
    inbox: Inbox, status: ConnectorStatus, stop: threading.Event, report: Report | None
) -> None:
    connector = inbox.connector(status.name)
    assert isinstance(connector, PollingConnector)
    lease = Lease(inbox.store, status.name)
    try:
        while not stop.is_set():
            if not lease.hold():  # another replica polls it
                stop.wait(LEASE_RETRY)
                continue
            try:
                _retrying(stop)(_poll_unless_stopping, inbox, status, stop, report)
            except (ConnectorError, StorageUnavailable):
                return  # only when stopping
            connector.wait(connector.interval(), stop)
    finally:
        lease.release()


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
