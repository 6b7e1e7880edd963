"""The connector test-kit, shipped for connector authors (ours and third parties').

Installed as a pytest plugin (entry point ``pytest11: omnichannel``), it gives every test suite
the ``omnichannel_inbox`` fixture: an :class:`~omnichannel.Inbox` on a fresh SQLite database.
One line in a connector's tests runs the standard checks: subclass :class:`ConnectorContract`
(decoding only), :class:`WebhookContract` or :class:`PollingContract` (both, for a connector
that does both) with the connector's type, options and table of cases.
"""

from omnichannel.testing.contract import (
    SOURCE_ERRORS,
    ConnectorContract,
    DecodeCase,
    PollingContract,
    WebhookCase,
    WebhookContract,
)
from omnichannel.testing.harness import post_webhook, raw_count, watch_secrets
from omnichannel.testing.signing import (
    form_fields,
    hmac_header,
    meta_signature,
    standard_webhooks_headers,
    twilio_signature,
    with_headers,
)

__all__ = [
    "SOURCE_ERRORS",
    "ConnectorContract",
    "DecodeCase",
    "PollingContract",
    "WebhookCase",
    "WebhookContract",
    "form_fields",
    "hmac_header",
    "meta_signature",
    "post_webhook",
    "raw_count",
    "standard_webhooks_headers",
    "twilio_signature",
    "watch_secrets",
    "with_headers",
]
