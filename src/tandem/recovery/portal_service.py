"""The patient portal's records: the daily check-in saved (one unit of work: the check-in, its
craving ratings, its use days and, through the medication domain, the doses reported), what the
check-in asks, the next sessions, the dose plans to show, and the weeks of craving and use the
"how am I doing" chart draws. Reads through `tandem.access.queries`, audited; never commits."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from sqlalchemy import delete, select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, patient_ref
from tandem.clock import local, program_today
from tandem.medications.dose_calendar import PlanView, plan_view
from tandem.medications.doses import record_statement
from tandem.medications.monograph import load_monograph
from tandem.medications.plans import effective_status, list_plans
from tandem.medications.resources import SIDE_EFFECT, STATEMENT
from tandem.medications.search import patient_rows
from tandem.medications.side_effects import record_side_effect
from tandem.medications.validation import recordable
from tandem.recovery.portal_checkin import (
    CheckInAnswers,
    DoseAsked,
    Form,
    read_answers,
    substances_asked,
)
from tandem.recovery.storage import (
    CarePlanRow,
    CheckInRow,
    CravingRatingRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.recovery.substances import Substance
from tandem.storage.models import Patient

# The resource types the policy, the audit trail and scopes name these records by. A check-in
# is its own type: a patient may record their own check-in, while questionnaire responses
# (withdrawal assessments among them) and observations stay staff-recorded.
CHECK_IN = "CheckIn"
CARE_PLAN = "CarePlan"
APPOINTMENT = "Appointment"
CONDITION = "Condition"  # the withdrawal context names the episode's substance


@dataclass
class CheckInForm:
    """What the check-in asks today, and what is already answered (a second check-in the same
    day shows and replaces the first)."""

    patient: Patient
    today: date
    substances: list[Substance]
    doses: list[DoseAsked]
    existing: CheckInRow | None = None
    values: dict[str, str | list[str]] = field(default_factory=dict)


def _withdrawal_substance(access: Access, patient: Patient) -> str | None:
    from tandem.withdrawal.storage import WithdrawalContextRow

    rows = patient_rows(
        access,
        CONDITION,
        WithdrawalContextRow,
        select(WithdrawalContextRow).order_by(WithdrawalContextRow.id.desc()).limit(1),
        patient,
        "withdrawal substance",
    )
    return rows[0].substance if rows else None


def care_plan(access: Access, patient: Patient) -> CarePlanRow | None:
    """The patient's care plan still in force (the latest started), if any."""
    rows = patient_rows(
        access,
        CARE_PLAN,
        CarePlanRow,
        select(CarePlanRow)
        .where(CarePlanRow.retention == "active")
        .order_by(CarePlanRow.started_on.desc(), CarePlanRow.id.desc())
        .limit(1),
        patient,
        "active care plan",
    )
    return rows[0] if rows else None


def patient_substances(access: Access, patient: Patient) -> list[Substance]:
    plan = care_plan(access, patient)
    if plan is not None and plan.substances:
        return substances_asked(plan.substances, None)
    return substances_asked(None, _withdrawal_substance(access, patient))


def active_plan_views(access: Access, patient: Patient, now: datetime) -> list[PlanView]:
    """The patient's dose plans in force today, each as the medication domain shows it."""
    today = program_today(patient.program.time_zone, now)
    return [
        plan_view(access, patient, row, now)
        for row in list_plans(access, patient)
        if effective_status(row, today) == "active"
    ]


def doses_asked(views: list[PlanView], patient: Patient, now: datetime) -> list[DoseAsked]:
    """The planned doses the check-in asks about: today's that are due (or nearly: the window
    the medication domain accepts reports in) and yesterday's, with the answers already given
    (a morning check-in reports last evening's dose; a second one may change it). Doses a
    nurse recorded as given or not are not asked."""
    zone = patient.program.time_zone
    today = program_today(zone, now)
    asked = []
    for view in views:
        name = load_monograph(view.row.medication_id).name
        for dose in view.doses:
            day = local(dose.planned.due_at, zone).date()
            if dose.state in ("given", "not_given") or not recordable(dose.planned.due_at, now):
                continue
            if day == today or (day == today - timedelta(days=1) and dose.state != "before_plan"):
                answer = dose.state if dose.state in ("taken", "missed") else ""
                asked.append(
                    DoseAsked(
                        view.row.id,
                        dose.planned.due_at,
                        name,
                        dose.planned.mg,
                        dose.planned.time_slot,
                        answer,
                    )
                )
    return sorted(asked, key=lambda d: (d.due_at, d.plan_id))


def _today_check_in(access: Access, patient: Patient, day: date) -> CheckInRow | None:
    rows = patient_rows(
        access,
        CHECK_IN,
        CheckInRow,
        select(CheckInRow).where(CheckInRow.day == day).order_by(CheckInRow.id.desc()).limit(1),
        patient,
        f"check-in day={day.isoformat()}",
    )
    return rows[0] if rows else None


def _values_of(access: Access, patient: Patient, row: CheckInRow) -> dict[str, str | list[str]]:
    """The answers of an earlier check-in, as the form's fields."""
    values: dict[str, str | list[str]] = {}
    for rating in patient_rows(
        access,
        CHECK_IN,
        CravingRatingRow,
        select(CravingRatingRow).where(CravingRatingRow.check_in_id == row.id),
        patient,
        f"check-in {row.id} cravings",
    ):
        values[f"craving_{rating.substance}"] = str(rating.rating)
    for use in patient_rows(
        access,
        CHECK_IN,
        UseDayRow,
        select(UseDayRow).where(UseDayRow.check_in_id == row.id),
        patient,
        f"check-in {row.id} use",
    ):
        values[f"use_{use.substance}"] = "yes" if use.used else "no"
        values["use_day"] = "today" if use.day == row.day else "yesterday"
        if use.standard_drinks is not None:
            values[f"drinks_{use.substance}"] = f"{use.standard_drinks:g}"
    effects, _, other = row.side_effects.partition("; ")
    values["side_effect"] = [e for e in effects.split(",") if e]
    values["side_effect_other"] = other
    values["side_effect_severity"] = row.side_effect_severity or ""
    values["mood"] = row.mood or ""
    values["note"] = row.note
    return values


def check_in_form(
    access: Access, patient_id: str, now: datetime, views: list[PlanView] | None = None
) -> CheckInForm:
    """What today's check-in asks, with today's earlier answers when there are some."""
    patient = load_patient(access, patient_id)
    today = program_today(patient.program.time_zone, now)
    if views is None:
        views = active_plan_views(access, patient, now)
    form = CheckInForm(
        patient, today, patient_substances(access, patient), doses_asked(views, patient, now)
    )
    form.existing = _today_check_in(access, patient, today)
    if form.existing is not None:
        form.values = _values_of(access, patient, form.existing)
    for dose in form.doses:
        form.values[dose.field] = dose.answer
    return form


@dataclass(frozen=True)
class Saved:
    check_in: CheckInRow
    updated: bool  # a second check-in the same day: today's answers were replaced
    answers: CheckInAnswers


def record_check_in(
    access: Access, patient_id: str, form: Form, now: datetime, source: str | None = None
) -> Saved:
    """Save a check-in from the form: every answer checked first (nothing is stored when one is
    refused), then the check-in, its craving ratings, its use days and the doses reported, in
    the caller's unit of work. A second check-in the same day replaces that day's answers."""
    # Both permissions first: a check-in may create today's or replace it. The patient's row is
    # locked (PostgreSQL) so that two check-ins sent at once do not make two of one day.
    patient = load_patient(
        access,
        patient_id,
        (Permission.CREATE, CHECK_IN),
        (Permission.UPDATE, CHECK_IN),
        audit=False,
        for_update=True,
    )
    if source is None:  # the patient in their portal, or a staff member with them
        source = "portal" if access.actor.patient_id == patient.id else "staff"
    today = program_today(patient.program.time_zone, now)
    views = active_plan_views(access, patient, now)
    asked = doses_asked(views, patient, now)
    answers = read_answers(form, patient_substances(access, patient), asked, today)
    # Every operation the answers lead to is asked of the policy before anything is written.
    if answers.doses:
        access.require(Permission.CREATE, STATEMENT, patient_ref(patient))
        access.require(Permission.UPDATE, STATEMENT, patient_ref(patient))
    if answers.side_effects and len(views) == 1:
        access.require(Permission.CREATE, SIDE_EFFECT, patient_ref(patient))
    row = access.db.scalar(
        select(CheckInRow)
        .where(CheckInRow.patient_id == patient.id, CheckInRow.day == today)
        .order_by(CheckInRow.id.desc())
        .limit(1)
    )
    updated = row is not None
    before = set(row.side_effects.partition("; ")[0].split(",")) if row is not None else set()
    if row is None:
        row = CheckInRow(patient_id=patient.id, program_id=patient.program_id, day=today)
        access.db.add(row)
    row.checked_in_at = now
    row.mood = answers.mood
    row.side_effects = answers.side_effects_text
    row.side_effect_severity = answers.side_effect_severity or None
    row.note = answers.note
    row.source = source
    row.recorded_at = now
    row.recorded_by = access.actor.user_id or None
    access.db.flush()
    if updated:
        # By the patient's day (the ratings' index) as well: check_in_id alone has no index.
        access.db.execute(
            delete(CravingRatingRow).where(
                CravingRatingRow.patient_id == patient.id,
                CravingRatingRow.day == row.day,
                CravingRatingRow.check_in_id == row.id,
            )
        )
    for substance_id, rating in answers.cravings.items():
        access.db.add(
            CravingRatingRow(
                patient_id=patient.id,
                program_id=patient.program_id,
                substance=substance_id,
                rating=rating,
                rated_at=now,
                day=today,
                source=source,
                check_in_id=row.id,
                recorded_at=now,
                recorded_by=row.recorded_by,
            )
        )
    _save_use(access, patient, row, answers, now, source)
    access.db.flush()
    access.audit(
        "update" if updated else "create",
        resource_type=CHECK_IN,
        resource_id=str(row.id),
        patient_id=patient.id,
        detail=f"check-in {today.isoformat()}: {len(answers.cravings)} craving ratings, "
        f"{len(answers.uses)} use answers, {len(answers.doses)} doses",
    )
    for dose in answers.doses:
        record_statement(
            access, patient.id, dose.plan_id, due_at=dose.due_at, taken=dose.taken, now=now
        )
    # Side effects reach the prescriber on the Medications tab (AdverseEvent) when the patient
    # takes one medicine, so that there is no doubt which one is suspected; with several, they
    # stay on the check-in. Only those not reported earlier today are added.
    if len(views) == 1:
        plan = views[0].row
        for effect in answers.side_effects:
            if effect in before:
                continue
            record_side_effect(
                access,
                patient.id,
                medication_id=plan.medication_id,
                effect=effect,
                severity=answers.side_effect_severity,
                onset_at=now,
                detail=answers.side_effect_other if effect == "other" else "",
                plan_id=plan.id,
                now=now,
            )
    return Saved(row, updated, answers)


def _save_use(
    access: Access,
    patient: Patient,
    row: CheckInRow,
    answers: CheckInAnswers,
    now: datetime,
    source: str,
) -> None:
    """One use day a substance: a later answer about the same day replaces the earlier one
    (whoever recorded it), as timeline follow-back keeps one answer a day."""
    existing = {
        use.substance: use
        for use in access.db.scalars(
            select(UseDayRow).where(
                UseDayRow.patient_id == patient.id, UseDayRow.day == answers.use_day
            )
        )
    }
    for answer in answers.uses:
        use = existing.get(answer.substance)
        if use is None:
            use = UseDayRow(
                patient_id=patient.id,
                program_id=patient.program_id,
                day=answers.use_day,
                substance=answer.substance,
            )
            access.db.add(use)
        use.used = answer.used
        use.standard_drinks = answer.standard_drinks
        use.source = source
        use.check_in_id = row.id
        use.recorded_at = now
        use.recorded_by = row.recorded_by


def next_sessions(
    access: Access, patient: Patient, now: datetime, limit: int = 5
) -> list[TherapySessionRow]:
    """The patient's booked sessions from now on, soonest first."""
    return patient_rows(
        access,
        APPOINTMENT,
        TherapySessionRow,
        select(TherapySessionRow)
        .where(TherapySessionRow.starts_at >= now, TherapySessionRow.status == "booked")
        .order_by(TherapySessionRow.starts_at)
        .limit(limit),
        patient,
        "next sessions",
    )


@dataclass(frozen=True)
class Week:
    """One week (Monday first) of a patient's own reports, for the "how am I doing" chart."""

    starts_on: date
    craving: dict[str, float]  # substance -> average craving that week (days reported)
    days_used: dict[str, int]  # substance -> days reported used
    days_reported: dict[str, int]  # substance -> days with a use answer
    drinks: float  # standard drinks that week


def progress_weeks(
    access: Access, patient: Patient, now: datetime, weeks: int = 12
) -> tuple[list[Week], list[Substance]]:
    """The last `weeks` weeks of the patient's craving ratings and use days, week by week."""
    today = program_today(patient.program.time_zone, now)
    first = today - timedelta(days=today.weekday() + 7 * (weeks - 1))
    ratings = patient_rows(
        access,
        CHECK_IN,
        CravingRatingRow,
        select(CravingRatingRow).where(CravingRatingRow.day >= first),
        patient,
        f"cravings since {first.isoformat()}",
    )
    uses = patient_rows(
        access,
        CHECK_IN,
        UseDayRow,
        select(UseDayRow).where(UseDayRow.day >= first),
        patient,
        f"use since {first.isoformat()}",
    )
    craving: dict[tuple[date, str], list[int]] = defaultdict(list)
    for rating in ratings:
        craving[(_monday(rating.day), rating.substance)].append(rating.rating)
    used: dict[tuple[date, str], int] = defaultdict(int)
    reported: dict[tuple[date, str], int] = defaultdict(int)
    drinks: dict[date, float] = defaultdict(float)
    for use in uses:
        key = (_monday(use.day), use.substance)
        reported[key] += 1
        used[key] += int(use.used)
        drinks[key[0]] += use.standard_drinks or 0.0
    asked = patient_substances(access, patient)
    seen = {s for _, s in craving} | {s for _, s in reported}
    from tandem.recovery.substances import substance as substance_of

    shown = asked + [substance_of(s) for s in sorted(seen - {a.id for a in asked})]
    out = []
    for n in range(weeks):
        monday = first + timedelta(days=7 * n)
        out.append(
            Week(
                monday,
                {
                    s.id: round(sum(v) / len(v), 1)
                    for s in shown
                    if (v := craving.get((monday, s.id)))
                },
                {s.id: used[(monday, s.id)] for s in shown if (monday, s.id) in reported},
                {s.id: reported[(monday, s.id)] for s in shown if (monday, s.id) in reported},
                round(drinks.get(monday, 0.0), 1),
            )
        )
    return out, shown


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())
