"""Bounded MIME parsing: the standard library's ``email`` parser, kept to bounded work (pure).

Left alone, the parser can be made to take minutes or ten times a message's size in memory: it
checks each line against every boundary open around it (deep nesting costs lines times depth),
makes an object per part (tens of thousands of parts), and holds a large body several times over
(as text, as a list of lines, joined again, then transfer-decoded). :func:`parse` bounds all
three:

- **Large bodies stay out of the parser.** Every part body over ``LARGE_BODY`` bytes is replaced
  by a one-line stand-in (a random token and a number) before parsing; :func:`payload_bytes`
  reads the original bytes back and transfer-decodes them straight from the payload. The parser
  still sees the whole structure: what it is not shown holds no line starting with ``--`` (no
  boundary), and bodies of ``multipart/*`` and ``message/*`` parts are always shown.
- **At most ``MAX_MIME_PARTS`` parts, ``MAX_MIME_DEPTH`` nested multiparts and
  ``MAX_BOUNDARY_CHECKS`` boundary checks.** Past a limit the input ends there, as for a mail cut
  off in transit: the parser closes what is open, and :attr:`Parsed.truncated` names the limit.

This leans on two internals of ``email.feedparser`` that have not changed since Python 3.3:
the parser reads lines from ``self._input`` (a ``BufferedSubFile``), and it pushes one
end-of-part matcher per subpart, each matching only a line that starts with ``--`` or a blank
line. An unknown matcher turns the shortcut off; the limits hold either way.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import feedparser
from email.feedparser import BytesFeedParser
from email.message import Message
from email.policy import Policy
from io import StringIO
from typing import Any

from normalizer.limits import LARGE_BODY, MAX_BOUNDARY_CHECKS, MAX_MIME_DEPTH, MAX_MIME_PARTS

__all__ = ["Parsed", "parse", "payload_bytes", "restored", "transfer_decoded"]

_CHUNK = 64 * 1024
_LINE_END = rb"(?:\r\n|\r(?!\n)|\n)"
_BLANK_LINE = re.compile(_LINE_END + _LINE_END)
_STRUCTURED = re.compile(rb"(?:multipart|message)/", re.IGNORECASE)
# (internals the type stubs do not describe)
_BufferedSubFile: Any = feedparser.BufferedSubFile  # type: ignore[attr-defined]
_NeedMoreData: Any = feedparser.NeedMoreData  # type: ignore[attr-defined]
_NLCRE: re.Pattern[str] = feedparser.NLCRE  # type: ignore[attr-defined]
_UUENCODE = frozenset({"x-uuencode", "uuencode", "uue", "x-uue"})
_LINE_STARTS = ("-", "\r", "\n")


@dataclass
class _Spool:
    """The original payload and the spans of it the parser was shown as stand-ins."""

    data: memoryview
    token: str = field(default_factory=lambda: f"omnichannel-stand-in-{secrets.token_hex(8)}-")
    spans: list[tuple[int, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.text_pattern = re.compile(re.escape(self.token) + r"(\d+)")
        self.bytes_pattern = re.compile(re.escape(self.token.encode()) + rb"(\d+)")

    def stand_in(self, start: int, end: int) -> bytes:
        self.spans.append((start, end))
        return f"{self.token}{len(self.spans) - 1}".encode()

    def span(self, index: str | bytes) -> memoryview:
        start, end = self.spans[int(index)]
        return self.data[start:end]


@dataclass
class Parsed:
    """A parsed message, and the limit that cut it short (None when it was parsed whole)."""

    message: Message
    truncated: str | None = None
    """``parts``, ``depth`` or ``checks``: the limit at which the input was taken to end."""
    parts: int = 0
    """Subparts the parser began (the work it did, for measurements)."""
    checks: int = 0
    """Boundary checks it made."""
    hidden: int = 0
    """Bytes of large bodies it was not shown (read from the payload instead)."""


def parse(data: bytes, policy: Policy, *, head: bytes = b"") -> Parsed:
    """Parse ``head + data`` like ``BytesParser(policy=policy).parsebytes``, within the limits
    (``head``: headers to read ``data`` under, such as a form's Content-Type; not copied in)."""
    spool = _Spool(memoryview(data))
    skeleton = _skeleton(data, spool)
    parser = _BoundedParser(policy=policy)
    parser.feed(head)
    for start in range(0, len(skeleton), _CHUNK):
        parser.feed(skeleton[start : start + _CHUNK])
        if parser.bounded.truncated:
            break
    message = parser.close()
    if spool.spans:
        for part in _parts(message):
            part._omni_spool = spool  # type: ignore[attr-defined]
    bounded = parser.bounded
    hidden = sum(end - start for start, end in spool.spans)
    return Parsed(message, bounded.truncated, bounded.parts, bounded.checks, hidden)


def _parts(message: Message) -> Iterator[Message]:
    """Every part, attached messages included, without recursion (the depth is bounded anyway)."""
    stack = [message]
    while stack:
        part = stack.pop()
        yield part
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(sub for sub in payload if isinstance(sub, Message))


# -- large bodies out of the parser ------------------------------------------------------------


def _skeleton(data: bytes, spool: _Spool) -> bytes:
    """``data`` with each large leaf body replaced by a stand-in line (recorded in ``spool``)."""
    pieces: list[bytes | memoryview] = []
    shown = 0
    start = 0
    for line in _dash_lines(data):
        if line - start > LARGE_BODY:
            shown = _hide_body(data, start, line, shown, pieces, spool)
        start = line
    if len(data) - start > LARGE_BODY:
        shown = _hide_body(data, start, len(data), shown, pieces, spool)
    if not pieces:
        return data
    pieces.append(spool.data[shown:])
    return b"".join(pieces)


def _dash_lines(data: bytes) -> Iterator[int]:
    """The offsets of the lines that start with ``--`` (the only lines the parser can take for
    a boundary), found with ``bytes.find``, which skips ahead far faster than a regex. The
    parser ends lines at CR, LF and CRLF alike."""
    after_lf, after_cr = data.find(b"\n--"), data.find(b"\r--")
    while after_lf >= 0 or after_cr >= 0:
        if after_cr < 0 or 0 <= after_lf < after_cr:
            yield after_lf + 1
            after_lf = data.find(b"\n--", after_lf + 1)
        else:
            yield after_cr + 1
            after_cr = data.find(b"\r--", after_cr + 1)


def _hide_body(
    data: bytes,
    start: int,
    end: int,
    shown: int,
    pieces: list[bytes | memoryview],
    spool: _Spool,
) -> int:
    """Replace the body of the region ``[start, end)`` (a delimiter line, headers, blank line,
    body) when it is large and not structured; the offset shown up to."""
    header_start = start if start == 0 else _line_end(data, start, end)
    if header_start < 0:
        return shown
    blank = _BLANK_LINE.search(data, header_start, end)
    if blank is None or _STRUCTURED.search(data, header_start, blank.start()):
        return shown
    body_start, body_end = blank.end(), _without_line_end(data, blank.end(), end)
    if body_end - body_start <= LARGE_BODY:
        return shown
    pieces.append(spool.data[shown:body_start])
    pieces.append(spool.stand_in(body_start, body_end))
    return body_end


def _line_end(data: bytes, start: int, end: int) -> int:
    """The offset of the line ending of the line at ``start`` (-1 when none before ``end``)."""
    found = [at for at in (data.find(b"\n", start, end), data.find(b"\r", start, end)) if at >= 0]
    return min(found, default=-1)


def _without_line_end(data: bytes, start: int, end: int) -> int:
    """``end`` moved before one final line ending (which belongs to the next boundary)."""
    if end > start and data[end - 1 : end] == b"\n":
        end -= 1
    if end > start and data[end - 1 : end] == b"\r":
        end -= 1
    return end


# -- the parser within its limits --------------------------------------------------------------


def _is_known_matcher(matcher: Callable[[str], Any]) -> bool:
    """A matcher of the kinds the feed parser pushes: a boundary or a blank line."""
    pattern = getattr(getattr(matcher, "__self__", None), "pattern", None)
    if not isinstance(pattern, str):
        return False
    boundary = pattern.startswith(("(?P<sep>--", "(?P<sep>" + re.escape("--")))
    return boundary or pattern == _NLCRE.pattern


class _BoundedInput(_BufferedSubFile):  # type: ignore[misc]
    """The feed parser's line source: lines no boundary can match skip the boundary checks,
    and past a limit the input ends (the parser then closes what is open)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts = 0
        self.checks = 0
        self.truncated: str | None = None
        self._shortcut = True

    def push_eof_matcher(self, pred: Callable[[str], Any]) -> None:
        self.parts += 1  # one matcher per subpart
        self._shortcut = self._shortcut and _is_known_matcher(pred)
        if len(self._eofstack) >= MAX_MIME_DEPTH:
            self._end("depth")
        elif self.parts > MAX_MIME_PARTS:
            self._end("parts")
        super().push_eof_matcher(pred)

    def readline(self) -> Any:
        if not self._lines:
            return "" if self._closed else _NeedMoreData
        line: str = self._lines.popleft()
        if not self._eofstack or (self._shortcut and not line.startswith(_LINE_STARTS)):
            return line
        self.checks += len(self._eofstack)
        if self.checks > MAX_BOUNDARY_CHECKS:
            self._end("checks")
            return ""
        for ateof in reversed(self._eofstack):  # innermost first, as the standard library does
            if ateof(line):
                self._lines.appendleft(line)
                return ""
        return line

    def pushlines(self, lines: Any) -> None:
        if self.truncated is None:
            super().pushlines(lines)

    def _end(self, limit: str) -> None:
        if self.truncated is None:
            self.truncated = limit
        self._lines.clear()
        self._partial = StringIO(newline="")
        self._closed = True


class _BoundedParser(BytesFeedParser):
    def __init__(self, *, policy: Policy) -> None:
        super().__init__(policy=policy)
        self.bounded = _BoundedInput()
        self._input = self.bounded  # read lazily by the parsing generator: not started yet


# -- payloads ----------------------------------------------------------------------------------


def payload_bytes(part: Message) -> bytes | None:
    """A leaf part's content after transfer decoding (None for a multipart or an attached
    message), large bodies read from the original payload."""
    spool: _Spool | None = getattr(part, "_omni_spool", None)
    # the payload as parsed: ``get_payload()`` would decode raw 8-bit bytes, lossily
    payload = getattr(part, "_payload", None)
    if spool is not None and isinstance(payload, str) and spool.token in payload:
        encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
        return transfer_decoded(_restored_text(payload, spool), encoding)
    decoded = part.get_payload(decode=True)
    return decoded if isinstance(decoded, bytes) else None


def restored(part: Message, data: bytes) -> bytes:
    """``data`` generated from ``part`` (``as_bytes``) with the original of each stand-in."""
    spool: _Spool | None = getattr(part, "_omni_spool", None)
    if spool is None or spool.token.encode() not in data:
        return data
    pieces = spool.bytes_pattern.split(data)
    return b"".join(spool.span(p) if i % 2 else p for i, p in enumerate(pieces))


def _restored_text(payload: str, spool: _Spool) -> bytes | memoryview:
    """A payload with stand-ins as its original bytes (the payload itself when it is one)."""
    pieces = spool.text_pattern.split(payload)
    if len(pieces) == 3 and not pieces[0] and not pieces[2]:
        return spool.span(pieces[1])  # the usual case: no copy
    return b"".join(
        spool.span(p) if i % 2 else p.encode("ascii", "surrogateescape")
        for i, p in enumerate(pieces)
    )


def transfer_decoded(data: bytes | memoryview, encoding: str) -> bytes:
    """Content-Transfer-Encoding undone as ``Message.get_payload(decode=True)`` does it."""
    if encoding == "base64":
        return _base64(data)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding in _UUENCODE:
        holder = Message()
        holder["Content-Transfer-Encoding"] = encoding
        holder.set_payload(bytes(data).decode("ascii", "surrogateescape"))
        decoded = holder.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else bytes(data)
    return bytes(data)


def _base64(data: bytes | memoryview) -> bytes:
    """Base64 with line breaks and stray characters skipped and missing padding forgiven;
    the data without its line breaks when it cannot be decoded (as the standard library)."""
    try:
        return binascii.a2b_base64(data)  # skips what is not base64, without copying first
    except binascii.Error:
        pass
    compact = b"".join(bytes(data).splitlines())
    try:
        return binascii.a2b_base64(compact + b"==")
    except binascii.Error:
        return compact
