"""Withdrawal storage on SQLite and PostgreSQL: due and overdue in the program's time zone across a
daylight-saving change, protocol versions kept per program, overdue escalations raised once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from sqlalchemy import select

from tandem.alerts.models import Alert
from tandem.patients.episodes import episode_changed
from tandem.storage.db import session_scope
from tandem.withdrawal import assessments, census, protocols
from tandem.withdrawal.protocol import load_protocol, protocol_from_mapping
from tandem.withdrawal.storage import AssessmentRow, MonitoringRow, ProtocolVersionRow
from tests.conftest import World
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers

NEW_YORK = ZoneInfo("America/New_York")


def program_version(overdue_minutes: int, version: str) -> Any:
    from importlib import resources

    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text("utf-8")
    )
    data = yaml.safe_load(text)
    data["version"] = version
    for rule in data["instruments"]["ciwa_ar"]["escalations"]:
        if rule["kind"] == "overdue":
            rule["minutes"] = overdue_minutes  # the program's own grace period (test value)
    return protocol_from_mapping(data)


def test_due_and_overdue_across_spring_forward_in_the_program_zone(sessions, world: World) -> None:
    # 10 March 2024, New York: 02:00 EST jumps to 03:00 EDT.
    assessed = datetime(2024, 3, 10, 1, 30, tzinfo=NEW_YORK)  # 06:30 UTC
    admit_to_detox(sessions, world, world.patient_a, at=assessed - timedelta(hours=3))
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(
            access,
            world.patient_a,
            "ciwa_ar",
            ciwa_answers(9),
            assessed,
            now=assessed + timedelta(minutes=5),
        )
    # 8-10: every 2 h of elapsed time -> 08:30 UTC, which the ward clock shows as 04:30 EDT
    assert saved.state.due_at == datetime(2024, 3, 10, 8, 30, tzinfo=UTC)
    assert saved.state.due_at.astimezone(NEW_YORK).strftime("%H:%M %Z") == "04:30 EDT"
    with sessions() as db:
        row = db.scalar(select(MonitoringRow))
        assert row.due_at == datetime(2024, 3, 10, 8, 30, tzinfo=UTC)
        before, _ = census.census_rows(
            db, world.unit_a_detox, datetime(2024, 3, 10, 4, 29, tzinfo=NEW_YORK)
        )
        after, _ = census.census_rows(
            db, world.unit_a_detox, datetime(2024, 3, 10, 4, 31, tzinfo=NEW_YORK)
        )
    assert not before[0].overdue
    assert after[0].overdue and after[0].overdue_by == timedelta(minutes=1)


def test_due_across_fall_back_is_two_elapsed_hours(sessions, world: World) -> None:
    # 3 November 2024, New York: 02:00 EDT falls back to 01:00 EST; 00:45 EDT + 2 h = 01:45 EST.
    assessed = datetime(2024, 11, 3, 0, 45, tzinfo=NEW_YORK)
    admit_to_detox(sessions, world, world.patient_a, at=assessed - timedelta(hours=1))
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(
            access, world.patient_a, "ciwa_ar", ciwa_answers(8), assessed, now=assessed
        )
    local = saved.state.due_at.astimezone(NEW_YORK)
    elapsed = saved.state.due_at.astimezone(UTC) - assessed.astimezone(
        UTC
    )  # same-zone subtraction is wall time
    assert (local.strftime("%H:%M %Z"), elapsed) == ("01:45 EST", timedelta(hours=2))


def test_each_assessment_records_the_protocol_version_it_was_scored_under(
    sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        first = assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(4))
        protocols.set_program_protocol(db, world.program_a, program_version(30, "alpha-1"))
        second = assessments.save_assessment(access, world.patient_a, "ciwa_ar", ciwa_answers(5))
        first_id, second_id = first.assessment.id, second.assessment.id
    with sessions() as db:
        versions = db.scalars(select(ProtocolVersionRow).order_by(ProtocolVersionRow.id)).all()
        assert [(v.version, v.origin, v.is_current) for v in versions] == [
            (load_protocol().version, "example", False),
            ("alpha-1", "program", True),
        ]
        assert versions[0].content_hash == load_protocol().content_hash
        assert db.get(AssessmentRow, first_id).protocol_version_id == versions[0].id
        assert db.get(AssessmentRow, second_id).protocol_version == "alpha-1"
        assert protocols.program_protocol(db, world.program_b).origin == "example"  # bravo has none


def test_an_overdue_reassessment_escalates_once_after_the_programs_grace_period(
    sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        protocols.set_program_protocol(db, world.program_a, program_version(30, "alpha-2"))
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(
            access,
            world.patient_a,
            "ciwa_ar",
            ciwa_answers(5),
            datetime.now(UTC) - timedelta(minutes=10),
        )
        due = saved.state.due_at
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world, "prescriber")
        census.census(access, world.unit_a_detox, now=due + timedelta(minutes=29))
        assert db.scalars(select(Alert)).all() == []
        census.census(access, world.unit_a_detox, now=due + timedelta(minutes=31))
        census.census(access, world.unit_a_detox, now=due + timedelta(minutes=40))
    with sessions() as db:
        (alert,) = db.scalars(select(Alert)).all()
    assert (alert.rule_id, alert.kind, alert.severity) == (
        "ciwa_overdue",
        "withdrawal_overdue",
        "warning",
    )
    assert "overdue by 31 min" in alert.detail


def test_an_assessment_entered_late_escalates_at_once_and_only_once(sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        protocols.set_program_protocol(db, world.program_a, program_version(30, "alpha-3"))
        access = access_for(sessions, db, world)
        saved = assessments.save_assessment(
            access,
            world.patient_a,
            "ciwa_ar",
            ciwa_answers(5),
            datetime.now(UTC) - timedelta(hours=3),
        )
        assert [a.rule_id for a in saved.alerts] == ["ciwa_overdue"]
        census.census(access_for(sessions, db, world, "prescriber"), world.unit_a_detox)
    with sessions() as db:
        assert len(db.scalars(select(Alert)).all()) == 1


def test_the_census_statement_orders_exactly_as_the_core_census_key(sessions, world: World) -> None:
    """Random monitoring states (alerts of every severity, overdue, unset due times, baseline due,
    ties): the SQL order is the pure census key's order, page by page."""
    import random

    from tandem.alerts.models import Alert
    from tandem.storage.models import Episode, Patient

    rng = random.Random(3)
    now = datetime(2024, 6, 3, 12, 0, tzinfo=UTC)
    with session_scope(sessions) as db:
        version = protocols.set_program_protocol(
            db, world.program_a, load_protocol(), origin="example"
        ).version_id
        for n in range(60):
            patient = Patient(
                program_id=world.program_a,
                family=f"P{n:02d}",
                given="X",
                family_lower=f"p{n:02d}",
                given_lower="x",
            )
            db.add(patient)
            db.flush()
            episode = Episode(
                patient_id=patient.id,
                program_id=world.program_a,
                unit_id=world.unit_a_detox,
                phase="detox",
                admitted_at=now - timedelta(hours=rng.choice([5, 30])),
                phase_started_at=now - timedelta(hours=30),
            )
            db.add(episode)
            episode_changed(db, episode)
            if rng.random() < 0.1:
                continue  # baseline due: the row admission made stays as it is
            row = db.scalar(select(MonitoringRow).where(MonitoringRow.episode_id == episode.id))
            due = (
                None
                if rng.random() < 0.1
                else now + timedelta(minutes=rng.choice([-90, -30, -1, 5, 30, 30, 120]))
            )
            row.instrument_id = rng.choice(["ciwa_ar", "cows"])
            row.last_assessment_id, row.last_total = n, rng.randint(0, 30)
            row.band_rank = rng.choice([-1, 1, 2, 3, 5])
            row.last_assessed_at, row.due_at = now - timedelta(hours=1), due
            row.interval_minutes, row.protocol_version_id = (None if due is None else 60), version
            for _ in range(rng.choice([0, 0, 0, 1, 2])):
                db.add(
                    Alert(
                        patient_id=patient.id,
                        program_id=world.program_a,
                        kind="k",
                        rule_id="r",
                        severity=rng.choice(["info", "warning", "high", "critical", "medium"]),
                        title="t",
                        detail="",
                        source="",
                        raised_at=now,
                        acknowledged_at=now if rng.random() < 0.3 else None,
                        acknowledgement_note="",
                    )
                )
        db.flush()
        assessments.refresh_alerts(db)
    with sessions() as db:
        every, counts = census.census_rows(db, world.unit_a_detox, now)
        pages = [
            census.census_rows(db, world.unit_a_detox, now, 25, offset)[0] for offset in (0, 25, 50)
        ]
    assert len(every) == counts["in_monitoring"] == 60
    assert [r.sort_key for r in every] == sorted(r.sort_key for r in every)
    assert [r.episode_id for page in pages for r in page] == [r.episode_id for r in every]
    assert counts["overdue_count"] == sum(r.overdue for r in every)
