"""A program's withdrawal-monitoring protocol, held as data and validated on load.

The protocol says, per withdrawal instrument, which band scheme the program reads totals
with, how soon to reassess after each score, when to escalate, when the interval may step
down and when monitoring may stop, and (optionally) which symptom-triggered medication the
source table suggests. Every number carries a `source`; a number the sources do not give is
left empty and marked `unverified`, and `Protocol.unverified_items()` lists all of them so a
page can warn before anyone relies on the protocol.

Pure: standard library, pydantic, PyYAML and the instrument engine's data (itself pure). No
clock, no database.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tandem.evidence import Source
from tandem.instruments.engine import get_instrument

__all__ = [
    "BAND_LEVEL_RANK",
    "KNOWN_BAND_SCHEMES",
    "Band",
    "BandRule",
    "BandScheme",
    "Citation",
    "ContextFlagRule",
    "ContextMatch",
    "EscalationRule",
    "Guidance",
    "InstrumentId",
    "InstrumentProtocol",
    "MedicationSuggestion",
    "OverdueRule",
    "Protocol",
    "ProtocolError",
    "ProtocolIssue",
    "Reassessment",
    "RiseRule",
    "RiskContext",
    "Severity",
    "Source",
    "SourceRef",
    "StepDown",
    "StepDownStage",
    "StopRule",
    "TimeWindowRule",
    "TotalAtLeastRule",
    "UnverifiedItem",
    "load_protocol",
    "protocol_from_mapping",
    "total_range",
]

InstrumentId = Literal["ciwa_ar", "cows", "sows_gossop"]
INSTRUMENT_IDS: frozenset[str] = frozenset(get_args(InstrumentId))
Severity = Literal["info", "warning", "high", "critical"]
SEVERITY_RANK: Mapping[str, int] = {"info": 0, "warning": 1, "high": 2, "critical": 3}

# Band scheme ids a protocol may name per instrument, as the fact sheet lists them (a test holds
# them equal to the instrument engine's data, whose band ids every assessment carries).
# CIWA-Ar: the fact sheet (A1) lists VA PAWS, ASAM 2020 and the PMC6286444 review table.
# COWS: one published banding (Wesson & Ling form, A3). SOWS-Gossop: none found (A4).
KNOWN_BAND_SCHEMES: Mapping[str, frozenset[str]] = {
    "ciwa_ar": frozenset({"va_paws", "asam_2020", "pmc6286444"}),
    "cows": frozenset({"wesson_ling_2003"}),
    "sows_gossop": frozenset(),
}


def total_range(instrument_id: str) -> tuple[int, int]:
    """The totals an instrument can reach, so band and reassessment ranges can be checked for
    gaps. The instrument's data knows them (its items' values, checked when it loads); the
    protocol does not restate them."""
    total = get_instrument(instrument_id).total
    return total.min, total.max


BandLevel = Literal["none", "minimal", "mild", "moderate", "moderately_severe", "severe"]
# An ordinal scale shared by all instruments, so a census can compare bands across them.
BAND_LEVEL_RANK: Mapping[str, int] = {
    "none": 0,
    "minimal": 1,
    "mild": 2,
    "moderate": 3,
    "moderately_severe": 4,
    "severe": 5,
}

_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
Ident = Annotated[str, Field(pattern=_ID_PATTERN, max_length=80)]
Text = Annotated[str, Field(min_length=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- sources


class SourceRef(_Model):
    """Where a number came from: a key into `sources:` plus what the source says."""

    ref: Ident
    quote: str | None = None
    also: tuple[Ident, ...] = ()
    unverified: bool = False
    note: str | None = None

    @model_validator(mode="after")
    def _unverified_needs_note(self) -> SourceRef:
        if self.unverified and not self.note:
            raise ValueError(
                "an unverified entry needs a `note` saying what the program must check"
            )
        return self


@dataclass(frozen=True, slots=True)
class Citation:
    """A resolved source, ready to show beside a rule, flag or suggestion."""

    citation: str
    url: str | None
    quality: str | None
    quote: str | None
    unverified: bool
    notes: tuple[str, ...]
    also: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnverifiedItem:
    """A protocol entry the UI must warn about: `path` is its field path in the file."""

    path: str
    note: str

    @property
    def where(self) -> str:
        """The entry in words ("COWS › reassessment 2 › medication 1 › route"), for pages:
        the field path is for the file's author, not the ward."""
        words: list[str] = []
        parts = self.path.split(".")
        for i, part in enumerate(parts):
            if part == "instruments":
                continue
            if part.isdigit():
                words[-1] = f"{words[-1]} {int(part) + 1}" if words else part
            elif i > 0 and parts[i - 1] == "instruments":
                words.append(part.replace("_", "-").upper())
            else:
                words.append(part.replace("_", " "))
        return " › ".join(words)


# --------------------------------------------------------------------------- bands


class Band(_Model):
    id: Ident
    label: Text
    level: BandLevel
    min_total: NonNegativeInt
    max_total: NonNegativeInt

    @model_validator(mode="after")
    def _ordered(self) -> Band:
        if self.min_total > self.max_total:
            raise ValueError(f"min_total {self.min_total} is above max_total {self.max_total}")
        return self


class BandScheme(_Model):
    """The band scheme the program reads totals with; bands are listed mildest first."""

    id: Ident
    note: str | None = None
    source: SourceRef
    bands: tuple[Band, ...] = Field(min_length=1)

    def band_for(self, total: int) -> Band | None:
        for band in self.bands:
            if band.min_total <= total <= band.max_total:
                return band
        return None

    def band(self, band_id: str) -> Band | None:
        for band in self.bands:
            if band.id == band_id:
                return band
        return None


# --------------------------------------------------------------------------- reassessment


class DailyMaximum(_Model):
    """The most of one drug the protocol allows in any 24 hours, with its source. Only a
    program whose sources give one sets it; the example protocol's sources give none."""

    mg: PositiveFloat
    source: SourceRef


class MedicationSuggestion(_Model):
    """A symptom-triggered dose a source table lists for a score range."""

    drug: Text
    dose_text: Text
    route: str | None = None
    repeat: str | None = None
    note: str | None = None
    source: SourceRef
    max_mg_per_24h: DailyMaximum | None = None


class Reassessment(_Model):
    """One row of the reassessment table: a total range (within one band) and its interval.

    `minutes` empty means the sources give no interval; the entry's own `source` must then
    say `unverified: true` with a note (an unverified attribution alone does not excuse it).
    Several `medication` entries in a row are alternatives, as the source table lists them.
    """

    id: Ident
    band: Ident | None = None
    min_total: NonNegativeInt | None = None
    max_total: NonNegativeInt | None = None
    minutes: PositiveInt | None
    source: SourceRef
    medication: tuple[MedicationSuggestion, ...] = ()


class StepDownStage(_Model):
    after_consecutive: PositiveInt
    minutes: PositiveInt


class StepDown(_Model):
    """Longer intervals once the patient has stayed below a total for several checks.

    Stage k applies once the trailing run of totals below `below_total` is at least the sum
    of `after_consecutive` over stages 1..k (so 3 then 3 means "after 3, then after 3 more").
    """

    below_total: PositiveInt
    stages: tuple[StepDownStage, ...] = Field(min_length=1)
    source: SourceRef


class StopRule(_Model):
    """Monitoring may end when the trailing run of totals below `below_total` is long enough:
    at least `consecutive` assessments and/or spanning at least `for_hours` (first to latest
    assessment in the run). Both, when both are given."""

    below_total: PositiveInt
    consecutive: PositiveInt | None = None
    for_hours: PositiveFloat | None = None
    source: SourceRef

    @model_validator(mode="after")
    def _has_condition(self) -> StopRule:
        if self.consecutive is None and self.for_hours is None:
            raise ValueError("a stop rule needs `consecutive` or `for_hours` (or both)")
        return self


class _RuleBase(_Model):
    id: Ident
    severity: Severity
    message: Text
    source: SourceRef


class BandRule(_RuleBase):
    """Escalate when the latest assessment falls in one of `bands`."""

    kind: Literal["band"]
    bands: tuple[Ident, ...] = Field(min_length=1)


class RiseRule(_RuleBase):
    """Escalate when the latest total is at least `points` above the previous one."""

    kind: Literal["rise"]
    points: PositiveInt | None


class TotalAtLeastRule(_RuleBase):
    """Escalate when the latest total is at or above `total`."""

    kind: Literal["total_at_least"]
    total: NonNegativeInt | None


class OverdueRule(_RuleBase):
    """Escalate when the next assessment is overdue by at least `minutes`."""

    kind: Literal["overdue"]
    minutes: NonNegativeInt | None


EscalationRule = Annotated[
    BandRule | RiseRule | TotalAtLeastRule | OverdueRule, Field(discriminator="kind")
]


class Guidance(_Model):
    """Free-text guidance shown with the instrument (numbers in the text carry `source`)."""

    id: Ident
    text: Text
    source: SourceRef


class InstrumentProtocol(_Model):
    band_scheme: BandScheme | None
    reassessment: tuple[Reassessment, ...] = ()
    step_down: StepDown | None = None
    stop: StopRule | None = None
    escalations: tuple[EscalationRule, ...] = ()
    guidance: tuple[Guidance, ...] = ()

    def row_for(self, total: int) -> Reassessment | None:
        for row in self.reassessment:
            if row.min_total is not None and row.max_total is not None:
                if row.min_total <= total <= row.max_total:
                    return row
        return None


# --------------------------------------------------------------------------- risk context


class ContextMatch(_Model):
    """Matches a WithdrawalContext when every field given here equals the context's."""

    substance: Literal["alcohol", "opioid", "other"] | None = None
    opioid_half_life_class: Literal["short", "long"] | None = None
    history_withdrawal_seizures: bool | None = None
    history_delirium_tremens: bool | None = None
    liver_failure: bool | None = None
    elderly: bool | None = None

    @model_validator(mode="after")
    def _not_empty(self) -> ContextMatch:
        if not self.model_dump(exclude_none=True):
            raise ValueError("`when` must name at least one context field")
        return self


class ContextFlagRule(_Model):
    id: Ident
    when: ContextMatch
    severity: Severity
    message: Text
    source: SourceRef


class TimeWindowRule(_Model):
    """Flag when the time since last use lies within [from_hours, to_hours].

    An empty bound means the sources give no window; the rule then stays silent and is
    listed by `Protocol.unverified_items()`.
    """

    id: Ident
    when: ContextMatch
    from_hours: NonNegativeFloat | None
    to_hours: NonNegativeFloat | None
    severity: Severity
    message: Text
    source: SourceRef


class RiskContext(_Model):
    flags: tuple[ContextFlagRule, ...] = ()
    windows: tuple[TimeWindowRule, ...] = ()


# --------------------------------------------------------------------------- protocol


class Protocol(_Model):
    id: Ident
    version: Text
    title: str | None = None
    time_zone: Text
    sources: dict[Ident, Source] = Field(min_length=1)
    instruments: dict[InstrumentId, InstrumentProtocol] = Field(min_length=1)
    risk_context: RiskContext = RiskContext()

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @model_validator(mode="before")
    @classmethod
    def _fill_row_ranges(cls, data: Any) -> Any:
        """A reassessment row naming only a band covers that band's whole range."""
        if not isinstance(data, Mapping):
            return data
        instruments = data.get("instruments")
        if not isinstance(instruments, Mapping):
            return data
        filled: dict[str, Any] = {}
        for key, inst in instruments.items():
            filled[key] = _fill_rows(key, inst)
        return {**data, "instruments": filled}

    @model_validator(mode="after")
    def _cross_check(self) -> Protocol:
        issues = list(_cross_check(self))
        if issues:
            raise PydanticCustomError(
                "protocol_cross_check",
                "{summary}",
                {
                    "summary": "; ".join(f"{i.path}: {i.message}" for i in issues),
                    "issues": [(i.path, i.message) for i in issues],
                },
            )
        return self

    # ---- use

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.time_zone)

    @functools.cached_property
    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the validated protocol: changes with any edit.

        Cached: the model is frozen, and every evaluation reports it."""
        canonical = json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def scheme_for(self, instrument_id: str) -> str | None:
        """The band scheme the program scores `instrument_id` by (one per program: the CLI,
        the pages and FHIR all band with it); None when the protocol does not cover it."""
        section = self.instruments.get(instrument_id)  # type: ignore[call-overload]
        if section is None or section.band_scheme is None:
            return None
        return str(section.band_scheme.id)

    def instrument(self, instrument_id: str) -> InstrumentProtocol:
        for key, section in self.instruments.items():
            if key == instrument_id:
                return section
        known = ", ".join(sorted(self.instruments))
        raise KeyError(
            f"protocol {self.id!r} v{self.version} has no {instrument_id!r} section "
            f"(it covers: {known})"
        )

    def cite(self, ref: SourceRef) -> Citation:
        source = self.sources[ref.ref]
        notes = tuple(n for n in (source.note, ref.note) if n)
        return Citation(
            citation=source.citation,
            url=source.url,
            quality=source.quality,
            quote=ref.quote,
            unverified=source.unverified or ref.unverified,
            notes=notes,
            also=tuple(self.sources[a].citation for a in ref.also),
        )

    def is_unverified(self, ref: SourceRef) -> bool:
        return ref.unverified or self.sources[ref.ref].unverified

    def unverified_items(self) -> list[UnverifiedItem]:
        """Every entry resting on an unverified source or left for the program to set."""
        items: list[UnverifiedItem] = []
        for path, ref in _walk_refs(self):
            if self.is_unverified(ref):
                note = " ".join(self.cite(ref).notes) or "unverified"
                items.append(UnverifiedItem(path, note))
        for key, inst in self.instruments.items():
            for r, row in enumerate(inst.reassessment):
                for m, med in enumerate(row.medication):
                    if med.route is None:
                        items.append(
                            UnverifiedItem(
                                f"instruments.{key}.reassessment.{r}.medication.{m}.route",
                                "route not stated by the source; the program must set it",
                            )
                        )
        return items


def _fill_rows(instrument_key: Any, inst: Any) -> Any:
    if not isinstance(inst, Mapping):
        return inst
    scheme = inst.get("band_scheme")
    bands: dict[str, tuple[Any, Any]] = {}
    if isinstance(scheme, Mapping) and isinstance(scheme.get("bands"), list | tuple):
        for band in scheme["bands"]:
            if isinstance(band, Mapping) and isinstance(band.get("id"), str):
                bands[band["id"]] = (band.get("min_total"), band.get("max_total"))
    rows = inst.get("reassessment")
    if not isinstance(rows, list | tuple):
        return inst
    totals = total_range(instrument_key) if instrument_key in INSTRUMENT_IDS else None
    new_rows = []
    for row in rows:
        if isinstance(row, Mapping) and "min_total" not in row and "max_total" not in row:
            band_id = row.get("band")
            if isinstance(band_id, str) and band_id in bands:
                lo, hi = bands[band_id]
                row = {**row, "min_total": lo, "max_total": hi}
            elif band_id is None and totals is not None:
                row = {**row, "min_total": totals[0], "max_total": totals[1]}
        new_rows.append(row)
    return {**inst, "reassessment": new_rows}


@dataclass(frozen=True, slots=True)
class ProtocolIssue:
    path: str
    message: str


def _walk_refs(protocol: Protocol) -> Iterator[tuple[str, SourceRef]]:
    """Every SourceRef in the protocol with its field path."""

    def walk(value: Any, path: str) -> Iterator[tuple[str, SourceRef]]:
        if isinstance(value, SourceRef):
            yield path, value
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                yield from walk(getattr(value, name), f"{path}.{name}" if path else name)
        elif isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, f"{path}.{key}")
        elif isinstance(value, tuple):
            for index, item in enumerate(value):
                yield from walk(item, f"{path}.{index}")

    for name in ("instruments", "risk_context"):
        yield from walk(getattr(protocol, name), name)


def _cross_check(protocol: Protocol) -> Iterator[ProtocolIssue]:
    unknown_refs = False
    for path, ref in _walk_refs(protocol):
        for key in (ref.ref, *ref.also):
            if key not in protocol.sources:
                unknown_refs = True
                known = ", ".join(sorted(protocol.sources))
                yield ProtocolIssue(f"{path}.ref", f"unknown source {key!r} (declared: {known})")
    if unknown_refs:
        return  # the checks below resolve sources

    for key, inst in protocol.instruments.items():
        yield from _check_instrument(protocol, key, inst, f"instruments.{key}")

    for i, window in enumerate(protocol.risk_context.windows):
        path = f"risk_context.windows.{i}"
        if window.from_hours is not None and window.to_hours is not None:
            if window.from_hours > window.to_hours:
                yield ProtocolIssue(path, "from_hours is after to_hours")
        elif not window.source.unverified:
            yield ProtocolIssue(
                f"{path}.source", "an empty hour bound must be marked `unverified: true`"
            )


def _check_instrument(
    protocol: Protocol, key: str, inst: InstrumentProtocol, path: str
) -> Iterator[ProtocolIssue]:
    lo, hi = total_range(key)
    scheme = inst.band_scheme
    band_ids: set[str] = set()
    if scheme is not None:
        known = KNOWN_BAND_SCHEMES[key]
        if scheme.id not in known:
            listed = ", ".join(sorted(known)) or "none"
            yield ProtocolIssue(
                f"{path}.band_scheme.id",
                f"unknown band scheme {scheme.id!r} for {key} (known: {listed})",
            )
        band_ids = {b.id for b in scheme.bands}
        if len(band_ids) != len(scheme.bands):
            yield ProtocolIssue(f"{path}.band_scheme.bands", "band ids must be unique")
        yield from _check_partition(
            [(b.min_total, b.max_total) for b in scheme.bands], lo, hi, f"{path}.band_scheme.bands"
        )
        ranks = [BAND_LEVEL_RANK[b.level] for b in scheme.bands]
        if ranks != sorted(ranks):
            yield ProtocolIssue(
                f"{path}.band_scheme.bands", "bands must be listed mildest first (by `level`)"
            )

    def check_band(band_id: str | None, where: str) -> Iterator[ProtocolIssue]:
        if band_id is None:
            return
        if scheme is None:
            yield ProtocolIssue(where, f"band {band_id!r} given but {key} has no band_scheme")
        elif band_id not in band_ids:
            yield ProtocolIssue(
                where,
                f"unknown band {band_id!r} for scheme {scheme.id!r} "
                f"(bands: {', '.join(b.id for b in scheme.bands)})",
            )

    rows = inst.reassessment
    row_ids = [r.id for r in rows]
    if len(set(row_ids)) != len(row_ids):
        yield ProtocolIssue(f"{path}.reassessment", "row ids must be unique")
    for r, row in enumerate(rows):
        rpath = f"{path}.reassessment.{r}"
        yield from check_band(row.band, f"{rpath}.band")
        if row.min_total is None or row.max_total is None:
            yield ProtocolIssue(rpath, "a row needs min_total and max_total, or a known band")
            continue
        if row.min_total > row.max_total:
            yield ProtocolIssue(rpath, f"min_total {row.min_total} is above max_total")
        if scheme is not None and row.band is not None:
            band = scheme.band(row.band)
            if band is not None and not (
                band.min_total <= row.min_total and row.max_total <= band.max_total
            ):
                yield ProtocolIssue(
                    rpath,
                    f"totals {row.min_total}-{row.max_total} are not inside band {band.id!r} "
                    f"({band.min_total}-{band.max_total}): the band scheme does not match "
                    "this reassessment table",
                )
        if row.minutes is None and not row.source.unverified:
            yield ProtocolIssue(
                f"{rpath}.source", "an empty `minutes` must be marked `unverified: true`"
            )
    ranges = [
        (r.min_total, r.max_total)
        for r in rows
        if r.min_total is not None and r.max_total is not None
    ]
    if rows and len(ranges) == len(rows):
        yield from _check_partition(ranges, lo, hi, f"{path}.reassessment")

    if inst.step_down is not None:
        minutes = [s.minutes for s in inst.step_down.stages]
        if minutes != sorted(minutes):
            yield ProtocolIssue(f"{path}.step_down.stages", "stage intervals must not shrink")

    rule_ids = [e.id for e in inst.escalations]
    if len(set(rule_ids)) != len(rule_ids):
        yield ProtocolIssue(f"{path}.escalations", "rule ids must be unique")
    for e, rule in enumerate(inst.escalations):
        epath = f"{path}.escalations.{e}"
        if isinstance(rule, BandRule):
            for b, band_id in enumerate(rule.bands):
                yield from check_band(band_id, f"{epath}.bands.{b}")
        if _threshold(rule) is None and not rule.source.unverified:
            yield ProtocolIssue(
                f"{epath}.source", "an empty threshold must be marked `unverified: true`"
            )


def monitoring_gaps(
    protocol: Protocol, instrument_id: str | None = None, *, overdue: bool = True
) -> list[ProtocolIssue]:
    """What a program must set before its protocol can monitor patients: every reassessment row
    with no interval (a patient scored there would never fall due) and, with `overdue`, every
    instrument with no overdue threshold (a late reassessment would never be escalated).
    Each issue names the row or rule by its path and id."""
    gaps: list[ProtocolIssue] = []
    for key, inst in protocol.instruments.items():
        if instrument_id is not None and key != instrument_id:
            continue
        name = short_instrument_name(key)
        for r, row in enumerate(inst.reassessment):
            if row.minutes is None:
                gaps.append(
                    ProtocolIssue(
                        f"instruments.{key}.reassessment.{r}",
                        f"row {row.id} (totals {row.min_total}-{row.max_total}) sets no "
                        f"reassessment interval: a {name} patient scored there would never "
                        "fall due; set `minutes`",
                    )
                )
        if not overdue or not inst.reassessment:
            continue
        rules = [(e, r) for e, r in enumerate(inst.escalations) if isinstance(r, OverdueRule)]
        if not any(r.minutes is not None for _, r in rules):
            where = f"instruments.{key}.escalations" + (f".{rules[0][0]}" if rules else "")
            rule_id = f"rule {rules[0][1].id}" if rules else "no overdue rule"
            gaps.append(
                ProtocolIssue(
                    where,
                    f"{rule_id}: no overdue threshold, so a late {name} reassessment would "
                    "never be escalated; set `minutes` (0 = as soon as it is due)",
                )
            )
    return gaps


def short_instrument_name(instrument_id: str) -> str:
    return {"ciwa_ar": "CIWA-Ar", "cows": "COWS", "sows_gossop": "SOWS-Gossop"}.get(
        instrument_id, instrument_id
    )


def _threshold(rule: BandRule | RiseRule | TotalAtLeastRule | OverdueRule) -> int | str | None:
    """The rule's number (None when left for the program to set); band rules have none."""
    if isinstance(rule, RiseRule):
        return rule.points
    if isinstance(rule, TotalAtLeastRule):
        return rule.total
    if isinstance(rule, OverdueRule):
        return rule.minutes
    return "band"


def _check_partition(
    ranges: list[tuple[int, int]], lo: int, hi: int, path: str
) -> Iterator[ProtocolIssue]:
    """Ranges must cover lo..hi once each, with no gap or overlap."""
    expected = lo
    for start, end in sorted(ranges):
        if start > expected:
            yield ProtocolIssue(path, f"no entry covers totals {expected}-{start - 1}")
        elif start < expected:
            yield ProtocolIssue(path, f"totals {start}-{min(end, expected - 1)} are covered twice")
        expected = max(expected, end + 1)
    if expected <= hi:
        yield ProtocolIssue(path, f"no entry covers totals {expected}-{hi}")
    elif expected > hi + 1:
        yield ProtocolIssue(path, f"ranges run past the highest possible total {hi}")


# --------------------------------------------------------------------------- loading


class ProtocolError(ValueError):
    """A protocol that failed validation; `issues` name each offending field path."""

    def __init__(self, issues: list[ProtocolIssue], origin: str = "protocol") -> None:
        self.issues = issues
        lines = "\n".join(f"  {i.path}: {i.message}" for i in issues)
        super().__init__(f"invalid withdrawal protocol ({origin}):\n{lines}")


def _issues(error: ValidationError) -> list[ProtocolIssue]:
    issues: list[ProtocolIssue] = []
    for err in error.errors():
        ctx = err.get("ctx") or {}
        if err["type"] == "protocol_cross_check" and "issues" in ctx:
            issues.extend(ProtocolIssue(p, m) for p, m in ctx["issues"])
            continue
        path = ".".join(str(part) for part in err["loc"]) or "(top level)"
        message = err["msg"]
        if err["type"] == "missing":
            message = "required field is missing"
        elif err["type"] == "extra_forbidden":
            message = "unknown field (not part of the protocol schema)"
        issues.append(ProtocolIssue(path, message))
    return issues


def protocol_from_mapping(data: Mapping[str, Any], origin: str = "mapping") -> Protocol:
    """Validate a protocol held as a mapping (e.g. a program's JSON column)."""
    if not isinstance(data, Mapping):
        raise ProtocolError([ProtocolIssue("(top level)", "a protocol must be a mapping")], origin)
    try:
        return Protocol.model_validate(dict(data))
    except ValidationError as exc:
        raise ProtocolError(_issues(exc), origin) from None


DEFAULT_PROTOCOL = "example_protocol.yaml"


def load_protocol(path: str | Path | None = None) -> Protocol:
    """Load and validate a protocol YAML file; by default the shipped example."""
    if path is None:
        resource = resources.files("tandem.withdrawal").joinpath("data", DEFAULT_PROTOCOL)
        text, origin = resource.read_text(encoding="utf-8"), DEFAULT_PROTOCOL
    else:
        text, origin = Path(path).read_text(encoding="utf-8"), str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProtocolError([ProtocolIssue("(file)", f"not valid YAML: {exc}")], origin) from None
    return protocol_from_mapping(data, origin)
