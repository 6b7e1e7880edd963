"""Attachment content types checked against magic bytes (:func:`sniff_content_type`).

A declared type is kept unless it is generic or contradicts the bytes; ZIP and OLE containers
are told apart by the filename's extension (docx, xlsx, doc, xls ...); a generic type on bytes
of no known kind falls back to the extension.  The table covers what complaints carry: PDF,
images (PNG, JPEG, GIF, WebP, TIFF, HEIC/HEIF, AVIF), Office documents, archives, voice notes
and videos.
"""

from __future__ import annotations

from typing import NamedTuple

from normalizer.filenames import EXTENSION_TYPES

_GENERIC_TYPES = frozenset(
    {
        "application/octet-stream",
        "application/x-octet-stream",
        "application/binary",
        "application/x-binary",
        "application/download",
        "application/x-download",
        "application/force-download",
        "application/unknown",
        "application/x-unknown",
        "binary/octet-stream",
        "unknown/unknown",
    }
)
_TYPE_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
    "audio/x-wav": "audio/wav",
    "audio/wave": "audio/wav",
    "application/x-pdf": "application/pdf",
}
_ZIP_FAMILY = (
    "application/zip",
    "application/x-zip",
    "application/vnd.openxmlformats-",
    "application/vnd.oasis.opendocument.",
    "application/vnd.ms-",
    "application/epub+zip",
    "application/java-archive",
    "application/vnd.android.",
    "application/vnd.google-earth.kmz",
    "multipart/x-zip",
)
_OLE_FAMILY = (
    "application/msword",
    "application/vnd.ms-",
    "application/vnd.visio",
    "application/x-msi",
    "application/x-ole-storage",
)
_ISO_MEDIA = (
    "video/",
    "audio/mp4",
    "audio/x-m4a",
    "audio/3gpp",
    "audio/aac",
    "image/hei",
    "image/avif",
)


class _Magic(NamedTuple):
    content_type: str
    compatible: tuple[str, ...]
    """Declared type prefixes that agree with these magic bytes."""


_SIGNATURES: tuple[tuple[bytes, _Magic], ...] = (
    (b"%PDF-", _Magic("application/pdf", ("application/pdf",))),
    (b"\x89PNG\r\n\x1a\n", _Magic("image/png", ("image/png", "image/apng"))),
    (b"\xff\xd8\xff", _Magic("image/jpeg", ("image/jpeg",))),
    (b"GIF87a", _Magic("image/gif", ("image/gif",))),
    (b"GIF89a", _Magic("image/gif", ("image/gif",))),
    (b"PK\x03\x04", _Magic("application/zip", _ZIP_FAMILY)),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", _Magic("application/x-ole-storage", _OLE_FAMILY)),
    (b"OggS", _Magic("audio/ogg", ("audio/", "video/ogg", "application/ogg"))),
    (b"ID3", _Magic("audio/mpeg", ("audio/",))),
    (b"#!AMR", _Magic("audio/amr", ("audio/",))),
    (b"{\\rtf", _Magic("application/rtf", ("application/rtf", "text/rtf", "application/msword"))),
    (b"\x1f\x8b", _Magic("application/gzip", ("application/gzip", "application/x-gzip"))),
    (b"Rar!\x1a\x07", _Magic("application/vnd.rar", ("application/vnd.rar", "application/x-rar"))),
    (b"7z\xbc\xaf\x27\x1c", _Magic("application/x-7z-compressed", ("application/x-7z",))),
    (b"II*\x00", _Magic("image/tiff", ("image/tiff",))),
    (b"MM\x00*", _Magic("image/tiff", ("image/tiff",))),
)
_RIFF_TYPES = {
    b"WEBP": _Magic("image/webp", ("image/webp",)),
    b"WAVE": _Magic("audio/wav", ("audio/",)),
    b"AVI ": _Magic("video/x-msvideo", ("video/",)),
}
_FTYP_BRANDS = (
    (("heic", "heix", "heim", "heis", "hevc", "hevx"), "image/heic"),
    (("mif1", "msf1"), "image/heif"),
    (("avif", "avis"), "image/avif"),
    (("3gp", "3g2"), "video/3gpp"),
    (("M4A ",), "audio/mp4"),
    (("qt  ",), "video/quicktime"),
)


def sniff_content_type(
    content: bytes, *, declared: str = "application/octet-stream", filename: str | None = None
) -> str:
    """The content type to record for an attachment, checked against its magic bytes.

    The declared type is kept unless it is generic (``application/octet-stream`` ...) or
    contradicts the magic bytes; then the sniffed type wins (a ``.pdf`` name on JPEG bytes is
    ``image/jpeg``).  ZIP and OLE containers are told apart by the filename's extension (docx,
    xlsx, doc, xls ...).  A generic type with unknown bytes falls back to the extension.
    """
    declared = declared.strip().lower()
    declared = _TYPE_ALIASES.get(declared, declared)
    extension = _extension(filename)
    magic = _magic(content)
    if magic is None:
        if declared in _GENERIC_TYPES:
            return EXTENSION_TYPES.get(extension, declared)
        return declared
    if declared not in _GENERIC_TYPES and declared.startswith(magic.compatible):
        return declared
    return _refined(magic.content_type, extension)


_CONTAINER_EXTENSIONS = {
    "application/zip": ("docx", "xlsx", "pptx", "odt", "ods", "kmz"),
    "application/x-ole-storage": ("doc", "xls", "ppt", "msg"),
}


def _refined(sniffed: str, extension: str) -> str:
    """A ZIP or OLE container named by its extension when that names an Office format."""
    if extension in _CONTAINER_EXTENSIONS.get(sniffed, ()):
        return EXTENSION_TYPES[extension]
    return sniffed


def _magic(content: bytes) -> _Magic | None:
    for signature, magic in _SIGNATURES:
        if content.startswith(signature):
            return magic
    if content[:4] == b"RIFF" and content[8:12] in _RIFF_TYPES:
        return _RIFF_TYPES[content[8:12]]
    if content[4:8] == b"ftyp":
        return _Magic(_ftyp_type(content[8:12].decode("latin-1")), _ISO_MEDIA)
    return None


def _ftyp_type(brand: str) -> str:
    for prefixes, content_type in _FTYP_BRANDS:
        if brand.startswith(prefixes):
            return content_type
    return "video/mp4"


def _extension(filename: str | None) -> str:
    stem, dot, extension = (filename or "").rpartition(".")
    return extension.lower() if dot and stem.strip(".") else ""
