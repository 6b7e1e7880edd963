"""A complaint portal in Flask: the form, the team queue, and the providers' webhooks, one port.

Run: ``python examples/flask_portal.py [--port 8000]`` and open the URL it prints. It uses
``$OMNICHANNEL_CONFIG`` (a ``web`` connector named ``portal``), else a new SQLite database in a
temporary folder. omnichannel's own WSGI app (``create_app``) answers ``/webhooks/<name>``,
``/receipts/``, ``/healthz`` and ``/metrics`` on the same server; Flask answers the rest.
The queue pages have no login here: a real portal puts them behind its own (and adds CSRF
protection, e.g. Flask-WTF's ``CSRFProtect``).
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import waitress
from flask import Flask, redirect, render_template, request
from werkzeug.wrappers import Response

from omnichannel import InboundMessage, Inbox, ReceiveResult, Sender
from omnichannel.config import parse_config
from omnichannel.http import create_app
from omnichannel.queue import QueueError

TEMPLATES = Path(__file__).resolve().parent / "portal_templates"
OMNICHANNEL_PATHS = ("/webhooks/", "/receipts/", "/healthz", "/metrics")
TEAM_MEMBER = os.environ.get("PORTAL_TEAM_MEMBER", "petugas")  # a real portal: the user logged in


def open_inbox() -> Inbox:
    """``$OMNICHANNEL_CONFIG``'s deployment, or a demo one on a new SQLite database."""
    if os.environ.get("OMNICHANNEL_CONFIG"):
        return Inbox.from_config(os.environ["OMNICHANNEL_CONFIG"])
    database = Path(tempfile.mkdtemp(prefix="portal-")) / "omnichannel.db"
    secret = os.environ.get("PORTAL_WEBHOOK_SECRET", "demo-portal-secret")
    portal = {"name": "portal", "type": "web", "secret": secret}
    config = {"database": {"url": f"sqlite:///{database}"}, "connectors": [portal]}
    return Inbox(parse_config(config))


def file_complaint(inbox: Inbox, form: Mapping[str, str]) -> ReceiveResult:
    """One call files the form; its submission id makes a double click a ``duplicate``."""
    submission = form.get("submission_id", "")
    if not re.fullmatch(r"[0-9a-f]{32}", submission):
        submission = uuid.uuid4().hex
    message = InboundMessage(
        channel="web",
        external_id=f"form-{submission}",
        sender=Sender(
            name=form.get("name") or None,
            phone=form.get("phone") or None,
            email=form.get("email") or None,
        ),
        subject=form.get("subject") or None,
        text=form.get("message", ""),
        anonymous=form.get("anonymous") == "on",
    )
    return inbox.receive_inbound(message, connector="portal")


def create_portal(inbox: Inbox) -> Flask:
    app = Flask(__name__, template_folder=str(TEMPLATES))
    page = {"portal": "Flask", "team_member": TEAM_MEMBER}

    @app.get("/")
    def form() -> str:
        return render_template("form.html", submission_id=uuid.uuid4().hex, **page)

    @app.post("/")
    def submit() -> str:
        result = file_complaint(inbox, request.form)
        return render_template(
            "submitted.html", ticket=result.ticket, outcome=result.outcome, **page
        )

    @app.get("/queue")
    def queue(error: str | None = None) -> tuple[str, int]:
        rows, more = inbox.queue.list(limit=100)
        html = render_template("queue.html", rows=rows, more=more, error=error, **page)
        return html, 409 if error else 200

    def worked(action: Callable[[], object]) -> Response | tuple[str, int]:
        try:
            action()
        except QueueError as exc:
            return queue(str(exc))
        return redirect("/queue", code=303)

    @app.post("/queue/claim")
    def claim() -> Response | tuple[str, int]:
        return worked(lambda: inbox.queue.claim(TEAM_MEMBER))

    @app.post("/queue/<ticket>/assign")
    def assign(ticket: str) -> Response | tuple[str, int]:
        agency = request.form.get("agency", "").strip() or None
        return worked(lambda: inbox.queue.assign(ticket, actor=TEAM_MEMBER, agency=agency))

    @app.post("/queue/<ticket>/resolve")
    def resolve(ticket: str) -> Response | tuple[str, int]:
        return worked(lambda: inbox.queue.resolve(ticket, actor=TEAM_MEMBER))

    hooks, portal = create_app(inbox), app.wsgi_app

    def dispatch(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        return (hooks if path.startswith(OMNICHANNEL_PATHS) else portal)(environ, start_response)

    app.wsgi_app = dispatch  # type: ignore[method-assign]
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    inbox = open_inbox()
    print(f"portal on http://{args.host}:{args.port}/ (queue: /queue)", flush=True)
    waitress.serve(create_portal(inbox), host=args.host, port=args.port)
