"""Kidney function estimates against the worked values in the fact sheet (section F)."""

from __future__ import annotations

import math

import pytest

from tandem.medications.errors import MedicationInputError
from tandem.medications.renal import (
    RenalInputError,
    assess,
    ckd_epi_2021,
    cockcroft_gault,
    creatinine_umol_l_to_mg_dl,
    kdigo_category,
)


@pytest.mark.parametrize(
    ("age", "sex", "weight", "scr", "expected"),
    [
        (70, "male", 60, 3.0, 19.4),  # F1 worked value
        (65, "male", 70, 1.4, 52.1),  # F1 worked value
        (45, "female", 60, 0.9, 74.8),  # F1 worked value (× 0.85)
    ],
)
def test_cockcroft_gault_worked_values(age, sex, weight, scr, expected) -> None:
    result = cockcroft_gault(age=age, sex=sex, weight_kg=weight, creatinine_mg_dl=scr)
    assert result.ml_min == expected
    assert result.weight_basis == "actual"
    assert result.weight_used_kg == weight
    assert result.formula == "Cockcroft-Gault"


def test_cockcroft_gault_unrounded_value_is_kept() -> None:
    result = cockcroft_gault(age=70, sex="male", weight_kg=60, creatinine_mg_dl=3.0)
    assert math.isclose(result.raw_ml_min, 4200 / 216)


@pytest.mark.parametrize(
    ("age", "scr", "expected"),
    [
        (50, 1.0, 68.6),  # F2 worked value
        (55, 0.9, 76.0),  # F2 worked value "~76"
    ],
)
def test_ckd_epi_2021_worked_values_women(age, scr, expected) -> None:
    result = ckd_epi_2021(age=age, sex="female", creatinine_mg_dl=scr)
    assert result.ml_min_1_73m2 == pytest.approx(expected, abs=0.5 if expected == 76.0 else 0.05)
    assert result.formula == "CKD-EPI 2021"


def test_ckd_epi_2021_male_branch_by_hand() -> None:
    # Man 60 y, Scr 1.2: 142 × (1.2/0.9)^-1.2 × 0.9938^60 (κ 0.9; Scr/κ > 1 so α drops out).
    expected = 142 * (1.2 / 0.9) ** -1.2 * 0.9938**60
    result = ckd_epi_2021(age=60, sex="male", creatinine_mg_dl=1.2)
    assert result.raw == pytest.approx(expected)
    # Below κ the α exponent applies: Scr 0.7 in a man.
    low = ckd_epi_2021(age=40, sex="male", creatinine_mg_dl=0.7)
    assert low.raw == pytest.approx(142 * (0.7 / 0.9) ** -0.302 * 0.9938**40)


def test_umol_conversion_divides_by_88_4() -> None:
    assert creatinine_umol_l_to_mg_dl(265.2) == pytest.approx(3.0)
    assert creatinine_umol_l_to_mg_dl(88.4) == pytest.approx(1.0)


def test_weight_basis_is_explicit_and_recorded() -> None:
    ideal = cockcroft_gault(
        age=65,
        sex="male",
        weight_kg=100,
        creatinine_mg_dl=1.4,
        weight_basis="ideal",
        ideal_weight_kg=70,
    )
    assert ideal.weight_basis == "ideal"
    assert ideal.weight_used_kg == 70
    assert ideal.ml_min == 52.1
    adjusted = cockcroft_gault(
        age=65,
        sex="male",
        weight_kg=100,
        creatinine_mg_dl=1.4,
        weight_basis="adjusted",
        ideal_weight_kg=70,
    )
    # adjusted = IBW + 0.4 × (actual − IBW) = 70 + 12 = 82 kg
    assert adjusted.weight_used_kg == 82
    assert adjusted.ml_min == round(75 * 82 / (72 * 1.4), 1)


def test_ideal_weight_basis_needs_ideal_weight() -> None:
    with pytest.raises(RenalInputError) as err:
        cockcroft_gault(
            age=65, sex="male", weight_kg=100, creatinine_mg_dl=1.4, weight_basis="ideal"
        )
    assert err.value.field == "ideal_weight_kg"


@pytest.mark.parametrize(
    ("egfr", "category"),
    [
        (120, "G1"),
        (90, "G1"),
        (89.9, "G2"),
        (60, "G2"),
        (59.9, "G3a"),
        (45, "G3a"),
        (44.9, "G3b"),
        (30, "G3b"),
        (29.9, "G4"),
        (15, "G4"),
        (14.9, "G5"),
        (0, "G5"),
    ],
)
def test_kdigo_category_edges(egfr, category) -> None:
    assert kdigo_category(egfr) == category


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"creatinine_mg_dl": 0}, "creatinine_mg_dl"),
        ({"creatinine_mg_dl": -1.0}, "creatinine_mg_dl"),
        ({"creatinine_mg_dl": float("nan")}, "creatinine_mg_dl"),
        ({"weight_kg": 0}, "weight_kg"),
        ({"weight_kg": -70}, "weight_kg"),
        ({"age": -1}, "age"),
        ({"age": 140}, "age"),
        ({"sex": "x"}, "sex"),
        ({"weight_basis": "lean"}, "weight_basis"),
    ],
)
def test_cockcroft_gault_refuses_impossible_input(kwargs, field) -> None:
    args = {"age": 50, "sex": "male", "weight_kg": 70, "creatinine_mg_dl": 1.0, **kwargs}
    with pytest.raises(RenalInputError) as err:
        cockcroft_gault(**args)
    assert err.value.field == field
    assert isinstance(err.value, ValueError)
    assert isinstance(err.value, MedicationInputError)
    assert field in str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"age": 17}, "age"),
        ({"age": 17.9}, "age"),
        ({"creatinine_mg_dl": 0}, "creatinine_mg_dl"),
        ({"creatinine_mg_dl": -0.5}, "creatinine_mg_dl"),
        ({"sex": None}, "sex"),
    ],
)
def test_ckd_epi_refuses_impossible_input(kwargs, field) -> None:
    args = {"age": 50, "sex": "female", "creatinine_mg_dl": 1.0, **kwargs}
    with pytest.raises(RenalInputError) as err:
        ckd_epi_2021(**args)
    assert err.value.field == field


def test_ckd_epi_accepts_exactly_18() -> None:
    assert ckd_epi_2021(age=18, sex="female", creatinine_mg_dl=0.7).category == "G1"


def test_assess_computes_what_it_can() -> None:
    both = assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=1.4)
    assert (both.crcl_ml_min, both.egfr_ml_min_1_73m2) == (52.1, both.egfr.ml_min_1_73m2)
    no_weight = assess(age=65, sex="male", weight_kg=None, creatinine_mg_dl=1.4)
    assert no_weight.crcl is None and no_weight.egfr is not None
    no_scr = assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=None)
    assert no_scr.crcl is None and no_scr.egfr is None
    minor = assess(age=16, sex="male", weight_kg=60, creatinine_mg_dl=0.8)
    assert minor.crcl is not None and minor.egfr is None
    with pytest.raises(RenalInputError):
        assess(age=65, sex="male", weight_kg=70, creatinine_mg_dl=0)
