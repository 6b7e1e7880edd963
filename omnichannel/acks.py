"""Acknowledgement texts: the tracking number sent back on the channel the citizen used."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa

from omnichannel.store.tables import outbox

__all__ = ["DEFAULT_TEMPLATES", "render_acknowledgement", "take_inline"]

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


def take_inline(conn: sa.Connection, complaint_ids: Sequence[int], now: datetime) -> set[int]:
    """Mark the pending acknowledgements of these complaints as sent inline (in a webhook's
    own reply, TwiML); the complaints whose acknowledgement this took. One the outbox has
    already taken is left to it, so that no citizen is acknowledged twice."""
    taken: set[int] = set()
    for complaint_id in sorted(set(complaint_ids)):
        updated = conn.execute(
            sa.update(outbox)
            .where(
                outbox.c.complaint_id == complaint_id,
                outbox.c.kind == "acknowledgement",
                outbox.c.status == "pending",
                outbox.c.attempts == 0,
            )
            .values(status="sent-inline", updated_at=now)
        ).rowcount
        if updated:
            taken.add(complaint_id)
    return taken
