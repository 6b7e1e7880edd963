"""A new channel in one module: a connector for a chatbot that exports JSON lines.

Run: ``python examples/custom_connector.py``.

In a package of your own, register the class through the entry-point group instead of calling
``register`` (then ``type = "chatbot"`` works in omnichannel.toml)::

    [project.entry-points."omnichannel.connectors"]
    chatbot = "my_package.chatbot:ChatbotConnector"

and prove it with the shipped contract suite in your tests::

    from omnichannel.testing import ConnectorContract, DecodeCase

    class TestChatbot(ConnectorContract):
        connector_type = "chatbot"
        cases = [DecodeCase("text", b'{"id": "1", "user": "62812...", "text": "Halo"}',
                            {"channel": "chatbot", "text": "Halo"})]
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from omnichannel import DecodeError, InboundMessage, Inbox, RawMessage, Sender
from omnichannel.config import parse_config
from omnichannel.connector import Connector
from omnichannel.registry import register


class ChatbotOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bot_name: str = "SiPANDU"


class ChatbotConnector(Connector):
    """Chatbot transcripts: one JSON object per message, ``{id, user, text}``."""

    type = "chatbot"
    channel = "chatbot"
    Options = ChatbotOptions

    def to_raw(self, line: bytes) -> RawMessage:
        """The transport side: wrap one exported line, keyed by the bot's message id."""
        try:
            key = "msg:" + str(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            key = "sha256:" + hashlib.sha256(line).hexdigest()  # unreadable: still kept
        return RawMessage(
            connector=self.name,
            external_id=key,
            received_at=datetime.now(UTC),
            content_type="application/json",
            payload=line,
        )

    def decode(self, raw: RawMessage) -> InboundMessage:
        try:
            data = json.loads(raw.payload)
            return InboundMessage(
                channel=self.channel,
                external_id=str(data["id"]),
                sender=Sender(phone=data.get("user")),
                text=data["text"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DecodeError(f"not a chatbot message: {type(exc).__name__}") from None


def main() -> None:
    register("chatbot", ChatbotConnector)
    folder = tempfile.mkdtemp()
    config = parse_config(
        {
            "database": {"url": f"sqlite:///{folder}/bot.db"},
            "connectors": [{"name": "bot", "type": "chatbot"}],
        }
    )
    with Inbox(config) as inbox:
        lines = [
            b'{"id": "7", "user": "6281355550101", "text": "Izin reklame saya ditolak."}',
            b'{"id": "7", "user": "6281355550101", "text": "Izin reklame saya ditolak."}',
            b"{not json",
        ]
        bot = inbox.connector("bot")
        assert isinstance(bot, ChatbotConnector)
        for line in lines:
            result = inbox.receive(bot.to_raw(line))
            print(f"{result.outcome.value:12} {result.ticket or result.error or ''}")


if __name__ == "__main__":
    main()
