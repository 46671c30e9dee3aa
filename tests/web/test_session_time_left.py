"""A session ending during entry (issue 9 item 11), on the server's side: the page knows how long
the session has left, the warning's check does not count as activity while its "Stay signed in"
does, and a form posted after the session ended sends the person to sign in and back to the
form, with nothing saved meanwhile. SQLite and PostgreSQL. The browser's part (the banner, the
entries kept and restored) is tests/browser/test_session_timeout.py."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, update

from tandem.storage.db import utcnow
from tandem.storage.models import WebSession
from tandem.withdrawal.storage import AssessmentRow
from tests.conftest import World, csrf_from, sign_in
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


def local_now(hours: float = 0) -> str:
    return (
        (utcnow() - timedelta(hours=hours))
        .astimezone(ZoneInfo("America/New_York"))
        .strftime("%Y-%m-%dT%H:%M")
    )


def _idle_for(sessions, minutes: float) -> None:  # type: ignore[no-untyped-def]
    with sessions() as db:
        db.execute(update(WebSession).values(last_seen_at=utcnow() - timedelta(minutes=minutes)))
        db.commit()


def _last_seen(sessions):  # type: ignore[no-untyped-def]
    with sessions() as db:
        return db.scalar(select(WebSession.last_seen_at))


def _body_seconds_left(html: str) -> int:
    match = re.search(r'<body[^>]* data-session-left="(\d+)" data-session-warn="(\d+)"', html)
    assert match, "the page does not say how long the session has left"
    assert match.group(2) == "120"  # warned two minutes before the end
    return int(match.group(1))


def test_the_page_knows_the_time_left_and_only_the_button_counts_as_activity(
    client, sessions, world: World
) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    page = client.get("/patients")
    assert 29 * 60 < _body_seconds_left(page.text) <= 30 * 60  # the idle limit is 30 minutes
    assert 'id="session-banner"' in page.text

    # 28.5 minutes idle: tandem.js's check before warning reads the time left without
    # postponing the end ...
    _idle_for(sessions, 28.5)
    seen = _last_seen(sessions)
    check = client.get("/session/alive", headers={"X-Fragment": "1"})
    assert check.status_code == 200 and check.headers["cache-control"] == "no-store"
    assert 80 <= check.json()["seconds_left"] <= 90
    assert check.json()["at_lifetime"] is False
    assert _last_seen(sessions) == seen
    # ... the warning's "Stay signed in" request does.
    stay = client.get("/session/alive")
    assert 29 * 60 < stay.json()["seconds_left"] <= 30 * 60
    assert utcnow() - _last_seen(sessions) < timedelta(minutes=1)

    # Past the limit: the check is answered by the sign-in page, and the session stays ended.
    _idle_for(sessions, 31)
    ended = client.get("/session/alive", headers={"X-Fragment": "1"})
    assert ended.status_code == 303 and "expired=1" in ended.headers["location"]
    assert client.get("/patients").status_code == 303


def test_the_sign_in_page_has_no_session_timing(client) -> None:
    login = client.get("/login")
    assert "data-session-left" not in login.text and "session-banner" not in login.text
    assert client.get("/session/alive").status_code == 303


def test_an_assessment_posted_after_the_session_ended_returns_to_its_form_unsaved(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    form_page = f"/patients/{world.patient_a}/withdrawal/assess?instrument=ciwa_ar"
    form = client.get(form_page)
    assert f'data-keep-draft="assess:{world.patient_a}:ciwa_ar"' in form.text
    entries = {
        "csrf_token": csrf,
        "instrument": "ciwa_ar",
        "assessed_at": local_now(0.25),
        **{k: str(v) for k, v in ciwa_answers(12).items()},
    }
    _idle_for(sessions, 31)
    posted = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data=entries,
        headers={"Referer": f"https://testserver{form_page}"},
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == f"/login?next={quote(form_page)}&expired=1"
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AssessmentRow)) == 0

    # Signing in leads back to the form, which brings a new security token: the save goes through.
    login = client.get(posted.headers["location"])
    assert f'name="next" value="{form_page}"' in login.text
    signed_in = client.post(
        "/login",
        data={
            "email": world.email("nurse"),
            "password": world.passwords["nurse"],
            "csrf_token": csrf_from(login.text),
            "next": form_page,
        },
    )
    assert signed_in.headers["location"] == form_page
    fresh = client.get(form_page)
    assert _body_seconds_left(fresh.text) > 29 * 60
    saved = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={**entries, "csrf_token": csrf_from(fresh.text)},
    )
    assert saved.status_code == 303 and "/withdrawal?saved=" in saved.headers["location"]
    with sessions() as db:
        assert db.scalar(select(func.count()).select_from(AssessmentRow)) == 1


def test_a_post_from_another_site_is_not_sent_back_there(client, sessions, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    _idle_for(sessions, 31)
    posted = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={"csrf_token": csrf, "instrument": "ciwa_ar"},
        headers={"Referer": "https://elsewhere.example/patients/x/withdrawal/assess"},
    )
    assert posted.status_code == 303
    assert posted.headers["location"] == "/login?next=/&expired=1"
