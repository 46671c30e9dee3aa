"""`tandem med sweep`: the scheduled missed-dose check, run as an operator runs it."""

from __future__ import annotations

import subprocess
from datetime import datetime, time, timedelta

from sqlalchemy import func, select

from tandem.alerts.models import Alert
from tandem.medications.plans import create_titration
from tandem.storage.db import utcnow
from tests.cli_runner import run_tandem
from tests.conftest import World
from tests.medications.conftest import NY, access_for


def sweep(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tandem(database_url, "med", "sweep", *args)


def test_sweep_raises_one_alert_per_run_of_missed_doses(
    database_url: str, sessions, world: World
) -> None:
    start = utcnow().astimezone(NY).date() - timedelta(days=2)
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        create_titration(
            access,
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="10mg-tid",
            start_date=start,
            now=datetime.combine(start, time(9), NY),
        )
        db.commit()
    first = sweep(database_url, "--as", world.email("prescriber"))
    assert first.returncode == 0, first.stderr
    assert "1 missed-dose alert raised." in first.stdout and "Baclofen" in first.stdout
    again = sweep(database_url, "--as", world.email("prescriber"))
    assert again.returncode == 0 and "0 missed-dose alerts raised." in again.stdout
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(Alert)) == 1
    unknown = sweep(database_url, "--as", "nobody@test.tandem.test")
    assert unknown.returncode == 2 and "--as" in unknown.stderr
    researcher = sweep(database_url, "--as", world.email("researcher"))
    assert researcher.returncode == 2 and "refused" in researcher.stderr
