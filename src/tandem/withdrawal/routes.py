"""FHIR routes for withdrawal monitoring: Questionnaire, QuestionnaireResponse (scored and stored
exactly as the assessment form does), Observation and MedicationAdministration searches."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    MAX_COUNT,
    fhir_body,
    fhir_response,
    fhir_router,
    paging,
    searchset,
)
from tandem.fhir.outcome import FhirError, FhirJSONResponse, issue, operation_outcome
from tandem.instruments.engine import (
    InvalidAnswers,
    UnknownInstrument,
    get_instrument,
    load_instruments,
)
from tandem.instruments.questionnaire import (
    InvalidQuestionnaireResponse,
    answers_from_questionnaire_response,
)
from tandem.storage.models import User
from tandem.web.deps import api_access
from tandem.withdrawal import fhir as mapping
from tandem.withdrawal import service

router = fhir_router()

_PAGING = (
    SearchParam("_count", "number", f"page size, at most {MAX_COUNT}"),
    SearchParam("_offset", "number", "where the page starts (follow the next link)"),
)
FHIR_RESOURCES = (
    ResourceSupport(
        type="Questionnaire",
        interactions=("read", "search-type"),
        search_params=_PAGING,
        documentation="Every instrument Tandem scores (withdrawal scales and the recovery scales).",
    ),
    ResourceSupport(
        type="QuestionnaireResponse",
        interactions=("read", "create"),
        documentation="create validates, scores and stores the response with an Observation for the total "
        "and each item, exactly as the assessment form; invalid answers are refused with 422 naming the "
        "item, and nothing is stored.",
    ),
    ResourceSupport(
        type="Observation",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam("patient", "reference", "Patient/<id> or <id>"),
            SearchParam(
                "code",
                "token",
                "urn:tandem:instrument:<id>|total, |<item id>, or "
                "urn:tandem:instrument:<id>| for every code of an instrument",
            ),
            SearchParam(
                "date", "date", "effective time; prefixes eq, ge, gt, le, lt; repeat for a range"
            ),
            *_PAGING,
        ),
    ),
    ResourceSupport(
        type="MedicationAdministration",
        interactions=("read", "search-type"),
        search_params=(SearchParam("patient", "reference", "Patient/<id> or <id>"), *_PAGING),
    ),
)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def _patient_param(request: Request) -> str | None:
    values = request.query_params.getlist("patient") + request.query_params.getlist("subject")
    if not values:
        return None
    if len(values) > 1:
        raise FhirError(400, "not-supported", "give one patient", ["patient"])
    return values[0].removeprefix("Patient/")


def _int_id(raw: str, resource_type: str) -> int:
    if not raw.isdigit():
        raise FhirError(404, "not-found", f"{resource_type}/{raw} is not known")
    return int(raw)


# --------------------------------------------------------------------------- Questionnaire


@router.get("/Questionnaire")
def search_questionnaires(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, set())
    instruments = sorted(load_instruments().values(), key=lambda i: i.id)
    page = instruments[offset : offset + count]
    resources = [mapping.questionnaire(i, _base(request)) for i in page]
    return fhir_response(
        searchset(
            request, "Questionnaire", resources, count, offset, offset + count < len(instruments)
        )
    )


@router.get("/Questionnaire/{questionnaire_id}")
def read_questionnaire(
    questionnaire_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    try:
        instrument = get_instrument(mapping.instrument_for_questionnaire(questionnaire_id))
    except UnknownInstrument:
        raise FhirError(
            404, "not-found", f"Questionnaire/{questionnaire_id} is not known"
        ) from None
    return fhir_response(mapping.questionnaire(instrument, _base(request)))


# --------------------------------------------------------------------------- QuestionnaireResponse


def _answer_expression(item_id: str) -> str:
    return f"QuestionnaireResponse.item.where(linkId='{item_id}')"


@router.post("/QuestionnaireResponse")
def create_questionnaire_response(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("QuestionnaireResponse")),
    access: Access = Depends(api_access),
) -> Response:
    subject = (
        (body.get("subject") or {}).get("reference", "")
        if isinstance(body.get("subject"), dict)
        else ""
    )
    if not subject.startswith("Patient/"):
        raise FhirError(
            422,
            "required",
            "subject must reference the Patient assessed (Patient/<id>)",
            ["QuestionnaireResponse.subject"],
        )
    if body.get("status") != "completed":
        raise FhirError(
            422,
            "invalid",
            "only a completed response is scored and stored (status: completed)",
            ["QuestionnaireResponse.status"],
        )
    reference = body.get("questionnaire")
    if not isinstance(reference, str) or not reference:
        raise FhirError(
            422,
            "required",
            "questionnaire must name the instrument, e.g. Questionnaire/ciwa-ar",
            ["QuestionnaireResponse.questionnaire"],
        )
    try:
        instrument = get_instrument(mapping.instrument_for_questionnaire(reference))
    except UnknownInstrument as exc:
        raise FhirError(
            422, "not-found", f"questionnaire: {exc}", ["QuestionnaireResponse.questionnaire"]
        ) from None
    try:
        authored = mapping.read_authored(body)
        answers = answers_from_questionnaire_response(instrument, body)
    except mapping.SearchValueError as exc:
        raise FhirError(422, "invalid", str(exc), [f"QuestionnaireResponse.{exc.param}"]) from None
    except InvalidQuestionnaireResponse as exc:
        raise FhirError(400, "structure", str(exc), ["QuestionnaireResponse"]) from None
    except InvalidAnswers as exc:
        return _refuse_answers(access, exc)
    try:
        saved = service.save_assessment(
            access,
            subject.removeprefix("Patient/"),
            instrument.id,
            answers,
            authored,
            channel="api",
        )
    except InvalidAnswers as exc:
        return _refuse_answers(access, exc)
    resource = mapping.questionnaire_response(saved.assessment, _base(request), access.actor.label)
    location = f"{_base(request)}/QuestionnaireResponse/{saved.assessment.id}"
    return fhir_response(resource, 201, {"Location": location})


def _refuse_answers(access: Access, exc: InvalidAnswers) -> Response:
    access.refused("create", f"invalid answers: {exc}", resource_type="QuestionnaireResponse")
    issues = [
        issue(
            "invalid" if e.problem != "missing" else "required",
            e.message,
            [_answer_expression(e.item_id)],
        )
        for e in exc.errors
    ]
    return FhirJSONResponse(operation_outcome(issues), status_code=422)


@router.get("/QuestionnaireResponse/{response_id}")
def read_questionnaire_response(
    response_id: str, request: Request, access: Access = Depends(api_access)
) -> Response:
    row = service.get_assessment(access, _int_id(response_id, "QuestionnaireResponse"))
    author = access.db.scalar(select(User.display_name).where(User.id == row.recorded_by))
    resource = mapping.questionnaire_response(row, _base(request), author)
    return fhir_response(resource)


# --------------------------------------------------------------------------- Observation


@router.get("/Observation")
def search_observations(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "code", "date"})
    params = request.query_params
    try:
        codes = mapping.parse_codes(params.getlist("code"), set(load_instruments()))
        dates = mapping.parse_dates(params.getlist("date"))
    except mapping.SearchValueError as exc:
        raise FhirError(400, "invalid", str(exc), [exc.param]) from None
    query = service.ObservationQuery(
        patient_id=_patient_param(request),
        codes=codes,
        date_ge=dates.ge,
        date_lt=dates.lt,
        count=count,
        offset=offset,
    )
    rows, has_more = service.search_observations(access, query, query_text=str(request.url.query))
    resources = [mapping.observation(obs, assessment) for obs, assessment in rows]
    return fhir_response(searchset(request, "Observation", resources, count, offset, has_more))


@router.get("/Observation/{observation_id}")
def read_observation(observation_id: str, access: Access = Depends(api_access)) -> Response:
    obs, assessment = service.get_observation(access, _int_id(observation_id, "Observation"))
    resource = mapping.observation(obs, assessment)
    return fhir_response(resource)


# --------------------------------------------------------------------------- MedicationAdministration


def _performers(access: Access, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(access.db.execute(select(User.id, User.display_name).where(User.id.in_(ids))).all())


@router.get("/MedicationAdministration")
def search_administrations(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject"})
    rows, has_more = service.search_administrations(
        access, _patient_param(request), count, offset, query_text=str(request.url.query)
    )
    names = _performers(access, {r.performer_id for r in rows})
    resources = [mapping.medication_administration(r, names.get(r.performer_id)) for r in rows]
    return fhir_response(
        searchset(request, "MedicationAdministration", resources, count, offset, has_more)
    )


@router.get("/MedicationAdministration/{administration_id}")
def read_administration(administration_id: str, access: Access = Depends(api_access)) -> Response:
    row = service.get_administration(access, _int_id(administration_id, "MedicationAdministration"))
    names = _performers(access, {row.performer_id})
    resource = mapping.medication_administration(row, names.get(row.performer_id))
    return fhir_response(resource)
