"""Bytes to text with the rules real mail needs (declared charsets read as their supersets)."""

from __future__ import annotations

import codecs
import re

_SURROGATE = re.compile(r"[\ud800-\udfff]")
_CHARSET_ALIASES = {
    "x-gbk": "gbk",
    "x-sjis": "shift_jis",
    "windows-874": "cp874",
    "iso-8859-8-i": "iso-8859-8",
    "utf8mb4": "utf-8",
}
# What real mail means by a declared charset (the WHATWG encoding standard does the same).
_CHARSET_SUPERSETS = {
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
    "tis-620": "cp874",
    "iso8859-11": "cp874",
    "iso8859-9": "cp1254",
}
# Python codecs that are not character sets a mail could mean.
_NOT_CHARSETS = frozenset(
    {"unicode-escape", "raw-unicode-escape", "undefined", "idna", "punycode", "charmap"}
)


def decode_text(raw: bytes, charset: str | None) -> str:
    """Bytes to text with the mail rules: latin-1/ascii read as windows-1252, UTF-8 first.

    A missing or unknown charset means UTF-8 when the bytes are valid UTF-8, else windows-1252.
    Never raises; the result holds no lone surrogates.
    """
    codec = _codec(charset)
    if codec is None:
        return _utf8_or_windows_1252(raw)
    try:
        text = raw.decode(codec, "replace")
    except (LookupError, UnicodeError, ValueError, TypeError):
        return _utf8_or_windows_1252(raw)
    return without_surrogates(text)


def without_surrogates(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def _codec(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when none was declared or it is unknown."""
    name = (charset or "").strip().strip("\"'").lower()
    if not name:
        return None
    try:
        codec = codecs.lookup(_CHARSET_ALIASES.get(name, name)).name
    except (LookupError, ValueError, TypeError):
        return None
    if codec in _NOT_CHARSETS:  # (bytes-to-bytes codecs such as base64 fail in decode_text)
        return None
    return _CHARSET_SUPERSETS.get(codec, codec)


def _utf8_or_windows_1252(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")
