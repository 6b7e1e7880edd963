"""Open data: the complaints in a form fit for publication, written by ``complaints export``.

- ``--format opendata``: one record per complaint (:data:`OPENDATA_FIELDS`), JSON Lines (or
  CSV when ``--output`` ends in ``.csv``).
- ``--format open311``: Open311 GeoReport v2 ``requests.json``, a JSON array of service
  requests, for the complaints that have a location.

Both leave out:

- **confidential complaints**, entirely; and complaints an operator merged into another
  (status ``merged``: the other one is there);
- **every identity**: no sender name, e-mail address, phone, handle or reply address, no
  messages, attachments or team notes — anonymous and named complaints look alike;
- **personal data in free text**: the subject, the description and the address are masked —
  phone numbers, e-mail addresses, NIK and NPWP numbers (:func:`omnichannel.privacy.mask_text`,
  every kind) and each word of the complainant's own name and handle — or left out with
  ``withhold_text``;
- **the exact place**: latitude and longitude are rounded to :data:`PRECISION` decimals
  (about 110 m), so that a position a citizen shared from home does not point at the house.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import IO, Any

import sqlalchemy as sa

from omnichannel import audit
from omnichannel.privacy import LOG_MASKER, mask_name
from omnichannel.queue import ACTIVE
from omnichannel.report import RESOLUTION_KINDS, RESPONSE_KINDS, first_event
from omnichannel.schema import format_utc
from omnichannel.store import Store
from omnichannel.store.tables import complaints, messages

__all__ = [
    "OPEN311_FIELDS",
    "OPENDATA_FIELDS",
    "PRECISION",
    "open311_requests",
    "opendata_records",
    "write_open311",
]

PRECISION = 3
"""Decimals kept of a latitude or longitude (0.001° is about 110 m in Indonesia)."""
OPENDATA_FIELDS = (
    "ticket",
    "status",
    "channel",
    "category",
    "agency",
    "received_at",
    "first_response_at",
    "resolved_at",
    "updated_at",
    "due_at",
    "cluster_id",
    "language",
    "subject",
    "description",
    "lat",
    "lon",
    "address",
)
OPEN311_FIELDS = (
    "service_request_id",
    "status",
    "status_notes",
    "service_name",
    "service_code",
    "description",
    "agency_responsible",
    "service_notice",
    "requested_datetime",
    "updated_datetime",
    "expected_datetime",
    "address",
    "address_id",
    "zipcode",
    "lat",
    "long",
    "media_url",
)
OTHER_SERVICE = "other"
"""The service code of a complaint without a category."""
_WORD = re.compile(r"[^\W\d_]{3,}")


def _query(
    since: datetime | None, until: datetime | None, cluster: str | None, located: bool
) -> sa.Select[Any]:
    c = complaints.c
    query = (
        sa.select(
            c.id,
            c.ticket,
            c.status,
            c.channel,
            c.category,
            c.agency,
            c.received_at,
            first_event(RESPONSE_KINDS).label("first_response_at"),
            first_event(RESOLUTION_KINDS).label("resolved_at"),
            c.updated_at,
            c.due_at,
            c.cluster_id,
            c.language,
            c.subject,
            c.body,
            c.location_lat,
            c.location_lon,
            c.location_address,
            c.sender_name,
            c.sender_handle,
        )
        .where(c.confidential.is_(False), c.status != "merged")
        .order_by(c.id)
    )
    if since is not None:
        query = query.where(c.received_at >= since)
    if until is not None:
        query = query.where(c.received_at < until)
    if cluster is not None:
        query = query.where(c.cluster_id == cluster)
    if located:
        query = query.where(c.location_lat.is_not(None), c.location_lon.is_not(None))
    return query


_INTRODUCED = re.compile(
    r"(?i:\b(?:nama saya|saya bernama|atas nama|hormat saya|salam|ttd|pelapor|pengirim|"
    r"my name is|regards)\b|\ba\.\s?n\.)\s*[:,.]?\s*"
    r"([A-Z][\w'\u2019-]+(?:[ \t]+[A-Z][\w'\u2019-]+){0,3})"
)
"""A name introduced as one (``nama saya Budi Santoso``, ``a.n. Siti``, ``Hormat saya,
Andi``): capitalized words after the phrase."""


def _text_masker(names: Iterable[str | None]) -> Callable[[str | None], str | None]:
    """Masks a complaint's text: the kinds of personal data ``mask_text`` finds, each word of
    the names and handles its senders are known by, and names introduced as such (``B***``)."""
    words = {w for name in names if name for w in _WORD.findall(name)}
    ordered = sorted(words, key=len, reverse=True)
    own = re.compile(rf"\b(?:{'|'.join(map(re.escape, ordered))})\b", re.I) if words else None

    def mask(text: str | None) -> str | None:
        if not text:
            return text
        text = LOG_MASKER.text(text)
        if own is not None:
            text = own.sub(lambda m: mask_name(m.group()), text)
        return _INTRODUCED.sub(
            lambda m: m.group()[: m.start(1) - m.start()] + mask_name(m[1]), text
        )

    return mask


def _withheld(_text: str | None) -> None:
    return None


def _known_names(conn: sa.Connection, ids: list[int]) -> dict[int, list[str]]:
    """The names and handles the senders of these complaints' messages gave."""
    m = messages.c
    found: dict[int, list[str]] = {}
    rows = conn.execute(
        sa.select(m.complaint_id, m.sender_name, m.sender_handle).where(m.complaint_id.in_(ids))
    )
    for complaint_id, name, handle in rows:
        found.setdefault(complaint_id, []).extend(v for v in (name, handle) if v)
    return found


def _rows(
    store: Store,
    since: datetime | None,
    until: datetime | None,
    cluster: str | None,
    located: bool,
    page: int = 500,
) -> Iterator[tuple[Any, list[str]]]:
    """The complaints to publish with their senders' names, read in one snapshot, a page at
    a time."""
    query = _query(since, until, cluster, located).limit(page)
    after = 0
    with audit.snapshot(store) as conn:
        while rows := conn.execute(query.where(complaints.c.id > after)).all():
            names = _known_names(conn, [row.id for row in rows])
            for row in rows:
                yield row, [row.sender_name, row.sender_handle, *names.get(row.id, [])]
            after = rows[-1].id


def _utc(moment: datetime | None) -> str | None:
    return None if moment is None else format_utc(moment)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, PRECISION)


def opendata_records(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    cluster: str | None = None,
    withhold_text: bool = False,
) -> Iterator[dict[str, Any]]:
    """The anonymized records (:data:`OPENDATA_FIELDS`) of the complaints received in
    ``[since, until)`` (of ``cluster``), in id order."""
    for row, names in _rows(store, since, until, cluster, located=False):
        text = _withheld if withhold_text else _text_masker(names)
        yield {
            "ticket": row.ticket,
            "status": row.status,
            "channel": row.channel,
            "category": row.category,
            "agency": row.agency,
            "received_at": _utc(row.received_at),
            "first_response_at": _utc(row.first_response_at),
            "resolved_at": _utc(row.resolved_at),
            "updated_at": _utc(row.updated_at),
            "due_at": _utc(row.due_at),
            "cluster_id": row.cluster_id,
            "language": row.language,
            "subject": text(row.subject),
            "description": text(row.body),
            "lat": _rounded(row.location_lat),
            "lon": _rounded(row.location_lon),
            "address": text(row.location_address),
        }


def open311_requests(
    store: Store,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    cluster: str | None = None,
    withhold_text: bool = False,
) -> Iterator[dict[str, Any]]:
    """GeoReport v2 service requests (:data:`OPEN311_FIELDS`) of the complaints with a
    location: ``open`` while the team works on one, else ``closed``; ``status_notes`` is
    omnichannel's own status; the service is the category."""
    for row, names in _rows(store, since, until, cluster, located=True):
        text = _withheld if withhold_text else _text_masker(names)
        service = row.category or OTHER_SERVICE
        yield {
            "service_request_id": row.ticket,
            "status": "open" if row.status in ACTIVE else "closed",
            "status_notes": row.status,
            "service_name": service.replace("_", " "),
            "service_code": service,
            "description": text(row.body),
            "agency_responsible": row.agency,
            "service_notice": None,
            "requested_datetime": _utc(row.received_at),
            "updated_datetime": _utc(row.updated_at),
            "expected_datetime": _utc(row.due_at),
            "address": text(row.location_address),
            "address_id": None,
            "zipcode": None,
            "lat": _rounded(row.location_lat),
            "long": _rounded(row.location_lon),
            "media_url": None,
        }


def write_open311(requests: Iterator[dict[str, Any]], out: IO[str]) -> int:
    """``requests.json``: the JSON array, written one request at a time; how many."""
    count = 0
    out.write("[")
    for request in requests:
        out.write(("," if count else "") + "\n" + json.dumps(request, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count
