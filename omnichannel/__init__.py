"""omnichannel: public complaints from every channel, in one deduplicated stream and queue.

Import from here; the submodules are implementation details unless documented.

>>> from omnichannel import Inbox
>>> inbox = Inbox.from_config("omnichannel.toml")          # doctest: +SKIP
"""

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
