"""Acknowledgement texts: the tracking number sent back on the channel the citizen used."""

from __future__ import annotations

__all__ = ["DEFAULT_TEMPLATES", "render_acknowledgement"]

DEFAULT_TEMPLATES = {
    "id": (
        "Terima kasih. Pengaduan Anda telah kami terima dengan nomor {ticket}. "
        "Simpan nomor ini untuk menanyakan perkembangannya."
    ),
    "en": (
        "Thank you. We have received your complaint under number {ticket}. "
        "Keep this number to ask about its progress."
    ),
}


def render_acknowledgement(
    ticket: str, *, language: str = "id", template: str | None = None
) -> str:
    """The acknowledgement for ``ticket``: ``template`` (with ``{ticket}``) or the default."""
    text = template or DEFAULT_TEMPLATES.get(language, DEFAULT_TEMPLATES["id"])
    return text.replace("{ticket}", ticket)
