"""`tandem demo` step: medication plans in the synthetic program.

Patients in rehab or aftercare get screening facts and plans written by the demo prescriber
through the same service (so bounds, kidney limits and replacements are the real ones):
baclofen titrating, stable at target, and tapering to stop (one with reduced kidney function);
naltrexone and acamprosate at fixed doses (one acamprosate dose reduced for the kidneys); a
few screened but on no medication; the rest on nothing. Doses: the first days observed by the
nurse, then reported by the patient, mostly taken, an occasional isolated missed dose, and the
latest dose sometimes not yet reported. One baclofen patient has stopped reporting, which
raises the missed-dose alert for the prescriber. Side effects as the labels list them.
Synthetic shapes, not clinical data. Deterministic for `world.rng`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import insert
from sqlalchemy.orm import Session, sessionmaker

from tandem import clock
from tandem.access.audit import Origin
from tandem.access.credentials import actor_for
from tandem.access.guard import Access
from tandem.demo import DemoWorld
from tandem.medications.dose import Dose
from tandem.medications.dose_plan import plan_ceiling, renal_titration
from tandem.medications.facts import current_facts, record_facts, renal_of
from tandem.medications.missed_doses import sweep_missed_doses
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import create_maintenance, create_taper, create_titration, plan_of
from tandem.medications.schedule import planned_through
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.medications.unit_mar import set_program_shifts
from tandem.medications.validation import FactsInput
from tandem.storage.models import Patient

ORIGIN = Origin(channel="cli", user_agent="tandem demo")


@dataclass(frozen=True)
class Role:
    kind: str  # baclofen_titrating | baclofen_stable | baclofen_tapering | baclofen_renal | baclofen_lapsed
    # | naltrexone | acamprosate | acamprosate_renal | screened | none
    adherence: float = 0.9


ROLES = (
    Role("baclofen_titrating", 0.95),
    Role("baclofen_titrating", 0.85),
    Role("baclofen_titrating", 0.9),
    Role("baclofen_renal", 0.9),
    Role("baclofen_stable", 0.93),
    Role("baclofen_stable", 0.8),
    Role("baclofen_stable", 0.97),
    Role("baclofen_tapering", 0.9),
    Role("baclofen_tapering", 0.95),
    Role("baclofen_lapsed", 0.9),
    Role("naltrexone", 0.9),
    Role("naltrexone", 0.75),
    Role("naltrexone", 0.95),
    Role("acamprosate", 0.85),
    Role("acamprosate", 0.92),
    Role("acamprosate_renal", 0.9),
    Role("screened"),
    Role("screened"),
)
SIDE_EFFECTS = {
    "baclofen": [
        ("drowsiness", "mild", "worse after the evening dose"),
        ("dizziness", "mild", ""),
        ("weakness", "moderate", "legs feel heavy in the morning"),
        ("drowsiness", "moderate", ""),
        ("confusion", "mild", "brief, after a dose increase"),
        ("nausea", "mild", ""),
    ],
    "naltrexone": [("nausea", "mild", "first week"), ("headache", "mild", "")],
    "acamprosate": [("other", "mild", "loose stools"), ("fatigue", "mild", "")],
}


def _local(day: date, hour: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone)


def _candidates(world: DemoWorld) -> list[Patient]:
    out = []
    for patient in world.patients:
        if patient.program_id != world.program.id or patient.birth_date is None:
            continue
        episode = next((e for e in patient.episodes if e.discharged_at is None), None)
        if episode is not None and episode.phase in ("rehab", "aftercare"):
            out.append(patient)
    return out


def _facts(rng: random.Random, patient: Patient, role: Role, today: date) -> FactsInput:
    female = patient.gender == "female"
    creatinine = round(rng.uniform(0.6, 0.9) if female else rng.uniform(0.75, 1.15), 2)
    if role.kind == "baclofen_renal":
        creatinine = round(rng.uniform(1.25, 1.45), 2)
    if role.kind == "acamprosate_renal":
        creatinine = round(rng.uniform(1.8, 2.1), 2)
    taking: tuple[str, ...] = ("alcohol",) if rng.random() < 0.6 else ()
    if rng.random() < 0.15:
        taking += ("antihypertensives",)
    measured = today - timedelta(days=rng.randint(3, 25))
    values: dict[str, Any] = {
        "weight_kg": round(rng.uniform(54, 72) if female else rng.uniform(64, 98), 1),
        "weighed_on": measured,
        "creatinine_mg_dl": creatinine,
        "creatinine_on": measured,
        "on_dialysis": False,
        "seizure_history": rng.random() < 0.08,
        "psychosis_history": False,
        "stroke_history": False,
        "taking": taking,
        "alt_u_l": float(rng.randint(14, 48)),
        "ast_u_l": float(rng.randint(15, 45)),
        "liver_tests_on": measured,
        "acute_hepatitis": False,
        "liver_failure": False,
        "opioid_positive_test": False,
        "opioid_withdrawal_signs": False,
        "note": "Synthetic demo facts.",
    }
    if female:
        values.update(pregnant=False, breastfeeding=False)
    if role.kind.startswith("naltrexone"):
        values["last_opioid_use_on"] = None
    return FactsInput(**values)


def _records(
    db: Session,
    world: DemoWorld,
    patient: Patient,
    row: DosePlanRow,
    role: Role,
    nurse_id: int,
    rng: random.Random,
) -> None:
    """Doses due before now: the first two days observed by the nurse, then reported by the patient."""
    zone = clock.zone(patient.program.time_zone)
    today = clock.program_today(patient.program.time_zone, world.now)
    planned = [
        p for p in planned_through(plan_of(row), today, zone, row.ends_on) if p.due_at <= world.now
    ]
    mono = load_monograph(row.medication_id)
    administrations: list[dict[str, Any]] = []
    statements: list[dict[str, Any]] = []
    lapsed_from = len(planned) - 5 if role.kind == "baclofen_lapsed" else None
    previous_missed = False
    for i, dose in enumerate(planned):
        observed = dose.due_at.date() - row.start_date <= timedelta(days=1)
        latest = i == len(planned) - 1
        if lapsed_from is not None and i >= lapsed_from:
            if i < lapsed_from + 3:  # three reported missed, then silence
                statements.append(
                    _statement(patient, row, dose, False, "ran out", nurse_id, world.now)
                )
            continue
        if latest and rng.random() < 0.5 and not observed:
            continue  # not reported yet
        missed = not previous_missed and rng.random() > role.adherence
        previous_missed = missed
        if observed:
            given_at = dose.due_at + timedelta(minutes=rng.randint(-20, 40))
            administrations.append(
                dict(
                    patient_id=patient.id,
                    program_id=patient.program_id,
                    medication_id=row.medication_id,
                    medication_text=f"{mono.name} {dose.mg:g} mg",
                    dose_value=dose.mg,
                    dose_unit="mg",
                    route=mono.dosing.route or "oral",
                    status="not-done" if missed else "completed",
                    status_reason="patient declined" if missed else "",
                    indication="",
                    administered_at=given_at,
                    performer_id=nurse_id,
                    assessment_id=None,
                    dose_plan_id=row.id,
                    note="",
                    recorded_at=given_at + timedelta(minutes=5),
                    due_at=dose.due_at,
                )
            )
        else:
            reason = (
                rng.choice(["forgot", "asleep", "away from home", "felt too drowsy"])
                if missed
                else ""
            )
            statements.append(
                _statement(patient, row, dose, not missed, reason, nurse_id, world.now)
            )
    if administrations:
        ids = (
            db.execute(
                insert(MedicationAdministrationRow).returning(
                    MedicationAdministrationRow.id, sort_by_parameter_order=True
                ),
                [{k: v for k, v in a.items() if k != "due_at"} for a in administrations],
            )
            .scalars()
            .all()
        )
        db.execute(
            insert(AdministrationDueRow),
            [
                {"administration_id": i, "dose_plan_id": row.id, "due_at": a["due_at"]}
                for i, a in zip(ids, administrations, strict=True)
            ],
        )
    if statements:
        db.execute(insert(MedicationStatementRow), statements)


def _statement(
    patient: Patient,
    row: DosePlanRow,
    dose: Any,
    taken: bool,
    reason: str,
    recorder: int,
    now: datetime,
) -> dict[str, Any]:
    return dict(
        patient_id=patient.id,
        program_id=patient.program_id,
        dose_plan_id=row.id,
        medication_id=row.medication_id,
        due_at=dose.due_at,
        time_slot=dose.time_slot,
        dose_mg=dose.mg,
        taken=taken,
        reason=reason,
        reported_at=min(now, dose.due_at + timedelta(hours=10)),
        recorded_by=recorder,
    )


def _plans(
    access: Access, patient: Patient, role: Role, today: date, zone: ZoneInfo, rng: random.Random
) -> list[DosePlanRow]:
    def at(day: date) -> datetime:
        return _local(day, 9, zone)

    def target(start: date, wanted: str) -> str:
        """The prescriber's target, lowered as the patient's kidney function requires."""
        renal = renal_of(patient, current_facts(access, patient), at(start))
        ceiling = plan_ceiling("baclofen", renal)[0] or 80
        ladder = ("20mg-tid", "15mg-tid", "10mg-tid", "5mg-tid")
        options = ladder[ladder.index(wanted) :]
        return next((o for o in options if Dose.parse(o).mg_per_day <= ceiling), "5mg-tid")

    def opening(start: date, dose: str = "5mg-tid") -> tuple[str, float]:
        """The labelled start and step, reduced as the patient's kidney function requires."""
        reduced = renal_titration(
            "baclofen", renal_of(patient, current_facts(access, patient), at(start))
        )
        return (dose, 5.0) if reduced is None else (str(reduced[0]), reduced[1])

    kind = role.kind
    if kind in ("baclofen_titrating", "baclofen_renal"):
        start = today - timedelta(days=rng.randint(2, 9))
        goal = target(start, "15mg-tid" if kind == "baclofen_renal" else "20mg-tid")
        first_dose, step = opening(start)
        return [
            create_titration(
                access,
                patient.id,
                "baclofen",
                start=first_dose,
                step_mg=step,
                every_days=3,
                target=goal,
                start_date=start,
                now=at(start),
            )
        ]
    if kind in ("baclofen_stable", "baclofen_lapsed"):
        start = today - timedelta(days=rng.randint(18, 40))
        goal = target(start, rng.choice(["15mg-tid", "20mg-tid"]))
        first_dose, step = opening(start, "5mg-bid" if goal == "5mg-tid" else "5mg-tid")
        return [
            create_titration(
                access,
                patient.id,
                "baclofen",
                start=first_dose,
                step_mg=step,
                every_days=3,
                target=goal,
                start_date=start,
                now=at(start),
            )
        ]
    if kind == "baclofen_tapering":
        start = today - timedelta(days=rng.randint(30, 45))
        first_dose, step = opening(start)
        first = create_titration(
            access,
            patient.id,
            "baclofen",
            start=first_dose,
            step_mg=step,
            every_days=3,
            target=target(start, "20mg-tid"),
            start_date=start,
            now=at(start),
        )
        taper_start = today - timedelta(days=rng.randint(3, 7))
        second = create_taper(
            access,
            patient.id,
            "baclofen",
            from_dose=None,
            over_days=14,
            start_date=taper_start,
            now=at(taper_start),
        )
        return [first, second]
    if kind == "naltrexone":
        start = today - timedelta(days=rng.randint(5, 30))
        return [
            create_maintenance(
                access,
                patient.id,
                "naltrexone",
                dose="50mg-daily",
                start_date=start,
                protocol_max_mg_day=50,
                now=at(start),
            )
        ]
    if kind in ("acamprosate", "acamprosate_renal"):
        start = today - timedelta(days=rng.randint(5, 30))
        dose = "333mg-tid" if kind == "acamprosate_renal" else "666mg-tid"
        return [
            create_maintenance(
                access, patient.id, "acamprosate", dose=dose, start_date=start, now=at(start)
            )
        ]
    return []


def medication_plans(db: Session, world: DemoWorld) -> None:
    prescriber = world.users.get("prescriber")
    nurse = world.users.get("nurse")
    if prescriber is None or nurse is None:
        return
    rng = world.rng
    zone = clock.zone(world.program.time_zone)
    today = clock.program_today(world.program.time_zone, world.now)
    sessions = sessionmaker(bind=db.get_bind())
    access = Access(actor_for(prescriber), ORIGIN, db, sessions)
    nurse_access = Access(actor_for(nurse), ORIGIN, db, sessions)
    candidates = _candidates(world)
    login = world.users.get("patient")
    own = next((p for p in candidates if login is not None and p.id == login.patient_id), None)
    if own is not None:  # the demo patient login sees a plan of their own
        candidates.remove(own)
        candidates.insert(0, own)
    for patient, role in zip(candidates, ROLES, strict=False):
        facts_day = today - timedelta(days=rng.randint(35, 50))
        record_facts(
            nurse_access,
            patient.id,
            _facts(rng, patient, role, facts_day),
            now=_local(facts_day, 8, zone),
        )
        rows = _plans(access, patient, role, today, zone, rng)
        for row in rows:
            _records(db, world, patient, row, role, nurse.id, rng)
        if rows:
            medication = rows[-1].medication_id
            for effect, severity, detail in rng.sample(
                SIDE_EFFECTS[medication], k=rng.randint(0, 2)
            ):
                onset = max(
                    _local(rows[0].start_date, 20, zone) + timedelta(days=rng.randint(0, 4)),
                    _local(rows[0].start_date, 10, zone),
                )
                db.execute(
                    insert(SideEffectRow),
                    [
                        dict(
                            patient_id=patient.id,
                            program_id=patient.program_id,
                            medication_id=medication,
                            dose_plan_id=rows[-1].id,
                            effect=effect,
                            severity=severity,
                            detail=detail,
                            onset_at=min(onset, world.now),
                            recorded_at=min(onset + timedelta(hours=2), world.now),
                            recorded_by=nurse.id,
                        )
                    ],
                )
    db.flush()
    # The ward's nursing shifts, for the unit's medication record (the program's own setting).
    set_program_shifts(db, world.program.id, "07:00 19:00", "program setting")
    # The scheduled check a program runs: raises the missed-dose alert where a run is found.
    sweep_missed_doses(access, now=world.now)
