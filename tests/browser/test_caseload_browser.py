"""The counselor's caseload in a browser: a patient's check-in reporting use after weeks without
makes the caseload show the flag, explained, on a phone; the timeline tab at both widths.

The patient portal's check-in form is another area's work (issue 10 item 4); until it is on
main, the check-in is written the way the check-in service stores one (a check-in, its craving
rating and its use day, linked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, func, select

from tandem.clock import program_today
from tandem.recovery.storage import CarePlanRow, CheckInRow, CravingRatingRow, UseDayRow
from tandem.storage.db import make_engine, make_sessionmaker, session_scope
from tandem.storage.models import Patient, Program, User
from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


def _abstinent_patient_checks_in_with_use(database_url: str) -> tuple[str, str]:
    """A patient of the demo counselor (not one who signs in to the portal) with two weeks of
    reported days without use reports use today; returns their id and the name the caseload
    shows."""
    engine = make_engine(database_url)
    try:
        with session_scope(make_sessionmaker(engine)) as db:
            counselor = db.scalar(select(User.id).where(User.email == "counselor@demo.tandem.test"))
            program = db.scalar(select(Program).where(Program.code == "riverside"))
            assert counselor is not None and program is not None
            now = datetime.now(UTC)
            today = program_today(program.time_zone, now)
            candidates = db.execute(
                select(
                    CarePlanRow.patient_id, CarePlanRow.substances, Patient.family, Patient.given
                )
                .join(Patient, Patient.id == CarePlanRow.patient_id)
                .where(CarePlanRow.counselor_id == counselor, CarePlanRow.retention == "active")
                # Not a patient who signs in to the portal: other browser tests check in as them.
                .where(
                    ~CarePlanRow.patient_id.in_(
                        select(User.patient_id).where(User.patient_id.is_not(None))
                    )
                )
                .order_by(Patient.family_lower)
            ).all()
            chosen = None
            for candidate in candidates:
                patient_id = candidate[0]
                recent = UseDayRow.day >= today - timedelta(days=30)
                used = db.scalar(
                    select(func.count()).where(
                        UseDayRow.patient_id == patient_id, UseDayRow.used, recent
                    )
                )
                reported = db.scalar(
                    select(func.count(func.distinct(UseDayRow.day))).where(
                        UseDayRow.patient_id == patient_id,
                        UseDayRow.day >= today - timedelta(days=15),
                        UseDayRow.day < today,
                    )
                )
                if used == 0 and reported >= 14:
                    chosen = candidate
                    break
            if chosen is None:
                pytest.fail("the demo has no abstinent patient of the demo counselor")
            patient_id, substances, family, given = chosen
            check_in = CheckInRow(
                patient_id=patient_id,
                program_id=program.id,
                day=today,
                checked_in_at=now,
                mood="ashamed",
                source="portal",
            )
            db.add(check_in)
            db.flush()
            substance = substances[0]
            common = {
                "patient_id": patient_id,
                "program_id": program.id,
                "day": today,
                "substance": substance,
                "source": "portal",
                "check_in_id": check_in.id,
            }
            # A later report about the same day replaces the answer.
            db.execute(
                delete(UseDayRow).where(
                    UseDayRow.patient_id == patient_id,
                    UseDayRow.day == today,
                    UseDayRow.substance == substance,
                )
            )
            db.add(CravingRatingRow(**common, rating=8, rated_at=now))
            db.add(
                UseDayRow(
                    **common, used=True, standard_drinks=6.0 if substance == "alcohol" else None
                )
            )
            return patient_id, f"{family}, {given}"
    finally:
        engine.dispose()


def test_a_check_in_with_use_shows_on_the_counselors_caseload(browser, live_server) -> None:  # type: ignore[no-untyped-def]
    phone = browser.new_context(viewport={"width": 375, "height": 800})
    page = phone.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "counselor")
    assert page.url.endswith("/caseload")  # the counselor's home page
    patient_id, name = _abstinent_patient_checks_in_with_use(live_server.database_url)
    page.goto(live_server.url + "/caseload")
    row = page.locator(f"#patient-{patient_id}")
    assert name.lower() in row.inner_text().lower()
    flag = row.locator(".flag-use_after_abstinence")
    assert "Use after abstinence" in flag.inner_text()
    assert "days without use" in flag.inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    row.scroll_into_view_if_needed()
    screenshot(page, "caseload-phone", full_page=False)
    page.goto(live_server.url + f"/patients/{patient_id}/timeline?range=3m")
    assert page.locator("svg.timeline-lane").count() >= 6
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.locator(".timeline-lanes").scroll_into_view_if_needed()
    screenshot(page, "timeline-phone", full_page=False)
    page.locator(".timeline-table").scroll_into_view_if_needed()
    screenshot(page, "timeline-phone-table", full_page=False)
    phone.close()

    wide = browser.new_context(viewport={"width": 1280, "height": 900})
    page = wide.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "counselor")
    page.goto(live_server.url + "/caseload")
    screenshot(page, "caseload-wide", full_page=False)
    page.goto(live_server.url + f"/patients/{patient_id}/timeline?range=3m")
    page.locator(".timeline-lanes").scroll_into_view_if_needed()
    screenshot(page, "timeline-wide", full_page=False)
    page.mouse.wheel(0, 600)
    screenshot(page, "timeline-wide-lower", full_page=False)
    wide.close()
    assert not errors, errors
