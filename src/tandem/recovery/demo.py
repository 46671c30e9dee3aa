"""`tandem demo` step: months of recovery for each synthetic patient out of detox.

Each patient in rehab, aftercare or discharged gets a care plan (individual counseling, and
some of group therapy, medication management, peer support, family sessions) with a counselor
(most with the demo counselor, the rest with a second counselor; Harbor's with its own), started
six weeks to six months ago. Then, day by day: a daily check-in most days (some patients stop
checking in), a 0-10 craving rating per substance that falls with treatment (each patient their
own starting level, pace and floor) and climbs in the days before a lapse, lapses that grow
rarer with time, a weekly urine drug screen (positive when use was reported in the three days
before: a synthetic rule, not a detection window), weekly counseling sessions with attendance
(some missed, more before a drop-out), and weekly PHQ-9 and GAD-7 (and PACS where the
instrument exists, for alcohol) answered item by item and scored by the instrument engine.
About one in six drops out (craving rising and sessions missed first) and some complete; a few
active patients are in a slip this week, so the caseload has flags to show.

Synthetic shapes, not clinical data. Deterministic for `world.rng`; bulk inserts.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from tandem.access import accounts
from tandem.clock import program_today
from tandem.demo import DemoWorld
from tandem.instruments.engine import UnknownInstrument, get_instrument, score
from tandem.instruments.models import Instrument
from tandem.recovery.storage import (
    CarePlanRow,
    CarePlanServiceRow,
    CheckInRow,
    CravingRatingRow,
    DrugScreenResultRow,
    DrugScreenRow,
    QuestionnaireResponseRow,
    RetentionEventRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.models import Episode, Patient, User

SOURCE = "demo"
MOODS = ("calm", "okay", "tired", "hopeful", "anxious", "low", "good", "stressed", "steady")
PRIMARY = (("alcohol", 0.55), ("opioids", 0.25), ("cocaine", 0.1), ("stimulants", 0.1))
SERVICES = (
    ("group_therapy", 0.6, "weekly"),
    ("medication_management", 0.4, "monthly"),
    ("peer_support", 0.3, "weekly"),
    ("family_sessions", 0.15, "every two weeks"),
)


def _insert(db: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Many rows at once through the driver's executemany (no ORM unit of work)."""
    if rows:
        db.connection().execute(model.__table__.insert(), rows)


def _insert_ids(db: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Many rows at once, and their new ids in the order given."""
    if not rows:
        return []
    table = model.__table__
    statement = table.insert().returning(table.c.id, sort_by_parameter_order=True)
    return list(db.connection().execute(statement, rows).scalars())


def _pick(rng: random.Random, weighted: Sequence[tuple[str, float]]) -> str:
    roll, total = rng.random(), 0.0
    for value, weight in weighted:
        total += weight
        if roll < total:
            return value
    return weighted[-1][0]


@dataclass
class Course:
    """One patient's synthetic course: who, from when to when, and how it goes."""

    patient: Patient
    zone: ZoneInfo
    start: date
    end: date  # the last day with data (today, or the day they dropped out or completed)
    retention: str
    substances: list[str]
    counselor_id: int
    crave0: float
    floor: float
    pace: float  # days for craving to fall most of the way
    lapse_rate: float
    check_in_rate: float
    stopped_checking_in: int = 0  # days without a check-in at the end (active patients)
    slip_this_week: bool = False
    # The demo patient's own login: in care with the demo counselor, abstinent and checking in
    # every day for the last three weeks, so their next check-in shows on the caseload.
    steady: bool = False
    use: dict[date, set[str]] = field(default_factory=dict)


def _counselors(db: Session, world: DemoWorld) -> tuple[int, int, int]:
    """The demo counselor, a second counselor of the demo program and one of Harbor."""
    first = world.users.get("counselor")
    made = []
    for email, name, program in (
        ("counselor.two@demo.tandem.test", "Counselor Two (demo)", world.program.id),
        ("harbor.counselor@demo.tandem.test", "Harbor Counselor (demo)", world.other_program.id),
    ):
        existing = db.scalar(select(User).where(User.email == email))
        if existing is None:
            # They own care plans and do not sign in: no password (a hash nothing verifies
            # against), and no argon2 cost for the demo.
            existing = User(
                email=email,
                display_name=name,
                role="counselor",
                password_hash="!",  # noqa: S106
                active=True,
            )
            db.add(existing)
            db.flush()
            accounts.set_memberships(db, existing, [program])
        made.append(existing.id)
    return (first.id if first else made[0]), made[0], made[1]


def _course(
    rng: random.Random, patient: Patient, today: date, counselor_id: int, zone: ZoneInfo
) -> Course:
    span = rng.randint(42, 180)
    start = today - timedelta(days=span)
    roll = rng.random()
    # Those still in care have reported through yesterday: today's check-in is not in yet.
    retention, end = "active", today - timedelta(days=1)
    if roll < 0.17 and span > 30:
        retention, end = "dropped_out", start + timedelta(days=rng.randint(18, span - 5))
    elif roll < 0.3 and span >= 90:
        retention, end = "completed", start + timedelta(days=rng.randint(84, span))
    primary = _pick(rng, PRIMARY)
    substances = [primary] + (["cannabis"] if rng.random() < 0.2 else [])
    course = Course(
        patient=patient,
        zone=zone,
        start=start,
        end=end,
        retention=retention,
        substances=substances,
        counselor_id=counselor_id,
        crave0=rng.uniform(5.0, 8.5),
        floor=rng.uniform(0.8, 3.0),
        pace=rng.uniform(18, 55),
        lapse_rate=rng.uniform(0.02, 0.07),
        check_in_rate=rng.uniform(0.7, 0.97),
    )
    if retention == "active":
        if rng.random() < 0.12:
            course.stopped_checking_in = rng.randint(4, 9)
        elif rng.random() < 0.12:
            course.slip_this_week = True
    return course


def _craving(course: Course, t: int, rng: random.Random, pressure: float) -> int:
    level = course.floor + (course.crave0 - course.floor) * math.exp(-t / course.pace)
    if course.retention == "dropped_out":  # rising in the weeks before they leave
        to_end = (course.end - course.start).days - t
        if to_end < 21:
            level += (21 - to_end) / 21 * 3.0
    level += pressure + rng.gauss(0, 0.9)
    return max(0, min(10, round(level)))


def _at(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=zone).astimezone(UTC)


def _answers(
    rng: random.Random, instrument: Instrument, target: float, keep_zero: Sequence[str] = ()
) -> dict[str, int]:
    """Item answers adding up to about `target`, each within its item's allowed values."""
    answers = {item.id: min(item.allowed_values) for item in instrument.items}
    open_items = [i for i in instrument.items if i.id not in keep_zero]
    remaining = max(0, round(target))
    guard = 0
    while remaining > 0 and guard < 200:
        guard += 1
        item = rng.choice(open_items)
        if answers[item.id] + 1 in item.allowed_values:
            answers[item.id] += 1
            remaining -= 1
    return answers


def recovery_months(db: Session, world: DemoWorld) -> None:
    rng = random.Random(world.rng.random())  # noqa: S311 - synthetic data, not secrets
    mine, second, harbor = _counselors(db, world)
    ids = [p.id for p in world.patients]
    episodes: dict[str, Episode] = {}
    for found in db.scalars(select(Episode).where(Episode.patient_id.in_(ids))):
        episodes.setdefault(found.patient_id, found)
    zones = {
        world.program.id: ZoneInfo(world.program.time_zone),
        world.other_program.id: ZoneInfo(world.other_program.time_zone),
    }
    todays = {
        world.program.id: program_today(world.program.time_zone, world.now),
        world.other_program.id: program_today(world.other_program.time_zone, world.now),
    }
    login = world.users.get("patient")
    own = login.patient_id if login is not None else None
    courses = []
    for patient in world.patients:
        episode = episodes.get(patient.id)
        in_detox = (
            episode is not None and episode.phase == "detox" and episode.discharged_at is None
        )
        if in_detox and patient.id != own:
            continue  # still in detox: their care plan starts when they leave it
        if patient.program_id == world.other_program.id:
            counselor = harbor
        else:
            counselor = mine if rng.random() < 0.65 else second
        course = _course(
            rng, patient, todays[patient.program_id], counselor, zones[patient.program_id]
        )
        if patient.id == own:
            course.counselor_id, course.steady = mine, True
            course.retention, course.end = "active", todays[patient.program_id] - timedelta(days=1)
            course.stopped_checking_in, course.slip_this_week = 0, False
        courses.append((course, episode))
    if not courses:
        return
    plans = [
        {
            "patient_id": c.patient.id,
            "program_id": c.patient.program_id,
            "episode_id": e.id if e is not None and e.discharged_at is None else None,
            "title": "Outpatient recovery plan",
            "substances": c.substances,
            "counselor_id": c.counselor_id,
            "started_on": c.start,
            "retention": c.retention,
            "retention_on": c.end if c.retention != "active" else c.start,
            "note": "",
            "created_at": _at(c.start, 9, 0, c.zone),
            "created_by": c.counselor_id,
        }
        for c, e in courses
    ]
    plan_ids = list(_insert_ids(db, CarePlanRow, plans))
    services: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    sessions: list[dict[str, Any]] = []
    check_ins: list[dict[str, Any]] = []
    day_parts: list[
        tuple[Course, date, int, bool]
    ] = []  # course, day, craving pressure, checked in
    for (course, _), plan_id in zip(courses, plan_ids, strict=True):
        pid, prog = course.patient.id, course.patient.program_id
        base = {"care_plan_id": plan_id, "patient_id": pid, "program_id": prog}
        services.append(
            {
                **base,
                "service": "individual_counseling",
                "frequency": "weekly",
                "staff_id": course.counselor_id,
                "started_on": course.start,
                "ended_on": course.end if course.retention != "active" else None,
            }
        )
        extra = [s for s in SERVICES if rng.random() < s[1]]
        for name, _, frequency in extra:
            services.append(
                {
                    **base,
                    "service": name,
                    "frequency": frequency,
                    "staff_id": None,
                    "started_on": course.start,
                    "ended_on": course.end if course.retention != "active" else None,
                }
            )
        events.append(
            {**base, "retention": "active", "on_day": course.start, "note": "care plan started"}
        )
        if course.retention != "active":
            note = (
                "stopped coming" if course.retention == "dropped_out" else "completed the program"
            )
            events.append(
                {**base, "retention": course.retention, "on_day": course.end, "note": note}
            )
        _sessions(
            rng,
            course,
            plan_id,
            base,
            sessions,
            world.now,
            with_group=any(s[0] == "group_therapy" for s in extra),
        )
        _days(rng, course, day_parts)
    _insert(db, CarePlanServiceRow, services)
    _insert(db, RetentionEventRow, events)
    if sessions:
        _insert(db, TherapySessionRow, sessions)

    # Daily check-ins first (their ids link the ratings and use days reported with them).
    for course, day, _, checked in day_parts:
        if checked:
            check_ins.append(
                {
                    "patient_id": course.patient.id,
                    "program_id": course.patient.program_id,
                    "day": day,
                    "checked_in_at": _at(day, 20, rng.randint(0, 59), course.zone),
                    "mood": rng.choice(MOODS),
                    "side_effects": "",
                    "note": "",
                    "source": SOURCE,
                    "recorded_at": _at(day, 20, 5, course.zone),
                }
            )
    check_in_ids = list(_insert_ids(db, CheckInRow, check_ins)) if check_ins else []
    ratings: list[dict[str, Any]] = []
    use_days: list[dict[str, Any]] = []
    next_id = iter(check_in_ids)
    for course, day, pressure, checked in day_parts:
        if not checked:
            continue
        check_in_id = next(next_id)
        t = (day - course.start).days
        at = _at(day, 20, 2, course.zone)
        used_today = course.use.get(day, set())
        for substance in course.substances:
            common = {
                "patient_id": course.patient.id,
                "program_id": course.patient.program_id,
                "day": day,
                "substance": substance,
                "source": SOURCE,
                "check_in_id": check_in_id,
                "recorded_at": at,
            }
            ratings.append({**common, "rating": _craving(course, t, rng, pressure), "rated_at": at})
            used = substance in used_today
            drinks = float(rng.randint(3, 9)) if used and substance == "alcohol" else None
            if substance == "alcohol" and not used:
                drinks = 0.0
            use_days.append({**common, "used": used, "standard_drinks": drinks})
    if ratings:
        _insert(db, CravingRatingRow, ratings)
    if use_days:
        _insert(db, UseDayRow, use_days)
    _screens(db, rng, [c for c, _ in courses])
    _scales(db, rng, [c for c, _ in courses])


def _days(rng: random.Random, course: Course, out: list[tuple[Course, date, int, bool]]) -> None:
    """Day by day: lapses (rarer with time), craving pressure in the days before each, and
    whether the patient checked in."""
    total = (course.end - course.start).days
    lapse_days: set[date] = set()
    for t in range(total + 1):
        rate = course.lapse_rate * math.exp(-t / 45) + 0.0015
        if course.retention == "dropped_out" and total - t < 14:
            rate *= 4
        if rng.random() < rate:
            lapse_days.add(course.start + timedelta(days=t))
    if course.slip_this_week:
        # Abstinent for the three weeks before, then a lapse in the last few days.
        slip = course.end - timedelta(days=rng.randint(0, 3))
        lapse_days = {d for d in lapse_days if d < course.end - timedelta(days=24)} | {slip}
    if course.steady:
        lapse_days = {d for d in lapse_days if d < course.end - timedelta(days=24)}
    for day in lapse_days:
        course.use[day] = {course.substances[0]} if rng.random() < 0.8 else set(course.substances)
    ordered = sorted(lapse_days)
    for t in range(total + 1):
        day = course.start + timedelta(days=t)
        pressure = 0
        at = bisect.bisect_left(ordered, day)
        ahead = ordered[at] if at < len(ordered) else None
        if ahead is not None and (ahead - day).days <= 4:
            pressure = 3 - (ahead - day).days // 2  # craving climbs before a lapse
        checked = rng.random() < course.check_in_rate or day in course.use
        checked = checked or (course.steady and (course.end - day).days < 21)
        if course.stopped_checking_in and (course.end - day).days < course.stopped_checking_in:
            checked = False
        out.append((course, day, pressure, checked))


def _sessions(
    rng: random.Random,
    course: Course,
    plan_id: int,
    base: dict[str, Any],
    out: list[dict[str, Any]],
    now: datetime,
    with_group: bool,
) -> None:
    """Weekly individual counseling (and group therapy for some) from the start to the end,
    and the next two weeks booked for those still in care."""
    weekday = rng.randint(0, 4)
    first = course.start + timedelta(days=(weekday - course.start.weekday()) % 7)
    last = course.end + (timedelta(days=14) if course.retention == "active" else timedelta(0))
    kinds: list[tuple[str, int, int | None]] = [("individual_counseling", 10, course.counselor_id)]
    if with_group:
        kinds.append(("group_therapy", 17, None))
    day = first
    while day <= last:
        for service, hour, staff in kinds:
            starts = _at(day, hour, 0, course.zone)
            to_end = (course.end - day).days
            if starts > now or day > course.end:
                status, status_at = "booked", None
            else:
                miss = 0.08 if not (course.retention == "dropped_out" and to_end < 21) else 0.6
                roll = rng.random()
                status = (
                    "missed" if roll < miss else "cancelled" if roll < miss + 0.05 else "attended"
                )
                status_at = starts + timedelta(minutes=55)
            out.append(
                {
                    **base,
                    "service": service,
                    "starts_at": starts,
                    "minutes": 50 if service != "group_therapy" else 90,
                    "staff_id": staff,
                    "status": status,
                    "status_at": status_at,
                    "status_by": course.counselor_id if status_at else None,
                    "note": "",
                    "created_at": _at(course.start, 9, 30, course.zone),
                    "created_by": course.counselor_id,
                }
            )
        day += timedelta(days=7)


def _screens(db: Session, rng: random.Random, courses: Sequence[Course]) -> None:
    """A weekly urine screen on a random weekday (positive for a substance used in the three
    days before: a synthetic rule), one after most lapses, none after the end."""
    screens: list[dict[str, Any]] = []
    wanted: list[tuple[Course, date]] = []
    for course in courses:
        days: set[date] = set()
        day = course.start + timedelta(days=rng.randint(1, 6))
        while day <= course.end:
            days.add(day)
            day += timedelta(days=7 + rng.randint(-1, 1))
        for lapse in course.use:
            after = lapse + timedelta(days=rng.randint(1, 2))
            if after <= course.end and rng.random() < 0.6:
                days.add(after)
        for day in sorted(days):
            wanted.append((course, day))
            screens.append(
                {
                    "patient_id": course.patient.id,
                    "program_id": course.patient.program_id,
                    "collected_at": _at(day, 11, 15, course.zone),
                    "day": day,
                    "specimen": "urine",
                    "note": "",
                    "recorded_at": _at(day, 16, 0, course.zone),
                }
            )
    if not screens:
        return
    screen_ids = list(_insert_ids(db, DrugScreenRow, screens))
    results = []
    for (course, day), screen_id in zip(wanted, screen_ids, strict=True):
        recent = set().union(*(course.use.get(day - timedelta(days=k), set()) for k in range(0, 4)))
        for substance in course.substances:
            results.append(
                {
                    "screen_id": screen_id,
                    "patient_id": course.patient.id,
                    "program_id": course.patient.program_id,
                    "substance": substance,
                    "result": "positive" if substance in recent else "negative",
                }
            )
    _insert(db, DrugScreenResultRow, results)


def _instrument(instrument_id: str) -> Instrument | None:
    try:
        return get_instrument(instrument_id)
    except UnknownInstrument:
        return None


def _scales(db: Session, rng: random.Random, courses: Sequence[Course]) -> None:
    """Weekly PHQ-9 and GAD-7 (and PACS for alcohol, where the instrument exists), answered
    item by item and scored by the instrument engine; mood lifts as craving falls. A few
    patients answer PHQ-9 item 9 above 0 in their latest week (the caseload's urgent flag)."""
    phq9, gad7, pacs = _instrument("phq9"), _instrument("gad7"), _instrument("pacs")
    item9 = next(f.item for f in phq9.flags) if phq9 is not None else ""
    rows: list[dict[str, Any]] = []
    for course in courses:
        mood0 = rng.uniform(7, 17)
        anxious0 = rng.uniform(6, 14)
        risky = course.retention == "active" and rng.random() < 0.05
        day = course.start + timedelta(days=rng.randint(0, 3))
        while day <= course.end:
            t = (day - course.start).days
            fall = math.exp(-t / (course.pace * 1.5))
            last_week = (course.end - day).days < 7
            for instrument, start_level in (
                (phq9, mood0),
                (gad7, anxious0),
                (pacs, course.crave0 * 2.4),
            ):
                if instrument is None:
                    continue
                if instrument is pacs and "alcohol" not in course.substances:
                    continue
                target = start_level * (0.35 + 0.65 * fall) + rng.gauss(0, 1.5)
                keep_zero = [item9] if instrument is phq9 else []
                answers = _answers(rng, instrument, target, keep_zero)
                if instrument is phq9 and risky and last_week:
                    answers[item9] = 1
                scored = score(instrument, answers)
                rows.append(
                    {
                        "patient_id": course.patient.id,
                        "program_id": course.patient.program_id,
                        "instrument_id": instrument.id,
                        "instrument_version": scored.instrument_version,
                        "answers": scored.item_values,
                        "total": scored.total,
                        "scheme_id": scored.scheme_id,
                        "band_id": scored.band.id if scored.band else None,
                        "flags": [f.id for f in scored.flags],
                        "urgent": bool(scored.flags) and instrument is phq9,
                        "authored_at": _at(day, 19, 30, course.zone),
                        "day": day,
                        "source": SOURCE,
                        "recorded_at": _at(day, 19, 31, course.zone),
                    }
                )
            day += timedelta(days=7)
    if rows:
        _insert(db, QuestionnaireResponseRow, rows)
