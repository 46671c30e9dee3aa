"""The CIWA-Ar and COWS forms read as the printed scales, fit a 375 px phone and a desktop, and
keep the provenance one link away on the scale's page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


@pytest.mark.parametrize("width", [375, 1280])
def test_withdrawal_forms_fit_the_screen_and_link_to_their_sources(
    browser, live_server, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "nurse")
    page.goto(live_server.url + "/detox")
    links = {
        instrument: page.locator(f'a[href*="instrument={instrument}"]').first
        for instrument in ("ciwa_ar", "cows")
    }
    hrefs = {k: v.get_attribute("href") for k, v in links.items() if v.count()}
    assert "ciwa_ar" in hrefs

    for instrument, href in hrefs.items():
        page.goto(live_server.url + str(href))
        assert page.evaluate("document.documentElement.scrollWidth") <= width, instrument
        assert page.get_by_text("not transcribed").count() == 0
        screenshot(page, f"form-{instrument}-{width}")
        if instrument == "ciwa_ar":
            # the grades the form leaves blank sit side by side, as on the printed column
            two, three = (
                page.locator(f'label:has(input[name="tremor"][value="{v}"])').bounding_box()
                for v in (2, 3)
            )
            assert two and three and abs(two["y"] - three["y"]) < 2
        page.get_by_role("link", name="Wording and sources").click()
        expect(page.get_by_role("heading", name="Sources")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        screenshot(page, f"scale-{instrument}-{width}")
    assert not errors, errors
    context.close()
