"""FHIR R4B views validate with fhir.resources."""

from __future__ import annotations

from datetime import date

import pytest
from fhir.resources.R4B.medicationknowledge import MedicationKnowledge
from fhir.resources.R4B.medicationrequest import MedicationRequest

from tandem.medications.dose_plan import taper, titration
from tandem.medications.errors import ImplausibleValue
from tandem.medications.fhir_mapping import to_medication_knowledge, to_medication_request
from tandem.medications.monograph import load_monograph, medication_ids
from tandem.medications.renal import assess

D0 = date(2025, 3, 1)


def test_titration_request_one_dosage_per_step() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "20mg-tid", D0)
    resource = to_medication_request(plan, "Patient/p1")
    parsed = MedicationRequest.model_validate(resource)
    assert parsed.subject.reference == "Patient/p1"
    assert (resource["status"], resource["intent"]) == ("draft", "plan")
    coding = resource["medicationCodeableConcept"]["coding"][0]
    assert coding == {
        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
        "code": "1292",
        "display": "baclofen",
    }
    assert any("1292" in n["text"] and "unverified" in n["text"] for n in resource["note"])
    dosages = resource["dosageInstruction"]
    assert [d["sequence"] for d in dosages] == [1, 2, 3, 4]
    assert [d["doseAndRate"][0]["doseQuantity"]["value"] for d in dosages] == [5, 10, 15, 20]
    for d in dosages:
        repeat = d["timing"]["repeat"]
        assert (repeat["frequency"], repeat["period"], repeat["periodUnit"]) == (3, 1, "d")
        assert d["doseAndRate"][0]["doseQuantity"]["unit"] == "mg"
        assert d["maxDosePerPeriod"]["numerator"]["value"] == 80
    assert dosages[0]["timing"]["repeat"]["boundsPeriod"] == {
        "start": "2025-03-01",
        "end": "2025-03-03",
    }
    # The target dose goes on: its period has no end.
    assert dosages[-1]["timing"]["repeat"]["boundsPeriod"] == {"start": "2025-03-10"}


def test_renal_ceiling_travels_as_max_dose_and_note() -> None:
    renal = assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4)
    plan = titration("baclofen", "3.33mg-tid", 3.33, 3, "15mg-tid", D0, renal=renal)
    resource = to_medication_request(plan, "Patient/p1")
    assert resource["dosageInstruction"][0]["maxDosePerPeriod"]["numerator"]["value"] == 53.3333
    assert any("Creatinine clearance 50-80" in n["text"] for n in resource["note"])


def test_taper_request_splits_unequal_days_by_time_of_day() -> None:
    plan = taper("baclofen", "20mg-tid", 14, D0)
    resource = to_medication_request(plan, "Patient/p1")
    MedicationRequest.model_validate(resource)
    first_step = [d for d in resource["dosageInstruction"] if d["sequence"] == 1]
    assert {
        (d["doseAndRate"][0]["doseQuantity"]["value"], tuple(d["timing"]["repeat"]["when"]))
        for d in first_step
    } == {(20.0, ("MORN", "NOON")), (15.0, ("EVE",))}
    last = resource["dosageInstruction"][-1]
    assert last["timing"]["repeat"]["boundsPeriod"] == {"start": "2025-03-13", "end": "2025-03-14"}
    assert any("Stop on 2025-03-15" in n["text"] for n in resource["note"])


def test_confirmed_codes_only_leaves_coding_out() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    resource = to_medication_request(plan, "Patient/p1", include_unverified_codes=False)
    assert "coding" not in resource["medicationCodeableConcept"]
    assert resource["medicationCodeableConcept"]["text"] == "Baclofen"


def test_patient_reference_required() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "10mg-tid", D0)
    with pytest.raises(ImplausibleValue) as err:
        to_medication_request(plan, "  ")
    assert err.value.field == "patient_ref"


@pytest.mark.parametrize("medication_id", medication_ids())
def test_every_monograph_as_medication_knowledge(medication_id) -> None:
    resource = to_medication_knowledge(load_monograph(medication_id))
    parsed = MedicationKnowledge.model_validate(resource)
    assert parsed.status == "active"
    assert resource["code"]["text"] == load_monograph(medication_id).name


def test_baclofen_medication_knowledge_content() -> None:
    resource = to_medication_knowledge("baclofen")
    assert resource["code"]["coding"][0]["code"] == "1292"
    assert "Ozobax" in resource["synonym"] and "Baclocur" in resource["synonym"]
    dosage = resource["administrationGuidelines"][0]["dosage"][0]["dosage"]
    cap = next(d for d in dosage if "maxDosePerPeriod" in d)
    assert cap["maxDosePerPeriod"]["numerator"]["value"] == 80
    assert (
        "Spasticity" in resource["administrationGuidelines"][0]["indicationCodeableConcept"]["text"]
    )


def test_frequency_change_within_a_titration() -> None:
    plan = titration("baclofen", "5mg-tid", 5, 3, "20mg-qid", D0)
    resource = to_medication_request(plan, "Patient/p1")
    repeats = [d["timing"]["repeat"] for d in resource["dosageInstruction"]]
    assert [r["frequency"] for r in repeats] == [3, 3, 3, 3, 4]
    assert all("when" not in r for r in repeats)
    assert [str(s.uniform_dose) for s in plan.steps][-2:] == ["20mg-tid", "20mg-qid"]
