"""Medication monographs held as data (data/<id>.yaml), validated on load.

Every fact carries `source` (one or more keys into data/sources.yaml, resolved on load to
full citations). A fact the sources do not confirm carries `unverified: true` and a `note`
saying what is unconfirmed. Numbers a plan or a rule acts on (maximum daily dose, dose
unit, renal limits) are typed fields, so nothing downstream reads numbers out of prose.
Safety rules live in the monograph too, written in the condition language of
`tandem.medications.rules`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from fractions import Fraction
from functools import cache
from importlib import resources
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from tandem.evidence import Source
from tandem.medications.dose import Dose, parse_dose
from tandem.medications.errors import UnknownMedication
from tandem.medications.rules import FACTS, Condition, parse_condition, substance_vocabulary

__all__ = [
    "RXNORM_SYSTEM",
    "AdherencePolicy",
    "BrandName",
    "Code",
    "Discontinuation",
    "DoseLimit",
    "Dosing",
    "Fact",
    "Interaction",
    "Monograph",
    "OffLabelUse",
    "SafetyRule",
    "Severity",
    "Source",
    "SourcedNumber",
    "Study",
    "TaperGuidance",
    "Titration",
    "all_monographs",
    "load_monograph",
    "load_sources",
    "medication_ids",
]

RXNORM_SYSTEM = "http://www.nlm.nih.gov/research/umls/rxnorm"

Severity = Literal["contraindicated", "major_caution", "caution", "info"]
SEVERITY_RANK: dict[str, int] = {"contraindicated": 0, "major_caution": 1, "caution": 2, "info": 3}

_ID = re.compile(r"^[a-z][a-z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def _resolve_sources(value: Any, info: ValidationInfo) -> Any:
    """`source: key` or `source: [key, ...]` → Source objects from the registry in context."""
    if isinstance(value, str | Source | Mapping):
        value = [value]
    if not isinstance(value, list | tuple):
        return value
    registry: Mapping[str, Source] = (info.context or {}).get("sources") or load_sources()
    out: list[Any] = []
    for item in value:
        if isinstance(item, str):
            if item not in registry:
                raise ValueError(f"unknown source {item!r} (not in data/sources.yaml)")
            out.append(registry[item])
        else:
            out.append(item)
    return out


SourceRefs = Annotated[tuple[Source, ...], BeforeValidator(_resolve_sources), Field(min_length=1)]


class Sourced(_Model):
    """Anything stated as a fact: where it comes from, and whether it is confirmed."""

    source: SourceRefs
    unverified: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _unverified_needs_note(self) -> Sourced:
        if self.unverified and not self.note:
            raise ValueError("unverified: true needs a note saying what is unconfirmed")
        return self


class Fact(Sourced):
    text: str = Field(min_length=3)


class Code(Sourced):
    """A RxNorm code. `code: null` means the sources give none; it must then be unverified."""

    system: str = RXNORM_SYSTEM
    code: str | None
    display: str
    tty: str | None = None

    @model_validator(mode="after")
    def _null_is_unverified(self) -> Code:
        if self.code is None and not self.unverified:
            raise ValueError(f"{self.display}: a missing code must be marked unverified")
        return self


class BrandName(Sourced):
    name: str
    country: str | None = None
    form: str | None = None
    marketer: str | None = None
    status: Literal["current", "former"] = "current"


class Study(Sourced):
    """A trial or review as the sources report it. `n` is the number of participants."""

    label: str
    design: str
    n: PositiveInt | None = None
    result: str
    doi: str | None = None
    pmid: str | None = None


class OffLabelUse(_Model):
    id: str
    condition: str
    summary: Fact | None = None
    studies: tuple[Study, ...] = ()


class SourcedNumber(Sourced):
    """A number with its unit and source. `value: null` = the sources give none (unverified)."""

    value: float | None
    unit: str

    @model_validator(mode="after")
    def _null_is_unverified(self) -> SourcedNumber:
        if self.value is None and not self.unverified:
            raise ValueError("a missing number must be marked unverified")
        if self.value is not None and self.value <= 0:
            raise ValueError(f"must be more than zero, got {self.value}")
        return self


DoseField = Annotated[
    Dose,
    BeforeValidator(lambda v: parse_dose(v, "titration.start") if isinstance(v, str) else v),
    PlainSerializer(str, return_type=str),
]


class Titration(Sourced):
    """The labelled way up: start dose, step per dose and how often."""

    start: DoseField
    step_mg: PositiveFloat
    every_days: PositiveInt
    text: str


class TaperGuidance(Sourced):
    """How long a taper the sources describe, in days (`min_days`–`max_days`)."""

    min_days: PositiveInt | None = None
    max_days: PositiveInt | None = None
    text: str


class Dosing(_Model):
    route: str | None = None
    regimen: tuple[Fact, ...] = ()
    max_mg_day: SourcedNumber
    max_mg_per_dose: SourcedNumber | None = None
    dose_unit_mg: SourcedNumber | None = None
    titration: Titration | None = None
    taper: TaperGuidance | None = None


class Discontinuation(Sourced):
    """Whether stopping at once is dangerous. `taper_required` makes a 0-day taper refusable."""

    taper_required: bool
    text: str


class Interaction(Fact):
    substances: tuple[str, ...] = ()

    @field_validator("substances")
    @classmethod
    def _known(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in v if s not in substance_vocabulary()]
        if unknown:
            raise ValueError(f"unknown substance classes {unknown}")
        return v


def _fraction(value: Any) -> Any:
    if isinstance(value, str) and re.fullmatch(r"\d+/\d+", value.strip()):
        return value.strip()
    raise ValueError(f"reduce_by must be a fraction such as '1/3', got {value!r}")


class DoseLimit(_Model):
    """How a rule bounds a dose plan when it applies.

    `reduce_by` lowers the monograph maximum by that fraction ('1/3' → two thirds remain);
    `max_mg_day` / `max_mg_per_dose` cap directly.
    """

    reduce_by: Annotated[str, BeforeValidator(_fraction)] | None = None
    max_mg_day: PositiveFloat | None = None
    max_mg_per_dose: PositiveFloat | None = None

    @model_validator(mode="after")
    def _something(self) -> DoseLimit:
        if self.reduce_by is None and self.max_mg_day is None and self.max_mg_per_dose is None:
            raise ValueError("a dose_limit needs reduce_by, max_mg_day or max_mg_per_dose")
        if self.reduce_by is not None and not 0 < Fraction(self.reduce_by) < 1:
            raise ValueError("reduce_by must be between 0 and 1")
        return self

    @property
    def remaining_fraction(self) -> Fraction | None:
        return None if self.reduce_by is None else 1 - Fraction(self.reduce_by)


ConditionField = Annotated[
    Condition,
    BeforeValidator(parse_condition),
    PlainSerializer(lambda c: c.describe(), return_type=str),
]


class SafetyRule(Sourced):
    """One check: when `when` holds for a patient, report `reason` at `severity`.

    `requires` lists facts the rule wants recorded even when its condition does not need them
    (e.g. liver tests before naltrexone): missing ones become 'info' findings.
    """

    id: str
    severity: Severity
    when: ConditionField
    requires: tuple[str, ...] = ()
    reason: str = Field(min_length=10)
    dose_limit: DoseLimit | None = None

    @field_validator("requires")
    @classmethod
    def _known_facts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in v if f not in FACTS]
        if unknown:
            raise ValueError(f"requires: unknown facts {unknown}")
        return v


class AdherencePolicy(Sourced):
    """When a run of missed doses should raise an alert, and why it matters."""

    missed_run_threshold: PositiveInt | None
    reason: str

    @model_validator(mode="after")
    def _null_is_unverified(self) -> AdherencePolicy:
        if self.missed_run_threshold is None and not self.unverified:
            raise ValueError("a missing threshold must be marked unverified")
        return self


class Monograph(_Model):
    id: str
    name: str
    rxnorm: tuple[Code, ...] = Field(min_length=1)
    brand_names: tuple[BrandName, ...] = ()
    mechanism: Fact | None = None
    indications: tuple[Fact, ...] = ()
    uses: tuple[Fact, ...] = ()
    off_label_uses: tuple[OffLabelUse, ...] = ()
    dosing: Dosing
    elimination: tuple[Fact, ...] = ()
    half_life: tuple[Fact, ...] = ()
    renal: tuple[Fact, ...] = ()
    hepatic: tuple[Fact, ...] = ()
    discontinuation: Discontinuation | None = None
    overdose: tuple[Fact, ...] = ()
    interactions: tuple[Interaction, ...] = ()
    pregnancy: tuple[Fact, ...] = ()
    lactation: tuple[Fact, ...] = ()
    adverse_effects: tuple[Fact, ...] = ()
    warnings: tuple[Fact, ...] = ()
    regulatory: tuple[Fact, ...] = ()
    rules: tuple[SafetyRule, ...] = ()
    adherence: AdherencePolicy | None = None

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if not _ID.match(v):
            raise ValueError(f"id must be lower_snake_case, got {v!r}")
        return v

    @model_validator(mode="after")
    def _rules_consistent(self) -> Monograph:
        seen: set[str] = set()
        for rule in self.rules:
            if not rule.id.startswith(f"{self.id}."):
                raise ValueError(f"rule {rule.id!r} must start with '{self.id}.'")
            if rule.id in seen:
                raise ValueError(f"duplicate rule id {rule.id!r}")
            seen.add(rule.id)
            if (
                rule.dose_limit
                and rule.dose_limit.reduce_by
                and self.dosing.max_mg_day.value is None
            ):
                raise ValueError(f"{rule.id}: reduce_by needs a monograph max_mg_day")
        return self

    # ------------------------------------------------------------------ reading

    @property
    def ingredient_code(self) -> Code:
        return self.rxnorm[0]

    @property
    def brand_list(self) -> list[str]:
        return [b.name for b in self.brand_names]

    def rule(self, rule_id: str) -> SafetyRule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def sourced_items(self) -> Iterator[tuple[str, Sourced]]:
        """Every sourced fact in the monograph, with a path naming where it sits."""
        yield from _walk(self, self.id)

    def unverified_items(self) -> list[tuple[str, str]]:
        """(path, note) for every fact or source marked unverified."""
        out: list[tuple[str, str]] = []
        for path, item in self.sourced_items():
            if item.unverified:
                out.append((path, item.note or ""))
            for src in item.source:
                if src.unverified:
                    out.append((f"{path} ← source {src.id}", src.note or ""))
        return out


def _walk(node: Any, path: str) -> Iterator[tuple[str, Sourced]]:
    if isinstance(node, Sourced):
        yield path, node
    if isinstance(node, BaseModel):
        for name in type(node).model_fields:
            if name == "source":
                continue
            yield from _walk(getattr(node, name), f"{path}.{name}")
    elif isinstance(node, tuple):
        for i, item in enumerate(node):
            label = next(
                (getattr(item, a) for a in ("id", "name", "label") if getattr(item, a, None)), i
            )
            yield from _walk(item, f"{path}[{label}]")


# --------------------------------------------------------------------------- loading


def _data_text(name: str) -> str:
    return resources.files("tandem.medications").joinpath(f"data/{name}").read_text("utf-8")


@cache
def load_sources() -> dict[str, Source]:
    raw = yaml.safe_load(_data_text("sources.yaml"))
    return {key: Source.model_validate({"id": key, **entry}) for key, entry in raw.items()}


_NOT_MONOGRAPHS = {"sources.yaml", "substances.yaml", "plausibility.yaml"}


@cache
def medication_ids() -> tuple[str, ...]:
    folder = resources.files("tandem.medications").joinpath("data")
    names = [p.name for p in folder.iterdir() if p.name.endswith(".yaml")]
    return tuple(sorted(n.removesuffix(".yaml") for n in names if n not in _NOT_MONOGRAPHS))


def parse_monograph(data: Mapping[str, Any]) -> Monograph:
    """Validate one monograph mapping, resolving its source keys."""
    return Monograph.model_validate(data, context={"sources": load_sources()})


@cache
def load_monograph(medication_id: str) -> Monograph:
    """The validated monograph for an id; `UnknownMedication` if there is none."""
    key = medication_id.strip().lower() if isinstance(medication_id, str) else medication_id
    if key not in medication_ids():
        raise UnknownMedication(str(medication_id), medication_ids())
    data = yaml.safe_load(_data_text(f"{key}.yaml"))
    mono = parse_monograph(data)
    if mono.id != key:
        raise ValueError(f"data/{key}.yaml declares id {mono.id!r}")
    return mono


def all_monographs() -> list[Monograph]:
    return [load_monograph(i) for i in medication_ids()]
