"""``omnichannel demo``: a whole deployment on loopback, played by made-up citizens.

The demo writes its own configuration in a fresh directory (SQLite there): a ``files``
connector for e-mail, ``twilio`` (SMS and WhatsApp), ``whatsapp-cloud`` and the ``web``
portal, routes to three agencies, working-day deadlines, acknowledgements through ``[smtp]``
and the providers' APIs, and a ``[[forwarders]]`` webhook, with secrets made for the run. It
starts the webhook server, the filing worker and the outbox worker as ``omnichannel run``
does (the same code), and loopback stand-ins for Twilio's and Meta's APIs, an SMTP server and
an agency's system (:mod:`omnichannel.demo.standins`). Then it plays the scenario over real
HTTP with correct signatures (:mod:`omnichannel.demo.scenario`), works the outbox, and prints
what the team sees: the queue, the clusters, the acknowledgements that went out.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from omnichannel.config import Config, parse_config
from omnichannel.daemon import serve_in_thread
from omnichannel.demo.scenario import Credentials, Player, Step
from omnichannel.demo.standins import (
    ForwardReceiver,
    GraphApi,
    SmtpSink,
    TwilioApi,
    stand_in,
)
from omnichannel.errors import OmnichannelError
from omnichannel.inbox import Inbox
from omnichannel.logs import RedactingFilter, TextFormatter
from omnichannel.privacy import mask_email, mask_phone
from omnichannel.store.tables import complaints, outbound_messages, outbox

__all__ = ["DATA", "DemoResult", "mask", "run_demo"]

DATA = Path(__file__).parent / "data"
"""The scenario (``scenario.json``), its e-mails (``mail/``) and the drop folder used when
none is given (``drop/``)."""
HOST = "127.0.0.1"
OUTBOX_WAIT = 20.0
"""Seconds the demo gives the outbox worker to send what is due before it reports."""
Echo = Callable[[str], None]
NAMES = {"files": "files", "twilio": "sms", "cloud": "wa", "web": "portal"}
"""The demo's connector names by kind (also their webhook paths)."""
COLUMNS = (4, 16, 46, 5, 12, 17)
"""Widths of a step line: step, channel, what, HTTP status, outcome, ticket (then a note)."""


@dataclass
class DemoResult:
    """What a demo run did (the CLI prints as it goes; tests read this)."""

    workdir: Path
    kept: bool
    steps: list[Step] = field(default_factory=list)
    complaints: int = 0
    clusters: dict[str, list[str]] = field(default_factory=dict)
    acknowledgements: int = 0
    forwards: int = 0
    outbox: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every step went as the scenario expects."""
        return not any(step.unexpected for step in self.steps)


def run_demo(
    files: Sequence[Path] | None = None, *, keep: Path | None = None, echo: Echo = print
) -> DemoResult:
    """Run the demo: ``files`` go through the ``files`` connector in step 9 (default: the
    packaged drop folder); ``keep`` is a new or empty directory that keeps the database, a
    configuration to read it with, and the log (default: a temporary one, removed)."""
    started = time.monotonic()
    workdir = _workdir(keep)
    result = DemoResult(workdir, kept=keep is not None)
    credentials = Credentials()
    try:
        with _quiet_logs(workdir / "demo.log", credentials.all()), _no_proxy_for_loopback():
            _Demo(result, echo, credentials).run(list(files) if files else _packaged_drop())
    finally:
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)
    result.seconds = time.monotonic() - started
    echo(_summary(result))
    echo(_further(result))
    return result


def _workdir(keep: Path | None) -> Path:
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="omnichannel-demo-"))
    if keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise OmnichannelError(f"--keep {keep}: not an empty directory (the demo starts afresh)")
    keep.mkdir(parents=True, exist_ok=True)
    return keep.resolve()


def _packaged_drop() -> list[Path]:
    return sorted(p for p in (DATA / "drop").iterdir() if p.suffix in (".eml", ".json"))


@contextlib.contextmanager
def _quiet_logs(path: Path, secrets: Sequence[str]) -> Iterator[None]:
    """The deployment's log (the refused forgeries' warnings among it) goes to ``path``,
    ``secrets`` redacted, not to the terminal; the loggers are as they were afterwards."""
    handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RedactingFilter(secrets))
    saved = []
    for name in ("omnichannel", "waitress"):
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate
        handler.close()


@contextlib.contextmanager
def _no_proxy_for_loopback() -> Iterator[None]:
    """The deployment's calls to the stand-ins go straight to 127.0.0.1 even where an HTTP
    proxy is configured (``requests`` would send them to it); the variables are restored."""
    saved = {name: os.environ.get(name) for name in ("NO_PROXY", "no_proxy")}
    for name, value in saved.items():
        os.environ[name] = ",".join(v for v in (value, HOST, "localhost") if v)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class _Demo:
    """One run: stand-ins, the deployment, the scenario, the report."""

    def __init__(self, result: DemoResult, echo: Echo, credentials: Credentials) -> None:
        self.result, self.echo, self.credentials = result, echo, credentials
        self.scenario: dict[str, Any] = json.loads((DATA / "scenario.json").read_text("utf-8"))
        numbers = self.scenario["numbers"]
        self.twilio = TwilioApi(self.credentials.account_sid, self.credentials.auth_token)
        self.graph = GraphApi(self.credentials.access_token, [numbers["cloud_phone_number_id"]])
        self.agency = ForwardReceiver(self.credentials.forward_secret)
        self.smtp = SmtpSink()

    def run(self, files: list[Path]) -> None:
        with contextlib.ExitStack() as stack:
            urls = {
                "twilio": stack.enter_context(
                    serve_in_thread(stand_in(self.twilio), "demo-twilio")
                ),
                "graph": stack.enter_context(serve_in_thread(stand_in(self.graph), "demo-graph")),
                "agency": stack.enter_context(
                    serve_in_thread(stand_in(self.agency), "demo-agency")
                ),
            }
            smtp_port = stack.enter_context(self.smtp.running())
            config = self.config(urls, smtp_port)
            self._write_reading_config()
            inbox = stack.enter_context(Inbox(config))
            with self._deployment(inbox) as base_url:
                self.echo(self._banner(inbox, base_url, urls, smtp_port))
                numbers = self.scenario["numbers"]
                player = Player(inbox, base_url, self.credentials, numbers, NAMES, self._line)
                try:
                    self.echo(_step_line(*STEP_HEADERS))
                    self._play(player, files)
                finally:
                    player.close()
                    self.result.steps = player.steps
                self._work_outbox(inbox)
            self._report(inbox)

    # -- the deployment ------------------------------------------------------------------------

    def config(self, urls: dict[str, str], smtp_port: int) -> Config:
        """The demo's configuration (as ``omnichannel.toml`` would give it)."""
        c, numbers = self.credentials, self.scenario["numbers"]
        data = _reading_config(self.result.workdir) | {
            "filing": {"interval": 0.2},
            "outbox": {"interval": 0.2},
            "acknowledgements": {"enabled": True, "sms_connector": NAMES["twilio"]},
            "smtp": {
                "host": HOST,
                "port": smtp_port,
                "from": "Pengaduan DPMPTSP Kabupaten Maros <pengaduan@dpmptsp.example.go.id>",
                "local_hostname": "localhost",
                "timeout": 10,
            },
            "forwarders": [
                {
                    "name": "sistem-dinas",
                    "type": "webhook",
                    "url": urls["agency"] + "/complaints",
                    "secret": c.forward_secret,
                    "events": ["created"],
                    "timeout": 10,
                }
            ],
        }
        data["connectors"] += [
            {
                "name": NAMES["twilio"],
                "type": "twilio",
                "account_sid": c.account_sid,
                "auth_token": c.auth_token,
                "mode": "webhook",
                "api_base_url": urls["twilio"],
                "phone_numbers": [numbers["sms"], numbers["twilio_whatsapp"]],
                "from_number": numbers["sms"],
                "timeout": 10,
            },
            {
                "name": NAMES["cloud"],
                "type": "whatsapp-cloud",
                "app_secret": c.app_secret,
                "verify_token": c.verify_token,
                "access_token": c.access_token,
                "phone_number_ids": [numbers["cloud_phone_number_id"]],
                "graph_api_url": urls["graph"],
                "timeout": 10,
            },
            {"name": NAMES["web"], "type": "web", "secret": c.portal_secret},
        ]
        return parse_config(data, source="omnichannel demo", env={})

    def _write_reading_config(self) -> None:
        """What the kept directory is read with: the database, routes and deadlines (the
        connectors' secrets of this run are not written anywhere)."""
        if not self.result.kept:
            return
        lines = [
            "# Written by `omnichannel demo --keep`: enough to read (and work) its queue with",
            "# `omnichannel --config THIS_FILE queue list`. The demo's webhook connectors had",
            "# secrets made for that run only; they are not kept.",
            "",
        ]
        lines += _toml(_reading_config(self.result.workdir))
        (self.result.workdir / "omnichannel.toml").write_text("\n".join(lines) + "\n", "utf-8")

    @contextlib.contextmanager
    def _deployment(self, inbox: Inbox) -> Iterator[str]:
        """The webhook server, filing, media and outbox workers, as ``omnichannel run``
        starts them; the server's base URL."""
        from omnichannel.daemon import create_server, start_background, stop_background

        server = None
        for _ in range(5):  # a free port another process took meanwhile: another one
            with contextlib.suppress(OmnichannelError):
                server = create_server(inbox, HOST, _free_port(), 4)
                break
        if server is None:
            raise OmnichannelError("the demo found no free port on 127.0.0.1")
        stop = threading.Event()
        background = start_background(inbox, stop, outbox=True)
        try:
            with serve_in_thread(server, "demo-server") as base_url:
                yield base_url
        finally:
            stop_background(inbox, stop, background, time.monotonic() + 8)

    def _banner(self, inbox: Inbox, base_url: str, urls: dict[str, str], smtp: int) -> str:
        where = "kept" if self.result.kept else "removed at the end; --keep DIR keeps it"
        return "\n".join(
            [
                f"omnichannel demo in {self.result.workdir} ({where})",
                f"  database   {inbox.store!r}",
                f"  server     {base_url}  (webhooks, filing and outbox workers, as `run`)",
                f"  stand-ins  Twilio API {urls['twilio']}, Graph API {urls['graph']},",
                f"             SMTP 127.0.0.1:{smtp}, agency system {urls['agency']}",
                "",
            ]
        )

    def _line(self, step: Step) -> None:
        status = str(step.status) if step.status is not None else "-"
        outcome = step.outcome + (f" (expected {step.expected})" if step.unexpected else "")
        self.echo(
            _step_line(
                step.number, step.channel, step.what, status, outcome, step.ticket or "-", step.note
            )
        )

    # -- the scenario --------------------------------------------------------------------------

    def _play(self, player: Player, files: list[Path]) -> None:
        s, twilio, cloud = self.scenario, NAMES["twilio"], NAMES["cloud"]
        road = s["road"]
        form = player.twilio_form(road["phone"], road["sms"])
        sid = form["MessageSid"]

        def post_road() -> int:
            return player.post_twilio(form)

        player.webhook_step(
            "1", "sms/twilio", "SMS: pothole on a road", twilio, sid, post_road, "new"
        )
        player.webhook_step(
            "2", "sms/twilio", "Twilio redelivers that webhook", twilio, sid, post_road, "duplicate"
        )
        wamid, body = player.meta_notification(road["phone"], road["name"], road["whatsapp"])
        player.webhook_step(
            "3",
            "whatsapp/cloud",
            "same citizen, same complaint, on WhatsApp",
            cloud,
            wamid,
            lambda: player.post_meta(body),
            "merged",
        )
        reports = s["bridge"]
        for index, report in enumerate(reports):
            what = f"the bridge is down: citizen {index + 1} of {len(reports)}"
            self._bridge(player, f"4{'abcdefgh'[index]}", what, report)
        mail = sorted((DATA / "mail").glob("*.eml"))
        player.file_steps(["5a", "5b"], "email/files", mail[:2], ["new", "merged"])
        player.file_steps(["6"], "email/files", mail[2:], ["ignored"])
        portal = s["portal"]
        player.portal_step("7", "portal form: no queue numbers left", _portal_form(portal), "new")
        self._forgeries(player)
        player.file_steps(["9"] * len(files), "files", files, [_expected_of(p) for p in files])

    def _bridge(self, player: Player, number: str, what: str, report: dict[str, Any]) -> None:
        """One of several people reporting the collapsed bridge, each on their channel."""
        via, phone, text = report["via"], report.get("phone", ""), report["text"]
        if via == "web":
            player.portal_step(number, what, _portal_form(report), "new")
            return
        if via == "whatsapp-cloud":
            wamid, body = player.meta_notification(phone, report["name"], text)
            player.webhook_step(
                number,
                "whatsapp/cloud",
                what,
                NAMES["cloud"],
                wamid,
                lambda: player.post_meta(body),
                "new",
            )
            return
        whatsapp = via == "twilio-whatsapp"
        form = player.twilio_form(phone, text, whatsapp=whatsapp, name=report.get("name"))
        player.webhook_step(
            number,
            "whatsapp/twilio" if whatsapp else "sms/twilio",
            what,
            NAMES["twilio"],
            form["MessageSid"],
            lambda: player.post_twilio(form),
            "new",
        )

    def _forgeries(self, player: Player) -> None:
        forged, wrong = self.scenario["forged"], "not-the-secret-" + "0" * 16
        form = player.twilio_form(forged["sms"]["phone"], forged["sms"]["text"])
        player.forged_step(
            "8a",
            "sms/twilio",
            "forged X-Twilio-Signature",
            NAMES["twilio"],
            form["MessageSid"],
            lambda: player.post_twilio(form, token=wrong),
        )
        wamid, body = player.meta_notification(
            forged["whatsapp"]["phone"], "?", forged["whatsapp"]["text"]
        )
        player.forged_step(
            "8b",
            "whatsapp/cloud",
            "forged X-Hub-Signature-256",
            NAMES["cloud"],
            wamid,
            lambda: player.post_meta(body, secret=wrong),
        )
        web = _portal_form(forged["web"])
        player.forged_step(
            "8c",
            "web/portal",
            "forged webhook-signature",
            NAMES["web"],
            web["id"],
            lambda: player.post_portal(web, secret=wrong)[0],
        )

    # -- the outbox ----------------------------------------------------------------------------

    def _work_outbox(self, inbox: Inbox) -> None:
        """Let the outbox worker send what is due (bounded by ``OUTBOX_WAIT``)."""
        deadline = time.monotonic() + OUTBOX_WAIT
        while _due(inbox) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- the report ----------------------------------------------------------------------------

    def _report(self, inbox: Inbox) -> None:
        from omnichannel.cli import _short, _table

        items = inbox.complaints(limit=None)
        self.result.complaints = len(items)
        rows, _ = inbox.queue.list(limit=max(1, len(items)))
        by_id = {c.id: c for c in items}
        tz = inbox.config.tz
        table = []
        for r in sorted(rows, key=lambda r: r.id):
            c = by_id[r.id]
            merged = sum(1 for m in c.messages if m.outcome.value == "merged")
            table.append(
                [
                    r.ticket,
                    r.status,
                    r.channel,
                    r.agency or "-",
                    r.category or "-",
                    r.due_at.astimezone(tz).strftime("%a %d %b %H:%M") if r.due_at else "-",
                    r.cluster_id or "-",
                    f"{len(c.messages)}" + (f" ({merged} merged)" if merged else ""),
                    _short(c.subject or c.body, 44),
                ]
            )
        headers = ["TICKET", "STATUS", "CHANNEL", "AGENCY", "CATEGORY", "DUE", "CLUSTER", "MSGS"]
        self.echo(f"\nThe team's queue ({len(rows)} complaints; due dates in {tz.key}):")
        self.echo(_table(table, [*headers, "SUBJECT / TEXT"]))
        self._clusters(items)
        self._acknowledgements(inbox)
        self.result.forwards = len(self.agency.deliveries)
        events = sorted(set(self.agency.events.values()))
        self.echo(
            f"\nForwarded to the agency system stand-in: {self.result.forwards} "
            f"({', '.join(events) or 'none'}; signatures checked, {self.agency.refused} refused)"
        )

    def _clusters(self, items: Sequence[Any]) -> None:
        clusters: dict[str, list[Any]] = {}
        for c in items:
            if c.cluster_id:
                clusters.setdefault(c.cluster_id, []).append(c)
        self.result.clusters = {k: [c.ticket for c in v] for k, v in clusters.items()}
        self.echo(f"\nClusters (different people, one matter): {len(clusters)}")
        for key, members in clusters.items():
            label = members[0].cluster_label or ""
            who = ", ".join(f"{c.ticket} ({c.channel})" for c in members)
            self.echo(f'  {key}  {len(members)} complaints  "{label}": {who}')

    def _acknowledgements(self, inbox: Inbox) -> None:
        from omnichannel.cli import _short, _table

        with inbox.store.transaction() as conn:
            sent = conn.execute(
                sa.select(
                    complaints.c.ticket,
                    outbound_messages.c.to_address,
                    outbound_messages.c.body,
                    outbound_messages.c.provider_id,
                )
                .join(complaints, complaints.c.id == outbound_messages.c.complaint_id)
                .where(outbound_messages.c.kind == "acknowledgement")
                .order_by(outbound_messages.c.id)
            ).all()
            counts = conn.execute(
                sa.select(outbox.c.status, sa.func.count()).group_by(outbox.c.status)
            ).all()
        self.result.outbox = {str(status): int(n) for status, n in counts}
        self.result.acknowledgements = len(sent)
        rows = []
        for ticket, to, body, provider_id in sent:
            channel, via = self._reached(str(provider_id or ""))
            rows.append([ticket, channel, mask(to), via, _short(_up_to_ticket(body, ticket), 80)])
        outbox_counts = ", ".join(f"{k} {v}" for k, v in sorted(self.result.outbox.items()))
        self.echo(
            f"\nAcknowledgements sent: {len(sent)} (outbox, every kind: {outbox_counts or 'empty'})"
        )
        self.echo(_table(rows, ["TICKET", "CHANNEL", "TO", "VIA", "TEXT"]))

    def _reached(self, provider_id: str) -> tuple[str, str]:
        """The channel and stand-in a delivery reached, by the id the stand-in answered."""
        for delivery in self.twilio.deliveries:
            if delivery.provider_id == provider_id:
                kind = "whatsapp" if delivery.to.startswith("whatsapp:") else "sms"
                return kind, "Twilio API stand-in"
        if provider_id in self.graph.ids():
            return "whatsapp", "Graph API stand-in"
        if provider_id in self.smtp.ids():
            return "email", "SMTP stand-in"
        return "?", "no stand-in has it"


# -- helpers -----------------------------------------------------------------------------------

STEP_HEADERS = ("STEP", "CHANNEL", "WHAT", "HTTP", "OUTCOME", "TICKET", "NOTE")


def _step_line(*cells: str) -> str:
    """A step as one line: fixed columns (see ``COLUMNS``), then the note."""
    padded = [cell.ljust(width) for cell, width in zip(cells, COLUMNS, strict=False)]
    return " ".join([*padded, *cells[len(COLUMNS) :]]).rstrip()


def mask(address: str) -> str:
    """A citizen's address as the demo prints it: ``+62812****7890``, ``bu***@example.id``."""
    bare = address.removeprefix("whatsapp:")
    return mask_email(bare) if "@" in bare else mask_phone(bare)


def _up_to_ticket(body: str, ticket: str) -> str:
    """The line of a text that gives the ticket, up to the ticket (else its first line)."""
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    line = next((line for line in lines if ticket in line), lines[0] if lines else "")
    end = line.find(ticket) + len(ticket) if ticket in line else len(line)
    return line[:end] + ("…" if end < len(line) else "")


def _due(inbox: Inbox) -> int:
    """Outbox rows due now or being sent."""
    moment = datetime.now(UTC)
    with inbox.store.transaction() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count())
                .select_from(outbox)
                .where(
                    sa.or_(
                        outbox.c.status == "sending",
                        sa.and_(outbox.c.status == "pending", outbox.c.next_attempt_at <= moment),
                    )
                )
            ).scalar_one()
        )


def _portal_form(report: dict[str, Any]) -> dict[str, Any]:
    """The portal's form (its default shape) for a citizen of the scenario."""
    form = {"id": report["id"], "name": report.get("name"), "message": report["text"]}
    for key in ("email", "phone", "subject", "location"):
        if report.get(key):
            form[key] = report[key]
    return form


def _expected_of(path: Path) -> str | None:
    """What the packaged drop folder's files must come to (others: whatever they do)."""
    if path.parent != DATA / "drop":
        return None
    return "quarantined" if path.name.startswith("99-") else "new"


def _reading_config(workdir: Path) -> dict[str, Any]:
    """The part of the demo's configuration that reading (and working) the queue needs."""
    return {
        "timezone": "Asia/Makassar",
        "database": {"url": f"sqlite:///{workdir / 'omnichannel.db'}"},
        "tickets": {"prefix": "ADU"},
        "deadlines": {
            "verify_days": 3,
            "follow_up_days": 5,
            "holidays": ["2026-12-24", "2026-12-25", "2027-01-01", "2027-02-06"],
            "categories": {"integrity": {"verify_days": 1}},
        },
        "routing": {"default_agency": "DPMPTSP", "default_category": "other"},
        "routes": [
            {
                "name": "roads-and-bridges",
                "keywords": ["jalan", "jembatan", "drainase", "gorong-gorong", "aspal", "longsor"],
                "agency": "PUPR",
                "category": "infrastructure",
            },
            {
                "name": "integrity",
                "keywords": ["pungli", "pungutan liar", "calo", "suap", "oknum"],
                "agency": "Inspektorat",
                "category": "integrity",
            },
            {
                "name": "licensing",
                "keywords": ["izin", "perizinan", "PBG", "NIB", "OSS", "KKPR", "reklame", "permit"],
                "agency": "DPMPTSP",
                "category": "licensing",
            },
        ],
        "connectors": [{"name": NAMES["files"], "type": "files", "path": str(workdir / "inbox")}],
    }


def _toml(data: dict[str, Any], prefix: str = "") -> list[str]:
    """``data`` as TOML (strings, numbers, booleans, lists of those, tables, arrays of
    tables: what :func:`_reading_config` holds)."""
    lines = [f"{key} = {_value(v)}" for key, v in data.items() if not _is_table(v)]
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            own = _toml(value, f"{name}.")
            lines += own if all(_is_table(v) for v in value.values()) else ["", f"[{name}]", *own]
        elif _is_table(value):
            for item in value:
                lines += ["", f"[[{name}]]", *_toml(item, f"{name}.")]
    return lines


def _is_table(value: Any) -> bool:
    return isinstance(value, dict) or (
        isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
    )


def _value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)  # a JSON string, number or boolean is TOML


def _summary(result: DemoResult) -> str:
    outcomes = {name: 0 for name in ("new", "merged", "duplicate", "ignored", "quarantined")}
    for step in result.steps:
        outcomes[step.outcome] = outcomes.get(step.outcome, 0) + 1
    refused = outcomes.pop("refused", 0)
    counted = ", ".join(f"{k} {v}" for k, v in outcomes.items() if v)
    wrong = [s.number for s in result.steps if s.unexpected]
    verdict = "every step as expected" if not wrong else f"NOT as expected: step {', '.join(wrong)}"
    return (
        f"\nSummary: {sum(outcomes.values())} inputs ({counted}); {refused} forged requests "
        f"refused; {result.complaints} complaints, {len(result.clusters)} cluster(s); "
        f"{result.acknowledgements} acknowledgements and {result.forwards} forwards sent; "
        f"{verdict}; {result.seconds:.1f} s."
    )


def _further(result: DemoResult) -> str:
    if result.kept:
        config = result.workdir / "omnichannel.toml"
        return (
            f"Look further: omnichannel --config {config} queue list  "
            "(also complaints show TICKET, outbox list, complaints export; log: "
            f"{result.workdir / 'demo.log'})"
        )
    return (
        "Look further: omnichannel demo --keep DIR [FOLDER], then "
        "omnichannel --config DIR/omnichannel.toml queue list"
    )
