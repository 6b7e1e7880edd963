"""Subjects: reply and forward prefixes in the languages complaints arrive in."""

from __future__ import annotations

import re

_REPLY_PREFIXES = re.compile(
    r"^(?:\s*(?:re|fwd?|balas|bls|trs|tr|aw|wg|antw)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a])+\s*",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """The subject without leading reply/forward prefixes (``Re: Fwd: Balas: Re[2]:`` ...).

    English, Indonesian (``Balas:``, ``Bls:``), French (``Tr:``, ``Trs:``), German (``AW:``,
    ``WG:``) and Dutch (``Antw:``) prefixes, in any case and spacing, repeated or mixed.
    Bracketed tags such as a ticket number ``[ADU-2026-000123]`` are kept.
    """
    return _REPLY_PREFIXES.sub("", subject).strip()
