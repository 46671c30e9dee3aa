"""Consents as FHIR R4B Consent resources (category: information disclosure under 42 CFR Part 2),
and a release of records as a FHIR document Bundle carrying the §2.32 notice."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.consent import Consent

from tandem.choice import consent as core
from tandem.choice.consent_storage import ConsentRow, DisclosureRow
from tandem.errors import InvalidInput
from tandem.fhir.output import checked

EXT = "https://tandem.example/fhir/StructureDefinition/"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PROGRAM_SYSTEM = "urn:tandem:program"
CATEGORY = [
    {"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]},
    {"coding": [{"system": ACT_CODE, "code": "IDSCL", "display": "information disclosure"}]},
]
SCOPE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy",
            "display": "Privacy Consent",
        }
    ]
}
POLICY_RULE = {"coding": [{"system": ACT_CODE, "code": "42CFRPart2", "display": "42 CFR Part2"}]}
RECIPIENT_ROLE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP",
            "display": "information recipient",
        }
    ]
}
# A label on every released Bundle: do not redisclose without the patient's consent.
NO_REDISCLOSURE = {
    "system": ACT_CODE,
    "code": "NORDSCLCD",
    "display": "no redisclosure without consent directive",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


def to_consent(
    row: ConsentRow,
    program_name: str,
    recorded_by: str | None,
    revoked_by: str | None,
) -> dict[str, Any]:
    rules = core.rules()
    purpose = rules.purpose(row.purpose)
    provision: dict[str, Any] = {
        "type": "permit",
        "period": {"start": row.signed_on.isoformat()},
        "actor": [
            {
                "role": RECIPIENT_ROLE,
                "reference": (
                    {
                        "identifier": {
                            "system": PROGRAM_SYSTEM,
                            "value": str(row.recipient_program_id),
                        },
                        "display": row.recipient_name,
                    }
                    if row.recipient_program_id is not None
                    else {"display": row.recipient_name}
                ),
            }
        ],
        "purpose": [
            {
                "system": core.PURPOSE_SYSTEM,
                "code": row.purpose,
                "display": purpose.label if purpose else row.purpose,
            }
        ],
    }
    if row.expires_on is not None:
        provision["period"]["end"] = row.expires_on.isoformat()
    types = core.covered_types(row.information)
    if types is not None:
        provision["class"] = [
            {"system": "http://hl7.org/fhir/resource-types", "code": t} for t in sorted(types)
        ]
    extensions: list[dict[str, Any]] = [
        {"url": f"{EXT}consent-information", "valueCode": i} for i in row.information.split(",")
    ]
    if row.purpose_text:
        extensions.append({"url": f"{EXT}consent-purpose-text", "valueString": row.purpose_text})
    if row.expiry_event:
        extensions.append({"url": f"{EXT}consent-expiry-event", "valueString": row.expiry_event})
    if row.ended_at is not None:
        extensions.append({"url": f"{EXT}consent-ended", "valueDateTime": _iso(row.ended_at)})
    extensions.append({"url": f"{EXT}consent-signer-role", "valueCode": row.signer_role})
    if recorded_by:
        extensions.append({"url": f"{EXT}consent-recorded-by", "valueString": recorded_by})
    if row.revoked_at is not None:
        extensions.append({"url": f"{EXT}consent-revoked", "valueDateTime": _iso(row.revoked_at)})
        if revoked_by:
            extensions.append({"url": f"{EXT}consent-revoked-by", "valueString": revoked_by})
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.revoked_at or row.ended_at or row.recorded_at)},
        "extension": extensions,
        "status": "inactive" if row.revoked_at is not None else "active",
        "scope": SCOPE,
        "category": CATEGORY,
        "patient": {"reference": f"Patient/{row.patient_id}"},
        "dateTime": row.signed_on.isoformat(),
        "performer": [
            {"reference": f"Patient/{row.patient_id}", "display": row.signed_by}
            if row.signer_role == "patient"
            else {"display": row.signed_by}
        ],
        "organization": [
            {
                "identifier": {"system": PROGRAM_SYSTEM, "value": str(row.program_id)},
                "display": program_name,
            }
        ],
        "policyRule": POLICY_RULE,
        "provision": provision,
    }
    return checked(Consent, resource)


def _ext(body: dict[str, Any], name: str) -> list[Any]:
    found: list[Any] = []
    for item in body.get("extension") or []:
        if isinstance(item, dict) and item.get("url") == f"{EXT}{name}":
            found.extend(v for k, v in item.items() if k.startswith("value"))
    return found


def _day(value: Any, path: str) -> date | None:
    if value in (None, ""):
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise InvalidInput(path, "give a date as YYYY-MM-DD") from None


_FIELD_PATHS = {
    "patient": "Consent.patient",
    "program": "Consent.organization",
    "recipient": "Consent.provision.actor",
    "purpose": "Consent.provision.purpose",
    "information": "Consent.extension(consent-information)",
    "expiry": "Consent.provision.period.end",
    "signed_by": "Consent.performer",
    "signed_on": "Consent.dateTime",
}


def fhir_path(field: str) -> str:
    return _FIELD_PATHS.get(field, f"Consent.{field}")


def from_consent(body: dict[str, Any]) -> tuple[str, core.ConsentInput]:
    """The patient's id and the consent a posted Consent describes (not yet checked: the
    core names a missing element)."""
    try:
        Consent.model_validate(body)
    except ValueError as exc:
        raise InvalidInput("Consent", f"not a valid FHIR Consent: {str(exc)[:300]}") from None
    reference = str((body.get("patient") or {}).get("reference") or "")
    if not reference.startswith("Patient/") or len(reference) <= len("Patient/"):
        raise InvalidInput(
            "patient", "name the patient: Patient/<id> (required by 42 CFR 2.31(a)(1))"
        )
    provision = body.get("provision") or {}
    actors = [a for a in provision.get("actor") or [] if isinstance(a, dict)]
    recipient_program_id: int | None = None
    recipient_name = ""
    if actors:
        ref = actors[0].get("reference") or {}
        identifier = ref.get("identifier") or {}
        if identifier.get("system") == PROGRAM_SYSTEM:
            raw = str(identifier.get("value", ""))
            if not raw.isdigit() or len(raw) > 9:
                raise InvalidInput("recipient", "a program identifier is its number")
            recipient_program_id = int(raw)
        recipient_name = str(ref.get("display") or "")
    purposes = [p for p in provision.get("purpose") or [] if isinstance(p, dict)]
    purpose = ""
    for coding in purposes:
        if coding.get("system") == core.PURPOSE_SYSTEM:
            purpose = str(coding.get("code") or "")
            break
    performer = (body.get("performer") or [{}])[0] or {}
    signer_role = next(iter(_ext(body, "consent-signer-role")), None) or (
        "patient"
        if str(performer.get("reference", "")).startswith("Patient/")
        else "representative"
    )
    period = provision.get("period") or {}
    values = core.ConsentInput(
        recipient_program_id=recipient_program_id,
        recipient_name=recipient_name,
        purpose=purpose,
        purpose_text=str(next(iter(_ext(body, "consent-purpose-text")), "")),
        information=tuple(str(v) for v in _ext(body, "consent-information")),
        expires_on=_day(period.get("end"), "expiry"),
        expiry_event=str(next(iter(_ext(body, "consent-expiry-event")), "")),
        signed_on=_day(body.get("dateTime"), "signed_on"),
        signed_by=str(performer.get("display") or ""),
        signer_role=str(signer_role),
    )
    return reference.removeprefix("Patient/"), values


# --- a release of records ----------------------------------------------------------------------


def notice_html() -> str:
    from html import escape

    notice = core.rules().notice
    items = "".join(f"<li>{escape(i)}</li>" for i in notice.items)
    return (
        f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{escape(notice.text)}</p>'
        f"<ul>{items}</ul><p>{escape(notice.closing)}</p></div>"
    )


def release_bundle(
    disclosure: DisclosureRow,
    consent: dict[str, Any],
    resources: list[dict[str, Any]],
    program_name: str,
    discloser: str,
    base_url: str,
) -> dict[str, Any]:
    """A FHIR document: a Composition holding the notice prohibiting redisclosure (§2.32(a)),
    the consent it was released under (§2.32(b)) and the records."""
    from html import escape

    purpose = core.rules().purpose(disclosure.purpose)
    urls = {id(r): f"{base_url}/{r['resourceType']}/{r['id']}" for r in [consent, *resources]}
    patient_ref = {"reference": f"Patient/{disclosure.patient_id}"}
    composition = {
        "resourceType": "Composition",
        "id": f"disclosure-{disclosure.id}",
        "meta": {"security": [NO_REDISCLOSURE]},
        "status": "final",
        "type": {
            "coding": [
                {
                    "system": "http://loinc.org",
                    "code": "34133-9",
                    "display": "Summary of episode note",
                }
            ],
            "text": "Release of substance-use records",
        },
        "subject": patient_ref,
        "date": _iso(disclosure.disclosed_at),
        "author": [{"display": f"{discloser}, {program_name}"}],
        "title": f"Release of records to {disclosure.recipient_name}",
        "confidentiality": "R",
        "section": [
            {
                "title": "Notice prohibiting redisclosure (42 CFR 2.32)",
                "text": {"status": "generated", "div": notice_html()},
            },
            {
                "title": "Consent this release was made under",
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
                    + escape(
                        f"To {disclosure.recipient_name}, for "
                        f"{purpose.label if purpose else disclosure.purpose}: "
                        f"{core.information_label(disclosure.information)}."
                    )
                    + "</p></div>",
                },
                "entry": [{"reference": f"Consent/{consent['id']}"}],
            },
            {
                "title": "Records released",
                "text": {
                    "status": "generated",
                    "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>'
                    + escape(disclosure.contents or "none")
                    + "</p></div>",
                },
                "entry": [{"reference": f"{r['resourceType']}/{r['id']}"} for r in resources],
            },
        ],
    }
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": f"disclosure-{disclosure.id}",
        "meta": {"security": [NO_REDISCLOSURE]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document",
        "timestamp": _iso(disclosure.disclosed_at),
        "entry": [
            {"fullUrl": f"{base_url}/Composition/{composition['id']}", "resource": composition},
            {"fullUrl": urls[id(consent)], "resource": consent},
            *({"fullUrl": urls[id(r)], "resource": r} for r in resources),
        ],
    }
    return checked(Bundle, bundle)
