"""FHIR for the self-report scales: QuestionnaireResponse create (from the shared
`POST /fhir/QuestionnaireResponse`, which hands a self-report scale's response here), read and
search by patient, questionnaire and date; the scored total as an Observation (read, and search
by the instrument's total code). Thin: parse, call one service function, answer."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, read_row, visible
from tandem.fhir.http import (
    base_url,
    fhir_router,
    paging,
    patient_data_response,
    patient_param,
    searchset,
)
from tandem.fhir.observations import Found, ObservationSearch, ObservationSource
from tandem.fhir.outcome import FhirError, FhirJSONResponse, issue, operation_outcome
from tandem.instruments.engine import InvalidAnswers, load_instruments
from tandem.instruments.questionnaire import (
    InvalidQuestionnaireResponse,
    answers_from_questionnaire_response,
)
from tandem.recovery import scales_fhir
from tandem.recovery.scales_catalog import is_scale, scales
from tandem.recovery.scales_responses import (
    ID_PREFIX,
    QR,
    ResponseQuery,
    get_response,
    row_id_of,
    save_response,
    search_responses,
)
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.storage.models import User
from tandem.web.deps import api_access
from tandem.withdrawal import fhir as withdrawal_fhir

router = fhir_router()

OBSERVATION = "Observation"


def _answer_expression(item_id: str) -> str:
    return f"QuestionnaireResponse.item.where(linkId='{item_id}')"


def refuse_answers(access: Access, exc: InvalidAnswers, patient_id: str | None = None) -> Response:
    """422 naming every bad item; the refusal is audited and nothing is stored."""
    access.refused("create", f"invalid answers: {exc}", resource_type=QR, patient_id=patient_id)
    issues = [
        issue(
            "invalid" if e.problem != "missing" else "required",
            e.message,
            [_answer_expression(e.item_id)],
        )
        for e in exc.errors
    ]
    return FhirJSONResponse(operation_outcome(issues), status_code=422)


def create_response(
    request: Request, access: Access, body: dict[str, Any], instrument_id: str, patient_id: str
) -> Response:
    """A self-report scale's QuestionnaireResponse, once the shared create route has checked
    subject, status and questionnaire. The policy is asked before the answers are read."""
    load_patient(access, patient_id, (Permission.CREATE, QR), audit=False)
    instrument = next(s.definition for s in scales() if s.instrument == instrument_id)
    try:
        authored = withdrawal_fhir.read_authored(body)
        answers = answers_from_questionnaire_response(instrument, body)
    except withdrawal_fhir.SearchValueError as exc:
        raise FhirError(422, "invalid", str(exc), [f"QuestionnaireResponse.{exc.param}"]) from None
    except InvalidQuestionnaireResponse as exc:
        raise FhirError(400, "structure", str(exc), ["QuestionnaireResponse"]) from None
    except InvalidAnswers as exc:
        return refuse_answers(access, exc, patient_id)
    try:
        saved = save_response(access, patient_id, instrument_id, answers, authored, channel="api")
    except InvalidAnswers as exc:
        return refuse_answers(access, exc, patient_id)
    resource = scales_fhir.questionnaire_response(saved.row, base_url(request), access.actor.label)
    location = f"{base_url(request)}/QuestionnaireResponse/{resource['id']}"
    return patient_data_response(access, resource, 201, {"Location": location})


def read_response(request: Request, access: Access, response_id: str) -> Response:
    row_id = row_id_of(response_id)
    if row_id is None:
        raise FhirError(404, "not-found", f"QuestionnaireResponse/{response_id} is not known")
    row = get_response(access, row_id)
    author = access.db.scalar(select(User.display_name).where(User.id == row.recorded_by))
    return patient_data_response(
        access, scales_fhir.questionnaire_response(row, base_url(request), author)
    )


def scale_codes(codes: tuple[tuple[str, str | None], ...]) -> list[str]:
    """The self-report scales whose totals an Observation search's codes name (an item code
    matches nothing here: only the total is an Observation)."""
    return sorted({i for i, code in codes if is_scale(i) and code in (None, "total")})


def _find_totals(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    """Scale totals matching a combined Observation search (`tandem.fhir.observations`)."""
    r = QuestionnaireResponseRow
    stmt = select(r)
    if query.codes:
        parsed = withdrawal_fhir.parse_codes(list(query.codes), set(load_instruments()))
        wanted = scale_codes(tuple(parsed))
        if not wanted:
            return []
        stmt = stmt.where(r.instrument_id.in_(wanted))
    if query.patient_id is not None:
        stmt = stmt.where(r.patient_id == query.patient_id)
    if query.date_ge is not None:
        stmt = stmt.where(r.authored_at >= query.date_ge)
    if query.date_lt is not None:
        stmt = stmt.where(r.authored_at < query.date_lt)
    stmt = (
        stmt.where(visible(access, OBSERVATION, r.patient_id, r.program_id))
        .order_by(r.authored_at.desc(), r.id)
        .limit(limit)
    )
    return [
        Found(row.authored_at, row.id, row.patient_id, partial(scales_fhir.total_observation, row))
        for row in access.db.scalars(stmt)
    ]


def _read_total(access: Access, row_id: int) -> dict[str, Any]:
    row = read_row(access, OBSERVATION, QuestionnaireResponseRow, row_id)
    return scales_fhir.total_observation(row)


# /fhir/Observation shows a scale's total as `Observation/scale-<n>`.
OBSERVATION_SOURCE = ObservationSource(
    prefix=ID_PREFIX.rstrip("-"), find=_find_totals, read=_read_total
)


@router.get("/QuestionnaireResponse")
def search_questionnaire_responses(
    request: Request, access: Access = Depends(api_access)
) -> Response:
    """Self-report responses by patient, questionnaire (`Questionnaire/phq9`, a canonical URL,
    or `phq9`; comma = or) and authored date (prefixes eq, ge, gt, le, lt)."""
    count, offset = paging(request, {"patient", "subject", "questionnaire", "authored"})
    params = request.query_params
    wanted: list[str] = []
    for value in params.getlist("questionnaire"):
        for token in value.split(","):
            instrument_id = withdrawal_fhir.instrument_for_questionnaire(token.strip())
            # A questionnaire that is not a self-report scale matches nothing here.
            wanted.append(instrument_id if is_scale(instrument_id) else "none")
    try:
        dates = withdrawal_fhir.parse_dates(params.getlist("authored"))
    except withdrawal_fhir.SearchValueError as exc:
        raise FhirError(
            400, "invalid", str(exc).replace("date", "authored", 1), ["authored"]
        ) from None
    query = ResponseQuery(
        patient_id=patient_param(request),
        instrument_ids=wanted,
        authored_ge=dates.ge,
        authored_lt=dates.lt,
        count=count,
        offset=offset,
    )
    page = search_responses(access, query, query_text=str(request.url.query))
    base = base_url(request)
    authors = _authors(access, {r.recorded_by for r in page.rows if r.recorded_by is not None})
    resources = [
        scales_fhir.questionnaire_response(r, base, authors.get(r.recorded_by or 0))
        for r in page.rows
    ]
    return patient_data_response(
        access, searchset(request, QR, resources, count, offset, page.has_more)
    )


def _authors(access: Access, user_ids: set[int]) -> dict[int, str]:
    if not user_ids:
        return {}
    rows = access.db.execute(select(User.id, User.display_name).where(User.id.in_(user_ids)))
    return {int(uid): str(name) for uid, name in rows}
