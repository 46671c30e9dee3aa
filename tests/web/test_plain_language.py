"""Patients read plain language written for them; no page shows an internal id (rule ids,
protocol row ids, field paths, table rows) — SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tandem.plain_language import plain_language
from tandem.storage.db import session_scope, utcnow
from tandem.withdrawal.assessments import save_assessment
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import access_for, admit_to_detox, ciwa_answers

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py

RULE_ID = re.compile(r"\b[a-z]+\.[a-z]+_[a-z_]+\b")  # baclofen.renal_mild


def _assessed(sessions, world: World) -> None:  # type: ignore[no-untyped-def]
    admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        access = access_for(sessions, db, world)
        save_assessment(
            access, world.patient_a, "ciwa_ar", ciwa_answers(12), utcnow() - timedelta(minutes=5)
        )


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", " ", html)


def test_patient_text_is_data_and_clinical_passages_cite_a_source() -> None:
    for package, name in (("tandem.medications", "leaflets"), ("tandem.withdrawal", "monitoring")):
        passages = plain_language(package, name)
        assert passages
        for passage in passages.values():
            assert not passage.clinical or passage.source is not None


def test_the_patient_reads_their_withdrawal_checks_in_plain_language(
    client, sessions, world: World
) -> None:
    _assessed(sessions, world)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    page = client.get(f"/patients/{world.patient_a}/withdrawal")
    assert page.status_code == 200
    text = _text(page.text)
    assert "Your withdrawal checks" in text and "<strong>12</strong>" in page.text
    assert plain_language("tandem.withdrawal", "monitoring")["about"].text in text
    for clinician_only in ("unverified", "Protocol", "Source:", "(row", "protocol suggests"):
        assert clinician_only not in text, clinician_only
    medications = _text(client.get(f"/patients/{world.patient_a}/medications").text)
    assert "About your medicines" in medications
    assert "Never stop baclofen" not in medications and "Safety screening" not in medications
    assert not RULE_ID.search(medications), RULE_ID.search(medications)


def test_clinician_pages_show_no_internal_ids(client, sessions, world: World) -> None:
    _assessed(sessions, world)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    chart = _text(client.get(f"/patients/{world.patient_a}/withdrawal").text)
    assert "(row " not in chart
    assert re.search(r"total 12 \(scores \d+-\d+\): every", chart)
    assert "instruments." not in chart and "reassessment." not in chart
    medications = _text(client.get(f"/patients/{world.patient_a}/medications").text)
    assert "Safety screening" in medications
    assert not RULE_ID.search(medications), RULE_ID.search(medications)


def test_the_audit_trail_reads_in_words(client, sessions, world: World) -> None:
    _assessed(sessions, world)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    client.get(f"/patients/{world.patient_a}/withdrawal")
    client.cookies.clear()
    sign_in(client, world.email("admin"), world.passwords["admin"])
    trail = client.get("/admin/audit")
    assert trail.status_code == 200
    text = _text(trail.text)
    assert "opened the chart" in text and "recorded a withdrawal assessment" in text
    assert "RIVERA, Ana" in text
    assert world.patient_a[:8] not in text
    assert not re.search(r"\b[A-Z][A-Za-z]+/\w+", text), re.search(r"\b[A-Z][A-Za-z]+/\w+", text)
