"""FHIR search values shared by every resource: dates (prefixes eq, ge, gt, le, lt) as instant
bounds, and the error a bad search value raises (answered 400 naming the parameter)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta


class SearchValueError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param
        self.message = message


@dataclass(frozen=True)
class DateBounds:
    ge: datetime | None = None
    gt: datetime | None = None
    le: datetime | None = None
    lt: datetime | None = None


def parse_dates(values: list[str]) -> DateBounds:
    """FHIR date search values (prefix eq, ge, gt, le, lt). A date alone is a UTC day; a time
    must carry its zone."""
    bounds: dict[str, datetime] = {}
    for text in values:
        prefix, raw = ("eq", text)
        if text[:2] in ("eq", "ge", "gt", "le", "lt"):
            prefix, raw = text[:2], text[2:]
        start, end = _period(raw)
        if prefix == "eq":
            _tighter(bounds, "ge", start)
            _tighter(bounds, "lt", end)
        elif prefix == "ge":
            _tighter(bounds, "ge", start)
        elif prefix == "gt":
            _tighter(bounds, "ge", end)
        elif prefix == "le":
            _tighter(bounds, "lt", end)
        else:
            _tighter(bounds, "lt", start)
    return DateBounds(ge=bounds.get("ge"), lt=bounds.get("lt"))


def _tighter(bounds: dict[str, datetime], key: str, value: datetime) -> None:
    current = bounds.get(key)
    if current is None or (value > current if key == "ge" else value < current):
        bounds[key] = value


def _period(raw: str) -> tuple[datetime, datetime]:
    """The instant range a date or dateTime value covers (years 1 to 9998, so that any zone
    and any day's end stay in range)."""
    try:
        if "T" not in raw:
            if len(raw) == 4 and raw.isdigit():
                start = datetime(int(raw), 1, 1, tzinfo=UTC)
                end = start.replace(year=start.year + 1)
            else:
                day = date.fromisoformat(raw)
                start = datetime.combine(day, time(), tzinfo=UTC)
                end = start + timedelta(days=1)
        else:
            start = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            end = start + timedelta(seconds=1)
    except (ValueError, OverflowError):
        raise SearchValueError("date", f"{raw!r} is not a FHIR date or dateTime") from None
    if start.tzinfo is None:
        raise SearchValueError("date", f"{raw!r}: a time needs its zone (Z or +hh:mm)")
    if not 1 < start.year < 9999 or not 1 < end.year < 9999:
        raise SearchValueError("date", f"{raw!r} is out of range (years 2 to 9998)")
    return start, end


def day_bounds(bounds: DateBounds) -> tuple[date | None, date | None]:
    """For a value that is a whole calendar day: the first and the last day whose 24 hours
    overlap the instant bounds (a day read as its UTC day, as a date search value is)."""
    first = last = None
    if bounds.ge is not None:
        first = bounds.ge.astimezone(UTC).date()
    if bounds.lt is not None:
        end = bounds.lt.astimezone(UTC)
        last = end.date() - timedelta(days=1) if end.time() == time() else end.date()
    return first, last
