"""omnichannel: public complaints from every channel, in one deduplicated stream and queue.

Import from here; the submodules are implementation details unless documented. Documented
public modules, for those who build on it: ``omnichannel.webhook`` (webhook connectors'
helpers: ``same_secret``, ``json_response``, ``signing_key``, ``standard_signature``,
``http_url``), ``omnichannel.outbound`` (``Outbound``, ``Sent`` and the ``Sender`` protocol of
a connector that answers citizens), ``omnichannel.http`` (``create_app``, the WSGI app) and
``omnichannel.testing`` (the contract kit, a pytest plugin).

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
    from omnichannel.connector import (
        Batch,
        Connector,
        ConnectorContext,
        ConnectorProtocol,
        Media,
        NoOptions,
        PollingConnector,
        PollingProtocol,
    )
    from omnichannel.errors import (
        ConfigError,
        ConnectorError,
        DecodeError,
        DedupeError,
        FatalError,
        OmnichannelError,
        QueueError,
        RetryableError,
        SkippableError,
        StorageUnavailable,
        Undeliverable,
        UnknownConnector,
        WebhookRejected,
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
    from omnichannel.webhook import (
        WebhookConnector,
        WebhookProtocol,
        WebhookRequest,
        WebhookResponse,
    )

_WHERE = {
    "omnichannel.config": ("Config", "load_config"),
    "omnichannel.connector": (
        "Batch",
        "Connector",
        "ConnectorContext",
        "ConnectorProtocol",
        "Media",
        "NoOptions",
        "PollingConnector",
        "PollingProtocol",
    ),
    "omnichannel.errors": (
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
    "omnichannel.webhook": (
        "WebhookConnector",
        "WebhookProtocol",
        "WebhookRequest",
        "WebhookResponse",
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
    "ConnectorProtocol",
    "DecodeError",
    "DedupeError",
    "FatalError",
    "InboundMessage",
    "Inbox",
    "Location",
    "Media",
    "Message",
    "NoOptions",
    "NormalizedMessage",
    "OmnichannelError",
    "Outcome",
    "PollingConnector",
    "PollingProtocol",
    "QueueError",
    "RawMessage",
    "ReceiveResult",
    "RetryableError",
    "Sender",
    "SkippableError",
    "StorageUnavailable",
    "Undeliverable",
    "UnknownConnector",
    "WebhookConnector",
    "WebhookProtocol",
    "WebhookRejected",
    "WebhookRequest",
    "WebhookResponse",
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
