"""`tandem med shifts`: a program's nursing shift times, shown and set as an operator does."""

from __future__ import annotations

import subprocess

from sqlalchemy import select

from tandem.medications.storage import ShiftSettingRow
from tandem.storage.models import AuditEntry
from tests.cli_runner import run_tandem
from tests.conftest import World


def shifts(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_tandem(database_url, "med", "shifts", *args)


def test_shift_times_are_shown_set_and_refused_naming_the_argument(
    database_url: str, sessions, world: World
) -> None:  # type: ignore[no-untyped-def]
    shown = shifts(database_url, "alpha")
    assert shown.returncode == 0, shown.stderr
    assert "alpha: shifts start 07:00 19:00 (America/New_York); Tandem default" in shown.stdout
    set_ = shifts(database_url, "alpha", "23:00", "7:00", "15:00")
    assert set_.returncode == 0, set_.stderr
    assert "shifts start 07:00 15:00 23:00 (America/New_York); program setting" in set_.stdout
    bad = shifts(database_url, "alpha", "7am")
    assert bad.returncode == 2 and "STARTS" in bad.stderr and "07:00" in bad.stderr
    unknown = shifts(database_url, "nowhere")
    assert unknown.returncode == 2 and "PROGRAM" in unknown.stderr
    with sessions() as db:
        row = db.get(ShiftSettingRow, world.program_a)
        assert row is not None and row.shift_starts == "07:00 15:00 23:00"
        assert db.scalar(
            select(AuditEntry).where(
                AuditEntry.resource_type == "Program", AuditEntry.operation == "update"
            )
        )
