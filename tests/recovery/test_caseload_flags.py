"""Each caseload risk flag: a patient who raises it and one who does not, on both engines; the
thresholds are the program's data (an override changes the result); the caseload shows only
the counselor's own patients of their own program, most serious first, and is audited."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access.guard import AccessDenied
from tandem.recovery.caseload import caseload, program_rules, set_program_rules
from tandem.recovery.caseload_rules import DATA, RiskFlagsError, load_rules, rules_from_mapping
from tandem.storage.db import session_scope
from tandem.storage.models import AuditEntry, AuditEntryPatient
from tests.conftest import World
from tests.recovery.caseload_helpers import Records, access_for, days_ago, user_id

Setup = Callable[[Records, dict[str, int]], None]


def _phq9_raises(r: Records, users: dict[str, int]) -> None:
    r.scale("phq9", days_ago(2), self_harm_thoughts=1)


def _phq9_quiet(r: Records, users: dict[str, int]) -> None:
    r.scale("phq9", days_ago(2), down_depressed=3, self_harm_thoughts=0)
    r.scale("phq9", days_ago(40), self_harm_thoughts=2)  # before the 28-day window


def _use_raises(r: Records, users: dict[str, int]) -> None:
    for n in range(20, 1, -1):
        r.use(days_ago(n), used=False)
    r.use(days_ago(1), used=True)  # after 19 reported days without use


def _use_quiet(r: Records, users: dict[str, int]) -> None:
    r.use(days_ago(10), used=True)
    for n in range(9, 1, -1):
        r.use(days_ago(n), used=False)
    r.use(days_ago(1), used=True)  # after only 8 days without use


def _screen_raises(r: Records, users: dict[str, int]) -> None:
    r.screen(days_ago(3), alcohol="positive", cocaine="negative")


def _screen_quiet(r: Records, users: dict[str, int]) -> None:
    r.screen(days_ago(3), alcohol="negative")
    r.screen(days_ago(20), alcohol="positive")  # before the 14-day window


def _craving_raises(r: Records, users: dict[str, int]) -> None:
    for n in range(13, 6, -1):
        r.craving(days_ago(n), 2)
    for n in range(6, -1, -1):
        r.craving(days_ago(n), 6)


def _craving_quiet(r: Records, users: dict[str, int]) -> None:
    for n in range(13, 6, -1):
        r.craving(days_ago(n), 3)
    for n in range(6, -1, -1):
        r.craving(days_ago(n), 4)  # up by one point only


def _sessions_raise(r: Records, users: dict[str, int]) -> None:
    r.session(days_ago(20), "missed")
    r.session(days_ago(13), "attended")
    r.session(days_ago(6), "missed")


def _sessions_quiet(r: Records, users: dict[str, int]) -> None:
    r.session(days_ago(40), "missed")  # before the 28-day window
    r.session(days_ago(20), "attended")
    r.session(days_ago(13), "cancelled")
    r.session(days_ago(6), "missed")


def _doses_raise(r: Records, users: dict[str, int]) -> None:
    plan = r.dose_plan(users["prescriber"])
    r.dose_reported(plan, days_ago(3), False, users["patient"])
    r.dose_reported(plan, days_ago(2), True, users["patient"])
    r.dose_reported(plan, days_ago(1), False, users["patient"])


def _doses_quiet(r: Records, users: dict[str, int]) -> None:
    plan = r.dose_plan(users["prescriber"])
    r.dose_reported(plan, days_ago(12), False, users["patient"])  # before the 7-day window
    for n in range(5, 1, -1):
        r.dose_reported(plan, days_ago(n), True, users["patient"])
    r.dose_reported(plan, days_ago(1), False, users["patient"])


def _check_in_raises(r: Records, users: dict[str, int]) -> None:
    r.check_in(days_ago(5))


def _check_in_quiet(r: Records, users: dict[str, int]) -> None:
    r.check_in(days_ago(5))
    r.check_in(days_ago(1))


CASES: dict[str, tuple[Setup, Setup, str]] = {
    # kind: (raises it, does not, words the sentence must hold)
    "phq9_item9": (_phq9_raises, _phq9_quiet, "item 9"),
    "use_after_abstinence": (_use_raises, _use_quiet, "after 19 days without use"),
    "positive_screen": (_screen_raises, _screen_quiet, "positive for alcohol"),
    "craving_rising": (_craving_raises, _craving_quiet, "6/10, up from 2/10"),
    "missed_sessions": (_sessions_raise, _sessions_quiet, "Missed 2 of 3 sessions"),
    "missed_doses": (_doses_raise, _doses_quiet, "2 missed doses"),
    "no_check_in": (_check_in_raises, _check_in_quiet, "No daily check-in for 5 days"),
}


def _users(db: Session, world: World) -> dict[str, int]:
    return {name: user_id(db, world.email(name)) for name in ("counselor", "prescriber", "patient")}


def _both(
    sessions: sessionmaker[Session], world: World, raises: Setup, quiet: Setup
) -> dict[str, int]:
    with session_scope(sessions) as db:
        users = _users(db, world)
        for patient_id, setup in ((world.patient_a, raises), (world.patient_a2, quiet)):
            records = Records(db, patient_id, world.program_a)
            records.care_plan(users["counselor"], days_ago(60))
            setup(records, users)
    return users


def _kinds(sessions: sessionmaker[Session], world: World) -> dict[str, list[str]]:
    with sessions() as db:
        shown = caseload(access_for(db, sessions, world.email("counselor")), world.program_a)
        db.commit()
    return {row.patient_id: [f.kind for f in row.flags] for row in shown.rows}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_flag_raised_for_one_patient_and_not_the_other(
    kind: str, sessions: sessionmaker[Session], world: World
) -> None:
    raises, quiet, words = CASES[kind]
    _both(sessions, world, raises, quiet)
    with sessions() as db:
        shown = caseload(access_for(db, sessions, world.email("counselor")), world.program_a)
        db.commit()
    rows = {row.patient_id: row for row in shown.rows}
    assert set(rows) == {world.patient_a, world.patient_a2}
    raised = [f for f in rows[world.patient_a].flags if f.kind == kind]
    assert len(raised) == 1, rows[world.patient_a].flags
    assert words in raised[0].sentence
    assert kind not in [f.kind for f in rows[world.patient_a2].flags]


def test_the_programs_own_threshold_changes_who_is_flagged(
    sessions: sessionmaker[Session], world: World, tmp_path: Path
) -> None:
    _both(sessions, world, _craving_raises, _craving_quiet)  # rises of 4 and 1 points
    assert "craving_rising" not in _kinds(sessions, world)[world.patient_a2]
    document = yaml.safe_load(DATA.read_text())
    for rule in document["flags"]:
        if rule["kind"] == "craving_rising":
            rule["at_least"] = 1
        if rule["kind"] == "no_check_in":
            rule["enabled"] = False
    document["id"], document["version"] = "alpha-flags", "2"
    path = tmp_path / "alpha.yaml"
    path.write_text(yaml.safe_dump(document))
    with session_scope(sessions) as db:
        stored = set_program_rules(db, world.program_a, load_rules(path))
        assert stored.origin == "program"
    kinds = _kinds(sessions, world)
    assert "craving_rising" in kinds[world.patient_a2]
    assert all("no_check_in" not in k for k in kinds.values())
    with sessions() as db:
        assert program_rules(db, world.program_b).origin == "example"  # another program: as shipped


def test_rules_refused_when_they_do_not_validate() -> None:
    document = yaml.safe_load(DATA.read_text())
    document["flags"][0]["explain"] = "Uses an {unknown} placeholder here."
    with pytest.raises(RiskFlagsError, match="unknown"):
        rules_from_mapping(document, "test")
    document = yaml.safe_load(DATA.read_text())
    document["flags"].append(document["flags"][0])
    with pytest.raises(RiskFlagsError, match="repeated"):
        rules_from_mapping(document, "test")
    document = yaml.safe_load(DATA.read_text())
    del document["flags"][0]["source"]
    with pytest.raises(RiskFlagsError, match="source"):
        rules_from_mapping(document, "test")


def test_every_threshold_has_a_source_or_says_unverified() -> None:
    rules = load_rules()
    for rule in rules.flags:
        assert rule.source.citation
        if rule.kind != "phq9_item9":
            assert rule.source.unverified and "program" in rule.source.note.lower()


def test_only_the_counselors_own_patients_of_their_own_program(
    sessions: sessionmaker[Session], world: World
) -> None:
    with session_scope(sessions) as db:
        users = _users(db, world)
        nurse = user_id(db, world.email("nurse"))
        Records(db, world.patient_a, world.program_a).care_plan(users["counselor"], days_ago(30))
        Records(db, world.patient_a2, world.program_a).care_plan(nurse, days_ago(30))
        # Another program's patient, even naming this counselor, never shows.
        Records(db, world.patient_b, world.program_b).care_plan(users["counselor"], days_ago(30))
    with sessions() as db:
        access = access_for(db, sessions, world.email("counselor"))
        mine = caseload(access, world.program_a)
        whole = caseload(access, world.program_a, whole_program=True)
        db.commit()
    assert [r.patient_id for r in mine.rows] == [world.patient_a]
    assert {r.patient_id for r in whole.rows} == {world.patient_a, world.patient_a2}
    with sessions() as db, pytest.raises(AccessDenied):
        caseload(access_for(db, sessions, world.email("counselor")), world.program_b)
    with sessions() as db:  # the nurse of program B sees B's caseload only
        other = caseload(access_for(db, sessions, world.email("nurse_b")))
        db.commit()
    assert [r.patient_id for r in other.rows] == [world.patient_b]
    for role in ("patient", "researcher"):
        with sessions() as db, pytest.raises(AccessDenied):
            caseload(access_for(db, sessions, world.email(role)), world.program_a)


def test_most_serious_first_and_the_view_is_audited_with_each_patient(
    sessions: sessionmaker[Session], world: World
) -> None:
    _both(sessions, world, _check_in_raises, _phq9_raises)  # A: watch; A2: urgent
    with sessions() as db:
        shown = caseload(access_for(db, sessions, world.email("counselor")), world.program_a)
        db.commit()
    assert [r.patient_id for r in shown.rows] == [world.patient_a2, world.patient_a]
    assert shown.rows[0].flags[0].kind == "phq9_item9"
    with sessions() as db:
        entry = db.scalars(
            select(AuditEntry)
            .where(AuditEntry.resource_type == "CarePlan", AuditEntry.operation == "search")
            .order_by(AuditEntry.id.desc())
        ).first()
        assert entry is not None
        patients = set(
            db.scalars(
                select(AuditEntryPatient.patient_id).where(
                    AuditEntryPatient.audit_entry_id == entry.id
                )
            )
        )
    assert patients == {world.patient_a, world.patient_a2}


def test_a_lapse_is_counted_from_the_previous_use_of_any_substance(
    sessions: sessionmaker[Session], world: World
) -> None:
    """Two lapses in the window: the later one after 3 days without use does not count, the
    earlier one after 25 reported days does (two substances asked a day count as one day)."""

    def lapses(r: Records, users: dict[str, int]) -> None:
        for n in range(30, 5, -1):
            r.use(days_ago(n), used=False)
            r.use(days_ago(n), used=False, substance="opioids")
        r.use(days_ago(5), used=True, substance="opioids")
        for n in range(4, 1, -1):
            r.use(days_ago(n), used=False)
        r.use(days_ago(1), used=True)

    def short_runs(r: Records, users: dict[str, int]) -> None:
        r.use(days_ago(20), used=True)
        for n in range(19, 1, -1):
            r.use(days_ago(n), used=False)
        r.use(days_ago(10), used=True, substance="opioids")  # the run restarts here
        r.use(days_ago(1), used=True)

    _both(sessions, world, lapses, short_runs)
    with sessions() as db:
        shown = caseload(access_for(db, sessions, world.email("counselor")), world.program_a)
        db.commit()
    rows = {row.patient_id: row for row in shown.rows}
    raised = [f for f in rows[world.patient_a].flags if f.kind == "use_after_abstinence"]
    assert len(raised) == 1
    assert "after 25 days without use" in raised[0].sentence
    assert days_ago(5).strftime("%a %d %b") in raised[0].sentence
    assert "use_after_abstinence" not in [f.kind for f in rows[world.patient_a2].flags]
