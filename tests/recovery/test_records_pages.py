"""The chart's Recovery tab on SQLite and PostgreSQL: the calendar shows a reported day apart
from an unreported one; forms refuse impossible input naming the field with nothing stored;
the care plan, retention and sessions are recorded by staff; another program is refused."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from tandem.clock import program_today
from tandem.recovery.storage import (
    CarePlanRow,
    DrugScreenResultRow,
    RetentionEventRow,
    TherapySessionRow,
    UseDayRow,
)
from tandem.storage.db import utcnow
from tests.conftest import World, sign_in
from tests.recovery.records_helpers import count


def _today():  # type: ignore[no-untyped-def]
    return program_today("America/New_York", utcnow())


def _cell(html: str, day: str) -> str:
    found = re.search(rf'data-day="{day}">(.*?)</td>', html, re.S)
    assert found, f"no calendar cell for {day}"
    return found.group(1)


def test_the_calendar_shows_a_reported_day_apart_from_an_unreported_one(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    reported = _today() - timedelta(days=1)
    unreported = _today() - timedelta(days=2) if reported.day > 1 else _today()
    saved = client.post(
        f"/patients/{world.patient_a}/recovery/use",
        data={
            "csrf_token": csrf,
            "day": reported.isoformat(),
            "used.alcohol": "no",
            "used.opioids": "yes",
        },
    )
    assert saved.status_code == 303, saved.text
    page = client.get(saved.headers["location"])
    assert page.status_code == 200
    cell = _cell(page.text, reported.isoformat())
    assert "Alcohol: no use" in cell and "Opioids: used" in cell
    if unreported != _today():
        assert "not reported" in _cell(page.text, unreported.isoformat())
        assert "used" not in _cell(page.text, unreported.isoformat())
    assert "Days without use" in page.text


def test_a_refused_use_form_names_the_field_and_stores_nothing(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    answer = client.post(
        f"/patients/{world.patient_a}/recovery/use",
        data={
            "csrf_token": csrf,
            "day": (_today() - timedelta(days=1)).isoformat(),
            "used.opioids": "yes",  # valid, but the form as a whole is refused
            "used.alcohol": "yes",
            "drinks.alcohol": "-2",
        },
    )
    assert answer.status_code == 422
    assert 'href="#use-drinks-alcohol"' in answer.text
    assert 'aria-invalid="true"' in answer.text
    assert count(sessions, UseDayRow) == 0
    future = client.post(
        f"/patients/{world.patient_a}/recovery/use",
        data={
            "csrf_token": csrf,
            "day": (_today() + timedelta(days=1)).isoformat(),
            "used.alcohol": "no",
        },
    )
    assert future.status_code == 422 and "has not happened yet" in future.text
    assert count(sessions, UseDayRow) == 0


def test_a_drug_screen_is_recorded_and_shown_on_its_day(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    when = (utcnow() - timedelta(hours=1)).astimezone().strftime("%Y-%m-%dT%H:%M%z")
    bad = client.post(
        f"/patients/{world.patient_a}/recovery/screens",
        data={"csrf_token": csrf, "collected_at": when, "result.cocaine": "maybe"},
    )
    assert bad.status_code == 422 and "result.cocaine" in bad.text
    assert count(sessions, DrugScreenResultRow) == 0
    ok = client.post(
        f"/patients/{world.patient_a}/recovery/screens",
        data={
            "csrf_token": csrf,
            "collected_at": when,
            "result.cocaine": "positive",
            "result.opioids": "negative",
        },
    )
    assert ok.status_code == 303, ok.text
    page = client.get(ok.headers["location"])
    assert "Screen cocaine: positive" in page.text and "Screen opioids: negative" in page.text


def test_staff_start_a_plan_book_a_session_record_attendance_and_retention(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    base = f"/patients/{world.patient_a}/recovery"
    refused = client.post(
        f"{base}/care-plans",
        data={"csrf_token": csrf, "substances": "alcohol", "started_on": _today().isoformat()},
    )
    assert refused.status_code == 422 and "choose at least one service" in refused.text
    assert count(sessions, CarePlanRow) == 0
    made = client.post(
        f"{base}/care-plans",
        data={
            "csrf_token": csrf,
            "substances": ["alcohol", "cannabis"],
            "service.group_therapy": "1",
            "frequency.group_therapy": "twice_weekly",
            "service.peer_support": "1",
            "frequency.peer_support": "weekly",
            "started_on": (_today() - timedelta(days=3)).isoformat(),
        },
    )
    assert made.status_code == 303, made.text
    page = client.get(f"{base}/program")
    assert "Group therapy" in page.text and "Twice a week" in page.text
    with sessions() as db:
        plan_id = db.scalar(select(CarePlanRow.id))

    when = (utcnow() + timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M%z")
    past = (utcnow() - timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M%z")
    too_early = client.post(
        f"{base}/sessions", data={"csrf_token": csrf, "service": "group_therapy", "starts_at": past}
    )
    assert too_early.status_code == 422 and 'href="#book-starts_at"' in too_early.text
    assert count(sessions, TherapySessionRow) == 0
    booked = client.post(
        f"{base}/sessions", data={"csrf_token": csrf, "service": "group_therapy", "starts_at": when}
    )
    assert booked.status_code == 303, booked.text
    with sessions() as db:
        session_id = db.scalar(select(TherapySessionRow.id))
        assert db.scalar(select(TherapySessionRow.minutes)) == 90
    early = client.post(
        f"{base}/sessions/{session_id}/attendance", data={"csrf_token": csrf, "status": "attended"}
    )
    assert early.status_code == 422 and "once the session has started" in early.text
    cancelled = client.post(
        f"{base}/sessions/{session_id}/attendance", data={"csrf_token": csrf, "status": "cancelled"}
    )
    assert cancelled.status_code == 303
    with sessions() as db:
        assert db.scalar(select(TherapySessionRow.status)) == "cancelled"

    dropped = client.post(
        f"{base}/care-plans/{plan_id}/retention",
        data={
            "csrf_token": csrf,
            "retention": "dropped_out",
            "on_day": _today().isoformat(),
            "note": "stopped coming",
        },
    )
    assert dropped.status_code == 303, dropped.text
    with sessions() as db:
        history = [
            (e.retention, e.note)
            for e in db.scalars(select(RetentionEventRow).order_by(RetentionEventRow.id))
        ]
    assert history == [("active", "plan started"), ("dropped_out", "stopped coming")]
    assert "Dropped out" in client.get(f"{base}/program").text


def test_another_programs_nurse_is_refused_the_tab_and_its_forms(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    base = f"/patients/{world.patient_a}/recovery"
    assert client.get(base).status_code == 403
    assert client.get(f"{base}/program").status_code == 403
    answer = client.post(
        f"{base}/use", data={"csrf_token": csrf, "day": _today().isoformat(), "used.alcohol": "no"}
    )
    assert answer.status_code == 403
    assert count(sessions, UseDayRow) == 0


def test_a_counselor_keeps_the_program_but_does_not_record_use(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    base = f"/patients/{world.patient_a}/recovery"
    when = (utcnow() + timedelta(days=1)).astimezone().strftime("%Y-%m-%dT%H:%M%z")
    booked = client.post(
        f"{base}/sessions",
        data={"csrf_token": csrf, "service": "individual_counseling", "starts_at": when},
    )
    assert booked.status_code == 303, booked.text
    assert "Record use for a day" not in client.get(base).text
    refused = client.post(
        f"{base}/use", data={"csrf_token": csrf, "day": _today().isoformat(), "used.alcohol": "no"}
    )
    assert refused.status_code == 403
    assert count(sessions, UseDayRow) == 0


def test_a_booked_session_is_moved_and_a_move_into_the_past_is_refused(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    base = f"/patients/{world.patient_a}/recovery"

    def at(delta: timedelta) -> str:
        return (utcnow() + delta).astimezone().strftime("%Y-%m-%dT%H:%M%z")

    client.post(
        f"{base}/sessions",
        data={"csrf_token": csrf, "service": "family_session", "starts_at": at(timedelta(days=1))},
    )
    with sessions() as db:
        session_id, before = db.execute(
            select(TherapySessionRow.id, TherapySessionRow.starts_at)
        ).one()
    refused = client.post(
        f"{base}/sessions/{session_id}/reschedule",
        data={"csrf_token": csrf, "starts_at": at(-timedelta(days=1)), "minutes": "60"},
    )
    assert refused.status_code == 422 and f'href="#session-{session_id}-starts_at"' in refused.text
    moved = client.post(
        f"{base}/sessions/{session_id}/reschedule",
        data={"csrf_token": csrf, "starts_at": at(timedelta(days=3)), "minutes": "45"},
    )
    assert moved.status_code == 303, moved.text
    with sessions() as db:
        starts, minutes = db.execute(
            select(TherapySessionRow.starts_at, TherapySessionRow.minutes)
        ).one()
    assert starts - before >= timedelta(days=2) - timedelta(minutes=1) and minutes == 45


def test_the_measures_cover_the_period_asked_for_and_refuse_an_impossible_one(
    client, sessions, world: World
) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    base = f"/patients/{world.patient_a}/recovery"
    day = _today() - timedelta(days=40)
    plan = client.post(
        f"{base}/care-plans",
        data={
            "csrf_token": csrf,
            "substances": "alcohol",
            "service.peer_support": "1",
            "frequency.peer_support": "weekly",
            "started_on": (day - timedelta(days=1)).isoformat(),
        },
    )
    assert plan.status_code == 303, plan.text
    used = client.post(
        f"{base}/use", data={"csrf_token": csrf, "day": day.isoformat(), "used.alcohol": "no"}
    )
    assert used.status_code == 303, used.text
    last_30 = client.get(base).text
    assert "30 days" in last_30
    row = re.search(r"<th scope=\"row\">Alcohol</th><td>(\d+)</td>", last_30)
    assert row and row.group(1) == "0"
    wide = client.get(base, params={"from": day.isoformat(), "to": day.isoformat()}).text
    row = re.search(r"<th scope=\"row\">Alcohol</th><td>(\d+)</td>", wide)
    assert row and row.group(1) == "1" and "100.0%" in wide
    backwards = client.get(base, params={"from": _today().isoformat(), "to": day.isoformat()})
    assert backwards.status_code == 422
