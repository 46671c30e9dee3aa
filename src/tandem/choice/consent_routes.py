"""The consent FHIR API: Consent (create, read, search by patient and status; revoke by an
update of its status to inactive) and a release of records (`Patient/{id}/$disclose`, a FHIR
document Bundle carrying the notice prohibiting redisclosure). Thin: parse, call the service,
answer."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.choice import consent_fhir, consent_service
from tandem.choice.consent_storage import ConsentRow
from tandem.clock import utcnow
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
from tandem.storage.models import Program
from tandem.web.deps import api_access

router = fhir_router()

FHIR_RESOURCES = (
    ResourceSupport(
        type="Consent",
        interactions=("read", "create", "update", "search-type"),
        search_params=(
            PATIENT,
            SearchParam("status", "token", "active | inactive (revoked)"),
            *PAGING,
        ),
        documentation="Consents to disclose substance-use records (42 CFR Part 2, category IDSCL): "
        "recipient (provision.actor, a Tandem program by identifier urn:tandem:program or a name), "
        "purpose (HL7 v3 PurposeOfUse), information (extension consent-information), expiry "
        "(provision.period.end or extension consent-expiry-event), signature date (dateTime) and "
        "signer (performer). A consent missing an element 42 CFR 2.31 requires answers 422 naming "
        "it. update revokes (status inactive) and changes nothing else. A valid consent for "
        "treatment naming a program lets its staff read and search the records it covers. "
        "POST Patient/{id}/$disclose releases records as a document Bundle, only under a valid "
        "consent for that recipient, purpose and information.",
    ),
)


def _resources(access: Access, rows: list[ConsentRow]) -> list[dict[str, Any]]:
    names = display_names(access.db, {r.recorded_by for r in rows} | {r.revoked_by for r in rows})
    programs = (
        dict(
            access.db.query(Program.id, Program.name)
            .filter(Program.id.in_({r.program_id for r in rows}))
            .all()
        )
        if rows
        else {}
    )
    return [
        consent_fhir.to_consent(
            r,
            programs.get(r.program_id, ""),
            names.get(r.recorded_by),
            names.get(r.revoked_by or 0),
        )
        for r in rows
    ]


@router.post("/Consent")
def create_consent(
    request: Request,
    body: dict[str, Any] = Depends(fhir_body("Consent")),
    access: Access = Depends(api_access),
) -> Response:
    patient_id, values = consent_fhir.from_consent(body)
    try:
        row = consent_service.record_consent(access, patient_id, values, utcnow())
    except NotFound:
        raise FhirError(
            422,
            "invalid",
            f"Consent.patient: Patient/{patient_id} is not known",
            ["Consent.patient"],
        ) from None
    (resource,) = _resources(access, [row])
    location = f"{base_url(request)}/Consent/{row.id}"
    return patient_data_response(access, resource, 201, {"Location": location})


@router.get("/Consent")
def search_consents(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "status"})
    statuses = [s for v in request.query_params.getlist("status") for s in v.split(",") if s]
    bad = [s for s in statuses if s not in ("active", "inactive")]
    if bad:
        raise FhirError(
            400, "invalid", f"status must be active or inactive, got {bad[0]!r}", ["status"]
        )
    page = consent_service.search_consents(
        access,
        patient_param(request, "patient"),
        statuses,
        count,
        offset,
        query_text=str(request.url.query),
    )
    return patient_data_response(
        access,
        searchset(request, "Consent", _resources(access, page.rows), count, offset, page.has_more),
    )


@router.get("/Consent/{consent_id}")
def read_consent(consent_id: str, access: Access = Depends(api_access)) -> Response:
    row = consent_service.get_consent(access, int_id(consent_id, "Consent"))
    (resource,) = _resources(access, [row])
    return patient_data_response(access, resource)


@router.put("/Consent/{consent_id}")
def update_consent(
    consent_id: str,
    body: dict[str, Any] = Depends(fhir_body("Consent")),
    access: Access = Depends(api_access),
) -> Response:
    """Revocation: the same consent with status inactive. A consent is never changed otherwise
    (a new one is signed instead)."""
    row_id = int_id(consent_id, "Consent")
    if str(body.get("id", "")) != str(row_id):
        raise FhirError(
            400, "invalid", "Consent.id must match the id in the address", ["Consent.id"]
        )
    if body.get("status") != "inactive":
        raise InvalidInput(
            "status",
            "only a revocation (status inactive) changes a consent; sign a new one instead",
        )
    row = consent_service.revoke_consent(access, row_id, utcnow())
    (resource,) = _resources(access, [row])
    return patient_data_response(access, resource)


def _parameters(body: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    items = body.get("parameter")
    if not isinstance(items, list):
        raise FhirError(
            400, "invalid", "Parameters.parameter must be a list", ["Parameters.parameter"]
        )
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            values = [v for k, v in item.items() if k.startswith("value")]
            found.setdefault(item["name"], []).extend(values)
    return found


@router.post("/Patient/{patient_id}/$disclose")
def disclose(
    request: Request,
    patient_id: str,
    body: dict[str, Any] = Depends(fhir_body("Parameters")),
    access: Access = Depends(api_access),
) -> Response:
    """Release records: Parameters recipient (valueString: a name; or valueIdentifier
    urn:tandem:program|<id>), purpose (valueCode, PurposeOfUse), information (valueCode, repeat:
    all | medications | assessments | ...)."""
    params = _parameters(body)
    recipient = (params.get("recipient") or [""])[0]
    program_id: int | None = None
    name = ""
    if isinstance(recipient, dict):
        if (
            recipient.get("system") != consent_fhir.PROGRAM_SYSTEM
            or not str(recipient.get("value", "")).isdigit()
        ):
            raise FhirError(
                422,
                "invalid",
                "recipient: an identifier must be urn:tandem:program|<id>",
                ["recipient"],
            )
        program_id = int(str(recipient["value"])[:9])
    else:
        name = str(recipient)
    release = consent_service.disclose(
        access,
        patient_id,
        recipient_program_id=program_id,
        recipient_name=name,
        purpose=str((params.get("purpose") or [""])[0]),
        information=[str(v) for v in params.get("information") or []],
        form="bundle",
        now=utcnow(),
        base_url=base_url(request),
    )
    (consent,) = _resources(access, [release.consent])
    program = release.patient.program.name
    bundle = consent_fhir.release_bundle(
        release.disclosure,
        consent,
        release.resources,
        program,
        access.actor.label,
        base_url(request),
    )
    return patient_data_response(access, bundle)
