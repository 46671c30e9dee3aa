"""A prescriber looks baclofen up, records a patient's facts, screens them, is refused a target
above the maximum, creates a titration and sees the calendar; the same pages at phone width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from tandem.medications.storage import DosePlanRow, MedicationFactsRow
from tandem.storage.db import make_engine, make_sessionmaker
from tandem.storage.models import Episode, Patient, Program
from tests.browser.conftest import screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _unmedicated_patient(database_url: str) -> tuple[str, str]:
    """A demo patient in rehab with no facts and no plan (id, display name)."""
    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as db:
        program = db.scalar(select(Program).where(Program.code == "riverside"))
        taken = set(db.scalars(select(DosePlanRow.patient_id))) | set(
            db.scalars(select(MedicationFactsRow.patient_id))
        )
        rows = (
            db.execute(
                select(Patient)
                .join(Episode, Episode.patient_id == Patient.id)
                .where(
                    Patient.program_id == program.id,
                    Episode.phase == "rehab",
                    Episode.discharged_at.is_(None),
                    Patient.birth_date.is_not(None),
                )
                .order_by(Patient.family_lower, Patient.id)
            )
            .scalars()
            .all()
        )
        patient = next(p for p in rows if p.id not in taken)
        result = patient.id, patient.display_name
    engine.dispose()
    return result


def test_library_monograph_shows_evidence_and_unverified(page, live_server) -> None:
    sign_in(page, live_server, "prescriber")
    page.get_by_role("link", name="Medication library").click()
    page.get_by_label("Search by name, brand or use").fill("baclofen")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Baclofen", exact=True).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Baclofen")
    evidence = page.locator("table.evidence").first
    expect(evidence).to_contain_text("Addolorato 2007 (Lancet)")
    expect(evidence.get_by_role("link", name=re.compile(r"^\[\d+\]$")).first).to_be_visible()
    expect(page.locator(".badge.unverified").first).to_be_visible()
    screenshot(page, "medications-monograph-baclofen")


def test_prescriber_screens_a_patient_and_creates_a_titration(page, live_server) -> None:
    patient_id, name = _unmedicated_patient(live_server.database_url)
    sign_in(page, live_server, "prescriber")
    page.get_by_label("Name or MRN").fill(name.split(",")[0].lower())
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name=name).first.click()
    page.get_by_role("link", name="Medications").click()
    expect(page).to_have_url(re.compile(rf"/patients/{patient_id}/medications$"))

    # Facts: weight and creatinine (today), no seizure history; current substances: alcohol.
    page.get_by_role("link", name="Record or update facts").click()
    page.get_by_label("Weight", exact=True).fill("80")
    page.get_by_label("Serum creatinine").fill("0.8")
    today = page.evaluate(
        "() => new Date().toLocaleDateString('en-CA', {timeZone: 'America/New_York'})"
    )
    page.get_by_label("Creatinine measured on").fill(today)
    page.get_by_label("History of seizures or epilepsy").select_option("no")
    page.get_by_label("Recorded?").select_option("yes")
    page.get_by_label("alcohol", exact=True).check()
    page.get_by_role("button", name="Save facts").click()
    expect(page.get_by_role("status")).to_contain_text("Saved.")

    # Screen baclofen: the clearance with its formula, and the findings with their sources.
    page.get_by_label("Medication to screen").select_option("baclofen")
    page.get_by_role("button", name="Screen").click()
    kidney = page.locator(".kidney")
    expect(kidney).to_contain_text("mL/min")
    expect(kidney).to_contain_text("Cockcroft-Gault")
    expect(kidney).to_contain_text("actual weight")
    findings = page.locator(".finding-list")
    expect(findings).to_contain_text("Drinks alcohol")
    expect(findings).to_contain_text("Never stop baclofen abruptly")
    screenshot(page, "medications-screening")

    # A target above the label maximum is refused, naming the field.
    page.get_by_role("link", name="New titration").click()
    expect(page.get_by_label("Start dose (mg per dose)")).to_have_value("5")
    # As she types, the plan's mg/day against the ceiling (issue 9 item 14).
    live = page.locator("#live-mg-day")
    expect(live).to_contain_text("Start dose: 15 mg/day")
    expect(live).to_contain_text("Ceiling 80 mg/day")
    expect(live).not_to_have_class(re.compile("over"))
    page.get_by_label("Target dose (mg per dose)").fill("30")
    page.get_by_label("How often").last.select_option("qid")
    expect(live).to_contain_text("Target dose: 120 mg/day")
    expect(live).to_contain_text("Over the ceiling: the target dose is above 80 mg/day")
    expect(live).to_have_class(re.compile("over"))
    page.get_by_label("Program protocol maximum (mg/day)").fill("60")
    expect(live).to_contain_text("Ceiling 60 mg/day")
    page.get_by_label("Program protocol maximum (mg/day)").fill("")
    screenshot(page, "medications-titration-live-ceiling")
    page.get_by_role("button", name="Create titration plan").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Refused")
    expect(alert).to_contain_text("target dose")
    expect(page.get_by_label("Target dose (mg per dose)")).to_have_attribute("aria-invalid", "true")
    # The reason is said once, under the field the alert points to.
    reason = page.locator("#target_mg-error")
    expect(reason).to_contain_text("80 mg/day")
    expect(page.get_by_text(reason.inner_text(), exact=False)).to_have_count(1)
    screenshot(page, "medications-titration-refused")

    page.get_by_label("Target dose (mg per dose)").fill("20")
    page.get_by_label("How often").last.select_option("tid")
    page.get_by_role("button", name="Create titration plan").click()
    expect(page.get_by_role("status")).to_contain_text("Created.")
    calendar = page.locator("table.calendar")
    expect(calendar).to_be_visible()
    today_cell = calendar.locator("td[aria-current='date']")
    expect(today_cell).to_contain_text("Today")
    expect(today_cell).to_contain_text("Total 15 mg")
    expect(calendar).to_contain_text("Total 30 mg")
    screenshot(page, "medications-plan-calendar")

    page.get_by_role("link", name="← Medications").click()
    expect(page.get_by_role("heading", name=re.compile("Baclofen calendar"))).to_be_visible()
    expect(page.locator("table").first).to_contain_text("Titration")
    screenshot(page, "medications-chart-tab")


def test_medication_pages_at_phone_width(browser, live_server) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844})
    page = context.new_page()
    sign_in(page, live_server, "prescriber")
    engine = make_engine(live_server.database_url)
    with make_sessionmaker(engine)() as db:
        plan = db.scalars(select(DosePlanRow).where(DosePlanRow.kind == "taper")).first()
        patient_id, plan_id = plan.patient_id, plan.id
    engine.dispose()
    page.goto(f"{live_server.url}/patients/{patient_id}/medications/plans/{plan_id}")
    expect(page.locator("table.calendar")).to_be_visible()
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 400, f"page scrolls sideways at phone width ({width}px)"
    screenshot(page, "medications-plan-phone")
    page.goto(f"{live_server.url}/medications/baclofen")
    screenshot(page, "medications-monograph-phone")
    context.close()
