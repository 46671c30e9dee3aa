"""The same migrations build the same schema on SQLite and PostgreSQL, with no drift from the models."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, bindparam, inspect, select, text
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.exc import DatabaseError, IntegrityError

from tandem.storage.db import UTCDateTime, make_engine, utcnow
from tandem.storage.migrate import (
    current_revisions,
    downgrade,
    head_revision,
    linear_history,
    script_directory,
    upgrade,
)
from tandem.storage.models import AuditEntry, AuditEntryPatient
from tandem.storage.registry import metadata
from tests.conftest import PG_URL, World, postgres_available

LINEAR = [
    "0001_platform",
    "0002_shared",
    "0003_detox",
    "0004_medications",
    "0005_identifier_patient_index",
    "0006_medication_dues",
    "0007_patient_name_words",
    "0008_detox_census",
    "0009_foreign_keys_and_kit",
    "0014_rules",
    "0011_accounts",
    "0010_audit_chain",
    "0013_dose_guards",
    "0012_input",
    "0015_fhir",
    "0017_unit_mar",
    "0018_recovery",
    "0022_choice",
    "0021_counseling",
    "0019_portal",
    "0023_smart",
    "0020_consent",
    "0019_caseload",
    "0024_smart_launch",
    "0024_alert_addressee",
    "0025_question_read_by_asker",
    "0026_craving_ratings_covering",
    "0026_dose_speed",
]
OLD_HEADS = {"0006_medication_dues", "0007_patient_name_words", "0008_detox_census"}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of this test's own (not the shared migrated template)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    ok, why = postgres_available()
    if not ok:
        pytest.skip(f"PostgreSQL not reachable at {PG_URL}: {why}")
    schema = f"tandem_mig_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def fresh(fresh_url: str) -> Iterator[Engine]:
    engine = make_engine(fresh_url)
    yield engine
    engine.dispose()


def _drift(engine: Engine) -> list[object]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))


def _set_versions(engine: Engine, revisions: set[str]) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
        for revision in sorted(revisions):
            conn.execute(text("INSERT INTO alembic_version VALUES (:r)"), {"r": revision})


def _seed_administration_with_due(engine: Engine) -> None:
    """A dose plan, a dose given from it and its planned time: medication_administration_dues
    references medication_administrations, the table 0009 rebuilds on SQLite."""
    t = metadata.tables
    now = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(t["programs"].insert().values(id=1, code="p", name="P", created_at=now))
        conn.execute(
            t["users"]
            .insert()
            .values(id=1, email="u@t.test", display_name="U", role="prescriber", password_hash="x")
        )
        conn.execute(
            t["patients"]
            .insert()
            .values(
                id="pat-1",
                program_id=1,
                family="Doe",
                given="Jo",
                family_lower="doe",
                given_lower="jo",
                last_updated=now,
            )
        )
        # Without the columns added since 0008 (a Python default would name them).
        plans = sa_table(
            "medication_dose_plans",
            *(
                sa_column(c.name, c.type)
                for c in t["medication_dose_plans"].c
                if c.name != "plan_digest"
            ),
        )
        conn.execute(
            plans.insert().values(
                id=1,
                patient_id="pat-1",
                program_id=1,
                medication_id="baclofen",
                kind="fixed",
                status="active",
                status_reason="",
                start_date=date(2026, 1, 5),
                plan={},
                inputs={},
                prescriber_id=1,
                created_at=now,
            )
        )
        conn.execute(
            t["medication_administrations"]
            .insert()
            .values(
                id=1,
                patient_id="pat-1",
                program_id=1,
                medication_id="baclofen",
                medication_text="baclofen 5 mg",
                dose_value=5,
                administered_at=now,
                performer_id=1,
                dose_plan_id=1,
            )
        )
        conn.execute(
            t["medication_administration_dues"]
            .insert()
            .values(administration_id=1, dose_plan_id=1, due_at=now)
        )


# --- the history ---------------------------------------------------------------------------


def test_one_linear_history_with_one_head() -> None:
    script = script_directory()
    assert script.get_heads() == [head_revision()]
    assert head_revision() == LINEAR[-1]
    assert linear_history() == LINEAR
    for revision in script.walk_revisions():
        assert not isinstance(revision.down_revision, tuple | list), revision.revision
        assert not revision.branch_labels, revision.revision


def test_migrations_reach_the_head(engine) -> None:
    assert current_revisions(engine) == {head_revision()}


def test_models_and_migrations_do_not_drift(engine) -> None:
    diff = _drift(engine)
    assert diff == [], f"models differ from migrations; add a revision: {diff}"


def test_upgrade_downgrade_to_base_and_upgrade_again(fresh: Engine) -> None:
    upgrade(fresh)
    assert current_revisions(fresh) == {head_revision()}
    downgrade(fresh, "base")
    assert current_revisions(fresh) == set()
    assert set(inspect(fresh).get_table_names()) <= {"alembic_version"}
    with fresh.connect() as conn:
        if fresh.dialect.name == "sqlite":
            leftovers = conn.execute(
                text(
                    "SELECT name FROM sqlite_master WHERE type IN ('trigger', 'index', 'view') "
                    "AND tbl_name != 'alembic_version'"
                )
            ).all()
        else:
            leftovers = conn.execute(
                text(
                    "SELECT proname FROM pg_proc JOIN pg_namespace n ON n.oid = pronamespace "
                    "WHERE n.nspname = current_schema()"
                )
            ).all()
    assert leftovers == []
    upgrade(fresh)
    assert current_revisions(fresh) == {head_revision()}
    assert _drift(fresh) == []


def test_each_revision_applies_in_order_and_steps_back(fresh: Engine) -> None:
    for revision in LINEAR:
        upgrade(fresh, revision)
        assert current_revisions(fresh) == {revision}
    for previous in reversed(["base", *LINEAR[:-1]]):
        downgrade(fresh, previous)
        assert current_revisions(fresh) == (set() if previous == "base" else {previous})


# --- databases made by the old branched history --------------------------------------------


def test_upgrade_collapses_the_old_three_heads(fresh: Engine) -> None:
    upgrade(fresh, "0008_detox_census")
    _seed_administration_with_due(fresh)
    _set_versions(fresh, OLD_HEADS)
    assert current_revisions(fresh) == OLD_HEADS

    upgrade(fresh)

    assert current_revisions(fresh) == {head_revision()}
    assert _drift(fresh) == []
    with fresh.connect() as conn:
        dues = conn.execute(
            text("SELECT administration_id, dose_plan_id FROM medication_administration_dues")
        )
        assert dues.all() == [(1, 1)]
        if fresh.dialect.name == "sqlite":  # foreign keys are back on for the pooled connection
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upgrade_collapses_old_branches_part_way(fresh: Engine) -> None:
    # 0001-0005 ran: under the old history that was one row per branch (0003, 0004, 0005).
    upgrade(fresh, "0005_identifier_patient_index")
    _set_versions(fresh, {"0003_detox", "0004_medications", "0005_identifier_patient_index"})
    upgrade(fresh)
    assert current_revisions(fresh) == {head_revision()}
    assert _drift(fresh) == []


def test_upgrade_refuses_old_branches_that_skip_a_revision(fresh: Engine) -> None:
    # Old history: 0004 ran but 0006 did not, while 0007 and 0008 did. Collapsing to 0008
    # would skip 0006, so upgrade refuses and changes nothing.
    upgrade(fresh, "0008_detox_census")
    stale = {"0004_medications", "0007_patient_name_words", "0008_detox_census"}
    _set_versions(fresh, stale)
    with pytest.raises(RuntimeError, match="0006_medication_dues"):
        upgrade(fresh)
    assert current_revisions(fresh) == stale


# --- what 0009 adds ------------------------------------------------------------------------


def test_administration_keys_are_enforced(engine, world: World) -> None:
    with engine.connect() as conn:
        performer = conn.execute(text("SELECT min(id) FROM users")).scalar_one()
    row = {
        "patient_id": world.patient_a,
        "program_id": world.program_a,
        "medication_id": "lorazepam",
        "medication_text": "lorazepam 1 mg",
        "dose_value": 1,
        "administered_at": utcnow(),
        "performer_id": performer,
    }
    table = metadata.tables["medication_administrations"]
    for column in ("assessment_id", "dose_plan_id"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(table.insert().values(**row, **{column: 987654}))
    with engine.begin() as conn:
        conn.execute(table.insert().values(**row))
    with engine.connect() as conn:
        assert conn.execute(select(table.c.id)).all() != []


def test_administrations_keep_their_indexes_and_gain_their_keys(engine) -> None:
    inspector = inspect(engine)
    indexes = {ix["name"] for ix in inspector.get_indexes("medication_administrations")}
    assert indexes == {
        "ix_medadmin_patient_at",
        "ix_medication_administrations_assessment_id",
        # 0026: a plan's doses by time, instead of the dose_plan_id index of 0009
        "ix_medadmin_plan_at",
    }
    keys = {
        (tuple(fk["constrained_columns"]), fk["referred_table"], fk["options"].get("ondelete"))
        for fk in inspector.get_foreign_keys("medication_administrations")
    }
    assert (("assessment_id",), "withdrawal_assessments", "RESTRICT") in keys
    assert (("dose_plan_id",), "medication_dose_plans", "RESTRICT") in keys
    assert (("override_by",), "users", "RESTRICT") in keys
    assert len(keys) == 6  # patient, program, performer, assessment, dose plan, override by


def test_audit_entries_cannot_be_changed_or_deleted(engine, sessions) -> None:
    with sessions() as db:
        db.add(
            AuditEntry(
                recorded_at=utcnow(),
                actor="t",
                action="R",
                operation="read",
                outcome="0",
                channel="api",
            )
        )
        db.commit()
    for statement in ("UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries"):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT actor FROM audit_entries")).scalar_one() == "t"


def test_audit_entry_patients_cannot_be_changed_or_deleted(engine, sessions) -> None:
    with sessions() as db:
        entry = AuditEntry(
            recorded_at=utcnow(),
            actor="t",
            action="E",
            operation="search",
            outcome="0",
            channel="web",
        )
        db.add(entry)
        db.flush()
        db.add_all(
            [
                AuditEntryPatient(audit_entry_id=entry.id, patient_id="p-1"),
                AuditEntryPatient(audit_entry_id=entry.id, patient_id="p-2"),
            ]
        )
        db.commit()
    for statement in (
        "UPDATE audit_entry_patients SET patient_id = 'x'",
        "DELETE FROM audit_entry_patients",
    ):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with pytest.raises(IntegrityError), engine.begin() as conn:  # only audited entries
        conn.execute(text("INSERT INTO audit_entry_patients VALUES (987654, 'p-3')"))
    with engine.connect() as conn:
        seen = conn.execute(
            text("SELECT patient_id FROM audit_entry_patients ORDER BY patient_id")
        ).all()
    assert seen == [("p-1",), ("p-2",)]


def test_a_scheduled_job_is_claimed_once(engine) -> None:
    due = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    later = datetime(2026, 1, 3, tzinfo=UTC)
    with engine.begin() as conn:
        # Plain SQL: last_status and claimed_by take the server's default ''.
        conn.execute(
            text("INSERT INTO scheduled_jobs (name, next_run_at) VALUES ('j', :due)").bindparams(
                bindparam("due", type_=UTCDateTime())
            ),
            {"due": due},
        )
    jobs = metadata.tables["scheduled_jobs"]
    claims = []
    for worker in ("a", "b"):
        with engine.begin() as conn:
            result = conn.execute(
                jobs.update()
                .where(jobs.c.name == "j", jobs.c.next_run_at <= now)
                .values(next_run_at=later, last_started_at=now, claimed_by=worker)
            )
            claims.append(result.rowcount)
    assert claims == [1, 0]
    with engine.connect() as conn:
        row = conn.execute(select(jobs)).one()
    assert (row.claimed_by, row.last_status, row.next_run_at) == ("a", "", later)


def test_sqlite_runs_wal_with_foreign_keys_and_durable_commits(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
