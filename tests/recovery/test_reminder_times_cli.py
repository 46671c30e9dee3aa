"""`tandem portal reminder-times`: a program's reminder times, shown and set as an operator does,
and used by the reminders."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tandem.recovery.portal_storage import PortalSettingRow
from tandem.storage.models import AuditEntry
from tests.cli_runner import run_tandem
from tests.conftest import World


def test_reminder_times_are_shown_set_and_refused_naming_the_option(
    database_url: str, sessions, world: World
) -> None:  # type: ignore[no-untyped-def]
    shown = run_tandem(database_url, "portal", "reminder-times", "alpha")
    assert shown.returncode == 0, shown.stderr
    assert "check-in reminder after 18:00 (America/New_York); session reminder 24 h" in shown.stdout
    set_ = run_tandem(database_url, "portal", "reminder-times", "alpha", "--check-in", "20:30")
    assert set_.returncode == 0, set_.stderr
    assert "after 20:30" in set_.stdout and "24 h before" in set_.stdout
    bad = run_tandem(database_url, "portal", "reminder-times", "alpha", "--check-in", "8pm")
    assert bad.returncode == 2 and "--check-in" in bad.stderr
    bad = run_tandem(database_url, "portal", "reminder-times", "alpha", "--session-hours", "0")
    assert bad.returncode == 2 and "--session-hours" in bad.stderr
    with sessions() as db:
        row = db.get(PortalSettingRow, world.program_a)
        assert row is not None and (row.check_in_reminder_at, row.session_reminder_hours) == (
            "20:30",
            24,
        )
        assert db.scalar(select(AuditEntry).where(AuditEntry.resource_type == "Program"))
    # The reminders follow the program's time: at 19:00 no check-in reminder is due yet.
    from tandem.recovery.reminders_core import Preferences
    from tandem.recovery.reminders_service import _compute, program_times
    from tandem.storage.models import Patient

    with sessions() as db:
        assert program_times(db, world.program_a) == ("20:30", 24)
        patient = db.get(Patient, world.patient_a)
        at = datetime(2026, 3, 4, 19, 0, tzinfo=ZoneInfo("America/New_York"))
        assert _compute(db, patient, at, Preferences(), [], [], False, True) == []
        later = at.replace(hour=20, minute=30)
        assert [
            r.kind for r in _compute(db, patient, later, Preferences(), [], [], False, True)
        ] == ["check_in"]
