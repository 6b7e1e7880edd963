"""MIME parts: what each part's raw headers say (type, disposition, filename, charset,
boundary, transfer encoding), its subparts, and its content bytes.

Parameters are read from the raw header text, the same way under both parser policies: RFC 2231
values with continuations in their declared charset (with the mail rules of
:func:`~normalizer.email._charsets.decode_text`), raw 8-bit bytes, and RFC 2047 words.
"""

from __future__ import annotations

import re
from email.message import Message
from email.policy import Compat32, compat32
from typing import NamedTuple

from normalizer.email._charsets import decode_text
from normalizer.email._headers import decode_words, fix_8bit, raw_header, unfold
from normalizer.mime import payload_bytes, restored

_CONTENT_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+")


class PartInfo(NamedTuple):
    """What the raw headers of one MIME part say."""

    content_type: str
    disposition: str | None
    filename: str | None
    charset: str | None
    boundary: str | None
    transfer_encoding: str

    @property
    def maintype(self) -> str:
        return self.content_type.split("/", 1)[0]

    @property
    def is_body(self) -> bool:
        """An inline text/plain or text/html part without a filename."""
        inline = self.disposition != "attachment" and self.filename is None
        return inline and self.content_type in ("text/plain", "text/html")


class _RawHeaderPolicy(Compat32):
    """``compat32`` that hands header values back exactly as stored (8-bit bytes included)."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


_RAW_HEADER_POLICY = _RawHeaderPolicy()


def header_view(part: Message) -> Message:
    """A message holding the part's raw MIME headers, to read parameters from.

    The modern policy hands parameters back already decoded (Latin-1 as Latin-1, unknown
    charsets and raw 8-bit bytes garbled); the raw text, read the same way under both policies,
    keeps our rules.
    """
    view = Message(policy=_RAW_HEADER_POLICY)
    for name in ("content-type", "content-disposition", "content-transfer-encoding"):
        raw = raw_header(part, name)
        if raw is not None:
            view[name] = unfold(raw)
    view.set_default_type(part.get_default_type())
    return view


def part_info(part: Message) -> PartInfo:
    """Content type and parameters from the part's raw headers (worked out once per part)."""
    cached: PartInfo | None = getattr(part, "_omni_info", None)
    if cached is None:
        cached = _read_info(part)
        part._omni_info = cached  # type: ignore[attr-defined]
    return cached


def _read_info(part: Message) -> PartInfo:
    view = header_view(part)
    content_type = view.get_content_type()
    if not _CONTENT_TYPE.fullmatch(content_type):
        content_type = "text/plain"  # what RFC 2045 says an unreadable Content-Type means
    if content_type.startswith("multipart/") and not part.is_multipart():
        content_type = "text/plain"  # no usable boundary: the parser kept the body as text
    return PartInfo(
        content_type=content_type,
        disposition=view.get_content_disposition(),
        filename=_filename_param(view),
        charset=(param_text(view.get_param("charset")) or "").strip().lower() or None,
        boundary=view.get_boundary(),
        transfer_encoding=str(view.get("content-transfer-encoding", "")).strip().lower(),
    )


def _filename_param(view: Message) -> str | None:
    """``filename`` of Content-Disposition (RFC 2231 form preferred), else ``name``."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        values = [v for k, v in (view.get_params(header=header) or [])[1:] if k == param]
        values.sort(key=lambda v: not isinstance(v, tuple))
        if values:
            return param_text(values[0])
    return None


def param_text(value: str | tuple[str | None, str | None, str] | None) -> str | None:
    """A parameter value decoded: RFC 2231 with the mail charset rules, 8-bit, RFC 2047."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return decode_words(_rfc2231_text(value[2], value[0]))
    return decode_words(fix_8bit(value))


def _rfc2231_text(text: str, charset: str | None) -> str:
    """An RFC 2231 value (percent escapes already read as Latin-1) in its declared charset."""
    try:
        raw = text.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:
        return fix_8bit(text)
    return decode_text(raw, charset or None)


def subparts(part: Message, info: PartInfo) -> list[Message] | None:
    """The parts of a multipart, or None for a leaf (attached messages are leaves)."""
    if info.maintype != "multipart" or not part.is_multipart():
        return None
    return [sub for sub in part.get_payload() if isinstance(sub, Message)]


def content_bytes(part: Message) -> bytes:
    """The part's content after transfer decoding (large bodies read from the raw payload)."""
    payload = payload_bytes(part)
    if payload is not None:
        return payload
    return _generated_bytes(part)


def _generated_bytes(part: Message) -> bytes:
    """An attached message regenerated from its parsed parts (when its raw bytes are not found)."""
    chunks: list[bytes] = []
    for sub in part.get_payload() if part.is_multipart() else []:
        if not isinstance(sub, Message):
            continue
        try:
            chunks.append(restored(sub, sub.as_bytes(policy=compat32)))
        except Exception:  # the generator cannot write some broken parts
            continue
    return b"\n".join(chunks)
