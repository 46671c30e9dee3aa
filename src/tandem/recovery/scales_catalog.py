"""The self-report scales of ongoing therapy (data/scales.yaml), the crisis resources a patient
sees after an urgent answer (data/crisis_resources.yaml) and the single 0-10 craving rating
(data/craving_rating.yaml). Pure: data validated on load, plain functions, no I/O but the files.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from tandem.errors import InvalidInput
from tandem.evidence import Source
from tandem.instruments.engine import Score, get_instrument
from tandem.instruments.models import Instrument

DATA = Path(__file__).parent / "data"


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Scale(_Data):
    instrument: str
    group: Literal["mood", "craving", "screening"]
    short: str
    urgent_flags: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _known(self) -> Scale:
        instrument = get_instrument(self.instrument)  # UnknownInstrument on a typo
        if instrument.respondent != "self":
            raise ValueError(f"{self.instrument} is not a self-report scale")
        flags = {f.id for f in instrument.flags}
        unknown = sorted(set(self.urgent_flags) - flags)
        if unknown:
            raise ValueError(f"{self.instrument}: urgent_flags {unknown} are not its flags")
        return self

    @property
    def definition(self) -> Instrument:
        return get_instrument(self.instrument)

    def urgent(self, result: Score) -> list[str]:
        """The urgent flags this scored response raised (empty: nothing urgent)."""
        return [f.id for f in result.flags if f.id in self.urgent_flags]


class _Scales(_Data):
    scales: tuple[Scale, ...] = Field(min_length=1)


@functools.cache
def scales() -> tuple[Scale, ...]:
    found = _Scales.model_validate(
        yaml.safe_load((DATA / "scales.yaml").read_text(encoding="utf-8"))
    ).scales
    ids = [s.instrument for s in found]
    if len(ids) != len(set(ids)):
        raise ValueError(f"scales.yaml: instruments repeat: {ids}")
    return found


def is_scale(instrument_id: str) -> bool:
    return any(s.instrument == instrument_id for s in scales())


def scale(instrument_id: str, field: str = "questionnaire") -> Scale:
    """The self-report scale for this instrument, or InvalidInput naming `field`."""
    for each in scales():
        if each.instrument == instrument_id:
            return each
    known = ", ".join(s.instrument for s in scales())
    raise InvalidInput(field, f"{instrument_id!r} is not a self-report scale; one of: {known}")


# --------------------------------------------------------------------------- crisis resources


class CrisisResource(_Data):
    id: str
    name: str
    how: str
    call: str | None = None
    text: str | None = None
    url: str | None = None
    when: str
    sources: tuple[Source, ...] = Field(min_length=1)


class CrisisResources(_Data):
    country: str
    heading: str
    intro: str
    resources: tuple[CrisisResource, ...] = Field(min_length=1)


@functools.cache
def crisis_resources() -> CrisisResources:
    raw = yaml.safe_load((DATA / "crisis_resources.yaml").read_text(encoding="utf-8"))
    return CrisisResources.model_validate(raw)


# --------------------------------------------------------------------------- craving rating


class CravingRatingScale(_Data):
    """The single 0-10 craving rating per substance (a recovery value, not an instrument: see
    the data file for why)."""

    min: StrictInt
    max: StrictInt
    question: str
    anchors: dict[StrictInt, str]
    unverified: bool = False
    note: str | None = None
    sources: tuple[Source, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ends(self) -> CravingRatingScale:
        if not self.min < self.max or not set(self.anchors) <= set(range(self.min, self.max + 1)):
            raise ValueError("craving rating: anchors must lie within min..max")
        if self.unverified and not self.note:
            raise ValueError("craving rating: unverified needs a note")
        return self

    def check(self, rating: object, field: str = "rating") -> int:
        """The rating as a whole number within min..max, or InvalidInput naming `field`."""
        if isinstance(rating, bool) or not isinstance(rating, int):
            raise InvalidInput(field, f"{rating!r} is not a whole number {self.min} to {self.max}")
        if not self.min <= rating <= self.max:
            raise InvalidInput(field, f"{rating} is outside {self.min} to {self.max}")
        return rating


@functools.cache
def craving_rating_scale() -> CravingRatingScale:
    raw = yaml.safe_load((DATA / "craving_rating.yaml").read_text(encoding="utf-8"))
    return CravingRatingScale.model_validate(raw)
