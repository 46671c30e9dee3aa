"""Medications: monographs and safety rules as data, kidney function, dose plans (pure core).

Public API (other domains call these, not the modules' internals):

    load_monograph(id) / medication_ids() / all_monographs()
    cockcroft_gault(...) / ckd_epi_2021(...) / kdigo_category(egfr) / assess(...)
    screen(medication_id, PatientFacts(...)) -> ScreeningResult
    titration(...) / taper(...) -> DosePlan ; Dose.parse("5mg-tid")
    to_medication_request(plan, patient_ref) / to_medication_knowledge(monograph)
    adherence(planned, events) / missed_run_alert(medication, events, now)
"""

from __future__ import annotations

from tandem.medications.adherence import (
    DoseEvent,
    MissedRunAlert,
    PlannedDose,
    adherence,
    missed_run_alert,
    planned_doses,
    reconcile,
)
from tandem.medications.dose import Dose, Frequency, parse_days, parse_dose, parse_mg
from tandem.medications.dose_plan import (
    DosePlan,
    PlanDay,
    PlanLimit,
    PlanNote,
    PlanStep,
    ScheduledDose,
    taper,
    titration,
)
from tandem.medications.errors import (
    DoseParseError,
    ImplausibleValue,
    MedicationInputError,
    PlanRefused,
    UnknownMedication,
    UnknownSubstance,
)
from tandem.medications.fhir_mapping import to_medication_knowledge, to_medication_request
from tandem.medications.monograph import (
    Monograph,
    SafetyRule,
    Source,
    all_monographs,
    load_monograph,
    medication_ids,
)
from tandem.medications.renal import (
    CrclResult,
    EgfrResult,
    RenalInputError,
    RenalResult,
    assess,
    ckd_epi_2021,
    cockcroft_gault,
    creatinine_umol_l_to_mg_dl,
    kdigo_category,
)
from tandem.medications.safety import Finding, PatientFacts, ScreeningResult, screen

__all__ = [
    "CrclResult",
    "Dose",
    "DoseEvent",
    "DoseParseError",
    "DosePlan",
    "EgfrResult",
    "Finding",
    "Frequency",
    "ImplausibleValue",
    "MedicationInputError",
    "MissedRunAlert",
    "Monograph",
    "PatientFacts",
    "PlanDay",
    "PlanLimit",
    "PlanNote",
    "PlanRefused",
    "PlanStep",
    "PlannedDose",
    "RenalInputError",
    "RenalResult",
    "SafetyRule",
    "ScheduledDose",
    "ScreeningResult",
    "Source",
    "UnknownMedication",
    "UnknownSubstance",
    "adherence",
    "all_monographs",
    "assess",
    "ckd_epi_2021",
    "cockcroft_gault",
    "creatinine_umol_l_to_mg_dl",
    "kdigo_category",
    "load_monograph",
    "medication_ids",
    "missed_run_alert",
    "parse_days",
    "parse_dose",
    "parse_mg",
    "planned_doses",
    "reconcile",
    "screen",
    "taper",
    "titration",
    "to_medication_knowledge",
    "to_medication_request",
]
