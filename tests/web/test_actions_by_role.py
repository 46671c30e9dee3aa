"""Each person is offered only the actions the policy allows them, and a form they may not submit is
refused before it is filled or validated, with a page that says why (SQLite; their storage and API
run on both engines)."""

from __future__ import annotations

import pytest

from tandem.access.policy import Actor, PatientRef, Role, may
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import admit_to_detox

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py


@pytest.mark.parametrize(
    ("role", "action", "allowed"),
    [
        (Role.NURSE, "assess", True),
        (Role.COUNSELOR, "assess", False),
        (Role.PRESCRIBER, "prescribe", True),
        (Role.NURSE, "prescribe", False),
        (Role.ADMIN, "prescribe", False),
        (Role.NURSE, "acknowledge_alert", False),
        (Role.PRESCRIBER, "acknowledge_alert", True),
        (Role.PATIENT, "assess", False),
        (Role.RESEARCHER, "read_chart", False),
    ],
)
def test_may_answers_from_the_one_policy(role: Role, action: str, allowed: bool) -> None:
    actor = Actor(
        1, "someone", role, frozenset({7}), patient_id="p1" if role == "patient" else None
    )
    assert bool(may(actor, action, PatientRef("p1", 7))) is allowed
    assert not may(actor, action, PatientRef("p1", 8))  # never outside the actor's programs


def test_an_unknown_action_is_a_programming_error() -> None:
    with pytest.raises(KeyError):
        may(Actor(1, "x", Role.ADMIN, frozenset({1})), "launch", program_id=1)


def test_the_census_offers_assess_only_to_those_who_may_record_it(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert "/withdrawal/assess?" in client.get(f"/detox/units/{world.unit_a_detox}").text
    client.cookies.clear()
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    census = client.get(f"/detox/units/{world.unit_a_detox}")
    assert census.status_code == 200 and "RIVERA, Ana" in census.text
    assert "/withdrawal/assess" not in census.text and ">Assess<" not in census.text


def test_a_counselor_is_refused_the_assessment_form_before_filling_it(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    form = client.get(f"/patients/{world.patient_a}/withdrawal/assess?instrument=ciwa_ar")
    assert form.status_code == 403
    assert 'name="orientation"' not in form.text
    assert "<h1>Not allowed</h1>" in form.text
    assert "counselor may not record assessments" in form.text.lower()
    # A post is refused before its fields are read: an unknown instrument and no time still
    # answer "not allowed" (not "check the form"), on a whole page with a way back to the chart.
    posted = client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={"csrf_token": csrf, "instrument": "nonsense"},
    )
    assert posted.status_code == 403, posted.text
    assert "<h1>Not allowed</h1>" in posted.text and "Nothing was saved" in posted.text
    assert f'href="/patients/{world.patient_a}"' in posted.text
    for path in ("withdrawal/context", "medications/facts", "medications/plans/new"):
        assert client.get(f"/patients/{world.patient_a}/{path}").status_code == 403, path


@pytest.mark.parametrize("role", ["nurse", "admin"])
def test_no_prescribing_form_for_those_who_cannot_prescribe(
    client, world: World, role: str
) -> None:
    csrf = sign_in(client, world.email(role), world.passwords[role])
    chart = client.get(f"/patients/{world.patient_a}/medications")
    assert chart.status_code == 200
    assert "/medications/plans/new" not in chart.text
    assert client.get(f"/patients/{world.patient_a}/medications/plans/new").status_code == 403
    posted = client.post(
        f"/patients/{world.patient_a}/medications/plans",
        data={"csrf_token": csrf, "kind": "titration", "medication": "none"},
    )
    assert posted.status_code == 403 and "Nothing was saved" in posted.text


def test_a_prescriber_still_gets_the_prescribing_form(client, world: World) -> None:
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    chart = client.get(f"/patients/{world.patient_a}/medications")
    assert "/medications/plans/new" in chart.text
    assert client.get(f"/patients/{world.patient_a}/medications/plans/new").status_code == 200
