"""Errors, grouped by what the daemon does about them.

::

    OmnichannelError
    ├── ConfigError            bad configuration: report every problem, exit non-zero (2)
    ├── StorageUnavailable     the database cannot be reached: answer 503, retry later
    ├── ConnectorError         raised by a connector's I/O
    │   ├── RetryableError     back off and try again; the cursor is kept (``retry_after``)
    │   ├── FatalError         disable this connector, report it, keep the others running
    │   ├── SkippableError     this one input is bad: quarantine it and move on
    │   │   └── DecodeError    a payload could not be decoded
    │   │       ├── FieldError         (normalizer.web) one form field is wrong: HTTP 400
    │   │       └── UnstorableValue    (omnichannel.values) a value no column can hold
    │   └── Undeliverable      this one outgoing delivery is refused for good: mark it dead
    ├── WebhookRejected        a request refused before storage: its HTTP status (403, 413, ...)
    ├── UnknownConnector       a connector name or type nobody registered (with suggestions)
    ├── QueueError             a queue operation that cannot be done (no such complaint, state)
    └── DedupeError            an operator's merge, split or link that cannot be done

A connector maps its library's errors onto this tree in one place: HTTP 429, 5xx, timeouts and
refused connections are ``RetryableError``; 401 and 403 (bad credentials) ``FatalError``; a
payload it cannot read ``DecodeError``. The daemon, the CLI and the HTTP app act on the class
alone; an operator sees the message, which never holds a secret.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "ConfigError",
    "ConnectorError",
    "DecodeError",
    "DedupeError",
    "FatalError",
    "OmnichannelError",
    "QueueError",
    "RetryableError",
    "SkippableError",
    "StorageUnavailable",
    "Undeliverable",
    "UnknownConnector",
    "WebhookRejected",
]


class OmnichannelError(Exception):
    """Base of every error this library raises on purpose."""


class ConfigError(OmnichannelError):
    """The configuration has problems; ``problems`` lists each as ``key.path: what``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StorageUnavailable(OmnichannelError):
    """The store cannot be reached or written; nothing was acknowledged."""


class ConnectorError(OmnichannelError):
    """An error in a connector's I/O."""


class RetryableError(ConnectorError):
    """Temporary: back off and retry, keep the cursor where it was. ``retry_after`` is the
    wait in seconds the far side asked for (HTTP ``Retry-After``), when it did."""

    def __init__(self, message: str = "", *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class FatalError(ConnectorError):
    """Permanent for this connector (bad credentials, misconfiguration): disable it."""


class SkippableError(ConnectorError):
    """One input cannot be used: quarantine it and carry on with the next."""


class DecodeError(SkippableError):
    """A raw payload could not be decoded into an InboundMessage."""


class Undeliverable(ConnectorError):
    """An outgoing delivery the far side refused for good (an invalid recipient, an HTTP 4xx
    other than 408/429): the outbox marks it dead at once instead of retrying."""


class UnknownConnector(OmnichannelError, LookupError):
    """No connector with that name or type; ``known`` lists what exists."""

    def __init__(self, what: str, name: str, known: Sequence[str]) -> None:
        import difflib

        self.name = name
        self.known = sorted(known)
        close = difflib.get_close_matches(name, self.known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(self.known) or "none"
        super().__init__(f"unknown connector {what} {name!r} (known: {listing}){hint}")


class WebhookRejected(OmnichannelError):
    """A request refused before storage: an HTTP error, not an outcome."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.field = status, reason, field


class QueueError(OmnichannelError):
    """A queue operation that cannot be done: no such complaint, or not from its state."""


class DedupeError(OmnichannelError):
    """An operator's merge, split or link that cannot be done (no such complaint, message or
    identity; a complaint merged into itself; a split that would leave it empty)."""
