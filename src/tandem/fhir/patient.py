"""Patient: our table <-> FHIR R4 Patient (validated with fhir.resources R4B)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import ValidationError

from tandem.fhir.outcome import FhirError
from tandem.fhir.output import checked
from tandem.patients.records import Identifier, PatientRecord
from tandem.storage.models import Patient

# Elements we store. Anything else in a body is refused by name, so nothing sent is silently lost.
SUPPORTED = {
    "resourceType",
    "id",
    "meta",
    "text",
    "identifier",
    "active",
    "name",
    "telecom",
    "gender",
    "birthDate",
    "managingOrganization",
}
MR_TYPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
            "code": "MR",
            "display": "Medical record number",
        }
    ],
    "text": "MRN",
}
SYNTHETIC_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}


def to_fhir(patient: Patient) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient.id,
        "meta": {
            "versionId": str(patient.version_id),
            "lastUpdated": patient.last_updated.isoformat(),
        },
        "identifier": [
            {"use": "usual", "type": MR_TYPE, "system": i.system, "value": i.value}
            for i in patient.identifiers
        ],
        "active": patient.active,
        "name": [
            {
                "use": "official",
                **({"family": patient.family} if patient.family else {}),
                **({"given": patient.given.split(" ")} if patient.given else {}),
            }
        ],
        "managingOrganization": {
            "reference": f"Organization/{patient.program_id}",
            "display": patient.program.name,
        },
    }
    if patient.synthetic:
        resource["meta"]["tag"] = [SYNTHETIC_TAG]
    telecom = []
    if patient.phone:
        telecom.append({"system": "phone", "value": patient.phone})
    if patient.email:
        telecom.append({"system": "email", "value": patient.email})
    if telecom:
        resource["telecom"] = telecom
    if patient.gender:
        resource["gender"] = patient.gender
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return checked(FhirPatient, resource)


def from_fhir(body: Any) -> tuple[PatientRecord, int | None]:
    """A validated PatientRecord and the program named by managingOrganization (if any)."""
    if not isinstance(body, dict) or body.get("resourceType") != "Patient":
        raise FhirError(400, "invalid", "the body must be a FHIR Patient resource", ["Patient"])
    unsupported = sorted(set(body) - SUPPORTED)
    if unsupported:
        raise FhirError(
            422,
            "not-supported",
            f"Tandem does not store Patient.{', Patient.'.join(unsupported)}; remove "
            f"{'them' if len(unsupported) > 1 else 'it'} and send again",
            [f"Patient.{u}" for u in unsupported],
        )
    try:
        resource = FhirPatient.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise FhirError(
            422, "invalid", f"Patient.{path}: {err['msg']}", [f"Patient.{path}"]
        ) from None
    names = resource.name or []
    name = next((n for n in names if n.use == "official"), names[0] if names else None)
    if len(names) > 1:
        raise FhirError(
            422, "not-supported", "Tandem keeps one name per patient; send one", ["Patient.name"]
        )
    phone = email = None
    for point in resource.telecom or []:
        if point.system == "phone" and phone is None:
            phone = point.value
        elif point.system == "email" and email is None:
            email = point.value
        else:
            raise FhirError(
                422,
                "not-supported",
                "Tandem keeps one phone and one e-mail per patient",
                ["Patient.telecom"],
            )
    identifiers = []
    for ident in resource.identifier or []:
        if not ident.value:
            raise FhirError(
                422, "required", "Patient.identifier.value is required", ["Patient.identifier"]
            )
        identifiers.append(Identifier(ident.system or "", ident.value))
    birth_date = resource.birthDate
    if birth_date is not None and not isinstance(birth_date, date):
        raise FhirError(
            422,
            "invalid",
            "Patient.birthDate must be a full date (YYYY-MM-DD)",
            ["Patient.birthDate"],
        )
    program_id = None
    if resource.managingOrganization is not None:
        ref = str(resource.managingOrganization.reference or "")
        kind, _, organization = ref.partition("/")
        if (
            kind != "Organization"
            or not organization.isdigit()
            or not organization.isascii()
            or len(organization) > 10
            or int(organization) > 2**31 - 1
        ):
            raise FhirError(
                422,
                "invalid",
                "managingOrganization must reference Organization/<program id>",
                ["Patient.managingOrganization"],
            )
        program_id = int(organization)
    record = PatientRecord(
        family=(name.family or "") if name else "",
        given=tuple(str(g) for g in name.given or () if g) if name else (),
        gender=resource.gender,
        birth_date=birth_date,
        identifiers=tuple(identifiers),
        phone=phone,
        email=email,
        active=True if resource.active is None else bool(resource.active),
    )
    return record, program_id
