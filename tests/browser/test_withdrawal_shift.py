"""A nurse's detox shift in Chromium: the census, an assessment entered from the keyboard with a
live total, the chart that follows, and the census refreshing itself without a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_nurse_records_an_assessment_and_the_census_and_chart_update(
    page, browser, live_server
) -> None:
    sign_in(page, live_server, "nurse")
    page.get_by_role("link", name="Detox census").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Detox census")
    rows = page.locator("table.census tbody tr")
    expect(rows.first).to_be_visible()
    screenshot(page, "detox-census")
    census_url = page.url

    # A second tab keeps the census open, refreshing itself every 2 s.
    watcher = page.context.new_page()
    watcher.goto(census_url + "?every=2")
    watcher.evaluate("window.__notReloaded = true")

    # Choose a CIWA-Ar patient: the row's Assess link names the instrument.
    row = page.locator(
        "table.census tbody tr", has=page.locator('a[href*="instrument=ciwa_ar"]')
    ).nth(1)
    name = row.locator("td").first.locator("a").inner_text()
    row.get_by_role("link", name=re.compile("Assess")).click()
    expect(page.get_by_role("heading", name=re.compile("CIWA-Ar.*assessment"))).to_be_visible()
    expect(page.locator("#live-total")).to_have_text("0")

    # Keyboard only: focus the first item, then type each value; the form moves on by itself.
    page.locator('input[name="nausea_vomiting"]').first.focus()
    for key in "2222222221":  # nine items at 2, orientation 1 -> 19
        page.keyboard.press(key)
    expect(page.locator("#live-total")).to_have_text("19")
    expect(page.locator("#live-band")).to_contain_text("Severe")
    expect(page.locator("#assessed_at")).to_be_focused()
    screenshot(page, "ciwa-assessment-form")
    page.get_by_role("button", name="Save assessment").click()

    saved = page.get_by_role("status").filter(has_text="Saved")
    expect(saved).to_contain_text("total 19")
    expect(saved).to_contain_text("Next assessment due")
    expect(page.locator("svg.score-chart").first).to_be_visible()
    expect(page.get_by_text("chlordiazepoxide 75-100 mg").first).to_be_visible()
    screenshot(page, "withdrawal-chart-after-save")

    # Give a dose from the protocol's suggestion; it appears in the loop table and on the chart.
    page.get_by_role("link", name="Record a dose given").first.click()
    page.get_by_label(re.compile("lorazepam 3-4 mg")).check()
    page.get_by_label(re.compile("Dose given")).fill("3")
    page.get_by_label("Route").select_option("oral")
    page.get_by_role("button", name="Record dose given").click()
    expect(page.locator("table.loop").first).to_contain_text("lorazepam 3 mg oral")
    expect(page.locator("svg.score-chart path.dose").first).to_be_attached()
    screenshot(page, "withdrawal-chart-with-dose")

    # The other tab's census picked up the new score without a page reload.
    fresh = watcher.locator("table.census tbody tr", has_text=name)
    expect(fresh).to_contain_text("19", timeout=10_000)
    expect(fresh).to_contain_text("Severe")
    assert watcher.evaluate("window.__notReloaded") is True
    screenshot(watcher, "detox-census-refreshed")

    # And on a phone.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    small = phone.new_page()
    sign_in(small, live_server, "nurse")
    small.goto(census_url)
    expect(small.locator("table.census tbody tr").first).to_be_visible()
    screenshot(small, "detox-census-390px")
    phone.close()
    watcher.close()


def test_prescriber_acknowledges_an_alert(page, live_server) -> None:
    sign_in(page, live_server, "prescriber")
    page.get_by_role("link", name="Alerts").click()
    first = page.locator("li.alert-row").first
    expect(first).to_have_class(re.compile("unacknowledged"))
    title = first.locator(".alert-what").inner_text()
    following = page.locator("li.alert-row").nth(1).get_attribute("id")
    first.locator("summary").click()  # one line per alert: the note opens under it
    first.get_by_label(re.compile("Note")).fill("Seen at the bedside")
    first.get_by_role("button", name=re.compile("Acknowledge")).click()
    # The page returns to the alert that took its place, not to the one that moved down.
    expect(page).to_have_url(re.compile(f"#{following}$"))
    done = page.locator("li.alert-row.acknowledged", has_text=title)
    expect(done.first).to_be_attached()
    expect(page.locator("li.alert-row").first).to_have_class(re.compile("unacknowledged"))
    screenshot(page, "alerts-after-acknowledge")
