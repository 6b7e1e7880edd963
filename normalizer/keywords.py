"""Keywords a citizen writes to ask for anonymity or confidentiality on a channel without a
form (SMS, WhatsApp, e-mail): ``#ANONIM``, ``#RAHASIA`` by default, configurable.

A keyword counts as a whole token in any case (``#rahasia``, ``#RAHASIA.``), in the subject or
the text, and is taken out of them: the flag records it, and the team reads the complaint
without it. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["DEFAULT_ANONYMOUS", "DEFAULT_CONFIDENTIAL", "PrivacyKeywords", "take_keywords"]

DEFAULT_ANONYMOUS = ("#ANONIM",)
DEFAULT_CONFIDENTIAL = ("#RAHASIA",)


@dataclass(frozen=True)
class PrivacyKeywords:
    """The keywords of each kind (``[privacy] keywords_anonymous``, ``keywords_confidential``)."""

    anonymous: tuple[str, ...] = DEFAULT_ANONYMOUS
    confidential: tuple[str, ...] = DEFAULT_CONFIDENTIAL


@lru_cache(maxsize=64)
def _pattern(keywords: tuple[str, ...]) -> re.Pattern[str] | None:
    words = [re.escape(k.strip()) for k in keywords if k.strip()]
    if not words:
        return None
    alternatives = "|".join(sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w#@])(?:{alternatives})(?!\w)", re.IGNORECASE)


def take_keywords(text: str, keywords: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` without the keywords (and the spaces they leave), and whether one was there."""
    pattern = _pattern(tuple(keywords))
    if pattern is None or not text:
        return text, False
    cleaned, count = pattern.subn("", text)
    if not count:
        return text, False
    cleaned = re.sub(r"[ \t]{2,}", " ", cleaned)
    cleaned = re.sub(r"[ \t]+\n", "\n", cleaned)
    return cleaned.strip(), True
