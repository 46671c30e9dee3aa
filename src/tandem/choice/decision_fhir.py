"""A recorded decision as a FHIR R4 Observation: the patient's treatment preference, coded as
US Core codes it (category `treatment-intervention-preference`, LOINC 75773-2 "Goals,
preferences, and priorities for medical treatment [Reported]") with the choice itself as text:
no code is invented for the options. The US Core profile is not claimed: it is scoped to
preferences for a future time the person cannot decide, ours are present-day choices.

Served inside the decision history JSON and by /fhir/Observation (`SOURCE`, ids
`treatment-decision-<n>`), searchable by patient, code and date (the day it was discussed).

Who sees it: the record is shown as an Observation, so the role, an app's scopes and its launch
context are judged for Observation (as for every other Observation); it is also a treatment
decision, so it is judged for `TreatmentDecision` too: staff of another program see it only
under a consent that covers treatment decisions (one for "all substance-use records"), never
under one for assessments alone. An app needs a scope for both (`Observation` and
`TreatmentDecision`, or `*`)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from functools import partial
from typing import Any

from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import read_row, row_ref, visible
from tandem.choice.decision_options import decision_aid, label_of
from tandem.choice.decision_storage import TreatmentDecisionRow
from tandem.fhir.observations import Found, ObservationSearch, ObservationSource
from tandem.fhir.search_dates import DateBounds, day_bounds

US_CORE_CATEGORY = "http://hl7.org/fhir/us/core/CodeSystem/us-core-category"
LOINC = "http://loinc.org"
PREFERENCE_CODE = "75773-2"
PREFERENCE_DISPLAY = "Goals, preferences, and priorities for medical treatment [Reported]"


def decision_observation(row: TreatmentDecisionRow) -> dict[str, Any]:
    aid = decision_aid()
    situation = f"{aid.substances[row.substance].label}, {aid.phases[row.phase].label.lower()}"
    notes = [{"text": f"Discussed with {row.discussed_by} on {row.discussed_on.isoformat()}"}]
    if row.preferences:
        notes.append({"text": f"What matters to the patient: {row.preferences}"})
    if row.notes:
        notes.append({"text": row.notes})
    return {
        "resourceType": "Observation",
        "id": f"treatment-decision-{row.id}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": US_CORE_CATEGORY,
                        "code": "treatment-intervention-preference",
                        "display": "Treatment Intervention Preference",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": LOINC, "code": PREFERENCE_CODE, "display": PREFERENCE_DISPLAY}],
            "text": "Treatment decision",
        },
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": row.discussed_on.isoformat(),
        "issued": row.recorded_at.isoformat(),
        "performer": [{"reference": f"Patient/{row.patient_id}"}],
        "valueString": f"{label_of(row.choice)} ({situation})",
        "note": notes,
    }


# --------------------------------------------------------------------------- /fhir/Observation

PREFIX = "treatment-decision"
OBSERVATION = "Observation"
DECISION = "TreatmentDecision"  # the policy's name for the record (tandem.choice.decisions)


def _matches_code(tokens: tuple[str, ...]) -> bool:
    """Whether the code tokens (any may match) name the preference code: `75773-2`,
    `http://loinc.org|75773-2`, `http://loinc.org|` or `|75773-2`."""
    if not tokens:
        return True
    for token in tokens:
        if "|" in token:
            system, code = token.split("|", 1)
            if system in ("", LOINC) and code in ("", PREFERENCE_CODE) and (system or code):
                return True
        elif token == PREFERENCE_CODE:
            return True
    return False


def _find(access: Access, query: ObservationSearch, limit: int) -> list[Found]:
    if not _matches_code(query.codes):
        return []
    r = TreatmentDecisionRow
    statement = select(r)
    if query.patient_id is not None:
        statement = statement.where(r.patient_id == query.patient_id)
    first, last = day_bounds(DateBounds(ge=query.date_ge, lt=query.date_lt))
    if first is not None:
        statement = statement.where(r.discussed_on >= first)
    if last is not None:
        statement = statement.where(r.discussed_on <= last)
    statement = (
        statement.where(
            visible(access, OBSERVATION, r.patient_id, r.program_id),
            visible(access, DECISION, r.patient_id, r.program_id),
        )
        .order_by(r.discussed_on.desc(), r.recorded_at.desc(), r.id.desc())
        .limit(limit)
    )
    return [
        Found(
            datetime.combine(row.discussed_on, time(), tzinfo=UTC),
            row.id,
            row.patient_id,
            partial(decision_observation, row),
        )
        for row in access.db.scalars(statement)
    ]


def _read(access: Access, row_id: int) -> dict[str, Any]:
    row = read_row(access, OBSERVATION, TreatmentDecisionRow, row_id)
    access.require(Permission.READ, DECISION, row_ref(row), resource_id=str(row_id))
    return decision_observation(row)


# /fhir/Observation shows each recorded decision as `Observation/treatment-decision-<n>`.
SOURCE = ObservationSource(prefix=PREFIX, find=_find, read=_read)
