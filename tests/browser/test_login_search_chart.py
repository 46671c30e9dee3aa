"""A nurse signs in, finds a demo patient by name, opens the chart; a patient sees only their own."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import own_record, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_nurse_signs_in_searches_and_opens_the_chart(page, live_server) -> None:
    sign_in(page, live_server, "nurse")
    expect(page).to_have_url(re.compile(r"/patients$"))
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    first_link = page.locator("tbody tr td a").first
    family = first_link.inner_text().split(",")[0].strip()
    page.get_by_label("Name or MRN").fill(family.lower()[:4])
    page.get_by_role("button", name="Search").click()
    rows = page.locator("tbody tr")
    expect(rows.first).to_be_visible()
    prefix = family.lower()[:4]
    names = page.locator("tbody tr td:first-child a").all_inner_texts()
    # Every row matches the search on its family or a given name.
    assert names and all(
        any(w.startswith(prefix) for w in re.split(r"[ ,]+", n.lower())) for n in names
    )
    match = page.get_by_role("link", name=re.compile(family, re.I)).first
    chosen = match.inner_text()
    match.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(chosen)
    expect(page.get_by_text("MRN")).to_be_visible()
    expect(page.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    screenshot(page, "chart-overview")


def test_wrong_password_is_refused_with_a_message(page, live_server) -> None:
    page.goto(live_server.url + "/login")
    page.get_by_label("E-mail").fill("nurse@demo.tandem.test")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    expect(page).to_have_url(re.compile(r"/login"))


def test_patient_lands_on_their_own_record_only(page, live_server) -> None:
    sign_in(page, live_server, "patient")
    # A patient lands on their day (the recovery portal), with a link to their own record.
    expect(page).to_have_url(re.compile(r"/patients/[0-9a-f-]{36}/today$"))
    own = own_record(page)
    assert re.search(r"/patients/[0-9a-f-]{36}$", own)
    page.goto(live_server.url + "/patients")
    assert page.locator("tbody tr").count() == 1
    page.goto(own)
    expect(page.get_by_text("synthetic demo record")).to_be_visible()
