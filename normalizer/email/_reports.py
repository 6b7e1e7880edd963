"""Delivery reports (``multipart/report``): the message reported on, the action, the recipient.

A delivery-status report names the bounced message (its returned headers' Message-ID, else
``Original-Message-ID``), the ``Action`` and the ``Final-Recipient`` of its first recipient.
"""

from __future__ import annotations

import re
from email.message import Message
from typing import NamedTuple

from normalizer.address import normalize_email
from normalizer.email._headers import raw_header_map
from normalizer.email._ids import first_id
from normalizer.email._leaves import Leaf
from normalizer.email._parts import header_view, param_text, part_info

_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_TYPES = frozenset(
    {
        "message/rfc822",
        "message/global",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)


class Report(NamedTuple):
    """What a ``multipart/report`` says about the message it reports on."""

    report_type: str
    bounced_message_id: str | None
    action: str | None
    recipient: str | None

    @property
    def is_dsn(self) -> bool:
        return self.report_type == "delivery-status"


def delivery_report(msg: Message, leaves: list[Leaf]) -> Report | None:
    """The report when the message is a ``multipart/report``, else None."""
    if part_info(msg).content_type != "multipart/report":
        return None
    report_type = param_text(header_view(msg).get_param("report-type")) or ""
    status: dict[str, str] = {}
    returned: dict[str, str] = {}
    for leaf in leaves:
        if leaf.info.content_type in _STATUS_TYPES and not status:
            status = _status_fields(leaf.content)
        elif leaf.info.content_type in _RETURNED_TYPES and not returned:
            returned = raw_header_map(leaf.content)
    original = returned.get("message-id") or status.get("original-message-id")
    original = original or status.get("x-original-message-id")
    recipient = status.get("final-recipient", "").rpartition(";")[2].strip()
    return Report(
        report_type=report_type.lower(),
        bounced_message_id=first_id(original),
        action=status.get("action", "").split("(")[0].strip().lower() or None,
        recipient=(normalize_email(recipient) or recipient or None) if recipient else None,
    )


def _status_fields(content: bytes) -> dict[str, str]:
    """Fields of a delivery-status body: per-message, then the first recipient's fields."""
    fields: dict[str, str] = {}
    for block in re.split(rb"\r?\n[ \t]*\r?\n", content):
        for name, value in raw_header_map(block).items():
            fields.setdefault(name, value)
    return fields
