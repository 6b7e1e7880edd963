"""The shared contract every connector proves: subclass :class:`ConnectorContract`.

::

    class TestMyConnector(ConnectorContract):
        connector_type = "my-sms"
        options = {"token": "s3cret-token"}
        cases = [DecodeCase("plain", payload=b"...", expect={"text": "Jalan rusak"})]

The harness adds its own negative cases: garbage payloads must raise ``DecodeError`` (and so be
quarantined, not crash), secrets must not show in ``repr`` or in error messages, and every case
must survive the whole pipeline with exactly one outcome, and as ``duplicate`` the second time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from omnichannel.connector import Connector
from omnichannel.errors import DecodeError
from omnichannel.inbox import Inbox
from omnichannel.registry import connector_class
from omnichannel.schema import Outcome, RawMessage

__all__ = ["ConnectorContract", "DecodeCase"]

GARBAGE = [b"", b"\x00\xff\xfe\x00", b"\x89PNG\r\n\x1a\n" + bytes(range(256))]
FIXED_TIME = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)


@dataclass
class DecodeCase:
    """One inbound payload and the InboundMessage fields it must decode to."""

    id: str
    payload: bytes
    expect: dict[str, Any] = field(default_factory=dict)
    content_type: str = "application/octet-stream"
    external_id: str | None = None
    outcome: Outcome = Outcome.NEW


class ConnectorContract:
    """Subclass with ``connector_type``, ``options`` and ``cases``; pytest runs the rest."""

    connector_type: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    cases: ClassVar[list[DecodeCase]] = []

    def make_connector(self, name: str = "contract") -> Connector:
        return connector_class(self.connector_type).from_options(name, dict(self.options))

    def raw_for(self, connector: Connector, case: DecodeCase) -> RawMessage:
        return RawMessage(
            connector=connector.name,
            external_id=case.external_id or case.id,
            received_at=FIXED_TIME,
            content_type=case.content_type,
            payload=case.payload,
        )

    def test_cases_decode_to_expected_fields(self) -> None:
        """Every declared case decodes to the declared fields."""
        connector = self.make_connector()
        for case in self.cases:
            decoded = connector.decode(self.raw_for(connector, case)).model_dump()
            for key, expected in case.expect.items():
                assert decoded[key] == expected, f"{case.id}: {key}"

    @pytest.mark.parametrize("garbage", GARBAGE, ids=["empty", "binary", "png"])
    def test_garbage_raises_decode_error(self, garbage: bytes) -> None:
        """Undecodable bytes raise DecodeError (to be quarantined), never anything else."""
        connector = self.make_connector()
        raw = RawMessage(
            connector=connector.name,
            external_id="garbage",
            received_at=FIXED_TIME,
            content_type="application/octet-stream",
            payload=garbage or b" ",
        )
        with pytest.raises(DecodeError):
            connector.decode(raw)

    def test_secrets_never_shown(self) -> None:
        """Secret options do not appear in the connector's repr or its options' repr."""
        connector = self.make_connector()
        for secret in connector.secrets():
            assert secret not in repr(connector)
            assert secret not in repr(connector.options)

    def test_pipeline_gives_one_outcome_then_duplicate(self, omnichannel_inbox: Inbox) -> None:
        """Each case files with its expected outcome once, then is a duplicate."""
        connector = self.make_connector()
        omnichannel_inbox.add_connector(connector)
        for case in self.cases:
            first = omnichannel_inbox.receive(self.raw_for(connector, case))
            again = omnichannel_inbox.receive(self.raw_for(connector, case))
            assert first.outcome is case.outcome, case.id
            assert again.outcome is Outcome.DUPLICATE, case.id
