"""The alert list on a ward phone: one line per alert with its age, an acknowledgement that
needs a note and lands on the next alert, each alert linking to the chart tab it is about.
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from tandem.alerts.models import Alert
from tandem.storage.db import session_scope, utcnow
from tests.alerts.test_alerts import _escalate
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import admit_to_detox

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


def test_alerts_show_their_age_and_link_to_the_tab_they_are_about(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 22)
    with session_scope(sessions) as db:
        for alert in db.scalars(select(Alert)):
            alert.raised_at = utcnow() - timedelta(hours=3, minutes=12)
        db.add(
            Alert(
                patient_id=world.patient_a2,
                program_id=world.program_a,
                kind="missed_doses",
                severity="high",
                title="Baclofen: 3 doses in a row missed",
                raised_at=utcnow() - timedelta(minutes=20),
            )
        )
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    page = client.get("/alerts").text
    assert re.search(r"3 h 1\d min ago", page), "age of the withdrawal alert"
    assert re.search(r"(19|20|21) min ago", page)
    assert f'href="/patients/{world.patient_a2}/medications"' in page
    assert f'href="/patients/{world.patient_a}/withdrawal"' in page
    assert 'style="' not in page


def test_an_acknowledgement_needs_a_note_and_returns_to_the_next_alert(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 22, hours_ago=1)  # critical + high
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    ids = [int(i) for i in re.findall(r'id="alert-(\d+)"', client.get("/alerts").text)]
    empty = client.post(f"/alerts/{ids[0]}/acknowledge", data={"csrf_token": csrf, "note": "  "})
    assert empty.status_code == 422 and "note" in empty.text.lower()
    with sessions() as db:
        assert db.get(Alert, ids[0]).acknowledged_at is None
    done = client.post(
        f"/alerts/{ids[0]}/acknowledge",
        data={"csrf_token": csrf, "note": "reviewed", "next": str(ids[1])},
    )
    assert done.status_code == 303
    assert done.headers["location"].endswith(f"#alert-{ids[1]}")
    with sessions() as db:
        assert db.scalar(select(Alert).where(Alert.id == ids[0])).acknowledged_at is not None
