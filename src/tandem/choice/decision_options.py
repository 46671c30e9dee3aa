"""The decision aid's options as data (data/decision_options.yaml), validated on load, and the
pure assembly of the options side by side for one substance and phase.

A medication option names a monograph: how it is taken, its side effects and warnings, and
what this patient's safety screen says come from `tandem.medications` (the monograph and
`safety.screen`), never restated here. Pure: the patient's screening facts are passed in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tandem.errors import InvalidInput
from tandem.evidence import Source
from tandem.medications.monograph import Fact, Monograph, load_monograph, load_sources
from tandem.medications.safety import PatientFacts, ScreeningResult, screen

__all__ = [
    "NO_MEDICATION",
    "UNDECIDED",
    "DecisionAid",
    "Option",
    "OptionView",
    "Passage",
    "choice_labels",
    "decision_aid",
    "load_decision_sources",
    "option_views",
    "options_for",
    "check_situation",
    "label_of",
]

NO_MEDICATION = "no_medication"
UNDECIDED = "undecided"

EvidenceLevel = Literal[
    "recommended", "approved", "trials", "mixed", "limited", "advised_against_alone", "not_rated"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@cache
def load_decision_sources() -> dict[str, Source]:
    """The choice domain's citations, then the medication monographs' (one registry)."""
    text = resources.files("tandem.choice").joinpath("data/decision_sources.yaml").read_text()
    raw = yaml.safe_load(text)
    own = {key: Source.model_validate({"id": key, **entry}) for key, entry in raw.items()}
    clash = set(own) & set(load_sources())
    if clash:
        raise ValueError(f"decision_sources.yaml reuses medication source keys {sorted(clash)}")
    return {**load_sources(), **own}


def _sources(value: Any, info: ValidationInfo) -> Any:
    keys = [value] if isinstance(value, str) else value
    if not isinstance(keys, list):
        return value
    registry = load_decision_sources()
    out = []
    for key in keys:
        if key not in registry:
            raise ValueError(f"unknown source {key!r}")
        out.append(registry[key])
    return tuple(out)


class Passage(_Model):
    """A plain-language statement with its sources."""

    text: str = Field(min_length=10, max_length=700)
    source: tuple[Source, ...] = Field(min_length=1)
    unverified: bool = False
    note: str | None = None

    _resolve = field_validator("source", mode="before")(_sources)

    @model_validator(mode="after")
    def _note(self) -> Passage:
        if self.unverified and not self.note:
            raise ValueError("unverified needs a note saying what is unconfirmed")
        return self


class Evidence(Passage):
    level: EvidenceLevel


class Situation(_Model):
    evidence: Evidence
    safety: Passage | None = None


class Option(_Model):
    id: str
    medication: str | None = None  # a monograph id; None for the medication-free option
    label: str | None = None
    off_label: bool = False
    off_label_use: str | None = None  # an id of the monograph's off_label_uses
    applies: tuple[str, ...] = Field(min_length=1)
    helps_with: Passage
    evidence: Evidence | None = None
    how_taken: Passage | None = None
    side_effects: Passage | None = None
    by_situation: dict[str, Situation] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Option:
        if self.medication is None:
            if self.how_taken is None or self.side_effects is None or self.label is None:
                raise ValueError(f"{self.id}: an option without medication describes itself")
            missing = [s for s in self.applies if s not in self.by_situation]
            if missing:
                raise ValueError(f"{self.id}: no evidence for {missing}")
            return self
        if self.evidence is None:
            raise ValueError(f"{self.id}: a medication option needs its evidence")
        mono = load_monograph(self.medication)
        if self.off_label_use is not None:
            if self.off_label_use not in {u.id for u in mono.off_label_uses}:
                raise ValueError(f"{self.id}: {mono.id} has no off-label use {self.off_label_use}")
        return self

    @property
    def is_off_label(self) -> bool:
        return self.off_label or self.off_label_use is not None


class Labelled(_Model):
    label: str
    text: str = ""


class PlainWords(_Model):
    """A medication for a patient: how it is taken and what to watch for, in plain words."""

    how_taken: Passage
    watch_for: Passage


class DecisionAid(_Model):
    substances: dict[str, Labelled]
    phases: dict[str, Labelled]
    evidence_levels: dict[str, Labelled]
    options: tuple[Option, ...]
    plain_words: dict[str, PlainWords]

    @model_validator(mode="after")
    def _known(self) -> DecisionAid:
        situations = {f"{s}/{p}" for s in self.substances for p in self.phases}
        ids: set[str] = set()
        for option in self.options:
            if option.id in ids or option.id == UNDECIDED:
                raise ValueError(f"duplicate or reserved option id {option.id!r}")
            ids.add(option.id)
            unknown = set(option.applies) - situations
            if unknown:
                raise ValueError(f"{option.id}: unknown situations {sorted(unknown)}")
        if NO_MEDICATION not in ids:
            raise ValueError("the medication-free option must be present")
        unsaid = {o.medication for o in self.options if o.medication} - set(self.plain_words)
        if unsaid:
            raise ValueError(f"plain_words: no patient wording for {sorted(unsaid)}")
        for medication in self.plain_words:
            load_monograph(medication)
        return self


@cache
def decision_aid() -> DecisionAid:
    text = resources.files("tandem.choice").joinpath("data/decision_options.yaml").read_text()
    return DecisionAid.model_validate(yaml.safe_load(text))


def check_situation(substance: str, phase: str) -> tuple[str, str]:
    """The substance and phase, or `InvalidInput` naming the one that is not known."""
    aid = decision_aid()
    if substance not in aid.substances:
        raise InvalidInput("substance", f"choose one of: {', '.join(aid.substances)}")
    if phase not in aid.phases:
        raise InvalidInput("phase", f"choose one of: {', '.join(aid.phases)}")
    return substance, phase


def choice_labels(substance: str, phase: str) -> dict[str, str]:
    """What a patient may choose in this situation: each option, no medication, or not yet."""
    labels: dict[str, str] = {}
    for option in options_for(substance, phase):
        if option.id == NO_MEDICATION:
            continue
        labels[option.id] = _name(option)
    labels[NO_MEDICATION] = "No medication (recovery without medication)"
    labels[UNDECIDED] = "Not decided yet"
    return labels


def label_of(choice: str) -> str:
    if choice == UNDECIDED:
        return "Not decided yet"
    if choice == NO_MEDICATION:
        return "No medication (recovery without medication)"
    for option in decision_aid().options:
        if option.id == choice:
            return _name(option)
    return choice


def options_for(substance: str, phase: str) -> list[Option]:
    """The options of one situation, medication-free recovery last (it is shown beside all)."""
    key = f"{substance}/{phase}"
    found = [o for o in decision_aid().options if key in o.applies]
    return sorted(found, key=lambda o: o.medication is None)


def _name(option: Option) -> str:
    if option.medication is None:
        return option.label or option.id
    return load_monograph(option.medication).name


# --------------------------------------------------------------------------- the view

SafetyLevel = Literal["not_safe", "caution", "clear", "unknown", "none"]


@dataclass(frozen=True)
class OptionView:
    """One column of the side-by-side view."""

    option: Option
    name: str
    monograph: Monograph | None
    helps_with: Passage
    evidence: Evidence
    evidence_label: str
    how_taken: tuple[Fact | Passage, ...]
    route: str | None
    side_effects: tuple[Fact | Passage, ...]
    warnings: tuple[Fact, ...]
    off_label_text: str | None
    screening: ScreeningResult | None
    safety_level: SafetyLevel
    safety_text: str
    situation_safety: Passage | None
    plain: PlainWords | None = None
    off_label_detail: Fact | None = None

    @property
    def safety_staff_text(self) -> str:
        return SAFETY_TEXT_STAFF[self.safety_level]

    @property
    def id(self) -> str:
        return self.option.id

    @property
    def off_label(self) -> bool:
        return self.option.is_off_label

    def sources(self) -> list[Source]:
        seen: dict[str, Source] = {}
        passages: list[Any] = [self.helps_with, self.evidence, *self.how_taken, *self.side_effects]
        if self.plain:
            passages += [self.plain.how_taken, self.plain.watch_for]
        if self.situation_safety:
            passages.append(self.situation_safety)
        for passage in passages:
            for s in passage.source:
                seen.setdefault(s.id or s.citation, s)
        return list(seen.values())


_ROUTES = {"oral": "By mouth"}

SAFETY_TEXT_STAFF: Mapping[str, str] = {
    "not_safe": "Contraindicated for this patient now (see below).",
    "caution": "Cautions apply for this patient (see below).",
    "clear": "No finding from the facts on record.",
    "unknown": "Incomplete: facts the rules need are not recorded.",
    "none": "No medicine: nothing to screen.",
}

SAFETY_TEXT: Mapping[str, str] = {
    "not_safe": "The safety check found a reason this medicine may not be safe for you now. "
    "Ask your prescriber.",
    "caution": "The safety check found something to watch or discuss with your prescriber.",
    "clear": "The safety check found no problem with what is recorded about you.",
    "unknown": "Some of your health facts are not recorded yet, so the safety check is "
    "incomplete. Your team can record them.",
    "none": "No medicine: nothing to screen.",
}


def _safety(result: ScreeningResult | None) -> SafetyLevel:
    if result is None:
        return "none"
    if result.contraindicated:
        return "not_safe"
    if any(f.severity in ("major_caution", "caution") for f in result.findings):
        return "caution"
    if any(f.rule_id.startswith("missing.") for f in result.findings):
        return "unknown"
    return "clear"


def option_views(substance: str, phase: str, facts: PatientFacts) -> list[OptionView]:
    """The options of one situation side by side, each screened against the patient's facts."""
    aid = decision_aid()
    key = f"{substance}/{phase}"
    views = []
    for option in options_for(substance, phase):
        situation = option.by_situation.get(key)
        evidence = situation.evidence if situation else option.evidence
        assert evidence is not None  # validated on load
        level = aid.evidence_levels.get(evidence.level)
        evidence_label = level.label if level else evidence.level
        if option.medication is None:
            assert option.how_taken is not None and option.side_effects is not None
            views.append(
                OptionView(
                    option=option,
                    name=_name(option),
                    monograph=None,
                    helps_with=option.helps_with,
                    evidence=evidence,
                    evidence_label=evidence_label,
                    how_taken=(option.how_taken,),
                    route=None,
                    side_effects=(option.side_effects,),
                    warnings=(),
                    off_label_text=None,
                    screening=None,
                    safety_level="none",
                    safety_text=SAFETY_TEXT["none"],
                    situation_safety=situation.safety if situation else None,
                )
            )
            continue
        mono = load_monograph(option.medication)
        result = screen(mono.id, facts)
        level_of = _safety(result)
        views.append(
            OptionView(
                option=option,
                name=mono.name,
                monograph=mono,
                helps_with=option.helps_with,
                evidence=evidence,
                evidence_label=evidence_label,
                how_taken=mono.dosing.regimen,
                route=_ROUTES.get(mono.dosing.route or "", mono.dosing.route),
                side_effects=mono.adverse_effects,
                warnings=mono.warnings,
                off_label_text=_off_label_text(option, mono),
                screening=result,
                safety_level=level_of,
                safety_text=SAFETY_TEXT[level_of],
                situation_safety=situation.safety if situation else None,
                plain=aid.plain_words[mono.id],
                off_label_detail=_off_label_detail(option, mono),
            )
        )
    return views


def _off_label_text(option: Option, mono: Monograph) -> str | None:
    if not option.is_off_label:
        return None
    return (
        f"Off-label: {mono.name} is not approved in the US for this use. Your prescriber can "
        "explain why it may still be offered."
    )


def _off_label_detail(option: Option, mono: Monograph) -> Fact | None:
    """What the monograph says about this off-label use (for clinicians)."""
    for use in mono.off_label_uses:
        if use.id == option.off_label_use:
            return use.summary
    return None
