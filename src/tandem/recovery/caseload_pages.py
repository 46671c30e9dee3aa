"""The counselor's caseload page and the timeline tab of the chart. Thin: parse, call one
function of the domain (which asks the policy and audits), render."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from tandem.access.guard import Access
from tandem.errors import InvalidInput
from tandem.kit import ChartTab, NavItem
from tandem.patients.pages import chart_page
from tandem.recovery import timeline_svg
from tandem.recovery.caseload import Caseload, CaseloadRow, caseload
from tandem.recovery.timeline import RANGES, SCALE_NAMES, kinds_present, timeline, weeks
from tandem.web.deps import UnitOfWorkRoute, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

NAV = NavItem(
    "caseload",
    "Caseload",
    "/caseload",
    frozenset({"counselor", "prescriber", "nurse", "admin"}),
    25,
)
CHART_TAB = ChartTab("timeline", "Timeline", "/timeline", 35)
SCOPES = {"mine": False, "program": True}


@router.get("/caseload")
def caseload_page(
    request: Request,
    program: int | None = None,
    scope: str | None = None,
    access: Access = Depends(page_access),
) -> Response:
    if scope is not None and scope not in SCOPES:
        raise InvalidInput("scope", "choose mine or program")
    shown = caseload(
        access,
        program,
        SCOPES[scope] if scope else None,
        query_text=str(request.url.query) or "caseload",
    )
    return render(
        request,
        "recovery/caseload/caseload.html",
        active="caseload",
        caseload=shown,
        rows=table_rows(shown),
    )


def table_rows(shown: Caseload) -> Markup:
    """The caseload table's rows, every text escaped. Built here rather than in the template:
    a counselor's 200 rows of a dozen values each cost the page several milliseconds of Jinja
    look-ups and escaping, a plain join a fraction of that. Days are written once each (a
    caseload's start and check-in days repeat)."""
    days: dict[tuple[date, str], str] = {}

    def day(value: date, pattern: str) -> str:
        text = days.get((value, pattern))
        if text is None:
            text = days[(value, pattern)] = value.strftime(pattern)
        return text

    return Markup("".join(_row(r, shown, day) for r in shown.rows))  # noqa: S704 - escaped below


def _row(r: CaseloadRow, shown: Caseload, day: Callable[[date, str], str]) -> str:
    patient = str(escape(r.patient_id))
    css = "is-urgent" if r.top_severity == 3 else "has-flag" if r.flags else ""
    since = day(r.started_on, "%d %b %Y")
    if r.substances:
        since = f"{since} · {escape(', '.join(r.substance_labels))}"
    if r.flags:
        items = "".join(
            f'<li class="risk-flag flag-{escape(f.kind)}"><span class="badge risk-sev-'
            f'{f.severity}">{escape(f.label)}</span> {escape(f.sentence)}</li>'
            for f in r.flags
        )
        flags = f'<ul class="flags risk-flags">{items}</ul>'
    else:
        flags = '<span class="hint">No flags</span>'
    if r.last_check_in:
        last = day(r.last_check_in, "%a %d %b")
    else:
        last = '<span class="hint">none yet</span>'
    counselor = ""
    if shown.whole_program:
        name = escape(shown.counselors.get(r.counselor_id, "—"))  # type: ignore[arg-type]
        counselor = f'<td data-label="Counselor">{name}</td>'
    return (
        f'<tr id="patient-{patient}" class="{css}">'
        f'<th scope="row" data-label="Patient"><a href="/patients/{patient}/timeline">'
        f'{escape(r.name)}</a> <span class="hint block">in care since {since}</span></th>'
        f'<td data-label="Risk flags">{flags}</td>'
        f'<td data-label="Last check-in" class="nowrap">{last}</td>{counselor}</tr>\n'
    )


@router.get("/patients/{patient_id}/timeline")
def timeline_tab(
    request: Request,
    patient_id: str,
    range: str | None = None,  # noqa: A002 - the query parameter's name
    access: Access = Depends(page_access),
) -> Response:
    shown = timeline(access, patient_id, range)
    axis = timeline_svg.Axis(shown.start, shown.end)
    lanes = []
    if shown.withdrawal:
        top = max(shown.scale_max.get(i, 10) for i in shown.withdrawal)
        lanes.append(
            (
                "Withdrawal scores",
                ", ".join(i.upper().replace("_", "-") for i in shown.withdrawal),
                timeline_svg.line_lane(
                    axis, sorted(shown.withdrawal.items()), top, "Withdrawal scores"
                ),
            )
        )
    lanes.append(
        (
            "Craving",
            "average 0-10 rating a day",
            timeline_svg.line_lane(axis, [("craving", shown.craving)], 10, "Craving, 0-10"),
        )
    )
    lanes.append(
        (
            "Use",
            "red bar: used; green: no use",
            timeline_svg.marks_lane(axis, shown.use, "Use days"),
        )
    )
    lanes.append(
        (
            "Drug screens",
            "+ positive, - negative",
            timeline_svg.marks_lane(axis, shown.screens, "Drug screens"),
        )
    )
    for instrument_id, points in sorted(shown.scales.items()):
        name = SCALE_NAMES[instrument_id]
        top = shown.scale_max[instrument_id]
        lanes.append(
            (
                name,
                f"total 0-{top}",
                timeline_svg.line_lane(axis, [(instrument_id, points)], top, f"{name} totals", 70),
            )
        )
    lanes.append(
        (
            "Doses",
            "green: taken or given; red cross: missed",
            timeline_svg.marks_lane(axis, shown.doses, "Doses"),
        )
    )
    lanes.append(
        (
            "Sessions",
            "filled: attended; red ring: missed; grey: cancelled",
            timeline_svg.marks_lane(axis, shown.sessions, "Sessions"),
        )
    )
    return chart_page(
        request,
        access,
        patient_id,
        "timeline",
        "recovery/caseload/timeline.html",
        loaded=shown.patient,
        timeline=shown,
        axes=(timeline_svg.axis_svg(axis), timeline_svg.axis_svg(axis, narrow=True)),
        lanes=lanes,
        weeks=weeks(shown),
        kinds=kinds_present(shown),
        ranges=RANGES,
        scale_names=SCALE_NAMES,
    )
