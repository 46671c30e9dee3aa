"""The medication records' resource types, as the policy, the audit trail and API scopes name
them. Screening facts (weight, creatinine, liver tests, QTc...) are clinical observations."""

from __future__ import annotations

FACTS = "Observation"
PLAN = "MedicationRequest"
STATEMENT = "MedicationStatement"
ADMINISTRATION = "MedicationAdministration"
SIDE_EFFECT = "AdverseEvent"
ALERT = "Alert"
