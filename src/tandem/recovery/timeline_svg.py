"""The recovery timeline drawn on the server as inline SVG: one lane a measure, every lane on
the same time axis (the same start, end and width), so a lapse, a positive screen, a missed
session and a rise in craving line up. Lane names are HTML headings beside the drawing (readable
on a phone); each drawing has a title and a description, and the page has a table of the same
numbers. Pure: plain values in, markup out; colours come from CSS classes (web/static).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from html import escape

from markupsafe import Markup

from tandem.recovery.timeline import Mark, Point

WIDTH = 720
LEFT, RIGHT = 34, 10
PLOT = WIDTH - LEFT - RIGHT
DOTS_UP_TO = 120  # more points than this: the line alone (the table has the numbers)
# Quiet days drawn as one bar a run of days (a year of "no use" is a few shapes, not 365).
RUNS = frozenset({"abstinent", "taken", "given"})


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class Axis:
    """Days from `start` to `end` (inclusive) across the plot; a day is a column."""

    def __init__(self, start: date, end: date) -> None:
        self.start, self.end = start, end
        self.days = (end - start).days + 1
        # Every lane of a page draws the same ticks and grid lines: worked out once an axis.
        self.ticks = _ticks(self)
        self.grids: dict[int, str] = {}

    def x(self, day: date) -> float:
        return LEFT + ((day - self.start).days + 0.5) / self.days * PLOT

    @property
    def column(self) -> float:
        return PLOT / self.days


def _svg(height: int, title: str, body: str, css: str) -> Markup:
    label = escape(title)
    return Markup(  # noqa: S704 - numbers, and text passed through escape()
        f'<svg class="timeline-lane {css}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{label}" preserveAspectRatio="xMidYMid meet"><title>{label}</title>{body}</svg>'
    )


def _ticks(axis: Axis) -> list[date]:
    """Month starts for long ranges, Mondays for short ones."""
    days = [axis.start + timedelta(days=i) for i in range(axis.days)]
    if axis.days > 62:
        return [d for d in days if d.day == 1]
    return [d for d in days if d.weekday() == 0]


def axis_svg(axis: Axis, narrow: bool = False) -> Markup:
    """The shared time axis. Two drawings, one shown at a time by CSS: few, large labels for a
    phone (the drawing is scaled down to its width), more and smaller ones for a wide screen."""
    height = 44 if narrow else 30
    size_class = "tick-label narrow" if narrow else "tick-label"
    most = 4 if narrow else 8
    parts = [f'<line class="axis" x1="{LEFT}" y1="2" x2="{WIDTH - RIGHT}" y2="2"/>']
    ticks = axis.ticks
    step = max(1, -(-len(ticks) // most))
    for i, day in enumerate(ticks):
        x = _fmt(axis.x(day))
        parts.append(f'<line class="tick" x1="{x}" y1="2" x2="{x}" y2="9"/>')
        if i % step == 0:
            label = day.strftime("%b") if axis.days > 62 else day.strftime("%d %b")
            # A label near either edge is anchored inside the drawing, not cut in half.
            near = (WIDTH - axis.x(day)) if axis.x(day) > WIDTH / 2 else axis.x(day)
            anchor = (
                "middle"
                if near > (70 if narrow else 30)
                else "end"
                if axis.x(day) > WIDTH / 2
                else "start"
            )
            parts.append(
                f'<text class="{size_class}" x="{x}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(label)}</text>"
            )
    title = f"Time axis from {axis.start:%d %b %Y} to {axis.end:%d %b %Y}"
    css = "axis-lane axis-narrow" if narrow else "axis-lane axis-wide"
    return _svg(height, title, "".join(parts), css)


def _grid(axis: Axis, height: int) -> str:
    grid = axis.grids.get(height)
    if grid is None:
        grid = axis.grids[height] = "".join(
            f'<line class="grid" x1="{_fmt(axis.x(d))}" y1="0" x2="{_fmt(axis.x(d))}" '
            f'y2="{height}"/>'
            for d in axis.ticks
        )
    return grid


def line_lane(
    axis: Axis,
    series: Sequence[tuple[str, Sequence[Point]]],
    top: float,
    title: str,
    height: int = 90,
) -> Markup:
    """One or more series of numbers (a key each, for its CSS class) scaled 0..`top`."""
    pad = 8
    plot_h = height - 2 * pad
    top = max(top, 1)

    def y(value: float) -> float:
        return pad + plot_h - min(max(value, 0), top) / top * plot_h

    parts = [_grid(axis, height)]
    parts.append(
        f'<line class="baseline" x1="{LEFT}" y1="{_fmt(y(0))}" x2="{WIDTH - RIGHT}" y2="{_fmt(y(0))}"/>'
    )
    parts.append(
        f'<text class="scale-label" x="{LEFT - 4}" y="{_fmt(y(top))}" text-anchor="end" dominant-baseline="hanging">{_fmt(top)}</text>'
    )
    parts.append(
        f'<text class="scale-label" x="{LEFT - 4}" y="{_fmt(y(0))}" text-anchor="end">0</text>'
    )
    summary = []
    for key, points in series:
        if not points:
            continue
        css = escape(key)
        coords = " ".join(f"{_fmt(axis.x(p.day))},{_fmt(y(p.value))}" for p in points)
        if len(points) > 1:
            parts.append(f'<polyline class="series s-{css}" points="{coords}"/>')
        if len(points) <= DOTS_UP_TO:  # a dot (with its value) a point; a year is a line
            radius = 2.2 if len(points) > 60 else 3.2
            for p in points:
                tip = escape(f"{p.day:%d %b}: {_fmt(p.value)}{' ' + p.text if p.text else ''}")
                parts.append(
                    f'<circle class="dot s-{css}" cx="{_fmt(axis.x(p.day))}" '
                    f'cy="{_fmt(y(p.value))}" r="{radius}"><title>{tip}</title></circle>'
                )
        summary.append(f"{key}: {len(points)} values, latest {_fmt(points[-1].value)}")
    return _svg(height, f"{title}. " + "; ".join(summary), "".join(parts), "line-lane")


# Marks: a shape and a CSS class a kind.
_SHAPES = {
    "used": ("bar", "bad"),
    "abstinent": ("run", "good"),
    "positive": ("plus", "bad"),
    "negative": ("minus", "good"),
    "invalid": ("minus", "muted"),
    "taken": ("run", "good"),
    "given": ("run", "good"),
    "missed": ("cross", "bad"),
    "not_given": ("cross", "muted"),
    "attended": ("dot", "good"),
    "missed_session": ("ring", "bad"),
    "cancelled": ("ring", "muted"),
    "booked": ("ring", "plain"),
}


def _runs(marks: Sequence[Mark]) -> list[tuple[str, date, date, int]]:
    """Consecutive days of the same kind as (kind, first day, last day, how many marks)."""
    out: list[tuple[str, date, date, int]] = []
    for m in sorted(marks, key=lambda m: (m.kind, m.day)):
        if out and out[-1][0] == m.kind and (m.day - out[-1][2]).days <= 1:
            kind, first, _, n = out[-1]
            out[-1] = (kind, first, m.day, n + 1)
        else:
            out.append((m.kind, m.day, m.day, 1))
    return out


def marks_lane(axis: Axis, marks: Sequence[Mark], title: str, height: int = 30) -> Markup:
    """Events a day: each kind a shape and a colour class (used days as bars, missed doses as
    crosses, missed sessions as red rings...)."""
    mid = height / 2
    half = min(max(axis.column / 2 - 0.3, 1.2), 6)
    parts = [_grid(axis, height)]
    counts: dict[str, int] = {}
    for m in marks:
        counts[m.kind] = counts.get(m.kind, 0) + 1
    for kind, first, last, n in _runs([m for m in marks if m.kind in RUNS]):
        _, css = _SHAPES[kind]
        x0, x1 = axis.x(first) - half, axis.x(last) + half
        label = f"{first:%d %b}" if first == last else f"{first:%d %b} to {last:%d %b}"
        tip = f"<title>{escape(f'{label}: {n} {kind.replace(chr(95), chr(32))}')}</title>"
        parts.append(
            f'<rect class="mark {css}" x="{_fmt(x0)}" y="{_fmt(mid + 4)}" '
            f'width="{_fmt(x1 - x0)}" height="4">{tip}</rect>'
        )
    for m in marks:
        if m.kind in RUNS:
            continue
        shape, css = _SHAPES.get(m.kind, ("dot", "plain"))
        x = axis.x(m.day)
        tip = f"<title>{escape(f'{m.day:%d %b}: {m.text}')}</title>"
        if shape == "bar":
            body = (
                f'<rect class="mark {css}" x="{_fmt(x - half)}" y="3" width="{_fmt(2 * half)}" '
                f'height="{height - 6}">{tip}</rect>'
            )
        elif shape == "plus":
            body = (
                f'<g class="mark {css}">{tip}<rect x="{_fmt(x - 6)}" y="{_fmt(mid - 1.5)}" '
                f'width="12" height="3"/><rect x="{_fmt(x - 1.5)}" y="{_fmt(mid - 6)}" width="3" '
                'height="12"/></g>'
            )
        elif shape == "minus":
            body = (
                f'<rect class="mark {css}" x="{_fmt(x - 6)}" y="{_fmt(mid - 1.5)}" width="12" '
                f'height="3">{tip}</rect>'
            )
        elif shape == "cross":
            body = (
                f'<path class="mark stroke {css}" d="M{_fmt(x - 4)},{_fmt(mid - 4)} '
                f"L{_fmt(x + 4)},{_fmt(mid + 4)} M{_fmt(x - 4)},{_fmt(mid + 4)} "
                f'L{_fmt(x + 4)},{_fmt(mid - 4)}">{tip}</path>'
            )
        elif shape == "ring":
            body = (
                f'<circle class="mark ring {css}" cx="{_fmt(x)}" cy="{_fmt(mid)}" r="5">'
                f"{tip}</circle>"
            )
        else:
            body = (
                f'<circle class="mark {css}" cx="{_fmt(x)}" cy="{_fmt(mid)}" r="5">{tip}</circle>'
            )
        parts.append(body)
    summary = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in sorted(counts.items()))
    return _svg(height, f"{title}: {summary or 'nothing recorded'}", "".join(parts), "marks-lane")
