"""Withdrawal assessments as FHIR R4B, and search values back from FHIR. Every resource
built here is validated with `fhir.resources` before it leaves.

Codes: an Observation carries Tandem's own code system `urn:tandem:instrument:<id>` (code
`total` or the item id) and, only where the instrument data holds a confirmed one, its LOINC
code. No LOINC code is made up here: CIWA-Ar, COWS and SOWS-Gossop have none confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tandem.fhir.output import checked
from tandem.fhir.search_dates import DateBounds, SearchValueError, parse_dates
from tandem.instruments.engine import get_instrument, load_instruments
from tandem.instruments.models import Coding, Instrument
from tandem.instruments.questionnaire import to_questionnaire
from tandem.withdrawal.storage import AssessmentRow, ObservationRow

__all__ = ["DateBounds", "SearchValueError", "parse_dates"]

SURVEY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "survey",
    "display": "Survey",
}


def code_system(instrument_id: str) -> str:
    return f"urn:tandem:instrument:{instrument_id}"


def questionnaire_id(instrument_id: str) -> str:
    return instrument_id.replace("_", "-")


def instrument_for_questionnaire(reference: str) -> str:
    """`Questionnaire/ciwa-ar`, a canonical URL ending so, `ciwa-ar` (optionally `|version`)."""
    ref = reference.split("|")[0].rstrip("/")
    tail = ref.rsplit("/", 1)[-1]
    return tail.replace("-", "_")


def questionnaire(instrument: Instrument, base_url: str) -> dict[str, Any]:
    resource = to_questionnaire(instrument)
    resource["url"] = f"{base_url}/Questionnaire/{resource['id']}"
    from fhir.resources.R4B.questionnaire import Questionnaire

    checked(Questionnaire, resource)
    return resource


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _codings(instrument: Instrument, code: str) -> list[dict[str, str]]:
    if code == "total":
        display = f"{instrument.name} total score"
        loinc: Coding | None = instrument.total.code
    else:
        item = next(i for i in instrument.items if i.id == code)
        display = item.text
        loinc = item.code
    codings = [{"system": code_system(instrument.id), "code": code, "display": display[:200]}]
    if loinc is not None:
        codings.append(loinc.model_dump(exclude_none=True))
    return codings


def questionnaire_response(
    row: AssessmentRow, base_url: str, author: str | None = None
) -> dict[str, Any]:
    instrument = get_instrument(row.instrument_id)
    anchors = {i.id: i.anchors for i in instrument.items}
    resource: dict[str, Any] = {
        "resourceType": "QuestionnaireResponse",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.recorded_at)},  # never changed once stored
        "questionnaire": f"{base_url}/Questionnaire/{questionnaire_id(row.instrument_id)}|{row.instrument_version}",
        "status": "completed",
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "authored": _iso(row.assessed_at),
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
            for item_id, value in row.item_values.items()
        ],
    }
    if author:
        resource["author"] = {"display": author}
    checked(QuestionnaireResponse, resource)
    return resource


def observation(obs: ObservationRow, assessment: AssessmentRow) -> dict[str, Any]:
    instrument = get_instrument(obs.instrument_id)
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": str(obs.id),
        "meta": {"lastUpdated": _iso(assessment.recorded_at)},  # stored with its assessment
        "status": "final",
        "category": [{"coding": [SURVEY]}],
        "code": {
            "coding": _codings(instrument, obs.code),
            "text": f"{instrument.name}: {'total' if obs.code == 'total' else obs.code}",
        },
        "subject": {"reference": f"Patient/{obs.patient_id}"},
        "effectiveDateTime": _iso(obs.effective_at),
        "valueInteger": obs.value,
        "derivedFrom": [{"reference": f"QuestionnaireResponse/{assessment.id}"}],
    }
    if obs.code == "total" and assessment.band_id is not None:
        resource["interpretation"] = [
            {
                "coding": [
                    {
                        "system": f"{code_system(obs.instrument_id)}:band-scheme:{assessment.band_scheme_id}",
                        "code": assessment.band_id,
                        "display": assessment.band_label,
                    }
                ],
                "text": assessment.band_label,
            }
        ]
        resource["note"] = [
            {"text": f"Banded under protocol version {assessment.protocol_version}"}
        ]
    checked(Observation, resource)
    return resource


# --------------------------------------------------------------------------- search values


def parse_codes(values: list[str], withdrawal_ids: set[str]) -> tuple[tuple[str, str | None], ...]:
    """`code` token values (comma = or) as (instrument id, code or None for any code).

    Accepts `urn:tandem:instrument:<id>|<code>`, `urn:tandem:instrument:<id>|` (any code of that
    instrument), a confirmed LOINC `http://loinc.org|<code>`, or a bare code (`total`, an item id).
    A code that matches nothing gives no results, not an error.
    """
    loinc: dict[tuple[str, str], tuple[str, str]] = {}
    for inst in load_instruments().values():
        if inst.total.code is not None:
            loinc[(inst.total.code.system, inst.total.code.code)] = (inst.id, "total")
        for item in inst.items:
            if item.code is not None:
                loinc[(item.code.system, item.code.code)] = (inst.id, item.id)
    prefix = "urn:tandem:instrument:"
    out: list[tuple[str, str | None]] = []
    for value in values:
        for token in value.split(","):
            token = token.strip()
            if not token:
                raise SearchValueError("code", "empty code")
            if "|" in token:
                system, code = token.split("|", 1)
                if system.startswith(prefix):
                    out.append((system[len(prefix) :], code or None))
                elif (system, code) in loinc:
                    out.append(loinc[(system, code)])
                else:
                    out.append(("", "no-such-code"))
            else:
                out += [(i, token) for i in sorted(withdrawal_ids)]
    return tuple(out)


def read_authored(qr: Mapping[str, Any]) -> datetime | None:
    raw = qr.get("authored")
    if raw is None:
        return None
    if not isinstance(raw, str) or "T" not in raw:
        raise SearchValueError("authored", "give the time of the assessment with its zone")
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise SearchValueError("authored", f"{raw!r} is not a dateTime") from None
    if value.tzinfo is None:
        raise SearchValueError("authored", "needs a time zone (Z or +hh:mm)")
    return value
