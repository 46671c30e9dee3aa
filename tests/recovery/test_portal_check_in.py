"""A patient's daily check-in from their portal (SQLite and PostgreSQL): every part stored in one
unit of work and the doses feeding the medication plan's adherence; a second check-in the same
day replaces the first; impossible answers refused naming the field, nothing stored; nobody
checks in for someone else."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select

from tandem.medications.dose_calendar import plan_view
from tandem.medications.plans import get_plan
from tandem.medications.storage import MedicationStatementRow, SideEffectRow
from tandem.patients.service import get_patient
from tandem.recovery.storage import CheckInRow, CravingRatingRow, UseDayRow
from tandem.storage.models import AuditEntry
from tests.conftest import World, sign_in
from tests.recovery.portal_helpers import (
    NOW,
    access_for,
    count,
    freeze,
    give_care_plan,
    give_plan,
)

PARTS = (CheckInRow, CravingRatingRow, UseDayRow, MedicationStatementRow, SideEffectRow)


def _adherence(sessions, world: World, plan_id: int):  # type: ignore[no-untyped-def]
    with sessions() as db:
        access = access_for(db, sessions, world.email("prescriber"))
        patient = get_patient(access, world.patient_a)
        view = plan_view(access, patient, get_plan(access, plan_id), NOW)
        return view.overall, view.last_7_days


def _dose_fields(html: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r'name="(dose_\d+_\d+)"', html)))


def _answers(csrf: str, doses: list[str], **extra: object) -> dict[str, object]:
    form: dict[str, object] = {
        "csrf_token": csrf,
        "craving_alcohol": "6",
        "craving_opioids": "2",
        "use_day": "today",
        "use_alcohol": "yes",
        "drinks_alcohol": "3.5",
        "use_opioids": "no",
        "side_effect": ["drowsiness", "nausea"],
        "side_effect_severity": "moderate",
        "mood": "anxious",
        "note": "rough afternoon",
    }
    for index, field in enumerate(doses):
        form[field] = "missed" if index == len(doses) - 1 else "taken"
    form.update(extra)
    return form


def test_a_check_in_stores_every_part_and_feeds_adherence(
    client, sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(monkeypatch)
    plan_id = give_plan(sessions, world, world.patient_a)
    give_care_plan(sessions, world.patient_a, world.program_a, ["alcohol", "opioids"])
    before, _ = _adherence(sessions, world, plan_id)
    assert before.taken == 0 and before.due == 5  # yesterday 13:00, 19:00; today's three

    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    home = client.get("/")
    assert home.headers["location"] == f"/patients/{world.patient_a}/today"
    today = client.get(home.headers["location"])
    assert today.status_code == 200 and "Check in now" in today.text
    form = client.get(f"/patients/{world.patient_a}/check-in")
    assert form.status_code == 200
    assert "Craving for alcohol" in form.text and "Did you use opioids" in form.text
    doses = _dose_fields(form.text)
    assert len(doses) == 5
    saved = client.post(f"/patients/{world.patient_a}/check-in", data=_answers(csrf, doses))
    assert saved.status_code == 303, saved.text[:2000]
    assert saved.headers["location"].endswith("/today?done=saved")
    assert "Your check-in is saved" in client.get(saved.headers["location"]).text

    with sessions() as db:
        check_in = db.scalars(select(CheckInRow)).one()
        assert (check_in.patient_id, check_in.day.isoformat()) == (world.patient_a, "2026-03-04")
        assert check_in.mood == "anxious" and check_in.source == "portal"
        assert check_in.side_effects == "drowsiness,nausea" and check_in.note == "rough afternoon"
        ratings = {r.substance: r.rating for r in db.scalars(select(CravingRatingRow))}
        assert ratings == {"alcohol": 6, "opioids": 2}
        uses = {u.substance: (u.used, u.standard_drinks) for u in db.scalars(select(UseDayRow))}
        assert uses == {"alcohol": (True, 3.5), "opioids": (False, None)}
        effects = db.scalars(select(SideEffectRow)).all()  # on the Medications tab
        assert {(e.effect, e.severity, e.medication_id) for e in effects} == {
            ("drowsiness", "moderate", "baclofen"),
            ("nausea", "moderate", "baclofen"),
        }
        statements = db.scalars(select(MedicationStatementRow)).all()
        assert sorted(s.taken for s in statements) == [False, True, True, True, True]
        audited = db.execute(
            select(AuditEntry.operation, AuditEntry.resource_type).where(
                AuditEntry.actor == world.email("patient"), AuditEntry.operation == "create"
            )
        ).all()
        assert ("create", "CheckIn") in audited and ("create", "MedicationStatement") in audited
    after, week = _adherence(sessions, world, plan_id)
    assert (after.due, after.taken, after.missed) == (5, 4, 1)
    assert after.percent == 80 and week.percent == 80
    # Sent again (a second check-in today): the side effects already reported are not doubled.
    again = client.post(f"/patients/{world.patient_a}/check-in", data=_answers(csrf, doses))
    assert again.status_code == 303 and again.headers["location"].endswith("done=updated")
    assert count(sessions, SideEffectRow) == 2 and count(sessions, MedicationStatementRow) == 5

    # The dose calendar and "how am I doing" show it back.
    calendar = client.get(f"/patients/{world.patient_a}/doses")
    assert calendar.status_code == 200 and "80%" in calendar.text
    progress = client.get(f"/patients/{world.patient_a}/progress")
    assert progress.status_code == 200 and "<svg" in progress.text
    assert "6.0 · 1 of 1" in progress.text  # the table: craving 6, used 1 day of 1 reported


def test_a_second_check_in_the_same_day_replaces_that_days_answers(
    client, sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(monkeypatch)
    plan_id = give_plan(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    url = f"/patients/{world.patient_a}/check-in"
    doses = _dose_fields(client.get(url).text)
    first = {  # no care plan: alcohol and other drugs are asked
        "csrf_token": csrf,
        "craving_alcohol": "8",
        "craving_other": "0",
        "use_alcohol": "yes",
        "drinks_alcohol": "6",
        "use_other": "no",
        doses[0]: "missed",
    }
    assert client.post(url, data=first).status_code == 303
    again = client.get(url)
    assert "You already checked in today" in again.text
    assert 'value="8" checked' in again.text  # today's answers are shown
    second = {**first, "craving_alcohol": "3", "use_alcohol": "no", "drinks_alcohol": ""}
    second[doses[0]] = "taken"
    replaced = client.post(url, data=second)
    assert replaced.status_code == 303
    assert replaced.headers["location"].endswith("done=updated")
    assert "replace today's earlier ones" in client.get(replaced.headers["location"]).text
    assert count(sessions, CheckInRow) == 1
    with sessions() as db:
        assert {r.substance: r.rating for r in db.scalars(select(CravingRatingRow))} == {
            "alcohol": 3,
            "other": 0,
        }
        alcohol = db.scalars(select(UseDayRow).where(UseDayRow.substance == "alcohol")).one()
        assert (alcohol.used, alcohol.standard_drinks) == (False, None)
        assert [s.taken for s in db.scalars(select(MedicationStatementRow))] == [True]
    overall, _ = _adherence(sessions, world, plan_id)
    assert overall.taken == 1 and overall.missed == 0


BAD = [
    ({"craving_alcohol": "11"}, "craving_alcohol", "craving for alcohol"),
    ({"craving_alcohol": "-1"}, "craving_alcohol", "craving for alcohol"),
    ({"craving_opioids": "lots"}, "craving_opioids", "craving for opioids"),
    ({"craving_opioids": ""}, "craving_opioids", "craving for opioids"),
    ({"use_opioids": "maybe"}, "use_opioids", "did you use opioids"),
    ({"drinks_alcohol": "-2"}, "drinks_alcohol", "standard drinks"),
    ({"drinks_alcohol": "500"}, "drinks_alcohol", "standard drinks"),
    ({"drinks_alcohol": "nan"}, "drinks_alcohol", "standard drinks"),
    ({"use_alcohol": "no", "drinks_alcohol": "4"}, "drinks_alcohol", "you answered no alcohol"),
    ({"use_alcohol": "yes", "drinks_alcohol": ""}, "drinks_alcohol", "standard drinks"),
    ({"drinks_opioids": "2"}, "drinks_opioids", "alcohol only"),
    ({"use_day": "tomorrow"}, "use_day", "today or yesterday"),
    ({"side_effect": ["hiccups"]}, "side_effect", "side effects from the list"),
    ({"side_effect": ["other"]}, "side_effect_other", "describe the other side effect"),
    ({"side_effect_severity": ""}, "side_effect_severity", "how much do the side effects"),
    ({"side_effect_severity": "awful"}, "side_effect_severity", "how much do the side effects"),
    ({"mood": "", "mood_word": "very sad"}, "mood_word", "one word"),
    ({"mood": "ecstatic"}, "mood", "mood buttons"),
    ({"note": "x" * 1001}, "note", "1000 characters"),
    ({"dose_999_1772668800": "taken"}, "dose_999_1772668800", "planned doses"),
]


def test_impossible_answers_are_refused_naming_the_field_and_nothing_is_stored(
    client, sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(monkeypatch)
    give_plan(sessions, world, world.patient_a)
    give_care_plan(sessions, world.patient_a, world.program_a, ["alcohol", "opioids"])
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    url = f"/patients/{world.patient_a}/check-in"
    doses = _dose_fields(client.get(url).text)
    for change, field, words in BAD:
        refused = client.post(url, data=_answers(csrf, doses, **change))
        assert refused.status_code == 422, (change, refused.status_code)
        assert words in refused.text.lower(), (change, words)
        if f'name="{field}"' in refused.text:  # a field of the form is marked where it is
            marked = re.search(rf'aria-describedby="error-{re.escape(field)}"', refused.text)
            assert marked, (change, field)
        assert "Nothing was saved" in refused.text
        for model in PARTS:
            assert count(sessions, model) == 0, (change, model.__name__)
    # The same answers, put right, are taken.
    assert client.post(url, data=_answers(csrf, doses)).status_code == 303
    assert count(sessions, CheckInRow) == 1 and count(sessions, MedicationStatementRow) == 5


def test_nobody_checks_in_for_someone_else(
    client, sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze(monkeypatch)
    give_plan(sessions, world, world.patient_a2)
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    other = f"/patients/{world.patient_a2}/check-in"
    answers = {
        "csrf_token": csrf,
        "craving_alcohol": "5",
        "craving_other": "0",
        "use_alcohol": "no",
        "use_other": "no",
    }
    assert client.get(other).status_code == 403
    assert client.post(other, data=answers).status_code == 403
    assert client.get(f"/patients/{world.patient_a2}/today").status_code == 403
    assert (
        client.post(
            f"/patients/{world.patient_a2}/reminders", data={"csrf_token": csrf}
        ).status_code
        == 403
    )
    for model in PARTS:
        assert count(sessions, model) == 0
    client.cookies.clear()
    # A counselor reads the record but does not record a check-in; a nurse with the patient may.
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    assert client.post(other, data={**answers, "csrf_token": csrf}).status_code == 403
    assert count(sessions, CheckInRow) == 0
    client.cookies.clear()
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert client.post(other, data={**answers, "csrf_token": csrf}).status_code == 303
    with sessions() as db:
        recorded = db.execute(select(CheckInRow.patient_id, CheckInRow.source)).all()
    assert recorded == [(world.patient_a2, "staff")]


@pytest.mark.one_engine
def test_a_second_check_in_finds_that_days_answers_by_the_patients_indexes(
    client, sessions, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replacing today's answers reads and deletes the patient's rows through their indexes,
    never by reading a whole table: the ratings' check_in_id has no index of its own, and
    deleting by it alone scanned every patient's ratings with SQLite's write lock held (35 ms at
    1,000 patients a year each, on every second check-in of a day)."""
    freeze(monkeypatch)
    give_care_plan(sessions, world.patient_a, world.program_a, ["alcohol", "opioids"])
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    url = f"/patients/{world.patient_a}/check-in"
    assert client.post(url, data=_answers(csrf, [])).status_code == 303
    engine = client.app.state.engine  # type: ignore[attr-defined]
    sent: list[tuple[str, object]] = []

    def keep(conn, cursor, statement, parameters, context, many):  # type: ignore[no-untyped-def]
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        replaced = client.post(url, data=_answers(csrf, [], craving_alcohol="2"))
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    assert replaced.headers["location"].endswith("done=updated")
    tables = ("craving_ratings", "use_days", "recovery_check_ins")
    touched = [
        (sql, params)
        for sql, params in sent
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE"))
        and any(t in sql for t in tables)
    ]
    assert any(sql.startswith("DELETE FROM craving_ratings") for sql, _ in touched)
    with engine.connect() as conn:
        for sql, params in touched:
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            scans = [row[-1] for row in plan if re.match(r"SCAN (\w+)$", row[-1])]
            assert not [s for s in scans if s.split()[1] in tables], (sql, plan)
