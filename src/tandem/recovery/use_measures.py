"""Use tracking, pure: what a day of use or a drug-screen result may be, and what is derived
from them (days abstinent, heavy-drinking days, percent days abstinent, the month calendar).

No session, no clock: `today` is passed in. A day nobody reported is *unknown*, never
abstinent: every measure counts reported days apart from unreported ones.
"""

from __future__ import annotations

import calendar
import functools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tandem.errors import InvalidInput
from tandem.evidence import Source
from tandem.recovery.substances import substance, substances

DATA = Path(__file__).parent / "data" / "use_measures.yaml"

SCREEN_RESULTS = ("positive", "negative", "invalid")
# The most drinks a day the table holds (Numeric(5, 1)); more is not a number we can store.
MAX_DRINKS = 9999.9
Sex = Literal["female", "male"]
DayState = Literal["used", "abstinent", "unknown"]


# --------------------------------------------------------------------------- the data file


class _Fact(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    text: str
    source: tuple[Source, ...] = Field(min_length=1)


class StandardDrink(_Fact):
    grams_alcohol: float = Field(gt=0)


class HeavyDrinkingDay(_Fact):
    female: float = Field(gt=0)
    male: float = Field(gt=0)
    unknown_sex: Literal["possibly_heavy"]


class Code(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    code: str = Field(pattern=r"^\d{1,7}-\d$")
    display: str
    note: str | None = None
    source: tuple[Source, ...] = ()


class Loinc(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    drinks_per_day: Code
    urine_screen: dict[str, Code]
    urine_screen_source: tuple[Source, ...] = Field(min_length=1)
    not_confirmed: tuple[str, ...]


class UseFacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    standard_drink: StandardDrink
    heavy_drinking_day: HeavyDrinkingDay
    loinc: Loinc


@functools.cache
def use_facts() -> UseFacts:
    facts = UseFacts.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8")))
    for substance_id in facts.loinc.urine_screen:
        substance(substance_id, "loinc.urine_screen")
    if not facts.loinc.drinks_per_day.source:
        raise ValueError(f"{DATA.name}: the drinks-per-day code needs its source")
    if facts.heavy_drinking_day.female > facts.heavy_drinking_day.male:
        raise ValueError(f"{DATA.name}: heavy-drinking figures out of order")
    return facts


# --------------------------------------------------------------------------- input


@dataclass(frozen=True)
class UseReport:
    """One substance on one day: used or not, and standard drinks for alcohol (None: not said)."""

    day: date
    substance: str
    used: bool
    standard_drinks: float | None = None


def check_use(
    substance_id: str,
    used: bool | None,
    standard_drinks: float | None,
    day: date,
    today: date,
    *,
    fields: dict[str, str] | None = None,
) -> UseReport:
    """A use report as it may be stored, or InvalidInput naming the field (`fields` renames the
    fields for the adapter: substance, used, standard_drinks, day)."""
    name = {"substance": "substance", "used": "used", "standard_drinks": "standard_drinks"}
    name |= {"day": "day"} | (fields or {})
    kind = substance(substance_id, name["substance"])
    if day > today:
        raise InvalidInput(name["day"], f"{day.isoformat()} has not happened yet")
    drinks = standard_drinks
    if drinks is not None:
        if not kind.drinks:
            raise InvalidInput(
                name["standard_drinks"],
                f"standard drinks are counted for alcohol, not {kind.plain}",
            )
        if not math.isfinite(drinks) or drinks < 0:
            raise InvalidInput(name["standard_drinks"], "give 0 or more standard drinks")
        if drinks > MAX_DRINKS:
            raise InvalidInput(name["standard_drinks"], f"at most {MAX_DRINKS:g} standard drinks")
        drinks = round(drinks, 1)
        if used is None:
            used = drinks > 0
    if used is None:
        raise InvalidInput(name["used"], "say whether it was used that day")
    if drinks is not None:
        if used and drinks == 0:
            raise InvalidInput(
                name["standard_drinks"], "used that day but 0 drinks: give the number of drinks"
            )
        if not used and drinks > 0:
            raise InvalidInput(
                name["standard_drinks"], "not used that day, so no drinks: leave the number empty"
            )
    return UseReport(day=day, substance=kind.id, used=used, standard_drinks=drinks)


@dataclass(frozen=True)
class ScreenResult:
    substance: str
    result: str


def check_screen(
    results: Iterable[tuple[str, str]], collected_on: date, today: date, field: str = "results"
) -> tuple[ScreenResult, ...]:
    """A drug screen's results, one per substance (positive, negative or invalid)."""
    if collected_on > today:
        raise InvalidInput("collected_at", "the specimen cannot be collected in the future")
    out: list[ScreenResult] = []
    seen: set[str] = set()
    for substance_id, result in results:
        kind = substance(substance_id, field)
        if result not in SCREEN_RESULTS:
            raise InvalidInput(
                f"{field}.{kind.id}", f"one of {', '.join(SCREEN_RESULTS)}, not {result!r}"
            )
        if kind.id in seen:
            raise InvalidInput(f"{field}.{kind.id}", "one result a substance")
        seen.add(kind.id)
        out.append(ScreenResult(kind.id, result))
    if not out:
        raise InvalidInput(field, "give the result for at least one substance")
    return tuple(out)


# --------------------------------------------------------------------------- derived measures


def days_between(start: date, end: date) -> list[date]:
    """Every day from `start` to `end`, both included."""
    if end < start:
        raise InvalidInput("end", "the period ends before it starts")
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def _by_day(reports: Iterable[UseReport]) -> dict[date, dict[str, UseReport]]:
    days: dict[date, dict[str, UseReport]] = {}
    for report in reports:
        days.setdefault(report.day, {})[report.substance] = report
    return days


def day_state(day_reports: dict[str, UseReport], tracked: Sequence[str] | None) -> DayState:
    """One day across `tracked` substances (None: one substance's reports, any listed).

    Used if any report says used; abstinent only when every tracked substance was reported
    not used; otherwise unknown (a day with some substances unreported is not abstinent)."""
    if any(r.used for r in day_reports.values()):
        return "used"
    wanted = tracked if tracked is not None else list(day_reports)
    if wanted and all(s in day_reports for s in wanted):
        return "abstinent"
    return "unknown"


@dataclass(frozen=True)
class Abstinence:
    """Days of a period: abstinent, used and unknown (nobody reported) add up to `days`."""

    days: int
    abstinent: int
    used: int
    unknown: int

    @property
    def reported(self) -> int:
        return self.abstinent + self.used

    @property
    def percent_abstinent(self) -> float | None:
        """Percent of the period's days reported abstinent (unreported days count against)."""
        return None if self.days == 0 else round(100 * self.abstinent / self.days, 1)

    @property
    def percent_abstinent_of_reported(self) -> float | None:
        """Percent of the reported days that were abstinent; None when none was reported."""
        return None if self.reported == 0 else round(100 * self.abstinent / self.reported, 1)


def abstinence(
    reports: Iterable[UseReport],
    start: date,
    end: date,
    substance_id: str | None = None,
    tracked: Sequence[str] = (),
) -> Abstinence:
    """Days abstinent over `start`..`end`: from one substance (`substance_id`), or from every
    substance in `tracked` (the care plan's substances) when `substance_id` is None."""
    period = days_between(start, end)
    if substance_id is not None:
        substance(substance_id)
        wanted: Sequence[str] | None = [substance_id]
        relevant = [r for r in reports if r.substance == substance_id]
    else:
        wanted = list(tracked) or None
        relevant = list(reports)
    by_day = _by_day(r for r in relevant if start <= r.day <= end)
    states = [day_state(by_day.get(d, {}), wanted) for d in period]
    return Abstinence(
        days=len(period),
        abstinent=states.count("abstinent"),
        used=states.count("used"),
        unknown=states.count("unknown"),
    )


def current_run(reports: Iterable[UseReport], today: date, substance_id: str) -> int:
    """Consecutive days abstinent from `substance_id` up to `today` (an unreported day ends the
    run: it is not known to be abstinent)."""
    by_day = {r.day: r for r in reports if r.substance == substance_id}
    run = 0
    day = today
    while (report := by_day.get(day)) is not None and not report.used:
        run += 1
        day -= timedelta(days=1)
    return run


@dataclass(frozen=True)
class HeavyDays:
    """Alcohol days of a period by drinks: heavy, possibly heavy (sex unknown, between the two
    figures), drinking with the number unknown; `threshold` says which figure was used."""

    heavy: int
    possibly_heavy: int
    drinks_unknown: int
    threshold: str


def heavy_drinking_days(
    reports: Iterable[UseReport], start: date, end: date, sex: Sex | None
) -> HeavyDays:
    facts = use_facts().heavy_drinking_day
    heavy = possibly = unknown = 0
    for r in reports:
        if r.substance != "alcohol" or not start <= r.day <= end or not r.used:
            continue
        if r.standard_drinks is None:
            unknown += 1
        elif sex is not None:
            heavy += r.standard_drinks >= (facts.female if sex == "female" else facts.male)
        elif r.standard_drinks >= facts.male:
            heavy += 1
        elif r.standard_drinks >= facts.female:
            possibly += 1
    if sex == "female":
        threshold = f"{facts.female:g} or more drinks a day (women)"
    elif sex == "male":
        threshold = f"{facts.male:g} or more drinks a day (men)"
    else:
        threshold = (
            f"sex not recorded: {facts.male:g} or more drinks is heavy under either figure; "
            f"{facts.female:g} to {facts.male:g} is counted as possibly heavy"
        )
    return HeavyDays(heavy, possibly, unknown, threshold)


def is_heavy(drinks: float | None, sex: Sex | None) -> bool | None:
    """Whether a day's drinks make it a heavy-drinking day; None when it cannot be said."""
    facts = use_facts().heavy_drinking_day
    if drinks is None:
        return None
    if sex is None:
        if drinks >= facts.male:
            return True
        return None if drinks >= facts.female else False
    return drinks >= (facts.female if sex == "female" else facts.male)


# --------------------------------------------------------------------------- the month calendar


@dataclass(frozen=True)
class CellSubstance:
    substance: str
    label: str
    state: DayState
    drinks: float | None = None
    heavy: bool | None = None


@dataclass(frozen=True)
class DayCell:
    day: date
    in_month: bool
    future: bool
    state: DayState
    substances: tuple[CellSubstance, ...] = ()
    screens: tuple[ScreenResult, ...] = ()

    @property
    def positive(self) -> bool:
        return any(s.result == "positive" for s in self.screens)


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    weeks: tuple[tuple[DayCell, ...], ...]
    tracked: tuple[str, ...]
    previous: tuple[int, int] = field(default=(0, 0))
    next: tuple[int, int] | None = None

    @property
    def title(self) -> str:
        return f"{calendar.month_name[self.month]} {self.year}"


def month_of(text: str, today: date) -> tuple[int, int]:
    """A `YYYY-MM` month from the address, or today's month when none is given."""
    if not text:
        return today.year, today.month
    try:
        year, month = (int(p) for p in text.split("-"))
        date(year, month, 1)
    except ValueError:
        raise InvalidInput("month", "give the month as YYYY-MM") from None
    if not 1900 < year < 9999:
        raise InvalidInput("month", "give the month as YYYY-MM")
    return year, month


def month_view(
    year: int,
    month: int,
    reports: Iterable[UseReport],
    screens: Iterable[tuple[date, ScreenResult]],
    today: date,
    tracked: Sequence[str],
    sex: Sex | None = None,
) -> Month:
    """The month as weeks (Monday first): for each day the use of each tracked substance
    (used, abstinent, unknown) and any screen results that day."""
    labels = {s.id: s.label for s in substances()}
    by_day = _by_day(reports)
    screens_by_day: dict[date, list[ScreenResult]] = {}
    for day, result in screens:
        screens_by_day.setdefault(day, []).append(result)
    shown = list(tracked)
    if not shown:
        shown = sorted({s for day in by_day.values() for s in day}, key=list(labels).index)
    weeks = []
    for week in calendar.Calendar(firstweekday=0).monthdatescalendar(year, month):
        cells = []
        for day in week:
            reported = by_day.get(day, {})
            parts = []
            for s in shown:
                r = reported.get(s)
                state: DayState = "unknown" if r is None else ("used" if r.used else "abstinent")
                drinks = r.standard_drinks if r is not None else None
                parts.append(
                    CellSubstance(
                        s,
                        labels.get(s, s),
                        state,
                        drinks,
                        is_heavy(drinks, sex) if s == "alcohol" and r and r.used else None,
                    )
                )
            cells.append(
                DayCell(
                    day=day,
                    in_month=day.month == month,
                    future=day > today,
                    state=day_state(reported, shown or None),
                    substances=tuple(parts),
                    screens=tuple(screens_by_day.get(day, ())),
                )
            )
        weeks.append(tuple(cells))
    first = date(year, month, 1)
    before = first - timedelta(days=1)
    after = date(year + (month == 12), month % 12 + 1, 1)
    return Month(
        year,
        month,
        tuple(weeks),
        tuple(shown),
        previous=(before.year, before.month),
        next=(after.year, after.month) if after <= today else None,
    )


CRAVING_MIN, CRAVING_MAX = 0, 10


def check_craving(substance_id: str, rating: int, field: str = "rating") -> tuple[str, int]:
    """A single craving rating: a whole number from 0 (none) to 10 (the strongest imaginable)."""
    kind = substance(substance_id, "substance")
    if isinstance(rating, bool) or not isinstance(rating, int):
        raise InvalidInput(field, "a whole number from 0 to 10")
    if not CRAVING_MIN <= rating <= CRAVING_MAX:
        raise InvalidInput(field, f"from {CRAVING_MIN} to {CRAVING_MAX}, not {rating}")
    return kind.id, rating
