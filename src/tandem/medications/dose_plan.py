"""Dose plans: day-by-day titration and taper calendars, bounded by what the sources allow.

Pure: dates come in (`start_date`), nothing reads the clock.

Bounds. A plan's ceiling is the monograph's maximum daily dose (80 mg/day for baclofen),
lowered by a program protocol maximum when that is lower, and lowered again when kidney
function triggers a monograph rule carrying a `dose_limit` (for baclofen, the J Clin
Pharmacol 2014 reductions by 1/3, 1/2, 2/3 — a caution from a study, reported as such).
Each bound is kept in `DosePlan.limits` with its reason and source. A target above the
ceiling is refused (`PlanRefused`) with the binding reason; Tandem never lowers a target
silently.

Tapers. Stopping at once (over 0 days), or a course that ends without a taper, is refused
for medications whose monograph says a taper is required (baclofen: abrupt discontinuation
risks hallucinations, seizures, high fever, rebound rigidity, rarely death). A taper lowers
the *daily total* in near-equal steps of the dose unit (5 mg for baclofen) from just below
the starting total down to one unit, spreading the steps evenly over the period; each day's
total is split over the usual time slots as evenly as whole units allow (extra units go to
the earlier slots). The last day carries the smallest dose; the next day is the stop date.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from typing import Any, Literal

from tandem.medications.dose import (
    MAX_DURATION_DAYS,
    Dose,
    Frequency,
    check_positive,
    parse_dose,
    round_mg,
)
from tandem.medications.errors import ImplausibleValue, PlanRefused
from tandem.medications.monograph import Monograph, Source, load_monograph, load_sources
from tandem.medications.renal import RenalResult

__all__ = [
    "DosePlan",
    "PlanDay",
    "PlanLimit",
    "PlanNote",
    "PlanStep",
    "ScheduledDose",
    "StepSpec",
    "maintenance",
    "plan_ceiling",
    "plan_from_steps",
    "renal_titration",
    "taper",
    "titration",
]

_EPS = 1e-9
_RENAL_FACTS = frozenset({"crcl_ml_min", "egfr", "egfr_category", "on_dialysis"})


@dataclass(frozen=True)
class ScheduledDose:
    time_slot: str
    mg: float

    def to_dict(self) -> dict[str, Any]:
        return {"time_slot": self.time_slot, "mg": self.mg}


@dataclass(frozen=True)
class PlanDay:
    date: date
    doses: tuple[ScheduledDose, ...]

    @property
    def total_mg(self) -> float:
        return round_mg(sum(d.mg for d in self.doses))

    def to_dict(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "doses": [d.to_dict() for d in self.doses],
            "total_mg": self.total_mg,
        }


@dataclass(frozen=True)
class PlanStep:
    """A run of consecutive days with the same doses. `end` is the last day (inclusive)."""

    start: date
    end: date
    doses: tuple[ScheduledDose, ...]
    frequency: Frequency

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def total_mg(self) -> float:
        return round_mg(sum(d.mg for d in self.doses))

    @property
    def uniform_dose(self) -> Dose | None:
        """The step as one Dose when every usual slot gets the same amount, else None."""
        amounts = {d.mg for d in self.doses}
        if len(self.doses) == self.frequency.per_day and len(amounts) == 1:
            return Dose(mg=self.doses[0].mg, frequency=self.frequency)
        return None

    def to_dict(self) -> dict[str, Any]:
        dose = self.uniform_dose
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "days": self.days,
            "dose": None if dose is None else str(dose),
            "doses": [d.to_dict() for d in self.doses],
            "total_mg": self.total_mg,
        }


@dataclass(frozen=True)
class PlanLimit:
    """One bound on the plan: a daily and/or per-dose maximum, why, and from where."""

    reason: str
    source: tuple[Source, ...] = ()
    mg_day: float | None = None
    mg_per_dose: float | None = None
    rule_id: str | None = None
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "mg_day": self.mg_day,
            "mg_per_dose": self.mg_per_dose,
            "reason": self.reason,
            "rule_id": self.rule_id,
            "unverified": self.unverified,
            "source": [s.model_dump(exclude_none=True) for s in self.source],
        }


@dataclass(frozen=True)
class PlanNote:
    text: str
    source: tuple[Source, ...] = ()
    unverified: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "unverified": self.unverified,
            "source": [s.model_dump(exclude_none=True) for s in self.source],
        }


@dataclass(frozen=True)
class DosePlan:
    """A calendar of doses. `continues` means the last day's doses go on after the calendar
    (a titration reaching its target); otherwise `stop_date` is the first day without doses."""

    medication_id: str
    kind: Literal["titration", "taper", "maintenance"]
    frequency: Frequency
    days: tuple[PlanDay, ...]
    ceiling_mg_day: float | None
    ceiling_mg_per_dose: float | None = None
    limits: tuple[PlanLimit, ...] = ()
    notes: tuple[PlanNote, ...] = ()
    continues: bool = False
    stop_date: date | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def start_date(self) -> date:
        return self.days[0].date

    @property
    def end_date(self) -> date:
        return self.days[-1].date

    @property
    def steps(self) -> tuple[PlanStep, ...]:
        out: list[PlanStep] = []
        for day in self.days:
            if out and out[-1].doses == day.doses and out[-1].end + timedelta(days=1) == day.date:
                last = out[-1]
                out[-1] = PlanStep(last.start, day.date, last.doses, last.frequency)
            else:
                out.append(
                    PlanStep(day.date, day.date, day.doses, _frequency_of(day, self.frequency))
                )
        return tuple(out)

    @property
    def binding_limit(self) -> PlanLimit | None:
        daily = [lim for lim in self.limits if lim.mg_day is not None]
        return min(daily, key=lambda lim: lim.mg_day or 0) if daily else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "medication_id": self.medication_id,
            "kind": self.kind,
            "frequency": self.frequency.code,
            "start_date": self.start_date.isoformat(),
            "end_date": self.end_date.isoformat(),
            "continues": self.continues,
            "stop_date": None if self.stop_date is None else self.stop_date.isoformat(),
            "ceiling_mg_day": self.ceiling_mg_day,
            "ceiling_mg_per_dose": self.ceiling_mg_per_dose,
            "limits": [lim.to_dict() for lim in self.limits],
            "notes": [n.to_dict() for n in self.notes],
            "steps": [s.to_dict() for s in self.steps],
            "days": [d.to_dict() for d in self.days],
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DosePlan:
        """The plan back from `to_dict()` (as stored): days, bounds, notes and their sources."""
        days = tuple(
            PlanDay(
                date.fromisoformat(d["date"]),
                tuple(ScheduledDose(x["time_slot"], float(x["mg"])) for x in d["doses"]),
            )
            for d in data["days"]
        )
        if not days:
            raise ImplausibleValue("days", "a stored plan has at least one day")
        limits = tuple(
            PlanLimit(
                reason=lim["reason"],
                source=_stored_sources(lim.get("source", ())),
                mg_day=lim.get("mg_day"),
                mg_per_dose=lim.get("mg_per_dose"),
                rule_id=lim.get("rule_id"),
                unverified=bool(lim.get("unverified", False)),
            )
            for lim in data.get("limits", ())
        )
        notes = tuple(
            PlanNote(n["text"], _stored_sources(n.get("source", ())), bool(n.get("unverified")))
            for n in data.get("notes", ())
        )
        stop = data.get("stop_date")
        return cls(
            medication_id=data["medication_id"],
            kind=data["kind"],
            frequency=Frequency.parse(
                data.get("frequency") or _frequency_of(days[-1], Frequency.TID).code
            ),
            days=days,
            ceiling_mg_day=data.get("ceiling_mg_day"),
            ceiling_mg_per_dose=data.get("ceiling_mg_per_dose"),
            limits=limits,
            notes=notes,
            continues=bool(data.get("continues", False)),
            stop_date=None if stop is None else date.fromisoformat(stop),
            meta=dict(data.get("meta") or {}),
        )


def _stored_sources(items: Iterable[Mapping[str, Any]]) -> tuple[Source, ...]:
    """Sources as stored: resolved by id from the registry (so a corrected citation shows),
    or rebuilt from the stored copy when the registry no longer holds that id."""
    registry = load_sources()
    return tuple(
        registry[s["id"]] if s.get("id") in registry else Source.model_validate(s) for s in items
    )


def _frequency_of(day: PlanDay, default: Frequency) -> Frequency:
    """The frequency whose time slots a day uses (a titration may switch TID → QID)."""
    slots = tuple(d.time_slot for d in day.doses)
    for freq in Frequency:
        if freq.slots == slots:
            return freq
    return default


# --------------------------------------------------------------------------- bounds


@dataclass(frozen=True)
class _Bounds:
    mg_day: float | None
    mg_per_dose: float | None
    limits: tuple[PlanLimit, ...]
    notes: tuple[PlanNote, ...]
    # The kidney rule reducing every dose (e.g. by 2/3 below CrCl 30), with what remains.
    renal_remaining: Fraction | None = None
    renal_limit: PlanLimit | None = None

    def day_limit(self) -> PlanLimit | None:
        daily = [lim for lim in self.limits if lim.mg_day is not None]
        return min(daily, key=lambda lim: lim.mg_day or 0) if daily else None

    def dose_limit(self) -> PlanLimit | None:
        per = [lim for lim in self.limits if lim.mg_per_dose is not None]
        return min(per, key=lambda lim: lim.mg_per_dose or 0) if per else None


def _bounds(
    mono: Monograph,
    renal: RenalResult | None,
    protocol_max_mg_day: float | None,
    *,
    require_max: bool,
) -> _Bounds:
    limits: list[PlanLimit] = []
    notes: list[PlanNote] = []
    renal_remaining: Fraction | None = None
    renal_limit: PlanLimit | None = None
    label = mono.dosing.max_mg_day
    if label.value is not None:
        limits.append(
            PlanLimit(
                reason=f"{mono.name} maximum {label.value:g} {label.unit}",
                source=label.source,
                mg_day=label.value,
                unverified=label.unverified,
            )
        )
    per_dose = mono.dosing.max_mg_per_dose
    if per_dose is not None and per_dose.value is not None:
        limits.append(
            PlanLimit(
                reason=f"{mono.name} maximum {per_dose.value:g} mg per dose",
                source=per_dose.source,
                mg_per_dose=per_dose.value,
                unverified=per_dose.unverified,
            )
        )
    if protocol_max_mg_day is not None:
        check_positive(protocol_max_mg_day, "protocol_max_mg_day")
        if label.value is None or protocol_max_mg_day < label.value:
            limits.append(
                PlanLimit(
                    reason=f"program protocol maximum {protocol_max_mg_day:g} mg/day",
                    mg_day=float(protocol_max_mg_day),
                )
            )
        else:
            notes.append(
                PlanNote(
                    f"Program protocol maximum {protocol_max_mg_day:g} mg/day is not below the "
                    f"{label.value:g} mg/day maximum; the lower maximum applies.",
                    label.source,
                )
            )
    if label.value is None and protocol_max_mg_day is None and require_max:
        raise PlanRefused(
            "protocol_max_mg_day",
            f"Tandem's {mono.name} monograph holds no confirmed maximum daily dose "
            f"({label.note or 'none in the sources'}); give the program's protocol maximum.",
            label.source,
        )

    renal_rules = [
        r
        for r in mono.rules
        if (r.dose_limit is not None or r.severity == "contraindicated")
        and r.when.facts() <= _RENAL_FACTS
    ]
    if renal_rules and renal is None:
        notes.append(
            PlanNote(
                f"Kidney function not given: {mono.name}'s kidney limits were not checked.",
                _unique_sources(s for r in renal_rules for s in r.source),
            )
        )
    elif renal is not None:
        facts = renal.as_facts()
        for rule in renal_rules:
            truth = rule.when.evaluate(facts)
            if truth.value is None:
                notes.append(
                    PlanNote(
                        f"A kidney limit of {mono.name} could not be checked: "
                        f"{', '.join(f.replace('_', ' ') for f in sorted(truth.missing))}"
                        " not recorded.",
                        rule.source,
                    )
                )
                continue
            if not truth.value:
                continue
            if rule.severity == "contraindicated":
                raise PlanRefused("renal", rule.reason, rule.source)
            assert rule.dose_limit is not None
            lim = rule.dose_limit
            mg_day = lim.max_mg_day
            reason = rule.reason
            remaining = lim.remaining_fraction
            if remaining is not None and label.value is not None:
                reduced = round_mg(float(Fraction(str(label.value)) * remaining))
                mg_day = reduced if mg_day is None else min(mg_day, reduced)
                reason = (
                    f"{rule.reason} Ceiling {_mg(reduced)} mg/day = {label.value:g} × "
                    f"{remaining} (reduce by {lim.reduce_by})."
                )
            limit = PlanLimit(
                reason=reason,
                source=rule.source,
                mg_day=mg_day,
                mg_per_dose=lim.max_mg_per_dose,
                rule_id=rule.id,
                unverified=rule.unverified,
            )
            limits.append(limit)
            if remaining is not None and (renal_remaining is None or remaining < renal_remaining):
                renal_remaining, renal_limit = remaining, limit
            if rule.note:
                notes.append(PlanNote(f"Kidney limit: {rule.note}", rule.source, rule.unverified))

    day_values = [lim.mg_day for lim in limits if lim.mg_day is not None]
    dose_values = [lim.mg_per_dose for lim in limits if lim.mg_per_dose is not None]
    return _Bounds(
        mg_day=min(day_values) if day_values else None,
        mg_per_dose=min(dose_values) if dose_values else None,
        limits=tuple(limits),
        notes=tuple(notes),
        renal_remaining=renal_remaining,
        renal_limit=renal_limit,
    )


def _unique_sources(sources: Iterable[Source]) -> tuple[Source, ...]:
    return tuple({s.id: s for s in sources}.values())


def _mg(value: float) -> str:
    """Milligrams as people read them: 53.3333 → '53.3', 80.0 → '80', 0.18 → '0.18'."""
    return f"{round(value, 1) if value >= 10 else round(value, 2):g}"


def _as_dose(value: Dose | str, field_name: str) -> Dose:
    if isinstance(value, Dose):
        return value
    return parse_dose(value, field_name)


def _whole_days(value: int, field_name: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ImplausibleValue(field_name, f"must be a whole number of days, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ImplausibleValue(
            field_name, f"must be {'0 or more' if allow_zero else 'at least 1'} days, got {value}"
        )
    if value > MAX_DURATION_DAYS:
        raise ImplausibleValue(
            field_name, f"must be at most {MAX_DURATION_DAYS} days (a plan covers a year)"
        )
    return value


def _check_date(value: date, field_name: str) -> date:
    if not isinstance(value, date):
        raise ImplausibleValue(field_name, f"must be a date, got {value!r}")
    return value


def _slots(mg: float, frequency: Frequency) -> tuple[ScheduledDose, ...]:
    return tuple(ScheduledDose(slot, round_mg(mg)) for slot in frequency.slots)


# --------------------------------------------------------------------------- titration


def titration(
    medication_id: str,
    start: Dose | str,
    step_mg: float,
    every_days: int,
    target: Dose | str,
    start_date: date,
    renal: RenalResult | None = None,
    protocol_max_mg_day: float | None = None,
    *,
    hold_days: int | None = None,
    then_stop: bool = False,
) -> DosePlan:
    """Step the dose up by `step_mg` per dose every `every_days` days from `start` to `target`.

    Steps stay at the start frequency until the per-dose amount reaches the target amount;
    if the target frequency is higher, one more step switches to it (the label's
    20 mg TID → 20 mg QID). The target is held `hold_days` (default `every_days`) and then
    continues, unless `then_stop`, which is refused when the monograph requires a taper.
    """
    mono = load_monograph(medication_id)
    start_dose = _as_dose(start, "start")
    target_dose = _as_dose(target, "target")
    step = check_positive(step_mg, "step_mg")
    every = _whole_days(every_days, "every_days")
    hold = every if hold_days is None else _whole_days(hold_days, "hold_days")
    first = _check_date(start_date, "start_date")

    if target_dose.frequency.per_day < start_dose.frequency.per_day:
        raise ImplausibleValue(
            "target",
            f"target frequency {target_dose.frequency.code} is lower than the start frequency "
            f"{start_dose.frequency.code}; a titration only steps up",
        )
    if target_dose.mg < start_dose.mg - _EPS:
        raise ImplausibleValue(
            "target",
            f"target {target_dose} is below the start {start_dose}; use a taper to go down",
        )
    if target_dose == start_dose:
        raise ImplausibleValue(
            "target", f"target {target_dose} equals the start; nothing to titrate"
        )

    bounds = _bounds(mono, renal, protocol_max_mg_day, require_max=True)

    levels: list[Dose] = [start_dose]
    mg = start_dose.mg
    while mg < target_dose.mg - _EPS:
        mg = min(round_mg(mg + step), target_dose.mg)
        levels.append(Dose(mg=mg, frequency=start_dose.frequency))
    if target_dose.frequency != start_dose.frequency:
        levels.append(target_dose)

    for field_name, dose in (("start", start_dose), ("target", target_dose)):
        _check_within(field_name, dose, bounds, mono)
    renal_note = _check_renal_titration(mono, bounds, start_dose, step, renal)

    if then_stop and mono.discontinuation is not None and mono.discontinuation.taper_required:
        raise PlanRefused(
            "then_stop",
            f"A {mono.name} course must not end without a taper. {mono.discontinuation.text}",
            mono.discontinuation.source,
        )

    days: list[PlanDay] = []
    current = first
    for i, dose in enumerate(levels):
        length = hold if i == len(levels) - 1 else every
        for _ in range(length):
            days.append(PlanDay(current, _slots(dose.mg, dose.frequency)))
            current += timedelta(days=1)

    notes = list(bounds.notes)
    if renal_note is not None:
        notes.insert(0, renal_note)
    titr = mono.dosing.titration
    if titr is not None and (step != titr.step_mg or every != titr.every_days):
        notes.append(
            PlanNote(
                f"This plan steps {step:g} mg per dose every {every} days; the labelled titration "
                f"is {titr.text.rstrip('.').lower()}.",
                titr.source,
            )
        )
    if mono.discontinuation is not None and mono.discontinuation.taper_required:
        notes.append(PlanNote(mono.discontinuation.text, mono.discontinuation.source))

    return DosePlan(
        medication_id=mono.id,
        kind="titration",
        frequency=target_dose.frequency,
        days=tuple(days),
        ceiling_mg_day=bounds.mg_day,
        ceiling_mg_per_dose=bounds.mg_per_dose,
        limits=bounds.limits,
        notes=tuple(notes),
        continues=not then_stop,
        stop_date=current if then_stop else None,
        meta={
            "start": str(start_dose),
            "target": str(target_dose),
            "step_mg": step,
            "every_days": every,
        },
    )


# A reduced dose typed to 2 decimals (1.67 for 5 × 1/3) is within the reduction.
_TYPED = 0.005


def renal_titration(
    medication_id: str, renal: RenalResult | None
) -> tuple[Dose, float, Fraction, PlanLimit] | None:
    """The labelled start and step reduced for kidney function (start, step_mg, what remains
    of each dose, the kidney limit), or None when no kidney rule reduces the dose or the
    monograph has no labelled titration. A plan's defaults when the prescriber gives none."""
    mono = load_monograph(medication_id)
    label = mono.dosing.titration
    if label is None or renal is None:
        return None
    bounds = _bounds(mono, renal, None, require_max=False)
    if bounds.renal_remaining is None or bounds.renal_limit is None:
        return None
    f = bounds.renal_remaining
    start = Dose(mg=round(label.start.mg * float(f), 2), frequency=label.start.frequency)
    return start, round(label.step_mg * float(f), 2), f, bounds.renal_limit


def _check_renal_titration(
    mono: Monograph, bounds: _Bounds, start: Dose, step_mg: float, renal: RenalResult | None
) -> PlanNote | None:
    """A kidney rule that reduces the dose (baclofen: by 1/3, 1/2, 2/3 by CrCl) reduces the
    start and each step as it reduces the ceiling (and so the target): the labelled start and
    step times what remains. A start or step above them is refused; the plan says so."""
    label = mono.dosing.titration
    f = bounds.renal_remaining
    lim = bounds.renal_limit
    if f is None or lim is None:
        return None
    crcl = renal.crcl_ml_min if renal is not None else None
    kidney = f"creatinine clearance {crcl:.0f} mL/min" if crcl is not None else "kidney function"
    reduce_by = 1 - f
    if label is not None:
        start_max = label.start.mg * float(f)
        step_max = label.step_mg * float(f)
        if start.mg > start_max + _TYPED:
            raise PlanRefused(
                "start",
                f"with {kidney} the start is reduced by {reduce_by}: at most {_mg(start_max)} mg "
                f"per dose ({label.start} × {f}), not {start}. {lim.reason}",
                lim.source,
            )
        if step_mg > step_max + _TYPED:
            raise PlanRefused(
                "step_mg",
                f"with {kidney} each step is reduced by {reduce_by}: at most {_mg(step_max)} mg "
                f"per dose ({label.step_mg:g} mg × {f}), not {step_mg:g} mg. {lim.reason}",
                lim.source,
            )
        reduced = (
            f"start at most {_mg(start_max)} mg per dose, steps of at most {_mg(step_max)} mg, "
        )
    else:
        reduced = ""
    ceiling = f"target within {_mg(bounds.mg_day)} mg/day" if bounds.mg_day is not None else ""
    return PlanNote(
        f"Kidney function ({kidney}): start, step and target reduced by {reduce_by} "
        f"({reduced}{ceiling}).",
        lim.source,
        lim.unverified,
    )


def _check_renal_steps(
    mono: Monograph, bounds: _Bounds, specs: list[StepSpec], renal: RenalResult | None
) -> PlanNote | None:
    """`_check_renal_titration` for a titration written as steps: the first step's largest
    dose is the start, the largest rise of one dose between steps is the step."""
    first = specs[0]
    biggest = max(d.mg for d in first.doses)
    start = Dose(mg=biggest, frequency=next(f for f in Frequency if f.per_day == len(first.doses)))
    rises = [
        max(d.mg for d in b.doses) - max(d.mg for d in a.doses)
        for a, b in zip(specs, specs[1:], strict=False)
    ]
    try:
        return _check_renal_titration(mono, bounds, start, max([0.0, *rises]), renal)
    except PlanRefused as exc:
        where = first.where if exc.field == "start" else "steps"
        if exc.field == "step_mg":
            i = max(range(len(rises)), key=lambda k: rises[k])
            where = specs[i + 1].where or f"steps[{i + 1}]"
        raise PlanRefused(where or "steps", exc.reason, exc.sources) from None


def _check_within(field_name: str, dose: Dose, bounds: _Bounds, mono: Monograph) -> None:
    day_lim = bounds.day_limit()
    if bounds.mg_day is not None and day_lim is not None and dose.mg_per_day > bounds.mg_day + _EPS:
        raise PlanRefused(
            field_name,
            f"{field_name} {dose} is {dose.mg_per_day:g} mg/day, above the {_mg(bounds.mg_day)} "
            f"mg/day ceiling for {mono.name}: {day_lim.reason}",
            day_lim.source,
        )
    dose_lim = bounds.dose_limit()
    if (
        bounds.mg_per_dose is not None
        and dose_lim is not None
        and dose.mg > bounds.mg_per_dose + _EPS
    ):
        raise PlanRefused(
            field_name,
            f"{field_name} {dose} is {dose.mg:g} mg per dose, above the {bounds.mg_per_dose:g} mg "
            f"per-dose ceiling for {mono.name}: {dose_lim.reason}",
            dose_lim.source,
        )


# --------------------------------------------------------------------------- taper


def check_taper(
    mono: Monograph,
    from_mg_day: float,
    from_mg_dose: float,
    days: Iterable[tuple[tuple[ScheduledDose, ...], str]],
    over_days: int,
) -> None:
    """The taper rules every adapter meets (CLI, page, API), for a medication that must not be
    stopped at once: a taper no shorter than the monograph's minimum, never a dose above the
    one before it (per dose or per day), and a last day of no more than one step, so that the
    final drop is no bigger than a step. `days` are each day's doses with the field to name."""
    disc = mono.discontinuation
    if disc is None or not disc.taper_required:
        return
    guide = mono.dosing.taper
    if guide is not None and guide.min_days is not None and over_days < guide.min_days:
        raise PlanRefused(
            "over_days",
            f"a {mono.name} taper runs at least {guide.min_days} days; this one runs "
            f"{over_days}. {guide.text}",
            guide.source,
        )
    prev_day = from_mg_day
    prev_dose = from_mg_dose
    largest_step = 0.0
    last: tuple[tuple[ScheduledDose, ...], str] | None = None
    for doses, where in days:
        total = round_mg(sum(d.mg for d in doses))
        biggest = max((d.mg for d in doses), default=0.0)
        if total > prev_day + _EPS or biggest > prev_dose + _EPS:
            raise PlanRefused(
                where,
                f"a taper never raises the dose: {_mg(total)} mg/day with {_mg(biggest)} mg "
                f"in one dose, after {_mg(prev_day)} mg/day and {_mg(prev_dose)} mg per dose",
                disc.source,
            )
        largest_step = max(largest_step, prev_day - total)
        prev_day, prev_dose = total, biggest
        last = (doses, where)
    if last is None:
        return
    # The final drop (the last day's total to nothing) is at most one of the taper's own
    # steps, or one dose unit of the monograph (a dose already that small is held, then
    # stopped). A step unit as big as the dose takes no step at all.
    unit = mono.dosing.dose_unit_mg.value if mono.dosing.dose_unit_mg is not None else None
    step = max(largest_step, unit or 0.0)
    if prev_day > step + _EPS:
        raise PlanRefused(
            last[1],
            f"the taper stops from {_mg(prev_day)} mg/day, a drop bigger than one step "
            f"({_mg(step)} mg/day) from the current {_mg(from_mg_day)} mg/day; step down to "
            f"one step's dose before stopping. {disc.text}",
            disc.source,
        )


def _taper_levels(total_units: float, n_days: int) -> list[int]:
    """Daily totals, in whole dose units, strictly decreasing, last = 1 unit.

    The totals sit as close as whole units allow to equal fractions of the starting total:
    start × (n − k + 1)/(n + 1) for k = 1..n, where n is the number of levels (no more than
    the days available, nor the whole units strictly below the start).
    """
    below = math.ceil(total_units - _EPS) - 1
    n = min(below, n_days)
    levels: list[int] = []
    prev = below + 1
    for k in range(1, n + 1):
        ideal = total_units * (n - k + 1) / (n + 1)
        c = round(ideal)
        c = min(c, prev - 1)
        c = max(c, n - k + 1)
        levels.append(c)
        prev = c
    return levels


def _spread(n_days: int, n_levels: int) -> list[int]:
    """Split n_days over n_levels as evenly as whole days allow."""
    return [((k + 1) * n_days) // n_levels - (k * n_days) // n_levels for k in range(n_levels)]


def _distribute(units: int, unit_mg: float, frequency: Frequency) -> tuple[ScheduledDose, ...]:
    slots = frequency.slots
    f = len(slots)
    if units >= f:
        base, extra = divmod(units, f)
        counts = [base + (1 if i < extra else 0) for i in range(f)]
    else:
        chosen = {0} if units == 1 else {round(i * (f - 1) / (units - 1)) for i in range(units)}
        counts = [1 if i in chosen else 0 for i in range(f)]
    return tuple(
        ScheduledDose(slot, round_mg(c * unit_mg))
        for slot, c in zip(slots, counts, strict=True)
        if c
    )


def taper(
    medication_id: str,
    from_dose: Dose | str,
    over_days: int,
    start_date: date,
    renal: RenalResult | None = None,
    *,
    unit_mg: float | None = None,
) -> DosePlan:
    """Reduce from `from_dose` to nothing over `over_days` days (see the module notes).

    Refused when `over_days` is 0 for a medication that must be tapered. `unit_mg` is the
    smallest amount a dose changes by; it defaults to the monograph's dose unit.
    """
    mono = load_monograph(medication_id)
    dose = _as_dose(from_dose, "from_dose")
    if isinstance(over_days, bool) or not isinstance(over_days, int):
        raise ImplausibleValue("over_days", f"must be a whole number of days, got {over_days!r}")
    if over_days < 0:
        raise ImplausibleValue("over_days", f"must be 0 or more days, got {over_days}")
    if over_days > MAX_DURATION_DAYS:
        raise ImplausibleValue("over_days", f"must be at most {MAX_DURATION_DAYS} days")
    first = _check_date(start_date, "start_date")
    disc = mono.discontinuation
    if over_days == 0:
        if disc is not None and disc.taper_required:
            raise PlanRefused(
                "over_days",
                f"{mono.name} must not be stopped at once: {disc.text}",
                disc.source,
            )
        raise ImplausibleValue("over_days", "a taper needs at least 1 day")

    if unit_mg is not None:
        unit = check_positive(unit_mg, "unit_mg")
    elif mono.dosing.dose_unit_mg is not None and mono.dosing.dose_unit_mg.value is not None:
        unit = mono.dosing.dose_unit_mg.value
    else:
        raise ImplausibleValue(
            "unit_mg", f"the {mono.name} monograph has no dose unit; give the step unit in mg"
        )

    notes: list[PlanNote] = []
    total_units = dose.mg_per_day / unit
    levels = _taper_levels(total_units, over_days)
    if not levels:
        # Already at (or below) one unit a day: hold it for the period, then stop.
        per_level_days = [over_days]
        day_doses = [_slots(dose.mg, dose.frequency)]
        notes.append(
            PlanNote(
                f"{dose} is already the smallest step ({unit:g} mg unit); it is held for "
                f"{over_days} days, then stopped."
            )
        )
    else:
        per_level_days = _spread(over_days, len(levels))
        day_doses = [_distribute(c, unit, dose.frequency) for c in levels]

    days: list[PlanDay] = []
    current = first
    for doses, length in zip(day_doses, per_level_days, strict=True):
        for _ in range(length):
            days.append(PlanDay(current, doses))
            current += timedelta(days=1)
    check_taper(
        mono,
        dose.mg_per_day,
        dose.mg,
        [(d.doses, "unit_mg" if unit_mg is not None else "over_days") for d in days],
        over_days,
    )

    if disc is not None:
        notes.insert(0, PlanNote(disc.text, disc.source, disc.unverified))
    guide = mono.dosing.taper
    if guide is not None:
        short = guide.min_days is not None and over_days < guide.min_days
        long = guide.max_days is not None and over_days > guide.max_days
        if short or long:
            notes.append(
                PlanNote(
                    f"This taper runs {over_days} days; the source describes "
                    f"{guide.min_days}-{guide.max_days} days. {guide.text}",
                    guide.source,
                    guide.unverified,
                )
            )
    label = mono.dosing.max_mg_day
    if label.value is not None and dose.mg_per_day > label.value + _EPS:
        notes.append(
            PlanNote(
                f"Tapering from {dose.mg_per_day:g} mg/day, above the {label.value:g} mg/day maximum.",
                label.source,
            )
        )
    bounds = _bounds(mono, renal, None, require_max=False) if renal is not None else None
    if bounds is not None:
        notes.extend(bounds.notes)
        if bounds.mg_day is not None and dose.mg_per_day > bounds.mg_day + _EPS:
            lim = bounds.day_limit()
            notes.append(
                PlanNote(
                    f"The starting dose is above the {_mg(bounds.mg_day)} mg/day ceiling for this "
                    f"patient's kidney function; {lim.reason if lim else ''}",
                    lim.source if lim else (),
                )
            )

    return DosePlan(
        medication_id=mono.id,
        kind="taper",
        frequency=dose.frequency,
        days=tuple(days),
        ceiling_mg_day=None if bounds is None else bounds.mg_day,
        ceiling_mg_per_dose=None if bounds is None else bounds.mg_per_dose,
        limits=() if bounds is None else bounds.limits,
        notes=tuple(notes),
        continues=False,
        stop_date=current,
        meta={"from": str(dose), "over_days": over_days, "unit_mg": unit},
    )


# --------------------------------------------------------------------------- maintenance


def maintenance(
    medication_id: str,
    dose: Dose | str,
    start_date: date,
    renal: RenalResult | None = None,
    protocol_max_mg_day: float | None = None,
    *,
    hold_days: int = 7,
) -> DosePlan:
    """One dose, continued from `start_date` (naltrexone 50mg-daily, acamprosate 666mg-tid).

    Bounded like a titration: the maximum (or the program's protocol maximum when the
    monograph holds none) and the kidney limits. `hold_days` days are listed; the dose goes on.
    """
    mono = load_monograph(medication_id)
    the_dose = _as_dose(dose, "dose")
    first = _check_date(start_date, "start_date")
    hold = _whole_days(hold_days, "hold_days")
    bounds = _bounds(mono, renal, protocol_max_mg_day, require_max=True)
    _check_within("dose", the_dose, bounds, mono)
    days = tuple(
        PlanDay(first + timedelta(days=i), _slots(the_dose.mg, the_dose.frequency))
        for i in range(hold)
    )
    notes = list(bounds.notes)
    if mono.discontinuation is not None and mono.discontinuation.taper_required:
        notes.append(PlanNote(mono.discontinuation.text, mono.discontinuation.source))
    return DosePlan(
        medication_id=mono.id,
        kind="maintenance",
        frequency=the_dose.frequency,
        days=days,
        ceiling_mg_day=bounds.mg_day,
        ceiling_mg_per_dose=bounds.mg_per_dose,
        limits=bounds.limits,
        notes=tuple(notes),
        continues=True,
        meta={"dose": str(the_dose)},
    )


# --------------------------------------------------------------------------- from steps

MAX_PLAN_DAYS = 366
_SLOT_ORDER = Frequency.QID.slots


@dataclass(frozen=True)
class StepSpec:
    """A run of days with the same doses, as a prescription states it (e.g. a FHIR dosage
    instruction). `end` is the last day, inclusive; None means the doses go on (last step only).
    `where` names the step in error messages (e.g. 'dosageInstruction[2]')."""

    start: date
    end: date | None
    doses: tuple[ScheduledDose, ...]
    where: str = ""


def plan_from_steps(
    medication_id: str,
    steps: Iterable[StepSpec],
    renal: RenalResult | None = None,
    protocol_max_mg_day: float | None = None,
) -> DosePlan:
    """A plan written out step by step, checked against the same bounds as `titration`.

    The steps must follow each other day by day. A plan whose daily totals only rise (or stay)
    is a titration (a maintenance plan if there is one level); one whose totals only fall and
    that ends is a taper. A plan that ends above the smallest dose step of a medication that
    must be tapered is refused, as is any step above the ceiling.
    """
    mono = load_monograph(medication_id)
    specs = list(steps)
    if not specs:
        raise ImplausibleValue("steps", "a plan needs at least one step")
    for i, spec in enumerate(specs):
        where = spec.where or f"steps[{i}]"
        _check_date(spec.start, where)
        if spec.end is not None:
            _check_date(spec.end, where)
            if spec.end < spec.start:
                raise ImplausibleValue(where, f"ends ({spec.end}) before it starts ({spec.start})")
        elif i != len(specs) - 1:
            raise ImplausibleValue(where, "only the last step may go on without an end date")
        if i > 0:
            before = specs[i - 1]
            assert before.end is not None
            if spec.start != before.end + timedelta(days=1):
                raise ImplausibleValue(
                    where,
                    f"starts {spec.start}; it must start the day after the previous step "
                    f"ends ({before.end + timedelta(days=1)})",
                )
        if not spec.doses:
            raise ImplausibleValue(where, "a step needs at least one dose")
        slots = [d.time_slot for d in spec.doses]
        if any(s not in _SLOT_ORDER for s in slots) or len(set(slots)) != len(slots):
            raise ImplausibleValue(
                where, f"time slots must be distinct, from {', '.join(_SLOT_ORDER)}; got {slots}"
            )
        for dose in spec.doses:
            check_positive(dose.mg, where)
    last = specs[-1]
    span_end = last.end if last.end is not None else last.start
    if (span_end - specs[0].start).days + 1 > MAX_PLAN_DAYS:
        raise ImplausibleValue("steps", f"a plan is written out for at most {MAX_PLAN_DAYS} days")

    totals = [round_mg(sum(d.mg for d in s.doses)) for s in specs]
    rising = all(b >= a - _EPS for a, b in zip(totals, totals[1:], strict=False))
    falling = all(b <= a + _EPS for a, b in zip(totals, totals[1:], strict=False))
    ends = last.end is not None
    kind: Literal["titration", "taper", "maintenance"]
    if len(set(totals)) == 1 and len({tuple(s.doses) for s in specs}) == 1:
        kind = "maintenance"
    elif rising:
        kind = "titration"
    elif falling and ends:
        kind = "taper"
    elif falling:
        raise ImplausibleValue(
            last.where or "steps",
            "a plan that lowers the dose must end (a taper); to go on at a lower dose, "
            "start a new plan at that dose",
        )
    else:
        raise ImplausibleValue(
            "steps",
            "the daily totals go both up and down; write the titration and the taper "
            "as separate plans",
        )

    disc = mono.discontinuation
    if ends and disc is not None and disc.taper_required:
        unit = mono.dosing.dose_unit_mg.value if mono.dosing.dose_unit_mg else None
        if kind != "taper" or unit is None or totals[-1] > unit + _EPS:
            raise PlanRefused(
                last.where or "steps",
                f"{mono.name} must not be stopped at once: the plan ends at {totals[-1]:g} mg/day"
                + (f"; taper down to {unit:g} mg/day before stopping" if unit else "")
                + f". {disc.text}",
                disc.source,
            )

    if kind == "taper":
        first_doses = specs[0].doses
        check_taper(
            mono,
            totals[0],
            max(d.mg for d in first_doses),
            [(spec.doses, spec.where or f"steps[{i}]") for i, spec in enumerate(specs[1:], 1)],
            (span_end - specs[0].start).days + 1,
        )

    bounds = _bounds(mono, renal, protocol_max_mg_day, require_max=kind != "taper")
    if kind != "taper":
        for spec, total in zip(specs, totals, strict=True):
            where = spec.where or "steps"
            day_lim = bounds.day_limit()
            if bounds.mg_day is not None and day_lim is not None and total > bounds.mg_day + _EPS:
                raise PlanRefused(
                    where,
                    f"{total:g} mg/day is above the {_mg(bounds.mg_day)} mg/day ceiling for "
                    f"{mono.name}: {day_lim.reason}",
                    day_lim.source,
                )
            dose_lim = bounds.dose_limit()
            biggest = max(d.mg for d in spec.doses)
            if (
                bounds.mg_per_dose is not None
                and dose_lim is not None
                and (biggest > bounds.mg_per_dose + _EPS)
            ):
                raise PlanRefused(
                    where,
                    f"{biggest:g} mg per dose is above the {bounds.mg_per_dose:g} mg per-dose "
                    f"ceiling for {mono.name}: {dose_lim.reason}",
                    dose_lim.source,
                )

    renal_note = None
    if kind == "titration":
        renal_note = _check_renal_steps(mono, bounds, specs, renal)

    days: list[PlanDay] = []
    for spec in specs:
        ordered = tuple(sorted(spec.doses, key=lambda d: _SLOT_ORDER.index(d.time_slot)))
        current = spec.start
        for _ in range(((spec.end or spec.start) - spec.start).days + 1):
            days.append(PlanDay(current, ordered))
            current += timedelta(days=1)
    notes = list(bounds.notes)
    if renal_note is not None:
        notes.insert(0, renal_note)
    if kind == "taper" and bounds.mg_day is not None and totals[0] > bounds.mg_day + _EPS:
        lim = bounds.day_limit()
        notes.append(
            PlanNote(
                f"The starting dose is above the {_mg(bounds.mg_day)} mg/day ceiling for this "
                f"patient; {lim.reason if lim else ''}",
                lim.source if lim else (),
            )
        )
    if disc is not None and disc.taper_required:
        notes.append(PlanNote(disc.text, disc.source, disc.unverified))
    most = max(specs, key=lambda s: len(s.doses))
    frequency = next(f for f in Frequency if f.per_day == len(most.doses))
    return DosePlan(
        medication_id=mono.id,
        kind=kind,
        frequency=frequency,
        days=tuple(days),
        ceiling_mg_day=bounds.mg_day,
        ceiling_mg_per_dose=bounds.mg_per_dose,
        limits=bounds.limits,
        notes=tuple(notes),
        continues=not ends,
        stop_date=(last.end + timedelta(days=1)) if last.end is not None else None,
        meta={"written_as": "steps"},
    )


def plan_ceiling(
    medication_id: str,
    renal: RenalResult | None = None,
    protocol_max_mg_day: float | None = None,
) -> tuple[float | None, float | None, tuple[PlanLimit, ...], tuple[PlanNote, ...]]:
    """The ceilings a new plan would meet (mg/day, mg per dose) with their limits and notes,
    for showing beside a form before anything is asked. Raises `PlanRefused` when kidney
    function contraindicates the medication, as a plan would."""
    bounds = _bounds(load_monograph(medication_id), renal, protocol_max_mg_day, require_max=False)
    return bounds.mg_day, bounds.mg_per_dose, bounds.limits, bounds.notes
