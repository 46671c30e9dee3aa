"""The caseload's risk flags as program data (data/risk_flags.yaml), validated on load, and the
pure reading of what the database found: which flags a patient raises, the sentence that
explains each, and the order of the caseload (most serious first).

Pure: standard library, pydantic and PyYAML. No clock (pass `today`), no database. The numbers
come from the program's data, never from code; a number no source gives is marked `unverified`
and `RiskFlagRules.unverified()` lists them so the page can say so.
"""

from __future__ import annotations

import functools
import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tandem.evidence import Source
from tandem.recovery.substances import substances

DATA = Path(__file__).parent / "data" / "risk_flags.yaml"

Kind = Literal[
    "phq9_item9",
    "use_after_abstinence",
    "positive_screen",
    "craving_rising",
    "missed_sessions",
    "missed_doses",
    "no_check_in",
]

# The names each kind's sentence may use, filled from what the database found.
PLACEHOLDERS: dict[str, frozenset[str]] = {
    "phq9_item9": frozenset({"day", "value", "answer", "window_days"}),
    "use_after_abstinence": frozenset({"day", "run", "substance", "window_days"}),
    "positive_screen": frozenset({"day", "substances", "window_days"}),
    "craving_rising": frozenset({"recent", "before", "rise", "window_days"}),
    "missed_sessions": frozenset({"missed", "booked", "day", "window_days"}),
    "missed_doses": frozenset({"missed", "medications", "window_days"}),
    "no_check_in": frozenset({"days", "last"}),
}
# The PHQ-9 item-9 answers in the instrument's own words (instruments/data/phq9.yaml).
PHQ9_ANSWERS = {
    0: "not at all",
    1: "several days",
    2: "more than half the days",
    3: "nearly every day",
}
SEVERITY_WORDS = {3: "urgent", 2: "high", 1: "watch"}


class RiskFlagsError(ValueError):
    """A risk-flag file that does not validate, with every problem named."""


class FlagRule(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    label: str = Field(min_length=2, max_length=40)
    severity: int = Field(ge=1, le=3)
    window_days: int | None = Field(default=None, ge=1, le=365)
    at_least: float = Field(gt=0, le=365)
    unit: str = Field(min_length=2)
    explain: str = Field(min_length=10, max_length=400)
    source: Source
    enabled: bool = True

    @model_validator(mode="after")
    def _checked(self) -> FlagRule:
        if self.kind == "no_check_in":
            if self.window_days is not None:
                raise ValueError("no_check_in: its threshold is in days; leave window_days out")
        elif self.window_days is None:
            raise ValueError(f"{self.kind}: window_days is required")
        if self.kind == "phq9_item9" and self.at_least > 3:
            raise ValueError("phq9_item9: item 9 is answered 0-3; at_least must be 1, 2 or 3")
        if self.kind == "craving_rising" and self.at_least > 10:
            raise ValueError("craving_rising: ratings are 0-10; a rise above 10 never happens")
        names = {name for _, name, _, _ in string.Formatter().parse(self.explain) if name}
        unknown = names - PLACEHOLDERS[self.kind]
        if unknown:
            allowed = ", ".join(sorted(PLACEHOLDERS[self.kind]))
            raise ValueError(
                f"{self.kind}: explain uses {', '.join(sorted(unknown))}; it may use: {allowed}"
            )
        return self

    @property
    def threshold(self) -> int:
        """Every threshold is a count, a number of days or an answer: a whole number, except
        the rise in average craving (compared as given)."""
        return int(self.at_least)


class RiskFlagRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=2, max_length=80)
    version: str = Field(min_length=1, max_length=40)
    title: str = ""
    flags: tuple[FlagRule, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _once(self) -> RiskFlagRules:
        kinds = [f.kind for f in self.flags]
        repeated = sorted({k for k in kinds if kinds.count(k) > 1})
        if repeated:
            raise ValueError(f"each kind of flag once; repeated: {', '.join(repeated)}")
        return self

    @property
    def content_hash(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def rule(self, kind: str) -> FlagRule | None:
        """The enabled rule of this kind, or None when the program does not use it."""
        return next((f for f in self.flags if f.kind == kind and f.enabled), None)

    def unverified(self) -> list[FlagRule]:
        return [f for f in self.flags if f.enabled and f.source.unverified]


def rules_from_mapping(document: Mapping[str, Any], where: str) -> RiskFlagRules:
    try:
        return RiskFlagRules.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'file'}: {e['msg']}" for e in exc.errors()
        )
        raise RiskFlagsError(f"{where}: {problems}") from None


def load_rules(path: Path | None = None) -> RiskFlagRules:
    """A risk-flag file (the shipped example when `path` is None), validated."""
    path = path or DATA
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RiskFlagsError(f"{path.name}: not YAML: {exc}") from None
    if not isinstance(document, Mapping):
        raise RiskFlagsError(f"{path.name}: expected a mapping at the top")
    return rules_from_mapping(document, path.name)


@functools.cache
def example_rules() -> RiskFlagRules:
    return load_rules()


# --------------------------------------------------------------------------- what was found


@dataclass(frozen=True)
class RaisedFlag:
    kind: str
    label: str
    severity: int
    sentence: str
    unverified: bool
    source: str

    @property
    def severity_word(self) -> str:
        return SEVERITY_WORDS[self.severity]


def _day(value: date | None) -> str:
    return value.strftime("%a %d %b") if value else "never"


def _number(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def substance_label(substance_id: str) -> str:
    return _substance_labels().get(substance_id, substance_id)


@functools.cache
def _substance_labels() -> dict[str, str]:
    return {each.id: each.label.lower() for each in substances()}


def raise_flag(rule: FlagRule, **found: Any) -> RaisedFlag:
    """The flag `rule` raises, its sentence filled with what the database found."""
    values = {"window_days": rule.window_days, **found}
    sentence = " ".join(rule.explain.format(**values).split())
    return RaisedFlag(
        rule.kind,
        rule.label,
        rule.severity,
        sentence,
        rule.source.unverified,
        rule.source.citation,
    )


def phq9_flag(rule: FlagRule, day: date, value: int) -> RaisedFlag | None:
    if value < rule.at_least:
        return None
    answer = PHQ9_ANSWERS.get(value, str(value))
    return raise_flag(rule, day=_day(day), value=value, answer=answer)


def use_flag(rule: FlagRule, day: date, run: int, substance: str) -> RaisedFlag | None:
    if run < rule.at_least:
        return None
    return raise_flag(rule, day=_day(day), run=run, substance=substance_label(substance))


def screen_flag(rule: FlagRule, day: date, found: Sequence[str]) -> RaisedFlag | None:
    if len(found) < rule.at_least:
        return None
    names = ", ".join(sorted({substance_label(s) for s in found}))
    return raise_flag(rule, day=_day(day), substances=names)


def craving_flag(rule: FlagRule, recent: float | None, before: float | None) -> RaisedFlag | None:
    if recent is None or before is None or recent - before < rule.at_least:
        return None
    return raise_flag(
        rule, recent=_number(recent), before=_number(before), rise=_number(recent - before)
    )


def sessions_flag(rule: FlagRule, missed: int, booked: int, day: date | None) -> RaisedFlag | None:
    if missed < rule.at_least:
        return None
    return raise_flag(rule, missed=missed, booked=booked, day=_day(day))


def doses_flag(rule: FlagRule, missed: int, medications: Sequence[str]) -> RaisedFlag | None:
    if missed < rule.at_least:
        return None
    return raise_flag(rule, missed=missed, medications=", ".join(sorted(set(medications))))


def check_in_flag(rule: FlagRule, today: date, last: date | None, since: date) -> RaisedFlag | None:
    """`last`: the latest check-in day (None: none yet); `since`: when check-ins were expected
    (the care plan's start), counted from when there is no check-in yet."""
    days = (today - (last or since)).days
    if days < rule.at_least:
        return None
    last_text = f"on {_day(last)}" if last else f"never, care plan started {_day(since)}"
    return raise_flag(rule, days=days, last=last_text)


def sort_key(flags: Sequence[RaisedFlag], name: str) -> tuple[int, int, int, str]:
    """Most serious first: the highest severity, then how many flags, then their total weight,
    then by name."""
    severities = [f.severity for f in flags]
    return (-max(severities, default=0), -len(severities), -sum(severities), name.lower())
