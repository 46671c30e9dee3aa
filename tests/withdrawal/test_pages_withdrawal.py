"""Withdrawal pages (SQLite; their storage and API run on both engines): the nurse's assessment
form, the chart tab, the census (one query, most urgent first), context and doses given; the form
scores as the API does."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, Patient
from tandem.withdrawal import assessments, census
from tandem.withdrawal.storage import AssessmentRow, ObservationRow
from tests.conftest import World, make_token, sign_in
from tests.withdrawal.helpers import (
    access_for,
    admit_to_detox,
    ciwa_answers,
    questionnaire_response,
)

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


def local_now(hours: float = 0) -> str:
    from zoneinfo import ZoneInfo

    return (
        (utcnow() - timedelta(hours=hours))
        .astimezone(ZoneInfo("America/New_York"))
        .strftime("%Y-%m-%dT%H:%M")
    )


def test_a_nurse_records_an_assessment_and_sees_the_due_time_chart_and_census(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    form = client.get(f"/patients/{world.patient_a}/withdrawal/assess?instrument=ciwa_ar")
    assert form.status_code == 200
    assert form.text.count('type="radio" name="orientation"') == 5  # 0-4, not 0-7
    assert 'href="#item-tremor"' in form.text and 'id="item-tremor"' in form.text
    saved = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={
            "csrf_token": csrf,
            "instrument": "ciwa_ar",
            "assessed_at": local_now(0.25),
            **{k: str(v) for k, v in ciwa_answers(12).items()},
        },
    )
    assert saved.status_code == 303, saved.text
    chart = client.get(saved.headers["location"])
    assert chart.status_code == 200
    assert "Saved: CIWA-Ar total <strong>12</strong> (Moderate (8-15))" in chart.text
    assert "<svg" in chart.text and 'class="score-chart"' in chart.text
    assert "chlordiazepoxide 50-75 mg" in chart.text  # the protocol's suggestion for 11-15
    census = client.get(f"/detox/units/{world.unit_a_detox}")
    assert census.status_code == 200
    row = re.search(r"RIVERA, Ana.*?</tr>", census.text, re.S)
    assert row and ">12<" in row.group(0) and "Moderate" in row.group(0)
    fragment = client.get(f"/detox/units/{world.unit_a_detox}", headers={"X-Fragment": "1"})
    assert "<html" not in fragment.text and "RIVERA" in fragment.text
    assert "OKAFOR" not in census.text  # not admitted to detox


def test_an_impossible_answer_is_refused_on_the_form_and_nothing_is_stored(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    answers = {k: str(v) for k, v in ciwa_answers(3).items()}
    answers["orientation"] = "5"
    del answers["headache"]
    refused = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={"csrf_token": csrf, "instrument": "ciwa_ar", "assessed_at": local_now(), **answers},
    )
    assert refused.status_code == 422
    assert 'href="#item-orientation"' in refused.text and 'href="#item-headache"' in refused.text
    assert "cannot be 5; allowed values: 0, 1, 2, 3, 4" in refused.text
    assert 'value="1" required\n' in refused.text or "checked" in refused.text  # other answers kept
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AssessmentRow)) == 0
        assert db.scalar(select(func.count()).select_from(ObservationRow)) == 0


def test_the_form_and_the_api_score_the_same_answers_the_same(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    admit_to_detox(sessions, world, world.patient_a2)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    answers = ciwa_answers(17)
    client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={
            "csrf_token": csrf,
            "instrument": "ciwa_ar",
            "assessed_at": local_now(),
            **{k: str(v) for k, v in answers.items()},
        },
    )
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    api = client.post(
        "/fhir/QuestionnaireResponse",
        json=questionnaire_response("ciwa_ar", world.patient_a2, answers),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"},
    )
    assert api.status_code == 201
    with sessions() as db:
        rows = db.scalars(select(AssessmentRow).order_by(AssessmentRow.id)).all()
        assert [(r.total, r.band_id, r.band_scheme_id, r.item_values, r.channel) for r in rows] == [
            (17, "severe", "pmc6286444", answers, "web"),
            (17, "severe", "pmc6286444", answers, "api"),
        ]


def test_context_is_shown_beside_the_scores_with_risk_flags(client, sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    bad = client.post(
        f"/patients/{world.patient_a}/withdrawal/context",
        data={"csrf_token": csrf, "substance": "alcohol", "opioid_half_life_class": "long"},
    )
    assert bad.status_code == 422 and "only for an opioid" in bad.text
    ok = client.post(
        f"/patients/{world.patient_a}/withdrawal/context",
        data={
            "csrf_token": csrf,
            "substance": "alcohol",
            "last_use_at": local_now(20),
            "history_withdrawal_seizures": "yes",
            "history_delirium_tremens": "no",
        },
    )
    assert ok.status_code == 303
    chart = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert "History of withdrawal seizures - high risk of complicated withdrawal." in chart.text
    assert "Within 5 days of the last drink" in chart.text
    assert "(20 h ago)" in chart.text or "(19 h ago)" in chart.text
    census = client.get(f"/detox/units/{world.unit_a_detox}")
    assert "seizure/DT history" in census.text and "Baseline due" in census.text


def test_a_dose_given_is_recorded_from_the_protocol_suggestions(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={
            "csrf_token": csrf,
            "instrument": "ciwa_ar",
            "assessed_at": local_now(0.5),
            **{k: str(v) for k, v in ciwa_answers(9).items()},
        },
    )
    with sessions() as db:
        assessment_id = db.scalar(select(AssessmentRow.id))
    form = client.get(f"/patients/{world.patient_a}/withdrawal/dose?assessment={assessment_id}")
    assert "chlordiazepoxide 25-50 mg" in form.text and "lorazepam 1-2 mg" in form.text
    too_much = client.post(
        f"/patients/{world.patient_a}/withdrawal/dose",
        data={
            "csrf_token": csrf,
            "assessment": assessment_id,
            "suggestion": "1",
            "dose": "4",
            "route": "oral",
            "administered_at": local_now(0.25),
        },
    )
    assert too_much.status_code == 422 and "outside the protocol" in too_much.text
    given = client.post(
        f"/patients/{world.patient_a}/withdrawal/dose",
        data={
            "csrf_token": csrf,
            "assessment": assessment_id,
            "suggestion": "1",
            "dose": "1",
            "route": "oral",
            "administered_at": local_now(0.25),
        },
    )
    assert given.status_code == 303
    chart = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert "lorazepam 1 mg oral" in chart.text and 'class="dose"' in chart.text


def _state(
    sessions, world: World, patient_id: str, totals_hours_ago: list[tuple[int, float]]
) -> None:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        for total, hours in totals_hours_ago:
            assessments.save_assessment(
                access,
                patient_id,
                "ciwa_ar",
                ciwa_answers(total),
                utcnow() - timedelta(hours=hours),
            )


def test_census_puts_the_most_urgent_on_top_with_one_query(sessions, engine, world: World) -> None:
    names = {}
    with session_scope(sessions) as db:
        for family in ("Alert", "Overdue", "Severe", "Soon", "Later", "Baseline"):
            p = Patient(
                program_id=world.program_a,
                family=family,
                given="T",
                family_lower=family.lower(),
                given_lower="t",
            )
            db.add(p)
            db.flush()
            names[family] = p.id
    for pid in names.values():
        admit_to_detox(sessions, world, pid, hours_ago=30)
    _state(sessions, world, names["Alert"], [(22, 0.1)])  # ICU threshold: critical alert
    _state(sessions, world, names["Overdue"], [(5, 3)])  # due 2 h after, so 1 h overdue
    _state(sessions, world, names["Severe"], [(16, 0.2)])  # severe band (also an alert)
    _state(sessions, world, names["Soon"], [(9, 1.5)])  # moderate, due in 30 min
    _state(sessions, world, names["Later"], [(9, 0.5)])  # moderate, due in 90 min
    with session_scope(sessions) as db:
        from tandem.alerts import service as alert_service
        from tandem.alerts.models import Alert

        prescriber = access_for(sessions, db, world, "prescriber")
        for alert in db.scalars(select(Alert).where(Alert.patient_id == names["Severe"])).all():
            alert_service.acknowledge(prescriber, alert.id, "seen")
    statements: list[str] = []

    def count(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        statements.append(statement)

    with sessions() as db:
        event.listen(engine, "before_cursor_execute", count)
        try:
            rows, counts = census.census_rows(db, world.unit_a_detox, utcnow())
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    order = [r.name.split(",")[0].title() for r in rows]
    assert order == ["Alert", "Baseline", "Overdue", "Severe", "Soon", "Later"]
    by_name = dict(zip(order, rows, strict=True))
    assert by_name["Alert"].alert_rank == 3 and by_name["Overdue"].overdue
    assert by_name["Baseline"].baseline_due and by_name["Severe"].alert_count == 0
    assert counts == {"in_monitoring": 6, "overdue_count": 2, "alert_rows": 1}
    assert [r.sort_key for r in rows] == sorted(r.sort_key for r in rows)  # the core's census key


def test_census_is_only_for_members_of_the_program(client, world: World) -> None:
    sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    assert client.get(f"/detox/units/{world.unit_a_detox}").status_code == 403


@pytest.mark.parametrize("role", ["counselor"])
def test_read_only_roles_see_the_chart_without_forms(
    client, sessions, world: World, role: str
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    sign_in(client, world.email(role), world.passwords[role])
    chart = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert chart.status_code == 200 and "Record CIWA-Ar" not in chart.text
    with sessions() as db:
        assert (
            db.scalar(
                select(func.count())
                .select_from(AuditEntry)
                .where(
                    AuditEntry.resource_type == "QuestionnaireResponse",
                    AuditEntry.operation == "search",
                )
            )
            >= 1
        )
