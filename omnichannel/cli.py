"""The ``omnichannel`` command.

Machine output (``--format json`` / ``jsonl``, and ``ingest``'s JSON lines) is stable; tables are
for people.  Configuration and storage problems end with one clear message per problem and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from omnichannel.config import Config, load_config
from omnichannel.daemon import create_server, outbox_thread, start_background, stop_background
from omnichannel.errors import ConfigError, OmnichannelError, StorageUnavailable
from omnichannel.inbox import FileResult, Inbox
from omnichannel.logs import configure_logging, configure_server_logging
from omnichannel.poller import ConnectorStatus, poll_once, run_pollers
from omnichannel.privacy import LOG_MASKER
from omnichannel.queue import QueueRow
from omnichannel.schema import Complaint, ReceiveResult, format_utc

__all__ = ["main"]

log = logging.getLogger("omnichannel.cli")

EXIT_CONFIG, EXIT_STORAGE, EXIT_FAILED = 2, 3, 1
F = TypeVar("F", bound=Callable[..., Any])


def _fail(lines: Iterable[str], code: int) -> None:
    for line in lines:  # an operator's error may quote a value: never a whole phone or address
        click.echo(f"omnichannel: {LOG_MASKER.text(line)}", err=True)
    sys.exit(code)


def _handled(func: F) -> F:
    """Turn our errors into messages and exit codes."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            _fail([f"configuration: {p}" for p in exc.problems], EXIT_CONFIG)
        except StorageUnavailable as exc:
            _fail([str(exc)], EXIT_STORAGE)
        except OmnichannelError as exc:
            _fail([str(exc)], EXIT_FAILED)

    return wrapper  # type: ignore[return-value]


class _State:
    def __init__(
        self, config_path: str | None, log_format: str = "text", log_level: str = "INFO"
    ) -> None:
        self.config_path = config_path
        self.logging: dict[str, Any] = {"fmt": log_format, "level": logging.getLevelName(log_level)}
        self._inbox: Inbox | None = None
        self.reloading = False

    def config(self) -> Config:
        return load_config(self.config_path)

    def inbox(self, *, read_only: bool = False, serving: bool = False) -> Inbox:
        """The inbox; ``read_only`` for commands that only read: they never create a database
        (nor its folder) and never migrate one; ``serving`` for servers, which start (and
        answer 503) while the database is down."""
        if self._inbox is None:
            config = self.config()
            if read_only:
                _require_database(config)
                config.database.auto_migrate = False
            self._inbox = Inbox(config, wait_for_database=serving)
            if read_only and self._inbox.store.revision() is None:
                raise StorageUnavailable(
                    f"{self._inbox.store!r} has no schema yet: run 'omnichannel init-db' first"
                )
        return self._inbox

    def close(self) -> None:
        if self._inbox is not None:
            self._inbox.close()


pass_state = click.make_pass_decorator(_State)


def _require_database(config: Config) -> None:
    """An embedded database must exist already (read-only commands create none)."""
    from omnichannel.store.engine import in_memory, normalize_url

    url = normalize_url(config.database.url)
    if url.get_backend_name() == "sqlite" and not in_memory(url):
        path = Path(url.database or "").expanduser()
        if not path.is_file():
            raise StorageUnavailable(
                f"no database at {path}: run 'omnichannel init-db' (or ingest something) first"
            )


class _Group(click.Group):
    """``--config PATH`` is the group's option, but is taken after a subcommand too
    (``omnichannel check --config x.toml``)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _config_first(args))


def _config_first(args: list[str]) -> list[str]:
    """``args`` with a ``--config`` given after the subcommand moved in front of it."""
    rest, moved = list(args), []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg.startswith("--config="):
            moved, rest = [arg], args[:index] + args[index + 1 :]
        elif arg == "--config" and index + 1 < len(args) and index > 0:
            moved, rest = args[index : index + 2], args[:index] + args[index + 2 :]
        else:
            continue
        break
    return moved + rest


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    envvar="OMNICHANNEL_CONFIG",
    help="Configuration file (default: ./omnichannel.toml, else built-in defaults).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="OMNICHANNEL_LOG_FORMAT",
    help="Log lines as text, or as JSON objects (one per line).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    envvar="OMNICHANNEL_LOG_LEVEL",
)
@click.version_option(package_name="omnichannel")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, log_format: str, log_level: str) -> None:
    """Gather complaints from every channel into one deduplicated stream and team queue."""
    ctx.obj = _State(config_path, log_format, log_level.upper())
    ctx.call_on_close(ctx.obj.close)


# -- helpers -----------------------------------------------------------------------------------


# What a terminal would obey rather than show: C0 controls but tab and newline (ESC starts the
# sequences that recolour, move the cursor, set the window title or write the clipboard), DEL,
# the C1 controls (U+009B is a one-character CSI), and the bidi controls that reorder a line.
_TERMINAL_CONTROLS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"
)


def _for_terminal(text: str) -> str:
    """``text`` without anything a terminal would take as a command (complaint fields come
    from citizens: an e-mail address or a filename can carry escape sequences)."""
    return _TERMINAL_CONTROLS.sub("", text)


def _cell(value: Any) -> str:
    """A table cell: one line, nothing a terminal would obey."""
    return "" if value is None else " ".join(_for_terminal(str(value)).split())


def _table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _short(text: str | None, width: int = 48) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _progress(items: Iterator[FileResult], total: int) -> Iterator[FileResult]:
    """A progress bar on a terminal's stderr for long runs; silent otherwise."""
    if total < 50 or not sys.stderr.isatty():
        yield from items
        return
    with click.progressbar(length=total, label="ingesting", file=sys.stderr) as bar:
        for item in items:
            bar.update(1)
            yield item


def _complaint_rows(items: Iterable[Complaint]) -> list[list[Any]]:
    return [
        [
            c.id,
            c.ticket,
            c.status,
            c.channel,
            format_utc(c.received_at),
            _sender_label(c),
            _short(c.subject or c.body),
            len(c.messages),
        ]
        for c in items
    ]


def _sender_label(c: Complaint | QueueRow) -> str:
    """Who complained, for the team: a confidential sender marked so, an anonymous one never."""
    if c.anonymous:
        return "(anonymous)"
    who = c.sender.name or c.sender.phone or c.sender.email or c.sender.handle or ""
    if c.confidential:
        return f"{who} (confidential)" if who else "(confidential)"
    return who


COMPLAINT_HEADERS = [
    "ID",
    "TICKET",
    "STATUS",
    "CHANNEL",
    "RECEIVED",
    "SENDER",
    "SUBJECT / TEXT",
    "MSGS",
]

# -- commands ----------------------------------------------------------------------------------


@main.command("init-db")
@pass_state
@_handled
def init_db(state: _State) -> None:
    """Create or migrate the database schema."""
    config = state.config()
    config.database.auto_migrate = False
    with Inbox(config) as inbox:
        inbox.store.migrate()
        click.echo(f"database ready at revision {inbox.store.revision()} ({inbox.store!r})")


@main.command()
@click.option("--connect", is_flag=True, help="Also open the database and try each connector.")
@pass_state
@_handled
def check(state: _State, connect: bool) -> None:
    """Validate the configuration."""
    config = state.config()
    source = config.source or "built-in defaults"
    names = ", ".join(f"{c.name} ({c.type})" for c in config.connectors) or "none"
    click.echo(f"configuration OK: {source}; connectors: {names}")
    if not connect:
        return
    inbox = state.inbox(read_only=True)
    click.echo(f"database OK: {inbox.store!r} at revision {inbox.store.revision()}")
    failed = False
    for name in inbox.connector_names():
        try:
            inbox.connector(name).check()
            click.echo(f"connector {name}: OK")
        except OmnichannelError as exc:
            failed = True
            click.echo(f"connector {name}: FAILED: {exc}", err=True)
    if failed:
        sys.exit(EXIT_FAILED)


@main.command()
@click.option(
    "--connector",
    "connector_name",
    default="files",
    show_default=True,
    help="Connector whose decoder reads the files.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Files stored and filed per transaction.",
)
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@pass_state
@_handled
def ingest(state: _State, connector_name: str, batch_size: int, paths: tuple[str, ...]) -> None:
    """Push payload files (or the .eml and .json files of folders) through a connector; one
    JSON line per file."""
    files = _payload_files(paths)
    inbox = state.inbox()
    failed = False
    results = inbox.ingest_files(connector_name, files, batch_size=batch_size)
    for item in _progress(results, len(files)):
        failed = failed or item.result is None
        click.echo(json.dumps(item.as_json(), ensure_ascii=False))
    if failed:
        sys.exit(EXIT_FAILED)


def _payload_files(paths: Sequence[str]) -> list[str]:
    """The files named, a folder standing for its ``.eml`` and ``.json`` files in name order
    (not its subfolders); a folder without any is a usage error."""
    files: list[str] = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            files.append(name)
            continue
        found = sorted(str(p) for p in path.iterdir() if p.suffix in (".eml", ".json"))
        if not found:
            raise click.UsageError(f"no .eml or .json files in {name}")
        files += found
    return files


@main.command()
@click.argument("folder", required=False, type=click.Path(file_okay=False, exists=True))
@click.option(
    "--keep",
    metavar="DIR",
    type=click.Path(file_okay=False),
    help="Keep the database, a configuration to read it with, and the log in DIR (new or "
    "empty); default: a temporary directory, removed at the end.",
)
@_handled
def demo(folder: str | None, keep: str | None) -> None:
    """Play complaints on every channel through a deployment on loopback (webhooks, workers,
    stand-ins for the providers) and show what the team sees; FOLDER's .eml and .json files
    go through the files connector (default: the packaged samples)."""
    from omnichannel.demo import run_demo

    files = [Path(f) for f in _payload_files([folder])] if folder else None
    result = run_demo(files, keep=Path(keep) if keep else None, echo=click.echo)
    if not result.ok:
        sys.exit(EXIT_FAILED)


# -- serving -----------------------------------------------------------------------------------


def _server_options(func: F) -> F:
    func = click.option(
        "--threads",
        type=click.IntRange(1, 256),
        default=8,
        show_default=True,
        help="Server threads answering requests at once.",
    )(func)
    func = click.option("--port", type=int, default=None, help="Listen port (server.port).")(func)
    return click.option("--host", default=None, help="Listen address (server.host).")(func)


@main.command()
@_server_options
@pass_state
@_handled
def serve(state: _State, host: str | None, port: int | None, threads: int) -> None:
    """Serve the webhooks, /healthz, /metrics and /receipts until SIGTERM/SIGINT.

    Each webhook is answered once its payload is stored; a filing worker in this process files
    what arrives (and what other processes stored), and media are downloaded alongside.
    """
    import time

    inbox = state.inbox(serving=True)
    configure_server_logging(
        secrets=_all_secrets(inbox), mask=inbox.config.privacy.mask_logs, **state.logging
    )
    server = create_server(inbox, host, port, threads)
    stop = threading.Event()
    background = start_background(inbox, stop)
    _handle_signals(state)
    try:
        server.print_listen("Serving on http://{}:{}")
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.close()
        stop_background(inbox, stop, background, time.monotonic() + SHUTDOWN_SECONDS)
    _restart_if_reloading(state)


SHUTDOWN_SECONDS = 8.0
"""What ``serve`` and ``run`` give the work in hand on SIGTERM/SIGINT (they exit within 10 s)."""


@main.command()
@_server_options
@pass_state
@_handled
def run(state: _State, host: str | None, port: int | None, threads: int) -> None:
    """The daemon: pollers, webhook server, filing, media and outbox workers, until
    SIGTERM/SIGINT.

    One process does it all; on PostgreSQL run as many as you like (each poller is held by one
    replica at a time, any replica answers webhooks, every worker claims its own rows).
    """
    import time

    inbox = state.inbox(serving=True)
    configure_server_logging(
        secrets=_all_secrets(inbox), mask=inbox.config.privacy.mask_logs, **state.logging
    )
    server = create_server(inbox, host, port, threads)
    stop = threading.Event()
    background = start_background(inbox, stop, outbox=True)
    names = _polling_names(inbox, ())
    pollers = threading.Thread(
        target=run_pollers, args=(inbox, names, stop), name="pollers", daemon=True
    )
    pollers.start()
    anchors = _anchor_thread(inbox, stop)
    _handle_signals(state)
    try:
        server.print_listen("Serving on http://{}:{}")
        log.info("running: pollers %s", ", ".join(names) or "none")
        server.run()
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        deadline = time.monotonic() + SHUTDOWN_SECONDS
        server.close()
        stop_background(inbox, stop, [*background, pollers, anchors], deadline)
        log.info("stopped")
    _restart_if_reloading(state)


@main.command()
@click.option("--once", is_flag=True, help="File what is waiting now, then exit.")
@pass_state
@_handled
def work(state: _State, once: bool) -> None:
    """File stored messages and send the outbox until SIGTERM/SIGINT (run more of these for
    more capacity on PostgreSQL); with --once, file the backlog, send what is due, and exit."""
    inbox = state.inbox()
    configure_logging(
        secrets=_all_secrets(inbox), mask=inbox.config.privacy.mask_logs, **state.logging
    )
    if once:
        count = inbox.worker.file_backlog()
        waiting = inbox.worker.backlog()
        note = " (held by other workers, or left for the next run)" if waiting else ""
        click.echo(f"filed {count} messages; {waiting} waiting{note}")
        sent = inbox.outbox.drain()
        click.echo(f"outbox: {_counts(sent)}")
        return
    stop = threading.Event()
    sender = outbox_thread(inbox, stop)
    sender.start()

    def stopping(*_: object) -> None:
        stop.set()
        inbox.worker.close(timeout=0)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stopping)
    inbox.worker.run(interval=inbox.config.filing.interval)
    stop.set()
    sender.join(timeout=SHUTDOWN_SECONDS)


def _counts(mapping: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or "nothing due"


def _exit_on_sigterm(*_: object) -> None:
    raise SystemExit(0)


def _handle_signals(state: _State) -> None:
    """SIGTERM stops (waitress stops on SystemExit, gracefully). SIGHUP reads the configuration
    again: when it is valid, the process stops as for SIGTERM and starts again in place (the
    same process id, the new configuration); when not, it says why and runs on unchanged."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    def reload(*_: object) -> None:
        try:
            state.config()
        except ConfigError as exc:
            log.error("SIGHUP: configuration not reloaded: %s", "; ".join(exc.problems))
            return
        log.info("SIGHUP: configuration read; restarting with it")
        state.reloading = True
        raise SystemExit(0)

    signal.signal(signal.SIGHUP, reload)


def _restart_if_reloading(state: _State) -> None:
    if not state.reloading:
        return
    state.close()
    os.execv(sys.executable, [sys.executable, "-m", "omnichannel", *sys.argv[1:]])


@main.group()
def media() -> None:
    """Attachments that arrived as URLs (WhatsApp, Twilio): downloaded in the background."""


@media.command("fetch")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@pass_state
@_handled
def media_fetch(state: _State, limit: int) -> None:
    """Download the attachments that are due now (one round); one JSON line each.

    ``omnichannel serve`` does this continuously; this command suits a cron job.
    """
    for result in state.inbox().fetch_media(limit=limit):
        line = {
            "attachment_id": result.attachment_id,
            "status": result.status,
            "error": result.error,
        }
        click.echo(json.dumps(line, ensure_ascii=False))


# -- polling -----------------------------------------------------------------------------------


def _polling_names(inbox: Inbox, chosen: tuple[str, ...]) -> list[str]:
    polling = inbox.polling_names()
    for name in chosen:
        inbox.connector(name)  # an unknown name is reported as such
        if name not in polling:
            raise click.UsageError(f"connector {name!r} does not poll")
    return list(chosen) or polling


def _json_reporter(_name: str, results: list[ReceiveResult]) -> None:
    for result in results:
        click.echo(
            json.dumps(result.model_dump(mode="json", include=POLL_FIELDS), ensure_ascii=False)
        )


POLL_FIELDS = {"connector", "external_id", "outcome", "complaint_id", "ticket", "error"}


def _summary(status: ConnectorStatus) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(status.outcomes.items())) or "nothing new"
    if status.failed:
        return f"{status.name}: FAILED: {status.last_error} ({counts} before that)"
    return f"{status.name}: {sum(status.outcomes.values())} messages: {counts}"


@main.command()
@click.option("--once", is_flag=True, help="Poll each connector once and exit.")
@click.option(
    "--connector",
    "chosen",
    multiple=True,
    metavar="NAME",
    help="Only this connector (repeatable); default: every polling connector.",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Backfill: everything received since this day (YYYY-MM-DD), then go on.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["summary", "json"]),
    default="summary",
    help="json: one line per message as it is committed.",
)
@pass_state
@_handled
def poll(
    state: _State, once: bool, chosen: tuple[str, ...], since: datetime | None, fmt: str
) -> None:
    """Run the pollers (mailboxes, gateways); until SIGTERM/SIGINT unless --once."""
    inbox = state.inbox()
    configure_logging(
        secrets=_all_secrets(inbox), mask=inbox.config.privacy.mask_logs, **state.logging
    )
    names = _polling_names(inbox, chosen)
    report = _json_reporter if fmt == "json" else None
    if once or since is not None:
        statuses = poll_once(inbox, names, since=since.date() if since else None, report=report)
        inbox.worker.file_backlog()  # what an earlier run stored but could not file
    else:
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        inbox.worker.start(interval=inbox.config.filing.interval)
        statuses = run_pollers(inbox, names, stop, report)
    if fmt == "summary":
        for status in statuses:
            click.echo(_summary(status))
    if any(s.failed for s in statuses):
        sys.exit(EXIT_FAILED)


def _all_secrets(inbox: Inbox) -> list[str]:
    token = inbox.config.server.status_token
    return [
        secret for name in inbox.connector_names() for secret in inbox.connector(name).secrets()
    ] + ([token.get_secret_value()] if token is not None else [])


@main.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
@_handled
def status(state: _State, fmt: str) -> None:
    """What the store says: connectors, the raw backlog and its age, quarantine, the outbox,
    complaints by status and how many are overdue."""
    from datetime import UTC

    from omnichannel import queries

    inbox = state.inbox(read_only=True)
    with inbox.store.transaction() as conn:
        numbers = queries.overview(conn, datetime.now(UTC))
    numbers["connectors"] = {
        entry.name: entry.type for entry in inbox.config.connectors if entry.enabled
    }
    numbers["database"] = repr(inbox.store)
    if fmt == "json":
        click.echo(json.dumps(numbers, sort_keys=True))
        return
    click.echo(_status_text(numbers))


def _status_text(numbers: dict[str, Any]) -> str:
    def counts(mapping: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(mapping.items())) or "none"

    connectors = ", ".join(f"{n} ({t})" for n, t in numbers["connectors"].items()) or "none"
    return "\n".join(
        [
            f"database     {numbers['database']}",
            f"connectors   {connectors}",
            f"raw backlog  {numbers['raw_backlog']} waiting to be filed"
            + (
                f", oldest {numbers['raw_backlog_age_seconds']:.0f} s"
                if numbers["raw_backlog"]
                else ""
            ),
            f"quarantine   {numbers['quarantined']} unresolved",
            f"outbox       {counts(numbers['outbox'])}",
            f"complaints   {counts(numbers['complaints'])}; overdue {numbers['overdue']}",
        ]
    )


# -- complaints --------------------------------------------------------------------------------


def _actor_option(func: F) -> F:
    return click.option(
        "--actor", default="operator", show_default=True, help="Who does it (recorded)."
    )(func)


@main.group()
def complaints() -> None:
    """Read complaints."""


@complaints.command("list")
@click.option("--status", help="Only complaints with this status.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def complaints_list(state: _State, status: str | None, limit: int, fmt: str) -> None:
    """List complaints, oldest first (the first --limit; says so when there are more)."""
    items = state.inbox(read_only=True).complaints(limit=limit + 1, status=status)
    more, items = len(items) > limit, items[:limit]
    note = f"(the first {limit}: more complaints match; use --limit or --status)"
    if fmt == "json":
        for c in items:
            click.echo(c.model_dump_json())
        if more:
            click.echo(note, err=True)
        return
    click.echo(_table(_complaint_rows(items), COMPLAINT_HEADERS))
    if more:
        click.echo(note)


@complaints.command("show")
@click.argument("key")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
@_handled
def complaints_show(state: _State, key: str, fmt: str) -> None:
    """Show one complaint by id or ticket number, with the story of its handling."""
    inbox = state.inbox(read_only=True)
    item = inbox.complaint(key, team=True)
    if item is None:
        _fail([f"no complaint {key!r}"], EXIT_FAILED)
        return
    events = inbox.queue.events(item.id)
    if fmt == "json":
        data = item.model_dump(mode="json")
        data["events"] = [e | {"at": format_utc(e["at"])} for e in events]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(_describe(item))
    for e in events:
        change = f"{e['from']} -> {e['to']}" if e["from"] != e["to"] else e["to"]
        note = f": {e['note']}" if e["note"] else ""
        line = f"{_local(inbox, e['at'])}  {e['kind']:<9} {change}  by {e['actor']}{note}"
        click.echo(_for_terminal(line))


def _describe(c: Complaint) -> str:
    sender = (
        ", ".join(v for v in (c.sender.name, c.sender.phone, c.sender.email, c.sender.handle) if v)
        or "(hidden)"
    )
    if c.confidential and not c.anonymous:
        sender += "  (confidential: never exported or forwarded)"
    lines = [
        f"{c.ticket}  [{c.status}]  {c.channel} via {c.connector}",
        f"received {format_utc(c.received_at)}; due {format_utc(c.due_at) if c.due_at else '-'}",
        f"from     {sender}",
        f"subject  {c.subject or '-'}",
        "",
        c.body,
        "",
    ]
    if c.cluster_id:
        lines.append(f"cluster  {c.cluster_id} ({c.cluster_size}): {c.cluster_label}")
    if c.merged_into:
        lines.append(f"merged into complaint {c.merged_into}")
    if c.location:
        lines.append(f"location {c.location.lat}, {c.location.lon} {c.location.address or ''}")
    lines += [f"attachment {a.filename} ({a.content_type}, {a.size} bytes)" for a in c.attachments]
    lines += [
        f"message #{m.id} {m.outcome.value} {m.channel} {format_utc(m.received_at)}"
        + (f" ({m.merge_reason}" if m.merge_reason else "")
        + (f", similarity {m.merge_score:.2f}" if m.merge_score is not None else "")
        + (")" if m.merge_reason else "")
        for m in c.messages
    ]
    lines += [
        f"sent {o.kind} {format_utc(o.sent_at)} via {o.via} to {o.to}: {_short(o.body, 60)}"
        for o in c.outbound
    ]
    return _for_terminal("\n".join(lines))


CSV_FIELDS = [
    "id",
    "ticket",
    "status",
    "channel",
    "connector",
    "received_at",
    "updated_at",
    "sender_name",
    "sender_email",
    "sender_phone",
    "sender_handle",
    "subject",
    "body",
    "language",
    "location_lat",
    "location_lon",
    "location_address",
    "category",
    "agency",
    "due_at",
    "cluster_id",
    "cluster_label",
    "cluster_size",
    "anonymous",
    "confidential",
    "attachments",
    "messages",
]


# OWASP's CSV injection rule: a spreadsheet runs a cell that starts with one of these as a
# formula (=HYPERLINK, =WEBSERVICE, DDE). Also after leading whitespace: importers that trim
# cells (LibreOffice's "trim spaces", Google Sheets) would otherwise see the formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet shows and never runs: text that could start a
    formula gets a leading ``'`` (a phone number ``+62812…`` is written ``'+62812…``);
    numbers, booleans and empty cells are left as they are (they cannot hold a formula)."""
    if isinstance(value, str) and (
        value.startswith(_FORMULA_START) or value.lstrip().startswith(_FORMULA_START)
    ):
        return "'" + value
    return value


def _csv_row(c: Complaint) -> dict[str, Any]:
    data = c.model_dump(mode="json")
    row = {k: data.get(k) for k in CSV_FIELDS}
    for key in ("name", "email", "phone", "handle"):
        row[f"sender_{key}"] = data["sender"][key]
    location = data["location"] or {}
    row.update(
        location_lat=location.get("lat"),
        location_lon=location.get("lon"),
        location_address=location.get("address"),
        attachments=len(c.attachments),
        messages=len(c.messages),
    )
    return {key: _csv_cell(value) for key, value in row.items()}


@complaints.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv", "opendata", "open311"]),
    default="jsonl",
    show_default=True,
    help="opendata: anonymized, for publication (JSON Lines; CSV when --output ends in "
    ".csv); open311: GeoReport v2 requests.json of the complaints with a location.",
)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-")
@click.option("--cluster", help="Only the complaints of this cluster, together.")
@click.option(
    "--from",
    "start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="opendata/open311: received on or after this day (the office's timezone).",
)
@click.option(
    "--to",
    "end",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="opendata/open311: received before this day.",
)
@click.option(
    "--withhold-text",
    is_flag=True,
    help="opendata/open311: leave out the subject, description and address.",
)
@click.option(
    "--include-confidential",
    is_flag=True,
    help="Give confidential complaints' senders too (never anonymous ones); recorded as a "
    "'disclosed' event on each, with --actor and --reason.",
)
@click.option("--actor", help="Who asks for --include-confidential.")
@click.option("--reason", help="Why (recorded), with --include-confidential.")
@pass_state
@_handled
def complaints_export(
    state: _State,
    fmt: str,
    output: Any,
    cluster: str | None,
    start: datetime | None,
    end: datetime | None,
    withhold_text: bool,
    include_confidential: bool,
    actor: str | None,
    reason: str | None,
) -> None:
    """Export every complaint (JSON Lines follow schemas/complaint.schema.json). Anonymous and
    confidential complaints come without their sender, unless --include-confidential.
    opendata and open311 leave confidential complaints out and hold no identity."""
    chosen = cluster.strip().upper() if cluster else None
    if fmt in ("opendata", "open311"):
        if include_confidential:
            raise click.UsageError(f"--format {fmt} never includes confidential complaints")
        _export_open(state, fmt, output, chosen, start, end, withhold_text)
        return
    if start or end or withhold_text:
        raise click.UsageError("--from, --to and --withhold-text go with opendata and open311")
    if include_confidential and not (actor and actor.strip() and reason and reason.strip()):
        raise click.UsageError("--include-confidential needs --actor and --reason (recorded)")
    inbox = state.inbox(read_only=True)
    items: Iterable[Complaint] = inbox.iter_complaints(cluster=chosen, team=include_confidential)
    if include_confidential:
        items = _disclosed(inbox, items, str(actor), str(reason))
    if fmt == "jsonl":
        for c in items:
            output.write(c.model_dump_json() + "\n")
        return
    # every text cell quoted, so that a neutralised one stays one cell wherever it is opened
    writer = csv.DictWriter(output, fieldnames=CSV_FIELDS, quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    for c in items:
        writer.writerow(_csv_row(c))


def _export_open(
    state: _State,
    fmt: str,
    output: Any,
    cluster: str | None,
    start: datetime | None,
    end: datetime | None,
    withhold_text: bool,
) -> None:
    """The open-data exports (``omnichannel.opendata``): read-only, no identity."""
    from omnichannel import opendata

    inbox = state.inbox(read_only=True)
    tz = inbox.config.tz
    options: dict[str, Any] = {
        "since": start.replace(tzinfo=tz) if start else None,
        "until": end.replace(tzinfo=tz) if end else None,
        "cluster": cluster,
        "withhold_text": withhold_text,
    }
    if fmt == "open311":
        opendata.write_open311(opendata.open311_requests(inbox.store, **options), output)
        return
    records = opendata.opendata_records(inbox.store, **options)
    if not str(getattr(output, "name", "")).lower().endswith(".csv"):
        for record in records:
            output.write(json.dumps(record, ensure_ascii=False) + "\n")
        return
    writer = csv.DictWriter(
        output, fieldnames=opendata.OPENDATA_FIELDS, quoting=csv.QUOTE_NONNUMERIC
    )
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_cell(v) for k, v in record.items()})


def _disclosed(
    inbox: Inbox, items: Iterable[Complaint], actor: str, reason: str, batch: int = 500
) -> Iterator[Complaint]:
    """The complaints, each confidential one recorded as disclosed before it is written."""
    page: list[Complaint] = []
    for item in items:
        page.append(item)
        if len(page) >= batch:
            _record(inbox, page, actor, reason)
            yield from page
            page = []
    _record(inbox, page, actor, reason)
    yield from page


def _record(inbox: Inbox, page: list[Complaint], actor: str, reason: str) -> None:
    confidential = [c.id for c in page if c.confidential and not c.anonymous]
    if confidential:
        inbox.queue.record_disclosure(confidential, actor=actor, reason=reason)


@complaints.command("mark")
@click.argument("key", metavar="ID_OR_TICKET")
@click.option("--anonymous", "anonymous", flag_value=True, default=None, help="For good.")
@click.option(
    "--confidential/--not-confidential",
    default=None,
    help="The team sees the sender; exports and forwards do not.",
)
@click.option("--actor", required=True, help="Who decides (recorded).")
@click.option("--reason", required=True, help="Why (recorded).")
@pass_state
@_handled
def complaints_mark(
    state: _State,
    key: str,
    anonymous: bool | None,
    confidential: bool | None,
    actor: str,
    reason: str,
) -> None:
    """Make a complaint anonymous or confidential (or no longer confidential), recorded."""
    item = state.inbox().queue.set_privacy(
        key, actor=actor, reason=reason, anonymous=anonymous, confidential=confidential
    )
    flags = [name for name in ("anonymous", "confidential") if getattr(item, name)]
    click.echo(f"{item.ticket}: {', '.join(flags) or 'neither anonymous nor confidential'}")


@complaints.command("merge")
@click.argument("into")
@click.argument("other")
@click.option("--reason", help="Why (recorded).")
@_actor_option
@pass_state
@_handled
def complaints_merge(state: _State, into: str, other: str, reason: str | None, actor: str) -> None:
    """Merge complaint OTHER into INTO (id or ticket): one complaint with all the messages."""
    item = state.inbox().dedupe.merge(into, other, actor=actor, reason=reason)
    click.echo(f"merged {other} into {item.ticket}: {len(item.messages)} messages")


@complaints.command("split")
@click.argument("key")
@click.argument("message_ids", nargs=-1, required=True, type=click.IntRange(1, 2**63 - 1))
@click.option("--reason", help="Why (recorded).")
@_actor_option
@pass_state
@_handled
def complaints_split(
    state: _State, key: str, message_ids: tuple[int, ...], reason: str | None, actor: str
) -> None:
    """Take messages (ids, as `complaints show` lists them) out of complaint KEY into a new
    complaint."""
    item = state.inbox().dedupe.split(key, list(message_ids), actor=actor, reason=reason)
    click.echo(f"{item.ticket}: a new complaint of {len(item.messages)} messages split off {key}")


@complaints.command("unmerge")
@click.argument("message_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--reason", help="Why (recorded).")
@_actor_option
@pass_state
@_handled
def complaints_unmerge(state: _State, message_id: int, reason: str | None, actor: str) -> None:
    """Take one message out of its complaint: it becomes a complaint of its own."""
    item = state.inbox().dedupe.unmerge(message_id, actor=actor, reason=reason)
    click.echo(f"{item.ticket}: message {message_id} is a complaint of its own")


@main.group()
def identities() -> None:
    """Who is who across channels: phones, e-mail addresses and WhatsApp ids of one person."""


@identities.command("list")
@click.option("--key", help="Only the person of this phone, e-mail address or key.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def identities_list(state: _State, key: str | None, limit: int, fmt: str) -> None:
    """Persons known by more than one identity (or the person of --key)."""
    found = state.inbox(read_only=True).dedupe.identities(key, limit=limit)
    if fmt == "json":
        for person in found:
            events = [e | {"at": format_utc(e["at"])} for e in person["events"]]
            click.echo(json.dumps(person | {"events": events}, ensure_ascii=False))
        return
    for person in found:
        click.echo(_for_terminal(f"person {person['person']}: {', '.join(person['keys'])}"))
        for e in person["events"]:
            other = f" + {e['other']}" if e["other"] else ""
            why = f": {e['reason']}" if e["reason"] else ""
            line = f"  {format_utc(e['at'])} {e['action']} {e['key']}{other} by {e['actor']}{why}"
            click.echo(_for_terminal(line))
    if not found:
        click.echo("no linked identities")


@identities.command("link")
@click.argument("first")
@click.argument("second")
@click.option("--reason", help="Why (recorded).")
@_actor_option
@pass_state
@_handled
def identities_link(state: _State, first: str, second: str, reason: str | None, actor: str) -> None:
    """Make two identities (phone, e-mail address, or tel:/mailto:/wa: key) one person."""
    keys = state.inbox().dedupe.link(first, second, actor=actor, reason=reason)
    click.echo(f"linked: {', '.join(keys)}")


@identities.command("unlink")
@click.argument("key")
@click.option("--reason", help="Why (recorded).")
@_actor_option
@pass_state
@_handled
def identities_unlink(state: _State, key: str, reason: str | None, actor: str) -> None:
    """Take one identity out of its person (filing will not link it again by itself)."""
    state.inbox().dedupe.unlink(key, actor=actor, reason=reason)
    click.echo(f"unlinked {key}")


# -- the team queue ------------------------------------------------------------------------------


def _local(inbox: Inbox, moment: datetime | None) -> str:
    """A time in the office's timezone, for people."""
    if moment is None:
        return "-"
    return moment.astimezone(inbox.config.tz).strftime("%Y-%m-%d %H:%M")


@main.group()
def queue() -> None:
    """The integrated team's queue: list, claim, assign, comment, resolve, close, reject,
    reopen."""


@queue.command("list")
@click.option("--status", help="Only this status (open, assigned, in_progress, resolved, ...).")
@click.option("--agency", help="Only this agency.")
@click.option("--channel", help="Only this channel (email, sms, whatsapp, web).")
@click.option("--overdue", is_flag=True, help="Only complaints past their due time.")
@click.option("--since", type=click.DateTime(formats=["%Y-%m-%d"]), help="Received on or after.")
@click.option("--until", type=click.DateTime(formats=["%Y-%m-%d"]), help="Received before.")
@click.option("--cluster", help="Only the complaints of this cluster (about one matter).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def queue_list(
    state: _State,
    status: str | None,
    agency: str | None,
    channel: str | None,
    overdue: bool,
    since: datetime | None,
    until: datetime | None,
    cluster: str | None,
    limit: int,
    fmt: str,
) -> None:
    """Complaints on the queue, newest first, times in the office's timezone."""
    inbox = state.inbox(read_only=True)
    tz = inbox.config.tz
    rows, more = inbox.queue.list(
        status=status,
        agency=agency,
        channel=channel,
        overdue=overdue,
        since=since.replace(tzinfo=tz) if since else None,
        until=until.replace(tzinfo=tz) if until else None,
        cluster=cluster.strip().upper() if cluster else None,
        limit=limit,
    )
    if fmt == "json":
        for row in rows:
            click.echo(json.dumps(row.as_json(), ensure_ascii=False))
        return
    table = [
        [
            r.ticket,
            r.status,
            r.channel,
            r.agency or "-",
            _local(inbox, r.received_at),
            _local(inbox, r.due_at) + (" OVERDUE" if r.overdue else ""),
            r.claimed_by or r.assignee or "",
            r.cluster_id or "",
            _short(_sender_label(r), 28),
            _short(r.subject, 40),
        ]
        for r in rows
    ]
    headers = [
        "TICKET",
        "STATUS",
        "CHANNEL",
        "AGENCY",
        "RECEIVED",
        "DUE",
        "WHO",
        "CLUSTER",
        "SENDER",
        "SUBJECT",
    ]
    click.echo(_table(table, headers))
    if more:
        click.echo(f"(more than {limit} match; use --limit or narrow the filters)")


@queue.command("claim")
@click.option("--worker", required=True, help="Who takes it (a team member's name).")
@click.option("--agency", help="Only a complaint of this agency.")
@click.option(
    "--lease",
    type=click.IntRange(1, 24 * 60),
    default=30,
    show_default=True,
    help="Minutes the claim holds; after that the complaint can be claimed again.",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
@_handled
def queue_claim(state: _State, worker: str, agency: str | None, lease: int, fmt: str) -> None:
    """Take the most urgent free complaint; prints it, or nothing when none is left."""
    from datetime import timedelta

    item = state.inbox().queue.claim(worker, agency=agency, lease=timedelta(minutes=lease))
    if item is None:
        return
    if fmt == "json":
        click.echo(item.model_dump_json())
    else:
        click.echo(_describe(item))


@queue.command("assign")
@click.argument("key")
@click.option("--agency")
@click.option("--person")
@_actor_option
@pass_state
@_handled
def queue_assign(
    state: _State, key: str, agency: str | None, person: str | None, actor: str
) -> None:
    """Assign a complaint to an agency and/or a person."""
    item = state.inbox().queue.assign(key, actor=actor, agency=agency, person=person)
    click.echo(f"{item.ticket}: {item.status}")


@queue.command("comment")
@click.argument("key")
@click.argument("note")
@_actor_option
@pass_state
@_handled
def queue_comment(state: _State, key: str, note: str, actor: str) -> None:
    """Add a note to a complaint's record."""
    item = state.inbox().queue.comment(key, note, actor=actor)
    click.echo(f"{item.ticket}: {item.status}")


@queue.command("reply")
@click.argument("key")
@click.argument("text")
@_actor_option
@pass_state
@_handled
def queue_reply(state: _State, key: str, text: str, actor: str) -> None:
    """Answer the citizen on the complaint's channel (sent by the outbox worker)."""
    item = state.inbox().queue.reply(key, text, actor=actor)
    click.echo(f"{item.ticket}: reply queued")


def _transition_command(name: str, summary: str) -> None:
    @queue.command(name, help=summary)
    @click.argument("key")
    @click.option("--note", "--reason", "note", help="Why (required to reject).")
    @_actor_option
    @pass_state
    @_handled
    def command(state: _State, key: str, note: str | None, actor: str) -> None:
        q = state.inbox().queue
        if name == "reject":
            item = q.reject(key, actor=actor, reason=note or "")
        else:
            item = getattr(q, name)(key, actor=actor, note=note)
        click.echo(f"{item.ticket}: {item.status}")


for _command_name, _command_help in (
    ("resolve", "Mark a complaint resolved."),
    ("close", "Close a resolved (or rejected) complaint."),
    ("reject", "Reject a complaint, with --reason."),
    ("reopen", "Bring a resolved, closed or rejected complaint back to open."),
):
    _transition_command(_command_name, _command_help)


# -- outbox ------------------------------------------------------------------------------------


@main.group()
def outbox() -> None:
    """Deliveries to citizens and forwarders: list them, send dead ones again."""


@outbox.command("list")
@click.option(
    "--status", help="Only this status (pending, sending, sent, dead, skipped, sent-inline)."
)
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def outbox_list(state: _State, status: str | None, limit: int, fmt: str) -> None:
    """List deliveries, newest first (ID is the one to retry)."""
    rows, more = state.inbox(read_only=True).outbox.list(status=status, limit=limit)
    if fmt == "json":
        for row in rows:
            data = row.as_json() | {"target": _delivery_target(row.kind, row.target)}
            click.echo(json.dumps(data, ensure_ascii=False))
        return
    table = [
        [
            r.id,
            r.kind if r.kind != "forward" else f"forward {r.payload.get('event', '')}",
            _short(_delivery_target(r.kind, r.target), 28),
            r.status,
            r.attempts,
            _when(r.sent_at or r.next_attempt_at),
            _short(r.last_error, 50),
        ]
        for r in rows
    ]
    click.echo(_table(table, ["ID", "KIND", "TO", "STATUS", "TRIES", "SENT/DUE", "LAST ERROR"]))
    if more:
        click.echo(f"(more than {limit}; use --limit or --status)")


def _delivery_target(kind: str, target: str) -> str:
    """Where a delivery goes, as operators see it: a citizen's address masked (an anonymous
    complaint's identity is sealed; nobody needs the whole of anyone's), an agency's as is."""
    return target if kind == "forward" else LOG_MASKER.text(target)


def _when(value: datetime | None) -> str:
    return format_utc(value) if value is not None else ""


@outbox.command("retry")
@click.argument("row_id", required=False, type=int)
@pass_state
@_handled
def outbox_retry(state: _State, row_id: int | None) -> None:
    """Send dead deliveries again (or the one ID, dead or skipped), from a fresh count of
    attempts; the outbox worker of `run` or `work` sends them."""
    count = state.inbox().outbox.retry(row_id)
    if row_id is not None and count == 0:
        _fail([f"outbox row {row_id} is not dead or skipped"], EXIT_FAILED)
    click.echo(f"{count} deliveries pending again")


# -- quarantine --------------------------------------------------------------------------------


@main.group()
def quarantine() -> None:
    """Inputs that could not be decoded: list them, replay them after a fix."""


@quarantine.command("list")
@click.option("--all", "include_resolved", is_flag=True, help="Include resolved entries.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def quarantine_list(state: _State, include_resolved: bool, fmt: str) -> None:
    """List quarantined inputs (ID is the one to replay)."""
    items = state.inbox(read_only=True).quarantined(include_resolved=include_resolved)
    if fmt == "json":
        for item in items:
            click.echo(json.dumps(item, default=_json_default, ensure_ascii=False))
        return
    rows = [
        [
            i["id"],
            i["connector"],
            (i["meta"] or {}).get("file") or _short(i["external_id"], 30),
            i["attempts"],
            format_utc(i["last_attempt"]),
            _short(i["error"], 60),
        ]
        for i in items
    ]
    click.echo(_table(rows, ["ID", "CONNECTOR", "SOURCE", "TRIES", "LAST TRY", "ERROR"]))


def _json_default(value: Any) -> Any:
    from datetime import datetime

    if isinstance(value, datetime):
        return format_utc(value)
    raise TypeError(type(value).__name__)


@quarantine.command("replay")
@click.argument("ids", nargs=-1, type=int)
@click.option(
    "--payload",
    type=click.Path(dir_okay=False, exists=True),
    help="A corrected copy of the payload for the one ID given (the original is kept).",
)
@click.option(
    "--decoder",
    type=click.Choice(["connector", "inbound"]),
    default="connector",
    show_default=True,
    help="Who reads --payload: the message's connector, or omnichannel itself when the "
    "payload is an InboundMessage JSON document (the files connector's .json form).",
)
@pass_state
@_handled
def quarantine_replay(
    state: _State, ids: tuple[int, ...], payload: str | None, decoder: str
) -> None:
    """Decode quarantined inputs again (all of them without IDs); one JSON line each."""
    data = Path(payload).read_bytes() if payload else None
    if data is not None and len(ids) != 1:
        raise click.UsageError("--payload needs exactly one ID")
    if decoder != "connector" and data is None:
        raise click.UsageError("--decoder needs --payload")
    results = state.inbox().replay(list(ids) or None, payload=data, decoder=decoder)
    missing = set(ids) - {r.raw_id for r in results}
    for result in results:
        click.echo(result.model_dump_json())
    if missing:
        _fail([f"not quarantined: {', '.join(map(str, sorted(missing)))}"], EXIT_FAILED)


# -- the audit record --------------------------------------------------------------------------


def _anchor_thread(inbox: Inbox, stop: threading.Event) -> threading.Thread:
    """Logs the audit record's anchor at start and once a day (``run``)."""
    from omnichannel.audit import log_anchors

    thread = threading.Thread(
        target=log_anchors, args=(inbox.store, stop), name="audit-anchor", daemon=True
    )
    thread.start()
    return thread


@main.group()
def audit() -> None:
    """The tamper-evident record of raw payloads and complaint events: verify it, print an
    anchor to keep outside the database."""


def _anchors(values: tuple[str, ...], files: tuple[Any, ...]) -> list[Any]:
    from omnichannel.audit import Anchor

    lines = [(f"--anchor {v}", v) for v in values]
    for handle in files:
        for number, line in enumerate(handle, 1):
            if line.strip():
                lines.append((f"{handle.name}:{number}", line))
    found = []
    for where, line in lines:
        try:
            found.append(Anchor.parse(line))
        except ValueError as exc:
            raise click.BadParameter(f"{where}: {exc}") from None
    return found


@audit.command("verify")
@click.option(
    "--anchor",
    "anchor_values",
    multiple=True,
    metavar="N:HASH",
    help="Entry N must still have HASH (repeatable).",
)
@click.option(
    "--anchors",
    "anchor_files",
    multiple=True,
    type=click.File("r", encoding="utf-8"),
    help="A file of anchors, one a line, as 'audit anchor' prints them (repeatable).",
)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@pass_state
@_handled
def audit_verify(
    state: _State, anchor_values: tuple[str, ...], anchor_files: tuple[Any, ...], fmt: str
) -> None:
    """Walk the record: every entry linked and unchanged, every raw payload and complaint event
    recorded and unchanged, each complaint's status its last recorded one. Exit 1 when not."""
    from omnichannel import audit as record

    anchors = _anchors(anchor_values, anchor_files)
    with record.snapshot(_audit_store(state)) as conn:
        if sys.stderr.isatty():
            with click.progressbar(
                length=record.size(conn), label="verifying", file=sys.stderr
            ) as bar:
                report = record.verify(conn, anchors=anchors, progress=bar.update)
        else:
            report = record.verify(conn, anchors=anchors)
    if fmt == "json":
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        click.echo(_audit_text(report))
    if not report.intact:
        sys.exit(EXIT_FAILED)


def _audit_store(state: _State) -> Any:
    """The store, read-only, once its schema has the record."""
    from omnichannel.store.migrate import head_revision

    store = state.inbox(read_only=True).store
    revision, newest = store.revision(), head_revision()
    if revision != newest:
        raise StorageUnavailable(
            f"{store!r} is at schema revision {revision}; the audit record needs {newest} "
            "('omnichannel init-db' upgrades an older database)"
        )
    return store


def _audit_text(report: Any) -> str:
    counts = (
        f"{report.entries} entries; {report.raws} raw payloads, {report.events} complaint "
        f"events, {report.complaints} complaints checked"
    )
    head = report.head.as_json() if report.head else None
    at = f"head: entry {head['entry']} {head['hash']} ({head['at']})" if head else "empty"
    if report.intact:
        return f"audit record intact: {counts}\n{at}"
    lines = [_for_terminal(p.message) for p in report.problems]
    if report.unlisted:
        lines.append(f"... and {report.unlisted} more")
    total = len(report.problems) + report.unlisted
    lines.append(f"audit record NOT intact: {total} problem{'s' * (total != 1)}; {counts}")
    return "\n".join(lines)


@audit.command("anchor")
@pass_state
@_handled
def audit_anchor(state: _State) -> None:
    """Print the head of the record as one JSON line, to keep outside the database (a mail, a
    log book); 'audit verify --anchor N:HASH' checks it later."""
    from omnichannel import audit as record

    with record.snapshot(_audit_store(state)) as conn:
        head = record.anchor(conn)
    click.echo(json.dumps(head.as_json()))


# -- retention ---------------------------------------------------------------------------------


@main.command()
@click.option(
    "--older-than",
    "older_than",
    metavar="AGE",
    help="Purge closed, resolved and rejected complaints last updated longer ago than AGE "
    "(5y, 18m, 90d, 2w), overriding [retention].",
)
@click.option("--apply", is_flag=True, help="Remove the data; without it, only say what would go.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=200,
    show_default=True,
    help="Complaints purged per transaction.",
)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_state
@_handled
def purge(state: _State, older_than: str | None, apply: bool, batch_size: int, fmt: str) -> None:
    """Remove the personal data of finished complaints past their retention age, keeping the
    anonymized complaints and the audit record; a dry run unless --apply."""
    from omnichannel import retention

    config = state.config()
    policy = retention.Policy.from_config(config.retention)
    if older_than is not None:
        try:
            policy = retention.Policy.uniform(older_than)
        except ValueError as exc:
            _fail([f"--older-than: {exc}"], EXIT_CONFIG)
    _require_database(config)
    inbox = state.inbox(read_only=not apply)
    options: dict[str, Any] = {"apply": apply, "region": inbox.config.region}
    if sys.stderr.isatty():
        total = retention.pending(inbox.store, policy)
        label = "purging" if apply else "reading"
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            summary = retention.purge(
                inbox.store, policy, batch_size=batch_size, progress=bar.update, **options
            )
    else:
        summary = retention.purge(inbox.store, policy, batch_size=batch_size, **options)
    if fmt == "json":
        click.echo(json.dumps(summary.as_json(), ensure_ascii=False))
    else:
        click.echo(_purge_text(summary, inbox.config.tz))


def _purge_text(summary: Any, tz: Any) -> str:
    """The summary of a purge, for people (dates in the office's timezone)."""

    def day(moment: datetime | None) -> str:
        return moment.astimezone(tz).strftime("%Y-%m-%d") if moment else "-"

    by_status = ", ".join(f"{k} {v}" for k, v in sorted(summary.complaints.items()))
    size = f" ({summary.attachment_bytes:,} bytes)" if summary.attachments else ""
    rows = [
        ["complaints", f"{summary.total}" + (f" ({by_status})" if by_status else "")],
        ["messages", summary.messages],
        ["raw payloads", summary.raw_payloads],
        ["attachments", f"{summary.attachments}{size}"],
        ["outbound messages", summary.outbound_messages],
        ["identities", summary.identities],
        [
            "last updated",
            f"{day(summary.oldest)} to {day(summary.newest)}" if summary.total else "-",
        ],
    ]
    rules = "; ".join(
        f"{status} last updated before {day(summary.cutoffs[status])} ({summary.ages[status]})"
        for status in sorted(summary.cutoffs)
    )
    count = f"{summary.total} complaint{'s' * (summary.total != 1)}"
    if summary.applied:
        head = f"purged: the personal data of {count} was removed"
    else:
        head = f"dry run, nothing changed: --apply would purge {count}"
    return "\n".join([head, f"policy: {rules}", _table(rows, ["WHAT", "COUNT"])])


# -- reports -----------------------------------------------------------------------------------


@main.command()
@click.option(
    "--from",
    "start",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day of the period (YYYY-MM-DD, the office's timezone).",
)
@click.option(
    "--to",
    "end",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="The day after the period (not included): --from 2026-11-01 --to 2026-12-01 is November.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "csv", "json"]),
    default="html",
    show_default=True,
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    help="Where to write it (default: report-FROM-TO.html for html, else standard output).",
)
@pass_state
@_handled
def report(state: _State, start: datetime, end: datetime, fmt: str, output: str | None) -> None:
    """The leadership report of the complaints received in [--from, --to): counts by channel,
    category, agency and status, timeliness against the working-day deadlines, overdue,
    satisfaction, the largest mass reports and the weekly trend. Shows no identity; reads
    only. HTML needs the 'report' extra (matplotlib); CSV and JSON need nothing."""
    from omnichannel import report as reports
    from omnichannel.report_html import render, require_matplotlib

    try:
        period = reports.Period(start.date(), end.date(), state.config().tz)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if fmt == "html":
        require_matplotlib()
    inbox = state.inbox(read_only=True)
    data = reports.generate(inbox.store, inbox.config, period)
    if fmt == "html":
        path = output or f"report-{period.start}-{period.end}.html"
        Path(path).write_text(render(data), encoding="utf-8")
        click.echo(path)
        return
    with click.open_file(output or "-", "w", encoding="utf-8") as out:
        if fmt == "json":
            out.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        else:
            reports.write_csv(data, out)
