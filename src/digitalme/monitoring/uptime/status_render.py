"""How the public status looks: the HTML page (no script, every value escaped) and the
SVG badge, both rendered from the public document of :mod:`.status_page`."""

from __future__ import annotations

import html
from datetime import UTC, datetime
from decimal import ROUND_DOWN, Decimal

from digitalme.monitoring.uptime.status import (
    DAYS,
    ComponentView,
    DayStatus,
    DayView,
    PageStatus,
    StatusView,
)

__all__ = [
    "BADGE_GREY",
    "badge_colour",
    "format_percent",
    "render_badge",
    "render_page",
    "unavailable_page",
]

STYLE_PATH = "/status/status.css"

REFRESH_SECONDS = 60
"""The HTML page reloads itself this often."""

BADGE_LEVELS: tuple[tuple[float, str], ...] = (
    (99.9, "#4c1"),
    (99.0, "#a4a61d"),
    (95.0, "#fe7d37"),
)
"""``(lowest percent, colour)``, best first; below the last: :data:`BADGE_RED`."""
BADGE_RED = "#e05d44"
BADGE_GREY = "#9f9f9f"


_PAGE_LABELS = {
    PageStatus.OPERATIONAL: "All systems operational",
    PageStatus.DEGRADED: "Degraded performance",
    PageStatus.PARTIAL_OUTAGE: "Partial outage",
    PageStatus.MAJOR_OUTAGE: "Major outage",
    PageStatus.MAINTENANCE: "Under maintenance",
    PageStatus.UNKNOWN: "Status unknown",
}
_COMPONENT_LABELS = {
    PageStatus.OPERATIONAL: "Operational",
    PageStatus.DEGRADED: "Degraded",
    PageStatus.PARTIAL_OUTAGE: "Partial outage",
    PageStatus.MAJOR_OUTAGE: "Outage",
    PageStatus.MAINTENANCE: "Maintenance",
    PageStatus.UNKNOWN: "Unknown",
}
_WINDOW_LABELS = {"24h": "24 hours", "7d": "7 days", "30d": "30 days", "90d": "90 days"}
_CAUSE_LABELS = {"down": "outage", "unknown": "not monitored"}


def format_percent(percent: float | None) -> str:
    """``99.95%``, cut (never rounded up) to two decimals, so 99.999 is not 100%."""
    if percent is None:
        return "no data"
    if percent >= 100.0:
        return "100%"
    cut = Decimal(repr(percent)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    return f"{cut}%"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def _day_title(day: DayView) -> str:
    if day.status is DayStatus.NO_DATA:
        return f"{day.date}: no data"
    parts = [] if day.uptime_percent is None else [f"{format_percent(day.uptime_percent)} uptime"]
    if day.down_seconds:
        parts.append(f"{_duration(day.down_seconds)} down")
    if day.unknown_seconds:
        parts.append(f"{_duration(day.unknown_seconds)} not monitored")
    if day.maintenance_seconds:
        parts.append(f"{_duration(day.maintenance_seconds)} maintenance")
    return f"{day.date}: " + ", ".join(parts)


def _when(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _component_html(component: ComponentView) -> str:
    e = html.escape
    bars = "".join(
        f'<li class="day d-{day.status}" title="{e(_day_title(day))}"></li>'
        for day in component.days
    )
    figures = "".join(
        f"<div><dt>{e(_WINDOW_LABELS[window])}</dt><dd>{e(format_percent(percent))}</dd></div>"
        for window, percent in component.uptime.items()
    )
    return (
        f'<article class="component" data-component="{e(component.name)}">'
        f'<div class="head"><h3>{e(component.name)}</h3>'
        f'<span class="state s-{component.status}">{e(_COMPONENT_LABELS[component.status])}'
        "</span></div>"
        f'<ol class="bars" aria-label="uptime per day, last {DAYS} days">{bars}</ol>'
        f'<div class="axis"><span class="long">{DAYS} days ago</span>'
        '<span class="short">30 days ago</span><span>today</span></div>'
        f'<dl class="uptime">{figures}</dl></article>'
    )


def render_page(view: StatusView) -> str:
    """The HTML page (no script; every value escaped)."""
    e = html.escape
    sections = []
    if view.incidents:
        items = "".join(
            f"<li><strong>{e(i['component'])}</strong>: "
            f"{e(_CAUSE_LABELS.get(i['cause'], 'outage'))} since "
            f'<time datetime="{e(i["started_at"])}">{e(_when(i["started_at"]))}</time></li>'
            for i in view.incidents
        )
        sections.append(
            f'<section id="incidents"><h2>Open incidents</h2><ul>{items}</ul></section>'
        )
    if view.maintenance:
        items = "".join(
            f"<li><strong>{e(m['title'])}</strong>"
            + (' <span class="badge">in progress</span>' if m["active"] else "")
            + f'<br><time datetime="{e(m["starts_at"])}">{e(_when(m["starts_at"]))}</time>'
            f' to <time datetime="{e(m["ends_at"])}">{e(_when(m["ends_at"]))}</time>'
            f"<br>{e(', '.join(m['components']))}</li>"
            for m in view.maintenance
        )
        sections.append(f'<section id="maintenance"><h2>Maintenance</h2><ul>{items}</ul></section>')
    components = "".join(_component_html(c) for c in view.components) or (
        '<p class="empty">No component has reported yet.</p>'
    )
    sections.append(f'<section id="components"><h2>Components</h2>{components}</section>')
    updated = view.updated_at.isoformat()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f"<title>{e(view.title)}</title>"
        f'<link rel="stylesheet" href="{STYLE_PATH}"></head><body><main>'
        f"<header><h1>{e(view.title)}</h1></header>"
        f'<section id="overall" class="overall s-{view.status}" data-status="{view.status}">'
        f"<p>{e(_PAGE_LABELS[view.status])}</p>"
        f'<p class="updated">Updated <time datetime="{e(updated)}">{e(_when(updated))}</time>'
        "</p></section>" + "".join(sections) + "</main></body></html>"
    )


def unavailable_page(title: str) -> str:
    e = html.escape
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        f'<title>{e(title)}</title><link rel="stylesheet" href="{STYLE_PATH}"></head>'
        f"<body><main><header><h1>{e(title)}</h1></header>"
        '<section id="overall" class="overall s-unknown" data-status="unavailable">'
        "<p>The status is unavailable right now; this page retries every minute.</p>"
        "</section></main></body></html>"
    )


def badge_colour(percent: float | None) -> str:
    """Green from 99.9 %, yellow-green from 99 %, orange from 95 %, red below, grey: no data."""
    if percent is None:
        return BADGE_GREY
    for lowest, colour in BADGE_LEVELS:
        if percent >= lowest:
            return colour
    return BADGE_RED


def _text_width(text: str) -> int:
    # Verdana 11 px averages about 7 px a character; the badge only needs to fit.
    return 7 * len(text) + 10


def render_badge(percent: float | None, label: str = "uptime") -> str:
    """A flat SVG badge ``label | 99.95%``."""
    value = format_percent(percent)
    colour = badge_colour(percent)
    left, right = _text_width(label), _text_width(value)
    width = left + right
    e = html.escape
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="20" role="img" '
        f'aria-label="{e(label)}: {e(value)}"><title>{e(label)}: {e(value)}</title>'
        f'<rect width="{left}" height="20" fill="#555"/>'
        f'<rect x="{left}" width="{right}" height="20" fill="{colour}"/>'
        '<g fill="#fff" text-anchor="middle" font-family="Verdana,DejaVu Sans,sans-serif" '
        'font-size="11">'
        f'<text x="{left / 2:g}" y="14">{e(label)}</text>'
        f'<text x="{left + right / 2:g}" y="14">{e(value)}</text></g></svg>'
    )
