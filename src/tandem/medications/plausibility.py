"""Plausible ranges for typed measurements (data/plausibility.yaml), validated on load.

Plausibility bounds, not clinical thresholds: they catch a creatinine in µmol/L typed into a
mg/dL field, or a weight of 5,000 kg, before a formula turns it into a clearance that hides
every renal warning. Pure: no I/O beyond reading the package's data file once.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, model_validator

from tandem.medications.errors import ImplausibleValue
from tandem.medications.renal import UMOL_PER_MG_DL

__all__ = [
    "LB_TO_KG",
    "Bound",
    "check_measurement",
    "creatinine_to_mg_dl",
    "plausible_ranges",
    "weight_to_kg",
]

# The international avoirdupois pound, exact by definition.
LB_TO_KG = 0.45359237


class Bound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    unit: str
    min: float
    max: float
    hint: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> Bound:
        if not self.min < self.max:
            raise ValueError(f"{self.label}: min must be below max")
        return self

    def describe(self) -> str:
        return f"{self.min:g}-{self.max:g} {self.unit}"


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["plausibility_bound"]
    note: str
    measurements: dict[str, Bound]


@cache
def _file() -> _File:
    text = resources.files("tandem.medications").joinpath("data/plausibility.yaml")
    return _File.model_validate(yaml.safe_load(text.read_text("utf-8")))


def plausible_ranges() -> dict[str, Bound]:
    return dict(_file().measurements)


def _number(field: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ImplausibleValue(field, f"must be a number, got {value!r}")
    if value <= 0:
        raise ImplausibleValue(field, f"must be more than zero, got {value:g}")


def check_measurement(field: str, value: float, name: str | None = None) -> float:
    """`value` when it is a finite number within the plausible range for `name` (default:
    `field`), else `ImplausibleValue` naming `field` and the range."""
    bound = _file().measurements[name or field]
    _number(field, value)
    if not bound.min <= value <= bound.max:
        raise ImplausibleValue(
            field,
            f"{value:g} {bound.unit} is outside the plausible range for {bound.label}, "
            f"{bound.describe()} ({_file().note.rstrip('.').lower()})"
            + (f"; {bound.hint}" if bound.hint else ""),
        )
    return float(value)


def creatinine_to_mg_dl(field: str, value: float, unit: str) -> float:
    """Serum creatinine in mg/dL from a value in `unit` ("mg_dl" or "umol_l"), checked
    against the plausible range in the unit it was typed in."""
    if unit == "mg_dl":
        return check_measurement(field, value, "creatinine_mg_dl")
    if unit == "umol_l":
        bound = _file().measurements["creatinine_mg_dl"]
        _number(field, value)
        low, high = bound.min * UMOL_PER_MG_DL, bound.max * UMOL_PER_MG_DL
        if not low <= value <= high:
            raise ImplausibleValue(
                field,
                f"{value:g} µmol/L is outside the plausible range for {bound.label}, "
                f"{low:g}-{high:g} µmol/L ({_file().note.rstrip('.').lower()}); "
                "a value in mg/dL (for example 1.0) belongs in the mg/dL unit",
            )
        return value / UMOL_PER_MG_DL
    raise ImplausibleValue(field, "the unit must be mg/dL or µmol/L")


def weight_to_kg(field: str, value: float, unit: str) -> float:
    """Body weight in kg from a value in `unit` ("kg" or "lb"), checked in kg."""
    if unit == "lb":
        _number(field, value)
        bound = _file().measurements["weight_kg"]
        kg = value * LB_TO_KG
        if not bound.min <= kg <= bound.max:
            raise ImplausibleValue(
                field,
                f"{value:g} lb ({kg:.0f} kg) is outside the plausible range for weight, "
                f"{bound.describe()} ({_file().note.rstrip('.').lower()})",
            )
        return kg
    if unit == "kg":
        return check_measurement(field, value, "weight_kg")
    raise ImplausibleValue(field, "the unit must be kg or lb")
