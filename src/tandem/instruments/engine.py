"""Load instruments from data, check answers against them, total and band the result.

Pure: no database, no clock, no web framework. Everything clinical comes from `data/*.yaml`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from tandem.instruments.models import Instrument

DATA_DIR = Path(__file__).parent / "data"

Problem = Literal["missing", "unknown_item", "not_integer", "not_allowed", "malformed", "repeated"]


class InstrumentDataError(ValueError):
    """An instrument data file is unreadable or inconsistent."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path.name}: {detail}")
        self.path = path


class UnknownInstrument(KeyError):
    def __init__(self, instrument_id: str, known: list[str]) -> None:
        super().__init__(instrument_id)
        self.message = f"unknown instrument {instrument_id!r}; known: {', '.join(known)}"

    def __str__(self) -> str:
        return self.message


class UnknownScheme(ValueError):
    def __init__(self, instrument: Instrument, scheme_id: str) -> None:
        known = ", ".join(s.id for s in instrument.band_schemes) or "none (no published bands)"
        super().__init__(f"{instrument.id}: unknown band scheme {scheme_id!r}; schemes: {known}")


@dataclass(frozen=True)
class AnswerError:
    """One bad answer: which item, what was given, and what would have been allowed."""

    instrument_id: str
    item_id: str
    problem: Problem
    given: object = None
    allowed_values: tuple[int, ...] = ()
    known_items: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        allowed = ", ".join(map(str, self.allowed_values))
        where = f"{self.instrument_id}: item {self.item_id!r}"
        match self.problem:
            case "missing":
                return f"{where} is missing; allowed values: {allowed}"
            case "not_integer":
                return f"{where}: {self.given!r} is not a whole number; allowed values: {allowed}"
            case "not_allowed":
                return f"{where} cannot be {self.given!r}; allowed values: {allowed}"
            case "repeated":
                return f"{where} is answered more than once; allowed values: {allowed}"
            case "malformed":
                hint = f"; allowed values: {allowed}" if allowed else ""
                return f"{self.instrument_id}: malformed answer {self.given!r}, expected ITEM=VALUE{hint}"
            case "unknown_item":
                return (
                    f"{where} is not an item of {self.instrument_id}; "
                    f"items: {', '.join(self.known_items)}"
                )


class InvalidAnswers(ValueError):
    """Every problem found in one set of answers (not just the first)."""

    def __init__(self, errors: list[AnswerError]) -> None:
        super().__init__("\n".join(e.message for e in errors))
        self.errors = errors


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class BandResult(_Result):
    id: str
    label: str
    severity: int


class FlagResult(_Result):
    id: str
    message: str
    source: str


class Score(_Result):
    instrument_id: str
    instrument_version: str
    total: int
    band: BandResult | None
    scheme_id: str | None
    flags: tuple[FlagResult, ...]
    item_values: dict[str, int]  # in the instrument's item order


def load_instruments_from(directory: Path) -> dict[str, Instrument]:
    """Read and check every `*.yaml` in `directory`; the file name must be the instrument id."""
    instruments: dict[str, Instrument] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            instrument = Instrument.model_validate(raw)
        except yaml.YAMLError as exc:
            raise InstrumentDataError(path, f"not valid YAML: {exc}") from exc
        except ValidationError as exc:
            raise InstrumentDataError(path, str(exc)) from exc
        if instrument.id != path.stem:
            raise InstrumentDataError(path, f"id {instrument.id!r} does not match the file name")
        instruments[instrument.id] = instrument
    return instruments


@functools.cache
def _bundled() -> dict[str, Instrument]:
    return load_instruments_from(DATA_DIR)


def load_instruments() -> dict[str, Instrument]:
    """The bundled instruments by id (parsed once; each call gets its own dict)."""
    return dict(_bundled())


def get_instrument(instrument_id: str) -> Instrument:
    instruments = _bundled()
    try:
        return instruments[instrument_id]
    except KeyError:
        raise UnknownInstrument(instrument_id, sorted(instruments)) from None


def parse_value(raw: str) -> int | str:
    """A typed-in answer as an int when it is a plain ASCII whole number, else unchanged."""
    text = raw.strip()
    return int(text) if re.fullmatch(r"[+-]?[0-9]+", text) else raw


def validate_answers(instrument: Instrument, answers: Mapping[str, object]) -> dict[str, int]:
    """The answers as item id -> value in item order, or InvalidAnswers naming every problem."""
    values, errors = _check(instrument, answers)
    if errors:
        raise InvalidAnswers(errors)
    return values


def _check(
    instrument: Instrument, answers: Mapping[str, object]
) -> tuple[dict[str, int], list[AnswerError]]:
    values: dict[str, int] = {}
    errors: list[AnswerError] = []
    for item in instrument.items:
        value = answers.get(item.id)
        problem: Problem
        if item.id not in answers:
            problem = "missing"
        elif not isinstance(value, int) or isinstance(value, bool):
            problem = "not_integer"
        elif value not in item.allowed_values:
            problem = "not_allowed"
        else:
            values[item.id] = value
            continue
        errors.append(AnswerError(instrument.id, item.id, problem, value, item.allowed_values))
    item_ids = tuple(i.id for i in instrument.items)
    errors += [
        AnswerError(instrument.id, key, "unknown_item", answers[key], known_items=item_ids)
        for key in answers
        if key not in item_ids
    ]
    return values, errors


def score(
    instrument: Instrument, answers: Mapping[str, object], scheme_id: str | None = None
) -> Score:
    """Total, band (from `scheme_id` or the instrument's default scheme) and item flags."""
    scheme = instrument.scheme(scheme_id)
    if scheme_id is not None and scheme is None:
        raise UnknownScheme(instrument, scheme_id)
    values = validate_answers(instrument, answers)
    total = sum(values.values())
    band = None
    if scheme is not None:
        hit = next(b for b in scheme.bands if b.min <= total <= b.max)
        band = BandResult(id=hit.id, label=hit.label, severity=hit.severity)
    flags = tuple(
        FlagResult(id=f.id, message=f.message, source=f.source)
        for f in instrument.flags
        if values[f.item] >= f.at_least
    )
    return Score(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        total=total,
        band=band,
        scheme_id=scheme.id if scheme else None,
        flags=flags,
        item_values=values,
    )
