"""The withdrawal chart on a phone opens at now (its right end), not at the oldest point."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tests.browser.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


def _assessed_patient(database_url: str) -> str:
    from tandem.storage.db import make_engine, make_sessionmaker
    from tandem.withdrawal.storage import AssessmentRow

    engine = make_engine(database_url)
    with make_sessionmaker(engine)() as db:
        patient_id = db.scalar(
            select(AssessmentRow.patient_id)
            .group_by(AssessmentRow.patient_id)
            .order_by(func.count().desc())
            .limit(1)
        )
    engine.dispose()
    assert patient_id is not None
    return str(patient_id)


def test_the_phone_chart_opens_at_the_latest_point(browser, live_server) -> None:
    patient_id = _assessed_patient(live_server.database_url)
    context = browser.new_context(viewport={"width": 375, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server, "nurse")
    page.goto(f"{live_server.url}/patients/{patient_id}/withdrawal")
    figure = page.locator(".chart-figure").first
    figure.scroll_into_view_if_needed()
    scrolled = figure.evaluate("f => [f.scrollLeft, f.clientWidth, f.scrollWidth]")
    assert scrolled[2] > scrolled[1], "the chart is wider than the phone"
    assert scrolled[0] + scrolled[1] >= scrolled[2] - 2, scrolled
    screenshot(page, "phone-withdrawal-chart")
    context.close()
