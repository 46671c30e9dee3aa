"""The patient portal: a patient's own pages on a phone. Their day (reminders, the check-in,
today's doses, next sessions), the one-minute daily check-in, their dose calendar, "how am I
doing" (their craving and use over the weeks) and their reminder choices.

Thin: parse the form, call one service, render. A refused answer re-renders the check-in with
422, the field marked and named; nothing is stored. Staff who may record a check-in (a nurse
with the patient) use the same pages on the patient's behalf.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import load_patient, patient_ref
from tandem.clock import local, program_today, utcnow
from tandem.counseling.questions import new_replies
from tandem.errors import InvalidInput
from tandem.kit import NavItem
from tandem.medications.validation import SIDE_EFFECTS
from tandem.recovery import portal_chart
from tandem.recovery.portal_checkin import Form, portal_data
from tandem.recovery.portal_service import (
    CHECK_IN,
    active_plan_views,
    check_in_form,
    next_sessions,
    progress_weeks,
    record_check_in,
)
from tandem.recovery.reminders_core import Preferences
from tandem.recovery.reminders_service import (
    PREFERENCE,
    preferences,
    reminders_for,
    save_preferences,
    session_label,
)
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

# The patient's own day, first in their navigation (their home page too: tandem.web.home).
NAV = NavItem("today", "Today", "/me", frozenset({"patient"}), 1)

STATE_WORDS = {
    "given": "given by a nurse",
    "not_given": "not given",
    "taken": "taken",
    "missed": "missed",
    "unrecorded": "not answered yet",
    "upcoming": "later",
    "before_plan": "before your plan",
}


def _form_of(request: Request) -> Form:
    form = form_of(request)
    return {key: [str(v) for v in form.getlist(key)] for key in form if key != "csrf_token"}


def _may(access: Access, permission: Permission, resource_type: str, patient: Any) -> bool:
    return bool(decide(access.actor, permission, resource_type, patient_ref(patient)))


@router.get("/me")
def me(access: Access = Depends(page_access)) -> Response:
    """A patient's own day; anyone else goes home."""
    if access.actor.patient_id:
        return RedirectResponse(f"/patients/{access.actor.patient_id}/today", status_code=303)
    return RedirectResponse("/", status_code=303)


@router.get("/patients/{patient_id}/today")
def today_page(
    request: Request, patient_id: str, done: str = "", access: Access = Depends(page_access)
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    zone = patient.program.time_zone
    today = program_today(zone, now)
    views = active_plan_views(access, patient, now)
    form = check_in_form(access, patient_id, now, views)
    today_doses = [
        (view, dose)
        for view in views
        for dose in view.doses
        if local(dose.planned.due_at, zone).date() == today
    ]
    return render(
        request,
        "recovery/portal/today.html",
        active="today",
        patient=patient,
        zone=zone,
        today=today,
        checked_in=form.existing,
        reminders=reminders_for(access, patient, now),
        today_doses=sorted(today_doses, key=lambda vd: vd[1].planned.due_at),
        state_words=STATE_WORDS,
        sessions=next_sessions(access, patient, now),
        session_label=session_label,
        done=done,
        may_check_in=_may(access, Permission.CREATE, CHECK_IN, patient),
        # "A counselor replied to your question": for the patient, not staff opening their day.
        new_replies=new_replies(access, patient) if access.actor.patient_id == patient.id else [],
    )


def _check_in_page(
    request: Request,
    access: Access,
    patient_id: str,
    status_code: int = 200,
    values: Form | None = None,
    error: InvalidInput | None = None,
) -> Response:
    now = utcnow()
    form = check_in_form(access, patient_id, now)
    shown: dict[str, Any] = dict(form.values)
    if values is not None:
        shown = {k: (v if k == "side_effect" else (v[-1] if v else "")) for k, v in values.items()}
        shown.setdefault("side_effect", [])
    return render(
        request,
        "recovery/portal/check_in.html",
        status_code=status_code,
        active="today",
        patient=form.patient,
        form=form,
        values=shown,
        zone=form.patient.program.time_zone,
        moods=portal_data().moods,
        standard_drink=portal_data().standard_drink,
        side_effects=SIDE_EFFECTS,
        error=error.message if error else "",
        error_field=error.field if error else "",
    )


@router.get("/patients/{patient_id}/check-in")
def check_in(request: Request, patient_id: str, access: Access = Depends(page_access)) -> Response:
    load_patient(access, patient_id, (Permission.CREATE, CHECK_IN), audit=False)
    return _check_in_page(request, access, patient_id)


@router.post("/patients/{patient_id}/check-in")
def save_check_in(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    values = _form_of(request)
    try:
        saved = record_check_in(access, patient_id, values, utcnow())
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _check_in_page(request, access, patient_id, 422, values, exc)
    done = "updated" if saved.updated else "saved"
    return RedirectResponse(f"/patients/{patient_id}/today?done={done}", status_code=303)


@router.get("/patients/{patient_id}/doses")
def dose_calendar(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    from tandem.medications.pages import STATE_LABELS

    return render(
        request,
        "recovery/portal/doses.html",
        active="today",
        patient=patient,
        zone=patient.program.time_zone,
        views=active_plan_views(access, patient, now),
        state_labels=STATE_LABELS,
    )


@router.get("/patients/{patient_id}/progress")
def progress(request: Request, patient_id: str, access: Access = Depends(page_access)) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    weeks, substances = progress_weeks(access, patient, now)
    return render(
        request,
        "recovery/portal/progress.html",
        active="today",
        patient=patient,
        weeks=weeks,
        substances=substances,
        chart=portal_chart.draw(weeks, [s.id for s in substances]),
    )


@router.get("/patients/{patient_id}/reminders")
def reminder_choices(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    patient = load_patient(access, patient_id)
    return render(
        request,
        "recovery/portal/reminders.html",
        active="today",
        patient=patient,
        prefs=preferences(access, patient),
        may_change=_may(access, Permission.UPDATE, PREFERENCE, patient),
    )


@router.post("/patients/{patient_id}/reminders")
def save_reminder_choices(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    form = form_of(request)
    chosen = Preferences(
        check_in=form.get("check_in") == "on",
        doses=form.get("doses") == "on",
        sessions=form.get("sessions") == "on",
        email=form.get("email") == "on",
    )
    save_preferences(access, patient_id, chosen, utcnow())
    return RedirectResponse(f"/patients/{patient_id}/reminders?flash=saved", status_code=303)
