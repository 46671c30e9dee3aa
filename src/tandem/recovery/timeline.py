"""One timeline of every measure of a patient's recovery on one time axis: withdrawal scores,
craving, use, drug screens, mood and craving scales, doses (given and reported) and attendance.

The service reads through the data-access layer (the chart read through the policy, each kind
of record asked for and audited); craving ratings are averaged a day in the database. The
drawing is in `timeline_svg` (pure), the weekly table beside it here (pure).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import BindParameter, Select, bindparam, func, select

from tandem.access.guard import Access
from tandem.access.policy import Permission
from tandem.access.queries import load_patient, patient_ref, visible
from tandem.clock import program_today, utcnow, zone
from tandem.errors import InvalidInput
from tandem.medications.storage import MedicationAdministrationRow, MedicationStatementRow
from tandem.recovery.caseload_rules import substance_label
from tandem.recovery.storage import (
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    QuestionnaireResponseRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.models import Patient
from tandem.withdrawal.storage import AssessmentRow

# The ranges a person picks: id -> (words, days shown, today included).
RANGES: dict[str, tuple[str, int]] = {
    "4w": ("4 weeks", 28),
    "3m": ("3 months", 91),
    "1y": ("1 year", 365),
}
DEFAULT_RANGE = "3m"
# Scales drawn on the mood lane, with their highest total (instrument files) and a short name.
SCALE_NAMES = {"phq9": "PHQ-9", "gad7": "GAD-7", "pacs": "PACS"}
RESOURCE_TYPES = (
    "Observation",
    "QuestionnaireResponse",
    "MedicationAdministration",
    "MedicationStatement",
    "Encounter",
)


@dataclass(frozen=True)
class Point:
    day: date
    value: float
    text: str = ""


@dataclass(frozen=True)
class Mark:
    day: date
    kind: str  # used | abstinent | positive | negative | invalid | taken | missed | given |
    # not_given | attended | missed_session | cancelled | booked
    text: str


@dataclass
class Timeline:
    patient: Patient
    range_id: str
    start: date
    end: date
    zone: str
    craving: list[Point] = field(default_factory=list)  # average 0-10 rating a day
    use: list[Mark] = field(default_factory=list)
    screens: list[Mark] = field(default_factory=list)
    scales: dict[str, list[Point]] = field(default_factory=dict)  # instrument -> totals
    scale_max: dict[str, int] = field(default_factory=dict)
    withdrawal: dict[str, list[Point]] = field(default_factory=dict)
    doses: list[Mark] = field(default_factory=list)
    sessions: list[Mark] = field(default_factory=list)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def empty(self) -> bool:
        return not (
            self.craving
            or self.use
            or self.screens
            or any(self.scales.values())
            or any(self.withdrawal.values())
            or self.doses
            or self.sessions
        )


def parse_range(range_id: str | None) -> str:
    if not range_id:
        return DEFAULT_RANGE
    if range_id not in RANGES:
        raise InvalidInput("range", f"choose one of: {', '.join(RANGES)}")
    return range_id


def _start_of(day: date, time_zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone(time_zone)).astimezone(UTC)


def _day_of(at: datetime, time_zone: str) -> date:
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(zone(time_zone)).date()


# The timeline's statements, built once per engine and visibility (what `visible(...)` adds for
# the actor), the patient and the range bound at each view: a view binds values to statements
# already built and compiled instead of building eight statements each time.
_BUILT: dict[tuple[Any, ...], dict[str, Select[Any]]] = {}
_BUILT_MAX = 256


def _statements(access: Access) -> dict[str, Select[Any]]:
    dialect = access.db.get_bind().dialect.name
    key = (dialect, *(access.visibility(t) for t in RESOURCE_TYPES))
    built = _BUILT.get(key)
    if built is None:
        if len(_BUILT) >= _BUILT_MAX:
            _BUILT.clear()
        built = _BUILT[key] = _build(access)
    return built


def _build(access: Access) -> dict[str, Select[Any]]:
    # Untyped: each comparison gives its parameter the column's type, as a value would be.
    patient: BindParameter[Any] = bindparam("patient")
    start: BindParameter[Any] = bindparam("start")
    end: BindParameter[Any] = bindparam("end")
    after: BindParameter[Any] = bindparam("after")
    until: BindParameter[Any] = bindparam("until")

    def mine(model: Any, resource_type: str) -> tuple[Any, Any]:
        return (
            model.patient_id == patient,
            visible(access, resource_type, model.patient_id, model.program_id),
        )

    craving = (
        select(
            CravingRatingRow.day,
            func.avg(CravingRatingRow.rating),
            func.max(CravingRatingRow.rating),
        )
        .where(*mine(CravingRatingRow, "Observation"), CravingRatingRow.day.between(start, end))
        .group_by(CravingRatingRow.day)
        .order_by(CravingRatingRow.day)
    )
    use = (
        select(UseDayRow.day, UseDayRow.substance, UseDayRow.used, UseDayRow.standard_drinks)
        .where(*mine(UseDayRow, "Observation"), UseDayRow.day.between(start, end))
        .order_by(UseDayRow.day, UseDayRow.substance)
    )
    screens = (
        select(DrugScreenRow.day, DrugScreenResultRow.substance, DrugScreenResultRow.result)
        .join(DrugScreenResultRow, DrugScreenResultRow.screen_id == DrugScreenRow.id)
        .where(*mine(DrugScreenRow, "Observation"), DrugScreenRow.day.between(start, end))
        .order_by(DrugScreenRow.day, DrugScreenRow.id)
    )
    scales = (
        select(
            QuestionnaireResponseRow.instrument_id,
            QuestionnaireResponseRow.day,
            QuestionnaireResponseRow.total,
            QuestionnaireResponseRow.band_id,
        )
        .where(
            *mine(QuestionnaireResponseRow, "QuestionnaireResponse"),
            QuestionnaireResponseRow.day.between(start, end),
            QuestionnaireResponseRow.instrument_id.in_(tuple(SCALE_NAMES)),
        )
        .order_by(QuestionnaireResponseRow.authored_at)
    )
    assessments = (
        select(
            AssessmentRow.instrument_id,
            AssessmentRow.assessed_at,
            AssessmentRow.total,
            AssessmentRow.band_label,
        )
        .where(
            *mine(AssessmentRow, "QuestionnaireResponse"),
            AssessmentRow.assessed_at >= after,
            AssessmentRow.assessed_at < until,
        )
        .order_by(AssessmentRow.assessed_at)
    )
    given = (
        select(
            MedicationAdministrationRow.administered_at,
            MedicationAdministrationRow.medication_text,
            MedicationAdministrationRow.status,
        )
        .where(
            *mine(MedicationAdministrationRow, "MedicationAdministration"),
            MedicationAdministrationRow.administered_at >= after,
            MedicationAdministrationRow.administered_at < until,
        )
        .order_by(MedicationAdministrationRow.administered_at)
    )
    reported = (
        select(
            MedicationStatementRow.due_at,
            MedicationStatementRow.medication_id,
            MedicationStatementRow.taken,
        )
        .where(
            *mine(MedicationStatementRow, "MedicationStatement"),
            MedicationStatementRow.due_at >= after,
            MedicationStatementRow.due_at < until,
        )
        .order_by(MedicationStatementRow.due_at)
    )
    sessions = (
        select(TherapySessionRow.starts_at, TherapySessionRow.service, TherapySessionRow.status)
        .where(
            *mine(TherapySessionRow, "Encounter"),
            TherapySessionRow.starts_at >= after,
            TherapySessionRow.starts_at < until,
        )
        .order_by(TherapySessionRow.starts_at)
    )
    return {
        "craving": craving,
        "use": use,
        "screens": screens,
        "scales": scales,
        "assessments": assessments,
        "given": given,
        "reported": reported,
        "sessions": sessions,
    }


def timeline(
    access: Access, patient_id: str, range_id: str | None = None, now: datetime | None = None
) -> Timeline:
    """Every measure of the patient in the range (ending today, the program's day)."""
    now = now or utcnow()
    range_id = parse_range(range_id)
    patient = load_patient(access, patient_id)
    ref = patient_ref(patient)
    for resource_type in RESOURCE_TYPES:
        access.require(Permission.SEARCH, resource_type, ref)
    time_zone = patient.program.time_zone
    end = program_today(time_zone, now)
    start = end - timedelta(days=RANGES[range_id][1] - 1)
    after, until = _start_of(start, time_zone), _start_of(end + timedelta(days=1), time_zone)
    shown = Timeline(patient, range_id, start, end, time_zone)
    db = access.db
    statements = _statements(access)
    run = db.connection().execute  # plain rows of plain columns: none of the ORM's work needed
    values = {"patient": patient.id, "start": start, "end": end, "after": after, "until": until}

    for day, average, top in run(statements["craving"], values):
        shown.craving.append(Point(day, round(float(average), 1), f"highest {top}"))

    # Use days: a row a substance and day (a year is a few hundred rows), told a day at a time.
    days: dict[date, tuple[list[str], float]] = {}
    for day, substance, was_used, drinks in run(statements["use"], values):
        substances, total = days.setdefault(day, ([], 0.0))
        if was_used:
            substances.append(substance_label(substance))
            days[day] = (substances, total + float(drinks or 0))
    for day, (substances, drinks) in days.items():
        if substances:
            words = ", ".join(substances)
            if drinks:
                words += f" ({drinks:g} standard drinks)"
            shown.use.append(Mark(day, "used", f"used {words}"))
        else:
            shown.use.append(Mark(day, "abstinent", "no use"))

    by_screen: dict[date, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for day, substance, result in run(statements["screens"], values):
        by_screen[day][result].append(substance_label(substance))
    for day, results in sorted(by_screen.items()):
        if results.get("positive"):
            kind, text = "positive", "positive for " + ", ".join(results["positive"])
        elif results.get("invalid") and not results.get("negative"):
            kind, text = "invalid", "invalid specimen"
        else:
            kind, text = "negative", "negative"
        shown.screens.append(Mark(day, kind, text))

    for instrument_id, day, total, band in run(statements["scales"], values):
        shown.scales.setdefault(instrument_id, []).append(Point(day, total, band or ""))

    for instrument_id, at, total, band in run(statements["assessments"], values):
        shown.withdrawal.setdefault(instrument_id, []).append(
            Point(_day_of(at, time_zone), total, band or "")
        )

    for at, text, status in run(statements["given"], values):
        kind = "given" if status == "completed" else "not_given"
        shown.doses.append(
            Mark(
                _day_of(at, time_zone),
                kind,
                f"{text} ({'given' if kind == 'given' else 'not given'})",
            )
        )
    for at, medication, taken in run(statements["reported"], values):
        shown.doses.append(
            Mark(
                _day_of(at, time_zone),
                "taken" if taken else "missed",
                f"{medication} {'taken' if taken else 'missed'}",
            )
        )

    for at, service, status in run(statements["sessions"], values):
        kind = {"missed": "missed_session"}.get(status, status)
        shown.sessions.append(
            Mark(_day_of(at, time_zone), kind, f"{service.replace('_', ' ')}: {status}")
        )

    from tandem.instruments.engine import get_instrument

    for instrument_id in shown.scales:
        shown.scale_max[instrument_id] = get_instrument(instrument_id).total.max
    for instrument_id in shown.withdrawal:
        shown.scale_max[instrument_id] = get_instrument(instrument_id).total.max
    access.audit(
        "search",
        resource_type="Observation",
        patient_id=patient.id,
        query=f"timeline range={range_id}",
        shown=[patient.id],
    )
    return shown


# --------------------------------------------------------------------------- the weekly table


@dataclass
class Week:
    start: date
    craving: float | None = None
    use_days: int = 0
    reported_days: int = 0
    screens: list[str] = field(default_factory=list)
    scales: dict[str, int] = field(default_factory=dict)
    withdrawal: dict[str, int] = field(default_factory=dict)  # highest total that week
    doses_taken: int = 0
    doses_missed: int = 0
    sessions: dict[str, int] = field(default_factory=dict)


def weeks(shown: Timeline) -> list[Week]:
    """The same measures a week a row (weeks start on Monday), newest first: the table beside
    the chart, readable without it."""
    first = shown.start - timedelta(days=shown.start.weekday())
    table: dict[date, Week] = {}
    day = first
    while day <= shown.end:
        table[day] = Week(day)
        day += timedelta(days=7)

    def week(of: date) -> Week:
        return table[of - timedelta(days=of.weekday())]

    ratings: dict[date, list[float]] = defaultdict(list)
    for p in shown.craving:
        ratings[p.day - timedelta(days=p.day.weekday())].append(p.value)
    for start, values in ratings.items():
        table[start].craving = round(sum(values) / len(values), 1)
    for m in shown.use:
        w = week(m.day)
        w.reported_days += 1
        w.use_days += m.kind == "used"
    for m in shown.screens:
        week(m.day).screens.append(m.text)
    for instrument_id, points in shown.scales.items():
        for p in points:
            week(p.day).scales[instrument_id] = int(p.value)  # the latest of the week
    for instrument_id, points in shown.withdrawal.items():
        for p in points:
            w = week(p.day)
            w.withdrawal[instrument_id] = max(w.withdrawal.get(instrument_id, 0), int(p.value))
    for m in shown.doses:
        w = week(m.day)
        if m.kind in ("taken", "given"):
            w.doses_taken += 1
        elif m.kind in ("missed", "not_given"):
            w.doses_missed += 1
    for m in shown.sessions:
        w = week(m.day)
        w.sessions[m.kind] = w.sessions.get(m.kind, 0) + 1
    return sorted(table.values(), key=lambda w: w.start, reverse=True)


def kinds_present(shown: Timeline) -> Sequence[str]:
    """Which kinds of measure the range holds (for the page's summary and the tests)."""
    out = []
    for name, present in (
        ("withdrawal", any(shown.withdrawal.values())),
        ("craving", bool(shown.craving)),
        ("use", bool(shown.use)),
        ("screens", bool(shown.screens)),
        ("mood", any(shown.scales.values())),
        ("doses", bool(shown.doses)),
        ("attendance", bool(shown.sessions)),
    ):
        if present:
            out.append(name)
    return out
