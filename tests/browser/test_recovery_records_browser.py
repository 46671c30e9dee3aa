"""A nurse starts a patient's care plan, records a day of use and sees it on the month calendar
(keyboard only for the day's answers), at desktop and at phone width (375 px)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tandem.recovery.storage import CarePlanRow
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.storage.models import Patient, Program
from tests.browser.conftest import screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _patient_without_plan(database_url: str) -> str:
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as db:
        program = db.scalar(select(Program).where(Program.code == "riverside"))
        taken = set(db.scalars(select(CarePlanRow.patient_id)))
        found = next(
            p.id
            for p in db.scalars(
                select(Patient).where(Patient.program_id == program.id).order_by(Patient.id)
            )
            if p.id not in taken
        )
    engine.dispose()
    return found


def test_nurse_records_a_day_and_the_calendar_shows_it_on_desktop_and_phone(
    page, live_server
) -> None:
    patient_id = _patient_without_plan(live_server.database_url)
    sign_in(page, live_server, "nurse")
    page.goto(f"{live_server.url}/patients/{patient_id}/recovery/program")
    page.get_by_text("Start a care plan").click()
    page.get_by_role("group", name="Substances the plan addresses").get_by_label("Alcohol").check()
    page.get_by_role("group", name="Substances the plan addresses").get_by_label("Opioids").check()
    page.get_by_label("Group therapy", exact=True).check()
    page.get_by_role("button", name="Start the care plan").click()
    expect(page.locator("#care-plan")).to_contain_text("Group therapy")

    page.get_by_role("link", name="Use and drug screens").click()
    day = page.get_by_label("Day", exact=True).input_value()
    alcohol = page.get_by_role("group", name="Alcohol")
    alcohol.get_by_label("Used", exact=True).focus()
    page.keyboard.press("Space")
    alcohol.get_by_label("Standard drinks that day").fill("5")
    page.get_by_role("group", name="Opioids").get_by_label("Not used").check()
    page.get_by_role("button", name="Save the day").click()
    expect(page).to_have_url(re.compile(r"flash=saved"))
    cell = page.locator(f'td[data-day="{day}"]')
    expect(cell).to_contain_text("Alcohol: used, 5 drinks")
    expect(cell).to_contain_text("Opioids: no use")
    page.locator("#calendar").scroll_into_view_if_needed()
    screenshot(page, "recovery-calendar-desktop", full_page=False)

    page.set_viewport_size({"width": 375, "height": 812})
    page.reload()
    cell = page.locator(f'td[data-day="{day}"]')
    cell.scroll_into_view_if_needed()
    expect(cell).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 375, f"the page scrolls sideways at phone width ({width}px)"
    screenshot(page, "recovery-calendar-phone", full_page=False)
    page.goto(f"{live_server.url}/patients/{patient_id}/recovery/program")
    screenshot(page, "recovery-program-phone", full_page=False)
