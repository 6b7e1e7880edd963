"""The schema: JSON round-trips, UTC times, and the shipped JSON Schemas match the code."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import jsonschema
import pytest
from pydantic import ValidationError

from omnichannel import InboundMessage, Inbox, RawMessage
from omnichannel.schemas import FOLDER, SCHEMAS, render
from tests.helpers import raw_json

WITA = timezone(timedelta(hours=8))


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_json_schema_is_generated_from_the_code(name: str) -> None:
    """The shipped schema files equal what the models generate (python -m omnichannel.schemas)."""
    assert (FOLDER / name).read_text(encoding="utf-8") == render(name)


def test_inbound_message_round_trips_through_json() -> None:
    """An InboundMessage with every kind of field survives JSON unchanged, times in UTC with Z."""
    message = InboundMessage.model_validate(
        {
            "channel": "whatsapp",
            "external_id": "wamid.1",
            "sent_at": "2026-11-30T10:00:00+08:00",
            "sender": {"name": "Siti", "phone": "+6281234567890"},
            "text": "Halo",
            "attachments": [
                {"filename": "foto.jpg", "content_type": "image/jpeg", "content": "aGVsbG8="}
            ],
            "location": {"lat": -5.13, "lon": 119.41, "address": "Makassar"},
            "references": ["wamid.0"],
            "flags": {"incomplete": True},
        }
    )
    text = message.model_dump_json()
    assert '"sent_at":"2026-11-30T02:00:00Z"' in text
    assert InboundMessage.model_validate_json(text) == message
    assert message.attachments[0].content == b"hello"


def test_raw_message_round_trips_bytes() -> None:
    """Raw payload bytes (not UTF-8) survive a JSON round trip as base64."""
    raw = RawMessage(
        connector="x",
        external_id="1",
        received_at=datetime(2026, 1, 1, tzinfo=WITA),
        content_type="application/octet-stream",
        payload=b"\x00\xff\xfe",
    )
    assert RawMessage.model_validate_json(raw.model_dump_json()) == raw


def test_naive_times_are_refused_by_the_schema() -> None:
    """A naive datetime is refused: the normalizer, not the schema, decides its timezone."""
    with pytest.raises(ValidationError, match="timezone"):
        InboundMessage(
            channel="sms", external_id="1", text="x", sent_at=datetime(2026, 1, 1, 10, 0)
        )


def test_location_needs_coordinates_or_address() -> None:
    """A location with neither coordinates nor an address is invalid."""
    with pytest.raises(ValidationError):
        InboundMessage.model_validate(
            {"channel": "sms", "external_id": "1", "location": {"lat": 1.0}}
        )


def test_exported_complaints_validate_against_the_schema(sqlite_inbox: Inbox) -> None:
    """Every exported complaint line validates against complaint.schema.json."""
    schema = json.loads((FOLDER / "complaint.schema.json").read_text(encoding="utf-8"))
    sqlite_inbox.receive(
        raw_json("1", sender={"phone": "081234567890"}, location={"lat": -5.1, "lon": 119.4})
    )
    sqlite_inbox.receive(raw_json("2", text="Anonim.", anonymous=True, channel="web"))
    exported = [json.loads(c.model_dump_json()) for c in sqlite_inbox.iter_complaints()]
    assert len(exported) == 2
    for item in exported:
        jsonschema.validate(item, schema, format_checker=jsonschema.FormatChecker())
        assert item["received_at"].endswith("Z")
