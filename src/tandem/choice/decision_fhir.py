"""A recorded decision as a FHIR R4 Observation: the patient's treatment preference, coded as
US Core codes it (category `treatment-intervention-preference`, LOINC 75773-2 "Goals,
preferences, and priorities for medical treatment [Reported]") with the choice itself as text:
no code is invented for the options. The US Core profile is not claimed: it is scoped to
preferences for a future time the person cannot decide, ours are present-day choices.

Served inside the decision history JSON; /fhir/Observation belongs to the withdrawal domain's
search, which would have to take these in (see the choice domain's report)."""

from __future__ import annotations

from typing import Any

from tandem.choice.decision_options import decision_aid, label_of
from tandem.choice.decision_storage import TreatmentDecisionRow

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
