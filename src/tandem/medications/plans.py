"""Dose plans in storage: written (titration, fixed dose, taper, step by step), replacing the
plan of the same medication, stopped, listed and read. The pure core (`dose_plan`) writes and
bounds each plan from the monograph, the program's protocol and the stored kidney function;
this module keeps it."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

from sqlalchemy import Text, bindparam, cast, select
from sqlalchemy.orm import Session

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, read_row
from tandem.clock import program_today, utcnow
from tandem.errors import NotFound
from tandem.medications.dose import Dose, Frequency
from tandem.medications.dose_plan import (
    DosePlan,
    PlanDay,
    StepSpec,
    maintenance,
    plan_from_steps,
    taper,
    titration,
)
from tandem.medications.errors import ImplausibleValue
from tandem.medications.facts import current_facts, renal_of
from tandem.medications.monograph import Monograph, load_monograph
from tandem.medications.renal import RenalResult
from tandem.medications.resources import FACTS, PLAN
from tandem.medications.search import patient_rows
from tandem.medications.storage import DosePlanRow, MedicationFactsRow
from tandem.medications.validation import check_start, check_stop
from tandem.storage.models import Patient

__all__ = [
    "PLAN",
    "create_from_steps",
    "create_maintenance",
    "create_taper",
    "create_titration",
    "current_dose_text",
    "dose_on",
    "effective_status",
    "get_plan",
    "list_plans",
    "patient_plan",
    "plan_of",
    "plans_by_id",
    "stored_plan",
    "stop_plan",
]


def plan_of(row: DosePlanRow) -> DosePlan:
    return DosePlan.from_dict(row.plan)


# Parsed plans by the digest of their stored JSON text: a stored plan's calendar never changes,
# and a list of sixty plans would otherwise decode and rebuild every one on every view. Keyed by
# content, not by id (a new database, e.g. in tests, reuses ids), bounded, and the same in every
# process (parsing is pure: the registry of sources it resolves is bundled data). Two kinds of
# key: the digest of the text read (bytes), and the row's stored `plan_digest` (str).
_PARSED_LIMIT = 4096
_parsed: OrderedDict[bytes | str, DosePlan] = OrderedDict()
_parsed_lock = threading.Lock()


def _cached(key: bytes | str) -> DosePlan | None:
    with _parsed_lock:
        found = _parsed.get(key)
        if found is not None:
            _parsed.move_to_end(key)
        return found


def _keep(key: bytes | str, plan: DosePlan) -> None:
    with _parsed_lock:
        _parsed[key] = plan
        if len(_parsed) > _PARSED_LIMIT:
            _parsed.popitem(last=False)


_CALENDARS = (
    select(DosePlanRow.id, cast(DosePlanRow.plan, Text))
    .where(DosePlanRow.id.in_(bindparam("plan_ids", expanding=True)))
    .order_by(DosePlanRow.id)
)


def plans_by_id(
    db: Session, rows: Sequence[tuple[int, str | None]]
) -> dict[int, tuple[bytes | str, DosePlan]]:
    """The calendars of stored plans, given as (id, stored `plan_digest`), with the key each is
    kept under: from this process's parsed plans where the digest is known, and the rest read
    as text in one statement (a row bulk-loaded without a digest is read every time, and kept
    by its text's digest). A list of plans need not read sixty calendars it has parsed before."""
    out: dict[int, tuple[bytes | str, DosePlan]] = {}
    missing: dict[int, str | None] = {}
    for plan_id, digest in rows:
        if digest is not None:
            found = _cached(digest)
            if found is not None:
                out[plan_id] = (digest, found)
                continue
        missing[plan_id] = digest
    if missing:
        for plan_id, text in db.execute(_CALENDARS, {"plan_ids": sorted(missing)}):
            digest = missing[plan_id]
            plan = stored_plan(text)
            if digest is not None:
                _keep(digest, plan)
                out[plan_id] = (digest, plan)
            else:
                out[plan_id] = (_text_key(text), plan)
    return out


def _text_key(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=20).digest()


def stored_plan(text: str | dict[str, Any]) -> DosePlan:
    """The plan from its stored JSON (the column read as text; a dict where the driver has
    already decoded it), parsed once per process."""
    if isinstance(text, dict):
        return DosePlan.from_dict(text)
    key = _text_key(text)
    found = _cached(key)
    if found is not None:
        return found
    plan = DosePlan.from_dict(json.loads(text))
    _keep(key, plan)
    return plan


def effective_status(row: DosePlanRow, today: date) -> str:
    """active | completed | stopped, as of `today` (a taper past its stop date is completed)."""
    if row.status == "active" and row.ends_on is not None and row.ends_on <= today:
        return "completed"
    return row.status


def dose_on(row: DosePlanRow, day: date) -> PlanDay | None:
    """The plan's doses on `day` (a continuing plan repeats its last day), or None."""
    if day < row.start_date or (row.ends_on is not None and day >= row.ends_on):
        return None
    plan = plan_of(row)
    for d in plan.days:
        if d.date == day:
            return d
    if plan.continues and day > plan.end_date:
        return PlanDay(day, plan.days[-1].doses)
    return None


def current_dose_text(row: DosePlanRow, day: date) -> str | None:
    """The dose on `day` written as a dose (e.g. '20mg-tid') when every slot gets the same."""
    planned = dose_on(row, day)
    if planned is None or not planned.doses:
        return None
    amounts = {d.mg for d in planned.doses}
    if len(amounts) == 1:
        freq = {1: "daily", 2: "bid", 3: "tid", 4: "qid"}.get(len(planned.doses))
        if freq:
            return str(Dose(planned.doses[0].mg, Frequency.parse(freq)))
    return None


def _active_same(
    access: Access, patient: Patient, medication_id: str, today: date
) -> list[DosePlanRow]:
    """The patient's active plans of one medication. Read for a change the caller has been
    allowed on this patient (a new plan replaces them): every such plan, not only those the
    actor may list, or two plans of one medication would run at once."""
    rows = access.db.scalars(
        select(DosePlanRow)
        .where(
            DosePlanRow.patient_id == patient.id,
            DosePlanRow.medication_id == medication_id,
            DosePlanRow.status == "active",
        )
        .order_by(DosePlanRow.start_date)
    )
    return [r for r in rows if r.ends_on is None or r.ends_on > today]


def _store_plan(
    access: Access,
    patient: Patient,
    plan: DosePlan,
    inputs: dict[str, Any],
    protocol_max: float | None,
    renal: RenalResult | None,
    facts_row: MedicationFactsRow | None,
    now: datetime,
) -> DosePlanRow:
    today = program_today(patient.program.time_zone, now)
    previous = _active_same(access, patient, plan.medication_id, today)
    row = DosePlanRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        medication_id=plan.medication_id,
        kind=plan.kind,
        status="active",
        status_reason="",
        start_date=plan.start_date,
        ends_on=plan.stop_date,
        plan=plan.to_dict(),
        inputs=inputs,
        protocol_max_mg_day=protocol_max,
        ceiling_mg_day=plan.ceiling_mg_day,
        crcl_ml_min=renal.crcl_ml_min if renal else None,
        egfr=renal.egfr_ml_min_1_73m2 if renal else None,
        weight_basis=renal.crcl.weight_basis if renal and renal.crcl else None,
        facts_id=facts_row.id if facts_row else None,
        replaces_id=previous[-1].id if previous else None,
        prescriber_id=access.actor.user_id,
        created_at=now,
    )
    access.db.add(row)
    access.db.flush()
    for old in previous:
        # The new plan takes over from its first day; the old one gave its last doses the day before.
        old.ends_on = max(old.start_date, plan.start_date)
        old.status = "stopped"
        old.status_reason = (
            f"Replaced by plan {row.id} ({row.kind}) from {plan.start_date.isoformat()}."
        )
        old.status_changed_at = now
        old.status_changed_by = access.actor.user_id
        access.audit(
            "update",
            resource_type=PLAN,
            resource_id=str(old.id),
            patient_id=patient.id,
            detail=old.status_reason,
        )
    access.audit(
        "create",
        resource_type=PLAN,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"{plan.medication_id} {plan.kind}",
    )
    return row


def _prescribing(
    access: Access, patient_id: str, medication_id: str, now: datetime
) -> tuple[Patient, Monograph, MedicationFactsRow | None, RenalResult | None]:
    """The patient, once the policy allows writing their plan and reading the facts that bound
    it; the monograph; the newest facts and the kidney function they give."""
    patient = load_patient(access, patient_id, (Permission.CREATE, PLAN), (Permission.READ, FACTS))
    mono = load_monograph(medication_id)
    facts_row = current_facts(access, patient)
    return patient, mono, facts_row, renal_of(patient, facts_row, now)


def create_titration(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    start: str | Dose,
    step_mg: float,
    every_days: int,
    target: str | Dose,
    start_date: date,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    """A titration bounded by the maximum, the program's protocol and the stored kidney function."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    check_start(start_date, program_today(patient.program.time_zone, now))
    plan = titration(
        mono.id,
        start,
        step_mg,
        every_days,
        target,
        start_date,
        renal=renal,
        protocol_max_mg_day=protocol_max_mg_day,
    )
    inputs = {
        "start": str(start),
        "step_mg": step_mg,
        "every_days": every_days,
        "target": str(target),
        "start_date": start_date.isoformat(),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def create_maintenance(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    dose: str | Dose,
    start_date: date,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    check_start(start_date, program_today(patient.program.time_zone, now))
    plan = maintenance(
        mono.id, dose, start_date, renal=renal, protocol_max_mg_day=protocol_max_mg_day
    )
    inputs = {
        "dose": str(dose),
        "start_date": start_date.isoformat(),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def create_taper(
    access: Access,
    patient_id: str,
    medication_id: str,
    *,
    from_dose: str | Dose | None,
    over_days: int,
    start_date: date,
    now: datetime | None = None,
) -> DosePlanRow:
    """A taper to stopping. Without `from_dose`, it starts from the current plan's dose on the
    taper's first day (which must then be the same at every slot)."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    today = program_today(patient.program.time_zone, now)
    check_start(start_date, today)
    if from_dose is None or (isinstance(from_dose, str) and not from_dose.strip()):
        current = _active_same(access, patient, mono.id, today)
        text = current_dose_text(current[-1], start_date) if current else None
        if text is None:
            raise ImplausibleValue("from_dose", "give the dose to taper from, e.g. 20mg-tid")
        from_dose = text
    plan = taper(mono.id, from_dose, over_days, start_date, renal=renal)
    inputs = {
        "from_dose": str(from_dose),
        "over_days": over_days,
        "start_date": start_date.isoformat(),
    }
    return _store_plan(access, patient, plan, inputs, None, renal, facts_row, now)


def create_from_steps(
    access: Access,
    patient_id: str,
    medication_id: str,
    steps: Sequence[StepSpec],
    *,
    protocol_max_mg_day: float | None = None,
    now: datetime | None = None,
) -> DosePlanRow:
    """A plan written out step by step (a FHIR MedicationRequest), checked by the same core."""
    now = now or utcnow()
    patient, mono, facts_row, renal = _prescribing(access, patient_id, medication_id, now)
    if steps:
        check_start(steps[0].start, program_today(patient.program.time_zone, now))
    plan = plan_from_steps(mono.id, steps, renal=renal, protocol_max_mg_day=protocol_max_mg_day)
    inputs = {
        "written_as": "steps",
        "steps": len(steps),
        "protocol_max_mg_day": protocol_max_mg_day,
    }
    return _store_plan(access, patient, plan, inputs, protocol_max_mg_day, renal, facts_row, now)


def get_plan(access: Access, plan_id: int, patient_id: str | None = None) -> DosePlanRow:
    """One plan by id (of `patient_id`'s, when given), through the policy and audited."""
    row = read_row(access, PLAN, DosePlanRow, plan_id)
    if patient_id is not None and row.patient_id != patient_id:
        raise NotFound(f"MedicationRequest/{plan_id} is not known")
    return row


def list_plans(access: Access, patient: Patient) -> list[DosePlanRow]:
    """The patient's plans, newest first."""
    return patient_rows(
        access,
        PLAN,
        DosePlanRow,
        select(DosePlanRow).order_by(DosePlanRow.start_date.desc(), DosePlanRow.id.desc()),
        patient,
        f"patient={patient.id}",
    )


def patient_plan(
    access: Access, patient: Patient, plan_id: int, permission: Permission = Permission.READ
) -> DosePlanRow:
    """One of `patient`'s plans, by id, for a change to it or a dose recorded against it."""
    row = read_row(access, PLAN, DosePlanRow, plan_id, permission=permission)
    if row.patient_id != patient.id:
        raise NotFound(f"MedicationRequest/{plan_id} is not known")
    return row


def stop_plan(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    stop_on: date,
    reason: str,
    now: datetime | None = None,
) -> DosePlanRow:
    """Stop a plan from `stop_on` (no doses that day). A medication that must be tapered is not
    stopped this way once it has started: the refusal says to start a taper."""
    now = now or utcnow()
    patient = load_patient(access, patient_id, (Permission.UPDATE, PLAN))
    row = patient_plan(access, patient, plan_id, Permission.UPDATE)
    today = program_today(patient.program.time_zone, now)
    reason = check_stop(
        load_monograph(row.medication_id),
        status=effective_status(row, today),
        plan_start=row.start_date,
        replaces_plan=row.replaces_id,
        stop_on=stop_on,
        reason=reason,
        today=today,
    )
    new_end = max(row.start_date, stop_on)
    row.ends_on = new_end if row.ends_on is None else min(row.ends_on, new_end)
    row.status = "stopped"
    row.status_reason = reason
    row.status_changed_at = now
    row.status_changed_by = access.actor.user_id
    access.db.flush()
    access.audit(
        "update",
        resource_type=PLAN,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"stopped from {stop_on.isoformat()}: {reason}"[:2000],
    )
    return row
