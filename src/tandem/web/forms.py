"""Reading form fields the same way on every page."""

from __future__ import annotations

from datetime import datetime, tzinfo
from typing import Literal, overload
from zoneinfo import ZoneInfo

from tandem.errors import InvalidInput


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
