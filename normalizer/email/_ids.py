"""Identifiers: the idempotency key of a raw mail, and the message ids it threads by.

The key, :func:`email_external_id`, is ``<Message-ID>|sha256:<hex>`` over the raw bytes with
line endings normalized, so a Message-ID reused for different content does not collide and a
mail saved with CRLF or LF gets the same key.  In-Reply-To and References are read as lists of
``<id>`` tokens, bounded in number and length.
"""

from __future__ import annotations

import hashlib
import re

from normalizer.email._headers import (
    MESSAGE_ID,
    clean_message_id,
    normalize_line_endings,
    raw_headers,
)

MAX_EXTERNAL_ID = 512
_HASH_PART = len("|sha256:") + 64
_DIGEST_CHUNK = 1024 * 1024
_MAX_REFERENCES = 100
_MAX_ID_LENGTH = 998
_ID_TOKEN = re.compile(r"<([^<>]*)>|([^\s<>,;\"()]+)")
"""A bracketed id, or a bare word (an id when it holds an ``@``): words never overlap, so a
header of 100,000 characters is read in one pass (``[^…]+@[^…]+`` tried it from every
position: quadratic)."""
_COMMENT = re.compile(r"\([^()<>]*\)")


# --- the idempotency key ---------------------------------------------------------------------


def email_external_id(payload: bytes) -> str:
    """``<Message-ID>|sha256:<hex>`` (or ``sha256:<hex>`` without one); never raises."""
    data = bytes(payload)
    digest = _normalized_digest(data)
    try:
        message_id = _raw_message_id(data)
    except Exception:  # the key must exist whatever the bytes are
        message_id = None
    if not message_id:
        return f"sha256:{digest}"
    return f"{message_id[: MAX_EXTERNAL_ID - _HASH_PART]}|sha256:{digest}"


def _normalized_digest(data: bytes) -> str:
    """sha256 of ``data`` with line endings normalized, a chunk at a time (a large mail is not
    copied whole; a chunk never ends between the CR and LF of one line ending)."""
    digest = hashlib.sha256()
    start = 0
    while start < len(data):
        end = start + _DIGEST_CHUNK
        if data[end - 1 : end] == b"\r":
            end += 1
        digest.update(normalize_line_endings(data[start:end]))
        start = end
    return digest.hexdigest()


def _raw_message_id(data: bytes) -> str | None:
    for name, value in raw_headers(data):
        if name.lower() == b"message-id":
            return clean_message_id(value.decode("ascii", "replace"))
    return None


# --- threading --------------------------------------------------------------------------------


def message_ids(value: str) -> list[str]:
    """``<id>`` tokens in order, brackets added where missing, repeats and comments dropped."""
    found: list[str] = []
    for match in _ID_TOKEN.finditer(_COMMENT.sub(" ", value)):
        word = match.group(2)
        if word is not None and "@" not in word[1:-1]:
            continue
        inner = "".join((match.group(1) or word or "").split())
        token = f"<{inner}>"
        if inner and len(token) <= _MAX_ID_LENGTH and token not in found:
            found.append(token)
    return found


def first_id(value: str | None) -> str | None:
    """The first bracketed id of In-Reply-To, else the first bare ``local@domain``."""
    bracketed = MESSAGE_ID.search(value or "")
    if bracketed:
        return bracketed.group(0)
    ids = message_ids(value or "")
    return ids[0] if ids else None


def references(value: str) -> list[str]:
    """Every id of References in order; a very long chain keeps its first and last ids."""
    ids = message_ids(value)
    if len(ids) > _MAX_REFERENCES:
        ids = ids[:1] + ids[-(_MAX_REFERENCES - 1) :]
    return ids
