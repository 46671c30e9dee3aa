"""FHIR routes for withdrawal monitoring: Questionnaire, QuestionnaireResponse (scored and stored
exactly as the assessment form does) and Observation. The doses given (MedicationAdministration)
are the medications domain's (`medications/administration_routes.py`)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    PAGING,
    PATIENT,
    base_url,
    fhir_body,
    fhir_response,
    fhir_router,
    int_id,
    paging,
    patient_data_response,
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
    questionnaire_name,
)
from tandem.recovery import scales_responses, scales_routes
from tandem.recovery.scales_catalog import is_scale
from tandem.storage.models import User
from tandem.web.deps import api_access
from tandem.withdrawal import fhir as mapping
from tandem.withdrawal.assessments import get_assessment, save_assessment

router = fhir_router()
FHIR_RESOURCES = (
    ResourceSupport(
        type="Questionnaire",
        interactions=("read", "search-type"),
        search_params=(
            SearchParam("name", "string", "the computable name, e.g. Phq9 (starts with, any case)"),
            SearchParam("url", "uri", "the canonical URL, e.g. <base>/Questionnaire/phq9"),
            *PAGING,
        ),
        documentation="Every instrument Tandem scores (withdrawal scales and the recovery scales).",
    ),
    ResourceSupport(
        type="QuestionnaireResponse",
        interactions=("read", "create", "search-type"),
        search_params=(
            PATIENT,
            SearchParam(
                "questionnaire", "reference", "Questionnaire/phq9, its canonical URL or phq9"
            ),
            SearchParam("authored", "date", "prefixes eq, ge, gt, le, lt; repeat for a range"),
            *PAGING,
        ),
        documentation="create validates, scores and stores the response: a withdrawal assessment with an "
        "Observation for the total and each item, exactly as the assessment form; a self-report scale "
        "(PHQ-9, GAD-7, PACS, AUDIT, AUDIT-C, DAST-10; id scale-<n>) with its total as Observation/scale-<n>, "
        "a PHQ-9 item 9 above 0 raising an urgent alert. Invalid answers are refused with 422 naming the "
        "item, and nothing is stored. search-type returns self-report scale responses.",
    ),
    ResourceSupport(
        type="Observation",
        interactions=("read", "search-type"),
        documentation="Withdrawal assessment totals and items; a self-report scale's total is "
        "Observation/scale-<n>, found by its code (http://loinc.org|44261-6 for PHQ-9, "
        "|70274-6 for GAD-7, |75626-2 for AUDIT-C, or urn:tandem:instrument:<id>|total).",
        search_params=(
            PATIENT,
            SearchParam(
                "code",
                "token",
                "urn:tandem:instrument:<id>|total, |<item id>, or "
                "urn:tandem:instrument:<id>| for every code of an instrument",
            ),
            SearchParam(
                "date", "date", "effective time; prefixes eq, ge, gt, le, lt; repeat for a range"
            ),
            *PAGING,
        ),
        extras={"searchInclude": ["Observation:patient", "Observation:subject"]},
    ),
)


# --------------------------------------------------------------------------- Questionnaire


@router.get("/Questionnaire")
def search_questionnaires(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"name", "url"})
    instruments = sorted(load_instruments().values(), key=lambda i: i.id)
    base = base_url(request)
    names = [n.strip().lower() for v in request.query_params.getlist("name") for n in v.split(",")]
    urls = [u.strip() for v in request.query_params.getlist("url") for u in v.split(",")]
    if names:  # FHIR string search: case-insensitive, starts with
        instruments = [
            i
            for i in instruments
            if any(questionnaire_name(i).lower().startswith(n) for n in names)
        ]
    if urls:  # uri search: the canonical URL exactly (a |version is ignored)
        instruments = [
            i
            for i in instruments
            if f"{base}/Questionnaire/{mapping.questionnaire_id(i.id)}"
            in {u.split("|")[0] for u in urls}
        ]
    page = instruments[offset : offset + count]
    resources = [mapping.questionnaire(i, base_url(request)) for i in page]
    return patient_data_response(
        access,
        searchset(
            request, "Questionnaire", resources, count, offset, offset + count < len(instruments)
        ),
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
    return fhir_response(mapping.questionnaire(instrument, base_url(request)))


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
    if is_scale(instrument.id):
        # A self-report scale (PHQ-9, GAD-7, PACS, AUDIT...): the recovery domain stores it.
        return scales_routes.create_response(
            request, access, body, instrument.id, subject.removeprefix("Patient/")
        )
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
        saved = save_assessment(
            access,
            subject.removeprefix("Patient/"),
            instrument.id,
            answers,
            authored,
            channel="api",
        )
    except InvalidAnswers as exc:
        return _refuse_answers(access, exc)
    resource = mapping.questionnaire_response(
        saved.assessment, base_url(request), access.actor.label
    )
    location = f"{base_url(request)}/QuestionnaireResponse/{saved.assessment.id}"
    return patient_data_response(access, resource, 201, {"Location": location})


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
    if response_id.startswith(scales_responses.ID_PREFIX):
        return scales_routes.read_response(request, access, response_id)
    row = get_assessment(access, int_id(response_id, "QuestionnaireResponse"))
    author = access.db.scalar(select(User.display_name).where(User.id == row.recorded_by))
    resource = mapping.questionnaire_response(row, base_url(request), author)
    return patient_data_response(access, resource)
