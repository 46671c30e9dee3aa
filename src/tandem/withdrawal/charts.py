"""Inline SVG drawn on the server: a census sparkline and the withdrawal chart (scores over time
with the bands shaded, doses given and reassessment times on the same time axis).

Pure: plain values in, markup out; no JavaScript, no third-party bundle. Every chart carries a
title and description, and the page shows the same numbers in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import escape
from zoneinfo import ZoneInfo

from markupsafe import Markup

# Band fills by level, light enough for the line and labels on top to keep their contrast.
BAND_FILL = {
    "none": "#eef6ee",
    "minimal": "#e6f4ea",
    "mild": "#fbf6dc",
    "moderate": "#fff0d1",
    "moderately_severe": "#fde3cf",
    "severe": "#fbdada",
}


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def sparkline(
    points: Sequence[Sequence[int]],
    max_total: int,
    *,
    width: int = 120,
    height: int = 28,
    label: str = "",
) -> Markup:
    """Totals over time as a small line; `points` are [minutes since epoch, total], oldest first."""
    if not points:
        return Markup("")
    pad = 3
    xs = [p[0] for p in points]
    span = max(xs[-1] - xs[0], 1)
    top = max(max_total, 1)

    def x(m: int) -> float:
        return pad + (m - xs[0]) / span * (width - 2 * pad) if len(points) > 1 else width - pad

    def y(total: int) -> float:
        return height - pad - min(total, top) / top * (height - 2 * pad)

    coords = " ".join(f"{_fmt(x(m))},{_fmt(y(t))}" for m, t in points)
    last_m, last_t = points[-1][0], points[-1][1]
    totals = ", ".join(str(p[1]) for p in points)
    title = escape(label or f"Trend, oldest first: {totals}")
    return Markup(  # noqa: S704 - numbers, and text passed through escape()
        f'<svg class="sparkline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<polyline points="{coords}" fill="none" stroke="currentColor" stroke-width="1.6" '
        f'stroke-linejoin="round" stroke-linecap="round"/>'
        f'<circle cx="{_fmt(x(last_m))}" cy="{_fmt(y(last_t))}" r="2.4" fill="currentColor"/></svg>'
    )


@dataclass(frozen=True)
class BandArea:
    label: str
    level: str
    low: int
    high: int


@dataclass(frozen=True)
class Point:
    at: datetime
    total: int
    band_label: str | None
    due_at: datetime | None  # the reassessment time this assessment set


@dataclass(frozen=True)
class DoseMark:
    at: datetime
    text: str


def score_chart(
    *,
    title: str,
    points: Sequence[Point],
    bands: Sequence[BandArea],
    doses: Sequence[DoseMark],
    now: datetime,
    zone: str,
    max_total: int,
    key: str = "chart",
    width: int = 760,
    height: int = 300,
) -> Markup:
    """One instrument's scores over time, bands shaded behind, doses as marks under the axis,
    and each assessment's reassessment time as a dashed step to a hollow ring."""
    if not points:
        return Markup("")
    tz = ZoneInfo(zone)
    left, right, top, bottom = 40, 16, 14, 58
    plot_w, plot_h = width - left - right, height - top - bottom
    start = min([p.at for p in points] + [d.at for d in doses])
    end_candidates = [p.at for p in points] + [d.at for d in doses] + [now]
    end_candidates += [p.due_at for p in points[-1:] if p.due_at is not None]
    end = max(end_candidates)
    span = end - start
    pad_t = max(span * 0.04, timedelta(minutes=20))
    start, end = start - pad_t, end + pad_t
    seconds = (end - start).total_seconds()
    highest = max(p.total for p in points)
    # Show the scale up to the start of the band above the highest score (or a little headroom),
    # not the whole 0-67: the clinically busy part of the range stays readable.
    y_max = min(max_total, max(highest + 4, 10))
    for band in bands:
        if band.low <= highest <= band.high:
            y_max = min(max_total, max(y_max, min(band.high, highest + 8)))
    next_band = [b.low for b in bands if b.low > highest]
    if next_band:
        y_max = min(max_total, max(y_max, min(next_band) + 2))

    def x(at: datetime) -> float:
        return left + (at - start).total_seconds() / seconds * plot_w

    def y(total: float) -> float:
        return top + plot_h - min(total, y_max) / y_max * plot_h

    parts: list[str] = []
    t = escape(title)
    desc = escape(
        f"{len(points)} assessments from {points[0].at.astimezone(tz):%d %b %H:%M} to "
        f"{points[-1].at.astimezone(tz):%d %b %H:%M}; latest total {points[-1].total}"
        f"{' (' + points[-1].band_label + ')' if points[-1].band_label else ''}; {len(doses)} doses given."
    )
    parts.append(
        f'<svg class="score-chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="chart-title-{key} chart-desc-{key}" preserveAspectRatio="xMinYMin meet">'
        f'<title id="chart-title-{key}">{t}</title><desc id="chart-desc-{key}">{desc}</desc>'
    )
    # bands
    for band in bands:
        if band.low > y_max:
            continue
        y_hi, y_lo = y(min(band.high + 1, y_max)), y(band.low)
        fill = BAND_FILL.get(band.level, "#f0f0f0")
        parts.append(
            f'<rect x="{left}" y="{_fmt(y_hi)}" width="{plot_w}" height="{_fmt(y_lo - y_hi)}" '
            f'fill="{fill}"/>'
        )
        parts.append(
            f'<text class="band-label" x="{left + 4}" y="{_fmt(y_hi + 12)}" '
            f'text-anchor="start">{escape(band.label)}</text>'
        )
    # y grid and labels
    step = 5 if y_max <= 40 else 10
    for v in range(0, y_max + 1, step):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_fmt(y(v))}" y2="{_fmt(y(v))}"/>'
        )
        parts.append(
            f'<text class="axis" x="{left - 6}" y="{_fmt(y(v) + 4)}" text-anchor="end">{v}</text>'
        )
    # x ticks: hours chosen so there are 4-8 labels
    hours = max(1, int(seconds / 3600 / 6) or 1)
    for h in (1, 2, 3, 4, 6, 8, 12, 24, 48):
        if seconds / 3600 / h <= 8:
            hours = h
            break
    tick = start.astimezone(tz).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    while tick < end:
        local = tick.astimezone(tz)
        if local.hour % hours == 0:
            tx = x(tick)
            label = (
                local.strftime("%d %b %H:%M")
                if local.hour == 0 or hours >= 24
                else local.strftime("%H:%M")
            )
            parts.append(
                f'<line class="tick" x1="{_fmt(tx)}" x2="{_fmt(tx)}" y1="{top + plot_h}" '
                f'y2="{top + plot_h + 4}"/>'
            )
            parts.append(
                f'<text class="axis" x="{_fmt(tx)}" y="{top + plot_h + 16}" '
                f'text-anchor="middle">{label}</text>'
            )
        tick += timedelta(hours=1)
    parts.append(
        f'<line class="axis-line" x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" '
        f'y2="{top + plot_h}"/>'
    )
    # now
    nx = x(now)
    parts.append(
        f'<line class="now" x1="{_fmt(nx)}" x2="{_fmt(nx)}" y1="{top}" y2="{top + plot_h}"/>'
        f'<text class="now-label" x="{_fmt(nx)}" y="{top - 3}" text-anchor="middle">now</text>'
    )
    # reassessment loops: from each assessment, a dashed line to when the next one was due
    for p in points:
        if p.due_at is None:
            continue
        px, py, dx = x(p.at), y(p.total), x(p.due_at)
        late = p is points[-1] and p.due_at < now
        cls = "due late" if late else "due"
        parts.append(
            f'<line class="{cls}" x1="{_fmt(px)}" x2="{_fmt(dx)}" y1="{_fmt(py)}" y2="{_fmt(py)}"/>'
            f'<circle class="{cls}" cx="{_fmt(dx)}" cy="{_fmt(py)}" r="4">'
            f"<title>Reassessment due {p.due_at.astimezone(tz):%d %b %H:%M}</title></circle>"
        )
    # the score line and points
    coords = " ".join(f"{_fmt(x(p.at))},{_fmt(y(p.total))}" for p in points)
    parts.append(f'<polyline class="score" points="{coords}"/>')
    for p in points:
        parts.append(
            f'<circle class="score" cx="{_fmt(x(p.at))}" cy="{_fmt(y(p.total))}" r="4.5">'
            f"<title>{p.at.astimezone(tz):%d %b %H:%M}: {p.total}"
            f"{' (' + escape(p.band_label) + ')' if p.band_label else ''}</title></circle>"
        )
    # doses, under the axis on their own row, with a faint line up through the plot
    dose_y = top + plot_h + 32
    for d in doses:
        dx = x(d.at)
        parts.append(
            f'<line class="dose-line" x1="{_fmt(dx)}" x2="{_fmt(dx)}" y1="{top}" y2="{dose_y - 7}"/>'
            f'<path class="dose" d="M{_fmt(dx)},{dose_y - 7} l6,10 h-12 z">'
            f"<title>{escape(d.text)} at {d.at.astimezone(tz):%d %b %H:%M}</title></path>"
        )
    parts.append(f'<text class="axis" x="{left - 6}" y="{dose_y + 2}" text-anchor="end">Rx</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - numbers, and text passed through escape()
