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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Date,
    Float,
    Integer,
    Select,
    String,
    any_,
    bindparam,
    case,
    distinct,
    false,
    func,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

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
    counselors: dict[int, str]  # names by id, for the whole program's view (else empty)
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
        # The limit written into the SQL, not bound: PostgreSQL's generic plan for a prepared
        # statement (psycopg prepares a statement run five times) guesses a bound limit to keep
        # a tenth of the rows, and walked every patient in name order for a counselor's 200
        # (45 ms at 10,000 patients, against 3 ms hashing the counselor's care plans).
        .limit(literal_column(str(MAX_SHOWN + 1), Integer))
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
        ask = _ask(access, ids)
        for patient_id, flag in _compute_flags(ask, current.rules, program.time_zone, today, now):
            rows[patient_id].flags.append(flag)
        for patient_id, last in _last_check_ins(ask):
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
    # The counselor column is the whole program's (a counselor's own rows all name them).
    counselors = (
        display_names(access.db, {r.counselor_id for r in ordered}) if whole_program else {}
    )
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


# --------------------------------------------------------------------------- the statements
#
# Each flag's statement is built once per engine and per visibility (what `visible(...)` adds
# for the actor), with every date, threshold and the caseload's ids as named parameters: a
# page view binds values to statements already built (and compiled, in SQLAlchemy's cache)
# instead of building ten statements of several dozen clauses each time.

Flags = Select[*tuple[Any, ...]]
_BUILT: dict[tuple[Any, ...], Flags] = {}
_BUILT_MAX = 512  # a statement a kind of flag and visibility; cleared when it grows past this


def _built(key: tuple[Any, ...], build: Callable[[], Flags]) -> Flags:
    statement = _BUILT.get(key)
    if statement is None:
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.clear()
        statement = _BUILT[key] = build()
    return statement


def _among_caseload(column: Any, dialect: str) -> ColumnElement[bool]:
    """`column` is one of the caseload's patients, the ids bound as one value: an array on
    PostgreSQL, a JSON list read by json_each on SQLite (both use the patient index as an IN
    list does, without 200 parameters expanded into the SQL at every execution)."""
    if dialect == "postgresql":
        among = column == any_(bindparam("caseload", type_=postgresql.ARRAY(String)))
    else:
        ids = func.json_each(bindparam("caseload", type_=JSON)).table_valued("value")
        among = column.in_(select(ids.c.value))
    return cast(ColumnElement[bool], among)


@dataclass(frozen=True)
class _Ask:
    """What every flag statement of one caseload is built for and executed with."""

    access: Access
    dialect: str
    ids: list[str]

    def key(self, kind: str, *resource_types: str) -> tuple[Any, ...]:
        seen = tuple(self.access.visibility(t) for t in resource_types)
        return (kind, self.dialect, seen)

    def visible(self, resource_type: str, patient_column: Any, program_column: Any) -> Any:
        return visible(self.access, resource_type, patient_column, program_column)

    def among(self, column: Any) -> ColumnElement[bool]:
        return _among_caseload(column, self.dialect)

    def run(self, statement: Flags, **values: Any) -> Any:
        # On the session's connection: plain rows of plain columns need none of the ORM's
        # per-statement work (a fraction of a millisecond each, nine statements a view).
        return self.access.db.connection().execute(statement, {"caseload": self.ids, **values})


def _last_check_ins(ask: _Ask) -> list[tuple[str, date]]:
    """Each patient's latest check-in day: one statement, a look-up at the end of the
    (patient_id, day) index a patient (a grouped scan would read their whole year)."""

    def build() -> Flags:
        last = (
            select(func.max(CheckInRow.day))
            .where(
                CheckInRow.patient_id == Patient.id,
                ask.visible(RESPONSE, CheckInRow.patient_id, CheckInRow.program_id),
            )
            .correlate(Patient)
            .scalar_subquery()
        )
        return select(Patient.id, last).where(ask.among(Patient.id))

    statement = _built(ask.key("last_check_in", RESPONSE), build)
    return [(p, d) for p, d in ask.run(statement) if d is not None]


def _phq9_statement(ask: _Ask, item: str) -> Flags:
    def build() -> Flags:
        row = QuestionnaireResponseRow
        value = row.answers[item].as_integer()
        return (
            select(row.patient_id, func.max(row.day), func.max(value))
            .where(
                ask.among(row.patient_id),
                row.instrument_id == "phq9",
                # authored_at (in the patient index) bounds the window; day is the program's day
                row.authored_at >= bindparam("authored_from"),
                row.day >= bindparam("since"),
                row.day <= bindparam("today"),
                value >= bindparam("threshold", type_=Integer),
                ask.visible(RESPONSE, row.patient_id, row.program_id),
            )
            .group_by(row.patient_id)
            .with_hint(row, "INDEXED BY ix_questionnaire_responses_patient", "sqlite")
        )

    return _built(ask.key("phq9_item9", RESPONSE) + (item,), build)


def _screen_statement(ask: _Ask) -> Flags:
    def build() -> Flags:
        return (
            select(DrugScreenResultRow.patient_id, DrugScreenRow.day, DrugScreenResultRow.substance)
            .join(DrugScreenRow, DrugScreenRow.id == DrugScreenResultRow.screen_id)
            .where(
                ask.among(DrugScreenResultRow.patient_id),
                ask.among(DrugScreenRow.patient_id),  # the screens by (patient_id, day)
                DrugScreenResultRow.result == "positive",
                DrugScreenRow.day >= bindparam("since"),
                DrugScreenRow.day <= bindparam("today"),
                ask.visible(
                    OBSERVATION, DrugScreenResultRow.patient_id, DrugScreenResultRow.program_id
                ),
            )
        )

    return _built(ask.key("positive_screen", OBSERVATION), build)


def _craving_statement(ask: _Ask) -> Flags:
    def build() -> Flags:
        row = CravingRatingRow
        split = bindparam("split", type_=Date)  # this window: after it; the one before: up to it
        recent = func.avg(case((row.day > split, row.rating)))
        before = func.avg(case((row.day <= split, row.rating)))
        return (
            select(row.patient_id, recent, before)
            .where(
                ask.among(row.patient_id),
                row.day > bindparam("from"),
                row.day <= bindparam("today"),
                ask.visible(OBSERVATION, row.patient_id, row.program_id),
            )
            .group_by(row.patient_id)
            .having(recent - before >= bindparam("rise", type_=Float))
        )

    return _built(ask.key("craving_rising", OBSERVATION), build)


def _sessions_statement(ask: _Ask) -> Flags:
    def build() -> Flags:
        row = TherapySessionRow
        missed = row.status == "missed"
        n_missed = func.sum(case((missed, 1), else_=0))
        return (
            select(row.patient_id, n_missed, func.count(), func.max(case((missed, row.starts_at))))
            .where(
                ask.among(row.patient_id),
                row.status.in_(("attended", "missed")),
                row.starts_at >= bindparam("start"),
                row.starts_at <= bindparam("now"),
                # `program_id + 0`: the same filter, kept off the (program_id, starts_at)
                # index, which SQLite's planner would otherwise walk for the whole program.
                ask.visible(ENCOUNTER, row.patient_id, row.program_id + 0),
            )
            .group_by(row.patient_id)
            .having(n_missed >= bindparam("threshold", type_=Integer))
        )

    return _built(ask.key("missed_sessions", ENCOUNTER), build)


def _doses_statement(ask: _Ask) -> Flags:
    def build() -> Flags:
        row = MedicationStatementRow
        return (
            select(row.patient_id, row.medication_id, func.count())
            .where(
                ask.among(row.patient_id),
                row.taken == false(),
                row.due_at >= bindparam("start"),
                row.due_at <= bindparam("now"),
                ask.visible(STATEMENT, row.patient_id, row.program_id),
            )
            .group_by(row.patient_id, row.medication_id)
        )

    return _built(ask.key("missed_doses", STATEMENT), build)


def compute_flags(
    access: Access,
    rules: RiskFlagRules,
    ids: Sequence[str],
    time_zone: str,
    today: date,
    now: datetime,
) -> list[tuple[str, RaisedFlag]]:
    """Every flag the rules raise for these patients: one grouped query per kind of flag."""
    return _compute_flags(_ask(access, ids), rules, time_zone, today, now)


def _ask(access: Access, ids: Sequence[str]) -> _Ask:
    return _Ask(access, access.db.get_bind().dialect.name, list(ids))


def _compute_flags(
    ask: _Ask, rules: RiskFlagRules, time_zone: str, today: date, now: datetime
) -> list[tuple[str, RaisedFlag]]:
    raised: list[tuple[str, RaisedFlag]] = []

    def since(window_days: int | None) -> date:
        return today - timedelta(days=(window_days or 1) - 1)

    rule = rules.rule("phq9_item9")
    if rule is not None:
        item = next(f.item for f in get_instrument("phq9").flags)
        first = since(rule.window_days)
        found = ask.run(
            _phq9_statement(ask, item),
            authored_from=_day_start(time_zone, first - timedelta(days=1)),
            since=first,
            today=today,
            threshold=rule.threshold,
        )
        for patient_id, day, top in found:
            flag = rules_core.phq9_flag(rule, day, int(top))
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("use_after_abstinence")
    if rule is not None:
        raised += _use_after_abstinence(ask, rule, since(rule.window_days), today)

    rule = rules.rule("positive_screen")
    if rule is not None:
        positives: dict[str, list[tuple[date, str]]] = defaultdict(list)
        found = ask.run(_screen_statement(ask), since=since(rule.window_days), today=today)
        for patient_id, day, substance in found:
            positives[patient_id].append((day, substance))
        for patient_id, screens in positives.items():
            latest = max(d for d, _ in screens)
            flag = rules_core.screen_flag(rule, latest, [s for d, s in screens if d == latest])
            if flag and len(screens) >= rule.at_least:
                raised.append((patient_id, flag))

    rule = rules.rule("craving_rising")
    if rule is not None:
        days = rule.window_days or 7
        split = today - timedelta(days=days)
        found = ask.run(
            _craving_statement(ask),
            split=split,
            today=today,
            rise=rule.at_least,
            **{"from": split - timedelta(days=days)},
        )
        for patient_id, now_avg, before_avg in found:
            flag = rules_core.craving_flag(rule, float(now_avg), float(before_avg))
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("missed_sessions")
    if rule is not None:
        found = ask.run(
            _sessions_statement(ask),
            start=_day_start(time_zone, since(rule.window_days)),
            now=now,
            threshold=rule.threshold,
        )
        for patient_id, count, booked, last in found:
            flag = rules_core.sessions_flag(rule, int(count), int(booked), _as_day(last, time_zone))
            if flag:
                raised.append((patient_id, flag))

    rule = rules.rule("missed_doses")
    if rule is not None:
        per_patient: dict[str, list[tuple[str, int]]] = defaultdict(list)
        found = ask.run(
            _doses_statement(ask),
            start=_day_start(time_zone, since(rule.window_days)),
            now=now,
        )
        for patient_id, medication, count in found:
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
    ask: _Ask, rule: rules_core.FlagRule, since: date, today: date
) -> list[tuple[str, RaisedFlag]]:
    """A use day in the window whose reported days without any use, back to the previous use
    (or the first report), number at least the threshold. The window's use days only (the
    partial index on used days, a range of days a patient), each with the use day before it
    (one look-up backwards in the same index) and the reported days between the two (a range
    of the (patient_id, day) index). Every lapse of the window comes back with its run; the
    threshold is applied here, so the database counts each run once."""

    def build() -> Flags:
        lapses = (
            select(
                UseDayRow.patient_id.label("patient_id"),
                UseDayRow.day.label("day"),
                func.min(UseDayRow.substance).label("substance"),
            )
            .where(
                ask.among(UseDayRow.patient_id),
                UseDayRow.used,  # the partial index ix_use_days_used
                UseDayRow.day >= bindparam("since", type_=Date),
                UseDayRow.day <= bindparam("today", type_=Date),
                ask.visible(OBSERVATION, UseDayRow.patient_id, UseDayRow.program_id),
            )
            .group_by(UseDayRow.patient_id, UseDayRow.day)
            .subquery("lapses")
        )
        earlier = aliased(UseDayRow, name="earlier")
        previous_use = (
            select(func.max(earlier.day))
            .where(
                earlier.patient_id == lapses.c.patient_id,
                earlier.used,  # the same partial index, read backwards from the lapse
                earlier.day < lapses.c.day,
                ask.visible(OBSERVATION, earlier.patient_id, earlier.program_id),
            )
            .correlate(lapses)
            .scalar_subquery()
        )
        reported = aliased(UseDayRow, name="reported")
        run = (
            select(func.count(distinct(reported.day)))
            .where(
                reported.patient_id == lapses.c.patient_id,
                reported.day < lapses.c.day,
                reported.day > func.coalesce(previous_use, LONG_AGO),
            )
            .correlate(lapses)
            .scalar_subquery()
        )
        return select(lapses.c.patient_id, lapses.c.day, lapses.c.substance, run.label("run"))

    statement = _built(ask.key("use_after_abstinence", OBSERVATION), build)
    latest: dict[str, tuple[date, int, str]] = {}
    found = ask.run(statement, today=today, since=since)
    for patient_id, day, substance, count in found:
        if int(count) < rule.threshold:
            continue
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
