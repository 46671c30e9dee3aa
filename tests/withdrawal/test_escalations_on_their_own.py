"""Issue 9 item 8: escalations fire with nobody watching. The scheduler's sweep raises an
overdue escalation that no page was opened for; `tandem worker` runs the sweeps without HTTP
(`tandem serve --no-jobs` leaves them to it); the census says when the sweep last ran and warns
when it has stopped."""

from __future__ import annotations

from datetime import timedelta
from importlib import resources
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from typer.testing import CliRunner

from tandem import scheduler
from tandem.alerts.models import Alert
from tandem.cli import app
from tandem.domains import scheduled_jobs
from tandem.platform_cli import served_app
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import ScheduledJob
from tandem.withdrawal import assessments, protocols
from tandem.withdrawal.census import OVERDUE_JOB
from tandem.withdrawal.protocol import protocol_from_mapping
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers


def grace_30_protocol() -> Any:
    """The example protocol with the program's own overdue grace period (test value)."""
    text = (
        resources.files("tandem.withdrawal")
        .joinpath("data", "example_protocol.yaml")
        .read_text("utf-8")
    )
    data = yaml.safe_load(text)
    data["version"] = "alpha-grace-30"
    for inst in data["instruments"].values():
        for rule in inst["escalations"]:
            if rule["kind"] == "overdue":
                rule["minutes"] = 30
    return protocol_from_mapping(data)


def overdue_alerts(sessions, patient_id: str) -> list[Alert]:
    with sessions() as db:
        return list(
            db.scalars(
                select(Alert).where(Alert.patient_id == patient_id, Alert.rule_id == "ciwa_overdue")
            )
        )


def a_patient_going_overdue(sessions, world: World):  # type: ignore[no-untyped-def]
    """CIWA-Ar 9 three hours ago: due after 2 h, so 60 min overdue now (grace 30 min)."""
    now = utcnow()
    assessed = now - timedelta(hours=3)
    admit_to_detox(sessions, world, world.patient_a, at=assessed - timedelta(hours=1))
    with session_scope(sessions) as db:
        protocols.set_program_protocol(db, world.program_a, grace_30_protocol())
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        assessments.save_assessment(
            access, world.patient_a, "ciwa_ar", ciwa_answers(9), assessed, now=assessed
        )
    return now


def test_the_scheduler_raises_the_overdue_alert_with_no_page_opened(sessions, world: World) -> None:
    now = a_patient_going_overdue(sessions, world)
    assert overdue_alerts(sessions, world.patient_a) == []  # nobody has opened a census
    ran = scheduler.run_due(sessions, scheduled_jobs(), now, "test-worker")
    assert OVERDUE_JOB in ran and "medications.missed_doses" in ran
    (alert,) = overdue_alerts(sessions, world.patient_a)
    assert alert.title == "CIWA-Ar reassessment is overdue."
    assert "overdue by 60 min (threshold 30 min)" in alert.detail
    with sessions() as db:
        assert scheduler.last_run(db, OVERDUE_JOB).ok
    # The next sweep raises it no second time.
    scheduler.run_due(sessions, scheduled_jobs(), now + timedelta(minutes=1), "test-worker")
    assert len(overdue_alerts(sessions, world.patient_a)) == 1


def test_tandem_worker_once_runs_the_sweeps_without_http(
    sessions, world: World, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_patient_going_overdue(sessions, world)
    monkeypatch.setenv("TANDEM_DATABASE_URL", database_url)
    result = CliRunner().invoke(app, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert f"{OVERDUE_JOB}: ok" in result.output
    assert len(overdue_alerts(sessions, world.patient_a)) == 1
    again = CliRunner().invoke(app, ["worker", "--once"])  # claimed: not due for a minute
    assert "no job was due" in again.output


def test_serve_no_jobs_leaves_the_sweeps_to_the_worker(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANDEM_DATABASE_URL", database_url)
    monkeypatch.setenv("TANDEM_SERVE_JOBS", "false")
    web = served_app()
    with TestClient(web) as client:
        assert client.get("/healthz").status_code == 200
    assert getattr(web.state, "scheduler", None) is None
    help_text = CliRunner().invoke(app, ["serve", "--help"]).output
    assert "--no-jobs" in help_text


def test_the_census_shows_the_last_sweep_and_warns_when_it_stops(
    client, sessions, world: World
) -> None:
    now = a_patient_going_overdue(sessions, world)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    census = client.get(f"/detox/units/{world.unit_a_detox}").text
    assert "overdue sweep has never run" in census
    assert "Overdue escalations are not being raised on their own" in census

    scheduler.run_due(sessions, scheduled_jobs(), now, "test-worker")
    census = client.get(f"/detox/units/{world.unit_a_detox}").text
    assert "overdue sweep last ran" in census and "(ok)" in census
    assert "not being raised on their own" not in census

    with session_scope(sessions) as db:  # the worker stopped ten minutes ago
        db.execute(
            update(ScheduledJob)
            .where(ScheduledJob.name == OVERDUE_JOB)
            .values(last_finished_at=now - timedelta(minutes=10))
        )
    census = client.get(f"/detox/units/{world.unit_a_detox}").text
    assert "not being raised on their own" in census
    assert "last finished 1" in census  # "10 min ago" (the clock has moved on a little)


def test_a_stale_sweep_is_one_not_finished_for_five_periods() -> None:
    now = utcnow()
    every = timedelta(minutes=1)
    run = scheduler.JobRun(OVERDUE_JOB, now - every * 5, now - every * 5, "ok")
    assert not run.stale(every, now)
    assert scheduler.JobRun(OVERDUE_JOB, None, now - every * 5 - timedelta(seconds=1), "ok").stale(
        every, now
    )
    assert scheduler.JobRun(OVERDUE_JOB, None, None, "").stale(every, now)


def test_worker_is_a_command() -> None:
    assert "Run the scheduled jobs" in CliRunner().invoke(app, ["worker", "--help"]).output
