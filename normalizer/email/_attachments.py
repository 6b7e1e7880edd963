"""Attachments: every leaf that is not an inline text body, with its bytes, type and safe name.

Signatures, inline images, calendar invites and delivery reports are attachments too; an
attached ``message/rfc822`` is one ``<subject>.eml`` attachment holding the inner message's
bytes.  Types are checked against magic bytes and names made safe; at most ``MAX_ATTACHMENTS``
are kept (how many more there were is flagged ``attachments_omitted``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from normalizer.email._filetypes import sniff_content_type
from normalizer.email._headers import raw_header_map
from normalizer.email._leaves import Leaf
from normalizer.filenames import safe_filename
from normalizer.limits import MAX_ATTACHMENTS
from omnichannel.schema import Attachment


def attachments(leaves: list[Leaf], flags: dict[str, Any]) -> list[Attachment]:
    """Every leaf that is not an inline text/plain or text/html body part, the first
    ``MAX_ATTACHMENTS`` of them (how many more there were is flagged ``attachments_omitted``)."""
    found: list[Attachment] = []
    omitted = 0
    for leaf in leaves:
        if leaf.info.is_body:
            continue
        if len(found) < MAX_ATTACHMENTS:
            found.append(_attachment(leaf, len(found) + 1))
        else:
            omitted += 1
    if omitted:
        flags["attachments_omitted"] = omitted
    return found


def _attachment(leaf: Leaf, index: int) -> Attachment:
    content = leaf.content
    if leaf.info.maintype == "message":
        content_type = leaf.info.content_type
        name = leaf.info.filename or _message_filename(content)
    else:
        name = leaf.info.filename
        content_type = sniff_content_type(content, declared=leaf.info.content_type, filename=name)
    return Attachment(
        filename=safe_filename(name, content_type=content_type, index=index),
        content_type=content_type,
        size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        content=content,
    )


def _message_filename(content: bytes) -> str | None:
    """``<subject>.eml`` for an attached message (slashes kept out of the name)."""
    subject = raw_header_map(content).get("subject", "")
    subject = re.sub(r"[/\\]+", "-", subject).strip()
    return f"{subject}.eml" if subject else None
