"""Reports for the office's leadership: what came in, how fast it was handled against the
working-day deadlines, what is overdue, how satisfied citizens were, the largest mass reports
and the trend by week, for the complaints received in a period.

Definitions (in full in ``docs/reports.md``; ``tests/test_report.py`` checks every figure
against SQL of its own):

- **period**: complaints received in ``[from, to)``, dates in the office's timezone. A
  complaint an operator merged into another (status ``merged``) is the same complaint twice:
  it is counted in ``totals.merged`` and nowhere else.
- **first response**: the first complaint event of a team member's action
  (:data:`RESPONSE_KINDS`); **forwarding**: the first assignment (``assigned``) or the first
  forward ``sent`` by the outbox, whichever is earlier; **resolution**: the first ``resolved``
  or ``closed`` event.
- **deadlines**: first response and forwarding are due ``verify_days`` working days after
  receipt (the calendar filing uses: weekends and ``[deadlines] holidays`` skipped, in the
  office's timezone); resolution by the complaint's ``due_at`` (what the queue shows).
- **median, p90**: nearest rank (the smallest value at or above p% of the values).
- **weeks**: ISO weeks of receipt in the office's timezone.

Counts are aggregated in SQL; the timings are computed from one streamed row per complaint
(a few numbers each are kept for the percentiles). No identity is ever read.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from omnichannel.filing import add_working_days
from omnichannel.privacy import LOG_MASKER
from omnichannel.queue import ACTIVE
from omnichannel.schema import format_utc
from omnichannel.store.tables import clusters, complaint_events, complaints, outbox

__all__ = [
    "CLUSTER_LIMIT",
    "MEASURES",
    "RESOLUTION_KINDS",
    "RESPONSE_KINDS",
    "Calendar",
    "Period",
    "build",
    "first_event",
    "generate",
    "in_period",
    "milestones",
    "nearest_rank",
    "satisfaction",
    "write_csv",
]

RESPONSE_KINDS = ("claimed", "assigned", "comment", "reply", "resolved", "closed", "rejected")
"""Complaint events that are a team member's action on it (a first response)."""
RESOLUTION_KINDS = ("resolved", "closed")
"""Events that resolve a complaint."""
MEASURES = ("first_response", "forwarding", "resolution")
CLUSTER_LIMIT = 10
VERSION = 1
"""Of the JSON form; raised when a field changes meaning or goes."""


# -- the period and the calendar -------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """``[start, end)``: dates in the office's timezone ``tz``."""

    start: date
    end: date
    tz: ZoneInfo

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"the period ends ({self.end}) before it starts ({self.start})")

    @property
    def since(self) -> datetime:
        return datetime.combine(self.start, time(), self.tz).astimezone(UTC)

    @property
    def until(self) -> datetime:
        return datetime.combine(self.end, time(), self.tz).astimezone(UTC)

    def weeks(self) -> list[str]:
        """Every ISO week the period touches, in order."""
        day, found = self.start, []
        while day < self.end:
            found.append(iso_week(day))
            day += timedelta(days=7 - day.weekday())
        return found


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


@dataclass(frozen=True)
class Calendar:
    """The working-day deadlines, as filing computes them (``[deadlines]``)."""

    tz: ZoneInfo
    holidays: frozenset[date] = frozenset()
    days: Callable[[str | None], tuple[int, int]] = lambda _category: (3, 5)
    """(verify, follow-up) working days of a category."""

    @classmethod
    def from_config(cls, config: Any) -> Calendar:
        deadlines = config.deadlines
        return cls(config.tz, frozenset(deadlines.holidays), deadlines.days)

    def verify_deadline(self, received_at: datetime, category: str | None) -> datetime:
        """When a complaint received at ``received_at`` must have been answered."""
        return add_working_days(received_at, self.days(category)[0], self.tz, self.holidays)


# -- SQL ---------------------------------------------------------------------------------------


def in_period(since: datetime, until: datetime) -> list[sa.ColumnElement[bool]]:
    """The complaints a report covers: received in ``[since, until)``, not merged away."""
    c = complaints.c
    return [c.received_at >= since, c.received_at < until, c.status != "merged"]


def first_event(kinds: tuple[str, ...]) -> sa.ScalarSelect[Any]:
    """When the complaint of the enclosing query first had an event of ``kinds``."""
    e = complaint_events.c
    return (
        sa.select(sa.func.min(e.at))
        .where(e.complaint_id == complaints.c.id, e.kind.in_(kinds))
        .scalar_subquery()
    )


def _first_forward() -> sa.ScalarSelect[Any]:
    o = outbox.c
    return (
        sa.select(sa.func.min(o.sent_at))
        .where(o.complaint_id == complaints.c.id, o.kind == "forward", o.status == "sent")
        .scalar_subquery()
    )


def milestones(since: datetime, until: datetime) -> sa.Select[Any]:
    """One row per complaint of the period: what the timings need, and no identity."""
    c = complaints.c
    return (
        sa.select(
            c.id,
            c.received_at,
            c.channel,
            c.category,
            c.agency,
            c.status,
            c.due_at,
            first_event(RESPONSE_KINDS).label("first_response"),
            first_event(("assigned",)).label("assigned"),
            _first_forward().label("forwarded"),
            first_event(RESOLUTION_KINDS).label("resolved"),
        )
        .where(*in_period(since, until))
        .order_by(c.id)
    )


def _counts_by(
    conn: sa.Connection, column: sa.ColumnElement[Any], name: str, period: Period
) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(column, sa.func.count())
        .where(*in_period(period.since, period.until))
        .group_by(column)
    ).all()
    ordered = sorted(rows, key=lambda r: (-r[1], r[0] is None, r[0] or ""))
    return [{name: key, "complaints": int(n)} for key, n in ordered]


def _totals(conn: sa.Connection, period: Period) -> dict[str, int]:
    c = complaints.c
    count = sa.func.count
    row = conn.execute(
        sa.select(
            count(),
            count().filter(c.anonymous.is_(True)),
            count().filter(c.confidential.is_(True)),
            count().filter(c.location_lat.is_not(None), c.location_lon.is_not(None)),
            count().filter(c.cluster_id.is_not(None)),
        ).where(*in_period(period.since, period.until))
    ).one()
    merged = conn.execute(
        sa.select(count()).where(
            c.received_at >= period.since, c.received_at < period.until, c.status == "merged"
        )
    ).scalar_one()
    names = ("complaints", "anonymous", "confidential", "with_location", "in_clusters")
    return {**{k: int(v) for k, v in zip(names, row, strict=True)}, "merged": int(merged)}


def _clusters(conn: sa.Connection, period: Period) -> list[dict[str, Any]]:
    """The clusters with the most complaints in the period (mass reports), largest first."""
    c, k = complaints.c, clusters.c
    in_it = sa.func.count().label("in_period")
    rows = conn.execute(
        sa.select(k.id, k.label, k.size, in_it)
        .join(complaints, c.cluster_id == k.id)
        .where(*in_period(period.since, period.until))
        .group_by(k.id, k.label, k.size)
        .order_by(in_it.desc(), k.size.desc(), k.id)
        .limit(CLUSTER_LIMIT)
    ).all()
    return [
        {"id": i, "label": LOG_MASKER.text(label), "size": int(size), "in_period": int(n)}
        for i, label, size, n in rows
    ]


# -- satisfaction ------------------------------------------------------------------------------

_ratings = sa.table("ratings", sa.column("complaint_id"), sa.column("score"))
"""The survey's answers, read only when the table exists: one row per rated complaint."""
SURVEY_KIND = "survey"
"""The outbox kind of a satisfaction survey sent to a citizen."""


def _empty_satisfaction(note: str) -> dict[str, Any]:
    return {
        "ratings": 0,
        "surveyed": 0,
        "response_rate": None,
        "mean": None,
        "distribution": {str(score): 0 for score in range(1, 6)},
        "note": note,
    }


def satisfaction(conn: sa.Connection, since: datetime, until: datetime) -> dict[str, Any]:
    """Satisfaction of the complaints of ``[since, until)``: the mean rating, the number of
    each rating 1 to 5, and the response rate (rated of surveyed, of the complaints whose survey
    was sent), overall and by agency. Reads ``ratings(complaint_id, score)`` and the outbox
    rows of kind ``survey``; "no ratings yet" when the table does not exist or is empty."""
    if not sa.inspect(conn).has_table("ratings"):
        return {**_empty_satisfaction("no ratings yet"), "by_agency": []}
    c, o, r = complaints.c, outbox.c, _ratings.c
    where = in_period(since, until)
    scores = conn.execute(
        sa.select(c.agency, r.score, sa.func.count())
        .select_from(_ratings.join(complaints, c.id == r.complaint_id))
        .where(*where, r.score >= 1, r.score <= 5)
        .group_by(c.agency, r.score)
    ).all()
    sent = sa.exists().where(o.complaint_id == c.id, o.kind == SURVEY_KIND, o.status == "sent")
    rated = sa.exists().where(r.complaint_id == c.id, r.score >= 1, r.score <= 5)
    surveyed = conn.execute(
        sa.select(c.agency, sa.func.count(), sa.func.count().filter(rated))
        .where(*where, sent)
        .group_by(c.agency)
    ).all()
    by_agency: dict[str | None, dict[str, Any]] = {}
    for agency, score, n in scores:
        entry = by_agency.setdefault(agency, _empty_satisfaction(""))
        entry["distribution"][str(int(score))] += int(n)
    for agency, n, answered in surveyed:
        entry = by_agency.setdefault(agency, _empty_satisfaction(""))
        entry["surveyed"], entry["answered"] = int(n), int(answered)
    overall = _empty_satisfaction("")
    overall["answered"] = 0
    for entry in by_agency.values():
        for score, n in entry["distribution"].items():
            overall["distribution"][score] += n
        overall["surveyed"] += entry["surveyed"]
        overall["answered"] += entry.get("answered", 0)
    ordered = sorted(by_agency.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    return {
        **_rated(overall),
        "by_agency": [{"agency": agency, **_rated(entry)} for agency, entry in ordered],
    }


def _rated(entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with its ratings count, mean and response rate filled in."""
    distribution = entry["distribution"]
    ratings = sum(distribution.values())
    answered = entry.pop("answered", 0)
    total = sum(int(score) * n for score, n in distribution.items())
    return {
        "ratings": ratings,
        "surveyed": entry["surveyed"],
        "response_rate": round(answered / entry["surveyed"], 4) if entry["surveyed"] else None,
        "mean": round(total / ratings, 2) if ratings else None,
        "distribution": distribution,
        "note": "" if ratings else "no ratings yet",
    }


# -- timings -----------------------------------------------------------------------------------


def nearest_rank(values: list[float], percent: float) -> float | None:
    """The nearest-rank percentile of ``values``: the ceil(p/100 * n)-th smallest (None when
    empty). The median is ``nearest_rank(values, 50)``."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class _Measure:
    """One timing (first response, forwarding or resolution) over some complaints."""

    hours: list[float] = field(default_factory=list)
    within: int = 0
    late: int = 0
    overdue: int = 0
    pending: int = 0
    skipped: int = 0

    def add(
        self,
        received: datetime,
        reached: datetime | None,
        deadline: datetime | None,
        active: bool,
        now: datetime,
    ) -> None:
        if reached is not None:
            self.hours.append((reached - received).total_seconds() / 3600)
            if deadline is None or reached <= deadline:
                self.within += 1
            else:
                self.late += 1
        elif not active:
            self.skipped += 1  # closed without this step (rejected; resolved unforwarded)
        elif deadline is not None and deadline < now:
            self.overdue += 1
        else:
            self.pending += 1

    def as_json(self) -> dict[str, Any]:
        due = self.within + self.late + self.overdue
        median, p90 = nearest_rank(self.hours, 50), nearest_rank(self.hours, 90)
        return {
            "reached": len(self.hours),
            "median_hours": None if median is None else round(median, 2),
            "p90_hours": None if p90 is None else round(p90, 2),
            "within_deadline": self.within,
            "late": self.late,
            "overdue": self.overdue,
            "pending": self.pending,
            "skipped": self.skipped,
            "within_deadline_share": round(self.within / due, 4) if due else None,
        }


def _earliest(*moments: datetime | None) -> datetime | None:
    return min((m for m in moments if m is not None), default=None)


def _measures() -> dict[str, _Measure]:
    return {name: _Measure() for name in MEASURES}


@dataclass
class _Week:
    received: int = 0
    by_channel: Counter[str] = field(default_factory=Counter)
    resolved: int = 0
    rejected: int = 0
    open: int = 0
    overdue: int = 0


@dataclass
class _Tally:
    """What one pass over the period's complaints adds up."""

    calendar: Calendar
    now: datetime
    measures: dict[str, _Measure] = field(default_factory=_measures)
    by_agency: dict[str | None, dict[str, _Measure]] = field(default_factory=dict)
    overdue: Counter[str | None] = field(default_factory=Counter)
    weeks: dict[str, _Week] = field(default_factory=dict)

    def add(self, row: Any) -> None:
        active = row.status in ACTIVE
        verify = self.calendar.verify_deadline(row.received_at, row.category)
        steps = {
            "first_response": (row.first_response, verify),
            "forwarding": (_earliest(row.assigned, row.forwarded), verify),
            "resolution": (row.resolved, row.due_at),
        }
        agency = self.by_agency.setdefault(row.agency, _measures())
        for name, (reached, deadline) in steps.items():
            for measures in (self.measures, agency):
                measures[name].add(row.received_at, reached, deadline, active, self.now)
        late = active and row.due_at is not None and row.due_at < self.now
        if late:
            self.overdue[row.agency] += 1
        week = self.weeks.setdefault(
            iso_week(row.received_at.astimezone(self.calendar.tz).date()), _Week()
        )
        week.received += 1
        week.by_channel[row.channel] += 1
        week.resolved += row.resolved is not None
        week.rejected += row.status == "rejected"
        week.open += active
        week.overdue += late


def _timings(
    conn: sa.Connection, period: Period, calendar: Calendar, now: datetime
) -> dict[str, Any]:
    tally = _Tally(calendar, now)
    query = milestones(period.since, period.until).execution_options(yield_per=1000)
    for row in conn.execute(query):
        tally.add(row)
    agencies = sorted(tally.by_agency.items(), key=lambda kv: (kv[0] is None, kv[0] or ""))
    overdue = sorted(tally.overdue.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    return {
        "timing": {name: tally.measures[name].as_json() for name in MEASURES},
        "timing_by_agency": [
            {"agency": agency, **{m: measures[m].as_json() for m in MEASURES}}
            for agency, measures in agencies
        ],
        "overdue": {
            "open_past_due": sum(tally.overdue.values()),
            "resolved_late": tally.measures["resolution"].late,
            "by_agency": [{"agency": a, "open_past_due": n} for a, n in overdue],
        },
        "weeks": [_week_json(name, tally.weeks.get(name, _Week())) for name in period.weeks()],
    }


def _week_json(name: str, week: _Week) -> dict[str, Any]:
    monday = date.fromisocalendar(int(name[:4]), int(name[6:]), 1)
    return {
        "week": name,
        "starts": monday.isoformat(),
        "received": week.received,
        "by_channel": dict(sorted(week.by_channel.items())),
        "resolved": week.resolved,
        "rejected": week.rejected,
        "open": week.open,
        "overdue": week.overdue,
    }


# -- the report --------------------------------------------------------------------------------


def build(
    conn: sa.Connection, period: Period, calendar: Calendar, *, now: datetime
) -> dict[str, Any]:
    """The report of ``period`` as of ``now``, in its JSON form (``docs/reports.md``)."""
    c = complaints.c
    timings = _timings(conn, period, calendar, now)
    return {
        "version": VERSION,
        "period": {
            "from": period.start.isoformat(),
            "to": period.end.isoformat(),
            "timezone": period.tz.key,
            "since": format_utc(period.since),
            "until": format_utc(period.until),
        },
        "generated_at": format_utc(now),
        "totals": _totals(conn, period),
        "by_channel": _counts_by(conn, c.channel, "channel", period),
        "by_category": _counts_by(conn, c.category, "category", period),
        "by_agency": _counts_by(conn, c.agency, "agency", period),
        "by_status": _counts_by(conn, c.status, "status", period),
        **timings,
        "satisfaction": satisfaction(conn, period.since, period.until),
        "clusters": _clusters(conn, period),
    }


def generate(
    store: Any, config: Any, period: Period, *, now: datetime | None = None
) -> dict[str, Any]:
    """The report of ``period`` read from ``store`` in one read-only snapshot (consistent
    figures; no writer is held up), with ``config``'s deadlines."""
    from omnichannel import audit

    moment = now or datetime.now(UTC)
    with audit.snapshot(store) as conn:
        return build(conn, period, Calendar.from_config(config), now=moment)


# -- CSV ---------------------------------------------------------------------------------------

CSV_FIELDS = ("section", "key", "measure", "value")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A cell a spreadsheet shows and never runs (OWASP's CSV injection rule)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.lstrip().startswith(_FORMULA_START):
        return "'" + value
    return value


def _flatten(
    section: str, value: Any, key: str = "", path: tuple[str, ...] = ()
) -> Iterator[tuple[str, str, str, Any]]:
    """``(section, key, measure, value)`` rows: a list of objects is keyed by each object's
    first field (an agency, a channel, a week, a cluster); nested fields join with ``.``."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _flatten(section, inner, key, (*path, str(name)))
    elif isinstance(value, list):
        for item in value:
            first, *rest = item.items()
            ident = "(none)" if first[1] is None else str(first[1])
            joined = f"{key} {ident}" if key else ident
            yield from _flatten(section, dict(rest), joined, path)
    else:
        yield section, key, ".".join(path), value


def write_csv(report: dict[str, Any], out: IO[str]) -> None:
    """The report as CSV rows ``section, key, measure, value``."""
    writer = csv.writer(out)
    writer.writerow(CSV_FIELDS)
    for section, value in report.items():
        rows: Iterable[tuple[str, str, str, Any]] = _flatten(section, value)
        for row in rows:
            writer.writerow([_cell(cell) for cell in row])
