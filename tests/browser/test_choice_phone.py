"""The decision aid on a 375 px phone: a counselor records the patient's choice of no
medication from the Options tab; the patient reads "My options" and the choice, and opens an
article of the education library. Nothing is wider than the screen."""

from __future__ import annotations

import pytest

from tests.browser.conftest import own_record, screenshot, sign_in

pytestmark = pytest.mark.browser


def fits(page) -> None:  # type: ignore[no-untyped-def]
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]


def test_a_choice_recorded_on_a_phone_and_read_by_the_patient(browser, live_server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "patient")
    patient_home = own_record(page)
    page.get_by_role("link", name="My options").first.click()
    page.wait_for_load_state()
    patient_options = page.url
    context.clear_cookies()

    sign_in(page, live_server, "counselor")
    page.goto(patient_options + "?substance=alcohol&phase=staying_stopped")
    assert page.get_by_role("heading", name="Recovery without medication").is_visible()
    fits(page)
    screenshot(page, "choice-options-375", full_page=False)
    page.get_by_role("heading", name="Acamprosate").scroll_into_view_if_needed()
    screenshot(page, "choice-option-card-375", full_page=False)
    page.get_by_role("heading", name="Recovery without medication").scroll_into_view_if_needed()
    screenshot(page, "choice-option-free-375", full_page=False)
    page.get_by_label("No medication (recovery without medication)").check()
    page.get_by_label("What matters to the patient").fill("Wants to try meetings first")
    page.get_by_role("button", name="Record decision").click()
    page.wait_for_load_state()
    assert "Wants to try meetings first" in page.inner_text("#decision")
    assert "Counselor (demo)" in page.inner_text("#decision")  # who discussed it
    page.locator("#decision").scroll_into_view_if_needed()
    screenshot(page, "choice-decision-375", full_page=False)
    context.clear_cookies()

    sign_in(page, live_server, "patient")
    page.goto(patient_options)
    text = page.inner_text("body")
    assert "My options" in text and "You chose no medication" in text
    fits(page)
    screenshot(page, "choice-patient-375", full_page=False)
    page.get_by_role("heading", name="Baclofen").scroll_into_view_if_needed()
    screenshot(page, "choice-patient-card-375", full_page=False)
    page.goto(patient_home + "/medications")
    assert "You chose no medication" in page.inner_text("body")
    page.goto(live_server.url + "/learn/recovery-without-medication")
    assert "Further reading" in page.inner_text("body")
    fits(page)
    screenshot(page, "choice-learn-375", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(patient_options)
    screenshot(page, "choice-patient-1280", full_page=False)
    context.close()
