"""The condition language and its three-valued evaluator."""

from __future__ import annotations

import pytest

from tandem.medications.rules import (
    All,
    AnyOf,
    ConditionError,
    TakingAny,
    close_substances,
    parse_condition,
)


def ev(raw: dict, **facts):
    t = parse_condition(raw).evaluate(facts)
    return t.value, set(t.missing)


def test_numbers() -> None:
    assert ev({"crcl_ml_min": {"lt": 30}}, crcl_ml_min=29.9) == (True, set())
    assert ev({"crcl_ml_min": {"lt": 30}}, crcl_ml_min=30) == (False, set())
    assert ev({"crcl_ml_min": {"gt": 30, "lte": 50}}, crcl_ml_min=50) == (True, set())
    assert ev({"crcl_ml_min": {"gt": 30, "lte": 50}}, crcl_ml_min=30) == (False, set())
    assert ev({"crcl_ml_min": {"lt": 30}}) == (None, {"crcl_ml_min"})


def test_booleans_zero_is_not_missing() -> None:
    assert ev({"pregnant": True}, pregnant=True) == (True, set())
    assert ev({"pregnant": True}, pregnant=False) == (False, set())
    assert ev({"pregnant": True}) == (None, {"pregnant"})
    assert ev({"opioid_free_days": {"lt": 7}}, opioid_free_days=0) == (True, set())


def test_taking() -> None:
    assert ev({"on_any": ["opioids"]}, taking=frozenset({"opioids"})) == (True, set())
    assert ev({"on_any": ["opioids"]}, taking=frozenset()) == (False, set())
    assert ev({"on_any": ["opioids"]}) == (None, {"taking"})


def test_kleene_any_and_all() -> None:
    anyof = {"any": [{"acute_hepatitis": True}, {"liver_failure": True}]}
    assert ev(anyof, acute_hepatitis=True) == (True, set())
    assert ev(anyof, acute_hepatitis=False) == (None, {"liver_failure"})
    assert ev(anyof, acute_hepatitis=False, liver_failure=False) == (False, set())
    allof = {"all": [{"pregnant": True}, {"seizure_history": True}]}
    assert ev(allof, pregnant=False) == (False, set())
    assert ev(allof, pregnant=True) == (None, {"seizure_history"})
    assert ev({"not": {"pregnant": True}}, pregnant=False) == (True, set())
    assert ev({"not": {"pregnant": True}}) == (None, {"pregnant"})


def test_several_keys_mean_all() -> None:
    cond = parse_condition({"pregnant": True, "on_any": ["alcohol"]})
    assert isinstance(cond, All)
    assert cond.facts() == {"pregnant", "taking"}


def test_categories() -> None:
    assert ev({"egfr_category": {"in": ["G4", "G5"]}}, egfr_category="G4") == (True, set())
    assert ev({"egfr_category": "G1"}, egfr_category="G2") == (False, set())


def test_describe_reads_as_words() -> None:
    cond = parse_condition({"any": [{"egfr": {"lt": 30}}, {"on_dialysis": True}]})
    assert isinstance(cond, AnyOf)
    assert cond.describe() == "eGFR (CKD-EPI 2021) < 30 mL/min/1.73 m² or on dialysis"


@pytest.mark.parametrize(
    "raw",
    [
        {},
        [],
        {"always": False},
        {"kidney": {"lt": 30}},
        {"crcl_ml_min": 30},
        {"crcl_ml_min": {"below": 30}},
        {"crcl_ml_min": {"lt": "thirty"}},
        {"pregnant": "yes"},
        {"on_any": []},
        {"on_any": ["heroin"]},
        {"any": []},
        {"egfr_category": "G6"},
        {"taking": ["opioids"]},
    ],
)
def test_bad_conditions_are_refused(raw) -> None:
    with pytest.raises(ConditionError):
        parse_condition(raw)


def test_close_substances() -> None:
    assert close_substances(["methadone"]) == {"methadone", "opioids"}
    assert close_substances([]) == frozenset()
    assert TakingAny(frozenset({"opioids"})).matched({"taking": {"opioids", "alcohol"}}) == {
        "opioids"
    }
