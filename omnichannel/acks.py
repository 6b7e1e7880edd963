"""What citizens are sent: acknowledgements (the tracking number), notifications of a status
change, a team member's replies, satisfaction surveys; per kind, channel and language."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_TEMPLATES", "Templates"]

DEFAULT_TEMPLATES: dict[str, str] = {
    "acknowledgement.id": (
        "Terima kasih. Pengaduan Anda telah kami terima dengan nomor {ticket}. "
        "Simpan nomor ini untuk menanyakan perkembangannya."
    ),
    "acknowledgement.en": (
        "Thank you. We have received your complaint under number {ticket}. "
        "Keep this number to ask about its progress."
    ),
    "acknowledgement.email.id": (
        "Yth. Bapak/Ibu,\n\n"
        "Pengaduan Anda telah kami terima dan dicatat dengan nomor {ticket}.\n"
        "Untuk menanyakan perkembangannya, balas e-mail ini tanpa mengubah subjeknya, "
        "atau sebutkan nomor {ticket} pada setiap pesan.\n\n"
        "Pesan ini dikirim otomatis."
    ),
    "acknowledgement.email.en": (
        "Dear Sir or Madam,\n\n"
        "We have received your complaint and recorded it under number {ticket}.\n"
        "To ask about its progress, reply to this e-mail keeping its subject, or quote "
        "{ticket} in any message.\n\n"
        "This message was sent automatically."
    ),
    "notification.resolved.id": "Pengaduan {ticket} telah selesai ditindaklanjuti. {note}",
    "notification.resolved.en": "Your complaint {ticket} has been resolved. {note}",
    "notification.rejected.id": (
        "Pengaduan {ticket} tidak dapat kami tindak lanjuti. Alasan: {note}"
    ),
    "notification.rejected.en": "Your complaint {ticket} cannot be taken up. Reason: {note}",
    "reply.id": "{text}\n\n(Pengaduan {ticket})",
    "reply.en": "{text}\n\n(Complaint {ticket})",
    "survey.id": (
        "Pengaduan {ticket} telah selesai ditindaklanjuti. Seberapa puas Anda dengan "
        "penanganannya? Balas dengan angka 1 sampai 5 (1 = sangat tidak puas, "
        "5 = sangat puas), boleh disertai saran."
    ),
    "survey.en": (
        "Your complaint {ticket} has been resolved. How satisfied are you with how it was "
        "handled? Reply with a number from 1 to 5 (1 = very dissatisfied, 5 = very "
        "satisfied), with a comment if you like."
    ),
    "survey.email.id": (
        "Yth. Bapak/Ibu,\n\n"
        "Pengaduan Anda nomor {ticket} telah selesai ditindaklanjuti. Kami ingin mengetahui "
        "seberapa puas Anda dengan penanganannya.\n\n"
        "Balas e-mail ini dengan satu angka:\n"
        "5 = sangat puas\n4 = puas\n3 = cukup puas\n2 = tidak puas\n1 = sangat tidak puas\n\n"
        "Saran Anda dapat ditulis di bawah angka itu.\n\n"
        "Pesan ini dikirim otomatis."
    ),
    "survey.email.en": (
        "Dear Sir or Madam,\n\n"
        "Your complaint {ticket} has been resolved. We would like to know how satisfied you "
        "are with how it was handled.\n\n"
        "Reply to this e-mail with one number:\n"
        "5 = very satisfied\n4 = satisfied\n3 = neutral\n2 = dissatisfied\n"
        "1 = very dissatisfied\n\n"
        "You may add a comment below the number.\n\n"
        "This message was sent automatically."
    ),
    "survey.reminder.id": (
        "Pengingat: kami masih menunggu penilaian Anda atas pengaduan {ticket}. Balas dengan "
        "angka 1 sampai 5 (1 = sangat tidak puas, 5 = sangat puas)."
    ),
    "survey.reminder.en": (
        "A reminder: we would still like your rating of complaint {ticket}. Reply with a "
        "number from 1 to 5 (1 = very dissatisfied, 5 = very satisfied)."
    ),
    "survey.ambiguous.id": (
        "Terima kasih atas penilaian Anda. Ada beberapa pengaduan Anda yang kami mintai "
        "penilaian ({text}): mohon kirim ulang penilaian Anda beserta nomor pengaduannya, "
        "misalnya: {ticket} 5"
    ),
    "survey.ambiguous.en": (
        "Thank you for your rating. We asked you to rate several complaints ({text}): please "
        "send your rating again with the complaint's number, for example: {ticket} 5"
    ),
    "subject.id": "[{ticket}] Pengaduan Anda",
    "subject.en": "[{ticket}] Your complaint",
}
"""Keys ``kind[.channel].language`` (``notification.<status>``, ``survey.reminder``);
``[acknowledgements.templates]`` overrides any of them. ``{ticket}``, ``{note}`` and ``{text}``
are filled in (``{text}``: a reply's text; the tickets a ``survey.ambiguous`` answer may
rate)."""


@dataclass(frozen=True)
class Templates:
    """The texts sent to citizens, per kind, channel and language."""

    overrides: Mapping[str, str] = field(default_factory=dict)
    language: str = "id"
    acknowledgement: str | None = None
    """One acknowledgement text for every channel and language (``[acknowledgements]
    template``), when set."""

    def text(self, kind: str, channel: str, language: str | None, **values: str) -> str:
        """The text of ``kind`` on ``channel`` in ``language`` (else the default language)."""
        if kind == "acknowledgement" and self.acknowledgement:
            return _fill(self.acknowledgement, values).strip()
        lang = language if language in ("id", "en") else self.language
        for key in (f"{kind}.{channel}.{lang}", f"{kind}.{lang}", f"{kind}.{channel}.id"):
            found = self.overrides.get(key) or DEFAULT_TEMPLATES.get(key)
            if found is not None:
                return _fill(found, values).strip()
        return _fill(DEFAULT_TEMPLATES[f"{kind}.id"], values).strip()


def _fill(template: str, values: Mapping[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template
