"""FHIR R4B views of dose plans and monographs, validated with `fhir.resources` before return.

A thin adapter over the pure core: `to_medication_request(plan, patient_ref)` and
`to_medication_knowledge(monograph)` build plain dicts, validate them as R4B resources and
hand back the dict. Codes come only from the monograph; an RxNorm code the sources do not
confirm is still sent (it is the best code known) with a note saying so, unless the caller
asks for confirmed codes only.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fhir.resources.R4B.medicationknowledge import MedicationKnowledge
from fhir.resources.R4B.medicationrequest import MedicationRequest

from tandem.medications.dose_plan import DosePlan, PlanStep
from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import Monograph, load_monograph

__all__ = ["to_medication_knowledge", "to_medication_request"]

UCUM = "http://unitsofmeasure.org"
# FHIR EventTiming codes for our named time slots.
_WHEN = {"morning": "MORN", "midday": "NOON", "evening": "EVE", "bedtime": "HS"}


def _mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def _medication_concept(
    mono: Monograph, include_unverified_codes: bool
) -> tuple[dict[str, Any], list[str]]:
    code = mono.ingredient_code
    concept: dict[str, Any] = {"text": mono.name}
    notes: list[str] = []
    if code.code is not None and (include_unverified_codes or not code.unverified):
        concept["coding"] = [{"system": code.system, "code": code.code, "display": code.display}]
        if code.unverified:
            notes.append(f"RxNorm {code.code} for {mono.name} is unverified: {code.note}")
    elif code.code is None:
        notes.append(f"No RxNorm code for {mono.name} in Tandem's sources: {code.note}")
    return concept, notes


def _step_dosages(
    step: PlanStep, sequence: int, plan: DosePlan, route: str | None, open_ended: bool
) -> list[dict[str, Any]]:
    bounds: dict[str, str] = {"start": step.start.isoformat()}
    if not open_ended:
        bounds["end"] = step.end.isoformat()
    when_text = f"from {step.start.isoformat()}" + (
        "" if open_ended else f" to {step.end.isoformat()}"
    )
    common: dict[str, Any] = {"sequence": sequence}
    if route:
        common["route"] = {"text": route}
    if plan.ceiling_mg_day is not None:
        common["maxDosePerPeriod"] = {
            "numerator": _mg(plan.ceiling_mg_day),
            "denominator": {"value": 1, "unit": "day", "system": UCUM, "code": "d"},
        }
    uniform = step.uniform_dose
    if uniform is not None:
        return [
            {
                **common,
                "text": f"{uniform.text} {when_text}",
                "timing": {
                    "repeat": {
                        "boundsPeriod": bounds,
                        "frequency": uniform.frequency.per_day,
                        "period": 1,
                        "periodUnit": "d",
                    }
                },
                "doseAndRate": [{"doseQuantity": _mg(uniform.mg)}],
            }
        ]
    by_amount: dict[float, list[str]] = defaultdict(list)
    for dose in step.doses:
        by_amount[dose.mg].append(dose.time_slot)
    out = []
    for mg, slots in by_amount.items():
        out.append(
            {
                **common,
                "text": f"{mg:g} mg at {', '.join(slots)} {when_text}",
                "timing": {
                    "repeat": {
                        "boundsPeriod": bounds,
                        "frequency": len(slots),
                        "period": 1,
                        "periodUnit": "d",
                        "when": [_WHEN[s] for s in slots],
                    }
                },
                "doseAndRate": [{"doseQuantity": _mg(mg)}],
            }
        )
    return out


def to_medication_request(
    plan: DosePlan,
    patient_ref: str,
    *,
    status: str = "draft",
    intent: str = "plan",
    include_unverified_codes: bool = True,
) -> dict[str, Any]:
    """An R4B MedicationRequest with one dosageInstruction (sequence) per plan step."""
    if not isinstance(patient_ref, str) or not patient_ref.strip():
        raise ImplausibleValue("patient_ref", "must be a reference such as 'Patient/123'")
    mono = load_monograph(plan.medication_id)
    concept, notes = _medication_concept(mono, include_unverified_codes)
    steps = plan.steps
    dosages: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        open_ended = plan.continues and i == len(steps) - 1
        dosages.extend(_step_dosages(step, i + 1, plan, mono.dosing.route, open_ended))
    notes += [lim.reason for lim in plan.limits if lim.rule_id]
    notes += [n.text for n in plan.notes]
    if plan.stop_date is not None:
        notes.append(f"Stop on {plan.stop_date.isoformat()} (no doses from that day).")
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "status": status,
        "intent": intent,
        "medicationCodeableConcept": concept,
        "subject": {"reference": patient_ref.strip()},
        "dosageInstruction": dosages,
    }
    if notes:
        resource["note"] = [{"text": t} for t in notes]
    MedicationRequest.model_validate(resource)
    return resource


def to_medication_knowledge(
    monograph: Monograph | str, *, include_unverified_codes: bool = True
) -> dict[str, Any]:
    """An R4B MedicationKnowledge: code, brand synonyms, route and the dosing guidance."""
    mono = load_monograph(monograph) if isinstance(monograph, str) else monograph
    concept, _ = _medication_concept(mono, include_unverified_codes)
    resource: dict[str, Any] = {
        "resourceType": "MedicationKnowledge",
        "id": mono.id.replace("_", "-"),
        "status": "active",
        "code": concept,
    }
    if mono.brand_names:
        resource["synonym"] = mono.brand_list
    if mono.dosing.route:
        resource["intendedRoute"] = [{"text": mono.dosing.route}]
    dosage: list[dict[str, Any]] = [{"text": f.text} for f in mono.dosing.regimen]
    cap = mono.dosing.max_mg_day
    if cap.value is not None:
        dosage.append(
            {
                "text": f"Maximum {cap.value:g} {cap.unit}",
                "maxDosePerPeriod": {
                    "numerator": _mg(cap.value),
                    "denominator": {"value": 1, "unit": "day", "system": UCUM, "code": "d"},
                },
            }
        )
    if dosage:
        guideline: dict[str, Any] = {
            "dosage": [{"type": {"text": "labelled and reported dosing"}, "dosage": dosage}]
        }
        indications = [f.text for f in mono.indications]
        if indications:
            guideline["indicationCodeableConcept"] = {"text": indications[0]}
        resource["administrationGuidelines"] = [guideline]
    MedicationKnowledge.model_validate(resource)
    return resource
