"""The Scales tab (SQLite; their storage and API run on both engines): a counselor fills a scale on
the patient's chart, a patient fills one in their own view; each sees the total, band and source
after saving and a history per scale; a patient whose PHQ-9 item 9 is above 0 sees the crisis
resources at once (staff see that the urgent alert went out); impossible answers are refused on the
form with nothing stored; another patient's form is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from tandem.alerts.models import Alert
from tandem.recovery.storage import QuestionnaireResponseRow
from tests.conftest import World, sign_in
from tests.instruments.facts import answers

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


def counts(sessions) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with sessions() as db:
        return (
            db.scalar(select(func.count()).select_from(QuestionnaireResponseRow)) or 0,
            db.scalar(select(func.count()).select_from(Alert)) or 0,
        )


def form_data(csrf: str, instrument_id: str, values: list[int]) -> dict[str, str]:
    data = {k: str(v) for k, v in answers(instrument_id, values).items()}
    return {"csrf_token": csrf, **data}


def test_a_counselor_fills_gad7_on_the_chart_and_sees_total_band_source_and_history(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    tab = client.get(f"/patients/{world.patient_a}/scales")
    assert tab.status_code == 200
    assert f'href="/patients/{world.patient_a}/scales/pacs"' in tab.text
    form = client.get(f"/patients/{world.patient_a}/scales/gad7")
    assert form.status_code == 200
    assert "Not being able to stop or control worrying" in form.text
    assert "More than half the days" in form.text and 'name="authored_at"' in form.text
    saved = client.post(
        f"/patients/{world.patient_a}/scales/gad7",
        data={**form_data(csrf, "gad7", [1, 1, 1, 1, 0, 0, 0]), "authored_at": ""},
    )
    assert saved.status_code == 303, saved.text
    shown = client.get(saved.headers["location"])
    assert "total <strong>4</strong> of 21: <strong>Minimal</strong>" in shown.text
    assert "Spitzer et al., Arch Intern Med 2006" in shown.text
    assert 'id="crisis"' not in shown.text
    assert "History (1)" in shown.text
    assert counts(sessions) == (1, 0)


def test_a_patient_answers_phq9_item9_and_sees_crisis_resources_and_the_team_is_alerted(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    form = client.get(f"/patients/{world.patient_a}/scales/phq9")
    assert form.status_code == 200
    assert "Save my answers" in form.text and 'name="authored_at"' not in form.text
    saved = client.post(
        f"/patients/{world.patient_a}/scales/phq9",
        data=form_data(csrf, "phq9", [0, 0, 0, 0, 0, 0, 0, 0, 1]),
    )
    assert saved.status_code == 303, saved.text
    shown = client.get(saved.headers["location"])
    assert 'id="crisis"' in shown.text and 'role="alert"' in shown.text
    assert 'href="tel:988"' in shown.text and 'href="sms:988"' in shown.text
    assert 'href="tel:911"' in shown.text
    assert counts(sessions) == (1, 1)
    with sessions() as db:
        row = db.scalars(select(QuestionnaireResponseRow)).one()
        assert row.urgent and row.source == "portal" and row.recorded_by is not None
        alert = db.scalars(select(Alert)).one()
        assert alert.severity == "critical" and "PHQ-9" in alert.title


def test_item9_at_zero_shows_no_crisis_banner_and_raises_no_alert(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    saved = client.post(
        f"/patients/{world.patient_a}/scales/phq9",
        data=form_data(csrf, "phq9", [3, 3, 3, 3, 3, 3, 3, 0, 0]),
    )
    shown = client.get(saved.headers["location"])
    assert 'id="crisis"' not in shown.text
    assert "total <strong>21</strong> of 27: <strong>Severe</strong>" in shown.text
    assert counts(sessions) == (1, 0)


def test_staff_entry_of_item9_raises_the_alert_and_says_so_without_the_patient_banner(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    saved = client.post(
        f"/patients/{world.patient_a}/scales/phq9",
        data=form_data(csrf, "phq9", [0, 0, 0, 0, 0, 0, 0, 0, 3]),
    )
    shown = client.get(saved.headers["location"])
    assert 'id="crisis"' not in shown.text
    assert "an urgent alert was sent to the care team" in shown.text
    assert counts(sessions) == (1, 1)
    alerts = client.get("/alerts")
    assert "URGENT: PHQ-9" in alerts.text


def test_an_impossible_answer_on_the_form_is_refused_naming_it_and_nothing_is_stored(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    refused = client.post(
        f"/patients/{world.patient_a}/scales/pacs",
        data={**form_data(csrf, "pacs", [3, 3, 3, 3, 7]), "authored_at": ""},
    )
    assert refused.status_code == 422
    assert 'href="#item-overall"' in refused.text
    assert "cannot be 7; allowed values: 0, 1, 2, 3, 4, 5, 6" in refused.text
    assert counts(sessions) == (0, 0)


def test_a_patient_cannot_open_or_post_another_patients_scale(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    assert client.get(f"/patients/{world.patient_a2}/scales/phq9").status_code == 403
    posted = client.post(
        f"/patients/{world.patient_a2}/scales/phq9",
        data=form_data(csrf, "phq9", [0] * 8 + [2]),
    )
    assert posted.status_code == 403
    assert counts(sessions) == (0, 0)


def test_a_patient_sees_no_withdrawal_assessment_form(client, world: World) -> None:
    sign_in(client, world.email("patient"), world.passwords["patient"])
    refused = client.get(f"/patients/{world.patient_a}/withdrawal/assess?instrument=ciwa_ar")
    assert refused.status_code == 403
