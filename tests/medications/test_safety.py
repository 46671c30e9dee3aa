"""Every safety rule, with a patient it applies to and one it does not (table-driven).

The base patient has every fact recorded and nothing that triggers a conditional rule:
woman, 40 y, 70 kg, creatinine 0.8 mg/dL (CrCl 103.3 mL/min, eGFR G1), no medicines.
Each row adds the facts that make the rule apply, and the facts that keep it quiet.
"""

from __future__ import annotations

import pytest

from tandem.medications.errors import ImplausibleValue, UnknownSubstance
from tandem.medications.monograph import SEVERITY_RANK, all_monographs
from tandem.medications.rules import Always
from tandem.medications.safety import PatientFacts, screen

BASE = dict(
    age=40,
    sex="female",
    weight_kg=70,
    creatinine_mg_dl=0.8,
    on_dialysis=False,
    pregnant=False,
    breastfeeding=False,
    seizure_history=False,
    psychosis_history=False,
    stroke_history=False,
    respiratory_disease=False,
    alt_u_l=20,
    ast_u_l=22,
    acute_hepatitis=False,
    liver_failure=False,
    severe_heart_disease=False,
    hepatic_impairment="none",
    qtc_ms=420,
    qtc_prolonged=False,
    taking=frozenset(),
    opioid_free_days=30,
    opioid_withdrawal_signs=True,
    opioid_positive_test=False,
    intoxicated=False,
    hours_since_last_drink=48,
)
# Worked Cockcroft-Gault values from the fact sheet (F1), and one by hand.
CRCL_19 = dict(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0)  # 19.4, eGFR 21.7
CRCL_52 = dict(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4)  # 52.1, eGFR 55.8
CRCL_36 = dict(age=70, sex="male", weight_kg=60, creatinine_mg_dl=1.6)  # 36.5 = 4200/115.2
ALWAYS = None

# rule id → (facts that trigger it, facts that do not; ALWAYS for unconditional advisories)
CASES: dict[str, tuple[dict, dict | None]] = {
    "baclofen.renal_mild": (CRCL_52, {}),
    "baclofen.renal_moderate": (CRCL_36, CRCL_52),
    "baclofen.renal_severe": (CRCL_19, CRCL_36),
    "baclofen.dialysis": ({"on_dialysis": True}, {"on_dialysis": False}),
    "baclofen.alcohol": ({"taking": {"alcohol"}}, {"taking": {"benzodiazepines"}}),
    "baclofen.opioids": ({"taking": {"methadone"}}, {"taking": {"alcohol"}}),
    "baclofen.cns_depressants": ({"taking": {"benzodiazepines"}}, {"taking": {"opioids"}}),
    "baclofen.tricyclics_maois": ({"taking": {"maois"}}, {"taking": {"lithium"}}),
    "baclofen.lithium": ({"taking": {"lithium"}}, {"taking": {"maois"}}),
    "baclofen.antihypertensives": ({"taking": {"antihypertensives"}}, {}),
    "baclofen.pregnancy": ({"pregnant": True}, {"pregnant": False}),
    "baclofen.seizure_history": ({"seizure_history": True}, {"seizure_history": False}),
    "baclofen.psychosis": ({"psychosis_history": True}, {"psychosis_history": False}),
    "baclofen.stroke": ({"stroke_history": True}, {"stroke_history": False}),
    "baclofen.never_stop_abruptly": ({}, ALWAYS),
    "naltrexone.opioids": ({"taking": {"opioid_analgesics"}}, {"taking": {"alcohol"}}),
    "naltrexone.opioid_withdrawal": (
        {"opioid_withdrawal_signs": True},
        {"opioid_withdrawal_signs": False},
    ),
    "naltrexone.opioid_positive_test": (
        {"opioid_positive_test": True},
        {"opioid_positive_test": False},
    ),
    "naltrexone.opioid_free_interval": ({"opioid_free_days": 6}, {"opioid_free_days": 7}),
    "naltrexone.opioid_free_interval_short": ({"opioid_free_days": 9}, {"opioid_free_days": 10}),
    "naltrexone.liver": ({"acute_hepatitis": True, "liver_failure": None}, {}),
    "naltrexone.hepatotoxicity": ({}, ALWAYS),
    "naltrexone.overdose_after_stopping": ({}, ALWAYS),
    "acamprosate.renal_contraindicated": (CRCL_19, CRCL_36),
    "acamprosate.renal_reduce": (CRCL_36, CRCL_52),
    "acamprosate.dialysis": ({"on_dialysis": True}, {"on_dialysis": False}),
    "acamprosate.after_withdrawal": ({}, ALWAYS),
    "disulfiram.intoxicated": ({"intoxicated": True}, {"intoxicated": False}),
    "disulfiram.recent_alcohol": ({"hours_since_last_drink": 11.5}, {"hours_since_last_drink": 12}),
    "disulfiram.full_knowledge": ({}, ALWAYS),
    "disulfiram.drinking": ({"taking": {"alcohol"}}, {"taking": {"lithium"}}),
    "disulfiram.alcohol_preparations": (
        {"taking": {"alcohol_containing_preparations"}},
        {"taking": {"benzodiazepines"}},
    ),
    "disulfiram.heart_disease": ({"severe_heart_disease": True}, {"severe_heart_disease": False}),
    "disulfiram.psychosis": ({"psychosis_history": True}, {"psychosis_history": False}),
    "disulfiram.breastfeeding": ({"breastfeeding": True}, {"breastfeeding": False}),
    "gabapentin.respiratory_depression_cns": ({"taking": {"opioids"}}, {"taking": {"lithium"}}),
    "gabapentin.respiratory_disease": ({"respiratory_disease": True}, {}),
    "gabapentin.renal_adjust": ({}, ALWAYS),
    "topiramate.pregnancy": ({"pregnant": True}, {}),
    "topiramate.monitoring": ({}, ALWAYS),
    "topiramate.taper": ({}, ALWAYS),
    "buprenorphine.precipitated_withdrawal": (
        {"opioid_withdrawal_signs": False},
        {"opioid_withdrawal_signs": True},
    ),
    "buprenorphine.methadone_transfer": ({"taking": {"methadone"}}, {"taking": {"buprenorphine"}}),
    "buprenorphine.cns_depressants": ({"taking": {"benzodiazepines"}}, {"taking": {"lithium"}}),
    "buprenorphine.hepatic_severe": (
        {"hepatic_impairment": "severe"},
        {"hepatic_impairment": "moderate"},
    ),
    "buprenorphine.hepatic_moderate": (
        {"hepatic_impairment": "moderate"},
        {"hepatic_impairment": "mild"},
    ),
    "buprenorphine.breastfeeding": ({"breastfeeding": True}, {"breastfeeding": False}),
    "methadone.qt_prolonged": ({"qtc_prolonged": True}, {"qtc_prolonged": False}),
    "methadone.qtc_above_500": ({"qtc_ms": 501}, {"qtc_ms": 500}),
    "methadone.qtc_above_450": ({"qtc_ms": 451}, {"qtc_ms": 450}),
    "methadone.ecg_screening": ({}, ALWAYS),
    "methadone.breastfeeding": ({"breastfeeding": True}, {"breastfeeding": False}),
    "methadone.qt_drugs": ({"taking": {"lofexidine"}}, {"taking": {"buprenorphine"}}),
    "methadone.cns_depressants": ({"taking": {"benzodiazepines"}}, {"taking": {"lithium"}}),
    "methadone.pregnancy": ({"pregnant": True}, {}),
    "methadone.respiratory_depression": ({}, ALWAYS),
    "methadone.otp_only": ({}, ALWAYS),
    "lofexidine.qt_prolonged": ({"qtc_prolonged": True}, {}),
    "lofexidine.methadone": ({"taking": {"methadone"}}, {"taking": {"buprenorphine"}}),
    "lofexidine.renal_moderate": (CRCL_52, CRCL_19),
    "lofexidine.renal_severe": (CRCL_19, CRCL_52),
    "lofexidine.hepatic_mild": ({"hepatic_impairment": "mild"}, {}),
    "lofexidine.hepatic_moderate": ({"hepatic_impairment": "moderate"}, {}),
    "lofexidine.hepatic_severe": ({"hepatic_impairment": "severe"}, {}),
    "lofexidine.hepatic_ungraded": ({"liver_failure": True, "hepatic_impairment": None}, {}),
    "lofexidine.cns_depressants": ({"taking": {"benzodiazepines"}}, {"taking": {"lithium"}}),
    "lofexidine.antihypertensives": ({"taking": {"antihypertensives"}}, {"taking": {"lithium"}}),
    "lofexidine.hypotension": ({}, ALWAYS),
    "clonidine.off_label": ({}, ALWAYS),
    "clonidine.hypotension": ({"taking": {"antihypertensives"}}, {}),
    "clonidine.abrupt_stop": ({}, ALWAYS),
    "chlordiazepoxide.liver_failure": ({"liver_failure": True}, {}),
    "chlordiazepoxide.older_adults": ({}, ALWAYS),
    "chlordiazepoxide.opioids": ({"taking": {"opioid_analgesics"}}, {"taking": {"alcohol"}}),
    "chlordiazepoxide.taper": ({}, ALWAYS),
    "lorazepam.liver_failure": ({"liver_failure": True}, {}),
    "lorazepam.older_adults": ({}, ALWAYS),
    "lorazepam.opioids": ({"taking": {"opioid_analgesics"}}, {"taking": {"alcohol"}}),
    "lorazepam.taper": ({}, ALWAYS),
    "diazepam.opioids": ({"taking": {"opioid_analgesics"}}, {"taking": {"alcohol"}}),
    "diazepam.taper": ({}, ALWAYS),
    "oxazepam.opioids": ({"taking": {"opioid_analgesics"}}, {"taking": {"alcohol"}}),
    "oxazepam.taper": ({}, ALWAYS),
}


def _facts(overrides: dict) -> PatientFacts:
    return PatientFacts(**{**BASE, **overrides})


def test_the_table_covers_every_rule() -> None:
    all_ids = {r.id for m in all_monographs() for r in m.rules}
    assert set(CASES) == all_ids


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_applies(rule_id) -> None:
    trigger, _ = CASES[rule_id]
    medication = rule_id.split(".")[0]
    result = screen(medication, _facts(trigger))
    finding = next((f for f in result.findings if f.rule_id == rule_id), None)
    assert finding is not None, f"{rule_id} should apply; got {result.rule_ids}"
    assert finding.reason and finding.source
    rule = next(r for m in all_monographs() for r in m.rules if r.id == rule_id)
    assert finding.severity == rule.severity


@pytest.mark.parametrize("rule_id", sorted(k for k, v in CASES.items() if v[1] is not ALWAYS))
def test_rule_does_not_apply(rule_id) -> None:
    _, quiet = CASES[rule_id]
    medication = rule_id.split(".")[0]
    result = screen(medication, _facts(quiet))
    assert rule_id not in result.rule_ids


@pytest.mark.parametrize("rule_id", sorted(k for k, v in CASES.items() if v[1] is ALWAYS))
def test_advisories_are_unconditional(rule_id) -> None:
    rule = next(r for m in all_monographs() for r in m.rules if r.id == rule_id)
    assert isinstance(rule.when, Always)
    assert rule.severity == "info"
    assert rule_id in screen(rule_id.split(".")[0], PatientFacts()).rule_ids


def test_base_patient_has_no_conditional_findings_and_nothing_missing() -> None:
    for mono in all_monographs():
        result = screen(mono.id, _facts({}))
        conditional = [
            f.rule_id
            for f in result.findings
            if f.rule_id.startswith("missing.") or not isinstance(mono.rule(f.rule_id).when, Always)
        ]
        # buprenorphine: the base patient has withdrawal signs, so induction is fine;
        # naltrexone: the same signs make naltrexone contraindicated.
        expected = {"naltrexone": ["naltrexone.opioid_withdrawal"]}.get(mono.id, [])
        assert conditional == expected, mono.id


# ---------------------------------------------------------------- band edges, via the evaluator


@pytest.mark.parametrize(
    ("crcl", "expected"),
    [
        (80.1, set()),
        (80.0, {"baclofen.renal_mild"}),
        (50.1, {"baclofen.renal_mild"}),
        (50.0, {"baclofen.renal_moderate"}),  # shared edge → the larger reduction
        (30.0, {"baclofen.renal_moderate"}),
        (29.9, {"baclofen.renal_severe"}),
        (5.0, {"baclofen.renal_severe"}),
    ],
)
def test_baclofen_renal_band_edges(crcl, expected) -> None:
    mono = next(m for m in all_monographs() if m.id == "baclofen")
    fired = {
        r.id
        for r in mono.rules
        if r.id.startswith("baclofen.renal") and r.when.evaluate({"crcl_ml_min": crcl}).value
    }
    assert fired == expected


@pytest.mark.parametrize(
    ("crcl", "expected"),
    [
        (50.1, set()),
        (50.0, {"acamprosate.renal_reduce"}),
        (30.1, {"acamprosate.renal_reduce"}),
        (30.0, {"acamprosate.renal_contraindicated"}),
        (10.0, {"acamprosate.renal_contraindicated"}),
    ],
)
def test_acamprosate_renal_band_edges(crcl, expected) -> None:
    mono = next(m for m in all_monographs() if m.id == "acamprosate")
    fired = {
        r.id
        for r in mono.rules
        if r.id.startswith("acamprosate.renal") and r.when.evaluate({"crcl_ml_min": crcl}).value
    }
    assert fired == expected


@pytest.mark.parametrize(
    ("egfr", "dialysis", "expected"),
    [
        (90.0, False, set()),
        (89.9, False, {"lofexidine.renal_moderate"}),
        (30.0, False, {"lofexidine.renal_moderate"}),
        (29.9, False, {"lofexidine.renal_severe"}),
        (95.0, True, {"lofexidine.renal_severe"}),
    ],
)
def test_lofexidine_egfr_band_edges(egfr, dialysis, expected) -> None:
    mono = next(m for m in all_monographs() if m.id == "lofexidine")
    facts = {"egfr": egfr, "on_dialysis": dialysis}
    fired = {
        r.id
        for r in mono.rules
        if r.id.startswith("lofexidine.renal") and r.when.evaluate(facts).value
    }
    assert fired == expected


# Methadone QTc (Krantz 2009, fact sheet E): above 450 discuss and monitor more often; above
# 500 consider reducing, stopping or switching. Exactly 500 is not "above 500".
@pytest.mark.parametrize(
    ("qtc", "expected", "words"),
    [
        (420, set(), None),
        (450, set(), None),
        (450.5, {"methadone.qtc_above_450"}, "monitor the QTc more often"),
        (451, {"methadone.qtc_above_450"}, "discuss the risks and benefits"),
        (500, {"methadone.qtc_above_450"}, "monitor the QTc more often"),
        (501, {"methadone.qtc_above_500"}, "consider stopping or reducing methadone"),
        (560, {"methadone.qtc_above_500"}, "another therapy"),
    ],
)
def test_methadone_qtc_edges(qtc, expected, words) -> None:
    result = screen("methadone", _facts({"qtc_ms": qtc}))
    fired = {r for r in result.rule_ids if r.startswith("methadone.qtc_")}
    assert fired == expected
    if expected:
        finding = next(f for f in result.findings if f.rule_id in expected)
        assert words in finding.reason
        assert finding.evidence == {"qtc_ms": qtc}
        assert any(s.id == "krantz_2009" for s in finding.source)


@pytest.mark.parametrize(
    ("facts", "contraindicated"),
    [
        ({**CRCL_19}, True),  # clearance 19.4
        ({"on_dialysis": True}, True),
        ({"on_dialysis": False}, False),
    ],
)
def test_acamprosate_dialysis_or_low_clearance_is_contraindicated(facts, contraindicated) -> None:
    assert screen("acamprosate", _facts(facts)).contraindicated is contraindicated


@pytest.mark.parametrize(
    ("crcl", "expected"),
    [(31.0, "acamprosate.renal_reduce"), (30.0, "acamprosate.renal_contraindicated")],
)
def test_acamprosate_clearance_30_against_31(crcl, expected) -> None:
    mono = next(m for m in all_monographs() if m.id == "acamprosate")
    fired = {
        r.id
        for r in mono.rules
        if r.id.startswith("acamprosate.renal") and r.when.evaluate({"crcl_ml_min": crcl}).value
    }
    assert fired == {expected}


@pytest.mark.parametrize(
    ("taking", "expected"),
    [
        ({"alcohol"}, {"disulfiram.drinking"}),
        ({"metronidazole"}, {"disulfiram.alcohol_preparations"}),
        ({"paraldehyde"}, {"disulfiram.alcohol_preparations"}),
        ({"alcohol_containing_preparations"}, {"disulfiram.alcohol_preparations"}),
        ({"opioids"}, set()),
    ],
)
def test_disulfiram_with_alcohol_or_its_interacting_drugs(taking, expected) -> None:
    result = screen("disulfiram", _facts({"taking": taking}))
    contraindicated = {f.rule_id for f in result.findings if f.severity == "contraindicated"}
    assert contraindicated == expected


@pytest.mark.parametrize("drug", ["chlordiazepoxide", "diazepam", "lorazepam", "oxazepam"])
@pytest.mark.parametrize("opioid", ["opioids", "opioid_analgesics", "methadone", "buprenorphine"])
def test_every_benzodiazepine_warns_with_every_opioid(drug, opioid) -> None:
    result = screen(drug, _facts({"taking": {opioid}}))
    finding = next(f for f in result.findings if f.rule_id == f"{drug}.opioids")
    assert finding.severity == "major_caution"
    assert any(s.id == "fda_benzodiazepine_opioid_2016" for s in finding.source)
    taper = next(f for f in result.findings if f.rule_id == f"{drug}.taper")
    assert "taper" in taper.reason


@pytest.mark.parametrize(
    ("grade", "per_dose", "per_day"),
    [("none", None, None), ("mild", 0.54, 2.16), ("moderate", 0.36, 1.44), ("severe", 0.18, 0.72)],
)
def test_lofexidine_hepatic_table(grade, per_dose, per_day) -> None:
    mono = next(m for m in all_monographs() if m.id == "lofexidine")
    result = screen("lofexidine", _facts({"hepatic_impairment": grade}))
    hepatic = [r for r in result.rule_ids if r.startswith("lofexidine.hepatic")]
    if per_dose is None:
        assert hepatic == []
        return
    (rule_id,) = hepatic
    limit = mono.rule(rule_id).dose_limit
    assert (limit.max_mg_per_dose, limit.max_mg_day) == (per_dose, per_day)


def test_liver_failure_without_a_grade_asks_for_one() -> None:
    result = screen("lofexidine", _facts({"liver_failure": True, "hepatic_impairment": None}))
    missing = next(f for f in result.findings if f.rule_id == "missing.hepatic_impairment")
    assert "lofexidine.hepatic_ungraded" in missing.needed_by


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"hepatic_impairment": "severe"}, {"buprenorphine.hepatic_severe"}),
        ({"liver_failure": True}, {"buprenorphine.hepatic_severe"}),
        ({"hepatic_impairment": "moderate"}, {"buprenorphine.hepatic_moderate"}),
        ({"hepatic_impairment": "mild"}, set()),
    ],
)
def test_buprenorphine_hepatic_impairment(facts, expected) -> None:
    result = screen("buprenorphine", _facts(facts))
    assert {r for r in result.rule_ids if ".hepatic" in r} == expected


# ---------------------------------------------------------------- the result itself


def test_result_carries_crcl_egfr_and_orders_by_severity() -> None:
    result = screen("baclofen", _facts({**CRCL_19, "taking": {"opioids", "benzodiazepines"}}))
    assert result.crcl_ml_min == 19.4
    assert result.crcl.weight_basis == "actual"
    assert result.egfr_value == 21.7 and result.egfr.category == "G4"
    ranks = [SEVERITY_RANK[f.severity] for f in result.findings]
    assert ranks == sorted(ranks)
    renal = next(f for f in result.findings if f.rule_id == "baclofen.renal_severe")
    assert renal.evidence == {"crcl_ml_min": 19.4}
    body = result.to_dict()
    assert (body["crcl_ml_min"], body["egfr"]) == (19.4, 21.7)
    assert {"rule_id", "severity", "reason", "source"} <= set(body["findings"][0])


def test_naltrexone_with_methadone_is_contraindicated() -> None:
    result = screen("naltrexone", _facts({"taking": {"methadone"}}))
    assert result.contraindicated and result.worst == "contraindicated"


# ---------------------------------------------------------------- what is not recorded


def test_missing_creatinine_says_kidney_function_unknown() -> None:
    facts = {**BASE, "creatinine_mg_dl": None}
    result = screen("baclofen", PatientFacts(**facts))
    missing = {f.rule_id: f for f in result.findings if f.rule_id.startswith("missing.")}
    assert set(missing) == {"missing.creatinine_mg_dl"}
    finding = missing["missing.creatinine_mg_dl"]
    assert finding.severity == "info"
    assert finding.reason == "creatinine not recorded: kidney function unknown"
    assert set(finding.needed_by) == {
        "baclofen.renal_mild",
        "baclofen.renal_moderate",
        "baclofen.renal_severe",
    }
    assert result.crcl is None and result.egfr is None


def test_nothing_recorded_lists_what_to_record() -> None:
    result = screen("baclofen", PatientFacts())
    missing = {f.rule_id for f in result.findings if f.rule_id.startswith("missing.")}
    assert missing == {
        "missing.age",
        "missing.sex",
        "missing.weight_kg",
        "missing.creatinine_mg_dl",
        "missing.on_dialysis",
        "missing.pregnant",
        "missing.seizure_history",
        "missing.psychosis_history",
        "missing.stroke_history",
        "missing.taking",
    }
    assert "baclofen.never_stop_abruptly" in result.rule_ids


def test_male_sex_answers_pregnancy() -> None:
    result = screen("baclofen", PatientFacts(sex="male"))
    assert "missing.pregnant" not in result.rule_ids
    assert "baclofen.pregnancy" not in result.rule_ids


def test_known_true_decides_an_any_even_when_the_other_branch_is_unknown() -> None:
    result = screen("naltrexone", PatientFacts(acute_hepatitis=True))
    assert "naltrexone.liver" in result.rule_ids
    assert "missing.liver_failure" not in result.rule_ids


def test_qtc_not_recorded_asks_for_an_ecg() -> None:
    none = screen("methadone", _facts({"qtc_ms": None, "qtc_prolonged": None}))
    missing = {f.rule_id: f for f in none.findings if f.rule_id.startswith("missing.")}
    assert missing["missing.qtc_ms"].reason == "QTc not recorded: obtain an ECG"
    assert "methadone.qtc_above_450" in missing["missing.qtc_ms"].needed_by


def test_liver_tests_required_by_naltrexone() -> None:
    result = screen("naltrexone", _facts({"alt_u_l": None, "ast_u_l": None}))
    assert {"missing.alt_u_l", "missing.ast_u_l"} <= set(result.rule_ids)


def test_minor_egfr_not_computed_is_explained() -> None:
    result = screen("lofexidine", _facts({"age": 16}))
    assert result.crcl is not None and result.egfr is None
    missing = next(f for f in result.findings if f.rule_id == "missing.egfr")
    assert "adults aged 18" in missing.reason


# ---------------------------------------------------------------- impossible facts


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"age": -1}, "age"),
        ({"age": 150}, "age"),
        ({"weight_kg": 0}, "weight_kg"),
        ({"weight_kg": -60}, "weight_kg"),
        ({"creatinine_mg_dl": 0}, "creatinine_mg_dl"),
        ({"creatinine_mg_dl": -1.2}, "creatinine_mg_dl"),
        ({"creatinine_mg_dl": float("inf")}, "creatinine_mg_dl"),
        ({"qtc_ms": 0}, "qtc_ms"),
        ({"hepatic_impairment": "child-pugh b"}, "hepatic_impairment"),
        ({"alt_u_l": -3}, "alt_u_l"),
        ({"sex": "unknown"}, "sex"),
        ({"pregnant": "yes"}, "pregnant"),
        ({"taking": "opioids"}, "taking"),
        ({"weight_basis": "ideal"}, "ideal_weight_kg"),
    ],
)
def test_impossible_facts_are_refused(overrides, field) -> None:
    with pytest.raises(ImplausibleValue) as err:
        PatientFacts(**{**BASE, **overrides})
    assert err.value.field == field


def test_unknown_substance_is_refused() -> None:
    with pytest.raises(UnknownSubstance) as err:
        PatientFacts(taking={"heroin"})
    assert err.value.field == "taking"


def test_substance_classes_are_closed_upward() -> None:
    assert PatientFacts(taking={"buprenorphine"}).taking == {"buprenorphine", "opioids"}
