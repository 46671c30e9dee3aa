"""FHIR R4B views of stored medication records, and the MedicationRequest a client may send.

Out: MedicationRequest (a stored dose plan), MedicationStatement (a patient's report of a planned
dose), AdverseEvent (a side effect). Each is validated with `fhir.resources` before it leaves.
In: `read_medication_request` turns a posted MedicationRequest into the core's `StepSpec`s;
the core (`plan_from_steps`) then checks it against the same bounds as the titration form.
Anything the body says that Tandem would not keep is refused by name, never silently dropped.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from fhir.resources.R4B.adverseevent import AdverseEvent
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.medicationstatement import MedicationStatement
from pydantic import ValidationError

from tandem.fhir.output import checked
from tandem.medications.dose import Frequency
from tandem.medications.dose_plan import ScheduledDose, StepSpec
from tandem.medications.fhir_mapping import UCUM, _medication_concept, to_medication_request
from tandem.medications.monograph import RXNORM_SYSTEM, Monograph, all_monographs, load_monograph
from tandem.medications.storage import DosePlanRow, MedicationStatementRow, SideEffectRow

__all__ = [
    "TANDEM_MEDICATION_SYSTEM",
    "PostedRequest",
    "RequestError",
    "adverse_event",
    "find_monographs",
    "medication_request",
    "medication_statement",
    "read_medication_request",
]

TANDEM_MEDICATION_SYSTEM = "urn:tandem:medication"
USER_SYSTEM = "urn:tandem:user"
SEVERITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
_SLOT_OF_WHEN = {"MORN": "morning", "NOON": "midday", "EVE": "evening", "HS": "bedtime"}
_KIND_TEXT = {
    "titration": "Titration plan",
    "taper": "Taper plan (to stopping)",
    "maintenance": "Maintenance plan",
}


def _iso(value: datetime) -> str:
    return value.isoformat()


def _user(user_id: int, name: str | None) -> dict[str, Any]:
    ref: dict[str, Any] = {"identifier": {"system": USER_SYSTEM, "value": str(user_id)}}
    if name:
        ref["display"] = name
    return ref


def medication_request(row: DosePlanRow, status: str, prescriber: str | None) -> dict[str, Any]:
    """A stored plan as an R4B MedicationRequest (intent order), with its id and status."""
    from tandem.medications.dose_plan import DosePlan

    plan = DosePlan.from_dict(row.plan)
    resource = to_medication_request(
        plan, f"Patient/{row.patient_id}", status=status, intent="order"
    )
    resource = {
        "resourceType": "MedicationRequest",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.status_changed_at or row.created_at)},
        **resource,
    }
    resource["authoredOn"] = _iso(row.created_at)
    resource["requester"] = _user(row.prescriber_id, prescriber)
    if row.status_reason:
        resource["statusReason"] = {"text": row.status_reason}
    basis = []
    if row.crcl_ml_min is not None:
        basis.append(
            f"CrCl {row.crcl_ml_min:g} mL/min (Cockcroft-Gault, {row.weight_basis or 'actual'} weight)"
        )
    if row.egfr is not None:
        basis.append(f"eGFR {row.egfr:g} mL/min/1.73 m² (CKD-EPI 2021)")
    notes = [{"text": _KIND_TEXT.get(row.kind, row.kind)}]
    if basis:
        notes.append({"text": "Kidney function when prescribed: " + "; ".join(basis) + "."})
    if row.protocol_max_mg_day is not None:
        notes.append({"text": f"Program protocol maximum {row.protocol_max_mg_day:g} mg/day."})
    resource["note"] = notes + resource.get("note", [])
    if row.replaces_id is not None:
        resource["priorPrescription"] = {"reference": f"MedicationRequest/{row.replaces_id}"}
    checked(MedicationRequest, resource)
    return resource


def _concept(medication_id: str) -> dict[str, Any]:
    concept, _notes = _medication_concept(load_monograph(medication_id), True)
    return concept


def _mg(value: float) -> dict[str, Any]:
    return {"value": value, "unit": "mg", "system": UCUM, "code": "mg"}


def medication_statement(row: MedicationStatementRow, recorder: str | None) -> dict[str, Any]:
    """A patient's report about one planned dose: taken (completed) or missed (not-taken)."""
    resource: dict[str, Any] = {
        "resourceType": "MedicationStatement",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.reported_at)},
        "basedOn": [{"reference": f"MedicationRequest/{row.dose_plan_id}"}],
        "status": "completed" if row.taken else "not-taken",
        "medicationCodeableConcept": _concept(row.medication_id),
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "effectiveDateTime": _iso(row.due_at),
        "dateAsserted": _iso(row.reported_at),
        "informationSource": {"reference": f"Patient/{row.patient_id}"},
        "dosage": [
            {
                "text": f"{row.dose_mg:g} mg, {row.time_slot} dose",
                "timing": {"event": [_iso(row.due_at)]},
                "doseAndRate": [{"doseQuantity": _mg(row.dose_mg)}],
            }
        ],
        "note": [
            {
                "text": "Reported by the patient; recorded by "
                + (recorder or f"user {row.recorded_by}")
                + "."
            }
        ],
    }
    if not row.taken and row.reason:
        resource["statusReason"] = [{"text": row.reason}]
    checked(MedicationStatement, resource)
    return resource


def adverse_event(row: SideEffectRow, label: str, recorder: str | None) -> dict[str, Any]:
    """A side effect with its severity; the suspected medication by name."""
    text = f"{label}: {row.detail}" if row.detail else label
    resource: dict[str, Any] = {
        "resourceType": "AdverseEvent",
        "id": str(row.id),
        "meta": {"lastUpdated": _iso(row.recorded_at)},
        "actuality": "actual",
        "event": {"text": text},
        "subject": {"reference": f"Patient/{row.patient_id}"},
        "date": _iso(row.onset_at),
        "recordedDate": _iso(row.recorded_at),
        "recorder": _user(row.recorded_by, recorder),
        "severity": {
            "coding": [
                {"system": SEVERITY_SYSTEM, "code": row.severity, "display": row.severity.title()}
            ],
            "text": row.severity,
        },
        "suspectEntity": [{"instance": {"display": load_monograph(row.medication_id).name}}],
    }
    checked(AdverseEvent, resource)
    return resource


# --------------------------------------------------------------------------- MedicationKnowledge search


def find_monographs(codes: list[str], names: list[str]) -> list[Monograph]:
    """Monographs matching every `code` (token: system|code or code; RxNorm or
    urn:tandem:medication) and every `name` (case-insensitive part of the name, id or a brand)."""
    found = []
    for mono in all_monographs():
        if codes and not all(_code_matches(mono, c) for c in codes):
            continue
        if names and not all(_name_matches(mono, n) for n in names):
            continue
        found.append(mono)
    return found


def _code_matches(mono: Monograph, value: str) -> bool:
    for token in value.split(","):
        system, _, code = token.rpartition("|")
        system, code = system.strip(), code.strip()
        if system in ("", TANDEM_MEDICATION_SYSTEM) and code == mono.id:
            return True
        if system in ("", RXNORM_SYSTEM) and any(c.code == code for c in mono.rxnorm if c.code):
            return True
    return False


def _name_matches(mono: Monograph, value: str) -> bool:
    text = value.strip().lower()
    haystack = [mono.name.lower(), mono.id, *(b.name.lower() for b in mono.brand_names)]
    return any(text in h for h in haystack)


# --------------------------------------------------------------------------- reading a posted request


class RequestError(ValueError):
    """Something in a posted MedicationRequest Tandem cannot accept: `path` is a FHIRPath."""

    def __init__(self, path: str, message: str, code: str = "invalid") -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
        self.code = code


@dataclass(frozen=True)
class PostedRequest:
    patient_id: str
    medication_id: str
    steps: tuple[StepSpec, ...]
    protocol_max_mg_day: float | None


SUPPORTED = {
    "resourceType",
    "id",
    "meta",
    "text",
    "status",
    "intent",
    "medicationCodeableConcept",
    "subject",
    "authoredOn",
    "requester",
    "dosageInstruction",
    "note",
}
_DOSAGE_SUPPORTED = {"sequence", "text", "timing", "route", "doseAndRate", "maxDosePerPeriod"}


def _medication_of(concept: Any) -> str:
    path = "MedicationRequest.medicationCodeableConcept"
    if concept is None:
        raise RequestError(
            path,
            "name the medication (RxNorm coding, urn:tandem:medication|<id>, or text)",
            "required",
        )
    for coding in concept.coding or []:
        if coding.code is None:
            continue
        token = f"{coding.system or ''}|{coding.code}"
        matches = [m for m in all_monographs() if _code_matches(m, token)]
        if len(matches) == 1:
            return matches[0].id
        if coding.system in (RXNORM_SYSTEM, TANDEM_MEDICATION_SYSTEM):
            raise RequestError(
                f"{path}.coding",
                f"{coding.system}|{coding.code} is not a medication Tandem holds a monograph for",
                "code-invalid",
            )
    if concept.text:
        wanted = concept.text.strip().lower()
        for mono in all_monographs():
            if wanted in (mono.id, mono.name.lower()):
                return mono.id
    raise RequestError(
        path,
        "unknown medication; Tandem holds monographs for "
        + ", ".join(m.id for m in all_monographs()),
        "code-invalid",
    )


def _day(value: Any, path: str) -> date:
    if isinstance(value, datetime):
        raise RequestError(path, "give a date (YYYY-MM-DD): plans run by day")
    if not isinstance(value, date):
        raise RequestError(path, "give a date (YYYY-MM-DD)", "required")
    return value


def _mg_quantity(quantity: Any, path: str) -> float:
    if quantity is None or quantity.value is None:
        raise RequestError(path, "give the dose in mg", "required")
    unit = (quantity.code or quantity.unit or "").strip()
    if unit != "mg" or (quantity.system not in (None, UCUM)):
        raise RequestError(path, f"doses are given in mg (UCUM 'mg'), got {unit or 'no unit'!r}")
    value = float(quantity.value)
    if value <= 0:
        raise RequestError(path, f"a dose must be more than 0 mg, got {value:g}")
    return value


def _max_per_day(ratio: Any, path: str) -> float:
    denominator = ratio.denominator
    if (
        denominator is None
        or float(denominator.value or 0) != 1
        or (denominator.code or denominator.unit) not in ("d", "day")
    ):
        raise RequestError(f"{path}.denominator", "give the maximum per 1 day (UCUM 'd')")
    return _mg_quantity(ratio.numerator, f"{path}.numerator")


def read_medication_request(body: dict[str, Any]) -> PostedRequest:
    """Validate a posted MedicationRequest and read the plan it describes.

    Each dosage instruction is one step: `timing.repeat.boundsPeriod` (start, and end except on
    the last step), `frequency` 1-4 per 1 day, a dose in mg; dosages sharing a `sequence` split a
    day by `when` (MORN, NOON, EVE, HS), as Tandem writes unequal taper days.
    `maxDosePerPeriod` (mg per day) is read as the program's protocol maximum.
    """
    unsupported = sorted(set(body) - SUPPORTED)
    if unsupported:
        raise RequestError(
            f"MedicationRequest.{unsupported[0]}",
            "Tandem does not store MedicationRequest."
            + ", MedicationRequest.".join(unsupported)
            + "; remove it and send again",
            "not-supported",
        )
    try:
        resource = MedicationRequest.model_validate(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        path = ".".join(str(p) for p in err["loc"])
        raise RequestError(f"MedicationRequest.{path}", err["msg"]) from None
    if resource.status != "active":
        raise RequestError(
            "MedicationRequest.status",
            f"Tandem stores active plans; got {resource.status!r}",
            "not-supported",
        )
    if resource.intent not in ("order", "plan"):
        raise RequestError("MedicationRequest.intent", "must be order or plan", "not-supported")
    reference = (resource.subject.reference or "") if resource.subject else ""
    kind, _, patient_id = reference.partition("/")
    if kind != "Patient" or not patient_id:
        raise RequestError("MedicationRequest.subject", "must reference Patient/<id>", "required")
    medication_id = _medication_of(resource.medicationCodeableConcept)
    dosages = resource.dosageInstruction or []
    if not dosages:
        raise RequestError(
            "MedicationRequest.dosageInstruction", "give the plan's steps", "required"
        )

    groups: OrderedDict[Any, list[tuple[int, Any]]] = OrderedDict()
    for i, dosage in enumerate(dosages):
        extra = sorted(set(body["dosageInstruction"][i]) - _DOSAGE_SUPPORTED)
        if extra:
            raise RequestError(
                f"MedicationRequest.dosageInstruction[{i}].{extra[0]}",
                "Tandem does not store this element of a dosage",
                "not-supported",
            )
        groups.setdefault(dosage.sequence if dosage.sequence is not None else f"#{i}", []).append(
            (i, dosage)
        )

    steps: list[StepSpec] = []
    protocol_max: float | None = None
    for members in groups.values():
        first_index = members[0][0]
        where = f"dosageInstruction[{first_index}]"
        bounds = None
        doses: list[ScheduledDose] = []
        for i, dosage in members:
            path = f"MedicationRequest.dosageInstruction[{i}]"
            repeat = dosage.timing.repeat if dosage.timing else None
            if repeat is None or repeat.boundsPeriod is None:
                raise RequestError(
                    f"{path}.timing.repeat.boundsPeriod",
                    "give the step's start (and end) dates",
                    "required",
                )
            period = repeat.boundsPeriod
            these = (
                _day(period.start, f"{path}.timing.repeat.boundsPeriod.start"),
                None
                if period.end is None
                else _day(period.end, f"{path}.timing.repeat.boundsPeriod.end"),
            )
            if bounds is not None and these != bounds:
                raise RequestError(
                    f"{path}.timing.repeat.boundsPeriod",
                    "dosages of one sequence must share their period",
                )
            bounds = these
            if (repeat.period not in (None, 1)) or (repeat.periodUnit not in (None, "d")):
                raise RequestError(
                    f"{path}.timing.repeat",
                    "give doses per 1 day (period 1, periodUnit d)",
                    "not-supported",
                )
            frequency = repeat.frequency or 1
            if frequency not in (1, 2, 3, 4):
                raise RequestError(f"{path}.timing.repeat.frequency", "must be 1 to 4 doses a day")
            rates = dosage.doseAndRate or []
            if len(rates) != 1:
                raise RequestError(f"{path}.doseAndRate", "give one dose quantity", "required")
            mg = _mg_quantity(rates[0].doseQuantity, f"{path}.doseAndRate[0].doseQuantity")
            if repeat.when:
                unknown = [w for w in repeat.when if w not in _SLOT_OF_WHEN]
                if unknown or len(repeat.when) != frequency:
                    raise RequestError(
                        f"{path}.timing.repeat.when",
                        "use MORN, NOON, EVE or HS, one per dose of the frequency",
                    )
                slots = [_SLOT_OF_WHEN[w] for w in repeat.when]
            elif len(members) > 1:
                raise RequestError(
                    f"{path}.timing.repeat.when",
                    "dosages that share a sequence must say when (MORN, NOON, EVE, HS)",
                    "required",
                )
            else:
                slots = list(next(f for f in Frequency if f.per_day == frequency).slots)
            doses += [ScheduledDose(slot, mg) for slot in slots]
            if dosage.maxDosePerPeriod is not None:
                most = _max_per_day(dosage.maxDosePerPeriod, f"{path}.maxDosePerPeriod")
                protocol_max = most if protocol_max is None else min(protocol_max, most)
        assert bounds is not None
        steps.append(StepSpec(bounds[0], bounds[1], tuple(doses), where))
    return PostedRequest(patient_id, medication_id, tuple(steps), protocol_max)
