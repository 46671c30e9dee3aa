"""The medication FHIR API: MedicationKnowledge, MedicationRequest (read, search, create),
MedicationStatement and AdverseEvent (read, search). Thin: parse, call the service, answer.

MedicationAdministration (nurse-given doses, detox and plan alike) is served by the withdrawal
domain's routes from the shared table; plan doses appear there with their dose plan.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import ColumnElement, and_, false, not_, or_, select

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.clock import program_today, utcnow
from tandem.errors import NotFound
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    INCLUDE,
    PAGING,
    PATIENT,
    fhir_body,
    fhir_response,
    fhir_router,
    include_patients,
    includes_asked,
    int_id,
    paging,
    patient_data_response,
    patient_param,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.medications.errors import MedicationInputError, PlanRefused
from tandem.medications.fhir_mapping import to_medication_knowledge
from tandem.medications.fhir_records import (
    RequestError,
    adverse_event,
    find_monographs,
    medication_request,
    medication_statement,
    read_medication_request,
)
from tandem.medications.monograph import load_monograph, medication_ids
from tandem.medications.plans import create_from_steps, effective_status, get_plan
from tandem.medications.resources import PLAN, SIDE_EFFECT, STATEMENT
from tandem.medications.search import get_row, search
from tandem.medications.storage import DosePlanRow, MedicationStatementRow, SideEffectRow
from tandem.medications.validation import SIDE_EFFECTS
from tandem.storage.models import Program
from tandem.web.deps import api_access

router = fhir_router()

FHIR_RESOURCES = (
    ResourceSupport(
        type="MedicationKnowledge",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam(
                "code",
                "token",
                "RxNorm code (http://www.nlm.nih.gov/research/umls/rxnorm|1292) or "
                "urn:tandem:medication|<id>; comma = or",
            ),
            SearchParam("name", "string", "Tandem extension: part of the name, id or a brand name"),
            *PAGING,
        ),
        documentation="Tandem's medication monographs (id = monograph id). Codes the sources do not "
        "confirm are still sent, with a note saying so.",
    ),
    ResourceSupport(
        type="MedicationRequest",
        interactions=("read", "create", "search-type"),
        search_params=(
            PATIENT,
            SearchParam("status", "token", "active | completed | stopped"),
            *PAGING,
        ),
        extras={"searchInclude": ["MedicationRequest:patient", "MedicationRequest:subject"]},
        documentation="Dose plans. create reads the plan from dosageInstruction (one per step, boundsPeriod, "
        "frequency per day, dose in mg; maxDosePerPeriod = the program's protocol maximum) and checks it "
        "against the monograph maximum, the protocol and the patient's stored kidney function; a refused "
        "plan answers 422 with the reason and nothing is stored.",
    ),
    ResourceSupport(
        type="MedicationStatement",
        interactions=("read", "search-type"),
        search_params=(PATIENT, *PAGING),
        extras={"searchInclude": ["MedicationStatement:patient", "MedicationStatement:subject"]},
        documentation="Patient-reported planned doses: completed (taken) or not-taken (missed).",
    ),
    ResourceSupport(
        type="AdverseEvent",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam("subject", "reference", "Patient/<id> or <id>"),
            PATIENT,
            *PAGING,
        ),
        extras={"searchInclude": ["AdverseEvent:subject", "AdverseEvent:patient"]},
        documentation="Medication side effects with their severity (mild, moderate, severe).",
    ),
)


def _names(access: Access, ids: set[int]) -> dict[int, str]:
    return display_names(access.db, ids)


# --------------------------------------------------------------------------- MedicationKnowledge


def _knowledge_allowed(access: Access) -> None:
    """Monographs are not patient data, but a token still needs a scope that covers them."""
    access.require_decision(
        decide(access.actor, Permission.SEARCH, "MedicationKnowledge"),
        "read",
        "MedicationKnowledge",
    )


@router.get("/MedicationKnowledge")
def search_knowledge(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"code", "name"})
    _knowledge_allowed(access)
    found = find_monographs(
        request.query_params.getlist("code"), request.query_params.getlist("name")
    )
    page = found[offset : offset + count]
    resources = [to_medication_knowledge(m) for m in page]
    return patient_data_response(
        access,
        searchset(
            request, "MedicationKnowledge", resources, count, offset, len(found) > offset + count
        ),
    )


@router.get("/MedicationKnowledge/{knowledge_id}")
def read_knowledge(knowledge_id: str, access: Access = Depends(api_access)) -> Response:
    _knowledge_allowed(access)
    key = knowledge_id.replace("-", "_")
    if key not in medication_ids():
        raise FhirError(404, "not-found", f"MedicationKnowledge/{knowledge_id} is not known")
    return fhir_response(to_medication_knowledge(load_monograph(key)))


# --------------------------------------------------------------------------- MedicationRequest


def _program_todays(access: Access, program_ids: set[int]) -> dict[int, date]:
    """Each program's today (a plan's status is counted in its own program's time zone)."""
    if not program_ids:
        return {}
    now = utcnow()
    zones = access.db.execute(
        select(Program.id, Program.time_zone).where(Program.id.in_(program_ids))
    )
    return {program_id: program_today(time_zone, now) for program_id, time_zone in zones}


def _request_resources(access: Access, rows: list[DosePlanRow]) -> list[dict[str, Any]]:
    names = _names(access, {r.prescriber_id for r in rows})
    todays = _program_todays(access, {r.program_id for r in rows})
    return [
        medication_request(
            r,
            effective_status(r, todays[r.program_id]),
            names.get(r.prescriber_id),
        )
        for r in rows
    ]


def _core_error(exc: MedicationInputError) -> FhirError:
    field = exc.field
    if field.startswith("dosageInstruction"):
        where = f"MedicationRequest.{field}"
    elif field == "protocol_max_mg_day":
        where = "MedicationRequest.dosageInstruction.maxDosePerPeriod"
    elif field == "start_date":
        where = "MedicationRequest.dosageInstruction[0].timing.repeat.boundsPeriod.start"
    elif field in ("renal", "medication_id"):
        where = "MedicationRequest.medicationCodeableConcept"
    else:
        where = "MedicationRequest.dosageInstruction"
    message = exc.message
    if isinstance(exc, PlanRefused) and exc.sources:
        message += " Source: " + "; ".join(s.citation for s in exc.sources)
    code = "business-rule" if isinstance(exc, PlanRefused) else "invalid"
    return FhirError(422, code, f"{where}: {message}", [where])


@router.post("/MedicationRequest")
def create_request(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("MedicationRequest")),
    access: Access = Depends(api_access),
) -> Response:
    try:
        posted = read_medication_request(body)
    except RequestError as exc:
        raise FhirError(422, exc.code, f"{exc.path}: {exc.message}", [exc.path]) from None
    try:
        row = create_from_steps(
            access,
            posted.patient_id,
            posted.medication_id,
            posted.steps,
            protocol_max_mg_day=posted.protocol_max_mg_day,
        )
    except NotFound:  # the one record looked up by the subject's id: the patient
        raise FhirError(
            422,
            "invalid",
            f"MedicationRequest.subject: Patient/{posted.patient_id} is not known",
            ["MedicationRequest.subject"],
        ) from None
    except MedicationInputError as exc:
        raise _core_error(exc) from None
    (resource,) = _request_resources(access, [row])
    location = str(request.base_url).rstrip("/") + f"/fhir/MedicationRequest/{row.id}"
    return patient_data_response(access, resource, 201, {"Location": location})


@router.get("/MedicationRequest")
def search_requests(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "status", INCLUDE})
    include = includes_asked(request, "MedicationRequest")
    statuses = [s for v in request.query_params.getlist("status") for s in v.split(",") if s]
    bad = [s for s in statuses if s not in ("active", "completed", "stopped")]
    if bad:
        raise FhirError(
            400,
            "invalid",
            f"status must be active, completed or stopped, got {bad[0]!r}",
            ["status"],
        )
    extra = [_status_condition(access, set(statuses))] if statuses else []
    page = search(
        access,
        PLAN,
        DosePlanRow,
        (DosePlanRow.created_at.desc(), DosePlanRow.id.desc()),
        patient_param(request, "patient", "subject"),
        count,
        offset,
        query_text=str(request.url.query),
        extra=extra,
    )
    resources = _request_resources(access, page.rows)
    bundle = searchset(request, "MedicationRequest", resources, count, offset, page.has_more)
    if include:
        bundle = include_patients(request, access, bundle)
    return patient_data_response(access, bundle)


def _status_condition(access: Access, statuses: set[str]) -> ColumnElement[bool]:
    """Status as the API reports it: an active plan past its last day is completed, counted in
    each program's own time zone."""
    p = DosePlanRow
    per_program: list[ColumnElement[bool]] = []
    programs = set(access.db.scalars(select(Program.id)))
    for program_id, today in _program_todays(access, programs).items():
        ended = and_(p.ends_on.is_not(None), p.ends_on <= today)
        wanted = []
        if "active" in statuses:
            wanted.append(and_(p.status == "active", not_(ended)))
        if "completed" in statuses:
            wanted.append(and_(p.status == "active", ended))
        if "stopped" in statuses:
            wanted.append(p.status == "stopped")
        per_program.append(and_(p.program_id == program_id, or_(*wanted)))
    return or_(*per_program) if per_program else false()


@router.get("/MedicationRequest/{request_id}")
def read_request(request_id: str, access: Access = Depends(api_access)) -> Response:
    row = get_plan(access, int_id(request_id, "MedicationRequest"))
    (resource,) = _request_resources(access, [row])
    return patient_data_response(access, resource)


# --------------------------------------------------------------------------- MedicationStatement


@router.get("/MedicationStatement")
def search_statements(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", INCLUDE})
    include = includes_asked(request, "MedicationStatement")
    m = MedicationStatementRow
    page = search(
        access,
        STATEMENT,
        m,
        (m.due_at.desc(), m.id.desc()),
        patient_param(request, "patient", "subject"),
        count,
        offset,
        query_text=str(request.url.query),
    )
    names = _names(access, {r.recorded_by for r in page.rows})
    resources = [medication_statement(r, names.get(r.recorded_by)) for r in page.rows]
    bundle = searchset(request, "MedicationStatement", resources, count, offset, page.has_more)
    if include:
        bundle = include_patients(request, access, bundle)
    return patient_data_response(access, bundle)


@router.get("/MedicationStatement/{statement_id}")
def read_statement(statement_id: str, access: Access = Depends(api_access)) -> Response:
    row = get_row(
        access,
        STATEMENT,
        MedicationStatementRow,
        int_id(statement_id, "MedicationStatement"),
    )
    resource = medication_statement(row, _names(access, {row.recorded_by}).get(row.recorded_by))
    return patient_data_response(access, resource)


# --------------------------------------------------------------------------- AdverseEvent


def _event(row: SideEffectRow, names: dict[int, str]) -> dict[str, Any]:
    return adverse_event(row, SIDE_EFFECTS.get(row.effect, row.effect), names.get(row.recorded_by))


@router.get("/AdverseEvent")
def search_events(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", INCLUDE})
    include = includes_asked(request, "AdverseEvent")
    m = SideEffectRow
    page = search(
        access,
        SIDE_EFFECT,
        m,
        (m.onset_at.desc(), m.id.desc()),
        patient_param(request, "subject", "patient"),
        count,
        offset,
        query_text=str(request.url.query),
    )
    names = _names(access, {r.recorded_by for r in page.rows})
    resources = [_event(r, names) for r in page.rows]
    bundle = searchset(request, "AdverseEvent", resources, count, offset, page.has_more)
    if include:
        bundle = include_patients(request, access, bundle)
    return patient_data_response(access, bundle)


@router.get("/AdverseEvent/{event_id}")
def read_event(event_id: str, access: Access = Depends(api_access)) -> Response:
    row = get_row(access, SIDE_EFFECT, SideEffectRow, int_id(event_id, "AdverseEvent"))
    resource = _event(row, _names(access, {row.recorded_by}))
    return patient_data_response(access, resource)
