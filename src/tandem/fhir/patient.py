"""Patient: our table <-> FHIR R4 Patient (validated with fhir.resources R4B)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fhir.resources.R4B.patient import Patient as FhirPatient
from pydantic import ValidationError

from tandem.access.queries import PatientView
from tandem.fhir.outcome import FhirError
from tandem.fhir.output import checked
from tandem.patients.records import Identifier, PatientRecord
from tandem.storage.models import Patient

# A stored patient, or one read for showing only (plain values): the same attributes.
Shown = Patient | PatientView

# The elements Tandem stores, by path. Anything else in a body, at any depth, is refused by its
# path, so nothing sent is silently lost. `meta.versionId` and `meta.lastUpdated` are the
# server's to set (FHIR ignores them on create and update); `meta.security` holds only HTEST.
STORED: dict[str, frozenset[str]] = {
    "": frozenset(
        {
            "resourceType",
            "id",
            "meta",
            "identifier",
            "active",
            "name",
            "telecom",
            "gender",
            "birthDate",
            "managingOrganization",
        }
    ),
    "meta": frozenset({"versionId", "lastUpdated", "security"}),
    "identifier": frozenset({"use", "type", "system", "value"}),
    "name": frozenset({"use", "family", "given"}),
    "telecom": frozenset({"system", "value"}),
    "managingOrganization": frozenset({"reference", "display"}),
}
MR = ("http://terminology.hl7.org/CodeSystem/v2-0203", "MR")


def unstored_paths(body: dict[str, Any]) -> list[str]:
    """Every element of `body` Tandem would not store, as `Patient.<path>`."""
    found: set[str] = set()

    def walk(value: Any, path: str) -> None:
        allowed = STORED.get(path)
        if allowed is None:
            return
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, dict):
                continue
            for key in item:
                child = f"{path}.{key}" if path else key
                if key in allowed:
                    walk(item[key], child)
                else:
                    # Named as sent, but printable and short: it goes into the audit trail too.
                    shown = key if key.isprintable() and len(key) <= 64 else repr(key[:64])
                    found.add(f"Patient.{path + '.' if path else ''}{shown}")

    walk(body, "")
    return sorted(found)


def _refuse(path: str, message: str) -> FhirError:
    return FhirError(422, "not-supported", f"{path}: {message}", [path])


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
SYNTHETIC_LABEL = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}


def given_names(patient: Shown) -> list[str]:
    if patient.given_names is not None:
        return list(patient.given_names)
    return patient.given.split()


def to_fhir(patient: Shown) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "id": patient.id,
        "meta": {
            "versionId": str(patient.version_id),
            "lastUpdated": patient.last_updated.isoformat(),
        },
        "identifier": [
            {"use": "usual", "type": MR_TYPE, "system": i.system, "value": i.value}
            if i.system == patient.program.mrn_system
            else {"system": i.system, "value": i.value}
            for i in patient.identifiers
        ],
        "active": patient.active,
        "name": [
            {
                "use": "official",
                **({"family": patient.family} if patient.family else {}),
                **({"given": given} if (given := given_names(patient)) else {}),
            }
        ],
        "managingOrganization": {
            "reference": f"Organization/{patient.program_id}",
            "display": patient.program.name,
        },
    }
    if patient.synthetic:
        resource["meta"]["security"] = [SYNTHETIC_LABEL]
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
    unstored = unstored_paths(body)
    if unstored:
        raise FhirError(
            422,
            "not-supported",
            f"Tandem does not store {', '.join(unstored)}; remove "
            f"{'them' if len(unstored) > 1 else 'it'} and send again",
            unstored,
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
    if name is not None and name.use not in (None, "official"):
        raise _refuse("Patient.name.use", "Tandem keeps the official name only")
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
    identifiers: list[Identifier] = []
    for ident in resource.identifier or []:
        if not ident.value:
            raise FhirError(
                422, "required", "Patient.identifier.value is required", ["Patient.identifier"]
            )
        system = str(ident.system or "")
        issued = not system or system.startswith("urn:tandem:program:")
        if ident.use is not None and not (issued and ident.use == "usual"):
            raise _refuse(
                "Patient.identifier.use", "Tandem keeps only the system and value of an identifier"
            )
        if ident.type is not None and not (
            issued and all((str(c.system), c.code) == MR for c in ident.type.coding or ())
        ):
            raise _refuse(
                "Patient.identifier.type", "Tandem keeps only the system and value of an identifier"
            )
        identifiers.append(Identifier(system, ident.value))
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
    synthetic = None
    if resource.meta is not None and resource.meta.security is not None:
        labels = {(str(c.system), c.code) for c in resource.meta.security}
        if labels != {(SYNTHETIC_LABEL["system"], SYNTHETIC_LABEL["code"])}:
            raise _refuse(
                "Patient.meta.security",
                "the only security label Tandem keeps is HTEST (synthetic test data)",
            )
        synthetic = True
    record = PatientRecord(
        family=(name.family or "") if name else "",
        given=tuple(str(g) for g in name.given or () if g) if name else (),
        synthetic=synthetic,
        gender=resource.gender,
        birth_date=birth_date,
        # No identifier element at all: an update keeps the stored ones.
        identifiers=tuple(identifiers) if "identifier" in body else None,
        phone=phone,
        email=email,
        active=True if resource.active is None else bool(resource.active),
    )
    return record, program_id
