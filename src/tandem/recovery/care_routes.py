"""FHIR routes of the rehab program: CarePlan and Encounter (read, search by patient and date),
Appointment (read, search, create a booked session), and creating an Observation of use, craving
or a drug screen. Through the data-access layer, audited; impossible input is refused with an
OperationOutcome naming the element, and nothing is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import or_, select

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.queries import Page, search_page
from tandem.clock import program_today, utcnow
from tandem.errors import InvalidInput, NotFound
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    PAGING,
    PATIENT,
    base_url,
    fhir_body,
    fhir_router,
    int_id,
    paging,
    patient_data_response,
    patient_param,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.fhir.search_dates import DateBounds, SearchValueError, day_bounds, parse_dates
from tandem.recovery import care_fhir, use_fhir
from tandem.recovery.care_plans import (
    CARE_PLAN,
    PlannedService,
    PlanWrite,
    create_from_api,
    get_care_plan,
    plan_for_update,
    plan_services,
    retention_history,
    update_from_api,
)
from tandem.recovery.sessions_schedule import APPOINTMENT, book_session, get_session
from tandem.recovery.storage import CarePlanRow, TherapySessionRow
from tandem.recovery.use_records import record_craving, record_drug_screen, record_use_day
from tandem.storage.models import Patient
from tandem.web.deps import api_access

router = fhir_router()
ENCOUNTER = "Encounter"
DATE = SearchParam("date", "date", "prefixes eq, ge, gt, le, lt; repeat for a range")

FHIR_RESOURCES = (
    ResourceSupport(
        type="CarePlan",
        interactions=("read", "search-type", "create", "update"),
        search_params=(PATIENT, SearchParam("date", "date", "overlaps the plan's period"), *PAGING),
        documentation="A patient's rehab program: services as activities (with how often), "
        "retention (active, revoked = dropped out, completed) and its history as notes. create "
        "starts one (status active, intent plan, subject, period.start, a category coding of "
        "urn:tandem:recovery:substance per substance, activity.detail with a code of "
        "urn:tandem:recovery:service and scheduledString, how often); update changes its "
        "substances, services, title and status (revoked or completed from period.end). An "
        "element Tandem does not store is refused by name (422), never dropped; description, "
        "note, author and created are Tandem's own, accepted only as Tandem writes them.",
    ),
    ResourceSupport(
        type="Appointment",
        interactions=("read", "search-type", "create"),
        search_params=(PATIENT, SearchParam("date", "date", "the session's start"), *PAGING),
        documentation="Scheduled therapy sessions. create books one (status booked, one Patient "
        "participant, serviceType of urn:tandem:recovery:service, start, end or minutesDuration); "
        "a time in the past or an unknown service is refused (422) and nothing is stored.",
    ),
    ResourceSupport(
        type="Encounter",
        interactions=("read", "search-type"),
        search_params=(PATIENT, SearchParam("date", "date", "the session's start"), *PAGING),
        documentation="Therapy sessions the patient attended (the Appointment fulfilled).",
    ),
    ResourceSupport(
        type="Observation",
        interactions=("create",),
        search_params=(
            SearchParam(
                "code",
                "token",
                "urn:tandem:recovery:use|<substance>, urn:tandem:recovery:craving|<substance>, "
                "urn:tandem:recovery:drug-screen|<substance> (system| for all), or a confirmed LOINC "
                "code (74013-4 drinks per day; urine screens 19295-5, 14314-9, 19261-7, 18282-4)",
            ),
        ),
        documentation="Recovery Observations: a use day (valueBoolean, or valueQuantity in standard "
        "drinks for alcohol; a later report about the same day replaces the answer), a 0-10 "
        "craving rating (valueInteger) and a urine screen result (positive, negative, invalid). "
        "Impossible values are refused (422 naming the element) and nothing is stored.",
    ),
)


def _dates(request: Request) -> DateBounds:
    try:
        return parse_dates(request.query_params.getlist("date"))
    except SearchValueError as exc:
        raise FhirError(400, "invalid", str(exc), [exc.param]) from None


def _names(access: Access, ids: list[int | None]) -> dict[int, str]:
    return display_names(access.db, ids)


# --------------------------------------------------------------------------- CarePlan


def _care_plan_resource(access: Access, plan: CarePlanRow) -> dict[str, Any]:
    planned = plan_services(access, plan, current_only=False)
    history = retention_history(access, plan)
    names = _names(access, [plan.counselor_id, *(s.staff_id for s in planned)])
    return care_fhir.care_plan(plan, planned, history, names)


@router.get("/CarePlan")
def search_care_plans(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "date"})
    first, last = day_bounds(_dates(request))
    statement = select(CarePlanRow)
    if last is not None:
        statement = statement.where(CarePlanRow.started_on <= last)
    if first is not None:
        statement = statement.where(
            or_(CarePlanRow.retention == "active", CarePlanRow.retention_on >= first)
        )
    page: Page[CarePlanRow] = search_page(
        access,
        CARE_PLAN,
        statement,
        patient_column=CarePlanRow.patient_id,
        program_column=CarePlanRow.program_id,
        patient_of=lambda r: r.patient_id,
        order=(CarePlanRow.started_on.desc(), CarePlanRow.id.desc()),
        patient_id=patient_param(request),
        count=count,
        offset=offset,
        query_text=str(request.url.query),
    )
    resources = [_care_plan_resource(access, p) for p in page.rows]
    return patient_data_response(
        access, searchset(request, "CarePlan", resources, count, offset, page.has_more)
    )


# The care plan service's field names, as the CarePlan's elements.
PLAN_ELEMENTS = {
    "retention": "status",
    "ended_on": "period.end",
    "on_day": "period.end",
    "started_on": "period.start",
    "substances": "category",
    "title": "title",
    "care_plan": "status",
}


def _plan_write(body: dict[str, Any]) -> tuple[care_fhir.CarePlanInput, PlanWrite]:
    given = care_fhir.read_care_plan(body)
    return given, PlanWrite(
        patient_id=given.patient_id,
        retention=given.retention,
        substances=given.substances,
        services=tuple(PlannedService(s, f) for s, f in given.services),
        title=given.title,
        started_on=given.started_on,
        ended_on=given.ended_on,
    )


def _as_element(exc: InvalidInput) -> InvalidInput:
    field = exc.field
    if field.startswith(("services", "frequency")):
        return InvalidInput("activity", exc.message)
    return InvalidInput(PLAN_ELEMENTS.get(field, field), exc.message)


@router.post("/CarePlan")
def create_care_plan(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("CarePlan")),
    access: Access = Depends(api_access),
) -> Response:
    given, write = _plan_write(body)
    try:
        plan = create_from_api(access, write, utcnow())
    except InvalidInput as exc:
        raise _as_element(exc) from None
    resource = _care_plan_resource(access, plan)
    care_fhir.check_written(given, {}, resource)
    location = f"{base_url(request)}/CarePlan/{plan.id}"
    return patient_data_response(access, resource, 201, {"Location": location})


@router.put("/CarePlan/{care_plan_id}")
def update_care_plan(
    care_plan_id: str,
    body: dict[str, Any] = Depends(fhir_body("CarePlan")),
    access: Access = Depends(api_access),
) -> Response:
    plan_id = int_id(care_plan_id, "CarePlan")
    if "id" in body and body["id"] != care_plan_id:
        raise InvalidInput("id", f"the body's id must be {care_plan_id}, as in the address")
    given, write = _plan_write(body)
    if access.db.get(CarePlanRow, plan_id) is None:
        raise NotFound(f"CarePlan/{plan_id} is not known")
    try:
        _, plan = plan_for_update(access, write.patient_id, plan_id)
        before = _care_plan_resource(access, plan)  # as the client read it
        plan = update_from_api(access, plan_id, write, utcnow())
    except InvalidInput as exc:
        if exc.field == "care_plan":
            raise InvalidInput("subject", exc.message) from None
        raise _as_element(exc) from None
    resource = _care_plan_resource(access, plan)
    care_fhir.check_written(given, before, resource)
    return patient_data_response(access, resource)


@router.get("/CarePlan/{care_plan_id}")
def read_care_plan(care_plan_id: str, access: Access = Depends(api_access)) -> Response:
    plan = get_care_plan(access, int_id(care_plan_id, "CarePlan"))
    return patient_data_response(access, _care_plan_resource(access, plan))


# --------------------------------------------------------------------------- Appointment, Encounter


def _search_sessions(
    request: Request, access: Access, resource_type: str, attended_only: bool
) -> Response:
    count, offset = paging(
        request, {"patient", "date"} | ({"subject"} if resource_type == ENCOUNTER else set())
    )
    dates = _dates(request)
    t = TherapySessionRow
    statement = select(t)
    if attended_only:
        statement = statement.where(t.status == "attended")
    if dates.ge is not None:
        statement = statement.where(t.starts_at >= dates.ge)
    if dates.lt is not None:
        statement = statement.where(t.starts_at < dates.lt)
    page: Page[TherapySessionRow] = search_page(
        access,
        resource_type,
        statement,
        patient_column=t.patient_id,
        program_column=t.program_id,
        patient_of=lambda r: r.patient_id,
        order=(t.starts_at.desc(), t.id.desc()),
        patient_id=patient_param(request, "patient", "subject")
        if resource_type == ENCOUNTER
        else patient_param(request, "patient"),
        count=count,
        offset=offset,
        query_text=str(request.url.query),
    )
    names = _names(access, [r.staff_id for r in page.rows])
    build = care_fhir.encounter if attended_only else care_fhir.appointment
    resources = [build(r, names) for r in page.rows]
    return patient_data_response(
        access, searchset(request, resource_type, resources, count, offset, page.has_more)
    )


@router.get("/Appointment")
def search_appointments(request: Request, access: Access = Depends(api_access)) -> Response:
    return _search_sessions(request, access, APPOINTMENT, attended_only=False)


@router.get("/Appointment/{appointment_id}")
def read_appointment(appointment_id: str, access: Access = Depends(api_access)) -> Response:
    row = get_session(access, int_id(appointment_id, APPOINTMENT))
    return patient_data_response(access, care_fhir.appointment(row, _names(access, [row.staff_id])))


@router.post("/Appointment")
def create_appointment(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Appointment")),
    access: Access = Depends(api_access),
) -> Response:
    patient_id, service, start, minutes = care_fhir.read_appointment(body)
    try:
        row = book_session(
            access, patient_id, service=service, starts_at=start, minutes=minutes, now=utcnow()
        )
    except InvalidInput as exc:  # the service's field names, as the Appointment's elements
        named = {"starts_at": "start", "minutes": "minutesDuration", "staff": "participant"}
        raise InvalidInput(named.get(exc.field, exc.field), exc.message) from None
    resource = care_fhir.appointment(row, _names(access, [row.staff_id]))
    location = f"{base_url(request)}/Appointment/{row.id}"
    return patient_data_response(access, resource, 201, {"Location": location})


@router.get("/Encounter")
def search_encounters(request: Request, access: Access = Depends(api_access)) -> Response:
    return _search_sessions(request, access, ENCOUNTER, attended_only=True)


@router.get("/Encounter/{encounter_id}")
def read_encounter(encounter_id: str, access: Access = Depends(api_access)) -> Response:
    row = get_session(access, int_id(encounter_id, ENCOUNTER), ENCOUNTER)
    if row.status != "attended":
        raise FhirError(404, "not-found", f"Encounter/{encounter_id} is not known")
    return patient_data_response(access, care_fhir.encounter(row, _names(access, [row.staff_id])))


# --------------------------------------------------------------------------- Observation create


@router.post("/Observation")
def create_observation(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Observation")),
    access: Access = Depends(api_access),
) -> Response:
    given = use_fhir.read_observation_input(body)
    now = utcnow()
    status = 201
    resource: dict[str, Any]
    if given.kind == "use":
        if isinstance(given.effective, datetime):
            patient = access.db.get(Patient, given.patient_id)
            zone = patient.program.time_zone if patient is not None else "UTC"
            day = program_today(zone, given.effective)
        else:
            day = given.effective
        drinks = given.value if isinstance(given.value, float) else None
        used = given.value if isinstance(given.value, bool) else None
        saved = record_use_day(
            access,
            given.patient_id,
            substance=given.substance,
            used=used,
            standard_drinks=drinks,
            day=day,
            now=now,
            source="api",
            fields={
                "substance": "code",
                "used": "valueBoolean",
                "standard_drinks": "valueQuantity.value",
                "day": "effectiveDateTime",
            },
        )
        resource = use_fhir.use_observation(saved.row)
        status = 201 if saved.created else 200
    elif given.kind == "craving":
        assert isinstance(given.effective, datetime)
        craving = record_craving(
            access,
            given.patient_id,
            substance=given.substance,
            rating=given.value,
            rated_at=given.effective,
            now=now,
            source="api",
            field="valueInteger",
        )
        resource = use_fhir.craving_observation(craving)
    else:
        assert isinstance(given.effective, datetime)
        screen, results = record_drug_screen(
            access,
            given.patient_id,
            collected_at=given.effective,
            results=[(given.substance, given.value)],
            now=now,
            field="code",
            time_field="effectiveDateTime",
        )
        resource = use_fhir.screen_observation(results[0], screen)
    location = f"{base_url(request)}/Observation/{resource['id']}"
    return patient_data_response(access, resource, status, {"Location": location})
