"""Consent in the browser: a counselor records the patient's consent naming another program,
that program's nurse can then open the chart; the patient, on a 375 px phone, sees the consent
in plain words and takes it back, and the other program's nurse is refused again."""

from __future__ import annotations

import pytest

from tests.browser.conftest import own_record, screenshot, sign_in

pytestmark = pytest.mark.browser


def test_a_consent_opens_the_chart_to_another_program_until_the_patient_takes_it_back(
    browser, live_server
) -> None:
    phone = browser.new_context(viewport={"width": 375, "height": 800})
    patient = phone.new_page()
    patient.set_default_timeout(15_000)
    sign_in(patient, live_server, "patient")
    chart = own_record(patient)
    desk = browser.new_context(viewport={"width": 1280, "height": 900})
    staff = desk.new_page()
    staff.set_default_timeout(15_000)

    sign_in(staff, live_server, "harbor.nurse")
    assert staff.goto(chart).status == 403

    staff.context.clear_cookies()
    sign_in(staff, live_server, "counselor")
    staff.goto(chart + "/consents")
    staff.get_by_label("Another program of Tandem").check()
    staff.get_by_label("Program of Tandem", exact=True).select_option(index=1)
    staff.get_by_label("Purpose", exact=True).select_option("TREAT")
    staff.get_by_label("Or when this happens").fill("the end of treatment")
    staff.get_by_label("Signed by (name)").fill("The patient")
    staff.get_by_role("button", name="Save the consent").click()
    assert "The consent was saved" in staff.inner_text("body")
    staff.get_by_role(
        "heading", name="Consents to share substance-use records"
    ).scroll_into_view_if_needed()
    screenshot(staff, "consent-staff-1280", full_page=False)
    staff.get_by_role("link", name="Release records under it").click()
    assert "No consent in force" not in staff.inner_text("body")
    screenshot(staff, "consent-release-1280", full_page=False)

    staff.context.clear_cookies()
    sign_in(staff, live_server, "harbor.nurse")
    assert staff.goto(chart).status == 200

    patient.goto(chart + "/consents")
    body = patient.inner_text("body")
    assert "Who may see your records" in body and "to care for you (treatment)" in body
    assert patient.evaluate("document.documentElement.scrollWidth") <= 375
    patient.get_by_role("button", name="Take back this consent").scroll_into_view_if_needed()
    screenshot(patient, "consent-patient-375", full_page=False)
    patient.get_by_role("button", name="Take back this consent").click()
    assert "Nothing more will be shared under it" in patient.inner_text("body")
    screenshot(patient, "consent-patient-revoked-375", full_page=False)

    assert staff.goto(chart).status == 403
    phone.close()
    desk.close()
