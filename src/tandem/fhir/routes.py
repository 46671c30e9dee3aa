"""GET /fhir/metadata: the CapabilityStatement, built from what each domain lists."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from tandem.clock import utcnow
from tandem.fhir.capability import capability_statement
from tandem.fhir.http import base_url, fhir_response, fhir_router

router = fhir_router()


@router.get("/metadata")
def metadata(request: Request) -> Response:
    from tandem.domains import fhir_resources

    root = str(request.base_url).rstrip("/")
    oauth = {
        "authorize": f"{root}/oauth/authorize",
        "token": f"{root}/oauth/token",
        "revoke": f"{root}/oauth/revoke",
    }
    return fhir_response(
        capability_statement(base_url(request), utcnow().isoformat(), fhir_resources(), oauth)
    )
