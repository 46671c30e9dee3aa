"""Reading form fields the same way on every page."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal, overload
from zoneinfo import ZoneInfo

from tandem.errors import InvalidInput

MAX_ROW_ID = 2**31 - 1  # the smallest integer column on any engine


def row_id(text: object) -> int | None:
    """A row id chosen in a form or the address (a program, unit, plan): whole ASCII digits
    within the range of an id column, otherwise None (the caller names the field)."""
    raw = str(text).strip()
    if not raw.isdigit() or not raw.isascii() or len(raw) > 10:
        return None
    value = int(raw)
    return value if 0 < value <= MAX_ROW_ID else None


@overload
def local_datetime(
    text: str, zone: str | tzinfo, field: str, required: Literal[True] = True
) -> datetime: ...
@overload
def local_datetime(
    text: str, zone: str | tzinfo, field: str, required: bool
) -> datetime | None: ...
def local_datetime(
    text: str, zone: str | tzinfo, field: str, required: bool = True
) -> datetime | None:
    """A `datetime-local` value, read in the program's time zone (an explicit offset wins)."""
    text = text.strip()
    if not text:
        if required:
            raise InvalidInput(field, "enter a date and time")
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "enter a date and time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=ZoneInfo(zone) if isinstance(zone, str) else zone)
    return value
