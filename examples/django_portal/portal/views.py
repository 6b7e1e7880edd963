"""The form and the team queue; one Inbox for the process, opened on first import."""

import os
import re
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from omnichannel import InboundMessage, Inbox, ReceiveResult, Sender
from omnichannel.config import parse_config
from omnichannel.queue import QueueError


def open_inbox() -> Inbox:
    """``$OMNICHANNEL_CONFIG``'s deployment, or a demo one on a new SQLite database."""
    if os.environ.get("OMNICHANNEL_CONFIG"):
        return Inbox.from_config(os.environ["OMNICHANNEL_CONFIG"])
    database = Path(tempfile.mkdtemp(prefix="portal-")) / "omnichannel.db"
    secret = os.environ.get("PORTAL_WEBHOOK_SECRET", "demo-portal-secret")
    portal = {"name": "portal", "type": "web", "secret": secret}
    config = {"database": {"url": f"sqlite:///{database}"}, "connectors": [portal]}
    return Inbox(parse_config(config))


inbox = open_inbox()
PAGE = {"portal": "Django", "team_member": settings.TEAM_MEMBER}


def file_complaint(form: Mapping[str, str]) -> ReceiveResult:
    """One call files the form; its submission id makes a double click a ``duplicate``."""
    submission = form.get("submission_id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", submission):
        submission = uuid.uuid4().hex
    sender = Sender(
        name=form.get("name") or None,
        phone=form.get("phone") or None,
        email=form.get("email") or None,
    )
    message = InboundMessage(
        channel="web",
        external_id=f"form-{submission}",
        sender=sender,
        subject=form.get("subject") or None,
        text=form.get("message", ""),
        anonymous=form.get("anonymous") == "on",
    )
    return inbox.receive_inbound(message, connector="portal")


@require_http_methods(["GET", "POST"])
def form(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "form.html", {"submission_id": uuid.uuid4().hex, **PAGE})
    result = file_complaint(request.POST)
    context = {"ticket": result.ticket, "outcome": result.outcome, **PAGE}
    return render(request, "submitted.html", context)


def queue_page(request: HttpRequest, error: str | None = None) -> HttpResponse:
    rows, more = inbox.queue.list(limit=100)
    context = {"rows": rows, "more": more, "error": error, **PAGE}
    return render(request, "queue.html", context, status=409 if error else 200)


@require_GET
def queue(request: HttpRequest) -> HttpResponse:
    return queue_page(request)


def worked(request: HttpRequest, action: Callable[[], object]) -> HttpResponse:
    try:
        action()
    except QueueError as exc:
        return queue_page(request, str(exc))
    return redirect("/queue")


@require_POST
def claim(request: HttpRequest) -> HttpResponse:
    return worked(request, lambda: inbox.queue.claim(settings.TEAM_MEMBER))


@require_POST
def assign(request: HttpRequest, ticket: str) -> HttpResponse:
    agency = request.POST.get("agency", "").strip() or None
    actor = settings.TEAM_MEMBER
    return worked(request, lambda: inbox.queue.assign(ticket, actor=actor, agency=agency))


@require_POST
def resolve(request: HttpRequest, ticket: str) -> HttpResponse:
    return worked(request, lambda: inbox.queue.resolve(ticket, actor=settings.TEAM_MEMBER))
