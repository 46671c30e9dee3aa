"""The API description on /api/docs draws in Chromium from Tandem's own files, under the pages'
Content-Security-Policy (no CDN, no inline script), for signed-in staff."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_staff_read_the_api_description_drawn_without_a_cdn(page, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    blocked: list[str] = []
    page.on(
        "console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None
    )
    outside: list[str] = []
    page.on(
        "request",
        lambda r: (
            outside.append(r.url)
            if not r.url.startswith(live_server.url) and r.url.startswith("http")
            else None
        ),
    )
    sign_in(page, live_server, "nurse")
    page.goto(live_server.url + "/api/docs")
    # The FHIR Observation search is listed as an operation a person can open and try.
    operation = page.locator(".opblock-summary-path", has_text="/fhir/Observation").first
    expect(operation).to_be_visible(timeout=15000)
    screenshot(page, "api-docs-1280")
    assert not outside, outside
    assert not [m for m in blocked if "script" in m], blocked
