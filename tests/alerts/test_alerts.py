"""Escalations reach the prescriber as alerts; acknowledging one is recorded and audited, and an
unacknowledged alert stays on top. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

from sqlalchemy import select

from tandem.alerts.models import Alert
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, User
from tandem.withdrawal import assessments
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers


def _escalate(sessions, world: World, patient_id: str, total: int, hours_ago: float = 0.1) -> None:  # type: ignore[no-untyped-def]
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        assessments.save_assessment(
            access,
            patient_id,
            "ciwa_ar",
            ciwa_answers(total),
            utcnow() - timedelta(hours=hours_ago),
        )


def test_a_severe_score_raises_alerts_for_the_prescriber_once(sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 22)
    with sessions() as db:
        alerts = db.scalars(select(Alert).order_by(Alert.id)).all()
        created = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "Alert", AuditEntry.operation == "create"
            )
        ).all()
    assert {(a.rule_id, a.severity, a.for_role) for a in alerts} == {
        ("ciwa_icu", "critical", "prescriber"),
        ("ciwa_severe_band", "high", "prescriber"),
    }
    assert all(
        a.related_type == "QuestionnaireResponse" and "protocol example-detox" in a.source
        for a in alerts
    )
    assert len(created) == 2 and {c.patient_id for c in created} == {world.patient_a}
    _escalate(sessions, world, world.patient_a, 3, hours_ago=0.05)  # a low score raises nothing new
    with sessions() as db:
        assert len(db.scalars(select(Alert)).all()) == 2


def test_acknowledging_is_recorded_and_audited_and_unacknowledged_stay_on_top(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    admit_to_detox(sessions, world, world.patient_a2)
    _escalate(sessions, world, world.patient_a, 22, hours_ago=1)  # critical + high
    _escalate(sessions, world, world.patient_a2, 17, hours_ago=0.5)  # high
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    page = client.get("/alerts")
    assert page.status_code == 200
    ids = [int(i) for i in re.findall(r'id="alert-(\d+)"', page.text)]
    with sessions() as db:
        critical = db.scalar(select(Alert).where(Alert.rule_id == "ciwa_icu"))
    assert ids[0] == critical.id  # most severe first
    done = client.post(
        f"/alerts/{critical.id}/acknowledge",
        data={"csrf_token": csrf, "note": "Seen; lorazepam given, ICU review requested"},
    )
    assert done.status_code == 303
    with sessions() as db:
        alert = db.get(Alert, critical.id)
        prescriber = db.scalar(select(User).where(User.email == world.email("prescriber")))
        audit = db.scalar(
            select(AuditEntry).where(
                AuditEntry.resource_type == "Alert", AuditEntry.operation == "update"
            )
        )
    assert alert.acknowledged_at is not None and alert.acknowledged_by == prescriber.id
    assert alert.acknowledgement_note == "Seen; lorazepam given, ICU review requested"
    assert audit.resource_id == str(critical.id) and audit.patient_id == world.patient_a
    assert audit.user_id == prescriber.id and "ICU review" in audit.outcome_detail
    after = client.get("/alerts").text
    ids = [int(i) for i in re.findall(r'id="alert-(\d+)"', after)]
    assert ids[-1] == critical.id  # acknowledged: below every unacknowledged alert
    assert "Acknowledged by <strong>Prescriber</strong>" in after
    again = client.post(
        f"/alerts/{critical.id}/acknowledge", data={"csrf_token": csrf, "note": "twice"}
    )
    assert again.status_code == 422


def test_a_nurse_sees_alerts_but_cannot_acknowledge_and_other_programs_cannot_see(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 20)
    with sessions() as db:
        alert_id = db.scalar(select(Alert.id).where(Alert.rule_id == "ciwa_icu"))
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    page = client.get("/alerts")
    assert f'id="alert-{alert_id}"' in page.text and "/acknowledge" not in page.text
    refused = client.post(f"/alerts/{alert_id}/acknowledge", data={"csrf_token": csrf, "note": "x"})
    assert refused.status_code == 403
    with sessions() as db:
        assert db.get(Alert, alert_id).acknowledged_at is None
        assert (
            db.scalar(
                select(AuditEntry).where(
                    AuditEntry.resource_type == "Alert", AuditEntry.outcome == "4"
                )
            )
            is not None
        )
    client.post("/logout", data={"csrf_token": csrf})
    sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    assert f'id="alert-{alert_id}"' not in client.get("/alerts").text


def test_a_patient_sees_their_withdrawal_chart_but_not_the_clinicians_alerts(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 22)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    chart = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert chart.status_code == 200 and ">22<" in chart.text
    assert "Open alerts" not in chart.text and "Record CIWA-Ar" not in chart.text
    assert client.get("/alerts").status_code == 403
    assert client.get(f"/patients/{world.patient_a2}/withdrawal").status_code == 403


def test_a_counselor_finds_the_alerts_in_the_menu_and_reads_them_without_acknowledging(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    _escalate(sessions, world, world.patient_a, 20)
    with sessions() as db:
        alert_id = db.scalar(select(Alert.id).where(Alert.rule_id == "ciwa_icu"))
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    home = client.get("/patients").text
    assert 'href="/alerts"' in home
    page = client.get("/alerts")
    assert page.status_code == 200
    assert f'id="alert-{alert_id}"' in page.text and "/acknowledge" not in page.text
