"""A counselor's caseload: the patients with an active care plan they counsel (or the whole
program's), each with the risk flags the program's rules raise, most serious first.

Every flag is computed in the database, one grouped query per kind of flag over the whole
caseload (never every row loaded into Python); each query is limited by `visible(...)`, so the
policy applies, and the page is audited with every patient it shows. The rules (thresholds,
windows, sentences) are the program's data: `program_rules(db, program_id)`.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import bindparam, case, distinct, false, func, select, update
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import BindParameter

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import Permission, Role
from tandem.access.queries import visible
from tandem.clock import program_today, utcnow, zone
from tandem.errors import NotFound
from tandem.instruments.engine import get_instrument
from tandem.medications.storage import MedicationStatementRow
from tandem.recovery import caseload_rules as rules_core
from tandem.recovery.caseload_rules import RaisedFlag, RiskFlagRules, rules_from_mapping
from tandem.recovery.caseload_storage import RiskFlagVersionRow
from tandem.recovery.storage import (
    CarePlanRow,
    CheckInRow,
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    QuestionnaireResponseRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.models import Patient, Program

CARE_PLAN = "CarePlan"
OBSERVATION = "Observation"
ENCOUNTER = "Encounter"
RESPONSE = "QuestionnaireResponse"
STATEMENT = "MedicationStatement"
MAX_SHOWN = 2000  # a whole program's caseload beyond this is cut (and the page says so)
LONG_AGO = date(1900, 1, 1)
# The caseload's patient ids, bound once as a list (not 200 literals coerced one by one in
# every statement).
CASELOAD: BindParameter[Any] = bindparam("caseload", expanding=True)


# --------------------------------------------------------------------------- program rules


@dataclass(frozen=True)
class ProgramRules:
    version_id: int | None  # None: the shipped example, the program has not set its own
    rules: RiskFlagRules
    origin: str  # example | program


@functools.lru_cache(maxsize=64)
def _parsed(content_hash: str, document: str) -> RiskFlagRules:
    import json

    return rules_from_mapping(json.loads(document), f"risk-flag version {content_hash[:12]}")


def program_rules(db: Session, program_id: int) -> ProgramRules:
    """The program's current risk-flag rules; the shipped example for a program without."""
    row = db.scalar(
        select(RiskFlagVersionRow)
        .where(RiskFlagVersionRow.program_id == program_id, RiskFlagVersionRow.is_current)
        .order_by(RiskFlagVersionRow.id.desc())
        .limit(1)
    )
    if row is None:
        return ProgramRules(None, rules_core.example_rules(), "example")
    import json

    document = json.dumps(row.document, sort_keys=True)
    return ProgramRules(row.id, _parsed(row.content_hash, document), "program")


def set_program_rules(
    db: Session, program_id: int, rules: RiskFlagRules, by: int | None = None
) -> ProgramRules:
    """Make `rules` the program's current version (every earlier version kept)."""
    existing = db.scalar(
        select(RiskFlagVersionRow).where(
            RiskFlagVersionRow.program_id == program_id,
            RiskFlagVersionRow.content_hash == rules.content_hash,
        )
    )
    db.execute(
        update(RiskFlagVersionRow)
        .where(RiskFlagVersionRow.program_id == program_id)
        .values(is_current=False)
    )
    if existing is None:
        existing = RiskFlagVersionRow(
            program_id=program_id,
            rules_id=rules.id,
            version=rules.version,
            content_hash=rules.content_hash,
            document=rules.model_dump(mode="json"),
            created_at=utcnow(),
            created_by=by,
        )
        db.add(existing)
    existing.is_current = True
    db.flush()
    return ProgramRules(existing.id, rules, "program")


# --------------------------------------------------------------------------- the caseload


@dataclass
class CaseloadRow:
    patient_id: str
    name: str
    care_plan_id: int
    started_on: date
    counselor_id: int | None
    substances: list[str]
    flags: list[RaisedFlag] = field(default_factory=list)
    last_check_in: date | None = None

    @property
    def substance_labels(self) -> list[str]:
        return [rules_core.substance_label(s) for s in self.substances]

    @property
    def top_severity(self) -> int:
        return max((f.severity for f in self.flags), default=0)


@dataclass
class Caseload:
    program: Program | None
    programs: list[Program]
    rules: ProgramRules | None
    whole_program: bool
    counselor_id: int | None
    rows: list[CaseloadRow]
    counselors: dict[int, str]
    today: date
    now: datetime
    cut: bool = False

    @property
    def flagged(self) -> int:
        return sum(1 for r in self.rows if r.flags)


def _day_start(time_zone: str, day: date) -> datetime:
    """The instant the program's calendar day starts, in UTC."""
    return datetime.combine(day, time(0), tzinfo=zone(time_zone)).astimezone(UTC)


def _programs(access: Access) -> list[Program]:
    ids = sorted(access.actor.program_ids)
    if not ids:
        return []
    return list(
        access.db.scalars(select(Program).where(Program.id.in_(ids)).order_by(Program.name))
    )


def caseload(
    access: Access,
    program_id: int | None = None,
    whole_program: bool | None = None,
    now: datetime | None = None,
    query_text: str = "",
) -> Caseload:
    """The caseload of the signed-in counselor in `program_id` (their first program when None),
    or the program's whole caseload (`whole_program`; the default for anyone but a counselor).
    Refused (403, audited) for a program the person is not a member of, and for patients."""
    now = now or utcnow()
    programs = _programs(access)
    if program_id is None:
        if not programs:
            access.require(Permission.SEARCH, CARE_PLAN)
            return Caseload(None, [], None, True, None, [], {}, now.date(), now)
        program_id = programs[0].id
    access.require(Permission.SEARCH, CARE_PLAN, program_id=program_id)
    program = access.db.get(Program, program_id)
    if program is None:
        raise NotFound(f"program {program_id} is not known")
    if whole_program is None:
        whole_program = access.actor.role is not Role.COUNSELOR
    counselor_id = None if whole_program else access.actor.user_id
    today = program_today(program.time_zone, now)
    current = program_rules(access.db, program_id)

    plans = (
        select(
            CarePlanRow.id,
            CarePlanRow.patient_id,
            CarePlanRow.started_on,
            CarePlanRow.counselor_id,
            CarePlanRow.substances,
            Patient.family,
            Patient.given,
        )
        .join(Patient, Patient.id == CarePlanRow.patient_id)
        .where(
            CarePlanRow.program_id == program_id,
            CarePlanRow.retention == "active",
            visible(access, CARE_PLAN, CarePlanRow.patient_id, CarePlanRow.program_id),
        )
        .order_by(Patient.family_lower, Patient.given_lower, CarePlanRow.id)
        .limit(MAX_SHOWN + 1)
    )
    if counselor_id is not None:
        plans = plans.where(CarePlanRow.counselor_id == counselor_id)
    rows: dict[str, CaseloadRow] = {}
    found = access.db.execute(plans).all()
    cut = len(found) > MAX_SHOWN
    for plan_id, patient_id, started_on, counselor, substances, family, given in found[:MAX_SHOWN]:
        if patient_id not in rows:  # one row a patient, their earliest-listed active plan
            rows[patient_id] = CaseloadRow(
                patient_id,
                f"{family}, {given}".strip(", "),
                plan_id,
                started_on,
                counselor,
                list(substances or []),
            )
    ids = sorted(rows)
    if ids:
        for patient_id, flag in compute_flags(
            access, current.rules, ids, program.time_zone, today, now
        ):
            rows[patient_id].flags.append(flag)
        for patient_id, last in _last_check_ins(access, ids):
            rows[patient_id].last_check_in = last
        rule = current.rules.rule("no_check_in")
        if rule is not None:
            for row in rows.values():
                late = rules_core.check_in_flag(rule, today, row.last_check_in, row.started_on)
                if late:
                    row.flags.append(late)
    ordered = sorted(rows.values(), key=lambda r: rules_core.sort_key(r.flags, r.name))
    for row in ordered:
        row.flags.sort(key=lambda f: (-f.severity, f.label))
    access.audit(
        "search",
        resource_type=CARE_PLAN,
        query=query_text or f"caseload program={program_id} whole={int(whole_program)}",
        shown=[r.patient_id for r in ordered],
    )
    counselors = display_names(access.db, {r.counselor_id for r in ordered})
    return Caseload(
        program,
        programs,
        current,
        whole_program,
        counselor_id,
        ordered,
        counselors,
        today,
        now,
        cut,
    )


def _last_check_ins(access: Access, ids: Sequence[str]) -> list[tuple[str, date]]:
    """Each patient's latest check-in day: one statement, a look-up at the end of the
    (patient_id, day) index a patient (a grouped scan would read their whole year)."""
    last = (
        select(func.max(CheckInRow.day))
        .where(
            CheckInRow.patient_id == Patient.id,
            visible(access, RESPONSE, CheckInRow.patient_id, CheckInRow.program_id),
        )
        .correlate(Patient)
        .scalar_subquery()
    )
    statement = select(Patient.id, last).where(Patient.id.in_(CASELOAD))
    return [
        (p, d) for p, d in access.db.execute(statement, {"caseload": list(ids)}) if d is not None
    ]


def compute_flags(
    access: Access,
    rules: RiskFlagRules,
    ids: Sequence[str],
    time_zone: str,
    today: date,
    now: datetime,
) -> list[tuple[str, RaisedFlag]]:
    """Every flag the rules raise for these patients: one grouped query per kind of flag."""
    raised: list[tuple[str, RaisedFlag]] = []
    db = access.db

    def since(window_days: int | None) -> date:
        return today - timedelta(days=(window_days or 1) - 1)

    rule = rules.rule("phq9_item9")
    if rule is not None:
        item = next(f.item for f in get_instrument("phq9").flags)
        value = QuestionnaireResponseRow.answers[item].as_integer()
        statement = (
            select(
                QuestionnaireResponseRow.patient_id,
                func.max(QuestionnaireResponseRow.day),
                func.max(value),
            )
            .where(
                QuestionnaireResponseRow.patient_id.in_(CASELOAD),
                QuestionnaireResponseRow.instrument_id == "phq9",
                # authored_at (in the patient index) bounds the window; day is the program's day
                QuestionnaireResponseRow.authored_at
                >= _day_start(time_zone, since(rule.window_days) - timedelta(days=1)),
                QuestionnaireResponseRow.day >= since(rule.window_days),
                QuestionnaireResponseRow.day <= today,
                value >= rule.threshold,
                visible(
                    access,
                    RESPONSE,
                    QuestionnaireResponseRow.patient_id,
                    QuestionnaireResponseRow.program_id,
                ),
            )
            .group_by(QuestionnaireResponseRow.patient_id)
            .with_hint(
                QuestionnaireResponseRow, "INDEXED BY ix_questionnaire_responses_patient", "sqlite"
            )
        )
        for patient_id, day, top in db.execute(statement, {"caseload": list(ids)}):
            flag = rules_core.phq9_flag(rule, day, int(top))
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("use_after_abstinence")
    if rule is not None:
        raised += _use_after_abstinence(access, rule, ids, since(rule.window_days), today)

    rule = rules.rule("positive_screen")
    if rule is not None:
        statement = (
            select(DrugScreenResultRow.patient_id, DrugScreenRow.day, DrugScreenResultRow.substance)
            .join(DrugScreenRow, DrugScreenRow.id == DrugScreenResultRow.screen_id)
            .where(
                DrugScreenResultRow.patient_id.in_(CASELOAD),
                DrugScreenRow.patient_id.in_(CASELOAD),  # the screens by (patient_id, day)
                DrugScreenResultRow.result == "positive",
                DrugScreenRow.day >= since(rule.window_days),
                DrugScreenRow.day <= today,
                visible(
                    access,
                    OBSERVATION,
                    DrugScreenResultRow.patient_id,
                    DrugScreenResultRow.program_id,
                ),
            )
        )
        positives: dict[str, list[tuple[date, str]]] = defaultdict(list)
        for patient_id, day, substance in db.execute(statement, {"caseload": list(ids)}):
            positives[patient_id].append((day, substance))
        for patient_id, found in positives.items():
            latest = max(d for d, _ in found)
            flag = rules_core.screen_flag(rule, latest, [s for d, s in found if d == latest])
            if flag and len(found) >= rule.at_least:
                raised.append((patient_id, flag))

    rule = rules.rule("craving_rising")
    if rule is not None:
        days = rule.window_days or 7
        split = today - timedelta(days=days)  # this window: after `split`; the one before: up to it
        recent = func.avg(case((CravingRatingRow.day > split, CravingRatingRow.rating)))
        before = func.avg(case((CravingRatingRow.day <= split, CravingRatingRow.rating)))
        statement = (
            select(CravingRatingRow.patient_id, recent, before)
            .where(
                CravingRatingRow.patient_id.in_(CASELOAD),
                CravingRatingRow.day > split - timedelta(days=days),
                CravingRatingRow.day <= today,
                visible(
                    access, OBSERVATION, CravingRatingRow.patient_id, CravingRatingRow.program_id
                ),
            )
            .group_by(CravingRatingRow.patient_id)
            .having(recent - before >= rule.at_least)
        )
        for patient_id, now_avg, before_avg in db.execute(statement, {"caseload": list(ids)}):
            flag = rules_core.craving_flag(rule, float(now_avg), float(before_avg))
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("missed_sessions")
    if rule is not None:
        start = _day_start(time_zone, since(rule.window_days))
        missed = TherapySessionRow.status == "missed"
        n_missed = func.sum(case((missed, 1), else_=0))
        statement = (
            select(
                TherapySessionRow.patient_id,
                n_missed,
                func.count(),
                func.max(case((missed, TherapySessionRow.starts_at))),
            )
            .where(
                TherapySessionRow.patient_id.in_(CASELOAD),
                TherapySessionRow.status.in_(("attended", "missed")),
                TherapySessionRow.starts_at >= start,
                TherapySessionRow.starts_at <= now,
                # `program_id + 0`: the same filter, kept off the (program_id, starts_at)
                # index, which SQLite's planner would otherwise walk for the whole program.
                visible(
                    access,
                    ENCOUNTER,
                    TherapySessionRow.patient_id,
                    TherapySessionRow.program_id + 0,
                ),
            )
            .group_by(TherapySessionRow.patient_id)
            .having(n_missed >= rule.threshold)
        )
        for patient_id, count, booked, last in db.execute(statement, {"caseload": list(ids)}):
            last_day = _as_day(last, time_zone)
            flag = rules_core.sessions_flag(rule, int(count), int(booked), last_day)
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("missed_doses")
    if rule is not None:
        start = _day_start(time_zone, since(rule.window_days))
        statement = (
            select(
                MedicationStatementRow.patient_id,
                MedicationStatementRow.medication_id,
                func.count(),
            )
            .where(
                MedicationStatementRow.patient_id.in_(CASELOAD),
                MedicationStatementRow.taken == false(),
                MedicationStatementRow.due_at >= start,
                MedicationStatementRow.due_at <= now,
                visible(
                    access,
                    STATEMENT,
                    MedicationStatementRow.patient_id,
                    MedicationStatementRow.program_id,
                ),
            )
            .group_by(MedicationStatementRow.patient_id, MedicationStatementRow.medication_id)
        )
        per_patient: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for patient_id, medication, count in db.execute(statement, {"caseload": list(ids)}):
            per_patient[patient_id].append((medication, int(count)))
        for patient_id, counts in per_patient.items():
            flag = rules_core.doses_flag(rule, sum(c for _, c in counts), [m for m, _ in counts])
            if flag:
                raised.append((patient_id, flag))

    return raised


def _as_day(value: datetime | None, time_zone: str) -> date | None:
    if value is None:
        return None
    if value.tzinfo is None:  # an aggregate over a UTC column on SQLite comes back naive
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone(time_zone)).date()


def _use_after_abstinence(
    access: Access, rule: rules_core.FlagRule, ids: Sequence[str], since: date, today: date
) -> list[tuple[str, RaisedFlag]]:
    """A use day in the window whose reported days without any use, back to the previous use
    (or the first report), number at least the threshold. The caseload's use days (the partial
    index on used days) each with the use day before it (a window function), then for the
    window's use days only, the reported days between the two (a range of the (patient_id,
    day) index)."""
    used = (
        select(
            UseDayRow.patient_id.label("patient_id"),
            UseDayRow.day.label("day"),
            func.min(UseDayRow.substance).label("substance"),
        )
        .where(
            UseDayRow.patient_id.in_(CASELOAD),
            UseDayRow.used,  # the partial index ix_use_days_used
            UseDayRow.day <= today,
            visible(access, OBSERVATION, UseDayRow.patient_id, UseDayRow.program_id),
        )
        .group_by(UseDayRow.patient_id, UseDayRow.day)
        .subquery("used")
    )
    previous = func.lag(used.c.day).over(partition_by=used.c.patient_id, order_by=used.c.day)
    uses = select(
        used.c.patient_id, used.c.day, used.c.substance, previous.label("previous_use")
    ).subquery("uses")
    reported = aliased(UseDayRow, name="reported")
    run = (
        select(func.count(distinct(reported.day)))
        .where(
            reported.patient_id == uses.c.patient_id,
            reported.day < uses.c.day,
            reported.day > func.coalesce(uses.c.previous_use, LONG_AGO),
        )
        .correlate(uses)
        .scalar_subquery()
    )
    lapses = (
        select(uses.c.patient_id, uses.c.day, uses.c.substance, run.label("run"))
        .where(uses.c.day >= since)
        .subquery("lapses")
    )
    statement = select(lapses).where(lapses.c.run >= rule.threshold)
    latest: dict[str, tuple[date, int, str]] = {}
    for patient_id, day, substance, count in access.db.execute(statement, {"caseload": list(ids)}):
        if patient_id not in latest or day > latest[patient_id][0]:
            latest[patient_id] = (day, int(count), substance)
    out = []
    for patient_id, (day, count, substance) in latest.items():
        flag = rules_core.use_flag(rule, day, count, substance)
        if flag:
            out.append((patient_id, flag))
    return out


def flags_by_patient(raised: Sequence[tuple[str, RaisedFlag]]) -> dict[str, list[RaisedFlag]]:
    out: dict[str, list[RaisedFlag]] = defaultdict(list)
    for patient_id, flag in raised:
        out[patient_id].append(flag)
    return dict(out)


__all__ = [
    "Caseload",
    "CaseloadRow",
    "ProgramRules",
    "caseload",
    "compute_flags",
    "flags_by_patient",
    "program_rules",
    "set_program_rules",
]
