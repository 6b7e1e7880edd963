"""Canonicalize an InboundMessage: clean text, E.164 phones, e-mail, UTC times, language, flags.

Pure: the received time and region come in as arguments; nothing reads a clock.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime

from normalizer.address import normalize_email
from normalizer.email import strip_reply_prefixes
from normalizer.filenames import safe_attachments
from normalizer.keywords import PrivacyKeywords, take_keywords
from normalizer.language import detect_language
from normalizer.limits import MAX_ATTACHMENTS, MAX_HTML_TO_TEXT
from normalizer.phone import normalize_phone
from normalizer.text import clean_text, html_to_text, trim_quoted
from omnichannel.schema import Attachment, InboundMessage, NormalizedMessage, Sender

__all__ = ["body_fingerprint", "normalize", "normalize_sender"]

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalize_sender(sender: Sender, region: str, flags: dict[str, object]) -> Sender:
    """E.164 phone (odd numbers kept raw and flagged), normalized e-mail, trimmed name."""
    phone = sender.phone
    handle = sender.handle
    if phone:
        parsed = normalize_phone(phone, region)
        if parsed.e164:
            phone = parsed.e164
        else:
            flags["phone_" + parsed.kind] = True
            if parsed.kind in ("alphanumeric", "shortcode"):
                flags["non_personal_sender"] = True
                handle = handle or parsed.raw
                phone = None
            else:
                phone = parsed.raw
    email = sender.email
    if email:
        normalized = normalize_email(email)
        if normalized is None:
            flags["email_invalid"] = True
        email = normalized or email.strip()
    name = clean_text(sender.name).replace("\n", " ") if sender.name else None
    return Sender(name=name or None, email=email, phone=phone, handle=handle)


def body_fingerprint(body: str) -> str | None:
    """A hash of the text that ignores case, punctuation and spacing; None for empty text."""
    folded = unicodedata.normalize("NFKC", body).casefold()
    words = _PUNCTUATION.sub(" ", folded).split()
    if not words:
        return None
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()


def _text_of(inbound: InboundMessage, flags: dict[str, object]) -> str:
    if inbound.text and inbound.text.strip():
        return clean_text(inbound.text)
    if inbound.html:
        if len(inbound.html) > MAX_HTML_TO_TEXT:  # the rest stays in ``html``, as data
            flags["html_truncated"] = True
        return html_to_text(inbound.html[:MAX_HTML_TO_TEXT])
    return ""


def _kept_attachments(items: list[Attachment], flags: dict[str, object]) -> list[Attachment]:
    """The first ``MAX_ATTACHMENTS`` (whatever the channel); how many more is flagged."""
    if len(items) <= MAX_ATTACHMENTS:
        return items
    earlier = flags.get("attachments_omitted")  # (the e-mail decoder counts its own)
    earlier = earlier if isinstance(earlier, int) else 0
    flags["attachments_omitted"] = earlier + len(items) - MAX_ATTACHMENTS
    return items[:MAX_ATTACHMENTS]


def normalize(
    inbound: InboundMessage,
    *,
    connector: str,
    received_at: datetime,
    region: str = "ID",
    keywords: PrivacyKeywords | None = None,
) -> NormalizedMessage:
    """The canonical form of ``inbound`` (received by ``connector`` at ``received_at``);
    a privacy keyword in the subject or text sets its flag and is taken out."""
    flags = dict(inbound.flags)
    text_full = _text_of(inbound, flags)
    subject = clean_text(inbound.subject).replace("\n", " ") if inbound.subject else None
    wanted = keywords or PrivacyKeywords()
    anonymous, confidential = inbound.anonymous, inbound.confidential
    for kind, words in (("anonymous", wanted.anonymous), ("confidential", wanted.confidential)):
        text_full, in_text = take_keywords(text_full, words)
        subject, in_subject = take_keywords(subject, words) if subject else (subject, False)
        if in_text or in_subject:
            flags[f"keyword_{kind}"] = True
            anonymous = anonymous or kind == "anonymous"
            confidential = confidential or kind == "confidential"
    body, trimmed = trim_quoted(text_full)
    if trimmed:
        flags["quoted_text_trimmed"] = True
    headers = {k.lower(): v for k, v in inbound.headers.items()}
    return NormalizedMessage(
        channel=inbound.channel,
        connector=inbound.connector or connector,
        external_id=inbound.external_id,
        received_at=inbound.received_at or received_at,
        sent_at=inbound.sent_at,
        sender=normalize_sender(inbound.sender, region, flags),
        subject=subject or None,
        display_subject=strip_reply_prefixes(subject) or None if subject else None,
        body=body,
        text_full=text_full,
        html=inbound.html,
        language=detect_language(f"{subject or ''}\n{body}"),
        attachments=safe_attachments(_kept_attachments(inbound.attachments, flags)),
        location=inbound.location,
        message_id=headers.get("message-id") or None,
        in_reply_to=inbound.in_reply_to,
        references=inbound.references,
        headers=headers,
        flags=flags,
        anonymous=anonymous,
        confidential=confidential,
        category=inbound.category,
        agency=inbound.agency,
    )
