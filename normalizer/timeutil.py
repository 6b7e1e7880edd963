"""Timestamps from every channel as aware UTC datetimes.

``parse_timestamp`` accepts what providers send: unix seconds (WhatsApp Cloud sends them as a
digit string), ISO 8601 (web forms, with ``Z``, an offset or naive), RFC 2822 (e-mail ``Date:``
headers and Twilio's API) and ready ``datetime`` objects. Naive values are local time of the
office (``Asia/Makassar``, WITA, by default) — a Gammu gateway stores naive local time. There is
deliberately no "now" here: callers pass the clock in.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_TZ", "parse_timestamp", "to_utc"]

DEFAULT_TZ = "Asia/Makassar"

_UNIX_SECONDS = re.compile(r"[+-]?[0-9]{1,20}(?:\.[0-9]+)?")
_RFC2822_UTC_UNKNOWN = re.compile(r"-0000\s*(?:\([^()]*\)\s*)?$")
_MAX_REPR = 80


def _zone(tz: str | ZoneInfo) -> ZoneInfo:
    """The ZoneInfo for ``tz``; ValueError for unknown names."""
    if isinstance(tz, ZoneInfo):
        return tz
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def to_utc(value: datetime, tz: str | ZoneInfo = DEFAULT_TZ) -> datetime:
    """Convert ``value`` to aware UTC; a naive ``value`` is local time in ``tz``."""
    if value.utcoffset() is None:
        value = value.replace(tzinfo=_zone(tz))
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"timestamp out of range: {value.isoformat()}") from exc


def _from_unix(seconds: float) -> datetime:
    """Aware UTC datetime for unix ``seconds``; ValueError when not finite or out of range."""
    try:  # (an int of thousands of digits does not even convert to float)
        finite = math.isfinite(seconds)
    except OverflowError:
        finite = False
    if not finite:
        raise ValueError("unix timestamp is not finite or out of range")
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"unix timestamp out of range: {seconds!r}") from exc


def _from_rfc2822(text: str) -> datetime | None:
    """Parse an RFC 2822 date, or None; ``-0000`` means UTC, no zone at all stays naive."""
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None and _RFC2822_UTC_UNKNOWN.search(text):
        return parsed.replace(tzinfo=UTC)
    return parsed


def _from_text(text: str, tz: str | ZoneInfo) -> datetime:
    """Parse unix seconds, ISO 8601 or RFC 2822 text."""
    stripped = text.strip()
    if _UNIX_SECONDS.fullmatch(stripped):
        return _from_unix(float(stripped) if "." in stripped else int(stripped))
    try:
        iso = datetime.fromisoformat(stripped)
    except ValueError:
        pass
    else:
        return to_utc(iso, tz)
    parsed = _from_rfc2822(stripped)
    if parsed is None:
        shown = text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "…"
        raise ValueError(
            f"unrecognized timestamp {shown!r}: expected unix seconds, ISO 8601 or RFC 2822"
        )
    return to_utc(parsed, tz)


def parse_timestamp(
    value: str | int | float | datetime, tz: str | ZoneInfo = DEFAULT_TZ
) -> datetime:
    """Parse a provider timestamp into an aware UTC datetime; ValueError when unrecognized."""
    if isinstance(value, datetime):
        return to_utc(value, tz)
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float):
        return _from_unix(value)
    if isinstance(value, str):
        return _from_text(value, tz)
    raise ValueError(f"unsupported timestamp type {type(value).__name__}")
