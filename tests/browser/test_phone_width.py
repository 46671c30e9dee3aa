"""Pages on a 375 px phone: nothing wider than the screen, and no console error (the security
policy blocks inline styles, so the app has none)."""

from __future__ import annotations

import pytest

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser

PAGES = {
    "prescriber": ["/alerts", "/medications/baclofen", "/patients", "/detox", "/medications"],
    "admin": ["/admin/programs", "/admin/users", "/admin/audit", "/research"],
}


@pytest.mark.parametrize("role", list(PAGES))
def test_pages_fit_a_phone_without_console_errors(browser, live_server, role: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, role)
    for path in PAGES[role]:
        page.goto(live_server.url + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
        screenshot(page, f"phone-{role}{path.replace('/', '-')}")
    assert not errors, errors
    context.close()
