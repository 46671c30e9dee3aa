"""Self-report scales in a real browser on the demo database: the patient answers a PHQ-9 on a
375 px phone, with item 9 above 0, and sees the crisis resources at once (large call and text
buttons, nothing wider than the screen); a counselor on a desktop then sees the response marked
urgent in the Scales tab and the urgent alert in the alert list's count."""

from __future__ import annotations

import pytest

from tests.browser.conftest import SHOTS, own_record, sign_in

pytestmark = pytest.mark.browser


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"))  # the viewport, as a person sees it


def test_patient_phq9_on_a_phone_shows_crisis_resources_and_staff_see_it_urgent(
    browser, live_server
) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "patient")
    chart = own_record(page)
    page.goto(chart + "/scales")
    page.get_by_role("link", name="Answer PHQ-9").click()
    assert "unverified" not in page.inner_text("body")
    shot(page, "scales-patient-phone-form")
    for index, fieldset in enumerate(page.locator("fieldset.item").all()):
        value = "1" if index == 8 else "0"  # item 9: several days
        fieldset.locator(f'input[type=radio][value="{value}"]').check()
    page.get_by_role("button", name="Save my answers").click()
    page.wait_for_load_state()
    crisis = page.locator("#crisis")
    assert crisis.is_visible()
    assert crisis.get_by_role("link", name="Call 988").get_attribute("href") == "tel:988"
    assert crisis.get_by_role("link", name="Text 988").get_attribute("href") == "sms:988"
    assert crisis.get_by_role("link", name="Call 911").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    box = crisis.get_by_role("link", name="Call 988").bounding_box()
    assert box is not None and box["height"] >= 44  # a large target for a thumb
    shot(page, "scales-patient-phone-crisis")
    assert not errors, errors
    patient_id = chart.rsplit("/", 1)[-1]
    context.close()

    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    page = desk.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "nurse")
    page.goto(f"{live_server.url}/patients/{patient_id}/scales")
    entry = page.locator("#scale-phq9")
    assert "urgent" in entry.inner_text()
    shot(page, "scales-staff-desktop-tab")
    page.goto(f"{live_server.url}/patients/{patient_id}/scales/pacs")
    assert "wording unverified" in page.inner_text("body")  # staff are told, patients are not
    page.locator("#item-intensity").scroll_into_view_if_needed()
    shot(page, "scales-staff-desktop-pacs")
    page.goto(f"{live_server.url}/alerts")
    assert "URGENT: PHQ-9" in page.inner_text("body")
    desk.close()
