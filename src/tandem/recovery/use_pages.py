"""The chart's Recovery tab for staff: the month calendar of use and drug screens with the
derived measures, and the rehab program (care plan, retention, sessions and attendance).

Thin: parse the form, call the service, render. A refused form re-renders with 422, the field
marked and the reason shown; nothing of it is stored (the unit of work is discarded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import load_patient, patient_ref
from tandem.clock import program_today, utcnow
from tandem.errors import InvalidInput
from tandem.kit import ChartTab
from tandem.patients.pages import chart_page
from tandem.recovery import care_plans as plans
from tandem.recovery import sessions_schedule as sessions
from tandem.recovery import use_measures as measures
from tandem.recovery.substances import substances
from tandem.recovery.use_records import (
    OBSERVATION,
    record_drug_screen,
    record_use_day,
    screen_results,
    sex_of,
    use_reports,
)
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.forms import local_datetime, row_id

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)
CHART_TAB = ChartTab("recovery", "Recovery", "/recovery", 30)
PERIOD_DAYS = 30
STATE_LABELS = {"used": "used", "abstinent": "no use", "unknown": "not reported"}
RESULT_LABELS = {"positive": "positive", "negative": "negative", "invalid": "invalid"}


def _may(access: Access, permission: Permission, resource_type: str, patient: Patient) -> bool:
    return bool(decide(access.actor, permission, resource_type, patient_ref(patient)))


def _refusal(exc: InvalidInput, form: str) -> dict[str, Any]:
    return {"error_form": form, "error_field": exc.field, "error": exc.message}


def _number(form: FormData, name: str) -> float | None:
    raw = str(form.get(name, "")).strip().replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(name, "enter a number") from None
    if not math.isfinite(value):
        raise InvalidInput(name, "enter a number")
    return value


def _whole(form: FormData, name: str, default: int | None = None) -> int:
    value = _number(form, name)
    if value is None:
        if default is None:
            raise InvalidInput(name, "enter a whole number")
        return default
    if value != int(value):
        raise InvalidInput(name, "enter a whole number")
    return int(value)


def _day(form: FormData, name: str) -> date:
    raw = str(form.get(name, "")).strip()
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, "enter the date as YYYY-MM-DD") from None


def _user(form: FormData, name: str) -> int | None:
    raw = str(form.get(name, "")).strip()
    if not raw:
        return None
    value = row_id(raw)
    if value is None:
        raise InvalidInput(name, "choose a staff member of the patient's program")
    return value


# --------------------------------------------------------------------------- use calendar


@dataclass(frozen=True)
class Summary:
    start: date
    end: date
    any: measures.Abstinence
    each: list[tuple[str, measures.Abstinence, int]]  # label, measures, current run
    heavy: measures.HeavyDays | None


MAX_PERIOD_DAYS = 366


def period_of(start_text: str, end_text: str, today: date) -> tuple[date, date]:
    """The period the measures cover: the last 30 days unless the address names one."""
    try:
        end = date.fromisoformat(end_text) if end_text else today
    except ValueError:
        raise InvalidInput("to", "give the date as YYYY-MM-DD") from None
    try:
        start = (
            date.fromisoformat(start_text) if start_text else end - timedelta(days=PERIOD_DAYS - 1)
        )
    except ValueError:
        raise InvalidInput("from", "give the date as YYYY-MM-DD") from None
    if end > today:
        raise InvalidInput("to", "the period ends today at the latest")
    if start > end:
        raise InvalidInput("from", "the period starts before it ends")
    if (end - start).days >= MAX_PERIOD_DAYS:
        raise InvalidInput("from", f"at most {MAX_PERIOD_DAYS} days")
    return start, end


def _use_context(
    access: Access,
    patient: Patient,
    month_text: str,
    chosen: str,
    now: datetime,
    period: tuple[str, str] = ("", ""),
) -> dict[str, Any]:
    today = program_today(patient.program.time_zone, now)
    year, month = measures.month_of(month_text, today)
    period_start, period_end = period_of(period[0], period[1], today)
    first = date(year, month, 1)
    start = min(first - timedelta(days=7), period_start, today - timedelta(days=PERIOD_DAYS))
    end = max(first + timedelta(days=42), today)
    reports = use_reports(access, patient, start, end)
    screens = screen_results(access, patient, start, end)
    plan = plans.active_plan(access, patient)
    tracked = tuple(plan.substances) if plan is not None else ()
    sex = sex_of(patient)
    view = measures.month_view(year, month, reports, screens, today, tracked, sex)
    shown = view.tracked
    summary = Summary(
        start=period_start,
        end=period_end,
        any=measures.abstinence(reports, period_start, period_end, None, shown),
        each=[
            (
                next(s.label for s in substances() if s.id == sid),
                measures.abstinence(reports, period_start, period_end, sid),
                measures.current_run(reports, today, sid),
            )
            for sid in shown
        ],
        heavy=measures.heavy_drinking_days(reports, period_start, period_end, sex)
        if "alcohol" in shown
        else None,
    )
    selected = today
    if chosen:
        try:
            selected = min(date.fromisoformat(chosen), today)
        except ValueError:
            selected = today
    return {
        "month": view,
        "today": today,
        "summary": summary,
        "selected_day": selected,
        "substances": substances(),
        "tracked": shown or tuple(s.id for s in substances()),
        "state_labels": STATE_LABELS,
        "result_labels": RESULT_LABELS,
        "facts": measures.use_facts(),
        "sex": sex,
        "may_record": _may(access, Permission.CREATE, OBSERVATION, patient),
        "plan": plan,
    }


def _use_page(
    request: Request,
    access: Access,
    patient_id: str,
    *,
    month: str = "",
    day: str = "",
    period: tuple[str, str] = ("", ""),
    status_code: int = 200,
    **extra: Any,
) -> Response:
    patient = load_patient(access, patient_id)
    context = _use_context(access, patient, month, day, utcnow(), period)
    return chart_page(
        request,
        access,
        patient_id,
        "recovery",
        "recovery/records/use.html",
        status_code=status_code,
        **context,
        **extra,
    )


@router.get("/patients/{patient_id}/recovery")
def recovery_tab(
    request: Request,
    patient_id: str,
    month: str = "",
    day: str = "",
    access: Access = Depends(page_access),
) -> Response:
    params = request.query_params
    period = (params.get("from", "").strip(), params.get("to", "").strip())
    return _use_page(request, access, patient_id, month=month, day=day, period=period)


def _allowed(
    access: Access, patient_id: str, permission: Permission, resource_type: str
) -> Patient:
    """Authorization before validation: refused (403, audited) whatever the form holds."""
    return load_patient(access, patient_id, (permission, resource_type), read=None, audit=False)


@router.post("/patients/{patient_id}/recovery/use")
def record_use(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    _allowed(access, patient_id, Permission.CREATE, OBSERVATION)
    form = form_of(request)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    now = utcnow()
    try:
        day = _day(form, "day")
        saved = 0
        for s in substances():
            answer = str(form.get(f"used.{s.id}", "")).strip()
            drinks = _number(form, f"drinks.{s.id}") if s.drinks else None
            if not answer and drinks is None:
                continue
            if answer not in ("", "yes", "no"):
                raise InvalidInput(f"used.{s.id}", "used, not used, or leave empty")
            record_use_day(
                access,
                patient_id,
                substance=s.id,
                used=None if not answer else answer == "yes",
                standard_drinks=drinks,
                day=day,
                now=now,
                fields={
                    "substance": f"used.{s.id}",
                    "used": f"used.{s.id}",
                    "standard_drinks": f"drinks.{s.id}",
                    "day": "day",
                },
            )
            saved += 1
        if not saved:
            raise InvalidInput("used", "answer for at least one substance")
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _use_page(
            request,
            access,
            patient_id,
            day=values.get("day", ""),
            status_code=422,
            use_values=values,
            **_refusal(exc, "use"),
        )
    return RedirectResponse(
        f"/patients/{patient_id}/recovery?month={day.isoformat()[:7]}&flash=saved#calendar",
        status_code=303,
    )


@router.post("/patients/{patient_id}/recovery/screens")
def record_screen(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    patient = _allowed(access, patient_id, Permission.CREATE, OBSERVATION)
    zone = patient.program.time_zone
    form = form_of(request)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    now = utcnow()
    try:
        collected = local_datetime(str(form.get("collected_at", "")), zone, "collected_at")
        results = [
            (s.id, str(form.get(f"result.{s.id}", "")).strip())
            for s in substances()
            if str(form.get(f"result.{s.id}", "")).strip()
        ]
        record_drug_screen(
            access,
            patient_id,
            collected_at=collected,
            results=results,
            now=now,
            note=str(form.get("note", "")),
            field="result",
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _use_page(
            request,
            access,
            patient_id,
            status_code=422,
            screen_values=values,
            **_refusal(exc, "screen"),
        )
    day = program_today(zone, collected)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery?month={day.isoformat()[:7]}&flash=saved#calendar",
        status_code=303,
    )


# --------------------------------------------------------------------------- the rehab program


def _program_page(
    request: Request, access: Access, patient_id: str, status_code: int = 200, **extra: Any
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    today = program_today(patient.program.time_zone, now)
    all_plans = plans.patient_plans(access, patient)
    plan = next(
        (p for p in all_plans if p.retention == "active"), all_plans[0] if all_plans else None
    )
    planned = plans.plan_services(access, plan) if plan else []
    history = plans.retention_history(access, plan) if plan else []
    rows = sessions.patient_sessions(access, patient)
    may_plan = _may(access, Permission.CREATE, plans.CARE_PLAN, patient)
    may_book = _may(access, Permission.CREATE, sessions.APPOINTMENT, patient)
    staff = plans.program_staff(access, patient.program_id) if (may_plan or may_book) else []
    names = display_names(
        access.db,
        [
            *(r.staff_id for r in rows),
            *(r.status_by for r in rows),
            *(p.counselor_id for p in all_plans),
            *(e.recorded_by for e in history),
        ],
    )
    upcoming = sorted((r for r in rows if r.status == "booked"), key=lambda r: r.starts_at)
    past = [r for r in rows if r.status != "booked"]
    return chart_page(
        request,
        access,
        patient_id,
        "recovery",
        "recovery/records/program.html",
        status_code=status_code,
        plan=plan,
        plans=all_plans,
        planned=planned,
        history=history,
        upcoming=upcoming,
        past=past,
        attendance=sessions.attendance(rows),
        names=names,
        staff=staff,
        today=today,
        now=now,
        services=plans.services(),
        frequencies=plans.frequencies(),
        retention_labels=plans.retention_labels(),
        status_labels=sessions.STATUS_LABELS,
        substances=substances(),
        may_plan=may_plan,
        may_change_plan=_may(access, Permission.UPDATE, plans.CARE_PLAN, patient),
        may_book=may_book,
        may_attend=_may(access, Permission.UPDATE, sessions.APPOINTMENT, patient),
        **extra,
    )


@router.get("/patients/{patient_id}/recovery/program")
def program_tab(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    return _program_page(request, access, patient_id)


def _planned(form: FormData) -> list[plans.PlannedService]:
    return [
        plans.PlannedService(service_id, str(form.get(f"frequency.{service_id}", "")).strip())
        for service_id in plans.services()
        if form.get(f"service.{service_id}")
    ]


def _refused_program(
    request: Request,
    access: Access,
    patient_id: str,
    exc: InvalidInput,
    which: str,
    values: dict[str, Any],
) -> Response:
    form_refused(request, access, exc)
    return _program_page(
        request,
        access,
        patient_id,
        status_code=422,
        values=values,
        **_refusal(exc, which),
    )


def _values(form: FormData) -> dict[str, Any]:
    out: dict[str, Any] = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    out["substances"] = [str(v) for v in form.getlist("substances")]
    return out


@router.post("/patients/{patient_id}/recovery/care-plans")
def create_plan(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    patient = _allowed(access, patient_id, Permission.CREATE, plans.CARE_PLAN)
    form = form_of(request)
    values = _values(form)
    now = utcnow()
    try:
        started = str(form.get("started_on", "")).strip()
        plans.create_care_plan(
            access,
            patient_id,
            counselor_id=_user(form, "counselor"),
            substances=values["substances"],
            planned=_planned(form),
            started_on=_day(form, "started_on")
            if started
            else program_today(patient.program.time_zone, now),
            now=now,
            title=str(form.get("title", "")),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, "plan", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=created#care-plan", status_code=303
    )


@router.post("/patients/{patient_id}/recovery/care-plans/{care_plan_id}")
def update_plan(
    request: Request, patient_id: str, care_plan_id: str, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, Permission.UPDATE, plans.CARE_PLAN)
    form = form_of(request)
    values = _values(form)
    try:
        plan_id = row_id(care_plan_id)
        if plan_id is None:
            raise InvalidInput("care_plan", "choose one of this patient's care plans")
        plans.update_care_plan(
            access,
            patient_id,
            plan_id,
            counselor_id=_user(form, "counselor"),
            substances=values["substances"],
            planned=_planned(form),
            now=utcnow(),
            title=str(form.get("title", "")),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, "plan", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=saved#care-plan", status_code=303
    )


@router.post("/patients/{patient_id}/recovery/care-plans/{care_plan_id}/retention")
def change_retention(
    request: Request, patient_id: str, care_plan_id: str, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, Permission.UPDATE, plans.CARE_PLAN)
    form = form_of(request)
    values = _values(form)
    try:
        plan_id = row_id(care_plan_id)
        if plan_id is None:
            raise InvalidInput("care_plan", "choose one of this patient's care plans")
        plans.change_retention(
            access,
            patient_id,
            plan_id,
            retention=str(form.get("retention", "")),
            on_day=_day(form, "on_day"),
            now=utcnow(),
            note=str(form.get("note", "")),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, "retention", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=saved#retention", status_code=303
    )


@router.post("/patients/{patient_id}/recovery/sessions")
def book(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    patient = _allowed(access, patient_id, Permission.CREATE, sessions.APPOINTMENT)
    form = form_of(request)
    values = _values(form)
    try:
        service = plans.check_service(str(form.get("service", "")))
        sessions.book_session(
            access,
            patient_id,
            service=service,
            starts_at=local_datetime(
                str(form.get("starts_at", "")), patient.program.time_zone, "starts_at"
            ),
            minutes=_whole(form, "minutes", plans.services()[service].minutes or 50),
            now=utcnow(),
            staff_id=_user(form, "staff"),
            note=str(form.get("note", "")),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, "book", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=created#sessions", status_code=303
    )


def _session_id(text: str) -> int:
    value = row_id(text)
    if value is None:
        raise InvalidInput("session", "choose one of this patient's sessions")
    return value


@router.post("/patients/{patient_id}/recovery/sessions/{session_id}/attendance")
def attendance(
    request: Request, patient_id: str, session_id: str, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, Permission.UPDATE, sessions.APPOINTMENT)
    form = form_of(request)
    values = _values(form) | {"session_id": session_id}
    try:
        sessions.record_attendance(
            access,
            patient_id,
            _session_id(session_id),
            status=str(form.get("status", "")),
            now=utcnow(),
            note=str(form.get("note", "")),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, f"session-{session_id}", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=saved#sessions", status_code=303
    )


@router.post("/patients/{patient_id}/recovery/sessions/{session_id}/reschedule")
def reschedule(
    request: Request, patient_id: str, session_id: str, access: Access = Depends(csrf_form)
) -> Response:
    patient = _allowed(access, patient_id, Permission.UPDATE, sessions.APPOINTMENT)
    form = form_of(request)
    values = _values(form) | {"session_id": session_id}
    try:
        sessions.reschedule_session(
            access,
            patient_id,
            _session_id(session_id),
            starts_at=local_datetime(
                str(form.get("starts_at", "")), patient.program.time_zone, "starts_at"
            ),
            minutes=_whole(form, "minutes", 50),
            now=utcnow(),
        )
    except InvalidInput as exc:
        return _refused_program(request, access, patient_id, exc, f"session-{session_id}", values)
    return RedirectResponse(
        f"/patients/{patient_id}/recovery/program?flash=saved#sessions", status_code=303
    )
