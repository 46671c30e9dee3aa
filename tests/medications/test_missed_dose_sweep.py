"""The missed-dose sweep reads only the plans that can have reached a run of missed doses; it
must never leave out one that has. Randomized histories (doses given, held, reported, recorded
twice for the same dose, given with no planned dose named) at random times, on both engines:
every plan the full check alerts on is among those the sweep checks, and the sweep raises
exactly the alerts the full check finds."""

from __future__ import annotations

import random
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
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


def _planned_records(
    rng: random.Random, row: DosePlanRow, patient: Patient, until: datetime, habit: str
) -> list[tuple[datetime, str, datetime]]:
    """What will be recorded against the plan's doses up to `until`, in a habit, as (when it
    is written, kind, the planned dose's due time), in the order written."""
    tz = zone(patient.program.time_zone)
    doses = planned_through(plan_of(row), until.astimezone(tz).date(), tz, row.ends_on)
    middays = [d for d in doses if d.due_at < until and d.time_slot == "midday"]
    stop = rng.choice(middays[len(middays) // 2 :]).due_at
    out = []
    for dose in doses:
        if dose.due_at > until:
            break
        roll = rng.random()
        if habit == "stops":
            kind = "given" if dose.due_at < stop else "held"
        elif habit == "adherent" and roll < 0.9 or habit == "patchy" and roll < 0.5:
            kind = "given"
        elif habit == "silent" or roll < 0.6:
            continue
        else:
            kind = rng.choice(("held", "reported", "missed_report", "unlinked", "twice"))
        out.append((dose.due_at + timedelta(minutes=rng.randint(0, 240)), kind, dose.due_at))
    return sorted(out)


def _write(db, row: DosePlanRow, patient: Patient, kind: str, due_at: datetime, nurse: int) -> None:  # type: ignore[no-untyped-def]
    mg = Decimal("5")
    if kind in ("reported", "missed_report"):
        db.add(
            MedicationStatementRow(
                patient_id=patient.id, program_id=patient.program_id, dose_plan_id=row.id,
                medication_id=row.medication_id, due_at=due_at, time_slot="", dose_mg=mg,
                taken=kind == "reported", reason="", reported_at=due_at + timedelta(hours=1),
                recorded_by=nurse,
            )
        )  # fmt: skip
        db.flush()
        return
    statuses = {"given": ["completed"], "held": ["not-done"], "unlinked": ["completed"]}
    for status in statuses.get(kind, ["completed", "not-done"]):
        admin = MedicationAdministrationRow(
            patient_id=patient.id, program_id=patient.program_id,
            medication_id=row.medication_id, medication_text="baclofen", dose_value=mg,
            dose_unit="mg", route="oral", status=status, status_reason="", indication="",
            administered_at=due_at + timedelta(minutes=20), performer_id=nurse,
            dose_plan_id=row.id, note="",
        )  # fmt: skip
        db.add(admin)
        db.flush()
        if kind != "unlinked":
            db.add(
                AdministrationDueRow(administration_id=admin.id, dose_plan_id=row.id, due_at=due_at)
            )
            db.flush()


@pytest.mark.parametrize("ahead", [False, True], ids=["recorded_as_they_go", "all_recorded_first"])
def test_stored_checks_raise_every_alert_the_full_check_would_when_it_would(
    sessions, world: World, ahead: bool
) -> None:
    """The sweep keeps, per plan, when its next alert can fall due, and looks at a plan again
    only then or once something is recorded against it. Sweeps every 15 to 45 minutes over
    the last three of six days while doses are recorded (given, held, reported, given twice, unlinked),
    against the full check of every plan at every sweep: the same alerts, at the same sweeps.
    With every record written first, only time moves the plans' states: when a stored check
    says to look again is all that decides when an alert is raised."""
    from tandem.medications.missed_doses import _active, _rules

    rng = random.Random(902)
    start = datetime.now(UTC).astimezone(NY).date() - timedelta(days=6)
    written = datetime.combine(start, time(7), NY)
    end = datetime.now(UTC)
    habits = ("stops", "patchy", "silent", "mixed", "adherent", "stops", "patchy", "mixed")
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        nurse = db.scalar(select(User.id).where(User.email == world.email("nurse")))
        assert nurse is not None
        rows = []
        for i, patient_id in enumerate(_patients(db, world, len(habits))):
            if i % 3 == 0:
                row = create_maintenance(
                    access, patient_id, "baclofen", dose="5mg-qid", start_date=start, now=written
                )
            else:
                row = create_titration(
                    access, patient_id, "baclofen", start="5mg-tid", step_mg=5,
                    every_days=2, target="15mg-tid", start_date=start, now=written,
                )  # fmt: skip
            rows.append(row)
        patients = {row.id: db.get(Patient, row.patient_id) for row in rows}
        pending = sorted(
            (at, row.id, kind, due_at)
            for row, habit in zip(rows, habits, strict=True)
            for at, kind, due_at in _planned_records(rng, row, patients[row.id], end, habit)
        )
        by_id = {row.id: row for row in rows}
        expected_last: dict[int, datetime] = {}
        now = written + timedelta(days=3)
        sweeps = skipped = alerts = 0
        while now < end:
            while pending and (ahead or pending[0][0] <= now):
                _at, plan_id, kind, due_at = pending.pop(0)
                _write(db, by_id[plan_id], patients[plan_id], kind, due_at, nurse)
            expected = set()
            for row in rows:
                patient = patients[row.id]
                assert patient is not None
                found = _missed_run(_line(row, patient), recorded_doses(db, row), now)
                last = expected_last.get(row.id)
                if found is not None and (last is None or last < found.since):
                    expected.add(str(row.id))
                    expected_last[row.id] = now
            system = system_access(db, sessions, "test")
            skipped += len(_active(system, now)) - len(_active(system, now, _rules()))
            raised = sweep_missed_doses(system, now)
            assert {a.related_id for a in raised} == expected, now
            sweeps += 1
            alerts += len(raised)
            now += timedelta(minutes=rng.choice((15, 30, 45)))
        assert sweeps > 100 and alerts >= 3  # runs were reached, several times
        assert skipped > 0  # and the stored checks did leave plans out
        db.rollback()


def test_a_dose_recorded_makes_the_plans_stored_check_stale(sessions, world: World) -> None:
    """A record written by any path (here a bare row, as an import would write it) counts up
    the plan's records version, so the sweep looks at the plan again."""
    from tandem.medications.missed_doses import _active, _rules

    start = datetime.now(UTC).astimezone(NY).date() - timedelta(days=2)
    written = datetime.combine(start, time(7), NY)
    now = datetime.now(UTC)
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        nurse = db.scalar(select(User.id).where(User.email == world.email("nurse")))
        assert nurse is not None
        row = create_maintenance(
            access, world.patient_a, "baclofen", dose="10mg-tid", start_date=start, now=written
        )
        db.commit()
        system = system_access(db, sessions, "test")
        sweep_missed_doses(system, now)
        db.commit()
        assert row.id not in [p.plan_id for p in _active(system, now, _rules())]
        patient = db.get(Patient, row.patient_id)
        assert patient is not None
        _write(db, row, patient, "given", now - timedelta(hours=1), nurse)
        db.commit()
        assert row.id in [p.plan_id for p in _active(system, now, _rules())]
