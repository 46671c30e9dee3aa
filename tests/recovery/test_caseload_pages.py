"""The caseload page and the chart's Timeline tab, signed in, on both engines: what a counselor
sees, the toggle to the whole program, each kind of measure on the timeline, the ranges, and
who is refused."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tandem.medications.storage import MedicationAdministrationRow
from tandem.recovery.timeline import kinds_present, timeline
from tandem.storage.db import session_scope, utcnow
from tandem.withdrawal.assessments import save_assessment
from tests.conftest import World, sign_in
from tests.recovery.caseload_helpers import Records, access_for, at, days_ago, user_id
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers


def _every_measure(sessions: sessionmaker[Session], world: World) -> None:
    """Patient A: one of each kind of measure within the last four weeks."""
    admit_to_detox(sessions, world, world.patient_a, at=utcnow() - timedelta(days=20))
    with session_scope(sessions) as db:
        nurse = access_for(db, sessions, world.email("nurse"))
        save_assessment(
            nurse, world.patient_a, "ciwa_ar", ciwa_answers(12), utcnow() - timedelta(days=19)
        )
    with session_scope(sessions) as db:
        users = {
            n: user_id(db, world.email(n)) for n in ("counselor", "prescriber", "patient", "nurse")
        }
        r = Records(db, world.patient_a, world.program_a)
        r.care_plan(users["counselor"], days_ago(18))
        for n in range(14, 0, -1):
            r.check_in(days_ago(n))
            r.craving(days_ago(n), 7 if n > 7 else 3)
            r.use(days_ago(n), used=n == 10)
        r.screen(days_ago(9), alcohol="positive")
        r.screen(days_ago(2), alcohol="negative")
        r.scale("phq9", days_ago(8), down_depressed=2, sleep=1)
        r.scale("gad7", days_ago(8))
        r.session(days_ago(13), "attended")
        r.session(days_ago(6), "missed")
        plan = r.dose_plan(users["prescriber"])
        r.dose_reported(plan, days_ago(4), True, users["patient"])
        r.dose_reported(plan, days_ago(3), False, users["patient"])
        db.add(
            MedicationAdministrationRow(
                patient_id=world.patient_a,
                program_id=world.program_a,
                medication_id="lorazepam",
                medication_text="lorazepam 1 mg",
                dose_value=1,
                administered_at=at(days_ago(19), 12),
                performer_id=users["nurse"],
            )
        )
        # Patient A2 in the counselor's caseload too, with nothing to flag but check-ins.
        quiet = Records(db, world.patient_a2, world.program_a)
        quiet.care_plan(users["counselor"], days_ago(5))
        quiet.check_in(days_ago(1))


def test_the_timeline_holds_every_kind_of_measure(
    sessions: sessionmaker[Session], world: World
) -> None:
    _every_measure(sessions, world)
    with sessions() as db:
        shown = timeline(access_for(db, sessions, world.email("counselor")), world.patient_a, "4w")
        db.commit()
    assert list(kinds_present(shown)) == [
        "withdrawal",
        "craving",
        "use",
        "screens",
        "mood",
        "doses",
        "attendance",
    ]
    assert [p.value for p in shown.craving[-2:]] == [3.0, 3.0]
    assert [m.kind for m in shown.screens] == ["positive", "negative"]
    assert {m.kind for m in shown.doses} == {"given", "taken", "missed"}
    assert {m.kind for m in shown.sessions} == {"attended", "missed_session"}
    assert shown.scales["phq9"][0].value == 3


def test_caseload_and_timeline_pages(
    client: TestClient, sessions: sessionmaker[Session], world: World
) -> None:
    _every_measure(sessions, world)
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    home = client.get("/")
    assert home.headers["location"] == "/caseload"
    page = client.get("/caseload")
    assert page.status_code == 200
    text = page.text
    assert 'href="/caseload"' in text and "Caseload" in text  # in the navigation
    assert text.index("Rivera, Ana") < text.index("Okafor, Kofi")  # flagged first
    assert "Missed 1 of 2 sessions" not in text  # one missed session is under the threshold
    assert "Average craving" not in text  # craving fell
    assert "example rules" in text and "unverified" in text
    whole = client.get("/caseload", params={"scope": "program"})
    assert whole.status_code == 200 and "Counselor" in whole.text
    assert client.get("/caseload", params={"scope": "everyone"}).status_code == 422
    assert client.get("/caseload", params={"program": str(world.program_b)}).status_code == 403

    tab = client.get(f"/patients/{world.patient_a}/timeline", params={"range": "4w"})
    assert tab.status_code == 200
    for lane in (
        "Withdrawal scores",
        "Craving",
        "Use",
        "Drug screens",
        "PHQ-9",
        "GAD-7",
        "Doses",
        "Sessions",
    ):
        assert f'class="lane-name">{lane}' in tab.text, lane
    assert tab.text.count("<svg") >= 8 and "positive for alcohol" in tab.text
    assert 'aria-current="page">4 weeks' in tab.text
    for range_id in ("3m", "1y"):
        assert (
            client.get(
                f"/patients/{world.patient_a}/timeline", params={"range": range_id}
            ).status_code
            == 200
        )
    assert (
        client.get(f"/patients/{world.patient_a}/timeline", params={"range": "5y"}).status_code
        == 422
    )
    assert client.get(f"/patients/{world.patient_b}/timeline").status_code == 403


def test_who_may_open_the_caseload(client: TestClient, world: World) -> None:
    sign_in(client, world.email("researcher"), world.passwords["researcher"])
    assert client.get("/caseload").status_code == 403
    client.cookies.clear()
    sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    page = client.get("/caseload")
    assert page.status_code == 200 and "Bravo Outpatient" in page.text
