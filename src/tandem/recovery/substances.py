"""The substances recovery tracks (data/substances.yaml), validated on load. Pure."""

from __future__ import annotations

import functools
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tandem.errors import InvalidInput

DATA = Path(__file__).parent / "data" / "substances.yaml"


class Substance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z_]*$", max_length=20)
    label: str
    plain: str
    drinks: bool = False


class _File(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    substances: tuple[Substance, ...] = Field(min_length=1)


@functools.cache
def substances() -> tuple[Substance, ...]:
    found = _File.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8"))).substances
    ids = [s.id for s in found]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{DATA.name}: substance ids repeat: {ids}")
    return found


def substance(substance_id: str, field: str = "substance") -> Substance:
    """The substance with this id, or InvalidInput naming `field` and the known ids."""
    for each in substances():
        if each.id == substance_id:
            return each
    known = ", ".join(s.id for s in substances())
    raise InvalidInput(field, f"unknown substance {substance_id!r}; one of: {known}")
