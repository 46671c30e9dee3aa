"""The small declarative language safety rules are written in, and its one evaluator.

A condition is a mapping, read from YAML:

    {always: true}                          always applies (an advisory)
    {pregnant: true}                        a yes/no fact
    {crcl_ml_min: {lt: 30}}                 a number compared (lt, lte, gt, gte, eq)
    {crcl_ml_min: {gt: 30, lte: 50}}        several comparisons: all must hold
    {egfr_category: {in: [G4, G5]}}         a category among several
    {on_any: [opioids, benzodiazepines]}    currently taking any of these classes
    {any: [cond, ...]} {all: [cond, ...]} {not: cond}
    {pregnant: true, seizure_history: true} several keys: all must hold

Evaluation is three-valued. A fact that is not recorded is *unknown*, not false: a rule whose
answer depends on an unknown fact evaluates to unknown and reports which facts are missing,
so the screen can say what to measure. `any` is true as soon as one branch is true, `all` is
false as soon as one branch is false, whatever else is unknown (Kleene logic).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from tandem.medications.errors import UnknownSubstance

__all__ = [
    "FACTS",
    "HEPATIC_GRADES",
    "All",
    "Always",
    "AnyOf",
    "Compare",
    "Condition",
    "ConditionError",
    "FactSpec",
    "InCategory",
    "IsBool",
    "Not",
    "TakingAny",
    "Truth",
    "close_substances",
    "evaluate",
    "parse_condition",
    "substance_vocabulary",
]

FactKind = Literal["number", "bool", "category", "set"]
# Hepatic impairment as the lofexidine label grades it by Child-Pugh score (5-6, 7-9, above 9).
HEPATIC_GRADES = ("none", "mild", "moderate", "severe")


@dataclass(frozen=True)
class FactSpec:
    """A fact rules may ask about: its kind, how to say it, what to do when it is missing.

    `inputs` names, for a computed fact, the recorded facts it is computed from; when the
    computed fact is unknown the screen asks for whichever of those are missing.
    """

    name: str
    kind: FactKind
    label: str
    missing: str
    unit: str = ""
    inputs: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()


def _spec(name: str, kind: FactKind, label: str, missing: str, **kw: Any) -> FactSpec:
    return FactSpec(name=name, kind=kind, label=label, missing=missing, **kw)


FACTS: dict[str, FactSpec] = {
    s.name: s
    for s in (
        _spec("age", "number", "age", "age not recorded", unit="years"),
        _spec("sex", "category", "sex", "sex not recorded", categories=("female", "male")),
        _spec(
            "weight_kg",
            "number",
            "weight",
            "weight not recorded: creatinine clearance cannot be computed",
            unit="kg",
        ),
        _spec(
            "creatinine_mg_dl",
            "number",
            "serum creatinine",
            "creatinine not recorded: kidney function unknown",
            unit="mg/dL",
        ),
        _spec(
            "crcl_ml_min",
            "number",
            "creatinine clearance (Cockcroft-Gault)",
            "creatinine clearance unknown",
            unit="mL/min",
            inputs=("age", "sex", "weight_kg", "creatinine_mg_dl"),
        ),
        _spec(
            "egfr",
            "number",
            "eGFR (CKD-EPI 2021)",
            "eGFR unknown",
            unit="mL/min/1.73 m²",
            inputs=("age", "sex", "creatinine_mg_dl"),
        ),
        _spec(
            "egfr_category",
            "category",
            "KDIGO GFR category",
            "GFR category unknown",
            inputs=("age", "sex", "creatinine_mg_dl"),
            categories=("G1", "G2", "G3a", "G3b", "G4", "G5"),
        ),
        _spec(
            "on_dialysis",
            "bool",
            "on dialysis",
            "dialysis status not recorded: record whether the patient is on dialysis",
        ),
        _spec("pregnant", "bool", "pregnant", "pregnancy status not recorded"),
        _spec("breastfeeding", "bool", "breastfeeding", "breastfeeding status not recorded"),
        _spec(
            "seizure_history",
            "bool",
            "history of seizures or epilepsy",
            "seizure history not recorded",
        ),
        _spec(
            "psychosis_history",
            "bool",
            "psychotic disorder or confusional state",
            "history of psychotic disorder or confusional state not recorded",
        ),
        _spec("stroke_history", "bool", "history of stroke", "stroke history not recorded"),
        _spec(
            "respiratory_disease", "bool", "respiratory disease", "respiratory disease not recorded"
        ),
        _spec("alt_u_l", "number", "ALT", "ALT not recorded: measure liver tests", unit="U/L"),
        _spec("ast_u_l", "number", "AST", "AST not recorded: measure liver tests", unit="U/L"),
        _spec(
            "acute_hepatitis",
            "bool",
            "acute hepatitis",
            "acute hepatitis not assessed: record whether present",
        ),
        _spec(
            "liver_failure",
            "bool",
            "liver failure",
            "liver failure not assessed: record whether present",
        ),
        _spec(
            "severe_heart_disease",
            "bool",
            "severe myocardial disease or coronary occlusion",
            "severe heart disease not assessed: record whether the patient has severe myocardial "
            "disease or coronary occlusion",
        ),
        _spec(
            "hepatic_impairment",
            "category",
            "hepatic impairment (Child-Pugh: mild 5-6, moderate 7-9, severe above 9)",
            "hepatic impairment not graded: record none, or mild, moderate or severe by the "
            "Child-Pugh score",
            categories=HEPATIC_GRADES,
        ),
        _spec("qtc_ms", "number", "QTc", "QTc not recorded: obtain an ECG", unit="ms"),
        _spec(
            "qtc_prolonged",
            "bool",
            "QTc recorded as prolonged",
            "QTc not interpreted: record whether a clinician reads the QTc as prolonged",
        ),
        _spec(
            "opioid_free_days",
            "number",
            "days since last opioid use",
            "days since last opioid use not recorded",
            unit="days",
        ),
        _spec(
            "opioid_withdrawal_signs",
            "bool",
            "objective signs of moderate opioid withdrawal",
            "opioid withdrawal not assessed: record objective signs before induction",
        ),
        _spec(
            "opioid_positive_test",
            "bool",
            "opioid-positive urine or failed naloxone challenge",
            "opioid urine test / naloxone challenge not recorded",
        ),
        _spec("intoxicated", "bool", "intoxicated now", "intoxication not assessed"),
        _spec(
            "hours_since_last_drink",
            "number",
            "hours since last alcoholic drink",
            "time since last drink not recorded",
            unit="h",
        ),
        _spec(
            "taking",
            "set",
            "current medications and substances",
            "current medications/substances not recorded",
        ),
    )
}

_OPS = {"lt": "<", "lte": "≤", "gt": ">", "gte": "≥", "eq": "="}


class ConditionError(ValueError):
    """A rule condition written outside the language above."""


# --------------------------------------------------------------------------- vocabulary


@cache
def substance_vocabulary() -> dict[str, dict[str, Any]]:
    """Class name → {label, is_a}. Read once from data/substances.yaml."""
    text = resources.files("tandem.medications").joinpath("data/substances.yaml").read_text()
    raw: dict[str, dict[str, Any]] = yaml.safe_load(text)["classes"]
    for name, entry in raw.items():
        for parent in entry.get("is_a", []):
            if parent not in raw:
                raise ConditionError(f"substances.yaml: {name} is_a unknown class {parent!r}")
    return raw


def close_substances(names: Iterable[str], field: str = "taking") -> frozenset[str]:
    """Check names against the vocabulary and add the classes they imply (methadone → opioids)."""
    vocab = substance_vocabulary()
    out: set[str] = set()
    todo = [n.strip().lower() for n in names if n.strip()]
    for n in todo:
        if n not in vocab:
            raise UnknownSubstance(
                field, f"unknown medication/substance class {n!r}; known: {', '.join(vocab)}"
            )
    while todo:
        n = todo.pop()
        if n not in out:
            out.add(n)
            todo.extend(vocab[n].get("is_a", []))
    return frozenset(out)


# --------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Truth:
    """True, False, or None (unknown) with the facts whose absence made it unknown."""

    value: bool | None
    missing: frozenset[str] = frozenset()


class Condition:
    def facts(self) -> frozenset[str]:
        raise NotImplementedError

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class Always(Condition):
    def facts(self) -> frozenset[str]:
        return frozenset()

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        return Truth(True)

    def describe(self) -> str:
        return "always"


@dataclass(frozen=True)
class Compare(Condition):
    fact: str
    op: str
    value: float

    def facts(self) -> frozenset[str]:
        return frozenset({self.fact})

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        v = facts.get(self.fact)
        if v is None:
            return Truth(None, frozenset({self.fact}))
        result = {
            "lt": v < self.value,
            "lte": v <= self.value,
            "gt": v > self.value,
            "gte": v >= self.value,
            "eq": v == self.value,
        }[self.op]
        return Truth(bool(result))

    def describe(self) -> str:
        spec = FACTS[self.fact]
        unit = f" {spec.unit}" if spec.unit else ""
        return f"{spec.label} {_OPS[self.op]} {self.value:g}{unit}"


@dataclass(frozen=True)
class IsBool(Condition):
    fact: str
    value: bool

    def facts(self) -> frozenset[str]:
        return frozenset({self.fact})

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        v = facts.get(self.fact)
        if v is None:
            return Truth(None, frozenset({self.fact}))
        return Truth(bool(v) is self.value)

    def describe(self) -> str:
        label = FACTS[self.fact].label
        return label if self.value else f"not {label}"


@dataclass(frozen=True)
class InCategory(Condition):
    fact: str
    values: frozenset[str]

    def facts(self) -> frozenset[str]:
        return frozenset({self.fact})

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        v = facts.get(self.fact)
        if v is None:
            return Truth(None, frozenset({self.fact}))
        return Truth(v in self.values)

    def describe(self) -> str:
        return f"{FACTS[self.fact].label} in {', '.join(sorted(self.values))}"


@dataclass(frozen=True)
class TakingAny(Condition):
    classes: frozenset[str]

    def facts(self) -> frozenset[str]:
        return frozenset({"taking"})

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        taking = facts.get("taking")
        if taking is None:
            return Truth(None, frozenset({"taking"}))
        return Truth(bool(self.classes & frozenset(taking)))

    def matched(self, facts: Mapping[str, Any]) -> frozenset[str]:
        return self.classes & frozenset(facts.get("taking") or ())

    def describe(self) -> str:
        vocab = substance_vocabulary()
        return "taking any of: " + ", ".join(vocab[c]["label"] for c in sorted(self.classes))


@dataclass(frozen=True)
class All(Condition):
    items: tuple[Condition, ...]

    def facts(self) -> frozenset[str]:
        return frozenset().union(*(i.facts() for i in self.items))

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        missing: set[str] = set()
        for item in self.items:
            t = item.evaluate(facts)
            if t.value is False:
                return Truth(False)
            if t.value is None:
                missing |= t.missing
        return Truth(None, frozenset(missing)) if missing else Truth(True)

    def describe(self) -> str:
        return " and ".join(_wrap(i) for i in self.items)


@dataclass(frozen=True)
class AnyOf(Condition):
    items: tuple[Condition, ...]

    def facts(self) -> frozenset[str]:
        return frozenset().union(*(i.facts() for i in self.items))

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        missing: set[str] = set()
        for item in self.items:
            t = item.evaluate(facts)
            if t.value is True:
                return Truth(True)
            if t.value is None:
                missing |= t.missing
        return Truth(None, frozenset(missing)) if missing else Truth(False)

    def describe(self) -> str:
        return " or ".join(_wrap(i) for i in self.items)


@dataclass(frozen=True)
class Not(Condition):
    item: Condition

    def facts(self) -> frozenset[str]:
        return self.item.facts()

    def evaluate(self, facts: Mapping[str, Any]) -> Truth:
        t = self.item.evaluate(facts)
        return t if t.value is None else Truth(not t.value)

    def describe(self) -> str:
        return f"not ({self.item.describe()})"


def _wrap(c: Condition) -> str:
    text = c.describe()
    return f"({text})" if isinstance(c, All | AnyOf) else text


def evaluate(condition: Condition, facts: Mapping[str, Any]) -> Truth:
    return condition.evaluate(facts)


# --------------------------------------------------------------------------- parsing


def parse_condition(raw: Any, where: str = "when") -> Condition:
    """Build a condition tree from its mapping form; raise `ConditionError` on anything else."""
    if isinstance(raw, Condition):
        return raw
    if not isinstance(raw, Mapping) or not raw:
        raise ConditionError(f"{where}: a condition is a non-empty mapping, got {raw!r}")
    parts = [_parse_key(str(k), v, f"{where}.{k}") for k, v in raw.items()]
    return parts[0] if len(parts) == 1 else All(tuple(parts))


def _parse_key(key: str, value: Any, where: str) -> Condition:
    if key == "always":
        if value is not True:
            raise ConditionError(f"{where}: 'always' must be true")
        return Always()
    if key in ("all", "any"):
        if not isinstance(value, list) or not value:
            raise ConditionError(f"{where}: '{key}' takes a non-empty list of conditions")
        items = tuple(parse_condition(v, f"{where}[{i}]") for i, v in enumerate(value))
        return All(items) if key == "all" else AnyOf(items)
    if key == "not":
        return Not(parse_condition(value, where))
    if key == "on_any":
        if not isinstance(value, list) or not value:
            raise ConditionError(f"{where}: 'on_any' takes a non-empty list of classes")
        vocab = substance_vocabulary()
        unknown = [v for v in value if v not in vocab]
        if unknown:
            raise ConditionError(f"{where}: unknown substance classes {unknown}")
        return TakingAny(frozenset(value))
    spec = FACTS.get(key)
    if spec is None:
        raise ConditionError(f"{where}: unknown fact {key!r}; known: {', '.join(FACTS)}")
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise ConditionError(f"{where}: {key} is yes/no; write {key}: true or false")
        return IsBool(key, value)
    if spec.kind == "number":
        if not isinstance(value, Mapping) or not value:
            raise ConditionError(f"{where}: {key} needs comparisons such as {{lt: 30}}")
        comps: list[Condition] = []
        for op, bound in value.items():
            if op not in _OPS:
                raise ConditionError(f"{where}: unknown comparison {op!r}; use {list(_OPS)}")
            if isinstance(bound, bool) or not isinstance(bound, int | float):
                raise ConditionError(f"{where}.{op}: needs a number, got {bound!r}")
            comps.append(Compare(key, op, float(bound)))
        return comps[0] if len(comps) == 1 else All(tuple(comps))
    if spec.kind == "category":
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, Mapping) and set(value) == {"in"} and isinstance(value["in"], list):
            values = value["in"]
        else:
            raise ConditionError(f"{where}: {key} takes a category or {{in: [...]}}")
        bad = [v for v in values if v not in spec.categories]
        if bad:
            raise ConditionError(f"{where}: {key} has no categories {bad}")
        return InCategory(key, frozenset(values))
    raise ConditionError(f"{where}: {key} cannot be used directly; use on_any")
