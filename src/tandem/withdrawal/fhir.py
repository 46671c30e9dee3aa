"""Withdrawal assessments as FHIR R4B, and search values back from FHIR. Every resource
built here is validated with `fhir.resources` before it leaves.

Codes: an Observation carries Tandem's own code system `urn:tandem:instrument:<id>` (code
`total` or the item id) and, only where the instrument data holds a confirmed one, its LOINC
code. No LOINC code is made up here: CIWA-Ar, COWS and SOWS-Gossop have none confirmed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

from tandem.fhir.output import checked
from tandem.instruments.engine import get_instrument, load_instruments
from tandem.instruments.models import Coding, Instrument
from tandem.instruments.questionnaire import to_questionnaire
from tandem.withdrawal.storage import AssessmentRow, ObservationRow

SURVEY = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "survey",
    "display": "Survey",
}


class SearchValueError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


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


@dataclass(frozen=True)
class DateBounds:
    ge: datetime | None = None
    gt: datetime | None = None
    le: datetime | None = None
    lt: datetime | None = None


def parse_dates(values: list[str]) -> DateBounds:
    """FHIR date search values (prefix eq, ge, gt, le, lt). A date alone is a UTC day; a time
    must carry its zone."""
    bounds: dict[str, datetime] = {}
    for text in values:
        prefix, raw = ("eq", text)
        if text[:2] in ("eq", "ge", "gt", "le", "lt"):
            prefix, raw = text[:2], text[2:]
        start, end = _period(raw)
        if prefix == "eq":
            _tighter(bounds, "ge", start)
            _tighter(bounds, "lt", end)
        elif prefix == "ge":
            _tighter(bounds, "ge", start)
        elif prefix == "gt":
            _tighter(bounds, "ge", end)
        elif prefix == "le":
            _tighter(bounds, "lt", end)
        else:
            _tighter(bounds, "lt", start)
    return DateBounds(ge=bounds.get("ge"), lt=bounds.get("lt"))


def _tighter(bounds: dict[str, datetime], key: str, value: datetime) -> None:
    current = bounds.get(key)
    if current is None or (value > current if key == "ge" else value < current):
        bounds[key] = value


def _period(raw: str) -> tuple[datetime, datetime]:
    """The instant range a date or dateTime value covers (years 1 to 9998, so that any zone
    and any day's end stay in range)."""
    try:
        if "T" not in raw:
            if len(raw) == 4 and raw.isdigit():
                start = datetime(int(raw), 1, 1, tzinfo=UTC)
                end = start.replace(year=start.year + 1)
            else:
                day = date.fromisoformat(raw)
                start = datetime.combine(day, time(), tzinfo=UTC)
                end = start + timedelta(days=1)
        else:
            start = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            end = start + timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise SearchValueError("date", f"{raw!r} is not a FHIR date or dateTime") from None
    if start.tzinfo is None:
        raise SearchValueError("date", f"{raw!r}: a time needs its zone (Z or +hh:mm)")
    if not 1 < start.year < 9999 or not 1 < end.year < 9999:
        raise SearchValueError("date", f"{raw!r} is out of range (years 2 to 9998)")
    return start, end


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
