"""The alert list: escalations for the prescriber on duty, unacknowledged on top, and the
acknowledgement (who, when, note), recorded and audited."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.alerts import service
from tandem.clock import utcnow
from tandem.errors import InvalidInput
from tandem.kit import NavItem
from tandem.storage.models import Program
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

# The chart tab an alert is about, by its kind (withdrawal by default).
CHART_TAB_OF = {
    "missed_doses": "medications",
    "withdrawal_escalation": "withdrawal",
    "crisis_signal": "questions",
}


def _for_me_badge(access: Access) -> int:
    return service.open_for_me(access)


# Counselors read the alerts too (a PHQ-9 item 9 answer, a crisis message to a counselor); the
# policy leaves acknowledging to the prescriber. The number beside the entry: unacknowledged
# alerts addressed to the signed-in person by name (a counselor's patient's PHQ-9 item 9).
NAV = NavItem(
    "alerts",
    "Alerts",
    "/alerts",
    frozenset({"admin", "prescriber", "nurse", "counselor"}),
    30,
    badge=_for_me_badge,
)


def _programs(access: Access) -> list[Program]:
    return list(
        access.db.scalars(
            select(Program)
            .where(Program.id.in_(sorted(access.actor.program_ids)))
            .order_by(Program.name)
        )
    )


def _page(
    request: Request,
    access: Access,
    program: str,
    show: str,
    status_code: int = 200,
    error: InvalidInput | None = None,
    error_alert: int | None = None,
) -> Response:
    programs = _programs(access)
    chosen = next((p for p in programs if str(p.id) == program), programs[0] if programs else None)
    views = []
    if chosen is not None:
        views = service.list_alerts(
            access,
            chosen.id,
            include_acknowledged=show != "open",
            query_text=str(request.url.query),
        )
    return render(
        request,
        "alerts/list.html",
        status_code=status_code,
        active="alerts",
        programs=programs,
        program=chosen,
        views=views,
        show=show,
        error=error,
        error_alert=error_alert,
        zone=chosen.time_zone if chosen else "UTC",
        may_acknowledge=chosen is not None
        and bool(decide(access.actor, Permission.UPDATE, service.RESOURCE, program_id=chosen.id)),
        open_count=sum(1 for v in views if v.alert.acknowledged_at is None),
        for_me_count=sum(
            1 for v in views if v.alert.acknowledged_at is None and v.is_for(access.actor.user_id)
        ),
        me=access.actor.user_id,
        now=utcnow(),
        chart_tab=CHART_TAB_OF,
    )


@router.get("/alerts")
def alert_list(
    request: Request, program: str = "", show: str = "all", access: Access = Depends(page_access)
) -> Response:
    return _page(request, access, program, show)


@router.post("/alerts/{alert_id}/acknowledge")
def acknowledge(request: Request, alert_id: int, access: Access = Depends(csrf_form)) -> Response:
    form = form_of(request)
    note = str(form.get("note", ""))
    program = str(form.get("program", ""))
    try:
        alert = service.acknowledge(access, alert_id, note)
    except InvalidInput as exc:
        access.refused(
            "update",
            f"invalid input: {exc}",
            resource_type=service.RESOURCE,
            resource_id=str(alert_id),
        )
        return _page(request, access, program, "all", 422, exc, alert_id)
    # Land on the alert that now takes its place (the acknowledged one moves down the list).
    following = str(form.get("next", ""))
    anchor = f"#alert-{following}" if following.isdigit() else "#alerts"
    return RedirectResponse(
        f"/alerts?program={alert.program_id}&flash=saved{anchor}", status_code=303
    )
