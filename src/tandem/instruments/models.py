"""Typed shape of an instrument data file, checked when the file is loaded.

The clinical content lives in `data/*.yaml`; these models only say what a well-formed
instrument looks like, so a typo or an inconsistent range fails at load, not at the bedside.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from tandem.evidence import Source

Identifier = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
Points = Annotated[StrictInt, Field(ge=0)]


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Coding(_Data):
    system: str
    code: str
    display: str | None = None


class Anchor(_Data):
    """What a value means on the printed scale; `unverified` marks text not checked at source.

    No `text` means the published form prints the number alone (CIWA-Ar leaves several grades
    between its worded anchors blank); `label` then reads as the form does.
    """

    text: str | None = Field(default=None, min_length=1)
    unverified: bool = False
    note: str | None = None

    def label(self, value: int) -> str:
        """The words the form prints for `value`, or the number alone when it prints none."""
        return self.text or str(value)

    @model_validator(mode="before")
    @classmethod
    def _from_plain_text(cls, data: Any) -> Any:
        return {"text": data} if isinstance(data, str) else data


class Item(_Data):
    id: Identifier
    text: str = Field(min_length=1)
    code: Coding | None = None
    allowed_values: tuple[Points, ...] = Field(min_length=1)
    anchors: dict[StrictInt, Anchor]
    # Ids of the instrument's sources the anchor wording was read in (the transcription and
    # the reproductions it was checked against).
    sources: tuple[Identifier, ...] = ()
    unverified: bool = False
    note: str | None = None

    @field_validator("allowed_values")
    @classmethod
    def _ascending(cls, values: tuple[int, ...]) -> tuple[int, ...]:
        if list(values) != sorted(set(values)):
            raise ValueError(f"allowed_values must be unique and ascending, got {list(values)}")
        return values

    @model_validator(mode="after")
    def _anchor_per_value(self) -> Item:
        missing = sorted(set(self.allowed_values) - self.anchors.keys())
        extra = sorted(self.anchors.keys() - set(self.allowed_values))
        if missing or extra:
            raise ValueError(
                f"item {self.id!r}: anchors must match allowed_values {list(self.allowed_values)}"
                f" (no anchor for {missing}, anchor for values not allowed {extra})"
            )
        return self

    @property
    def min_value(self) -> int:
        return self.allowed_values[0]

    @property
    def max_value(self) -> int:
        return self.allowed_values[-1]

    @property
    def verified(self) -> bool:
        return not self.unverified and not any(a.unverified for a in self.anchors.values())


class Band(_Data):
    id: Identifier
    label: str
    min: Points
    max: Points
    severity: Points
    note: str | None = None


class BandScheme(_Data):
    id: Identifier
    label: str
    source: str
    bands: tuple[Band, ...] = Field(min_length=1)
    unverified: bool = False
    note: str | None = None


class FlagRule(_Data):
    """Raise flag `id` when `item` scores `at_least` or more."""

    id: Identifier
    item: Identifier
    at_least: StrictInt
    message: str
    source: str


class Total(_Data):
    min: Points
    max: Points
    code: Coding | None = None


class Instrument(_Data):
    id: Identifier
    name: str
    version: str
    respondent: Literal["clinician", "self"]
    citation: str
    sources: tuple[Source, ...] = Field(min_length=1)
    instructions: str | None = None
    coding_note: str | None = None
    items: tuple[Item, ...] = Field(min_length=1)
    total: Total
    band_schemes: tuple[BandScheme, ...] = ()
    default_scheme: Identifier | None = None
    band_note: str | None = None
    flags: tuple[FlagRule, ...] = ()
    notes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        _unique("item", [i.id for i in self.items])
        low = sum(i.min_value for i in self.items)
        high = sum(i.max_value for i in self.items)
        if (self.total.min, self.total.max) != (low, high):
            raise ValueError(
                f"total is {self.total.min}..{self.total.max} but the items add up to {low}..{high}"
            )
        _unique("band scheme", [s.id for s in self.band_schemes])
        for scheme in self.band_schemes:
            _check_bands(scheme, low, high)
        scheme_ids = {s.id for s in self.band_schemes}
        if self.band_schemes and self.default_scheme not in scheme_ids:
            raise ValueError(
                f"default_scheme {self.default_scheme!r} is not one of {sorted(scheme_ids)}"
            )
        if not self.band_schemes and (self.default_scheme is not None or not self.band_note):
            raise ValueError(
                "an instrument without band_schemes needs a band_note and no default_scheme"
            )
        source_ids = {s.id for s in self.sources if s.id}
        for each in self.items:
            unknown = sorted(set(each.sources) - source_ids)
            if unknown:
                raise ValueError(f"item {each.id!r}: sources {unknown} are not ids of `sources`")
        _unique("flag", [f.id for f in self.flags])
        items = {i.id: i for i in self.items}
        for flag in self.flags:
            item = items.get(flag.item)
            if item is None:
                raise ValueError(f"flag {flag.id!r} refers to unknown item {flag.item!r}")
            if not item.min_value < flag.at_least <= item.max_value:
                raise ValueError(
                    f"flag {flag.id!r}: at_least {flag.at_least} is outside"
                    f" {item.min_value + 1}..{item.max_value} for item {item.id!r}"
                )
        return self

    def scheme(self, scheme_id: str | None) -> BandScheme | None:
        """The named scheme, or the default one; None when the instrument has no bands."""
        wanted = scheme_id or self.default_scheme
        return next((s for s in self.band_schemes if s.id == wanted), None)

    @property
    def wording_verified(self) -> bool:
        """Every item and answer reads as checked at source (what a Questionnaire carries)."""
        return all(i.verified for i in self.items)

    @property
    def verified(self) -> bool:
        return self.wording_verified and not any(s.unverified for s in self.band_schemes)


def _unique(kind: str, ids: list[str]) -> None:
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"{kind} ids must be unique; repeated: {repeated}")


def _check_bands(scheme: BandScheme, low: int, high: int) -> None:
    """Bands must tile low..high: in order, no gap, no overlap, severity 0, 1, 2, ..."""
    _unique(f"band (scheme {scheme.id!r})", [b.id for b in scheme.bands])
    expected_min = low
    for severity, band in enumerate(scheme.bands):
        where = f"scheme {scheme.id!r}, band {band.id!r}"
        if band.min > band.max:
            raise ValueError(f"{where}: min {band.min} is above max {band.max}")
        if band.min != expected_min:
            problem = "gap" if band.min > expected_min else "overlap"
            raise ValueError(f"{where}: starts at {band.min}, expected {expected_min} ({problem})")
        if band.severity != severity:
            raise ValueError(f"{where}: severity {band.severity}, expected {severity}")
        expected_min = band.max + 1
    if expected_min - 1 != high:
        raise ValueError(
            f"scheme {scheme.id!r}: bands end at {expected_min - 1}, total max is {high}"
        )
