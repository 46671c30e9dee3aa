"""FHIR MedicationAdministration: every dose a nurse gave, detox as-needed doses and dose-plan
doses alike (one table, `medications.administrations`). Read and search with paging; the
resource is validated with `fhir.resources` before it leaves."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fhir.resources.R4B.medicationadministration import MedicationAdministration

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.fhir.capability import ResourceSupport
from tandem.fhir.http import (
    INCLUDE,
    PAGING,
    PATIENT,
    fhir_router,
    include_patients,
    includes_asked,
    int_id,
    paging,
    patient_data_response,
    patient_param,
    searchset,
)
from tandem.fhir.output import checked
from tandem.medications import administrations
from tandem.medications.administrations import ADMINISTRATION
from tandem.medications.storage import MedicationAdministrationRow
from tandem.web.deps import api_access

router = fhir_router()

UCUM = "http://unitsofmeasure.org"

FHIR_RESOURCES = (
    ResourceSupport(
        type=ADMINISTRATION,
        interactions=("read", "search-type"),
        search_params=(PATIENT, *PAGING),
        extras={"searchInclude": [f"{ADMINISTRATION}:patient", f"{ADMINISTRATION}:subject"]},
        documentation="Doses given by a nurse: detox as-needed doses (supportingInformation: the "
        "assessment that prompted them) and dose-plan doses.",
    ),
)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def medication_administration(
    row: MedicationAdministrationRow, performer: str | None
) -> dict[str, Any]:
    dose = float(row.dose_value)
    resource: dict[str, Any] = {
        "resourceType": ADMINISTRATION,
        "id": str(row.id),
        "status": row.status,
        "medicationCodeableConcept": {"text": row.medication_id},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": _iso(row.administered_at),
        "performer": [
            {
                "actor": {
                    "identifier": {"system": "urn:tandem:user", "value": str(row.performer_id)},
                    **({"display": performer} if performer else {}),
                }
            }
        ],
        "dosage": {
            "text": row.medication_text,
            "route": {"text": row.route},
            "dose": {
                "value": int(dose) if dose.is_integer() else dose,
                "unit": row.dose_unit,
                "system": UCUM,
                "code": row.dose_unit,
            },
        },
    }
    if row.indication:
        resource["reasonCode"] = [{"text": row.indication}]
    if row.assessment_id is not None:
        resource["supportingInformation"] = [
            {"reference": f"QuestionnaireResponse/{row.assessment_id}"}
        ]
    if row.note:
        resource["note"] = [{"text": row.note}]
    checked(MedicationAdministration, resource)
    return resource


@router.get("/MedicationAdministration")
def search_administrations(request: Request, access: Access = Depends(api_access)) -> Response:
    count, offset = paging(request, {"patient", "subject", INCLUDE})
    include = includes_asked(request, ADMINISTRATION)
    page = administrations.search_administrations(
        access, patient_param(request), count, offset, query_text=str(request.url.query)
    )
    names = display_names(access.db, (r.performer_id for r in page.rows))
    resources = [medication_administration(r, names.get(r.performer_id)) for r in page.rows]
    bundle = searchset(request, ADMINISTRATION, resources, count, offset, page.has_more)
    if include:
        bundle = include_patients(request, access, bundle)
    return patient_data_response(access, bundle)


@router.get("/MedicationAdministration/{administration_id}")
def read_administration(administration_id: str, access: Access = Depends(api_access)) -> Response:
    row = administrations.get_administration(access, int_id(administration_id, ADMINISTRATION))
    names = display_names(access.db, (row.performer_id,))
    return patient_data_response(
        access, medication_administration(row, names.get(row.performer_id))
    )
