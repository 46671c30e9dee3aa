"""The demo patient on a 375 px phone: their own pages in plain language, no rule ids, no
internal ids, nothing wider than the screen."""

from __future__ import annotations

import re

import pytest

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser

RULE_ID = re.compile(r"\b[a-z]+\.[a-z]+_[a-z_]+\b")  # baclofen.renal_mild
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-")


def test_the_patient_on_a_phone_sees_plain_language_only(browser, live_server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    sign_in(page, live_server, "patient")
    assert page.url.endswith("/today")  # a patient's home is their day (recovery portal)
    home = page.url.removesuffix("/today")  # their record
    for path in ("", "/withdrawal", "/medications"):
        page.goto(home + path)
        text = page.inner_text("body")
        assert not RULE_ID.search(text), (path, RULE_ID.search(text))
        assert not UUID.search(text), path
        for clinician_only in ("unverified", "(row ", "Never stop baclofen", "protocol entries"):
            assert clinician_only not in text, (path, clinician_only)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, (path, width)
        screenshot(page, f"patient-phone{path.replace('/', '-') or '-home'}")
    assert "About your medicines" in page.inner_text("body")
    assert not errors, errors
    context.close()
