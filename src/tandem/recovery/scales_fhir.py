"""Self-report responses as FHIR R4B: the QuestionnaireResponse as answered, and its scored
total as an Observation. Validated with `fhir.resources` before it leaves.

The Observation carries Tandem's code `urn:tandem:instrument:<id>|total` and, only where the
instrument data holds a confirmed one, the LOINC total code (PHQ-9 44261-6, GAD-7 70274-6,
AUDIT-C 75626-2: clinical_facts.md sections B4, B5, B6); no code is made up here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tandem.fhir.output import checked
from tandem.instruments.engine import get_instrument
from tandem.recovery.scales_responses import public_id
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.withdrawal.fhir import SURVEY, code_system, questionnaire_id

URGENT_TAG = {
    "system": "urn:tandem:flag",
    "code": "urgent",
    "display": "Urgent: the care team was alerted",
}


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def questionnaire_response(
    row: QuestionnaireResponseRow, base_url: str, author: str | None = None
) -> dict[str, Any]:
    instrument = get_instrument(row.instrument_id)
    anchors = {i.id: i.anchors for i in instrument.items}
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": public_id(row.id),
        "meta": {"lastUpdated": _iso(row.recorded_at)},  # never changed once stored
        "questionnaire": f"{base_url}/Questionnaire/{questionnaire_id(row.instrument_id)}"
        f"|{row.instrument_version}",
        "status": "completed",
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "authored": _iso(row.authored_at),
        "item": [
            {
                "linkId": item_id,
                "answer": [
                    {
                        "valueCoding": {
                            "code": str(value),
                            "display": anchors[item_id][value].label(value),
                        }
                    }
                ],
            }
            for item_id, value in row.answers.items()
        ],
    }
    if row.urgent:
        resource["meta"]["tag"] = [URGENT_TAG]
    if author:
        resource["author"] = {"display": author}
    checked(QuestionnaireResponse, resource)
    return resource


def total_observation(row: QuestionnaireResponseRow) -> dict[str, Any]:
    """The scored total: id `scale-<n>` like its response, derived from it."""
    instrument = get_instrument(row.instrument_id)
    codings = [
        {
            "system": code_system(instrument.id),
            "code": "total",
            "display": f"{instrument.name} total score"[:200],
        }
    ]
    if instrument.total.code is not None:
        codings.append(instrument.total.code.model_dump(exclude_none=True))
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": public_id(row.id),
        "meta": {"lastUpdated": _iso(row.recorded_at)},
        "status": "final",
        "category": [{"coding": [SURVEY]}],
        "code": {"coding": codings, "text": f"{instrument.name}: total"},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": _iso(row.authored_at),
        "valueInteger": row.total,
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{public_id(row.id)}"}],
    }
    scheme = instrument.scheme(row.scheme_id)
    band = next((b for b in scheme.bands if b.id == row.band_id), None) if scheme else None
    if scheme is not None and band is not None:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": f"{code_system(instrument.id)}:band-scheme:{scheme.id}",
                        "code": band.id,
                        "display": band.label,
                    }
                ],
                "text": band.label,
            }
        ]
        resource["note"] = [{"text": f"Band: {scheme.label}. Source: {scheme.source}"}]
    elif instrument.band_note:
        resource["note"] = [{"text": instrument.band_note}]
    if row.urgent:
        resource["meta"]["tag"] = [URGENT_TAG]
    checked(Observation, resource)
    return resource
