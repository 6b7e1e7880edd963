"""The small base classes every connector builds on.

A connector does I/O and nothing else: it turns what a channel delivers into
:class:`~omnichannel.schema.RawMessage` s (``fetch`` for pollers, ``receive`` for webhooks),
decodes a stored raw message with a pure function from ``normalizer``, and acknowledges after
the core has committed (``ack``).  The core owns cursors, dedupe and storage.

Metadata is declared as class attributes: ``type`` (the entry-point name), ``channel`` (the
default channel of its messages) and ``Options`` (a pydantic model of its configuration;
``SecretStr`` fields are secrets, never shown). The classes are generic in their options model,
so that ``self.options`` has the connector's own type under strict mypy::

    class TelegramOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        token: SecretStr

    class TelegramConnector(PollingConnector[TelegramOptions]):
        type, channel, Options = "telegram", "telegram", TelegramOptions

        def fetch(self, cursor, *, since=None): ...   # self.options.token is a SecretStr

:class:`ConnectorProtocol`, :class:`PollingProtocol` and the webhook's ``WebhookProtocol``
(``omnichannel.webhook``) say the same as typing protocols, for code that takes any connector.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, ClassVar, Generic, Protocol, Self, runtime_checkable
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, SecretStr
from typing_extensions import TypeVar

from omnichannel.schema import InboundMessage, RawMessage

__all__ = [
    "Batch",
    "Connector",
    "ConnectorContext",
    "ConnectorProtocol",
    "Media",
    "NoOptions",
    "OptionsT",
    "PollingConnector",
    "PollingProtocol",
]


class NoOptions(BaseModel):
    """Options of a connector that takes none."""

    model_config = ConfigDict(extra="forbid")


OptionsModel = type[BaseModel]
OptionsT = TypeVar("OptionsT", bound=BaseModel, default=BaseModel, covariant=True)
"""The options model of a connector class (``Connector[MyOptions]``)."""


@dataclass(frozen=True)
class ConnectorContext:
    """What a connector may know of the deployment around it."""

    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Makassar"))
    region: str = "ID"
    public_url: str | None = None
    """How providers reach us (``server.public_url``): signature URLs are rebuilt from it."""


@dataclass(frozen=True)
class Media:
    """A downloaded attachment."""

    content: bytes
    content_type: str | None = None


@dataclass
class Batch:
    """Raw messages fetched together, and the cursor to store once they are committed."""

    messages: list[RawMessage]
    cursor: Any = None


class Connector(Generic[OptionsT]):
    """Base of every connector: configuration, decoding, secrets."""

    Options: ClassVar[OptionsModel] = NoOptions
    type: ClassVar[str] = ""
    channel: ClassVar[str] = ""
    options: OptionsT

    def __init__(
        self, name: str, options: OptionsT | None = None, context: ConnectorContext | None = None
    ) -> None:
        self.name = name
        self.options = options if options is not None else self._default_options()
        self.context = context or ConnectorContext()

    def _default_options(self) -> OptionsT:
        """``Options()`` for a connector built without options (one whose options all have
        defaults); a missing required option is pydantic's ValidationError."""
        return self.Options()  # type: ignore[return-value]

    @classmethod
    def from_options(
        cls, name: str, options: dict[str, Any], context: ConnectorContext | None = None
    ) -> Self:
        """Build from the raw option mapping of a ``[[connectors]]`` entry (validated here);
        invalid options are a ConfigError naming each key, never repeating a value."""
        from pydantic import ValidationError

        from normalizer.jsondoc import describe_validation_error
        from omnichannel.errors import ConfigError

        try:
            validated = cls.Options.model_validate(options)
        except ValidationError as exc:
            raise ConfigError([f"{name}: {describe_validation_error(exc)}"]) from None
        return cls(name, validated, context)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def secrets(self) -> list[str]:
        """Secret option values, so that logs and errors can be scrubbed of them."""
        values = []
        for key in type(self.options).model_fields:
            value = getattr(self.options, key)
            for item in value if isinstance(value, list | tuple) else [value]:
                if isinstance(item, SecretStr) and item.get_secret_value():
                    values.append(item.get_secret_value())
        return values

    def close(self) -> None:
        """Release connections; the connector may be used again afterwards."""

    @property
    def acknowledges_inline(self) -> bool:
        """True when the webhook reply itself carries the acknowledgement (TwiML <Message>)."""
        return False

    def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        """Download an attachment this connector referenced by URL (run in the background).

        Raise RetryableError for temporary failures, SkippableError to refuse for good (a host
        that is not the provider's, a body over ``max_bytes``).
        """
        from omnichannel.errors import SkippableError

        raise SkippableError(f"connector {self.name!r} cannot download attachments")

    def check(self) -> None:
        """Try the connection (``omnichannel check --connect``); raise a ConnectorError."""

    def decode(self, raw: RawMessage) -> InboundMessage:
        """Turn a stored raw message into an InboundMessage; raise DecodeError if impossible."""
        raise NotImplementedError

    def raw_from_file(self, path: Path, payload: bytes, received_at: datetime) -> RawMessage:
        """A raw message for a payload file given to ``omnichannel ingest`` (trusted input)."""
        return RawMessage(
            connector=self.name,
            external_id="sha256:" + hashlib.sha256(payload).hexdigest(),
            received_at=received_at,
            content_type="application/octet-stream",
            payload=payload,
            meta={"file": path.name},
        )


class PollingConnector(Connector[OptionsT]):
    """A connector that fetches from a source: mailbox, gateway database, provider log."""

    poll_interval: float = 60.0

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        """Yield batches of new raw messages after ``cursor``; each carries its next cursor.

        ``since`` asks for a backfill: everything received since that day, whatever the cursor.
        The generator is resumed only after the previous batch is committed.
        """
        raise NotImplementedError

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Called after the messages are committed (flag, move, mark processed). Idempotent."""

    def wait(self, timeout: float, stop: threading.Event) -> None:
        """Block until there may be something new (or ``timeout``, or ``stop``)."""
        stop.wait(timeout)

    def polls(self) -> bool:
        """Whether this instance has anything to poll (a connector that also takes webhooks
        may be configured for webhooks only); ``poll`` and ``run`` leave it out when not."""
        return True

    def interval(self) -> float:
        """Seconds between polls."""
        return float(getattr(self.options, "poll_interval", self.poll_interval))


@runtime_checkable
class ConnectorProtocol(Protocol):
    """What the core needs of every connector (what :class:`Connector` provides)."""

    name: str
    type: ClassVar[str]
    channel: ClassVar[str]

    def decode(self, raw: RawMessage) -> InboundMessage:
        """A stored raw message as an InboundMessage, or DecodeError."""
        ...

    def secrets(self) -> list[str]:
        """Secret option values, to be kept out of logs and errors."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class PollingProtocol(ConnectorProtocol, Protocol):
    """A connector the core polls (what :class:`PollingConnector` provides)."""

    def fetch(self, cursor: Any, *, since: date | None = None) -> Iterator[Batch]:
        """Batches of raw messages after ``cursor``, each with its next cursor."""
        ...

    def ack(self, messages: Sequence[RawMessage]) -> None:
        """Called once the messages are committed."""
        ...
