"""The unit's medication record in Chromium: a nurse opens it from the navigation, sees the
shift's doses by due time (overdue marked), and records a dose as given in one click, updated
in place; held without a reason names the field. At a phone's 375 px and on a desktop."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tandem.clock import program_today
from tandem.medications.plans import create_titration
from tandem.medications.storage import DosePlanRow, MedicationAdministrationRow
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.storage.models import Episode, Patient, Program
from tests.browser.conftest import screenshot, sign_in
from tests.medications.conftest import access_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _patient_on_baclofen(database_url: str, skip: int) -> tuple[str, str]:
    """A demo patient in rehab with no plan, started on baclofen three times daily from
    yesterday (written two days ago): whatever the hour, one of their doses falls in the current shift."""
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    with sessions() as db:
        program = db.scalar(select(Program).where(Program.code == "riverside"))
        assert program is not None
        taken = set(db.scalars(select(DosePlanRow.patient_id)))
        rows = db.scalars(
            select(Patient)
            .join(Episode, Episode.patient_id == Patient.id)
            .where(
                Patient.program_id == program.id,
                Episode.phase == "rehab",
                Episode.discharged_at.is_(None),
            )
            .order_by(Patient.family_lower, Patient.id)
        ).all()
        patient = [p for p in rows if p.id not in taken][skip]
        now = datetime.now(UTC)
        create_titration(
            access_for(db, sessions, "prescriber@demo.tandem.test"),
            patient.id,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="10mg-tid",
            start_date=program_today(program.time_zone, now) - timedelta(days=1),
            now=now - timedelta(days=2),  # written before its first dose
        )
        db.commit()
        found = patient.id, patient.display_name
    engine.dispose()
    return found


def _record_one(page, live_server, name: str, shot: str) -> None:  # type: ignore[no-untyped-def]
    sign_in(page, live_server, "nurse")
    page.get_by_role("link", name="Medication round").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Medication round")
    expect(page.get_by_text("shifts start 07:00 19:00, program setting").first).to_be_visible()
    row = page.locator("table.mar tr", has_text=name).filter(has=page.locator("form")).first
    expect(row).to_be_visible()
    row_id = row.get_attribute("id")
    assert row_id is not None
    # Held with no reason: refused in place, the reason field named and marked.
    row.get_by_role("button", name=re.compile(r"^Held")).click()
    fresh = page.locator(f"#{row_id}")
    expect(fresh.get_by_role("alert")).to_contain_text("Reason: say why the dose was held")
    expect(fresh.get_by_role("textbox")).to_have_attribute("aria-invalid", "true")
    screenshot(page, f"{shot}-reason-required")
    url = page.url
    # Given, in one click: the row says so in place (no navigation).
    fresh.get_by_role("button", name=re.compile(r"^Given")).click()
    expect(page.locator(f"#{row_id}")).to_contain_text(re.compile(r"given \d\d:\d\d by "))
    expect(page.locator(f"#{row_id} form")).to_have_count(0)
    assert page.url == url
    screenshot(page, shot)
    wide = page.evaluate("() => document.documentElement.scrollWidth")
    assert wide <= page.viewport_size["width"], f"the page is {wide} px wide"


def _given(database_url: str, patient_id: str) -> list[str]:
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as db:
        found = list(
            db.scalars(
                select(MedicationAdministrationRow.status).where(
                    MedicationAdministrationRow.patient_id == patient_id
                )
            )
        )
    engine.dispose()
    return found


def test_a_nurse_records_a_dose_from_the_unit_list_on_a_desktop(page, live_server) -> None:  # type: ignore[no-untyped-def]
    patient_id, name = _patient_on_baclofen(live_server.database_url, 0)
    _record_one(page, live_server, name, "unit-mar-desktop")
    assert _given(live_server.database_url, patient_id) == ["completed"]


def test_a_nurse_records_a_dose_from_the_unit_list_on_a_phone(browser, live_server) -> None:  # type: ignore[no-untyped-def]
    patient_id, name = _patient_on_baclofen(live_server.database_url, 1)
    context = browser.new_context(viewport={"width": 375, "height": 812}, is_mobile=True)
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        _record_one(page, live_server, name, "unit-mar-phone")
    finally:
        context.close()
    assert _given(live_server.database_url, patient_id) == ["completed"]
