"""The HTML form of a report: one self-contained file (inline CSS and SVG charts, no script,
nothing fetched) that a person opens in a browser or prints.

Charts are drawn by matplotlib (the ``report`` extra: ``pip install 'omnichannel[report]'``)
with its SVG backend and text kept as text, so they scale, print sharply and can be searched.
Every value from the database is escaped (``html.escape``; matplotlib escapes what it writes
into the SVG) and read as plain text, never as mathtext.
"""

from __future__ import annotations

import html
import io
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from omnichannel.errors import OmnichannelError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Chart", "charts", "render", "require_matplotlib"]

INSTALL_HINT = "report --format html needs matplotlib: pip install 'omnichannel[report]'"
MEASURE_TITLES = {
    "first_response": "First response",
    "forwarding": "Forwarding",
    "resolution": "Resolution",
}
COLORS = {
    "main": "#1f5f8b",
    "second": "#e07b39",
    "within": "#3a8f4b",
    "late": "#e0a030",
    "overdue": "#c0392b",
    "pending": "#9aa5b1",
}
PALETTE = ("#1f5f8b", "#e07b39", "#3a8f4b", "#8e44ad", "#c0392b", "#16a2b8", "#7f8c8d")
LABEL_WIDTH = 36
NONE = "\u2013"
"""What a table shows for no value (an en dash)."""


def require_matplotlib() -> None:
    """Raise a one-line error naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise OmnichannelError(INSTALL_HINT) from None


# -- charts ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    svg: str


def _label(value: Any) -> str:
    text = "(none)" if value is None else str(value)
    return text if len(text) <= LABEL_WIDTH else text[: LABEL_WIDTH - 1] + "…"


def _figure(rows: int = 0) -> tuple[Figure, Axes]:
    from matplotlib.figure import Figure

    height = max(1.6, 0.9 + 0.36 * rows) if rows else 3.2
    figure = Figure(figsize=(7.2, height), layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    return figure, axes


def _svg(figure: Figure, name: str, title: str) -> str:
    """The figure as an inline ``<svg>`` named ``title``: no XML prologue, sized by the
    page; ``name`` keeps its element ids apart from the other charts'."""
    import matplotlib

    out = io.StringIO()
    settings = matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": name, "text.parse_math": False}
    )
    with settings, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        figure.savefig(out, format="svg", metadata={"Date": None})
    text = out.getvalue()
    text = text[text.index("<svg") :]
    head, rest = text.split(">", 1)
    head = re.sub(r'\s(width|height)="[^"]*"', "", head)
    return f'{head} role="img" aria-label="{html.escape(title)}">{rest}'


def _barh(names: Sequence[Any], values: Sequence[int], xlabel: str, color: str) -> Figure:
    figure, axes = _figure(len(names))
    labels = [_label(n) for n in names]
    bars = axes.barh(range(len(labels)), values, color=color)
    axes.set_yticks(range(len(labels)), labels)
    axes.invert_yaxis()
    axes.bar_label(bars, padding=3)
    axes.set_xlabel(xlabel)
    axes.margins(x=0.12)
    return figure


def _counts_chart(key: str, xlabel: str) -> Callable[[dict[str, Any]], Figure | None]:
    def draw(report: dict[str, Any]) -> Figure | None:
        rows = report[f"by_{key}"]
        if not rows:
            return None
        return _barh([r[key] for r in rows], [r["complaints"] for r in rows], xlabel, PALETTE[0])

    return draw


def _agencies(report: dict[str, Any]) -> Figure | None:
    rows = report["by_agency"]
    if not rows:
        return None
    overdue = {r["agency"]: r["open_past_due"] for r in report["overdue"]["by_agency"]}
    figure, axes = _figure(2 * len(rows))
    positions = range(len(rows))
    received = axes.barh(
        [p - 0.2 for p in positions],
        [r["complaints"] for r in rows],
        height=0.4,
        color=COLORS["main"],
        label="complaints",
    )
    late = axes.barh(
        [p + 0.2 for p in positions],
        [overdue.get(r["agency"], 0) for r in rows],
        height=0.4,
        color=COLORS["overdue"],
        label="overdue now",
    )
    axes.set_yticks(list(positions), [_label(r["agency"]) for r in rows])
    axes.invert_yaxis()
    axes.bar_label(received, padding=3)
    axes.bar_label(late, padding=3)
    axes.legend(loc="lower right", frameon=False)
    axes.margins(x=0.12)
    return figure


def _weeks(report: dict[str, Any]) -> Figure | None:
    weeks = report["weeks"]
    if not any(w["received"] for w in weeks):
        return None
    channels = sorted({c for w in weeks for c in w["by_channel"]})
    figure, axes = _figure()
    names = [w["week"] for w in weeks]
    bottom = [0] * len(weeks)
    for index, channel in enumerate(channels):
        values = [w["by_channel"].get(channel, 0) for w in weeks]
        axes.bar(names, values, bottom=bottom, color=PALETTE[index % len(PALETTE)], label=channel)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes.plot(names, [w["resolved"] for w in weeks], "o-", color="#222222", label="resolved")
    axes.set_ylabel("complaints received")
    axes.legend(
        frameon=False, ncols=len(channels) + 1, loc="upper center", bbox_to_anchor=(0.5, -0.1)
    )
    return figure


def _timing(report: dict[str, Any]) -> Figure | None:
    timing = report["timing"]
    measures = [m for m in MEASURE_TITLES if timing[m]["reached"]]
    if not measures:
        return None
    figure, axes = _figure()
    positions = range(len(measures))
    for offset, (key, name, color) in enumerate(
        (("median_hours", "median", COLORS["main"]), ("p90_hours", "p90", COLORS["second"]))
    ):
        bars = axes.bar(
            [p + (offset - 0.5) * 0.38 for p in positions],
            [timing[m][key] for m in measures],
            width=0.38,
            color=color,
            label=name,
        )
        axes.bar_label(bars, fmt="%.1f h", padding=2, fontsize="small")
    axes.set_xticks(list(positions), [MEASURE_TITLES[m] for m in measures])
    axes.set_ylabel("hours after receipt")
    axes.legend(frameon=False)
    axes.margins(y=0.15)
    return figure


def _deadlines(report: dict[str, Any]) -> Figure | None:
    timing = report["timing"]
    parts = ("within_deadline", "late", "overdue", "pending")
    colors = (COLORS["within"], COLORS["late"], COLORS["overdue"], COLORS["pending"])
    if not any(timing[m][p] for m in MEASURE_TITLES for p in parts):
        return None
    figure, axes = _figure(6)
    names = [MEASURE_TITLES[m] for m in MEASURE_TITLES]
    totals = [sum(timing[m][p] for p in parts) for m in MEASURE_TITLES]
    left = [0] * len(names)
    for part, color in zip(parts, colors, strict=True):
        values = [timing[m][part] for m in MEASURE_TITLES]
        bars = axes.barh(names, values, left=left, color=color, label=part.replace("_", " "))
        shown = [
            str(v) if v >= 0.04 * total else "" for v, total in zip(values, totals, strict=True)
        ]
        axes.bar_label(bars, labels=shown, label_type="center")
        left = [a + b for a, b in zip(left, values, strict=True)]
    axes.invert_yaxis()
    axes.set_xlabel("complaints")
    axes.legend(frameon=False, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.25))
    return figure


def _satisfaction(report: dict[str, Any]) -> Figure | None:
    found = report["satisfaction"]
    if not found["ratings"]:
        return None
    figure, axes = _figure()
    scores = [str(s) for s in range(1, 6)]
    bars = axes.bar(scores, [found["distribution"][s] for s in scores], color=COLORS["within"])
    axes.bar_label(bars, padding=2)
    axes.set_xlabel("rating (1 = very dissatisfied, 5 = very satisfied)")
    axes.set_ylabel("ratings")
    return figure


def _satisfaction_by_agency(report: dict[str, Any]) -> Figure | None:
    rows = [a for a in report["satisfaction"]["by_agency"] if a["ratings"]]
    if not rows:
        return None
    figure, axes = _figure(len(rows))
    bars = axes.barh(range(len(rows)), [a["mean"] for a in rows], color=COLORS["within"])
    axes.set_yticks(range(len(rows)), [_label(a["agency"]) for a in rows])
    axes.invert_yaxis()
    labels = [f"{a['mean']:.2f} ({a['ratings']} rated)" for a in rows]
    axes.bar_label(bars, labels=labels, padding=3)
    axes.set_xlim(0, 5.9)
    axes.set_xticks(range(6))
    axes.set_xlabel("mean rating (1 to 5)")
    return figure


def _clusters(report: dict[str, Any]) -> Figure | None:
    rows = report["clusters"]
    if not rows:
        return None
    names = [r["label"] or r["id"] for r in rows]
    return _barh(names, [r["in_period"] for r in rows], "complaints in the period", PALETTE[1])


CHARTS: tuple[tuple[str, str, Callable[[dict[str, Any]], Figure | None]], ...] = (
    ("weeks", "Complaints received by week and channel", _weeks),
    ("channels", "Complaints by channel", _counts_chart("channel", "complaints")),
    ("agencies", "Complaints and overdue by agency", _agencies),
    ("categories", "Complaints by category", _counts_chart("category", "complaints")),
    ("statuses", "Complaints by status now", _counts_chart("status", "complaints")),
    ("timing", "Time to first response, forwarding and resolution", _timing),
    ("deadlines", "Against the working-day deadlines", _deadlines),
    ("satisfaction", "Satisfaction ratings", _satisfaction),
    ("satisfaction_agencies", "Mean satisfaction by agency", _satisfaction_by_agency),
    ("clusters", "Largest mass reports (clusters)", _clusters),
)
"""Each chart: its name, its title, and how it is drawn (None: nothing to show)."""


def charts(report: dict[str, Any]) -> dict[str, Chart]:
    """The report's charts that have something to show, by name."""
    require_matplotlib()
    found = {}
    for name, title, draw in CHARTS:
        figure = draw(report)
        if figure is not None:
            found[name] = Chart(name, title, _svg(figure, f"chart-{name}", title))
    return found


# -- the page ----------------------------------------------------------------------------------

STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; color: #1d2630; margin: 2rem auto;
  max-width: 60rem; padding: 0 1rem; line-height: 1.4; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 2px solid #1f5f8b; padding-bottom: 0.2rem; }
.meta { color: #52606d; margin-top: 0; }
.cards { display: flex; flex-wrap: wrap; gap: 0.8rem; margin: 1rem 0; }
.card { border: 1px solid #cbd2d9; border-radius: 6px; padding: 0.6rem 1rem; min-width: 9rem; }
.card b { display: block; font-size: 1.6rem; }
figure.chart { margin: 0.5rem 0 1rem; }
figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { color: #52606d; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #cbd2d9; padding: 0.25rem 0.6rem; text-align: right; }
.t { text-align: left; }
thead th { background: #f0f4f8; }
.note { color: #52606d; font-style: italic; }
@page { size: A4; margin: 14mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10pt; }
  section { break-inside: avoid; page-break-inside: avoid; }
  figure.chart svg { max-height: 120mm; }
}
"""


def _e(value: Any) -> str:
    if value is None:
        return NONE
    if isinstance(value, float):
        return f"{value:,.2f}"
    return html.escape(str(value))


def _share(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.1f}%"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *, text: int = 1) -> str:
    """A table whose first ``text`` columns are words (left-aligned), the rest figures."""

    def cells(row: Sequence[Any], tag: str) -> str:
        return "".join(
            f"<{tag}{' class=t' if i < text else ''}>{_e(cell)}</{tag}>"
            for i, cell in enumerate(row)
        )

    body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in rows)
    return f"<table><thead><tr>{cells(headers, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def _figure_html(found: dict[str, Chart], name: str) -> str:
    chart = found.get(name)
    if chart is None:
        return '<p class="note">Nothing to show for this period.</p>'
    return (
        f'<figure class="chart" data-chart="{name}">{chart.svg}'
        f"<figcaption>{html.escape(chart.title)}</figcaption></figure>"
    )


def _section(title: str, anchor: str, *parts: str) -> str:
    return f'<section id="{anchor}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _cards(report: dict[str, Any]) -> str:
    totals, timing = report["totals"], report["timing"]
    mean = report["satisfaction"]["mean"]
    cards = (
        ("complaints received", totals["complaints"]),
        ("resolved", timing["resolution"]["reached"]),
        ("overdue now", report["overdue"]["open_past_due"]),
        ("resolved within deadline", _share(timing["resolution"]["within_deadline_share"])),
        ("median first response", _hours(timing["first_response"]["median_hours"])),
        ("mean satisfaction", NONE if mean is None else f"{mean:.2f} / 5"),
    )
    inner = "".join(f'<div class="card"><b>{_e(v)}</b>{html.escape(k)}</div>' for k, v in cards)
    return f'<div class="cards">{inner}</div>'


def _local(moment: str, timezone: str) -> str:
    """An ISO UTC time as people in the office read it."""
    when = datetime.fromisoformat(moment.replace("Z", "+00:00")).astimezone(ZoneInfo(timezone))
    return when.strftime("%Y-%m-%d %H:%M")


def _hours(value: float | None) -> str:
    return NONE if value is None else f"{value:.1f} h"


def _timing_rows(timing: dict[str, Any]) -> list[list[Any]]:
    return [
        [
            MEASURE_TITLES[m],
            timing[m]["reached"],
            _hours(timing[m]["median_hours"]),
            _hours(timing[m]["p90_hours"]),
            timing[m]["within_deadline"],
            timing[m]["late"],
            timing[m]["overdue"],
            timing[m]["pending"],
            timing[m]["skipped"],
            _share(timing[m]["within_deadline_share"]),
        ]
        for m in MEASURE_TITLES
    ]


TIMING_HEADERS = (
    "step",
    "reached",
    "median",
    "p90",
    "within deadline",
    "late",
    "overdue",
    "pending",
    "skipped",
    "share within",
)


def _satisfaction_html(report: dict[str, Any], found: dict[str, Chart]) -> str:
    data = report["satisfaction"]
    if not data["ratings"]:
        return f'<p class="note">{html.escape(data["note"] or "no ratings yet")}.</p>'
    rows = [
        [
            a["agency"],
            a["surveyed"],
            a["ratings"],
            _share(a["response_rate"]),
            a["mean"],
            *(a["distribution"][str(s)] for s in range(1, 6)),
        ]
        for a in [{**data, "agency": "all agencies"}, *data["by_agency"]]
    ]
    headers = ("agency", "surveyed", "ratings", "response rate", "mean", "1", "2", "3", "4", "5")
    return (
        _figure_html(found, "satisfaction")
        + _figure_html(found, "satisfaction_agencies")
        + _table(headers, rows)
    )


def _weeks_section(report: dict[str, Any], found: dict[str, Chart]) -> str:
    names = ("week", "starts", "received", "resolved", "rejected", "open", "overdue")
    headers = ("ISO week", "from", "received", "resolved", "rejected", "open", "overdue now")
    rows = [[w[k] for k in names] for w in report["weeks"]]
    return _section(
        "Trend by week", "weeks", _figure_html(found, "weeks"), _table(headers, rows, text=2)
    )


def _counts_section(report: dict[str, Any], found: dict[str, Chart], key: str, chart: str) -> str:
    rows = [[r[key], r["complaints"]] for r in report[f"by_{key}"]]
    return _section(
        f"By {key}", f"by-{key}", _figure_html(found, chart), _table((key, "complaints"), rows)
    )


AGENCY_HEADERS = (
    "agency",
    "complaints",
    "overdue now",
    "median first response",
    "median resolution",
    "resolved within deadline",
)


def _agencies_section(report: dict[str, Any], found: dict[str, Chart]) -> str:
    received = {r["agency"]: r["complaints"] for r in report["by_agency"]}
    overdue = {r["agency"]: r["open_past_due"] for r in report["overdue"]["by_agency"]}
    rows = [
        [
            a["agency"],
            received.get(a["agency"], 0),
            overdue.get(a["agency"], 0),
            _hours(a["first_response"]["median_hours"]),
            _hours(a["resolution"]["median_hours"]),
            _share(a["resolution"]["within_deadline_share"]),
        ]
        for a in report["timing_by_agency"]
    ]
    return _section(
        "By agency", "by-agency", _figure_html(found, "agencies"), _table(AGENCY_HEADERS, rows)
    )


def _timing_section(report: dict[str, Any], found: dict[str, Chart]) -> str:
    return _section(
        "Timeliness",
        "timing",
        _figure_html(found, "timing"),
        _figure_html(found, "deadlines"),
        _table(TIMING_HEADERS, _timing_rows(report["timing"])),
    )


def _clusters_section(report: dict[str, Any], found: dict[str, Chart]) -> str:
    headers = ("cluster", "label", "in the period", "all time")
    rows = [[c["id"], c["label"], c["in_period"], c["size"]] for c in report["clusters"]]
    return _section(
        "Largest mass reports",
        "clusters",
        _figure_html(found, "clusters"),
        _table(headers, rows, text=2),
    )


def _header(report: dict[str, Any], title: str, last: date) -> str:
    period = report["period"]
    return (
        f"<header><h1>{html.escape(title)}</h1>"
        f'<p class="meta">Complaints received from {_e(period["from"])} to '
        f"{_e(last.isoformat())} ({_e(period['timezone'])}); figures as of "
        f"{_e(_local(report['generated_at'], period['timezone']))}. "
        "No complainant's identity is shown.</p></header>"
    )


def render(report: dict[str, Any]) -> str:
    """The report as one HTML document."""
    found = charts(report)
    period = report["period"]
    last = date.fromisoformat(period["to"]) - timedelta(days=1)
    title = f"Complaints report {period['from']} to {last.isoformat()}"
    body = [
        _header(report, title, last),
        _cards(report),
        _weeks_section(report, found),
        _counts_section(report, found, "channel", "channels"),
        _counts_section(report, found, "category", "categories"),
        _agencies_section(report, found),
        _counts_section(report, found, "status", "statuses"),
        _timing_section(report, found),
        _section("Satisfaction", "satisfaction", _satisfaction_html(report, found)),
        _clusters_section(report, found),
        '<footer class="meta">Definitions of every figure: docs/reports.md of omnichannel.'
        "</footer>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
