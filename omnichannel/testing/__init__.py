"""The connector test-kit, shipped for connector authors (ours and third parties').

Installed as a pytest plugin (entry point ``pytest11: omnichannel``), it gives every test suite
the ``omnichannel_inbox`` fixture: an :class:`~omnichannel.Inbox` on a fresh SQLite database.
:class:`ConnectorContract` is the shared suite a connector's tests subclass.
"""

from omnichannel.testing.contract import ConnectorContract, DecodeCase

__all__ = ["ConnectorContract", "DecodeCase"]
