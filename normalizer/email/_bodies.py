"""The text and HTML bodies: which inline parts make the message's text.

``text/plain`` is preferred in ``multipart/alternative``; HTML is converted only when there is
no plain text, and kept in ``html`` as data.  Inline text parts of a ``multipart/mixed`` are
joined with a blank line; ``multipart/signed`` and ``multipart/report`` use their first part,
``multipart/related`` its root.  At most ``MAX_HTML_TO_TEXT`` characters of HTML are converted.
"""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message
from typing import Any, NamedTuple

from normalizer.email._charsets import decode_text
from normalizer.email._headers import raw_header
from normalizer.email._parts import (
    PartInfo,
    content_bytes,
    header_view,
    param_text,
    part_info,
    subparts,
)
from normalizer.limits import MAX_HTML_TO_TEXT, MAX_MIME_DEPTH

HtmlToText = Callable[[str], str]


class _Body(NamedTuple):
    """Text segments in order (``(is_html, text)``) and the HTML kept as data."""

    segments: tuple[tuple[bool, str], ...] = ()
    html: tuple[str, ...] = ()

    @property
    def has_plain(self) -> bool:
        return any(not is_html and text.strip() for is_html, text in self.segments)

    @property
    def has_text(self) -> bool:
        return any(text.strip() for _, text in self.segments)


def bodies(
    msg: Message, flags: dict[str, Any], html_to_text: HtmlToText
) -> tuple[str | None, str | None]:
    """(text, html): inline text segments joined by a blank line; HTML converted (with
    ``html_to_text``) if no plain."""
    body = _body(msg, 0)
    texts = [text for text in _converted(body.segments, flags, html_to_text) if text.strip()]
    if len(texts) > 1:
        texts = ["\n\n".join(text.strip("\n") for text in texts) + "\n"]
    html = "\n".join(body.html)
    return (texts[0] if texts else None), (html or None)


def _converted(
    segments: tuple[tuple[bool, str], ...], flags: dict[str, Any], html_to_text: HtmlToText
) -> list[str]:
    """The segments as text; at most ``MAX_HTML_TO_TEXT`` characters of HTML in all are
    converted (flagged ``html_truncated`` when there was more: it stays in ``html``)."""
    budget, texts = MAX_HTML_TO_TEXT, []
    for is_html, text in segments:
        if is_html:
            if len(text) > budget:
                flags["html_truncated"] = True
            texts.append(html_to_text(text[:budget]) if budget > 0 else "")
            budget -= len(text)
        else:
            texts.append(text)
    return texts


def _body(part: Message, depth: int) -> _Body:
    info = part_info(part)
    parts = subparts(part, info)
    if parts is None:
        return _leaf_body(part, info)
    if depth >= MAX_MIME_DEPTH or not parts:
        return _Body()
    subtype = info.content_type.split("/", 1)[1]
    if subtype == "alternative":
        return _alternative([_body(sub, depth + 1) for sub in parts])
    if subtype in ("signed", "report"):
        return _body(parts[0], depth + 1)
    if subtype == "related":
        return _body(_related_root(part, parts), depth + 1)
    if subtype == "encrypted":
        return _Body()
    found = [_body(sub, depth + 1) for sub in parts]
    return _Body(
        segments=tuple(s for b in found for s in b.segments),
        html=tuple(h for b in found for h in b.html),
    )


def _leaf_body(part: Message, info: PartInfo) -> _Body:
    if not info.is_body:
        return _Body()
    text = _clean_body(decode_text(content_bytes(part), info.charset))
    if info.content_type == "text/html":
        return _Body(segments=((True, text),), html=(text,))
    return _Body(segments=((False, text),))


def _alternative(found: list[_Body]) -> _Body:
    """The last alternative with plain text (else the last with any text); the last HTML."""
    with_plain = [body for body in found if body.has_plain]
    with_text = with_plain or [body for body in found if body.has_text] or found
    with_html = [body for body in found if body.html]
    html = with_html[-1].html if with_html else ()
    return _Body(segments=with_text[-1].segments, html=html)


def _related_root(part: Message, parts: list[Message]) -> Message:
    """The part named by ``start``, else the first part of a multipart/related."""
    start = param_text(header_view(part).get_param("start"))
    if start:
        for sub in parts:
            if (raw_header(sub, "content-id") or "").strip() == start.strip():
                return sub
    return parts[0]


def _clean_body(text: str) -> str:
    text = text.removeprefix("\ufeff").replace("\x00", "")
    return text.replace("\r\n", "\n").replace("\r", "\n")
