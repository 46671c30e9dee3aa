"""A patient checks in from a 375 px phone: signs in to their day, opens the check-in, answers
with large buttons (no typing but the drinks), saves, and is thanked; nothing wider than the
screen. Screenshots: screenshots/portal-*.png."""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


def _choose(page, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    page.locator(f'label.portal-choice:has(input[name="{name}"][value="{value}"])').click()


def test_a_patient_checks_in_on_a_phone(browser, live_server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "patient")
    assert page.url.endswith("/today"), page.url
    screenshot(page, "portal-today-375", full_page=False)
    page.get_by_role("link", name="Check in now").click()
    page.wait_for_load_state()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "portal-check-in-375", full_page=False)
    for field in page.locator('input[name^="craving_"][value="4"]').all():
        _choose(page, str(field.get_attribute("name")), "4")
    asked = [
        str(field.get_attribute("name"))
        for field in page.locator('input[name^="use_"][value="no"]').all()
        if field.get_attribute("name") != "use_day"
    ]
    assert asked, "the check-in asks about use of the patient's substances"
    for name in asked:
        _choose(page, name, "no")
    # A lapse: alcohol with its standard drinks when the plan tracks alcohol, else the first one.
    if "use_alcohol" in asked:
        _choose(page, "use_alcohol", "yes")
        page.get_by_label("If yes: how many standard drinks?").fill("2")
    else:
        _choose(page, asked[0], "yes")
    for field in page.locator('input[name^="dose_"][value="taken"]').all():
        _choose(page, str(field.get_attribute("name")), "taken")
    _choose(page, "mood", "tired")
    page.get_by_role("button", name="Save my check-in").click()
    page.wait_for_load_state()
    assert page.url.endswith("/today?done=saved"), page.url
    assert "Your check-in is saved" in page.inner_text("main")
    assert "You checked in today" in page.inner_text("main")
    screenshot(page, "portal-saved-375", full_page=False)
    page.get_by_role("link", name="How am I doing?").click()
    page.wait_for_load_state()
    assert page.locator("svg.portal-chart").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    screenshot(page, "portal-progress-375", full_page=False)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.go_back()
    page.get_by_role("link", name="Change today's answers").click()
    page.wait_for_load_state()
    screenshot(page, "portal-check-in-1280", full_page=False)
    assert not errors, errors
    context.close()
