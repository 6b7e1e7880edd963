"""A portal hands its complaint form to omnichannel and shows the citizen a tracking number.

Run: ``python examples/portal_integration.py`` (uses ./portal-example.db, made on first run).

A real portal would call ``submit`` from its form view (Flask, Django, FastAPI alike); the
webhook endpoints for providers are mounted the same framework-neutral way (``omnichannel.http``).
"""

from __future__ import annotations

import uuid

from omnichannel import InboundMessage, Inbox, Outcome, Sender
from omnichannel.config import parse_config

CONFIG = {
    "database": {"url": "sqlite:///portal-example.db"},
    "tickets": {"prefix": "ADU"},
    # the portal's own submissions arrive as JSON documents through a `files`-type connector
    "connectors": [{"name": "portal", "type": "files", "path": "./portal-drop"}],
}


def submit(inbox: Inbox, form: dict[str, str]) -> str:
    """What the portal's form view does: one call, then the ticket for the thank-you page."""
    message = InboundMessage(
        channel="web",
        external_id=form.get("submission_id") or str(uuid.uuid4()),
        sender=Sender(name=form.get("name"), email=form.get("email"), phone=form.get("phone")),
        subject=form.get("subject"),
        text=form["message"],
        anonymous=form.get("anonymous") == "on",
    )
    result = inbox.receive_inbound(message, connector="portal")
    if result.outcome is Outcome.QUARANTINED:
        raise RuntimeError(f"stored but not understood: {result.error}")
    return result.ticket or "(no ticket: not a complaint)"


def main() -> None:
    with Inbox(parse_config(CONFIG)) as inbox:
        form = {
            "submission_id": "form-2026-0001",
            "name": "Rahmat",
            "phone": "0813-5555-0101",
            "subject": "Retribusi parkir",
            "message": "Petugas parkir meminta tarif dua kali lipat di depan kantor DPMPTSP.",
        }
        ticket = submit(inbox, form)
        again = submit(inbox, form)  # a double click: the same submission id
        print(f"thank-you page shows: {ticket}; double submit shows: {again}")
        complaint = inbox.complaint(ticket)
        assert complaint is not None
        print(f"team sees: {complaint.ticket} {complaint.sender.phone} {complaint.body!r}")
        print(f"complaints stored: {len(inbox.complaints(limit=None))}")


if __name__ == "__main__":
    main()
