"""A complaint portal in FastAPI: the form, the team queue, and the providers' webhooks, one port.

Run: ``python examples/fastapi_portal.py [--port 8000]`` and open the URL it prints. It uses
``$OMNICHANNEL_CONFIG`` (a ``web`` connector named ``portal``), else a new SQLite database in a
temporary folder. omnichannel's own WSGI app (``create_app``), mounted last through a2wsgi,
answers ``/webhooks/<name>``, ``/receipts/``, ``/healthz`` and ``/metrics``. Routes are plain
``def`` (omnichannel blocks: FastAPI runs them in its thread pool). The queue pages have no
login here: a real portal puts them behind its own (and adds CSRF protection).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import uvicorn
from a2wsgi import WSGIMiddleware
from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from omnichannel import InboundMessage, Inbox, ReceiveResult, Sender
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.queue import QueueError

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parent / "portal_templates")
TEAM_MEMBER = os.environ.get("PORTAL_TEAM_MEMBER", "petugas")  # a real portal: the user logged in
PAGE = {"portal": "FastAPI", "team_member": TEAM_MEMBER}


class ComplaintForm(BaseModel):
    submission_id: str = ""
    name: str = ""
    phone: str = ""
    email: str = ""
    subject: str = ""
    message: str = ""
    anonymous: bool = False  # the checkbox sends "on"


def open_inbox() -> Inbox:
    """``$OMNICHANNEL_CONFIG``'s deployment, or a demo one on a new SQLite database."""
    if os.environ.get("OMNICHANNEL_CONFIG"):
        return Inbox.from_config(os.environ["OMNICHANNEL_CONFIG"])
    database = Path(tempfile.mkdtemp(prefix="portal-")) / "omnichannel.db"
    secret = os.environ.get("PORTAL_WEBHOOK_SECRET", "demo-portal-secret")
    portal = {"name": "portal", "type": "web", "secret": secret}
    config = {"database": {"url": f"sqlite:///{database}"}, "connectors": [portal]}
    return Inbox(parse_config(config))


def file_complaint(inbox: Inbox, form: ComplaintForm) -> ReceiveResult:
    """One call files the form; its submission id makes a double click a ``duplicate``."""
    submission = form.submission_id
    if not re.fullmatch(r"[0-9a-f]{32}", submission):
        submission = uuid.uuid4().hex
    sender = Sender(name=form.name or None, phone=form.phone or None, email=form.email or None)
    message = InboundMessage(
        channel="web",
        external_id=f"form-{submission}",
        sender=sender,
        subject=form.subject or None,
        text=form.message,
        anonymous=form.anonymous,
    )
    return inbox.receive_inbound(message, connector="portal")


def create_portal(inbox: Inbox) -> FastAPI:
    app = FastAPI(title="Complaint portal", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def form(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(
            request, "form.html", {"submission_id": uuid.uuid4().hex, **PAGE}
        )

    @app.post("/", response_class=HTMLResponse)
    def submit(request: Request, data: Annotated[ComplaintForm, Form()]) -> Response:
        result = file_complaint(inbox, data)
        context = {"ticket": result.ticket, "outcome": result.outcome, **PAGE}
        return TEMPLATES.TemplateResponse(request, "submitted.html", context)

    def queue_page(request: Request, error: str | None = None) -> Response:
        rows, more = inbox.queue.list(limit=100)
        context = {"rows": rows, "more": more, "error": error, **PAGE}
        return TEMPLATES.TemplateResponse(request, "queue.html", context, 409 if error else 200)

    @app.get("/queue", response_class=HTMLResponse)
    def queue(request: Request) -> Response:
        return queue_page(request)

    def worked(request: Request, action: Callable[[], object]) -> Response:
        try:
            action()
        except QueueError as exc:
            return queue_page(request, str(exc))
        return RedirectResponse("/queue", status_code=303)

    @app.post("/queue/claim")
    def claim(request: Request) -> Response:
        return worked(request, lambda: inbox.queue.claim(TEAM_MEMBER))

    @app.post("/queue/{ticket}/assign")
    def assign(request: Request, ticket: str, agency: Annotated[str, Form()] = "") -> Response:
        name = agency.strip() or None
        return worked(request, lambda: inbox.queue.assign(ticket, actor=TEAM_MEMBER, agency=name))

    @app.post("/queue/{ticket}/resolve")
    def resolve(request: Request, ticket: str) -> Response:
        return worked(request, lambda: inbox.queue.resolve(ticket, actor=TEAM_MEMBER))

    app.mount("/", WSGIMiddleware(create_app(inbox)))  # type: ignore[arg-type]
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    inbox = open_inbox()
    print(f"portal on http://{args.host}:{args.port}/ (queue: /queue)", flush=True)
    uvicorn.run(create_portal(inbox), host=args.host, port=args.port, log_level="warning")
