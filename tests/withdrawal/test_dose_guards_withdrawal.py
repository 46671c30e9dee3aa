"""Issue 9 item 1: a second as-needed dose for one assessment, or a dose over the protocol's
24-hour maximum, is refused unless a prescriber records an override with a reason. The form
shows what was given for the assessment and in the last 24 hours. Pages on both engines; the
rule itself on plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tandem.medications.storage import MedicationAdministrationRow
from tandem.storage.models import AuditEntry, User
from tandem.withdrawal.monitoring import MedicationOption
from tandem.withdrawal.prn import (
    CheckedDose,
    DoseRefused,
    Override,
    PriorDose,
    check_repeat_dose,
    given_so_far,
    repeat_dose_reasons,
)
from tandem.withdrawal.protocol import Citation, load_protocol, protocol_from_mapping
from tandem.withdrawal.storage import AssessmentRow
from tests.conftest import World, sign_in
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers
from tests.withdrawal.test_pages_withdrawal import local_now

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
CITED = Citation("a source", None, None, None, False, (), ())


def _option(drug: str, max_mg: float | None = None) -> MedicationOption:
    return MedicationOption(
        drug, "1-4 mg", None, None, None, CITED, max_mg, CITED if max_mg else None
    )


def _dose(drug: str, mg: str, at: datetime, max_mg: float | None = None) -> CheckedDose:
    return CheckedDose(_option(drug, max_mg), Decimal(mg), "mg", "oral", at)


def _prior(drug: str, mg: str, hours_ago: float, assessment: int | None) -> PriorDose:
    return PriorDose(drug, Decimal(mg), "mg", NOW - timedelta(hours=hours_ago), assessment)


def test_a_first_dose_within_the_maximum_needs_no_override() -> None:
    prior = [_prior("lorazepam", "2", 6, 1)]
    assert repeat_dose_reasons(prior, _dose("lorazepam", "2", NOW, 8), 2) == []
    assert check_repeat_dose(prior, _dose("lorazepam", "2", NOW, 8), 2, None) == ""


def test_a_second_dose_for_one_assessment_is_refused_whatever_the_drug() -> None:
    prior = [_prior("lorazepam", "2", 0.1, 7)]
    with pytest.raises(DoseRefused) as refused:
        check_repeat_dose(prior, _dose("chlordiazepoxide", "75", NOW), 7, None)
    assert refused.value.field == "override"
    assert "already given for this assessment (lorazepam 2 mg)" in refused.value.message


@pytest.mark.parametrize(
    ("given", "hours_ago", "refused"),
    [
        ("4", 23.9, False),  # 4 + 4 = 8: at the maximum
        ("4.5", 23.9, True),  # 8.5 > 8
        ("4.5", 24, False),  # the earlier dose is exactly 24 h old: out of the window
    ],
)
def test_the_24_hour_maximum_counts_back_from_the_dose(
    given: str, hours_ago: float, refused: bool
) -> None:
    prior = [_prior("lorazepam", "4", hours_ago, 1), _prior("diazepam", "20", 1, 2)]
    reasons = repeat_dose_reasons(prior, _dose("lorazepam", given, NOW, 8), 3)
    assert bool(reasons) is refused
    if refused:
        assert "exceed the protocol's maximum of 8 mg" in reasons[0]


def test_only_a_prescriber_with_a_reason_overrides() -> None:
    prior = [_prior("lorazepam", "2", 0.1, 7)]
    dose = _dose("lorazepam", "2", NOW)
    with pytest.raises(DoseRefused, match="Only a prescriber"):
        check_repeat_dose(prior, dose, 7, Override(False, "still shaking"))
    with pytest.raises(DoseRefused, match="override with a reason"):
        check_repeat_dose(prior, dose, 7, Override(True, "   "))
    assert check_repeat_dose(prior, dose, 7, Override(True, " still shaking ")) == "still shaking"


def test_what_was_given_is_totalled_per_drug_over_24_hours() -> None:
    prior = [
        _prior("lorazepam", "2", 30, 1),
        _prior("lorazepam", "2", 5, 2),
        _prior("lorazepam", "1.5", 1, 3),
        _prior("chlordiazepoxide", "50", 2, 3),
    ]
    shown = given_so_far(prior, 3, NOW)
    assert [(t.drug, t.amount, t.doses) for t in shown.last_24h] == [
        ("chlordiazepoxide", "50 mg", 1),
        ("lorazepam", "3.5 mg", 2),
    ]
    assert [d.drug for d in shown.for_assessment] == ["lorazepam", "chlordiazepoxide"]


def test_a_protocol_may_give_a_24_hour_maximum_only_with_a_source() -> None:
    data = load_protocol().model_dump(mode="json")
    med = data["instruments"]["ciwa_ar"]["reassessment"][1]["medication"][1]
    med["max_mg_per_24h"] = {"mg": 8, "source": {"ref": "ccjm_table", "quote": "test"}}
    protocol = protocol_from_mapping(data)
    row = protocol.instrument("ciwa_ar").reassessment[1]
    assert row.medication[1].max_mg_per_24h is not None
    med["max_mg_per_24h"] = {"mg": 8}
    with pytest.raises(ValueError, match="source"):
        protocol_from_mapping(data)


def _assess(client, csrf: str, world: World, total: int) -> int:  # type: ignore[no-untyped-def]
    client.post(
        f"/patients/{world.patient_a}/withdrawal/assess",
        data={
            "csrf_token": csrf,
            "instrument": "ciwa_ar",
            "assessed_at": local_now(0.5),
            **{k: str(v) for k, v in ciwa_answers(total).items()},
        },
    )


def _give(
    client, csrf: str, world: World, assessment_id: int, suggestion: str, dose: str, **extra: str
):  # type: ignore[no-untyped-def]
    return client.post(
        f"/patients/{world.patient_a}/withdrawal/dose",
        data={
            "csrf_token": csrf,
            "assessment": str(assessment_id),
            "suggestion": suggestion,
            "dose": dose,
            "route": "oral",
            "administered_at": local_now(0.2),
            **extra,
        },
    )


def test_a_nurse_cannot_give_a_second_dose_for_one_score_a_prescriber_can_with_a_reason(
    client, sessions, world: World
) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    _assess(client, csrf, world, 13)
    with sessions() as db:
        assessment_id = db.scalar(select(AssessmentRow.id))
    assert _give(client, csrf, world, assessment_id, "1", "2").status_code == 303  # lorazepam

    form = client.get(f"/patients/{world.patient_a}/withdrawal/dose?assessment={assessment_id}")
    assert "For this assessment: lorazepam 2 mg" in form.text
    assert "lorazepam 2 mg (1 dose)" in form.text and "no benzodiazepine equivalences" in form.text

    second = _give(client, csrf, world, assessment_id, "0", "75")  # chlordiazepoxide
    assert second.status_code == 422
    assert "already given for this assessment (lorazepam 2 mg)" in second.text
    pushed = _give(client, csrf, world, assessment_id, "0", "75", override_reason="I say so")
    assert pushed.status_code == 422 and "Only a prescriber may override" in pushed.text
    with sessions() as db:
        assert (
            db.scalar(
                select(MedicationAdministrationRow).where(
                    MedicationAdministrationRow.medication_id == "chlordiazepoxide"
                )
            )
            is None
        )

    client.post("/logout", data={"csrf_token": csrf})
    csrf = sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    no_reason = _give(client, csrf, world, assessment_id, "0", "75")
    assert no_reason.status_code == 422 and "override with a reason" in no_reason.text
    ok = _give(
        client, csrf, world, assessment_id, "0", "50", override_reason="tremor unchanged at 1 h"
    )
    assert ok.status_code == 303
    with sessions() as db:
        row = db.scalars(
            select(MedicationAdministrationRow).where(
                MedicationAdministrationRow.medication_id == "chlordiazepoxide"
            )
        ).one()
        assert row.override_reason == "tremor unchanged at 1 h"
        prescriber = db.scalar(select(User.id).where(User.email == world.email("prescriber")))
        assert row.override_by == prescriber
        audited = db.scalars(
            select(AuditEntry.outcome_detail).where(
                AuditEntry.resource_type == "MedicationAdministration",
                AuditEntry.operation == "create",
            )
        ).all()
        assert any("override by" in d and "tremor unchanged at 1 h" in d for d in audited)
