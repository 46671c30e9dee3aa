"""The rehab program of one patient: a care plan (counselor, substances addressed, services and
how often), its retention status (active, dropped out, completed) with the history of changes.

Pure checks first (`check_*`, plain values in, InvalidInput naming the field out), then the
services that store through the data-access layer and audit. Services never commit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from tandem.access.guard import Access
from tandem.access.policy import STAFF_ROLES, Permission
from tandem.access.queries import load_patient, patient_ref, read_row
from tandem.clock import program_today
from tandem.errors import InvalidInput
from tandem.recovery.storage import CarePlanRow, CarePlanServiceRow, RetentionEventRow
from tandem.recovery.substances import substance
from tandem.recovery.use_records import patient_rows
from tandem.storage.models import Membership, Patient, User

DATA = Path(__file__).parent / "data" / "care_services.yaml"
CARE_PLAN = "CarePlan"


class _Term(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    id: str = Field(pattern=r"^[a-z][a-z_]*$", max_length=30)
    label: str
    plain: str = ""
    minutes: int | None = Field(default=None, ge=5, le=480)


class _Vocabulary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    services: tuple[_Term, ...] = Field(min_length=1)
    frequencies: tuple[_Term, ...] = Field(min_length=1)
    retention: tuple[_Term, ...] = Field(min_length=1)


@functools.cache
def vocabulary() -> _Vocabulary:
    found = _Vocabulary.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8")))
    if {t.id for t in found.retention} != {"active", "dropped_out", "completed"}:
        raise ValueError(f"{DATA.name}: retention must be active, dropped_out, completed")
    return found


def services() -> dict[str, _Term]:
    return {t.id: t for t in vocabulary().services}


def frequencies() -> dict[str, _Term]:
    return {t.id: t for t in vocabulary().frequencies}


def retention_labels() -> dict[str, str]:
    return {t.id: t.label for t in vocabulary().retention}


# --------------------------------------------------------------------------- pure checks


@dataclass(frozen=True)
class PlannedService:
    service: str
    frequency: str


def check_service(service_id: str, field: str = "service") -> str:
    if service_id not in services():
        raise InvalidInput(field, f"choose one of: {', '.join(services())}")
    return service_id


def check_plan(
    substances: Sequence[str],
    planned: Sequence[PlannedService],
    started_on: date,
    today: date,
    title: str = "",
) -> tuple[tuple[str, ...], tuple[PlannedService, ...]]:
    """The substances and services of a plan as they may be stored."""
    if not substances:
        raise InvalidInput("substances", "choose at least one substance the plan addresses")
    ids = tuple(dict.fromkeys(substance(s, "substances").id for s in substances))
    if not planned:
        raise InvalidInput("services", "choose at least one service")
    seen: set[str] = set()
    out = []
    for p in planned:
        check_service(p.service, f"services.{p.service}" if p.service else "services")
        if p.frequency not in frequencies():
            raise InvalidInput(f"frequency.{p.service}", "choose how often")
        if p.service in seen:
            raise InvalidInput(f"services.{p.service}", "listed twice")
        seen.add(p.service)
        out.append(p)
    if started_on > today:
        raise InvalidInput("started_on", "a plan starts today or earlier")
    if len(title) > 200:
        raise InvalidInput("title", "at most 200 characters")
    return ids, tuple(out)


def check_retention(
    current: str, wanted: str, on_day: date, started_on: date, last_change: date, today: date
) -> None:
    if wanted not in retention_labels():
        raise InvalidInput("retention", f"one of: {', '.join(retention_labels())}")
    if wanted == current:
        raise InvalidInput("retention", f"the plan is already {retention_labels()[wanted].lower()}")
    if on_day > today:
        raise InvalidInput("on_day", "the change cannot be dated in the future")
    if on_day < started_on:
        raise InvalidInput("on_day", f"the plan started on {started_on.isoformat()}")
    if on_day < last_change:
        raise InvalidInput("on_day", f"the last change was on {last_change.isoformat()}")


# --------------------------------------------------------------------------- services


def staff_member(access: Access, user_id: int | None, program_id: int, field: str) -> int | None:
    """A staff member of the program (active), or InvalidInput naming `field`."""
    if user_id is None:
        return None
    user = access.db.scalar(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(User.id == user_id, Membership.program_id == program_id)
    )
    if user is None or not user.active or user.role not in {r.value for r in STAFF_ROLES}:
        raise InvalidInput(field, "choose a staff member of the patient's program")
    return user.id


def program_staff(access: Access, program_id: int) -> list[User]:
    """Active staff of a program, counselors first, for the forms' choices."""
    rows = access.db.scalars(
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(
            Membership.program_id == program_id,
            User.active.is_(True),
            User.role.in_(sorted(r.value for r in STAFF_ROLES)),
        )
        .order_by(User.display_name)
    )
    return sorted(rows, key=lambda u: (u.role != "counselor", u.display_name))


def care_team_counselor(access: Access, patient: Patient) -> int | None:
    """The counselor of the patient's care plan in force (the latest started), when they are
    still an active counselor of the patient's program: whom an urgent answer of the patient is
    addressed to besides the prescriber. The caller has loaded the patient through the policy to
    save the answer; this routes the alert that answer raises and shows the actor nothing (the
    alert's own audit entry names the addressee), so it is not a read of the care plan."""
    return access.db.scalar(
        select(User.id)
        .join(CarePlanRow, CarePlanRow.counselor_id == User.id)
        .join(
            Membership,
            (Membership.user_id == User.id) & (Membership.program_id == patient.program_id),
        )
        .where(
            CarePlanRow.patient_id == patient.id,
            CarePlanRow.program_id == patient.program_id,
            CarePlanRow.retention == "active",
            User.active.is_(True),
            User.role == "counselor",
        )
        .order_by(CarePlanRow.started_on.desc(), CarePlanRow.id.desc())
        .limit(1)
    )


def active_plan(access: Access, patient: Patient) -> CarePlanRow | None:
    plans = patient_plans(access, patient)
    return next((p for p in plans if p.retention == "active"), plans[0] if plans else None)


def patient_plans(access: Access, patient: Patient) -> list[CarePlanRow]:
    """The patient's care plans, the newest first."""
    return patient_rows(
        access,
        CARE_PLAN,
        CarePlanRow,
        select(CarePlanRow).order_by(CarePlanRow.started_on.desc(), CarePlanRow.id.desc()),
        patient,
        f"patient={patient.id}",
    )


def plan_services(
    access: Access, plan: CarePlanRow, current_only: bool = True
) -> list[CarePlanServiceRow]:
    statement = select(CarePlanServiceRow).where(CarePlanServiceRow.care_plan_id == plan.id)
    if current_only:
        statement = statement.where(CarePlanServiceRow.ended_on.is_(None))
    return list(access.db.scalars(statement.order_by(CarePlanServiceRow.id)))


def retention_history(access: Access, plan: CarePlanRow) -> list[RetentionEventRow]:
    return list(
        access.db.scalars(
            select(RetentionEventRow)
            .where(RetentionEventRow.care_plan_id == plan.id)
            .order_by(RetentionEventRow.on_day, RetentionEventRow.id)
        )
    )


def create_care_plan(
    access: Access,
    patient_id: str,
    *,
    counselor_id: int | None,
    substances: Sequence[str],
    planned: Sequence[PlannedService],
    started_on: date,
    now: datetime,
    title: str = "",
    note: str = "",
) -> CarePlanRow:
    patient = load_patient(access, patient_id, (Permission.CREATE, CARE_PLAN), audit=False)
    today = program_today(patient.program.time_zone, now)
    ids, checked = check_plan(substances, planned, started_on, today, title)
    counselor = staff_member(access, counselor_id, patient.program_id, "counselor")
    open_plan = access.db.scalar(
        select(CarePlanRow.id).where(
            CarePlanRow.patient_id == patient.id, CarePlanRow.retention == "active"
        )
    )
    if open_plan is not None:
        raise InvalidInput("care_plan", "this patient is already in an active plan: change it")
    plan = CarePlanRow(
        patient_id=patient.id,
        program_id=patient.program_id,
        title=title.strip(),
        substances=list(ids),
        counselor_id=counselor,
        started_on=started_on,
        retention="active",
        retention_on=started_on,
        note=note.strip()[:4000],
        created_at=now,
        created_by=access.actor.user_id or None,
    )
    access.db.add(plan)
    access.db.flush()
    for p in checked:
        access.db.add(
            CarePlanServiceRow(
                care_plan_id=plan.id,
                patient_id=patient.id,
                program_id=patient.program_id,
                service=p.service,
                frequency=p.frequency,
                started_on=started_on,
            )
        )
    access.db.add(
        RetentionEventRow(
            care_plan_id=plan.id,
            patient_id=patient.id,
            program_id=patient.program_id,
            retention="active",
            on_day=started_on,
            note="plan started",
            recorded_at=now,
            recorded_by=access.actor.user_id or None,
        )
    )
    access.db.flush()
    access.audit(
        "create",
        resource_type=CARE_PLAN,
        resource_id=str(plan.id),
        patient_id=patient.id,
        detail=f"services: {', '.join(p.service for p in checked)}",
    )
    return plan


def get_care_plan(access: Access, plan_id: int) -> CarePlanRow:
    return read_row(access, CARE_PLAN, CarePlanRow, plan_id)


def plan_for_update(access: Access, patient_id: str, plan_id: int) -> tuple[Patient, CarePlanRow]:
    """The patient's plan, for someone who may change it (refused and audited otherwise)."""
    patient = load_patient(access, patient_id, (Permission.UPDATE, CARE_PLAN), audit=False)
    plan = access.db.get(CarePlanRow, plan_id)
    if plan is None or plan.patient_id != patient.id:
        raise InvalidInput("care_plan", "choose one of this patient's care plans")
    return patient, plan


def update_care_plan(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    counselor_id: int | None,
    substances: Sequence[str],
    planned: Sequence[PlannedService],
    now: datetime,
    title: str = "",
) -> CarePlanRow:
    """Change the counselor, substances and services: a service taken off ends today (kept as
    history), a new one starts today, a changed frequency is changed in place."""
    patient, plan = plan_for_update(access, patient_id, plan_id)
    today = program_today(patient.program.time_zone, now)
    ids, checked = check_plan(substances, planned, plan.started_on, today, title)
    plan.counselor_id = staff_member(access, counselor_id, patient.program_id, "counselor")
    plan.substances = list(ids)
    plan.title = title.strip()
    current = {s.service: s for s in plan_services(access, plan)}
    wanted = {p.service: p for p in checked}
    for service_id, row in current.items():
        if service_id not in wanted:
            row.ended_on = today
        else:
            row.frequency = wanted[service_id].frequency
    for service_id, p in wanted.items():
        if service_id not in current:
            access.db.add(
                CarePlanServiceRow(
                    care_plan_id=plan.id,
                    patient_id=patient.id,
                    program_id=patient.program_id,
                    service=service_id,
                    frequency=p.frequency,
                    started_on=today,
                )
            )
    access.db.flush()
    access.audit(
        "update",
        resource_type=CARE_PLAN,
        resource_id=str(plan.id),
        patient_id=patient.id,
        detail=f"services: {', '.join(wanted)}",
    )
    return plan


def change_retention(
    access: Access,
    patient_id: str,
    plan_id: int,
    *,
    retention: str,
    on_day: date,
    now: datetime,
    note: str = "",
) -> RetentionEventRow:
    """Record that the patient dropped out, completed or is back in treatment, from `on_day`."""
    patient, plan = plan_for_update(access, patient_id, plan_id)
    today = program_today(patient.program.time_zone, now)
    history = retention_history(access, plan)
    last = history[-1].on_day if history else plan.started_on
    check_retention(plan.retention, retention, on_day, plan.started_on, last, today)
    if retention == "active":
        other = access.db.scalar(
            select(CarePlanRow.id).where(
                CarePlanRow.patient_id == patient.id,
                CarePlanRow.retention == "active",
                CarePlanRow.id != plan.id,
            )
        )
        if other is not None:
            raise InvalidInput("retention", "another plan of this patient is active")
    event = RetentionEventRow(
        care_plan_id=plan.id,
        patient_id=patient.id,
        program_id=patient.program_id,
        retention=retention,
        on_day=on_day,
        note=note.strip()[:2000],
        recorded_at=now,
        recorded_by=access.actor.user_id or None,
    )
    access.db.add(event)
    plan.retention = retention
    plan.retention_on = on_day
    access.db.flush()
    access.audit(
        "update",
        resource_type=CARE_PLAN,
        resource_id=str(plan.id),
        patient_id=patient.id,
        detail=f"retention: {retention} from {on_day.isoformat()}",
    )
    return event


def may_change(access: Access, patient: Patient) -> bool:
    from tandem.access.policy import decide

    return bool(decide(access.actor, Permission.UPDATE, CARE_PLAN, patient_ref(patient)))


# --------------------------------------------------------------------------- from the API


@dataclass(frozen=True)
class PlanWrite:
    """A care plan as an API client writes it (a FHIR CarePlan, read by `care_fhir`)."""

    patient_id: str
    retention: str
    substances: tuple[str, ...]
    services: tuple[PlannedService, ...]
    title: str
    started_on: date | None
    ended_on: date | None


def create_from_api(access: Access, given: PlanWrite, now: datetime) -> CarePlanRow:
    """A new plan from an API client: it starts active, on its start day; the counselor is
    chosen on the care plan page."""
    if given.retention != "active":
        raise InvalidInput("retention", "a new plan starts active")
    if given.ended_on is not None:
        raise InvalidInput("ended_on", "a new plan has not ended: leave its end out")
    if given.started_on is None:
        raise InvalidInput("started_on", "give the day the plan starts")
    return create_care_plan(
        access,
        given.patient_id,
        counselor_id=None,
        substances=given.substances,
        planned=given.services,
        started_on=given.started_on,
        now=now,
        title=given.title,
    )


def update_from_api(access: Access, plan_id: int, given: PlanWrite, now: datetime) -> CarePlanRow:
    """An API client's change of a plan: its substances, services and title, and its status
    (dropped out or completed from the plan's end day, or active again from today). Its start
    day and counselor stay as they are."""
    patient, plan = plan_for_update(access, given.patient_id, plan_id)
    if given.started_on is not None and given.started_on != plan.started_on:
        raise InvalidInput("started_on", "a plan's start day cannot be moved")
    if given.retention == "active" and given.ended_on is not None:
        raise InvalidInput("ended_on", "an active plan has not ended: leave its end out")
    if given.retention == plan.retention and given.retention != "active":
        if given.ended_on is not None and given.ended_on != plan.retention_on:
            raise InvalidInput("ended_on", "to change the end day, record the change on the page")
    update_care_plan(
        access,
        patient.id,
        plan.id,
        counselor_id=plan.counselor_id,
        substances=given.substances,
        planned=given.services,
        now=now,
        title=given.title,
    )
    if given.retention != plan.retention:
        today = program_today(patient.program.time_zone, now)
        on_day = today if given.retention == "active" else given.ended_on
        if on_day is None:
            raise InvalidInput("ended_on", "give the day the plan ended (its period's end)")
        change_retention(
            access,
            patient.id,
            plan.id,
            retention=given.retention,
            on_day=on_day,
            now=now,
            note="recorded through the API",
        )
    return plan
