"""How much work one message may cause, whatever its sender made of it (hostile input).

Decoders stop at these limits rather than spend minutes of CPU or many times a message's size in
memory on it. What lies beyond a limit is never silently dropped: the raw payload is kept whole
(``quarantine replay`` decodes it again), and the message is flagged with what was left out
(``mime_truncated``, ``attachments_omitted``, ``html_truncated``) — or, for a web request that
waits for its answer, refused with a 4xx naming the field. The limits are far above what a
citizen's complaint needs, so they are constants, not configuration.
"""

from __future__ import annotations

__all__ = [
    "LARGE_BODY",
    "MAX_ATTACHMENTS",
    "MAX_BOUNDARY_CHECKS",
    "MAX_FIELD_DEPTH",
    "MAX_FORM_FIELDS",
    "MAX_HTML_TO_TEXT",
    "MAX_MIME_DEPTH",
    "MAX_MIME_PARTS",
]

MAX_MIME_PARTS = 1000
"""MIME parts parsed per e-mail or multipart form (a mail of a thousand photos is over any
mailbox's size limit long before)."""
MAX_MIME_DEPTH = 32
"""Nested multiparts parsed (real mail nests a handful; each level costs the parser a boundary
check on every line below it)."""
MAX_BOUNDARY_CHECKS = 2_000_000
"""Boundary checks the MIME parser may make per message (lines that start with ``--`` or are
blank, times the multiparts open around them): a fraction of a second."""
LARGE_BODY = 4096
"""Part bodies larger than this (bytes) are kept out of the MIME parser and decoded straight
from the payload, so that a large attachment is not held several times over."""
MAX_ATTACHMENTS = 100
"""Attachments kept per message; the others stay in the raw payload, counted in the
``attachments_omitted`` flag."""
MAX_FORM_FIELDS = 1000
"""Fields of a web form (urlencoded or multipart) or items of a list in it; a portal's complaint
form has about twenty."""
MAX_HTML_TO_TEXT = 1024 * 1024
"""Characters of HTML converted to text per message (about two seconds of ``inscriptis``); the
rest of the HTML is kept as data, and the message flagged ``html_truncated``."""
MAX_FIELD_DEPTH = 16
"""Levels of a form field name (``location[lat]`` is two): each level is a dictionary, and a
name of a million brackets would be a million of them."""
