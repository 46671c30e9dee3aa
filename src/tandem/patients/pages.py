"""Patient list, registration, chart and episodes of care (server-rendered pages)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import patient_ref
from tandem.clock import program_today
from tandem.domains import chart_tabs
from tandem.errors import InvalidInput
from tandem.patients import service
from tandem.patients.records import (
    DISCHARGE_REASONS,
    GENDERS,
    PHASE_LABELS,
    Identifier,
    PatientQuery,
    PatientRecord,
    Phase,
    age_on,
)
from tandem.storage.db import utcnow
from tandem.storage.models import Patient, Program, Unit
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.forms import local_datetime, row_id
from tandem.web.rendering import render
from tandem.web.smart_pages import chart_apps, chart_policy

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)
PAGE_SIZE = 25


def _programs(access: Access) -> list[Program]:
    return list(
        access.db.scalars(
            select(Program)
            .where(Program.id.in_(sorted(access.actor.program_ids)))
            .order_by(Program.name)
        )
    )


@router.get("/patients")
def patient_list(
    request: Request,
    q: str = "",
    program: str = "",
    phase: str = "",
    page: int = 1,
    access: Access = Depends(page_access),
) -> Response:
    page = max(1, page)
    program_id = row_id(program)
    text = q.strip()
    query = PatientQuery(
        names=((text,),) if text and not any(c.isdigit() for c in text) else (),
        identifiers=((text,),) if text and any(c.isdigit() for c in text) else (),
        program_id=program_id,
        in_phase=phase if phase in set(Phase) else None,
        count=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
    )
    patients, has_more = service.search_patients(
        access, query, query_text=str(request.url.query), with_episodes=True
    )
    now = utcnow()
    rows = [
        {
            "patient": p,
            "age": age_on(p.birth_date, program_today(p.program.time_zone, now)),
            "episode": service.open_episode(p),
        }
        for p in patients
    ]
    return render(
        request,
        "patients/list.html",
        active="patients",
        rows=rows,
        q=q,
        program=program_id,
        phase=phase,
        page=page,
        has_more=has_more,
        programs=_programs(access),
        phases=PHASE_LABELS,
        may_register=any(
            decide(access.actor, Permission.CREATE, "Patient", program_id=p)
            for p in access.actor.program_ids
        ),
    )


def _form_values(form: Any) -> dict[str, str]:
    keys = ("program_id", "family", "given", "gender", "birth_date", "mrn", "phone", "email")
    return {k: str(form.get(k, "")).strip() for k in keys}


def _record(values: dict[str, str], mrn_system: str) -> PatientRecord:
    birth = None
    if values["birth_date"]:
        try:
            birth = date.fromisoformat(values["birth_date"])
        except ValueError:
            raise InvalidInput("birth_date", "enter the date as YYYY-MM-DD") from None
    gender = values["gender"] or None
    return PatientRecord(
        family=values["family"],
        given=tuple(values["given"].split()),
        gender=gender,
        birth_date=birth,
        identifiers=(Identifier(mrn_system, values["mrn"]),) if values["mrn"] else (),
        phone=values["phone"] or None,
        email=values["email"] or None,
    )


def _as_edited(record: PatientRecord, patient: Patient) -> PatientRecord:
    """The edit form shows the given names on one line and the MRN only: what it cannot show
    is kept (the given names as they were listed when that line is unchanged, say "Mary Ann";
    identifiers of other systems)."""
    given = record.given
    if patient.given_names and " ".join(given) == " ".join(patient.given_names):
        given = tuple(patient.given_names)
    mrn_system = patient.program.mrn_system
    others = tuple(
        Identifier(i.system, i.value) for i in patient.identifiers if i.system != mrn_system
    )
    return replace(record, given=given, identifiers=(*(record.identifiers or ()), *others))


_FIELD_NAMES = {
    "name": "family",
    "birthDate": "birth_date",
    "identifier": "mrn",
    "telecom": "phone",
    "managingOrganization": "program_id",
}


@router.get("/patients/new")
def new_patient_form(request: Request, access: Access = Depends(page_access)) -> Response:
    return render(
        request,
        "patients/edit.html",
        active="patients",
        values={},
        programs=_programs(access),
        genders=GENDERS,
        patient=None,
    )


@router.post("/patients/new")
def register_patient(request: Request, access: Access = Depends(csrf_form)) -> Response:
    values = _form_values(form_of(request))
    programs = _programs(access)
    try:
        chosen = row_id(values["program_id"])
        if chosen is None:
            raise InvalidInput("program_id", "choose a program")
        program = access.db.get(Program, chosen)
        if program is None:
            raise InvalidInput("program_id", "choose a program")
        patient = service.create_patient(access, _record(values, program.mrn_system), program.id)
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return render(
            request,
            "patients/edit.html",
            status_code=422,
            active="patients",
            values=values,
            programs=programs,
            genders=GENDERS,
            patient=None,
            error_field=_FIELD_NAMES.get(exc.field, exc.field),
            error=exc.message,
        )
    return RedirectResponse(f"/patients/{patient.id}?flash=created", status_code=303)


def _chart_context(access: Access, patient: Patient) -> dict[str, Any]:
    zone = patient.program.time_zone
    return {
        "patient": patient,
        "age": age_on(patient.birth_date, program_today(zone)),
        "episode": service.open_episode(patient),
        "zone": zone,
        "tabs": chart_tabs(),
        "phases": PHASE_LABELS,
        "may_update": bool(
            decide(access.actor, Permission.UPDATE, "Patient", patient_ref(patient))
        ),
        "active": "chart" if access.actor.role == "patient" else "patients",
    }


def chart_page(
    request: Request,
    access: Access,
    patient_id: str,
    tab: str,
    template: str,
    status_code: int = 200,
    loaded: Patient | None = None,
    **context: Any,
) -> Response:
    """Render a chart tab: the header and tabs from here, the body from the domain's template.
    `loaded`: the patient as the tab's service already read them in this request (through the
    policy, the read audited), so the chart is not read and audited twice."""
    if loaded is not None and loaded.id == patient_id:
        patient = loaded
    else:
        patient = service.get_patient(access, patient_id)
    base = _chart_context(access, patient)
    return render(request, template, status_code=status_code, tab=tab, **base, **context)


@router.get("/patients/{patient_id}")
def chart(request: Request, patient_id: str, access: Access = Depends(page_access)) -> Response:
    units = []
    patient = service.get_patient(access, patient_id)
    units = list(
        access.db.scalars(
            select(Unit).where(Unit.program_id == patient.program_id).order_by(Unit.name)
        )
    )
    context = _chart_context(access, patient)
    apps = chart_apps(access, patient)
    response = render(
        request,
        "patients/overview.html",
        tab="overview",
        units=units,
        reasons=DISCHARGE_REASONS,
        apps=apps,
        **context,
    )
    policy = chart_policy(apps)
    if policy:  # the Launch forms lead on to the apps' addresses
        response.headers["Content-Security-Policy"] = policy
    return response


@router.get("/patients/{patient_id}/edit")
def edit_form(request: Request, patient_id: str, access: Access = Depends(page_access)) -> Response:
    patient = service.get_patient(access, patient_id)
    values = {
        "family": patient.family,
        "given": patient.given,
        "gender": patient.gender or "",
        "birth_date": patient.birth_date.isoformat() if patient.birth_date else "",
        "mrn": patient.mrn or "",
        "phone": patient.phone or "",
        "email": patient.email or "",
        "program_id": str(patient.program_id),
    }
    return render(
        request,
        "patients/edit.html",
        active="patients",
        values=values,
        programs=_programs(access),
        genders=GENDERS,
        patient=patient,
    )


@router.post("/patients/{patient_id}/edit")
def save_edit(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    values = _form_values(form_of(request))
    patient = service.get_patient(access, patient_id)
    try:
        record = _as_edited(_record(values, patient.program.mrn_system), patient)
        service.update_patient(access, patient_id, record)
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return render(
            request,
            "patients/edit.html",
            status_code=422,
            active="patients",
            values=values,
            programs=_programs(access),
            genders=GENDERS,
            patient=patient,
            error_field=_FIELD_NAMES.get(exc.field, exc.field),
            error=exc.message,
        )
    return RedirectResponse(f"/patients/{patient_id}?flash=saved", status_code=303)


def _episode_action(
    request: Request, access: Access, patient_id: str, action: str, episode_id: int | None = None
) -> Response:
    form = form_of(request)
    patient = service.get_patient(access, patient_id)
    zone = patient.program.time_zone
    try:
        if episode_id is not None:  # the episode, and the right to change it, before the form
            service.episode_to_change(access, patient_id, episode_id)
        if action == "admit":
            unit_id = row_id(form.get("unit_id", ""))
            if unit_id is None:
                raise InvalidInput("unit", "choose a unit")
            when = local_datetime(str(form.get("admitted_at", "")), zone, "admitted_at")
            service.admit(access, patient_id, unit_id, str(form.get("phase", "")), when)
        elif action == "phase":
            unit = str(form.get("unit_id", ""))
            service.change_phase(
                access,
                patient_id,
                episode_id or 0,
                str(form.get("phase", "")),
                row_id(unit),
            )
        else:
            when = local_datetime(str(form.get("discharged_at", "")), zone, "discharged_at")
            service.discharge(
                access, patient_id, episode_id or 0, str(form.get("reason", "")), when
            )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        units = list(access.db.scalars(select(Unit).where(Unit.program_id == patient.program_id)))
        context = _chart_context(access, service.get_patient(access, patient_id))
        return render(
            request,
            "patients/overview.html",
            status_code=422,
            tab="overview",
            units=units,
            reasons=DISCHARGE_REASONS,
            episode_error=exc.message,
            error_field=exc.field,
            error_action=action,
            **context,
        )
    return RedirectResponse(f"/patients/{patient_id}?flash=saved", status_code=303)


@router.post("/patients/{patient_id}/episodes")
def admit(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    return _episode_action(request, access, patient_id, "admit")


@router.post("/patients/{patient_id}/episodes/{episode_id}/phase")
def change_phase(
    request: Request, patient_id: str, episode_id: int, access: Access = Depends(csrf_form)
) -> Response:
    return _episode_action(request, access, patient_id, "phase", episode_id)


@router.post("/patients/{patient_id}/episodes/{episode_id}/discharge")
def discharge(
    request: Request, patient_id: str, episode_id: int, access: Access = Depends(csrf_form)
) -> Response:
    return _episode_action(request, access, patient_id, "discharge", episode_id)
