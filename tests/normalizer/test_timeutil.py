from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from normalizer.timeutil import parse_timestamp, to_utc

WITA = ZoneInfo("Asia/Makassar")
NOON_UTC = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        (datetime(2026, 11, 30, 20, 0), "Asia/Makassar", NOON_UTC),
        (datetime(2026, 11, 30, 19, 0), "Asia/Jakarta", NOON_UTC),
        (datetime(2026, 11, 30, 21, 0), "Asia/Jayapura", NOON_UTC),
        (datetime(2026, 11, 30, 20, 0), WITA, NOON_UTC),
        (datetime(2026, 11, 30, 12, 0), "UTC", NOON_UTC),
        (datetime(2026, 11, 30, 12, 0, tzinfo=UTC), "Asia/Jakarta", NOON_UTC),
        (datetime(2026, 11, 30, 19, 0, tzinfo=ZoneInfo("Asia/Jakarta")), "UTC", NOON_UTC),
        (datetime(2026, 11, 30, 5, 0, tzinfo=timezone(timedelta(hours=-7))), WITA, NOON_UTC),
        (datetime(2026, 7, 1, 8, 0), "Europe/Amsterdam", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)),
    ],
)
def test_to_utc(value: datetime, tz: str | ZoneInfo, expected: datetime) -> None:
    """Naive datetimes are local time in tz; aware ones are converted; the result is UTC."""
    result = to_utc(value, tz)
    assert result == expected
    assert result.tzinfo is UTC


def test_to_utc_defaults_to_makassar() -> None:
    """Without tz, naive datetimes are WITA (UTC+8)."""
    assert to_utc(datetime(2026, 11, 30, 20, 0)) == NOON_UTC


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1733040000, datetime(2024, 12, 1, 8, 0, tzinfo=UTC)),
        ("1733040000", datetime(2024, 12, 1, 8, 0, tzinfo=UTC)),
        (" 1733040000\n", datetime(2024, 12, 1, 8, 0, tzinfo=UTC)),
        (1733040000.5, datetime(2024, 12, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("1733040000.5", datetime(2024, 12, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("2026-11-30T12:00:00Z", NOON_UTC),
        ("2026-11-30T12:00:00.000Z", NOON_UTC),
        ("2026-11-30T20:00:00+08:00", NOON_UTC),
        ("2026-11-30T19:00:00+0700", NOON_UTC),
        ("2026-11-30T20:00:00", NOON_UTC),
        ("2026-11-30 20:00:00", NOON_UTC),
        ("2026-11-30", datetime(2026, 11, 29, 16, 0, tzinfo=UTC)),
        ("Mon, 30 Nov 2026 12:00:00 +0000", NOON_UTC),
        ("Mon, 30 Nov 2026 12:00:00 GMT", NOON_UTC),
        ("Mon, 30 Nov 2026 19:00:00 +0700", NOON_UTC),
        ("30 Nov 2026 20:00:00 +0800 (WITA)", NOON_UTC),
        ("Mon, 30 Nov 2026 12:00:00 -0000", NOON_UTC),
        ("Mon, 30 Nov 2026 20:00:00", NOON_UTC),
        (datetime(2026, 11, 30, 20, 0), NOON_UTC),
        (NOON_UTC, NOON_UTC),
    ],
)
def test_parse_timestamp(value: str | int | float | datetime, expected: datetime) -> None:
    """Unix seconds, ISO 8601, RFC 2822 and datetimes parse to aware UTC (naive = WITA)."""
    result = parse_timestamp(value)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("value", "tz", "expected"),
    [
        ("2026-11-30 19:00:00", "Asia/Jakarta", NOON_UTC),
        ("2026-11-30 21:00:00", ZoneInfo("Asia/Jayapura"), NOON_UTC),
        ("2026-11-30T12:00:00Z", "Asia/Jayapura", NOON_UTC),
        ("Mon, 30 Nov 2026 12:00:00 +0000", "Asia/Jayapura", NOON_UTC),
        ("1733040000", "Asia/Jayapura", datetime(2024, 12, 1, 8, 0, tzinfo=UTC)),
    ],
)
def test_parse_timestamp_tz_applies_only_to_naive(
    value: str, tz: str | ZoneInfo, expected: datetime
) -> None:
    """The tz argument only decides naive values; explicit offsets and unix time ignore it."""
    assert parse_timestamp(value, tz) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "kemarin",
        "yesterday",
        "30/11/2026",
        "2026-13-01T00:00:00",
        "Mon, 31 Nov 2026 12:00:00 +0000",
        "1733040000000000000000",
        "1e9",
        "nan",
        float("nan"),
        float("inf"),
        10**20,
        -(10**20),
        True,
        "0001-01-01T00:00:00",
    ],
)
def test_parse_timestamp_rejects(value: str | int | float) -> None:
    """Unrecognized or out-of-range values raise ValueError."""
    with pytest.raises(ValueError):
        parse_timestamp(value)


def test_parse_timestamp_error_message_is_clear_and_short() -> None:
    """The error names the accepted formats and does not echo a huge payload."""
    with pytest.raises(ValueError, match="unix seconds, ISO 8601 or RFC 2822") as info:
        parse_timestamp("x" * 10_000)
    assert len(str(info.value)) < 200


def test_parse_timestamp_rejects_other_types() -> None:
    """Values of unsupported types raise ValueError, not AttributeError."""
    with pytest.raises(ValueError, match="unsupported timestamp type"):
        parse_timestamp([1733040000])  # type: ignore[arg-type]


def test_unknown_time_zone() -> None:
    """An unknown zone name is a ValueError naming the zone."""
    with pytest.raises(ValueError, match="Asia/Atlantis"):
        to_utc(datetime(2026, 11, 30, 12, 0), "Asia/Atlantis")


@settings(max_examples=500)
@given(st.text())
def test_parse_timestamp_on_any_text(value: str) -> None:
    """Any text gives an aware UTC datetime or a ValueError, nothing else."""
    try:
        result = parse_timestamp(value)
    except ValueError:
        return
    assert result.tzinfo is UTC


@settings(max_examples=300)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)))
def test_iso_round_trip(value: datetime) -> None:
    """A naive ISO string and the same datetime object give the same instant."""
    assert parse_timestamp(value.isoformat()) == parse_timestamp(value) == to_utc(value, WITA)
