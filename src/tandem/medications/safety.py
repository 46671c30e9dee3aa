"""Safety screening: which of a medication's rules apply to this patient, and what is unknown.

`screen(medication_id, facts)` computes kidney function from the facts, evaluates every rule of
the monograph with the one generic evaluator in `tandem.medications.rules`, and returns every
finding that applies. A rule that cannot be decided because a fact is not recorded yields an
'info' finding naming what to measure or record, e.g. "creatinine not recorded: kidney
function unknown". No rule is written in Python; there are no per-drug branches here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tandem.medications.errors import ImplausibleValue
from tandem.medications.monograph import SEVERITY_RANK, Severity, Source, load_monograph
from tandem.medications.renal import (
    CrclResult,
    EgfrResult,
    RenalResult,
    Sex,
    WeightBasis,
    assess,
)
from tandem.medications.rules import FACTS, HEPATIC_GRADES, close_substances

__all__ = ["Finding", "PatientFacts", "ScreeningResult", "screen"]

_NUMBER_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    # field: (lowest allowed, highest allowed or None, lowest itself allowed?)
    "age": (0, 140, True),
    "weight_kg": (0, None, False),
    "ideal_weight_kg": (0, None, False),
    "creatinine_mg_dl": (0, None, False),
    "alt_u_l": (0, None, True),
    "ast_u_l": (0, None, True),
    "qtc_ms": (0, None, False),
    "opioid_free_days": (0, None, True),
    "hours_since_last_drink": (0, None, True),
}


@dataclass(frozen=True)
class PatientFacts:
    """What is known about the patient. `None` means not recorded — never "no".

    `taking` is the set of current medication/substance classes (see data/substances.yaml:
    alcohol, opioids, opioid_analgesics, methadone, buprenorphine, benzodiazepines,
    cns_depressants, ...). An empty set means "recorded: none"; None means "not recorded".
    Classes are closed upward on construction (methadone → opioids).
    """

    age: float | None = None
    sex: Sex | None = None
    weight_kg: float | None = None
    creatinine_mg_dl: float | None = None
    weight_basis: WeightBasis = "actual"
    ideal_weight_kg: float | None = None
    on_dialysis: bool | None = None
    pregnant: bool | None = None
    breastfeeding: bool | None = None
    seizure_history: bool | None = None
    psychosis_history: bool | None = None
    stroke_history: bool | None = None
    respiratory_disease: bool | None = None
    alt_u_l: float | None = None
    ast_u_l: float | None = None
    acute_hepatitis: bool | None = None
    liver_failure: bool | None = None
    severe_heart_disease: bool | None = None
    hepatic_impairment: str | None = None
    qtc_ms: float | None = None
    qtc_prolonged: bool | None = None
    taking: frozenset[str] | None = None
    opioid_free_days: float | None = None
    opioid_withdrawal_signs: bool | None = None
    opioid_positive_test: bool | None = None
    intoxicated: bool | None = None
    hours_since_last_drink: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if f.name in _NUMBER_BOUNDS:
                _check_number(f.name, value)
            elif f.name == "sex":
                if value not in ("female", "male"):
                    raise ImplausibleValue("sex", f"must be 'female' or 'male', got {value!r}")
            elif f.name == "hepatic_impairment":
                if value not in HEPATIC_GRADES:
                    raise ImplausibleValue(
                        "hepatic_impairment", f"must be one of {', '.join(HEPATIC_GRADES)}"
                    )
            elif f.name == "weight_basis":
                if value not in ("actual", "ideal", "adjusted"):
                    raise ImplausibleValue(
                        "weight_basis", f"must be actual, ideal or adjusted, got {value!r}"
                    )
            elif f.name == "taking":
                if isinstance(value, str):
                    raise ImplausibleValue("taking", "must be a set of classes, not a string")
                object.__setattr__(self, "taking", close_substances(value, "taking"))
            elif not isinstance(value, bool):
                raise ImplausibleValue(f.name, f"must be true, false or unknown, got {value!r}")
        if self.weight_basis != "actual" and self.ideal_weight_kg is None:
            raise ImplausibleValue(
                "ideal_weight_kg", f"is needed for the {self.weight_basis} weight basis"
            )

    def rule_values(self) -> dict[str, Any]:
        """The facts as the rules read them. `sex` here is the sex the kidney equations use;
        when it is male and pregnancy/breastfeeding are not recorded, they are read as no."""
        values: dict[str, Any] = {
            name: getattr(self, name) for name in FACTS if hasattr(self, name)
        }
        if self.sex == "male":
            for name in ("pregnant", "breastfeeding"):
                if values[name] is None:
                    values[name] = False
        return values

    def renal(self) -> RenalResult:
        return assess(
            age=self.age,
            sex=self.sex,
            weight_kg=self.weight_kg,
            creatinine_mg_dl=self.creatinine_mg_dl,
            weight_basis=self.weight_basis,
            ideal_weight_kg=self.ideal_weight_kg,
            on_dialysis=self.on_dialysis,
        )


def _check_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ImplausibleValue(name, f"must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ImplausibleValue(name, f"must be a finite number, got {value!r}")
    low, high, low_ok = _NUMBER_BOUNDS[name]
    if value < low or (value == low and not low_ok):
        raise ImplausibleValue(
            name, f"must be {'at least' if low_ok else 'more than'} {low:g}, got {value:g}"
        )
    if high is not None and value >= high:
        raise ImplausibleValue(name, f"must be below {high:g}, got {value:g}")


@dataclass(frozen=True)
class Finding:
    """One thing the screen found. `source` is empty only for 'not recorded' findings,
    which instead list the rules (`needed_by`) that could not be decided."""

    rule_id: str
    severity: Severity
    reason: str
    source: tuple[Source, ...] = ()
    unverified: bool = False
    note: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    needed_by: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "reason": self.reason,
            "source": [_source_dict(s) for s in self.source],
            "unverified": self.unverified,
            "note": self.note,
            "evidence": {k: _jsonable(v) for k, v in self.evidence.items()},
            "needed_by": list(self.needed_by),
        }


def _source_dict(s: Source) -> dict[str, Any]:
    return s.model_dump(exclude_none=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, frozenset | set):
        return sorted(v)
    return v


@dataclass(frozen=True)
class ScreeningResult:
    medication_id: str
    medication_name: str
    crcl: CrclResult | None
    egfr: EgfrResult | None
    findings: tuple[Finding, ...]

    @property
    def crcl_ml_min(self) -> float | None:
        return None if self.crcl is None else self.crcl.ml_min

    @property
    def egfr_value(self) -> float | None:
        return None if self.egfr is None else self.egfr.ml_min_1_73m2

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(f.rule_id for f in self.findings)

    @property
    def worst(self) -> Severity | None:
        return self.findings[0].severity if self.findings else None

    @property
    def contraindicated(self) -> bool:
        return any(f.severity == "contraindicated" for f in self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "medication_id": self.medication_id,
            "crcl_ml_min": self.crcl_ml_min,
            "crcl_weight_basis": None if self.crcl is None else self.crcl.weight_basis,
            "egfr": self.egfr_value,
            "egfr_category": None if self.egfr is None else self.egfr.category,
            "findings": [f.to_dict() for f in self.findings],
        }


def _fact_values(facts: PatientFacts, renal: RenalResult) -> dict[str, Any]:
    values = facts.rule_values()
    values.update(renal.as_facts())
    return values


def _missing_inputs(name: str, values: Mapping[str, Any]) -> tuple[str, ...]:
    """For a computed fact that is unknown, the recorded inputs that are missing."""
    spec = FACTS[name]
    if not spec.inputs:
        return (name,)
    missing = tuple(i for i in spec.inputs if values.get(i) is None)
    return missing or (name,)


def _why_unknown(name: str, values: Mapping[str, Any]) -> str:
    spec = FACTS[name]
    age = values.get("age")
    if name in ("egfr", "egfr_category") and age is not None and age < 18:
        return "eGFR not computed: CKD-EPI 2021 is for adults aged 18 and over"
    return spec.missing


def screen(medication_id: str, facts: PatientFacts) -> ScreeningResult:
    """Every finding that applies to this patient for this medication, most severe first."""
    mono = load_monograph(medication_id)
    renal = facts.renal()
    values = _fact_values(facts, renal)

    found: list[tuple[int, int, Finding]] = []
    needed: dict[str, list[str]] = {}
    for order, rule in enumerate(mono.rules):
        truth = rule.when.evaluate(values)
        if truth.value is False:
            continue
        unknown = set(truth.missing) | {f for f in rule.requires if values.get(f) is None}
        for name in sorted(unknown):
            for missing in _missing_inputs(name, values):
                needed.setdefault(missing, []).append(rule.id)
        if truth.value is True:
            evidence = {
                f: values.get(f) for f in sorted(rule.when.facts()) if values.get(f) is not None
            }
            finding = Finding(
                rule_id=rule.id,
                severity=rule.severity,
                reason=rule.reason,
                source=rule.source,
                unverified=rule.unverified or any(s.unverified for s in rule.source),
                note=rule.note,
                evidence=evidence,
            )
            found.append((SEVERITY_RANK[rule.severity], order, finding))

    base = len(mono.rules)
    for i, (name, rule_ids) in enumerate(sorted(needed.items(), key=lambda kv: _fact_order(kv[0]))):
        finding = Finding(
            rule_id=f"missing.{name}",
            severity="info",
            reason=_why_unknown(name, values),
            needed_by=tuple(dict.fromkeys(rule_ids)),
        )
        found.append((SEVERITY_RANK["info"], base + i, finding))

    found.sort(key=lambda t: (t[0], t[1]))
    return ScreeningResult(
        medication_id=mono.id,
        medication_name=mono.name,
        crcl=renal.crcl,
        egfr=renal.egfr,
        findings=tuple(f for _, _, f in found),
    )


def _fact_order(name: str) -> int:
    order: Iterable[str] = FACTS
    for i, n in enumerate(order):
        if n == name:
            return i
    return len(FACTS)
