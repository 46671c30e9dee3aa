"""The medications domain's stored records, by the names other code used before they were split
by clinical noun. New code imports from the noun's own module:

    validation     what is accepted (pure): FactsInput, plausibility, choices, recorded times
    facts          screening facts, PatientFacts from them, screening one medication
    plans          dose plans: titration, fixed dose, taper, from steps; stop, list, read
    dose_calendar  a plan's doses with what was recorded, the chart's calendar (PlanView)
    doses          planned doses given (nurse) and taken or missed (patient's report)
    side_effects   side effects reported
    missed_doses   the missed-dose alert, its sweep and the scheduled job
    search         API searches and reads by id, chart lists, through access.queries
    resources      the resource types the policy and the audit trail use
"""

from __future__ import annotations

from tandem.access.queries import Page
from tandem.medications.dose_calendar import PlanView, plan_view
from tandem.medications.doses import record_administration, record_statement
from tandem.medications.errors import MedicationInputError
from tandem.medications.facts import (
    Screening,
    current_facts,
    facts_history,
    kidney_sex,
    patient_facts,
    record_facts,
    renal_of,
    screen_patient,
)
from tandem.medications.missed_doses import (
    open_missed_dose_alerts,
    raise_missed_dose_alert,
    sweep_missed_doses,
    sweep_missed_doses_everywhere,
)
from tandem.medications.plans import (
    create_from_steps,
    create_maintenance,
    create_taper,
    create_titration,
    current_dose_text,
    dose_on,
    effective_status,
    get_plan,
    list_plans,
    plan_of,
    stop_plan,
)
from tandem.medications.resources import ADMINISTRATION, FACTS, PLAN, SIDE_EFFECT, STATEMENT
from tandem.medications.search import get_row, search
from tandem.medications.side_effects import list_side_effects, record_side_effect
from tandem.medications.validation import (
    BOOL_FACTS,
    DATE_FACTS,
    GIVEN_WINDOW,
    MAX_NOTE,
    NUMBER_FACTS,
    RECORD_AHEAD,
    RECORD_BACK,
    SEVERITIES,
    SIDE_EFFECTS,
    FactsInput,
)

__all__ = [
    "ADMINISTRATION",
    "BOOL_FACTS",
    "DATE_FACTS",
    "FACTS",
    "GIVEN_WINDOW",
    "MAX_NOTE",
    "NUMBER_FACTS",
    "PLAN",
    "RECORD_AHEAD",
    "RECORD_BACK",
    "SEVERITIES",
    "SIDE_EFFECT",
    "SIDE_EFFECTS",
    "STATEMENT",
    "FactsInput",
    "MedicationInputError",
    "Page",
    "PlanView",
    "Screening",
    "create_from_steps",
    "create_maintenance",
    "create_taper",
    "create_titration",
    "current_dose_text",
    "current_facts",
    "dose_on",
    "effective_status",
    "facts_history",
    "get_plan",
    "get_row",
    "kidney_sex",
    "list_plans",
    "list_side_effects",
    "open_missed_dose_alerts",
    "patient_facts",
    "plan_of",
    "plan_view",
    "raise_missed_dose_alert",
    "record_administration",
    "record_facts",
    "record_side_effect",
    "record_statement",
    "renal_of",
    "screen_patient",
    "search",
    "stop_plan",
    "sweep_missed_doses",
    "sweep_missed_doses_everywhere",
]
