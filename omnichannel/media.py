"""Background download of attachments that arrived as URLs (Twilio media, WhatsApp media ids).

Never inside the webhook request: the complaint is filed first, with the attachment ``pending``;
this worker fetches it later through the connector that referenced it (with the provider's
credentials), stores the bytes with their sha256, and retries temporary failures with
exponential backoff. Rows are leased (``next_attempt_at`` moved forward) before the download,
so several workers can share the table and a killed worker's rows come back.

Where a download may go is decided here for every connector (:func:`host_allowed`,
:func:`plain_url`, :func:`follow_redirects`): a URL or id from a payload is checked before any
request is built from it, credentials go only to the host they were meant for, and redirects
are followed only to allowed hosts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import sqlalchemy as sa

from omnichannel.connector import Connector, Media
from omnichannel.errors import (
    OmnichannelError,
    RetryableError,
    SkippableError,
    StorageUnavailable,
)
from omnichannel.store import Store
from omnichannel.store.tables import UTCDateTime, attachments, messages

__all__ = [
    "MediaResult",
    "fetch_pending_media",
    "follow_redirects",
    "host_allowed",
    "plain_url",
    "run_media_worker",
    "url_netloc",
]

log = logging.getLogger("omnichannel.media")
LEASE = timedelta(minutes=5)
_NOW = sa.bindparam("now", type_=UTCDateTime())
MAX_REDIRECTS = 5
# RFC 3986 characters only: no space, control, backslash, quote or non-ASCII character, on
# which URL parsers (ours, urllib3's, a proxy's) could disagree about the host or the path.
_PLAIN_URL = re.compile(r"[A-Za-z0-9._~:/?#\[\]@!$&'()*+,;=%-]+")


def plain_url(url: str) -> bool:
    """Whether ``url`` is made of RFC 3986 characters only (see ``_PLAIN_URL``)."""
    return _PLAIN_URL.fullmatch(url) is not None


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def url_netloc(url: str) -> str | None:
    """``host`` (or ``host:port`` for a non-default port) when ``url`` may be fetched at all:
    plain, ``https`` (``http`` only to loopback), with a host and without user or password."""
    if not plain_url(url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    host = (parts.hostname or "").lower()
    if not host or "@" in parts.netloc or parts.scheme not in ("http", "https"):
        return None
    if parts.scheme == "http" and not _is_loopback(host):
        return None  # never send anything (least of all credentials) in clear text
    default = 443 if parts.scheme == "https" else 80
    return host if port in (None, default) else f"{host}:{port}"


def host_allowed(url: str, patterns: Sequence[str]) -> bool:
    """Whether ``url``'s host matches one of ``patterns`` (``host``, ``host:port``, or
    ``*.suffix`` for any subdomain of ``suffix`` on the default port)."""
    netloc = url_netloc(url)
    if netloc is None:
        return False
    for pattern in (p.strip().lower() for p in patterns):
        if pattern.startswith("*."):
            if netloc.endswith(pattern[1:]) and ":" not in netloc:
                return True
        elif netloc == pattern:
            return True
    return False


def follow_redirects(
    get: Callable[[str, bool], requests.Response],
    url: str,
    redirect_hosts: Sequence[str],
    *,
    max_redirects: int = MAX_REDIRECTS,
) -> requests.Response:
    """The first answer to ``url`` that is not a redirect (open: the caller reads and closes).

    ``get(url, credentials)`` makes one request without following redirects; ``credentials``
    is true only for the host of ``url`` itself, so a token never travels to another host.
    Redirects go only to ``redirect_hosts``; anywhere else is refused (SkippableError) before
    any request is made there.
    """
    origin, current = url_netloc(url), url
    for _ in range(max_redirects + 1):
        response = get(current, url_netloc(current) == origin)
        if not response.is_redirect:
            return response
        response.close()
        current = urljoin(current, response.headers.get("location", ""))
        if not host_allowed(current, redirect_hosts):
            raise SkippableError("media redirected to a host that is not allowed")
    raise SkippableError(f"media redirected more than {max_redirects} times")


@dataclass(frozen=True)
class MediaResult:
    """What became of one pending attachment in this round."""

    attachment_id: int
    status: str  # stored | pending (will retry) | failed | refused
    error: str | None = None


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 6 * 3600))


def _lease(store: Store, now: datetime, limit: int) -> list[Any]:
    """Take up to ``limit`` due rows: push their next attempt past the lease, return them."""
    due = (
        sa.select(attachments.c.id)
        .where(
            attachments.c.status == "pending",
            sa.or_(attachments.c.next_attempt_at.is_(None), attachments.c.next_attempt_at <= _NOW),
        )
        .order_by(attachments.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    with store.transaction() as conn:
        ids = list(conn.execute(due, {"now": now}).scalars())
        if not ids:
            return []
        conn.execute(
            sa.update(attachments)
            .where(attachments.c.id.in_(ids))
            .values(next_attempt_at=now + LEASE)
        )
        query = (
            sa.select(
                attachments.c.id,
                attachments.c.url,
                attachments.c.attempts,
                attachments.c.sha256,
                messages.c.connector,
            )
            .join(messages, messages.c.id == attachments.c.message_id)
            .where(attachments.c.id.in_(ids))
            .order_by(attachments.c.id)
        )
        return list(conn.execute(query))


def _outcome(
    row: Any, media: Media | None, error: OmnichannelError | None, now: datetime, max_attempts: int
) -> tuple[dict[str, Any], MediaResult]:
    attempts = row.attempts + 1
    if media is not None:
        digest = hashlib.sha256(media.content).hexdigest()
        if row.sha256 and row.sha256 != digest:  # the provider told us what to expect
            error = RetryableError("sha256 mismatch: the download was not the declared file")
        else:
            values = {
                "status": "stored",
                "content": media.content,
                "size": len(media.content),
                "sha256": digest,
                "attempts": attempts,
                "last_error": None,
                "next_attempt_at": None,
            }
            if media.content_type:
                values["content_type"] = media.content_type
            return values, MediaResult(row.id, "stored")
    assert error is not None
    text = str(error)[:1000]
    if isinstance(error, RetryableError) and attempts < max_attempts:
        values = {
            "attempts": attempts,
            "last_error": text,
            "next_attempt_at": now + _backoff(attempts),
        }
        return values, MediaResult(row.id, "pending", text)
    status = "failed" if isinstance(error, RetryableError) else "refused"
    values = {"status": status, "attempts": attempts, "last_error": text, "next_attempt_at": None}
    return values, MediaResult(row.id, status, text)


def fetch_pending_media(
    store: Store,
    connector: Callable[[str], Connector],
    now: datetime,
    *,
    limit: int = 50,
    max_bytes: int = 16 * 1024 * 1024,
    max_attempts: int = 8,
) -> list[MediaResult]:
    """One round: download the due pending attachments; returns what became of each."""
    results = []
    for row in _lease(store, now, limit):
        media, error = None, None
        try:
            media = connector(row.connector).fetch_media(row.url or "", max_bytes=max_bytes)
        except (RetryableError, SkippableError) as exc:
            error = exc
        except OmnichannelError as exc:  # fatal or unknown connector: give up on this row
            error = SkippableError(str(exc))
        values, result = _outcome(row, media, error, now, max_attempts)
        with store.transaction() as conn:
            conn.execute(sa.update(attachments).where(attachments.c.id == row.id).values(values))
        if result.error:
            log.warning("attachment %d: %s (%s)", row.id, result.status, result.error)
        results.append(result)
    return results


def run_media_worker(
    fetch: Callable[[], list[MediaResult]], stop: threading.Event, *, interval: float = 5.0
) -> None:
    """Download due attachments until ``stop`` is set; rest ``interval`` s when none are due."""
    while not stop.is_set():
        try:
            busy = bool(fetch())
        except StorageUnavailable as exc:
            log.warning("media worker: %s", exc)
            busy = False
        if not busy:
            stop.wait(interval)
