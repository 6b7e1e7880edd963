"""Leaf parts with their raw bytes: each leaf of the parsed tree, and where the payload holds it.

The raw entity is found by splitting each multipart's raw bytes at its boundary lines as the
``email`` feed parser delimits them; it is a view of the payload (large parts are not copied)
and gives an attached message back exactly as it was sent.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from email.message import Message
from typing import NamedTuple

from normalizer.email._parts import PartInfo, content_bytes, part_info, subparts
from normalizer.limits import MAX_MIME_DEPTH
from normalizer.mime import transfer_decoded

_HEADER_END = re.compile(rb"\r?\n\r?\n")


class Leaf(NamedTuple):
    part: Message
    info: PartInfo
    raw: memoryview | None
    """The part's raw entity (headers and body) as found in the payload, when located (a view
    of the payload: large parts are not copied)."""

    @property
    def content(self) -> bytes:
        """Transfer-decoded content; an attached message as its original bytes."""
        if self.info.maintype == "message" and self.raw is not None:
            return transfer_decoded(_entity_body(self.raw), self.info.transfer_encoding)
        return content_bytes(self.part)


def leaves(part: Message, raw: memoryview | None, depth: int = 0) -> Iterator[Leaf]:
    """Every leaf part, depth first, with its raw bytes when the MIME split agrees."""
    info = part_info(part)
    parts = subparts(part, info)
    if parts is None:
        yield Leaf(part, info, raw)
        return
    if depth >= MAX_MIME_DEPTH:  # (the parser stops there too, flagging ``mime_truncated``)
        return
    pieces = None
    if raw is not None and info.boundary:
        pieces = _split_multipart(raw, info.boundary, len(parts))
    if pieces is None or len(pieces) != len(parts):
        pieces = [None] * len(parts)
    for sub, piece in zip(parts, pieces, strict=True):
        yield from leaves(sub, piece, depth + 1)


def _entity_body(entity: memoryview) -> memoryview:
    """What follows the header block of a raw MIME entity."""
    if bytes(entity[:1]) == b"\n":
        return entity[1:]
    if bytes(entity[:2]) == b"\r\n":
        return entity[2:]
    found = _HEADER_END.search(entity)
    return entity[found.end() :] if found else entity[:0]


def _split_multipart(
    entity: memoryview, boundary: str, expected: int
) -> list[memoryview | None] | None:
    """The raw parts of a multipart entity, as the ``email`` feed parser delimits them (more
    than the ``expected`` parts the parser found are not looked for: they cannot match)."""
    try:
        marker = re.escape(boundary.encode("ascii"))
    except UnicodeEncodeError:
        return None
    body = _entity_body(entity)
    # "^--boundary" with the literal first (the regex engine skips ahead fast), at a line start
    found = re.finditer(rb"--" + marker + rb"(--)?[ \t]*\r?$", body, re.MULTILINE)
    at_line_start = (m for m in found if m.start() == 0 or body[m.start() - 1] == 0x0A)
    delimiters = list(itertools.islice(at_line_start, expected + 2))
    pieces: list[memoryview | None] = []
    for index, current in enumerate(delimiters):
        if current.group(1):  # the closing delimiter
            break
        following = delimiters[index + 1] if index + 1 < len(delimiters) else None
        start = current.end()
        if bytes(body[start : start + 1]) == b"\n":
            start += 1
        end = following.start() if following else len(body)
        if following:  # the line ending before a delimiter belongs to the delimiter
            end = _before_line_end(body, start, end)
        pieces.append(body[start:end])
    return pieces


def _before_line_end(data: memoryview, start: int, end: int) -> int:
    """``end`` moved back over one final LF, then one CR (not before ``start``)."""
    if end > start and data[end - 1] == 0x0A:  # LF
        end -= 1
    if end > start and data[end - 1] == 0x0D:  # CR
        end -= 1
    return end
