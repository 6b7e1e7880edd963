"""omnichannel: public complaints from every channel, in one deduplicated stream and queue.

Import from here; the submodules are implementation details unless documented.

>>> from omnichannel import Inbox
>>> inbox = Inbox.from_config("omnichannel.toml")          # doctest: +SKIP

Names are imported on first use (PEP 562), so ``import omnichannel.errors`` or the pure
``normalizer`` package does not pull in the store, the pipeline and their dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnichannel.config import Config, load_config
    from omnichannel.connector import Batch, Connector, ConnectorContext, PollingConnector
    from omnichannel.errors import (
        ConfigError,
        ConnectorError,
        DecodeError,
        FatalError,
        OmnichannelError,
        RetryableError,
        SkippableError,
        StorageUnavailable,
        UnknownConnector,
    )
    from omnichannel.inbox import Inbox
    from omnichannel.schema import (
        Attachment,
        AttachmentInfo,
        Complaint,
        InboundMessage,
        Location,
        Message,
        NormalizedMessage,
        Outcome,
        RawMessage,
        ReceiveResult,
        Sender,
    )

_WHERE = {
    "omnichannel.config": ("Config", "load_config"),
    "omnichannel.connector": ("Batch", "Connector", "ConnectorContext", "PollingConnector"),
    "omnichannel.errors": (
        "ConfigError",
        "ConnectorError",
        "DecodeError",
        "FatalError",
        "OmnichannelError",
        "RetryableError",
        "SkippableError",
        "StorageUnavailable",
        "UnknownConnector",
    ),
    "omnichannel.inbox": ("Inbox",),
    "omnichannel.schema": (
        "Attachment",
        "AttachmentInfo",
        "Complaint",
        "InboundMessage",
        "Location",
        "Message",
        "NormalizedMessage",
        "Outcome",
        "RawMessage",
        "ReceiveResult",
        "Sender",
    ),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "Attachment",
    "AttachmentInfo",
    "Batch",
    "Complaint",
    "Config",
    "ConfigError",
    "Connector",
    "ConnectorContext",
    "ConnectorError",
    "DecodeError",
    "FatalError",
    "InboundMessage",
    "Inbox",
    "Location",
    "Message",
    "NormalizedMessage",
    "OmnichannelError",
    "Outcome",
    "PollingConnector",
    "RawMessage",
    "ReceiveResult",
    "RetryableError",
    "Sender",
    "SkippableError",
    "StorageUnavailable",
    "UnknownConnector",
    "load_config",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'omnichannel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
