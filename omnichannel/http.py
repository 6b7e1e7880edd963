"""The WSGI application: webhooks, health and metrics (contract: ``create_app(inbox)``).

Mount it in any WSGI framework or serve it with ``omnichannel serve`` (waitress).

- ``POST /webhooks/<name>`` and ``GET /webhooks/<name>`` (handshakes) → :meth:`Inbox.handle_webhook`
- ``GET /receipts/<receipt>`` → a web submission answered 202: 202 pending, 200 with its ticket
- ``GET /healthz`` → ``{"healthy": bool, "database": ..., "filing": {...}, "connectors": {...}}``
- ``GET /metrics`` → Prometheus text format

``/healthz`` and ``/metrics`` answer only clients in ``server.status_allow`` (403) holding
``server.status_token`` when one is set (401), and show states and counts, never an error's
text (a path, a host, a user name, a driver's message: those are in the log).

Bodies are read with the connector's limit enforced while reading: a declared
``Content-Length`` over the limit is refused before a byte is read, a longer stream is cut at
the limit. Unexpected errors answer 500 with no detail; the detail goes to the log.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from omnichannel import queries
from omnichannel.errors import StorageUnavailable
from omnichannel.webhook import WebhookConnector, WebhookResponse, json_response, same_secret

if TYPE_CHECKING:
    from omnichannel.config import IPNetwork
    from omnichannel.inbox import Inbox

__all__ = ["WsgiApp", "create_app"]

log = logging.getLogger("omnichannel.http")
StartResponse = Callable[..., Any]
Environ = dict[str, Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]
REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
PREFIX = "/webhooks/"
RECEIPTS = "/receipts/"
_RECEIPT = re.compile(r"[A-Za-z0-9_-]{8,64}")


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "omnichannel_webhook_requests",
            "Webhook requests by answer",
            ["connector", "status"],
            registry=self.registry,
        )
        self.outcomes = Counter(
            "omnichannel_messages",
            "Inbound messages by outcome",
            ["connector", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "omnichannel_webhook_seconds",
            "Webhook handling time",
            ["connector"],
            registry=self.registry,
        )
        self._children: dict[tuple[Any, ...], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once per label set (labels() takes a lock and
        checks its arguments on every call); label values come from configured names and
        fixed sets (statuses, outcomes), so this stays small."""
        key = (id(metric), *labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


class _StoreGauges:
    """Gauges read from the store at each scrape: the raw backlog and its age, quarantine, the
    outbox by status and the age of its oldest due row, overdue complaints, and each
    connector's seconds since its last success (poller lag)."""

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("omnichannel_store_up", "Whether the store answered")
        try:
            with self.inbox.store.transaction() as conn:
                numbers = queries.overview(conn, datetime.now(UTC))
        except StorageUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        for name, help_text, key in (
            ("omnichannel_raw_backlog", "Raw messages stored, not yet filed", "raw_backlog"),
            (
                "omnichannel_raw_backlog_age_seconds",
                "Age of the oldest raw message not yet filed",
                "raw_backlog_age_seconds",
            ),
            ("omnichannel_quarantined", "Raw messages quarantined, unresolved", "quarantined"),
            (
                "omnichannel_outbox_oldest_due_seconds",
                "How long the oldest pending outbox row has been due",
                "outbox_oldest_due_seconds",
            ),
            ("omnichannel_complaints_overdue", "Open complaints past their due time", "overdue"),
        ):
            yield GaugeMetricFamily(name, help_text, value=numbers[key])
        outbox = GaugeMetricFamily(
            "omnichannel_outbox", "Outbox rows by status (dead: given up)", labels=["status"]
        )
        for status, count in sorted(numbers["outbox"].items()):
            outbox.add_metric([status], count)
        yield outbox
        lag = GaugeMetricFamily(
            "omnichannel_connector_lag_seconds",
            "Seconds since the connector's last success (this process)",
            labels=["connector"],
        )
        now = datetime.now(UTC)
        for name in self.inbox.connector_names():
            seconds = _lag(self.inbox.connector_health(name), now)
            if seconds is not None:
                lag.add_metric([name], seconds)
        yield lag


class _App:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self.metrics = _Metrics()
        self.metrics.registry.register(_StoreGauges(inbox))
        self.status_networks = inbox.config.server.status_networks()

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            with self.inbox.store.within(self.inbox.config.server.storage_timeout):
                response = self.route(environ)
        except Exception:
            log.exception(
                "unhandled error answering %s %s",
                environ.get("REQUEST_METHOD"),
                environ.get("PATH_INFO"),
            )
            response = json_response(500, {"error": "internal error"})
        status = f"{response.status} {REASONS.get(response.status, 'Status')}"
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("X-Content-Type-Options", "nosniff"),  # an answer is never rendered as HTML
            *response.headers.items(),
        ]
        start_response(status, headers)
        return [response.body]

    def route(self, environ: Environ) -> WebhookResponse:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET").upper()
        if path.startswith(PREFIX) and "/" not in path[len(PREFIX) :]:
            return self.webhook(environ, path[len(PREFIX) :], method)
        if path.startswith(RECEIPTS) and method == "GET":
            return self.receipt(path[len(RECEIPTS) :])
        if path == "/healthz" and method == "GET":
            return self.status_refusal(environ, path) or self.health()
        if path == "/metrics" and method == "GET":
            return self.status_refusal(environ, path) or WebhookResponse(
                200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST
            )
        return json_response(404, {"error": "not found"})

    def status_refusal(self, environ: Environ, path: str) -> WebhookResponse | None:
        """403 for a client outside ``server.status_allow``, 401 without the bearer
        ``server.status_token`` (compared in constant time); None when the client may read."""
        remote = str(environ.get("REMOTE_ADDR") or "")
        if not _in_networks(remote, self.status_networks):
            log.warning("%s refused: 403 client %r not in server.status_allow", path, remote[:64])
            return json_response(403, {"error": "forbidden"})
        token = self.inbox.config.server.status_token
        if token is None or _bearer(environ, token.get_secret_value()):
            return None
        log.warning("%s refused: 401 missing or wrong bearer token", path)
        response = json_response(401, {"error": "bearer token required"})
        response.headers["WWW-Authenticate"] = 'Bearer realm="omnichannel"'
        return response

    def webhook(self, environ: Environ, name: str, method: str) -> WebhookResponse:
        limit = self._limit(name)
        label = name if limit is not None else "-"
        started = time.perf_counter()
        body = _read_body(environ, limit) if method == "POST" and limit is not None else b""
        if body is None:
            log.warning("webhook %s refused: 413 request body too large", label)
            response = json_response(413, {"error": "request body too large"})
        else:
            response = self.inbox.handle_webhook(
                name, method, request_url(environ), _headers(environ), body
            )
        metrics = self.metrics
        metrics.child(metrics.latency, label).observe(time.perf_counter() - started)
        metrics.child(metrics.requests, label, str(response.status)).inc()
        for result in response.results:
            metrics.child(metrics.outcomes, label, result.outcome.value).inc()
        return response

    def _limit(self, name: str) -> int | None:
        """The body limit of connector ``name``; None when it is not a webhook connector."""
        if name not in self.inbox.connector_names():
            return None
        try:
            connector = self.inbox.connector(name)
        except Exception:
            return None
        return connector.max_bytes() if isinstance(connector, WebhookConnector) else None

    def receipt(self, receipt: str) -> WebhookResponse:
        """A web submission answered 202: 200 with its ticket once filed, 202 while pending."""
        try:
            found = self.inbox.receipt(receipt) if _RECEIPT.fullmatch(receipt) else None
        except StorageUnavailable:
            return json_response(503, {"error": "storage unavailable, retry later"})
        if found is None:
            return json_response(404, {"error": "unknown receipt"})
        return json_response(200 if found["status"] == "filed" else 202, found)

    def health(self) -> WebhookResponse:
        database, waiting = "ok", {}
        try:
            with self.inbox.store.transaction() as conn:
                waiting = queries.backlog_by_connector(conn)
        except StorageUnavailable:
            database = "unavailable"
        now = datetime.now(UTC)
        connectors = {
            name: _state(self.inbox.connector_health(name), now, waiting.get(name, 0))
            for name in self.inbox.connector_names()
        }
        filing = self._filing(database == "ok")
        healthy = (
            database == "ok"
            and filing["healthy"]
            and not any(c.get("failed") for c in connectors.values())
        )
        body = {
            "healthy": healthy,
            "database": database,
            "filing": filing,
            "connectors": connectors,
        }
        return WebhookResponse(
            200 if healthy else 503, json.dumps(body).encode(), "application/json"
        )

    def _filing(self, reachable: bool) -> dict[str, Any]:
        worker = self.inbox.worker
        backlog: int | None = None
        if reachable:  # (a database that hangs is asked once per /healthz, not twice)
            with contextlib.suppress(StorageUnavailable):
                backlog = worker.backlog()
        return {
            "mode": "worker" if worker.running else "caller",
            "healthy": worker.last_error is None,
            "backlog": backlog,
            "filed": worker.filed_total,
        }


def _state(health: dict[str, Any], now: datetime, backlog: int) -> dict[str, Any]:
    """A connector's health with its ``state`` (failed, ok: it has succeeded, or waiting),
    ``lag_seconds`` (since its last success, in this process) and ``backlog`` (its raw
    messages stored, not yet filed). ``last_error`` says only what kind of error there was:
    its text can name a path, a host, a user or a database, and stays in the log."""
    failed = bool(health.get("failed"))
    state = "failed" if failed else "ok" if health.get("last_success") else "waiting"
    error = health.get("last_error")
    shown = None if not error else "failed, see the log" if failed else "error, see the log"
    return {
        "state": state,
        "last_success": health.get("last_success"),
        "last_error": shown,
        "failed": failed,
        "lag_seconds": _lag(health, now),
        "backlog": backlog,
    }


def _in_networks(remote: str, networks: list[IPNetwork]) -> bool:
    """Whether the connecting address is in one of ``networks`` (``localhost``: a Unix
    socket; an IPv4-mapped IPv6 address counts as its IPv4 address)."""
    try:
        address = ipaddress.ip_address("127.0.0.1" if remote == "localhost" else remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def _bearer(environ: Environ, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>``."""
    scheme, _, given = str(environ.get("HTTP_AUTHORIZATION") or "").partition(" ")
    return scheme.lower() == "bearer" and same_secret(token, given.strip())


def _lag(health: dict[str, Any], now: datetime) -> float | None:
    """Seconds since the connector's last success in this process (None: none yet)."""
    last = health.get("last_success")
    if not last:
        return None
    return max(0.0, (now - datetime.fromisoformat(last.replace("Z", "+00:00"))).total_seconds())


def _read_body(environ: Environ, limit: int) -> bytes | None:
    """The request body, or None when it is (or declares itself) larger than ``limit``."""
    declared = environ.get("CONTENT_LENGTH") or ""
    if declared.isdigit() and int(declared) > limit:
        return None
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    remaining = int(declared) if declared.isdigit() else limit + 1
    step = remaining if declared.isdigit() else 65536  # declared: one read, nothing joined
    chunks, total = [], 0
    while remaining > 0:
        chunk = stream.read(min(step, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
        remaining -= len(chunk)
        if total > limit:
            return None
    return b"".join(chunks)


def _headers(environ: Environ) -> list[tuple[str, str]]:
    headers = [
        (k[5:].replace("_", "-").lower(), str(v))
        for k, v in environ.items()
        if k.startswith("HTTP_")
    ]
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers.append((key.replace("_", "-").lower(), str(environ[key])))
    return headers


def request_url(environ: Environ) -> str:
    """The URL as the client called it: scheme, host, script name, path and raw query. The
    Host is quoted, so that what it holds stays in the URL's host part (``evil.com/path`` does
    not become a path), where ``Inbox.handle_webhook`` checks it."""
    scheme = environ.get("wsgi.url_scheme", "http")
    host = environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}"
    host = quote(host, safe=":[]")
    path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    return f"{scheme}://{host}{path}" + (f"?{query}" if query else "")


def create_app(inbox: Inbox) -> WsgiApp:
    """The WSGI application for ``inbox``."""
    return _App(inbox)
