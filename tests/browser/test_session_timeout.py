"""A session ending during entry, in Chromium (issue 9 item 11): a warning before the idle
limit with a button that keeps the session alive, and an assessment typed when the session
ended that is saved, once, after signing in again. The session is ended the way time would end
it: its last activity is moved into the past in the database."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select, update

from tandem.storage.db import make_engine, make_sessionmaker, utcnow
from tandem.storage.models import WebSession
from tandem.withdrawal.storage import AssessmentRow
from tests.browser.conftest import LiveServer, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _session_id(page) -> str:  # type: ignore[no-untyped-def]
    """The stored session of the page's cookie (sessions are stored by the cookie's SHA-256)."""
    cookie = next(c for c in page.context.cookies() if c["name"] == "tandem_session")
    return hashlib.sha256(cookie["value"].encode()).hexdigest()


def _set_idle(server: LiveServer, session_id: str, idle: timedelta) -> None:
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine)() as db:
        db.execute(
            update(WebSession)
            .where(WebSession.id == session_id)
            .values(last_seen_at=utcnow() - idle)
        )
        db.commit()
    engine.dispose()


def _last_seen(server: LiveServer, session_id: str):  # type: ignore[no-untyped-def]
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine)() as db:
        seen = db.scalar(select(WebSession.last_seen_at).where(WebSession.id == session_id))
    engine.dispose()
    return seen


def _assessments(server: LiveServer, patient_id: str) -> int:
    engine = make_engine(server.database_url)
    with make_sessionmaker(engine)() as db:
        count = db.scalar(
            select(func.count())
            .select_from(AssessmentRow)
            .where(AssessmentRow.patient_id == patient_id)
        )
    engine.dispose()
    return int(count or 0)


def test_a_warning_comes_before_the_idle_limit_and_stay_signed_in_keeps_the_session(
    page, live_server
) -> None:
    page.clock.install()  # the page's own clock, moved on below; the server's is real
    sign_in(page, live_server, "nurse")
    page.goto(live_server.url + "/patients")
    body = page.locator("body")
    left = int(body.get_attribute("data-session-left") or 0)
    warn = int(body.get_attribute("data-session-warn") or 0)
    assert left > 29 * 60 and warn == 120
    banner = page.locator("#session-banner")
    expect(banner).to_be_hidden()

    # Nobody touches anything for 28.5 minutes: 90 seconds are left, under the two minutes.
    session_id = _session_id(page)
    _set_idle(live_server, session_id, timedelta(minutes=28, seconds=30))
    seen = _last_seen(live_server, session_id)
    page.clock.fast_forward((left - warn + 5) * 1000)
    expect(banner).to_be_visible()
    expect(banner).to_contain_text(re.compile(r"Your session ends in 1:[0-3]\d"))
    assert _last_seen(live_server, session_id) == seen  # the check was not activity
    screenshot(page, "session-warning")

    page.get_by_role("button", name="Stay signed in").click()
    expect(banner).to_be_hidden()
    assert utcnow() - _last_seen(live_server, session_id) < timedelta(minutes=1)


def test_an_assessment_typed_as_the_session_ends_is_saved_once_after_signing_in(
    page, live_server
) -> None:
    sign_in(page, live_server, "nurse")
    page.get_by_role("link", name="Detox census").click()
    row = page.locator(
        "table.census tbody tr", has=page.locator('a[href*="instrument=ciwa_ar"]')
    ).nth(3)
    row.get_by_role("link", name=re.compile("Assess")).click()
    expect(page.get_by_role("heading", name=re.compile("CIWA-Ar.*assessment"))).to_be_visible()
    match = re.search(r"/patients/([^/]+)/withdrawal/assess", page.url)
    assert match
    patient_id = match.group(1)
    form_url = page.url
    before = _assessments(live_server, patient_id)

    page.locator('input[name="nausea_vomiting"]').first.focus()
    for key in "1111111111":  # ten items at 1 -> 10
        page.keyboard.press(key)
    expect(page.locator("#live-total")).to_have_text("10")
    assessed_at = page.locator("#assessed_at").input_value()

    # She steps away; the session ends for inactivity; back, she saves.
    _set_idle(live_server, _session_id(page), timedelta(minutes=31))
    page.get_by_role("button", name="Save assessment").click()
    expect(page).to_have_url(re.compile(r"/login\?next=.*&expired=1"))
    expect(page.get_by_text("period of inactivity")).to_be_visible()
    expect(page.get_by_text("What you typed before your session ended is kept")).to_be_visible()
    assert _assessments(live_server, patient_id) == before

    email, password = live_server.login("nurse")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    # Back on the form, her entries are there again.
    expect(page).to_have_url(form_url)
    expect(page.get_by_text("Your entries were restored: check and save.")).to_be_visible()
    expect(page.locator("#live-total")).to_have_text("10")
    expect(page.locator('input[name="orientation"][value="1"]')).to_be_checked()
    expect(page.locator("#assessed_at")).to_have_value(assessed_at)
    screenshot(page, "assessment-restored-after-sign-in")
    page.get_by_role("button", name="Save assessment").click()

    saved = page.get_by_role("status").filter(has_text="Saved")
    expect(saved).to_contain_text("total 10")
    assert _assessments(live_server, patient_id) == before + 1
    # The draft is gone: the form opens blank again.
    assert (
        page.evaluate(
            "Object.keys(sessionStorage).filter((k) => k.startsWith('tandem-draft:')).length"
        )
        == 0
    )
    page.goto(form_url)
    expect(page.locator("#live-total")).to_have_text("0")
    expect(page.get_by_text("Your entries were restored")).to_have_count(0)
