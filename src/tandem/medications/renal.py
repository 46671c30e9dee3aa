"""Kidney function estimates: Cockcroft-Gault creatinine clearance and CKD-EPI 2021 eGFR.

Pure arithmetic over typed inputs. Which body weight goes into Cockcroft-Gault varies by
institution, so it is an explicit argument and is recorded in the result; the ideal body
weight, when used, is supplied by the caller (Tandem does not pick an IBW formula).

Values are reported to one decimal, as clinicians read them, and rules compare against the
reported value so that a displayed "30.0" never falls in the "< 30" band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from tandem.medications.errors import ImplausibleValue

__all__ = [
    "CKD_EPI_2021_SOURCE",
    "COCKCROFT_GAULT_SOURCE",
    "KDIGO_SOURCE",
    "UMOL_PER_MG_DL",
    "CrclResult",
    "EgfrResult",
    "RenalInputError",
    "RenalResult",
    "Sex",
    "WeightBasis",
    "assess",
    "ckd_epi_2021",
    "cockcroft_gault",
    "creatinine_umol_l_to_mg_dl",
    "kdigo_category",
]

Sex = Literal["female", "male"]
WeightBasis = Literal["actual", "ideal", "adjusted"]

UMOL_PER_MG_DL = 88.4

COCKCROFT_GAULT_SOURCE = (
    "Cockcroft DW, Gault MH. Nephron 1976;16(1):31-41 (as commonly cited); formula as given "
    "by Taber's 'Cockcroft-Gault formula' (tabers.com) and medicalalgorithms.com"
)
CKD_EPI_2021_SOURCE = (
    "National Kidney Foundation, 'CKD-EPI Creatinine Equation (2021)' (kidney.org); "
    "Inker LA et al. N Engl J Med 2021;385:1737-1749"
)
KDIGO_SOURCE = "KDIGO GFR categories G1-G5 (medikquantis.me summary of KDIGO 2024) [tertiary]"

# Fraction of actual weight above ideal that the adjusted weight keeps.
_ADJUSTED_WEIGHT_FACTOR = 0.4


class RenalInputError(ImplausibleValue):
    """An input no kidney-function estimate can be computed from. `field` names it."""


def _finite(value: float | None, field: str) -> float:
    if value is None:
        raise RenalInputError(field, "is required")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RenalInputError(field, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise RenalInputError(field, f"must be a finite number, got {value!r}")
    return float(value)


def _positive(value: float | None, field: str) -> float:
    v = _finite(value, field)
    if v <= 0:
        raise RenalInputError(field, f"must be more than zero, got {v:g}")
    return v


def _sex(value: str | None) -> Sex:
    if value == "female":
        return "female"
    if value == "male":
        return "male"
    raise RenalInputError("sex", f"must be 'female' or 'male', got {value!r}")


def _age(value: float | None, *, minimum: float) -> float:
    v = _finite(value, "age")
    if v < minimum:
        raise RenalInputError("age", f"must be at least {minimum:g} years, got {v:g}")
    return v


def creatinine_umol_l_to_mg_dl(umol_l: float) -> float:
    """Serum creatinine µmol/L → mg/dL (÷ 88.4)."""
    return _positive(umol_l, "creatinine_umol_l") / UMOL_PER_MG_DL


@dataclass(frozen=True)
class CrclResult:
    """Cockcroft-Gault creatinine clearance, mL/min (not normalised to body surface area)."""

    ml_min: float
    raw_ml_min: float
    weight_basis: WeightBasis
    weight_used_kg: float
    creatinine_mg_dl: float
    formula: str = "Cockcroft-Gault"
    source: str = COCKCROFT_GAULT_SOURCE


@dataclass(frozen=True)
class EgfrResult:
    """CKD-EPI 2021 (race-free, creatinine) eGFR, mL/min/1.73 m², with its KDIGO category."""

    ml_min_1_73m2: float
    raw: float
    category: str
    formula: str = "CKD-EPI 2021"
    source: str = CKD_EPI_2021_SOURCE


@dataclass(frozen=True)
class RenalResult:
    """What a dose plan needs to know about the kidneys. Any part may be unknown (None)."""

    crcl: CrclResult | None = None
    egfr: EgfrResult | None = None
    on_dialysis: bool | None = None

    @property
    def crcl_ml_min(self) -> float | None:
        return None if self.crcl is None else self.crcl.ml_min

    @property
    def egfr_ml_min_1_73m2(self) -> float | None:
        return None if self.egfr is None else self.egfr.ml_min_1_73m2

    def as_facts(self) -> dict[str, object]:
        """The rule facts this result can answer (see `tandem.medications.rules.FACTS`)."""
        return {
            "crcl_ml_min": self.crcl_ml_min,
            "egfr": self.egfr_ml_min_1_73m2,
            "egfr_category": None if self.egfr is None else self.egfr.category,
            "on_dialysis": self.on_dialysis,
        }


def cockcroft_gault(
    *,
    age: float,
    sex: Sex,
    weight_kg: float,
    creatinine_mg_dl: float,
    weight_basis: WeightBasis = "actual",
    ideal_weight_kg: float | None = None,
) -> CrclResult:
    """CrCl = (140 − age) × weight / (72 × Scr), × 0.85 for women.

    `weight_basis` chooses the weight: `actual` (weight_kg), `ideal` (ideal_weight_kg) or
    `adjusted` (IBW + 0.4 × (actual − IBW)). The choice is recorded in the result.
    """
    age_v = _age(age, minimum=0)
    if age_v >= 140:
        raise RenalInputError("age", f"Cockcroft-Gault needs age below 140 years, got {age_v:g}")
    sex_v = _sex(sex)
    actual = _positive(weight_kg, "weight_kg")
    scr = _positive(creatinine_mg_dl, "creatinine_mg_dl")
    if weight_basis == "actual":
        weight = actual
    elif weight_basis in ("ideal", "adjusted"):
        ibw = _positive(ideal_weight_kg, "ideal_weight_kg")
        weight = ibw if weight_basis == "ideal" else ibw + _ADJUSTED_WEIGHT_FACTOR * (actual - ibw)
        if weight <= 0:
            raise RenalInputError("ideal_weight_kg", "gives an adjusted weight of zero or less")
    else:
        raise RenalInputError(
            "weight_basis", f"must be actual, ideal or adjusted, got {weight_basis!r}"
        )
    raw = (140 - age_v) * weight / (72 * scr)
    if sex_v == "female":
        raw *= 0.85
    return CrclResult(
        ml_min=round(raw, 1),
        raw_ml_min=raw,
        weight_basis=weight_basis,
        weight_used_kg=round(weight, 2),
        creatinine_mg_dl=scr,
    )


def kdigo_category(egfr: float) -> str:
    """KDIGO GFR category: G1 ≥ 90, G2 60–89, G3a 45–59, G3b 30–44, G4 15–29, G5 < 15."""
    v = _finite(egfr, "egfr")
    if v < 0:
        raise RenalInputError("egfr", f"must be zero or more, got {v:g}")
    for floor, category in ((90, "G1"), (60, "G2"), (45, "G3a"), (30, "G3b"), (15, "G4")):
        if v >= floor:
            return category
    return "G5"


def ckd_epi_2021(*, age: float, sex: Sex, creatinine_mg_dl: float) -> EgfrResult:
    """eGFR = 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^−1.200 × 0.9938^age × 1.012 [female].

    κ = 0.7 (female) / 0.9 (male); α = −0.241 (female) / −0.302 (male). Adults (≥ 18) only.
    """
    age_v = _age(age, minimum=18)
    sex_v = _sex(sex)
    scr = _positive(creatinine_mg_dl, "creatinine_mg_dl")
    kappa, alpha = (0.7, -0.241) if sex_v == "female" else (0.9, -0.302)
    ratio = scr / kappa
    raw = 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age_v
    if sex_v == "female":
        raw *= 1.012
    value = round(raw, 1)
    return EgfrResult(ml_min_1_73m2=value, raw=raw, category=kdigo_category(value))


def assess(
    *,
    age: float | None,
    sex: Sex | None,
    weight_kg: float | None,
    creatinine_mg_dl: float | None,
    weight_basis: WeightBasis = "actual",
    ideal_weight_kg: float | None = None,
    on_dialysis: bool | None = None,
) -> RenalResult:
    """Both estimates from what is known. Missing inputs leave that estimate None;
    impossible inputs raise `RenalInputError`. eGFR is left None under 18 years."""
    crcl = None
    egfr = None
    if creatinine_mg_dl is not None:
        _positive(creatinine_mg_dl, "creatinine_mg_dl")
    if weight_kg is not None:
        _positive(weight_kg, "weight_kg")
    if age is not None and sex is not None and creatinine_mg_dl is not None:
        if weight_kg is not None:
            crcl = cockcroft_gault(
                age=age,
                sex=sex,
                weight_kg=weight_kg,
                creatinine_mg_dl=creatinine_mg_dl,
                weight_basis=weight_basis,
                ideal_weight_kg=ideal_weight_kg,
            )
        if _finite(age, "age") >= 18:
            egfr = ckd_epi_2021(age=age, sex=sex, creatinine_mg_dl=creatinine_mg_dl)
    return RenalResult(crcl=crcl, egfr=egfr, on_dialysis=on_dialysis)
