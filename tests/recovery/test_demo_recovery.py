"""`tandem demo`'s recovery step: months of plausible data with the expected shapes, the same
for the same seed, scored by the instrument engine, and something for the caseload to flag."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tandem import demo
from tandem.domains import demo_steps
from tandem.instruments.engine import get_instrument, score
from tandem.recovery.caseload import caseload
from tandem.recovery.storage import (
    CarePlanRow,
    CheckInRow,
    CravingRatingRow,
    DrugScreenResultRow,
    QuestionnaireResponseRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.migrate import upgrade
from tandem.storage.models import User
from tests.recovery.caseload_helpers import access_for

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def _load(url: str, seed: int = 3, patients: int = 60) -> sessionmaker[Session]:
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_sessionmaker(engine)
    with session_scope(sessions) as db:
        world = demo.build_platform(db, patients, seed, now=NOW)
        demo.create_logins(db, world, seed)
        for _label, step in demo_steps():
            step(db, world)
    return sessions


@pytest.fixture
def demo_sessions(database_url: str) -> sessionmaker[Session]:
    return _load(database_url)


def test_months_of_recovery_with_drop_outs_and_falling_craving(
    demo_sessions: sessionmaker[Session],
) -> None:
    with demo_sessions() as db:
        plans = db.scalars(select(CarePlanRow)).all()
        assert len(plans) >= 25
        retention = {p.retention for p in plans}
        assert {"active", "dropped_out"} <= retention
        assert all(p.counselor_id is not None for p in plans)
        spans = [(NOW.date() - p.started_on).days for p in plans]
        assert max(spans) >= 90 and sum(spans) / len(spans) >= 60  # months, not days
        # Cravings fall with treatment: the first week's average above the last week's, on
        # average over the patients.
        by_patient: dict[str, list[tuple[object, int]]] = defaultdict(list)
        for patient_id, day, rating in db.execute(
            select(CravingRatingRow.patient_id, CravingRatingRow.day, CravingRatingRow.rating)
        ):
            by_patient[patient_id].append((day, rating))
        firsts, lasts = [], []
        for series in by_patient.values():
            series.sort()
            firsts.append(sum(r for _, r in series[:7]) / len(series[:7]))
            lasts.append(sum(r for _, r in series[-7:]) / len(series[-7:]))
        assert sum(firsts) / len(firsts) > sum(lasts) / len(lasts) + 1.5
        # Lapses, screens mostly negative but some positive, sessions mostly attended, some missed.
        assert db.scalar(select(func.count()).where(UseDayRow.used)) > 0
        results = dict(
            db.execute(
                select(DrugScreenResultRow.result, func.count()).group_by(
                    DrugScreenResultRow.result
                )
            ).all()
        )
        assert 0 < results["positive"] < results["negative"]
        statuses = dict(
            db.execute(
                select(TherapySessionRow.status, func.count()).group_by(TherapySessionRow.status)
            ).all()
        )
        assert statuses["attended"] > statuses["missed"] > 0 and statuses["booked"] > 0
        # Check-ins most days, not every day.
        assert db.scalar(select(func.count()).select_from(CheckInRow)) > 20 * len(plans)
        # Weekly scales, scored by the engine: the stored total is what the engine gives.
        responses = db.scalars(select(QuestionnaireResponseRow)).all()
        assert {"phq9", "gad7"} <= {r.instrument_id for r in responses}
        for response in responses[:200]:
            assert (
                score(get_instrument(response.instrument_id), response.answers).total
                == response.total
            )


def test_the_same_seed_gives_the_same_recovery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = _load(f"sqlite:///{tmp_path / 'a.db'}", patients=30)
    second = _load(f"sqlite:///{tmp_path / 'b.db'}", patients=30)

    def shape(sessions: sessionmaker[Session]) -> list[tuple[object, ...]]:
        with sessions() as db:
            return [
                tuple(r)
                for r in db.execute(
                    select(
                        CravingRatingRow.day, CravingRatingRow.substance, CravingRatingRow.rating
                    ).order_by(CravingRatingRow.id)
                )
            ]

    assert shape(first) == shape(second) and shape(first)


def test_the_demo_counselor_has_patients_to_look_at(demo_sessions: sessionmaker[Session]) -> None:
    with demo_sessions() as db:
        shown = caseload(access_for(db, demo_sessions, "counselor@demo.tandem.test"), now=NOW)
        db.commit()
    assert len(shown.rows) >= 10
    assert any(row.flags for row in shown.rows) and any(not row.flags for row in shown.rows)
    # The demo patient's own login is on that caseload, abstinent lately: their next check-in
    # reporting use is what the caseload flags (the browser test's path through the portal).
    with demo_sessions() as db:
        own = db.scalar(select(User.patient_id).where(User.email == "patient@demo.tandem.test"))
        recent = db.execute(
            select(UseDayRow.day, UseDayRow.used).where(
                UseDayRow.patient_id == own, UseDayRow.day >= NOW.date() - timedelta(days=21)
            )
        ).all()
    mine = next(row for row in shown.rows if row.patient_id == own)
    assert "use_after_abstinence" not in [f.kind for f in mine.flags]
    assert len({day for day, _ in recent}) >= 14 and not any(used for _, used in recent)
