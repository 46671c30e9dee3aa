"""Crisis signals: the phrases (program data, `data/crisis.yaml`) and the resources shown at once
to whoever sent a message that holds one. Pure: text in, the phrases it holds out."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from tandem.evidence import Source

DATA = Path(__file__).resolve().parent / "data" / "crisis.yaml"


class Resource(BaseModel):
    """A place to get help now: what to do, and when."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    action: str
    tel: str
    sms: str | None = None
    url: str | None = None
    when: str
    source: Source


class CrisisData(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: int
    source: Source
    phrases: dict[str, list[str]] = Field(min_length=1)
    resources: list[Resource] = Field(min_length=1)


@dataclass(frozen=True)
class Signal:
    """What made a message urgent: each phrase found, under its kind (suicide, overdose...)."""

    found: tuple[tuple[str, str], ...]  # (kind, phrase)

    def __bool__(self) -> bool:
        return bool(self.found)

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(kind for kind, _ in self.found))

    def summary(self) -> str:
        return ", ".join(f"{kind.replace('_', ' ')}: “{phrase}”" for kind, phrase in self.found)


_NOT_WORD = re.compile(r"[^\w']+")


def words(text: str) -> str:
    """Text as its words, lower case, apostrophes unified, one space between: what phrases are
    matched against (so "Kill   MY-self" and "kill my self" read alike)."""
    folded = unicodedata.normalize("NFKC", text).casefold().replace("’", "'").replace("‘", "'")
    return " ".join(_NOT_WORD.sub(" ", folded.replace("-", " ")).split())


@cache
def crisis_data(path: Path = DATA) -> CrisisData:
    data = CrisisData.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    for kind, phrases in data.phrases.items():
        for phrase in phrases:
            if not words(phrase):
                raise ValueError(f"{path.name}: an empty phrase under {kind}")
    return data


@cache
def _patterns(path: Path = DATA) -> tuple[tuple[str, str, re.Pattern[str]], ...]:
    return tuple(
        (kind, phrase, re.compile(rf"(?<![\w']){re.escape(words(phrase))}(?![\w'])"))
        for kind, phrases in crisis_data(path).phrases.items()
        for phrase in phrases
    )


def signal(*texts: str, path: Path = DATA) -> Signal:
    """The crisis phrases in these texts (a question, a reply from the asker), each once."""
    joined = " | ".join(words(t) for t in texts if t)
    found = tuple(
        (kind, phrase) for kind, phrase, pattern in _patterns(path) if pattern.search(joined)
    )
    return Signal(found)


def resources(path: Path = DATA) -> list[Resource]:
    return list(crisis_data(path).resources)
