"""The missed-dose sweep reads only the plans that can have reached a run of missed doses; it
must never leave out one that has. Randomized histories (doses given, held, reported, recorded
twice for the same dose, given with no planned dose named) at random times, on both engines:
every plan the full check alerts on is among those the sweep checks, and the sweep raises
exactly the alerts the full check finds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import func, select

from tandem.access.guard import system_access
from tandem.alerts.models import Alert
from tandem.clock import zone
from tandem.medications.dose_calendar import recorded_doses
from tandem.medications.missed_doses import (
    _missed_run,
    _PlanLine,
    due_for_check,
    sweep_missed_doses,
)
from tandem.medications.plans import create_maintenance, create_titration, plan_of
from tandem.medications.schedule import planned_through
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
)
from tandem.storage.models import Patient, User
from tests.conftest import World
from tests.medications.conftest import NY, access_for


def _line(row: DosePlanRow, patient: Patient) -> _PlanLine:
    return _PlanLine(
        row.id,
        patient.id,
        patient.program_id,
        row.medication_id,
        row.status,
        row.ends_on,
        row.created_at,
        patient.program.time_zone,
        plan_of(row),
    )


def _history(
    db,
    rng: random.Random,
    row: DosePlanRow,
    patient: Patient,
    until: datetime,
    nurse: int,
    habit: str,
) -> None:  # type: ignore[no-untyped-def]
    """Records against the plan's doses up to `until`, in one of a few habits."""
    tz = zone(patient.program.time_zone)
    doses = planned_through(plan_of(row), until.astimezone(tz).date(), tz, row.ends_on)
    # "stops": held from a midday dose on, the shortest run of three with these slot times.
    stop = rng.choice([d for d in doses if d.due_at < until and d.time_slot == "midday"]).due_at
    for dose in doses:
        if dose.due_at > until:
            break
        roll = rng.random()
        if habit == "stops":
            kind = "given" if dose.due_at < stop else "held"
        elif habit == "adherent" and roll < 0.9 or habit == "patchy" and roll < 0.5:
            kind = "given"
        elif habit == "silent" or roll < 0.7:
            continue  # nothing recorded
        else:
            kind = rng.choice(("held", "reported", "missed_report", "unlinked", "twice"))
        if kind in ("reported", "missed_report"):
            db.add(
                MedicationStatementRow(
                    patient_id=patient.id,
                    program_id=patient.program_id,
                    dose_plan_id=row.id,
                    medication_id=row.medication_id,
                    due_at=dose.due_at,
                    time_slot=dose.time_slot,
                    dose_mg=dose.mg,
                    taken=kind == "reported",
                    reason="",
                    reported_at=dose.due_at + timedelta(hours=1),
                    recorded_by=nurse,
                )
            )
            continue
        statuses = {"given": ["completed"], "held": ["not-done"], "unlinked": ["completed"]}
        # Recorded twice: given, then corrected to not given (the later record decides).
        for status in statuses.get(kind, ["completed", "not-done"]):
            admin = MedicationAdministrationRow(
                patient_id=patient.id,
                program_id=patient.program_id,
                medication_id=row.medication_id,
                medication_text=f"{row.medication_id} {dose.mg:g} mg",
                dose_value=Decimal(str(dose.mg)),
                dose_unit="mg",
                route="oral",
                status=status,
                status_reason="" if status == "completed" else "Held",
                indication="",
                administered_at=dose.due_at + timedelta(minutes=rng.randint(-30, 90)),
                performer_id=nurse,
                dose_plan_id=row.id,
                note="",
            )
            db.add(admin)
            db.flush()
            if kind != "unlinked":
                db.add(
                    AdministrationDueRow(
                        administration_id=admin.id, dose_plan_id=row.id, due_at=dose.due_at
                    )
                )
    db.flush()
    return stop


def _patients(db, world: World, n: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Patients of program A (one active plan of a medication each)."""
    out = []
    for i in range(n):
        patient = Patient(program_id=world.program_a, family=f"Sweep{i:02d}", given="Sam")
        db.add(patient)
        db.flush()
        out.append(patient.id)
    return out


def test_the_sweep_checks_every_plan_that_has_a_run_of_missed_doses(sessions, world: World) -> None:
    rng = random.Random(20261202)
    start = datetime.now(UTC).astimezone(NY).date() - timedelta(days=6)
    written = datetime.combine(start, time(7), NY)
    habits = ("adherent", "patchy", "silent", "mixed", "stops", "stops")
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        nurse = db.scalar(select(User.id).where(User.email == world.email("nurse")))
        assert nurse is not None
        rows = []
        for i, patient_id in enumerate(_patients(db, world, 12)):
            if i % 3 == 0:
                row = create_maintenance(
                    access, patient_id, "baclofen", dose="5mg-qid",
                    start_date=start + timedelta(days=i % 2), now=written,
                )  # fmt: skip
            else:
                row = create_titration(
                    access, patient_id, "baclofen", start="5mg-tid", step_mg=5,
                    every_days=2, target="15mg-tid", start_date=start, now=written,
                )  # fmt: skip
            rows.append(row)
        end = datetime.now(UTC)
        # Just after a run of held doses is as long as the threshold is where leaving a plan
        # out would be wrong: look there hour by hour, and at random times.
        nows = [written + (end - written) * rng.random() for _ in range(10)]
        for i, row in enumerate(rows):
            patient = db.get(Patient, row.patient_id)
            assert patient is not None
            habit = "stops" if i % 3 == 0 else habits[i % len(habits)]
            stop = _history(db, rng, row, patient, end, nurse, habit)
            if habit == "stops":
                nows += [stop + timedelta(minutes=30 * k) for k in range(18, 26)]
        checked = left_out = 0
        for now in nows:
            due = set(due_for_check(system_access(db, sessions, "test"), now))
            for row in rows:
                patient = db.get(Patient, row.patient_id)
                assert patient is not None
                found = _missed_run(_line(row, patient), recorded_doses(db, row), now)
                if found is not None:
                    checked += 1
                    assert row.id in due, (row.id, now, found)
                left_out += row.id not in due
        assert checked > 0  # the histories do reach runs of missed doses
        assert left_out > 0  # and the sweep does leave plans out
        db.rollback()


def test_the_sweep_raises_what_the_full_check_finds_once(sessions, world: World) -> None:
    rng = random.Random(7)
    start = datetime.now(UTC).astimezone(NY).date() - timedelta(days=4)
    written = datetime.combine(start, time(7), NY)
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        nurse = db.scalar(select(User.id).where(User.email == world.email("nurse")))
        assert nurse is not None
        rows = [
            create_maintenance(
                access, world.patient_a, medication, dose=dose, start_date=start, now=written
            )
            for medication, dose in (("baclofen", "10mg-tid"), ("acamprosate", "666mg-tid"))
        ]
        rows.append(
            create_titration(
                access,
                world.patient_a2,
                "baclofen",
                start="5mg-tid",
                step_mg=5,
                every_days=2,
                target="15mg-tid",
                start_date=start,
                now=written,
            )  # fmt: skip
        )
        now = datetime.now(UTC)
        habits = ("adherent", "silent", "silent")
        for row, habit in zip(rows, habits, strict=True):
            patient = db.get(Patient, row.patient_id)
            assert patient is not None
            _history(db, rng, row, patient, now, nurse, habit)
        expected = set()
        for row in rows:
            patient = db.get(Patient, row.patient_id)
            assert patient is not None
            if _missed_run(_line(row, patient), recorded_doses(db, row), now) is not None:
                expected.add(str(row.id))
        db.commit()
    # The silent baclofen plan alerts; acamprosate has no missed-run threshold.
    assert expected == {str(rows[2].id)}
    with sessions() as db:
        raised = sweep_missed_doses(system_access(db, sessions, "test"), now)
        assert {a.related_id for a in raised} == expected
        assert all(a.kind == "missed_doses" and a.for_role == "prescriber" for a in raised)
        db.commit()
    with sessions() as db:
        assert sweep_missed_doses(system_access(db, sessions, "test"), now) == []
        db.commit()
        assert db.scalar(select(func.count()).select_from(Alert)) == len(expected)
