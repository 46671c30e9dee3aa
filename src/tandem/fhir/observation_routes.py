"""GET /fhir/Observation (search) and /fhir/Observation/{id} (read), over every domain's
Observation source (`tandem.fhir.observations`). Creating an Observation is a domain's route."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.responses import Response

from tandem.access.guard import Access
from tandem.fhir import observations
from tandem.fhir.http import (
    INCLUDE,
    fhir_router,
    include_patients,
    includes_asked,
    paging,
    patient_data_response,
    patient_param,
    searchset,
)
from tandem.fhir.outcome import FhirError
from tandem.fhir.search_dates import SearchValueError, parse_dates
from tandem.web.deps import api_access

router = fhir_router()


def _sources() -> list[observations.ObservationSource]:
    from tandem.domains import observation_sources

    return observation_sources()


@router.get("/Observation")
def search_observations(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", "code", "date", INCLUDE})
    include = includes_asked(request, "Observation")
    params = request.query_params
    codes: list[str] = []
    for raw in params.getlist("code"):
        tokens = [t.strip() for t in raw.split(",")]
        if any(not t for t in tokens):
            raise FhirError(400, "invalid", "code: empty code", ["code"])
        codes += tokens
    try:
        dates = parse_dates(params.getlist("date"))
    except SearchValueError as exc:
        raise FhirError(400, "invalid", str(exc), [exc.param]) from None
    query = observations.ObservationSearch(
        patient_id=patient_param(request),
        codes=tuple(codes),
        date_ge=dates.ge,
        date_lt=dates.lt,
    )
    try:
        resources, has_more = observations.search(
            access, _sources(), query, count, offset, str(request.url.query)
        )
    except SearchValueError as exc:
        raise FhirError(400, "invalid", str(exc), [exc.param]) from None
    bundle = searchset(request, "Observation", resources, count, offset, has_more)
    if include:
        bundle = include_patients(request, access, bundle)
    return patient_data_response(access, bundle)


@router.get("/Observation/{observation_id}")
def read_observation(observation_id: str, access: Access = Depends(api_access)) -> Response:
    return patient_data_response(access, observations.read(access, _sources(), observation_id))
