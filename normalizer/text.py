"""Plain-text canonicalization of complaint bodies.

Pure functions, no I/O:

- ``clean_text`` — one canonical form for any text (NFC, LF line ends, no control or invisible
  format characters, plain spaces, at most one blank line in a row). Idempotent.
- ``html_to_text`` — HTML e-mail or web-form bodies to clean text with ``inscriptis``; scripts,
  styles and the document head never leak into the result.
- ``trim_quoted`` — cut quoted replies, forwarded originals, signatures and mobile footers off a
  clean body, but never return an empty body: a message that is *only* a quote or a forward is
  returned unchanged.
"""

from __future__ import annotations

import re
import unicodedata

from inscriptis import get_text
from inscriptis.model.config import ParserConfig

__all__ = ["clean_text", "html_to_text", "trim_quoted"]

# --------------------------------------------------------------------------- clean_text

_ZWJ = "\u200d"
_VARIATION_SELECTOR_16 = "\ufe0f"
_REPLACEMENT = "\ufffd"

# Characters that end a line for ``str.splitlines``: turned into LF rather than dropped, so that
# the words on either side stay apart.
_LINE_BREAKS = frozenset("\x0b\x0c\x85\u2028\u2029")

# Format (Cf) characters that carry meaning and are kept: Arabic number signs and emoji tag
# sequences (subdivision flags such as England's). Every other Cf character (ZWSP, ZWNJ, BOM, soft
# hyphen, word joiner, bidi controls, ...) is dropped; ZWJ is kept only inside emoji sequences.
_KEPT_FORMAT = frozenset(
    [chr(c) for c in range(0x0600, 0x0606)]
    + ["\u06dd", "\u070f", "\u0890", "\u0891", "\u08e2", "\U000110bd", "\U000110cd"]
    + [chr(c) for c in range(0xE0020, 0xE0080)]
)

_SPACE_RUN = re.compile(r" {2,}")
_TRAILING_SPACES = re.compile(r" +$", re.MULTILINE)
_BLANK_LINE_RUN = re.compile(r"\n{3,}")


def _map_char(ch: str) -> str:
    """Map one character to its canonical replacement (possibly empty)."""
    if " " <= ch <= "~" or ch == "\n":
        return ch
    if ch == "\t":
        return " "
    if ch in _LINE_BREAKS:
        return "\n"
    category = unicodedata.category(ch)
    if category == "Zs":
        return " "
    if category == "Cc":
        return ""
    if category == "Cs":
        return _REPLACEMENT
    if category == "Cf" and ch != _ZWJ and ch not in _KEPT_FORMAT:
        return ""
    return ch


def _is_emoji_part(ch: str) -> bool:
    """Whether ``ch`` can sit next to a ZWJ in an emoji sequence."""
    return ch == _VARIATION_SELECTOR_16 or unicodedata.category(ch) in ("So", "Sk")


def _drop_stray_joiners(text: str) -> str:
    """Remove zero-width joiners except between two emoji (family, profession, flag sequences)."""
    if _ZWJ not in text:
        return text
    parts = text.split(_ZWJ)
    out = [parts[0]]
    previous = parts[0][-1:]
    for part in parts[1:]:
        if previous and part and _is_emoji_part(previous) and _is_emoji_part(part[0]):
            out.append(_ZWJ)
        out.append(part)
        previous = part[-1:] or previous
    return "".join(out)


class _CharTable(dict[int, str]):
    """``str.translate`` table filled on first sight of each character (``_map_char``)."""

    def __missing__(self, code: int) -> str:
        mapped = _map_char(chr(code))
        if len(self) < _TABLE_LIMIT:  # bounded: hostile input cannot grow it without end
            self[code] = mapped
        return mapped


_TABLE_LIMIT = 65536
_TABLE = _CharTable()
_PLAIN = re.compile(r"[ -~\n]*")  # printable ASCII and LF need no mapping


def clean_text(text: str) -> str:
    """Return the canonical form of ``text``; ``clean_text(clean_text(x)) == clean_text(x)``."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not _PLAIN.fullmatch(text):
        text = text.translate(_TABLE)
    text = _drop_stray_joiners(text)
    text = _SPACE_RUN.sub(" ", text)
    text = _TRAILING_SPACES.sub("", text)
    text = _BLANK_LINE_RUN.sub("\n\n", text)
    text = text.strip(" \n")
    # Removing characters can leave a base letter next to a combining mark: compose again.
    return unicodedata.normalize("NFC", text)


# --------------------------------------------------------------------------- html_to_text

# Characters lxml cannot take: it silently truncates at a lone surrogate and may reject controls.
_PARSER_UNSAFE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def _parser_safe(html: str) -> str:
    """Drop control characters and replace lone surrogates before handing text to lxml."""
    return _PARSER_UNSAFE.sub(
        lambda m: _REPLACEMENT if "\ud800" <= m.group() <= "\udfff" else "", html
    )


def html_to_text(html: str) -> str:
    """Convert an HTML body to clean text; returns "" for empty or comment-only HTML."""
    config = ParserConfig(display_links=False, display_images=False, display_anchors=False)
    text = clean_text(get_text(_parser_safe(html), config))
    # inscriptis indents block elements and lists; indentation means nothing in a complaint.
    return "\n".join(line.lstrip(" ") for line in text.split("\n"))


# --------------------------------------------------------------------------- trim_quoted

_MAX_SIGNATURE_LINES = 10
_MAX_HEADER_BLOCK_GAP = 4
_MAX_ATTRIBUTION_CHARS = 400

_ATTRIBUTION = re.compile(r"(?:on|pada)\s.*\s(?:wrote|menulis)\s?:", re.IGNORECASE | re.DOTALL)
_ATTRIBUTION_START = re.compile(r"(?:on|pada)\s", re.IGNORECASE)
_ATTRIBUTION_END = re.compile(r".*\b(?:wrote|menulis)\s?:", re.IGNORECASE)
_SEPARATOR = re.compile(
    r"-{2,}\s*(?:original message|pesan asli|forwarded message|pesan terusan)\s*-{2,}"
    r"|begin forwarded message\s*:",
    re.IGNORECASE,
)
_UNDERSCORES = re.compile(r"_{8,}")
_HEADER_FIELD = re.compile(r"\*?([A-Za-z]+)\s?:\*?(?:\s|$)")
_FROM_FIELDS = frozenset({"from", "dari"})
_STRONG_DATE_FIELDS = frozenset({"sent", "dikirim"})
_WEAK_DATE_FIELDS = frozenset({"date", "tanggal"})
_FOOTER = re.compile(
    r"(?:sent from my\s.{1,60}"
    r"|sent from (?:yahoo mail|outlook|mail for windows|samsung)\b.{0,60}"
    r"|dikirim dari (?:iphone|ipad|ponsel|perangkat|telepon|hp|yahoo|outlook|samsung|android)"
    r"\b.{0,60}"
    r"|get outlook for (?:android|ios)\b.{0,60}"
    r"|dapatkan outlook untuk (?:android|ios)\b.{0,60})",
    re.IGNORECASE,
)


def _looks_like_attribution(header: str) -> bool:
    """Whether ``header`` is an "On … wrote:" / "Pada … menulis:" line with a date or address."""
    return (
        len(header) <= _MAX_ATTRIBUTION_CHARS
        and _ATTRIBUTION.fullmatch(header) is not None
        and any(ch.isdigit() or ch == "@" for ch in header)
    )


def _attribution_length(lines: list[str], i: int) -> int:
    """Number of lines (0, 1 or 2) of an attribution header starting at line ``i``."""
    if not _ATTRIBUTION_START.match(lines[i]):
        return 0
    if _looks_like_attribution(lines[i]):
        return 1
    wrapped = i + 1 < len(lines) and _ATTRIBUTION_END.fullmatch(lines[i + 1]) is not None
    if wrapped and _looks_like_attribution(f"{lines[i]} {lines[i + 1]}"):
        return 2
    return 0


def _interleaved_from(lines: list[str]) -> list[bool]:
    """For each index ``k``: does new (unquoted) text follow a ``>`` line in ``lines[k:]``?

    That is an inline, interleaved reply, whose quotes must stay. One backward pass.
    """
    result = [False] * (len(lines) + 1)
    text_after = False
    for k in range(len(lines) - 1, -1, -1):
        line = lines[k]
        result[k] = result[k + 1] or (line.startswith(">") and text_after)
        text_after = text_after or (bool(line.strip()) and not line.startswith(">"))
    return result


def _attribution_start(lines: list[str]) -> int | None:
    """Index of the first "On … wrote:" header whose quote is not interleaved with new text."""
    interleaved = _interleaved_from(lines)
    for i in range(len(lines)):
        length = _attribution_length(lines, i)
        if length and not interleaved[i + length]:
            return i
    return None


def _field_name(line: str) -> str | None:
    """Lower-cased field name of a header-like line (``From:``, ``*Dari:*``), else None."""
    match = _HEADER_FIELD.match(line)
    return match.group(1).lower() if match else None


def _is_header_block(lines: list[str], i: int) -> bool:
    """Whether line ``i`` opens an Outlook-style ``From:``/``Sent:`` (``Dari:``/``Dikirim:``) block.

    ``Date:``/``Tanggal:`` are also ordinary letter headings, so with them the ``From:`` line must
    carry an e-mail address.
    """
    if _field_name(lines[i]) not in _FROM_FIELDS:
        return False
    for line in lines[i + 1 : i + 1 + _MAX_HEADER_BLOCK_GAP]:
        field = _field_name(line)
        if field in _STRONG_DATE_FIELDS:
            return True
        if field in _WEAK_DATE_FIELDS:
            return "@" in lines[i]
    return False


def _with_rule_above(lines: list[str], i: int) -> int:
    """Move a cut at line ``i`` up to an underscore rule just above it (blank lines allowed)."""
    j = i - 1
    while j >= 0 and not lines[j]:
        j -= 1
    return j if j >= 0 and _UNDERSCORES.fullmatch(lines[j]) else i


def _header_block_start(lines: list[str]) -> int | None:
    """Index of the first Outlook header block (or the underscore rule above it)."""
    for i in range(len(lines)):
        if _is_header_block(lines, i):
            return _with_rule_above(lines, i)
    return None


def _separator_start(lines: list[str]) -> int | None:
    """Index of the first "-----Original Message-----" / "Pesan terusan" separator line."""
    return next((i for i, line in enumerate(lines) if _SEPARATOR.fullmatch(line.strip())), None)


def _trailing_quote_start(lines: list[str]) -> int | None:
    """Index of a block of ``>`` lines that runs to the end, with its attribution line if any."""
    start = None
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith(">"):
            start = i
        elif lines[i]:
            break
    if start is None:
        return None
    above = start - 1
    while above >= 0 and not lines[above]:
        above -= 1
    if above >= 0 and _ATTRIBUTION_END.fullmatch(lines[above]):
        return above
    return start


def _quote_start(lines: list[str]) -> int:
    """Index of the first line of quoted or forwarded material, ``len(lines)`` when none."""
    candidates = [
        _attribution_start(lines),
        _header_block_start(lines),
        _separator_start(lines),
        _trailing_quote_start(lines),
    ]
    return min((c for c in candidates if c is not None), default=len(lines))


def _without_footers(lines: list[str], end: int) -> int:
    """Move ``end`` up past trailing blank lines and mobile-client footers."""
    while end > 0 and (not lines[end - 1].strip() or _FOOTER.fullmatch(lines[end - 1].strip())):
        end -= 1
    return end


def _signature_start(lines: list[str], end: int) -> int:
    """Index of a ``--`` delimiter followed by at most a few lines before ``end``, else ``end``."""
    for i in range(max(0, end - _MAX_SIGNATURE_LINES - 1), end):
        if lines[i].rstrip(" ") == "--":
            return i
    return end


def trim_quoted(text: str) -> tuple[str, bool]:
    """Cut quoted replies, forwards, signatures and footers; ``(text, cut_anything)``.

    The input is expected to be ``clean_text`` output. When the cut would leave nothing of the
    sender's own words, the text is returned unchanged with ``False``.
    """
    lines = text.split("\n")
    end = _without_footers(lines, _quote_start(lines))
    end = _without_footers(lines, _signature_start(lines, end))
    body = "\n".join(lines[:end]).rstrip()
    if not body.strip() or body == text.rstrip():
        return text, False
    return body, True
