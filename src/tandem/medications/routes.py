"""The medication FHIR API: MedicationKnowledge, MedicationRequest (read, search, create),
MedicationStatement and AdverseEvent (read, search). Thin: parse, call the service, answer.

MedicationAdministration (nurse-given doses, detox and plan alike) is served by the withdrawal
domain's routes from the shared table; plan doses appear there with their dose plan.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import and_, not_, or_, select

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    MAX_COUNT,
    fhir_body,
    fhir_response,
    fhir_router,
    paging,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.medications import service
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
from tandem.medications.storage import DosePlanRow, MedicationStatementRow, SideEffectRow
from tandem.storage.db import utcnow
from tandem.storage.models import Patient, Program, User
from tandem.web.deps import api_access

router = fhir_router()

_PAGING = (
    SearchParam("_count", "number", f"page size, at most {MAX_COUNT}"),
    SearchParam("_offset", "number", "where the page starts (follow the next link)"),
)
_PATIENT = SearchParam("patient", "reference", "Patient/<id> or <id>")

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
            *_PAGING,
        ),
        documentation="Tandem's medication monographs (id = monograph id). Codes the sources do not "
        "confirm are still sent, with a note saying so.",
    ),
    ResourceSupport(
        type="MedicationRequest",
        interactions=("read", "create", "search-type"),
        search_params=(
            _PATIENT,
            SearchParam("status", "token", "active | completed | stopped"),
            *_PAGING,
        ),
        documentation="Dose plans. create reads the plan from dosageInstruction (one per step, boundsPeriod, "
        "frequency per day, dose in mg; maxDosePerPeriod = the program's protocol maximum) and checks it "
        "against the monograph maximum, the protocol and the patient's stored kidney function; a refused "
        "plan answers 422 with the reason and nothing is stored.",
    ),
    ResourceSupport(
        type="MedicationStatement",
        interactions=("read", "search-type"),
        search_params=(_PATIENT, *_PAGING),
        documentation="Patient-reported planned doses: completed (taken) or not-taken (missed).",
    ),
    ResourceSupport(
        type="AdverseEvent",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam("subject", "reference", "Patient/<id> or <id>"),
            _PATIENT,
            *_PAGING,
        ),
        documentation="Medication side effects with their severity (mild, moderate, severe).",
    ),
)


def _patient_param(request: Request, *names: str) -> str | None:
    values = [v for n in names for v in request.query_params.getlist(n)]
    if not values:
        return None
    if len(values) > 1:
        raise FhirError(400, "not-supported", "give one patient", [names[0]])
    return values[0].removeprefix("Patient/")


def _int_id(raw: str, resource_type: str) -> int:
    if not raw.isdigit():
        raise FhirError(404, "not-found", f"{resource_type}/{raw} is not known")
    return int(raw)


def _names(access: Access, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(access.db.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


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
    return fhir_response(
        searchset(
            request, "MedicationKnowledge", resources, count, offset, len(found) > offset + count
        )
    )


@router.get("/MedicationKnowledge/{knowledge_id}")
def read_knowledge(knowledge_id: str, access: Access = Depends(api_access)) -> Response:
    _knowledge_allowed(access)
    key = knowledge_id.replace("-", "_")
    if key not in medication_ids():
        raise FhirError(404, "not-found", f"MedicationKnowledge/{knowledge_id} is not known")
    return fhir_response(to_medication_knowledge(load_monograph(key)))


# --------------------------------------------------------------------------- MedicationRequest


def _request_resource(access: Access, row: DosePlanRow, names: dict[int, str]) -> dict[str, Any]:
    program = access.db.get(Program, row.program_id)
    today = utcnow().astimezone(ZoneInfo(program.time_zone if program else "UTC")).date()
    return medication_request(
        row, service.effective_status(row, today), names.get(row.prescriber_id)
    )


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
    if access.db.get(Patient, posted.patient_id) is None:
        raise FhirError(
            422,
            "invalid",
            f"MedicationRequest.subject: Patient/{posted.patient_id} is not known",
            ["MedicationRequest.subject"],
        )
    try:
        row = service.create_from_steps(
            access,
            posted.patient_id,
            posted.medication_id,
            posted.steps,
            protocol_max_mg_day=posted.protocol_max_mg_day,
        )
    except MedicationInputError as exc:
        raise _core_error(exc) from None
    resource = _request_resource(access, row, _names(access, {row.prescriber_id}))
    location = str(request.base_url).rstrip("/") + f"/fhir/MedicationRequest/{row.id}"
    return fhir_response(resource, 201, {"Location": location})


@router.get("/MedicationRequest")
def search_requests(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "status"})
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
    page = service.search(
        access,
        service.PLAN,
        DosePlanRow,
        (DosePlanRow.created_at.desc(), DosePlanRow.id.desc()),
        _patient_param(request, "patient", "subject"),
        count,
        offset,
        query_text=str(request.url.query),
        extra=extra,
    )
    names = _names(access, {r.prescriber_id for r in page.rows})
    resources = [_request_resource(access, r, names) for r in page.rows]
    return fhir_response(
        searchset(request, "MedicationRequest", resources, count, offset, page.has_more)
    )


def _status_condition(access: Access, statuses: set[str]):  # type: ignore[no-untyped-def]
    """Status as the API reports it: an active plan past its last day is completed, counted in
    each program's own time zone."""
    now = utcnow()
    p = DosePlanRow
    per_program = []
    for program in access.db.scalars(select(Program)):
        today = now.astimezone(ZoneInfo(program.time_zone)).date()
        ended = and_(p.ends_on.is_not(None), p.ends_on <= today)
        wanted = []
        if "active" in statuses:
            wanted.append(and_(p.status == "active", not_(ended)))
        if "completed" in statuses:
            wanted.append(and_(p.status == "active", ended))
        if "stopped" in statuses:
            wanted.append(p.status == "stopped")
        per_program.append(and_(p.program_id == program.id, or_(*wanted)))
    return or_(*per_program) if per_program else p.id.is_(None)


@router.get("/MedicationRequest/{request_id}")
def read_request(request_id: str, access: Access = Depends(api_access)) -> Response:
    row = service.get_plan(access, _int_id(request_id, "MedicationRequest"))
    resource = _request_resource(access, row, _names(access, {row.prescriber_id}))
    return fhir_response(resource)


# --------------------------------------------------------------------------- MedicationStatement


@router.get("/MedicationStatement")
def search_statements(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject"})
    m = MedicationStatementRow
    page = service.search(
        access,
        service.STATEMENT,
        m,
        (m.due_at.desc(), m.id.desc()),
        _patient_param(request, "patient", "subject"),
        count,
        offset,
        query_text=str(request.url.query),
    )
    names = _names(access, {r.recorded_by for r in page.rows})
    resources = [medication_statement(r, names.get(r.recorded_by)) for r in page.rows]
    return fhir_response(
        searchset(request, "MedicationStatement", resources, count, offset, page.has_more)
    )


@router.get("/MedicationStatement/{statement_id}")
def read_statement(statement_id: str, access: Access = Depends(api_access)) -> Response:
    row = service.get_row(
        access,
        service.STATEMENT,
        MedicationStatementRow,
        _int_id(statement_id, "MedicationStatement"),
    )
    resource = medication_statement(row, _names(access, {row.recorded_by}).get(row.recorded_by))
    return fhir_response(resource)


# --------------------------------------------------------------------------- AdverseEvent


def _event(row: SideEffectRow, names: dict[int, str]) -> dict[str, Any]:
    return adverse_event(
        row, service.SIDE_EFFECTS.get(row.effect, row.effect), names.get(row.recorded_by)
    )


@router.get("/AdverseEvent")
def search_events(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject"})
    m = SideEffectRow
    page = service.search(
        access,
        service.SIDE_EFFECT,
        m,
        (m.onset_at.desc(), m.id.desc()),
        _patient_param(request, "subject", "patient"),
        count,
        offset,
        query_text=str(request.url.query),
    )
    names = _names(access, {r.recorded_by for r in page.rows})
    resources = [_event(r, names) for r in page.rows]
    return fhir_response(
        searchset(request, "AdverseEvent", resources, count, offset, page.has_more)
    )


@router.get("/AdverseEvent/{event_id}")
def read_event(event_id: str, access: Access = Depends(api_access)) -> Response:
    row = service.get_row(
        access, service.SIDE_EFFECT, SideEffectRow, _int_id(event_id, "AdverseEvent")
    )
    resource = _event(row, _names(access, {row.recorded_by}))
    return fhir_response(resource)
