"""Questions to a counselor, pure: what a person may send (sizes, plain text, a call-back
window), the states a question goes through, and the queue's order. No session, no request, no
clock (`now` is passed in). Raises `InvalidInput(field, message)` naming what to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from tandem.errors import InvalidInput

# A question, a reply or a note a person can read in a minute or two; names and phone numbers
# as people write them.
MAX_QUESTION = 2000
MAX_REPLY = 4000
MAX_NOTE = 4000
MAX_NAME = 100
MAX_PHONE = 30
# A call back is asked for within the next weeks, in a window of at least this long.
MAX_CALLBACK_DAYS = 30
MIN_WINDOW = timedelta(minutes=30)

KINDS = ("question", "callback")
NEW, ASSIGNED, ANSWERED, CLOSED = "new", "assigned", "answered", "closed"
STATUSES = (NEW, ASSIGNED, ANSWERED, CLOSED)
OPEN = (NEW, ASSIGNED, ANSWERED)
NEEDS_ANSWER = (NEW, ASSIGNED)

STATUS_FOR_ASKER = {
    NEW: "Waiting for a counselor",
    ASSIGNED: "A counselor is looking at your question",
    ANSWERED: "Answered",
    CLOSED: "Closed",
}

# An HTML tag, a comment or a script address: refused, so nothing that looks like markup is
# stored (everything shown is escaped as well). "<3" or "dose < 5 mg" are not tags.
_MARKUP = re.compile(r"<\s*/?\s*[a-z!?][^>]*>|javascript\s*:|\bon[a-z]+\s*=", re.IGNORECASE)
_PHONE = re.compile(r"^\+?[0-9 ().\-]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def plain_text(field: str, label: str, value: str, limit: int, *, required: bool) -> str:
    """A person's text: trimmed, within `limit` characters, no markup, no control characters."""
    text = value.replace("\r\n", "\n").strip()
    if not text:
        if required:
            raise InvalidInput(field, f"{label}: please write something")
        return ""
    if len(text) > limit:
        raise InvalidInput(
            field, f"{label} is too long: at most {limit:,} characters (this has {len(text):,})"
        )
    if _CONTROL.search(text):
        raise InvalidInput(field, f"{label} holds control characters: please write plain text")
    found = _MARKUP.search(text)
    if found:
        shown = found.group(0)[:30]
        raise InvalidInput(
            field,
            f"{label} looks like web code ({shown}): please write plain text, without < > tags",
        )
    return text


def phone_number(value: str, *, required: bool) -> str:
    text = value.strip()
    if not text:
        if required:
            raise InvalidInput("phone", "Phone number: enter the number to call you back on")
        return ""
    if len(text) > MAX_PHONE:
        raise InvalidInput("phone", f"Phone number is too long: at most {MAX_PHONE} characters")
    digits = sum(c.isdigit() for c in text)
    if not _PHONE.match(text) or not 7 <= digits <= 15:
        raise InvalidInput(
            "phone", "Phone number: use digits, spaces, + - ( ) only (7 to 15 digits)"
        )
    return text


@dataclass(frozen=True)
class Window:
    """When the asker would like to be called, in UTC (shown in the program's time zone)."""

    start: datetime
    end: datetime


def callback_window(day: str, start: str, end: str, zone: str, now: datetime) -> Window:
    """A call-back window from the form's date and times, read in the program's time zone:
    at least `MIN_WINDOW` long, ending in the future, starting within `MAX_CALLBACK_DAYS`."""
    try:
        on = date.fromisoformat(day.strip())
    except ValueError:
        raise InvalidInput("callback_date", "Day to call: choose a date") from None
    try:
        starts, ends = time.fromisoformat(start.strip()), time.fromisoformat(end.strip())
    except ValueError:
        raise InvalidInput("callback_from", "Time to call: enter a start and an end time") from None
    tz = ZoneInfo(zone)
    window = Window(
        datetime.combine(on, starts, tzinfo=tz).astimezone(ZoneInfo("UTC")),
        datetime.combine(on, ends, tzinfo=tz).astimezone(ZoneInfo("UTC")),
    )
    if window.end - window.start < MIN_WINDOW:
        raise InvalidInput(
            "callback_to", "Time to call: the end must be at least 30 minutes after the start"
        )
    if window.end <= now:
        raise InvalidInput("callback_date", "Day to call: this time has passed; choose a later one")
    if window.start > now + timedelta(days=MAX_CALLBACK_DAYS):
        raise InvalidInput(
            "callback_date", f"Day to call: choose a day within the next {MAX_CALLBACK_DAYS} days"
        )
    return window


@dataclass(frozen=True)
class AskForm:
    """What the form sent, as text."""

    kind: str = "question"
    question: str = ""
    name: str = ""
    phone: str = ""
    callback_date: str = ""
    callback_from: str = ""
    callback_to: str = ""


@dataclass(frozen=True)
class Ask:
    """A question or call-back request, checked."""

    kind: str
    question: str
    name: str
    phone: str
    window: Window | None


def check_ask(form: AskForm, zone: str, now: datetime, *, name_required: bool = False) -> Ask:
    """Check every field; the first problem found is raised, naming its field."""
    if form.kind not in KINDS:
        raise InvalidInput("kind", "Choose a question or a call back")
    callback = form.kind == "callback"
    question = plain_text(
        "question",
        "What you would like to talk about" if callback else "Your question",
        form.question,
        MAX_QUESTION,
        required=not callback,
    )
    name = plain_text("name", "Your name", form.name, MAX_NAME, required=name_required)
    phone = phone_number(form.phone, required=callback)
    window = None
    if callback:
        window = callback_window(
            form.callback_date, form.callback_from, form.callback_to, zone, now
        )
    return Ask(form.kind, question, name, phone, window)


# --------------------------------------------------------------------------- the states


def _open(status: str) -> None:
    if status == CLOSED:
        raise InvalidInput("status", "this question is closed")
    if status not in STATUSES:
        raise InvalidInput("status", f"unknown state {status!r}")


def after_assign(status: str) -> str:
    _open(status)
    return ASSIGNED if status == NEW else status


def after_reply(status: str) -> str:
    _open(status)
    return ANSWERED


def after_close(status: str) -> str:
    _open(status)
    return CLOSED


def call_time(value: datetime | None, now: datetime) -> datetime:
    """When a counselor will call: in the future, within `MAX_CALLBACK_DAYS`."""
    if value is None:
        raise InvalidInput("call_at", "When you will call: enter a date and time")
    if value < now - timedelta(minutes=2):
        raise InvalidInput("call_at", "When you will call: this time has passed")
    if value > now + timedelta(days=MAX_CALLBACK_DAYS):
        raise InvalidInput("call_at", f"When you will call: within {MAX_CALLBACK_DAYS} days")
    return value


def queue_key(urgent: bool, asked_at: datetime, question_id: int) -> tuple[bool, datetime, int]:
    """The queue's order: urgent first, then the oldest (the SQL orders the same way)."""
    return (not urgent, asked_at, question_id)
