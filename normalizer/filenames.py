"""Attachment filenames from outside: data, never paths (pure).

A filename arrives from a citizen's mail client, a portal upload, a WhatsApp document, a Twilio
media URL or a ``.json`` document; every decoder and :func:`normalizer.normalize` pass it
through :func:`safe_filename`, so whatever later shows it, exports it or writes it into a
folder gets one plain name: no directory or drive (``../../etc/passwd``, ``C:\\x.exe``,
``C:x.exe``, ``/abs``, ``..``), no control, format or bidi character, no Windows device name
(``CON``, ``NUL.txt``, ``COM1``), bounded in characters and UTF-8 bytes with the extension kept,
and never empty (``attachment-<n>.<extension of the content type>``).  An attachment that came
without a name keeps None.  The raw payload is stored as received: the original name is not
lost, and it is not repeated anywhere else.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from omnichannel.schema import Attachment

__all__ = [
    "EXTENSION_TYPES",
    "MAX_FILENAME",
    "MAX_FILENAME_BYTES",
    "TYPE_EXTENSIONS",
    "extension_for",
    "safe_attachments",
    "safe_filename",
    "safe_filename_or_none",
]

MAX_FILENAME = 200
"""Characters kept of a name (the extension survives truncation)."""
MAX_FILENAME_BYTES = 240
"""UTF-8 bytes kept of a name: most file systems stop at 255."""

EXTENSION_TYPES = {
    "pdf": "application/pdf",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "tif": "image/tiff",
    "tiff": "image/tiff",
    "doc": "application/msword",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xls": "application/vnd.ms-excel",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "ppt": "application/vnd.ms-powerpoint",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "odt": "application/vnd.oasis.opendocument.text",
    "ods": "application/vnd.oasis.opendocument.spreadsheet",
    "msg": "application/vnd.ms-outlook",
    "zip": "application/zip",
    "rar": "application/vnd.rar",
    "7z": "application/x-7z-compressed",
    "mp4": "video/mp4",
    "3gp": "video/3gpp",
    "mov": "video/quicktime",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "ogg": "audio/ogg",
    "opus": "audio/ogg",
    "amr": "audio/amr",
    "wav": "audio/wav",
    "txt": "text/plain",
    "csv": "text/csv",
    "html": "text/html",
    "ics": "text/calendar",
    "vcf": "text/vcard",
    "eml": "message/rfc822",
    "p7s": "application/pkcs7-signature",
    "asc": "application/pgp-signature",
    "kml": "application/vnd.google-earth.kml+xml",
    "kmz": "application/vnd.google-earth.kmz",
}
"""The content type a filename extension stands for (attachment sniffing uses it too)."""

TYPE_EXTENSIONS = {
    **{content_type: ext for ext, content_type in reversed(EXTENSION_TYPES.items())},
    "application/octet-stream": "bin",
    "application/pkcs7-signature": "p7s",
    "application/x-pkcs7-signature": "p7s",
    "application/pkcs7-mime": "p7m",
    "text/rfc822-headers": "txt",
    "message/delivery-status": "txt",
    "message/disposition-notification": "txt",
    "application/x-ole-storage": "bin",
}
"""The extension a fallback name gets for a content type."""

# Characters dropped: controls (C0, DEL, C1: ESC, CR/LF, NUL), format characters (bidi
# overrides such as U+202E, zero-width ones), surrogates, private use, unassigned, and the line
# and paragraph separators.
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Slash-like characters that some Windows code pages map to "/" or "\" ("best fit"); the
# full-width and small forms of ASCII punctuation are first turned into ASCII (_ascii_form).
_SEPARATORS = re.compile(r"[/\\\u2215\u2044\u29f8\u29f9\u2216]")
_LOOKALIKE = re.compile(r"[^\x00-\x7f]")
_HAZARDS = frozenset("/\\:")
_DOTS = ".\u2024\u2025\u2026\ufe19\ufe30\ufe52\uff0e"  # "." and the dot leaders
# "C:x.exe" is x.exe in the current folder of drive C: a path, like "C:\\x.exe".
_DRIVE = re.compile(r"\A[A-Za-z]:")
_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "CLOCK$"}
    | {f"{stem}{n}" for stem in ("COM", "LPT") for n in "0123456789\u00b9\u00b2\u00b3"}
)


def extension_for(content_type: str) -> str:
    """A safe extension (no dot) for ``content_type``; ``bin`` when none is known."""
    return TYPE_EXTENSIONS.get(content_type.split(";", 1)[0].strip().lower(), "bin")


def safe_filename(
    name: str | None, *, content_type: str = "application/octet-stream", index: int = 1
) -> str:
    """A filename safe to store, show and write into a folder; never empty; idempotent.

    The last path component (``/``, ``\\`` and their look-alikes all separate), NFC, without
    control, format, bidi or unassigned characters, without a drive (``C:``), leading dots,
    dashes or spaces and trailing dots or spaces, a Windows device name prefixed with ``_``,
    at most :data:`MAX_FILENAME` characters and :data:`MAX_FILENAME_BYTES` bytes
    keeping the extension.  Nothing left: ``attachment-<index>.<extension for content_type>``.
    """
    base = _SEPARATORS.split(_LOOKALIKE.sub(_ascii_form, unicodedata.normalize("NFC", name or "")))
    cleaned = "".join(ch for ch in base[-1] if unicodedata.category(ch) not in _DROPPED)
    cleaned = unicodedata.normalize("NFC", cleaned)  # what was dropped may have split a pair
    cleaned = _bare(" ".join(cleaned.split()))
    if not cleaned:
        return f"attachment-{index}.{extension_for(content_type)}"
    return _truncated(_not_a_device(cleaned))


def safe_filename_or_none(
    name: str | None, *, content_type: str = "application/octet-stream", index: int = 1
) -> str | None:
    """:func:`safe_filename` of a name the channel gave; None when it gave none."""
    return None if name is None else safe_filename(name, content_type=content_type, index=index)


def safe_attachments(attachments: Sequence[Attachment]) -> list[Attachment]:
    """``attachments`` with every given filename made safe (numbered from 1 for fallbacks)."""
    return [
        item.model_copy(
            update={
                "filename": safe_filename_or_none(
                    item.filename, content_type=item.content_type, index=position
                )
            }
        )
        for position, item in enumerate(attachments, start=1)
    ]


def _ascii_form(match: re.Match[str]) -> str:
    """A full-width or small form of a path character (U+FF0F, U+FF3C, U+FF1A) as its ASCII
    equivalent, so that it separates (or names a drive) like the original; other characters
    stay as they are (``№`` stays)."""
    char = match.group()
    folded = unicodedata.normalize("NFKC", char)
    return folded if _HAZARDS.intersection(folded) else char


def _bare(name: str) -> str:
    """Trimmed (:func:`_trimmed`) and without a drive, however the two are interleaved."""
    while True:
        bare = _trimmed(_DRIVE.sub("", _trimmed(name)))
        if bare == name:
            return bare
        name = bare


def _trimmed(name: str) -> str:
    """Without leading dots (hidden files, ``..``), dashes (read as options) and spaces, and
    without trailing dots and spaces (Windows drops them, turning ``a.exe.`` into ``a.exe``)."""
    return name.lstrip(_DOTS + " -").rstrip(_DOTS + " ")


def _not_a_device(name: str) -> str:
    """``_CON.txt`` for ``CON.txt``: Windows opens a device for such a name, any extension."""
    stem = name.split(".", 1)[0].rstrip(" ")
    return "_" + name if stem.upper() in _DEVICES else name


def _truncated(name: str) -> str:
    if len(name) <= MAX_FILENAME and len(name.encode("utf-8")) <= MAX_FILENAME_BYTES:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not 0 < len(extension) <= 16 or not extension.isalnum() or not stem:
        return _trimmed(_cut(name, MAX_FILENAME)) or "attachment"
    room = MAX_FILENAME - len(extension) - 1
    stem = _trimmed(_cut(stem, room, MAX_FILENAME_BYTES - len(extension.encode("utf-8")) - 1))
    return f"{stem or 'attachment'}.{extension}"


def _cut(text: str, chars: int, max_bytes: int = MAX_FILENAME_BYTES) -> str:
    """At most ``chars`` characters and ``max_bytes`` UTF-8 bytes of ``text``."""
    return text[:chars].encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
