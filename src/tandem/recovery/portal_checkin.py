"""The daily check-in, pure: what is asked (the substances, the doses of the day) and the
answers read from a form, every one checked before anything is stored. No session, no clock:
`today` and the doses asked are passed in. A refused answer raises `InvalidInput` naming the
form field a patient must fix.

The form's fields:
  craving_<substance>   0-10, one per substance asked (required)
  use_day               today | yesterday: the day the use answers are about
  use_<substance>       yes | no (required)
  drinks_<substance>    standard drinks, for a substance counted in drinks used that day
  dose_<plan>_<due>     taken | missed | (blank: not answered), one per dose asked
  side_effect           zero or more of the medication side-effect vocabulary
  side_effect_other     the description when `other` is ticked
  side_effect_severity  mild | moderate | severe, when a side effect is ticked
  mood | mood_word      one of the mood buttons, or a word of the patient's own
  note                  anything else (optional)
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tandem.errors import InvalidInput
from tandem.evidence import Source
from tandem.medications.validation import SEVERITIES, SIDE_EFFECTS
from tandem.recovery.substances import Substance, substance

DATA = Path(__file__).parent / "data" / "portal.yaml"
MOOD_LENGTH = 40
NOTE_LENGTH = 1000
_WORD = re.compile(r"^[^\W\d_][\w'-]*$")  # one word: letters, then letters, digits, ' or -


class Mood(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z]+$", max_length=MOOD_LENGTH)
    label: str


class ReminderDefaults(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    check_in_at: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    session_hours: int = Field(ge=1, le=24 * 7)
    dose_window_minutes: int = Field(ge=5, le=24 * 60)


class Limits(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_standard_drinks: float = Field(gt=0)


class StandardDrink(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plain: str
    source: Source


class PortalData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    moods: tuple[Mood, ...] = Field(min_length=1)
    reminders: ReminderDefaults
    limits: Limits
    standard_drink: StandardDrink


@functools.cache
def portal_data() -> PortalData:
    return PortalData.model_validate(yaml.safe_load(DATA.read_text(encoding="utf-8")))


# What the check-in asks about when the patient has no care plan: the substance of their
# withdrawal episode (its context names alcohol, opioid or other), or alcohol; and always
# "other drugs", so that any use has a place.
WITHDRAWAL_SUBSTANCES = {"alcohol": "alcohol", "opioid": "opioids", "other": "other"}


def substances_asked(care_plan: Sequence[str] | None, withdrawal: str | None) -> list[Substance]:
    """The substances the check-in asks about, in order: the care plan's when there is one,
    else the withdrawal episode's (or alcohol) and other drugs."""
    if care_plan:
        wanted = list(dict.fromkeys(care_plan))
    else:
        first = WITHDRAWAL_SUBSTANCES.get(withdrawal or "", "alcohol")
        wanted = list(dict.fromkeys([first, "other"]))
    return [substance(s) for s in wanted]


@dataclass(frozen=True)
class DoseAsked:
    """A planned dose the patient may report: of which plan, when due, and how it reads."""

    plan_id: int
    due_at: datetime
    medication: str  # the medication's name, as the patient reads it
    mg: float
    time_slot: str
    answer: str = ""  # taken | missed | "" (what is recorded already)

    @property
    def label(self) -> str:
        return f"{self.medication} {self.mg:g} mg, {self.time_slot}"

    @property
    def field(self) -> str:
        """The form field of this dose: named by plan and due time, so that a dose that became
        due while the form was open does not shift the others."""
        return f"dose_{self.plan_id}_{int(self.due_at.timestamp())}"


@dataclass(frozen=True)
class UseAnswer:
    substance: str
    used: bool
    standard_drinks: float | None


@dataclass(frozen=True)
class DoseAnswer:
    plan_id: int
    due_at: datetime
    taken: bool


@dataclass(frozen=True)
class CheckInAnswers:
    day: date  # the day of the check-in (the program's today)
    use_day: date  # the day the use answers are about
    cravings: dict[str, int]
    uses: tuple[UseAnswer, ...]
    doses: tuple[DoseAnswer, ...]
    side_effects: tuple[str, ...]
    side_effect_other: str
    side_effect_severity: str  # mild | moderate | severe, when side effects are ticked
    mood: str | None
    note: str

    @property
    def side_effects_text(self) -> str:
        """As kept on the check-in: the vocabulary ids, and the description of `other`."""
        text = ",".join(self.side_effects)
        if self.side_effect_other:
            text += f"; {self.side_effect_other}"
        return text


Form = Mapping[str, str | Sequence[str]]


def _one(form: Form, name: str) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        value = value[-1] if value else ""
    return value.strip()


def _many(form: Form, name: str) -> list[str]:
    value = form.get(name, ())
    if isinstance(value, str):
        return [value] if value else []
    return [v for v in value if v]


def _craving(form: Form, each: Substance) -> int:
    field = f"craving_{each.id}"
    raw = _one(form, field)
    if not raw:
        raise InvalidInput(field, f"choose how strong your craving for {each.plain} is, 0 to 10")
    if not re.fullmatch(r"\d{1,2}", raw) or int(raw) > 10:
        raise InvalidInput(field, f"craving for {each.plain}: choose a whole number from 0 to 10")
    return int(raw)


def _drinks(form: Form, each: Substance, used: bool) -> float | None:
    field = f"drinks_{each.id}"
    raw = _one(form, field).replace(",", ".")
    if not raw:
        if used:
            raise InvalidInput(field, f"how many standard drinks of {each.plain}? Enter a number")
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(field, "enter the number of standard drinks, such as 2 or 3.5") from None
    if not math.isfinite(value) or value < 0:
        raise InvalidInput(field, "enter the number of standard drinks, such as 2 or 3.5")
    if not used:
        if value == 0:
            return None
        raise InvalidInput(field, f"you answered no {each.plain}: leave drinks empty or answer yes")
    if value == 0:
        raise InvalidInput(field, "you answered yes: enter at least part of a drink (0.5)")
    limit = portal_data().limits.max_standard_drinks
    if value > limit:
        raise InvalidInput(field, f"more than {limit:g} standard drinks in a day: check the number")
    if round(value, 1) != value:
        raise InvalidInput(field, "enter drinks to one decimal place at most, such as 2.5")
    return value


def _mood(form: Form) -> str | None:
    word = _one(form, "mood_word")
    chosen = _one(form, "mood")
    if word:
        if len(word) > MOOD_LENGTH or not _WORD.match(word):
            raise InvalidInput("mood_word", "type your mood as one word, such as calm")
        return word.lower()
    if not chosen:
        return None
    if chosen not in {m.id for m in portal_data().moods}:
        raise InvalidInput("mood", "choose one of the mood buttons or type a word")
    return chosen


def read_answers(
    form: Form, asked: Sequence[Substance], doses: Sequence[DoseAsked], today: date
) -> CheckInAnswers:
    """The check-in's answers from the form, each checked; the first wrong one is refused."""
    cravings = {each.id: _craving(form, each) for each in asked}
    use_day_raw = _one(form, "use_day") or "today"
    if use_day_raw not in ("today", "yesterday"):
        raise InvalidInput("use_day", "choose today or yesterday")
    use_day = today if use_day_raw == "today" else today - timedelta(days=1)
    uses = []
    for each in asked:
        field = f"use_{each.id}"
        raw = _one(form, field)
        if raw not in ("yes", "no"):
            raise InvalidInput(field, f"did you use {each.plain}? Choose yes or no")
        used = raw == "yes"
        drinks = _drinks(form, each, used) if each.drinks else None
        if not each.drinks and _one(form, f"drinks_{each.id}"):
            raise InvalidInput(f"drinks_{each.id}", "drinks are counted for alcohol only")
        uses.append(UseAnswer(each.id, used, drinks))
    answered = []
    for dose in doses:
        raw = _one(form, dose.field)
        if raw not in ("", "taken", "missed"):
            raise InvalidInput(dose.field, f"{dose.label}: choose taken or missed")
        if raw:
            answered.append(DoseAnswer(dose.plan_id, dose.due_at, raw == "taken"))
    fields = {dose.field for dose in doses}
    extra = [k for k in form if k.startswith("dose_") and k not in fields and _one(form, k)]
    if extra:
        raise InvalidInput(extra[0], "that dose is not one of the planned doses you can report now")
    effects = list(dict.fromkeys(_many(form, "side_effect")))
    for effect in effects:
        if effect not in SIDE_EFFECTS:
            raise InvalidInput("side_effect", "choose side effects from the list")
    other = _one(form, "side_effect_other")
    if len(other) > 200:
        raise InvalidInput("side_effect_other", "describe the side effect in 200 characters")
    if "other" in effects and not other:
        raise InvalidInput("side_effect_other", "describe the other side effect")
    if other and "other" not in effects:
        effects.append("other")
    severity = _one(form, "side_effect_severity")
    if effects and severity not in SEVERITIES:
        raise InvalidInput("side_effect_severity", "how much do the side effects bother you?")
    if not effects and severity:
        severity = ""  # a severity alone, with no side effect ticked, says nothing
    note = _one(form, "note")
    if len(note) > NOTE_LENGTH:
        raise InvalidInput("note", f"a note is at most {NOTE_LENGTH} characters")
    return CheckInAnswers(
        day=today,
        use_day=use_day,
        cravings=cravings,
        uses=tuple(uses),
        doses=tuple(answered),
        side_effects=tuple(effects),
        side_effect_other=other,
        side_effect_severity=severity,
        mood=_mood(form),
        note=note,
    )
