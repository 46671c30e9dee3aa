"""The FHIR API of questions to a counselor: Communication (each message) and
CommunicationRequest (call backs), read and search by patient and status. Thin: parse, call the
service, answer."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import Response

from tandem.access.guard import Access
from tandem.counseling import fhir, records
from tandem.errors import InvalidInput
from tandem.fhir.capability import ResourceSupport, SearchParam
from tandem.fhir.http import (
    PAGING,
    PATIENT,
    fhir_router,
    int_id,
    paging,
    patient_data_response,
    patient_param,
    search_values,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.web.deps import api_access

router = fhir_router()

FHIR_RESOURCES = (
    ResourceSupport(
        type="Communication",
        interactions=("read", "search-type"),
        search_params=(
            PATIENT,
            SearchParam("subject", "reference", "Patient/<id> or <id>"),
            SearchParam("status", "token", "completed (every stored message is sent)"),
            *PAGING,
        ),
        documentation="Messages to and from a counselor: a question (from a patient or a "
        "visitor to the Ask a counselor page) and each reply. Newest first. A counselor's "
        "internal notes are not Communications.",
    ),
    ResourceSupport(
        type="CommunicationRequest",
        interactions=("read", "search-type"),
        search_params=(
            PATIENT,
            SearchParam("subject", "reference", "Patient/<id> or <id>"),
            SearchParam("status", "token", "active (waiting or scheduled) | completed (closed)"),
            *PAGING,
        ),
        documentation="Requests to be called back by a counselor: the window asked for "
        "(occurrencePeriod), or the time a counselor set (occurrenceDateTime). Newest first.",
    ),
)


def _statuses(request: Request, known: tuple[str, ...]) -> list[str]:
    values = [v for group in search_values(request.query_params, "status") for v in group]
    try:
        return records.check_statuses(values, known)
    except InvalidInput as exc:
        raise FhirError(400, "invalid", exc.message, ["status"]) from None


@router.get("/Communication")
def search_communications(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "status"})
    found = records.search_messages(
        access,
        patient_param(request, "patient", "subject"),
        _statuses(request, records.COMMUNICATION_CODES),
        count,
        offset,
        str(request.url.query),
    )
    resources = [fhir.communication(m, q, found.names) for m, q in found.page.rows]
    return patient_data_response(
        access,
        searchset(request, "Communication", resources, count, offset, found.page.has_more),
    )


@router.get("/Communication/{communication_id}")
def read_communication(communication_id: str, access: Access = Depends(api_access)) -> Response:
    message, question, names = records.read_message(
        access, int_id(communication_id, "Communication")
    )
    return patient_data_response(access, fhir.communication(message, question, names))


@router.get("/CommunicationRequest")
def search_communication_requests(
    request: Request, access: Access = Depends(api_access)
) -> Response:
    count, offset = paging(request, {"patient", "subject", "status"})
    found = records.search_callbacks(
        access,
        patient_param(request, "patient", "subject"),
        _statuses(request, records.REQUEST_CODES),
        count,
        offset,
        str(request.url.query),
    )
    resources = [
        fhir.communication_request(r[0], found.texts.get(r[0].id, ""), found.names)
        for r in found.page.rows
    ]
    return patient_data_response(
        access,
        searchset(request, "CommunicationRequest", resources, count, offset, found.page.has_more),
    )


@router.get("/CommunicationRequest/{communication_request_id}")
def read_communication_request(
    communication_request_id: str, access: Access = Depends(api_access)
) -> Response:
    question, text, names = records.read_callback(
        access, int_id(communication_request_id, "CommunicationRequest")
    )
    return patient_data_response(access, fhir.communication_request(question, text, names))
