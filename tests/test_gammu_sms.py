"""normalizer.sms with literal Gammu rows: UDH parsing, UTF-16BE text, grouping and decoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from normalizer.sms import (
    MISSING_MARK,
    Assembler,
    Concat,
    decode_8bit,
    decode_gammu_inbox,
    decode_utf16be,
    group_external_id,
    hex_to_bytes,
    inbox_payload,
    is_operator_sender,
    jsonable_row,
    parse_udh,
    part_of,
    reassemble,
)
from omnichannel.errors import DecodeError

# "Ok 🙏 ya": the pair D83D DE4F is split between the two parts.
EMOJI_PART_1 = "004F006B0020D83D"
EMOJI_PART_2 = "DE4F002000790061"


def row(
    row_id: int,
    text: str = "",
    *,
    udh: str = "",
    coding: str = "Default_No_Compression",
    decoded: str = "",
    sender: str = "+6281234567890",
    at: str = "2026-11-30 10:00:00",
    **extra: Any,
) -> dict[str, Any]:
    """An inbox row as the connector reads it (JSON-safe values)."""
    return {
        "ID": row_id,
        "Text": text,
        "UDH": udh,
        "Coding": coding,
        "TextDecoded": decoded,
        "SenderNumber": sender,
        "ReceivingDateTime": at,
        "RecipientID": "modem1",
        "SMSCNumber": "+6281100000",
        "Class": -1,
        "Processed": "false",
        **extra,
    }


# -- UDH ---------------------------------------------------------------------------------------


def test_udh_8_bit_reference() -> None:
    """``05 00 03 RR TT SS`` is part SS of TT with an 8-bit reference."""
    udh = parse_udh("050003A70302")
    assert udh.concat == Concat(reference=0xA7, total=3, sequence=2, bits=8)
    assert udh.elements == ((0x00, bytes.fromhex("A70302")),) and not udh.malformed


def test_udh_16_bit_reference() -> None:
    """``06 08 04 RRRR TT SS`` is part SS of TT with a 16-bit reference."""
    assert parse_udh("060804beef0201").concat == Concat(0xBEEF, 2, 1, 16)


def test_udh_with_other_elements_before_concatenation() -> None:
    """A port-addressing element first: the concatenation element is still found in the list."""
    udh = parse_udh("0B05040B8423F00003A70301")
    assert [iei for iei, _ in udh.elements] == [0x05, 0x00]
    assert udh.concat == Concat(0xA7, 3, 1, 8)


def test_concatenation_bytes_inside_another_element_are_not_matched() -> None:
    """``00 03 …`` inside another element's data is not a concatenation element."""
    udh = parse_udh("07700500 03FF0909")
    assert udh.elements == ((0x70, bytes.fromhex("0003FF0909")),)
    assert udh.concat is None and not udh.malformed


def test_last_concatenation_element_wins() -> None:
    """With two concatenation elements, the last one counts."""
    assert parse_udh("0B0003110201080412340302").concat == Concat(0x1234, 3, 2, 16)
    assert parse_udh("0B0804123403020003110201").concat == Concat(0x11, 2, 1, 8)


@pytest.mark.parametrize(
    "value",
    ["0500", "ZZ", "050003A703", "0300050102", "050003A7030201", "00", "050003A7030"],
    ids=["short", "not-hex", "truncated", "element-overruns", "trailing", "empty-body", "odd"],
)
def test_malformed_udh_means_no_concatenation(value: str) -> None:
    """A header that does not parse is flagged malformed and the part stands alone."""
    udh = parse_udh(value)
    if value == "00":  # UDHL 0: an empty header is well formed
        assert udh.concat is None and not udh.malformed
        return
    assert udh.malformed and udh.concat is None
    part = part_of(row(7, "0048", udh=value), 17)
    assert part.key == ("single", 7) and (part.sequence, part.total) == (1, 1)


@pytest.mark.parametrize(
    "value", ["050003A70000", "050003A70204", "050003A70200"], ids=["total-0", "seq>total", "seq-0"]
)
def test_invalid_concatenation_values_are_ignored(value: str) -> None:
    """Total 0 or a sequence outside 1..total: the element is ignored (23.040)."""
    udh = parse_udh(value)
    assert udh.concat is None and not udh.malformed


def test_no_udh() -> None:
    """An empty UDH column: no elements, no concatenation."""
    assert parse_udh("") == parse_udh(None) == parse_udh("  ")
    assert parse_udh("").concat is None and not parse_udh("").malformed


def test_hex_to_bytes() -> None:
    """Hex with spaces and either case; empty is empty; anything else is None."""
    assert hex_to_bytes("00 4a") == b"\x00J" and hex_to_bytes("") == b""
    assert hex_to_bytes("xyz") is None and hex_to_bytes({"hex": "3030"}) == b"\x00"


# -- text --------------------------------------------------------------------------------------


def test_gsm_default_alphabet_row_is_utf16_hex() -> None:
    """Gammu stores Default (GSM 7-bit) text converted to UTF-16BE hex: @ £ € { } survive."""
    text = "0048006100720067006100200040002000A30035002C002020AC00320020007B006F006B007D"
    result = reassemble({1: row(1, text)}, 1)
    assert result.text == "Harga @ £5, €2 {ok}" and result.source == "Text"


def test_utf16_bytes_are_joined_before_decoding() -> None:
    """An emoji whose surrogate pair is split between parts comes out whole."""
    parts = {
        1: row(1, EMOJI_PART_1, coding="Unicode_No_Compression"),
        2: row(2, EMOJI_PART_2, coding="Unicode_No_Compression"),
    }
    assert reassemble(parts, 2).text == "Ok 🙏 ya"
    assert decode_utf16be(bytes.fromhex(EMOJI_PART_1)) == "Ok \ufffd"  # part by part: broken


def test_missing_part_is_marked_and_unpaired_surrogate_replaced() -> None:
    """A gap is marked ``[…]``; the half of a pair left at the gap becomes U+FFFD."""
    parts = {1: row(1, EMOJI_PART_1), 3: row(3, "0021")}
    result = reassemble(parts, 3)
    assert result.text == f"Ok \ufffd{MISSING_MARK}!" and result.missing == (2,)
    assert reassemble({2: row(2, "0042")}, 3).text == f"{MISSING_MARK}B{MISSING_MARK}"


def test_text_decoded_fallback_when_text_is_empty() -> None:
    """Without Text, TextDecoded is used: Gammu >= 1.40 puts the whole text in part 1."""
    parts = {1: row(1, "", decoded="Jalan rusak parah"), 2: row(2, "", decoded="")}
    result = reassemble(parts, 2)
    assert (result.text, result.source) == ("Jalan rusak parah", "TextDecoded")
    old = {1: row(1, "", decoded="Jalan "), 2: row(2, "", decoded="rusak")}  # Gammu < 1.40
    assert reassemble(old, 2).text == "Jalan rusak"


@pytest.mark.parametrize(
    "broken",
    [
        {"Text": "not hex"},
        {"Text": "004A00"},
        {"Coding": "Unicode_Compression"},
    ],
    ids=["not-hex", "odd-length", "compressed"],
)
def test_unusable_text_falls_back_to_text_decoded(broken: dict[str, str]) -> None:
    """Text that is not hex, odd-length UTF-16 or compressed: TextDecoded instead."""
    parts = {1: {**row(1, "004A0061006C0061006E", decoded="Jalan"), **broken}}
    assert reassemble(parts, 1).text == "Jalan"
    assert reassemble(parts, 1).source == "TextDecoded"


def test_8bit_rows() -> None:
    """8bit Text is raw bytes: UTF-8 (split across parts too), windows-1252, or binary."""
    utf8 = {
        1: row(1, "4A616C616E206C6963696E20C3", coding="8bit"),
        2: row(2, "A9", coding="8bit"),
    }
    assert reassemble(utf8, 2).text == "Jalan licin é"
    assert decode_8bit(b"caf\xe9") == ("café", False)
    text, binary = decode_8bit(bytes(range(0, 16)))
    assert binary and "16 byte" in text
    assert reassemble({1: row(1, "000102", coding="8bit")}, 1).binary


# -- grouping ----------------------------------------------------------------------------------


def test_v18_groups_by_message_id_even_when_references_collide() -> None:
    """v18: MessageID decides, so two messages reusing one reference are kept apart."""
    a1 = row(1, "0041", udh="050003110201", MessageID=1, SequencePosition=1, PartCount=2)
    b2 = row(2, "0059", udh="050003110202", MessageID=3, SequencePosition=2, PartCount=2)
    b1 = row(3, "0058", udh="050003110201", MessageID=3, SequencePosition=1, PartCount=2)
    a2 = row(4, "0042", udh="050003110202", MessageID=1, SequencePosition=2, PartCount=2)
    assembler = Assembler(timedelta(hours=1))
    assembler.extend(part_of(r, 18) for r in (a1, b2, b1, a2))
    groups = assembler.pop_complete()
    assert [g.ids for g in groups] == [[1, 4], [2, 3]]
    assert [reassemble({s: p.row for s, p in g.parts.items()}, 2).text for g in groups] == [
        "AB",
        "XY",
    ]


def test_v17_groups_by_sender_reference_total_and_window() -> None:
    """v17: same sender, reference and total within the window; other senders kept apart."""
    rows = [
        row(1, "0041", udh="050003210201", sender="081111"),
        row(2, "0058", udh="050003210201", sender="082222"),
        row(3, "0059", udh="050003210202", sender="082222"),
        row(4, "0042", udh="050003210202", sender="081111"),
        row(5, "0043", udh="050003210201", sender="081111", at="2026-11-30 13:00:00"),
    ]
    assembler = Assembler(timedelta(hours=1))
    assembler.extend(part_of(r, 17) for r in rows)
    assert [g.ids for g in assembler.pop_complete()] == [[1, 4], [2, 3]]
    assert [g.ids for g in assembler.pending()] == [[5]]  # three hours later: another message


def test_repeated_part_is_kept_once_other_content_starts_a_new_message() -> None:
    """The same part delivered twice is a repeat; the same sequence with other text is new."""
    first = row(1, "0041", udh="050003330201")
    assembler = Assembler(timedelta(hours=1))
    assembler.extend(
        part_of(r, 17) for r in (first, {**first, "ID": 2}, row(3, "005A", udh="050003330201"))
    )
    pending = assembler.pending()
    assert [g.ids for g in pending] == [[1, 2], [3]]
    assert [len(g.repeats) for g in pending] == [1, 0]


def test_external_id_is_stable_and_content_bound() -> None:
    """The same rows give the same id in any order; other content under the same ID does not."""

    def external_id(*rows: dict[str, Any]) -> str:
        assembler = Assembler(timedelta(hours=1))
        assembler.extend(part_of(r, 17) for r in rows)
        [group] = assembler.pop_complete() or assembler.pending()
        return group_external_id("kantor", group)

    one, two = row(5, "0041", udh="050003440201"), row(6, "0042", udh="050003440202")
    assert external_id(one, two) == external_id(two, one)
    assert external_id(one, two).startswith("kantor:5:")
    assert external_id(row(5, "0041")) != external_id(row(5, "0042"))


# -- decoding ----------------------------------------------------------------------------------


def payload(*rows: dict[str, Any], schema: int = 17, timezone: str = "Asia/Makassar") -> bytes:
    return inbox_payload(list(rows), gateway="sms", schema=schema, timezone=timezone)


def test_decode_multipart_payload() -> None:
    """A two-part payload decodes to one SMS with the parts' times as received/sent."""
    message = decode_gammu_inbox(
        payload(
            row(1, EMOJI_PART_1, udh="050003A70201", at="2026-11-30 10:00:00"),
            row(2, EMOJI_PART_2, udh="050003A70202", at="2026-11-30 10:00:07"),
        ),
        connector="sms",
        external_id="sms:1:x",
    )
    assert message.channel == "sms" and message.text == "Ok 🙏 ya"
    assert message.sender.phone == "+6281234567890"
    assert message.sent_at == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    assert message.received_at == datetime(2026, 11, 30, 2, 0, 7, tzinfo=UTC)
    assert message.flags == {"sms_parts": 2}
    assert message.headers == {"smsc": "+6281100000", "gammu-recipient": "modem1"}


@pytest.mark.parametrize(
    ("zone", "hour"), [("Asia/Jakarta", 3), ("Asia/Makassar", 2), ("Asia/Jayapura", 1)]
)
def test_gateway_local_time_to_utc(zone: str, hour: int) -> None:
    """10:00 gateway time is 03:00Z in WIB, 02:00Z in WITA, 01:00Z in WIT."""
    message = decode_gammu_inbox(
        payload(row(1, "0041"), timezone=zone), connector="sms", external_id="x"
    )
    assert message.received_at == datetime(2026, 11, 30, hour, 0, tzinfo=UTC)


def test_incomplete_payload_is_flagged() -> None:
    """A payload missing part 2 of 3 is flagged incomplete with the missing sequence."""
    message = decode_gammu_inbox(
        payload(row(1, "0041", udh="050003010301"), row(3, "0043", udh="050003010303")),
        connector="sms",
        external_id="x",
    )
    assert message.text == f"A{MISSING_MARK}C"
    assert message.flags["incomplete"] is True and message.flags["missing_parts"] == [2]


def test_operator_senders_and_ussd_are_flagged() -> None:
    """Alphanumeric senders, short codes and USSD (Class 127) are operator messages."""
    for sender, klass in [("TELKOMSEL", -1), ("3636", -1), ("", 127)]:
        flags = decode_gammu_inbox(
            payload(row(1, "0041", sender=sender, Class=klass)), connector="s", external_id="x"
        ).flags
        assert flags["operator_message"] is True and flags["ignore"] is True
    kept = decode_gammu_inbox(
        payload(row(1, "0041", sender="TELKOMSEL")),
        connector="s",
        external_id="x",
        ignore_operator_messages=False,
    )
    assert kept.flags == {"operator_message": True}
    assert is_operator_sender("TELKOMSEL") and not is_operator_sender("081234567890")
    assert not is_operator_sender("")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"\x00\xff",
        b"[]",
        b'{"format": "x"}',
        json.dumps({"format": "gammu-inbox/1"}).encode(),
        json.dumps({"format": "gammu-inbox/1", "rows": [{"Text": "0041"}]}).encode(),
    ],
    ids=["empty", "binary", "list", "format", "no-rows", "no-id"],
)
def test_garbage_payload_is_a_decode_error(bad: bytes) -> None:
    """Anything that is not a Gammu inbox document raises DecodeError."""
    with pytest.raises(DecodeError):
        decode_gammu_inbox(bad, connector="sms", external_id="x")


def test_jsonable_row() -> None:
    """Driver values become JSON: times as text, bytes as hex, decimals as numbers."""
    converted = jsonable_row(
        {
            "ReceivingDateTime": datetime(2026, 11, 30, 10, 0),
            "UDH": b"\x05\x00",
            "ID": Decimal(7),
            "Processed": False,
        }
    )
    assert converted == {
        "ReceivingDateTime": "2026-11-30 10:00:00",
        "UDH": {"hex": "0500"},
        "ID": 7,
        "Processed": False,
    }
    assert parse_udh({"hex": "303530303033413730333032"}).concat == Concat(0xA7, 3, 2, 8)
