"""The medication demo step: the plans the issue asks for, plausible adherence, side effects,
one missed-dose alert, and the same data for the same seed."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select

from tandem import demo
from tandem.alerts.models import Alert
from tandem.medications.demo import medication_plans
from tandem.medications.storage import (
    AdministrationDueRow,
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationFactsRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.storage.db import session_scope

NOW = datetime(2026, 3, 4, 2, 30, tzinfo=UTC)


def _load(sessions, seed: int):  # type: ignore[no-untyped-def]
    with session_scope(sessions) as db:
        world = demo.build_platform(db, 80, seed=seed, now=NOW)
        demo.create_logins(db, world, seed=seed)
        medication_plans(db, world)


def test_demo_plans_adherence_side_effects_and_one_alert(
    sessions, tmp_path, sqlite_template
) -> None:
    _load(sessions, seed=5)
    with sessions() as db:
        plans = list(db.scalars(select(DosePlanRow)))
        kinds = Counter((p.medication_id, p.kind, p.status) for p in plans)
        assert kinds[("baclofen", "titration", "active")] >= 5
        assert (
            kinds[("baclofen", "taper", "active")] == 2
            and kinds[("baclofen", "titration", "stopped")] == 2
        )
        assert kinds[("naltrexone", "maintenance", "active")] == 3
        assert kinds[("acamprosate", "maintenance", "active")] == 3
        assert any(
            p.ceiling_mg_day and p.ceiling_mg_day < 80
            for p in plans
            if p.medication_id == "baclofen"
        )
        facts = db.scalar(select(func.count()).select_from(MedicationFactsRow))
        assert facts == len({p.patient_id for p in plans}) + 2  # two screened, on no medication
        taken = Counter(db.scalars(select(MedicationStatementRow.taken)))
        assert taken[True] > 5 * taken[False] > 0
        given = db.scalar(
            select(func.count())
            .select_from(MedicationAdministrationRow)
            .where(MedicationAdministrationRow.dose_plan_id.is_not(None))
        )
        assert given > 0 and given == db.scalar(
            select(func.count()).select_from(AdministrationDueRow)
        )
        assert db.scalar(select(func.count()).select_from(SideEffectRow)) > 0
        alerts = list(db.scalars(select(Alert).where(Alert.kind == "missed_doses")))
        assert len(alerts) == 1 and alerts[0].for_role == "prescriber"
        first = sorted(
            (p.medication_id, p.kind, str(p.start_date), p.inputs.get("target")) for p in plans
        )
    _again(first, tmp_path, sqlite_template)


def _again(first, tmp_path, template) -> None:  # type: ignore[no-untyped-def]
    """The same seed in a fresh database gives the same plans."""
    import shutil

    from tandem.storage.db import make_engine, make_sessionmaker

    path = tmp_path / "again.db"
    shutil.copy(template, path)
    engine = make_engine(f"sqlite:///{path}")
    sessions = make_sessionmaker(engine)
    _load(sessions, seed=5)
    with sessions() as db:
        plans = list(db.scalars(select(DosePlanRow)))
        assert (
            sorted(
                (p.medication_id, p.kind, str(p.start_date), p.inputs.get("target")) for p in plans
            )
            == first
        )
    engine.dispose()
