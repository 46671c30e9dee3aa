"""The patient education library: plain-language articles held as data
(data/education/<slug>.yaml), validated on load, each with its sources and "further reading";
and one article per medication monograph, assembled from the monograph and the decision aid
(nothing about a medication is restated here)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import yaml
from pydantic import Field, field_validator, model_validator

from tandem.choice.decision_options import (
    Option,
    Passage,
    PlainWords,
    _Model,
    _sources,
    decision_aid,
    load_decision_sources,
)
from tandem.evidence import Source
from tandem.medications.monograph import Monograph, all_monographs, load_monograph, medication_ids

_SLUG = re.compile(r"^[a-z][a-z0-9-]*$")
_NOT_ARTICLES = {"medications.yaml"}


class Section(Passage):
    heading: str = Field(min_length=3, max_length=120)


class Article(_Model):
    slug: str
    title: str = Field(min_length=3, max_length=120)
    summary: str = Field(min_length=10, max_length=300)
    sections: tuple[Section, ...] = Field(min_length=1)
    further_reading: tuple[Source, ...] = Field(min_length=1)

    _resolve = field_validator("further_reading", mode="before")(_sources)

    @model_validator(mode="after")
    def _slug(self) -> Article:
        if not _SLUG.match(self.slug):
            raise ValueError(f"slug must be lower-case words joined by '-', got {self.slug!r}")
        return self


def _folder() -> Any:
    return resources.files("tandem.choice").joinpath("data/education")


@cache
def topic_articles() -> tuple[Article, ...]:
    articles = []
    for path in sorted(_folder().iterdir(), key=lambda p: p.name):
        if not path.name.endswith(".yaml") or path.name in _NOT_ARTICLES:
            continue
        article = Article.model_validate(yaml.safe_load(path.read_text("utf-8")))
        if f"{article.slug}.yaml" != path.name:
            raise ValueError(f"data/education/{path.name} declares slug {article.slug!r}")
        if article.slug in medication_ids():
            raise ValueError(f"{article.slug}: the slug of a medication article")
        articles.append(article)
    return tuple(articles)


@cache
def _openings() -> dict[str, Passage]:
    raw = yaml.safe_load(_folder().joinpath("medications.yaml").read_text("utf-8"))
    openings = {str(k): Passage.model_validate(v) for k, v in raw.items()}
    unknown = set(openings) - {"general", *medication_ids()}
    if unknown:
        raise ValueError(f"data/education/medications.yaml: no monograph {sorted(unknown)}")
    return openings


@dataclass(frozen=True)
class Use:
    """One situation a medication is an option in, as the decision aid describes it."""

    situation: str
    option: Option


@dataclass(frozen=True)
class MedicationArticle:
    slug: str
    title: str
    summary: str
    opening: Passage
    monograph: Monograph
    uses: tuple[Use, ...]

    def further_reading(self) -> list[Source]:
        seen: dict[str, Source] = {}
        passages: list[Any] = [self.opening]
        for use in self.uses:
            passages += [use.option.helps_with, use.option.evidence]
        plain = aid_plain(self.monograph.id)
        if plain is not None:
            passages += [plain.how_taken, plain.watch_for]
        passages += [*self.monograph.dosing.regimen, *self.monograph.adverse_effects]
        for passage in passages:
            for s in passage.source if passage else ():
                seen.setdefault(s.id or s.citation, s)
        return list(seen.values())


def aid_plain(medication_id: str) -> PlainWords | None:
    return decision_aid().plain_words.get(medication_id)


def medication_article(medication_id: str) -> MedicationArticle:
    mono = load_monograph(medication_id)
    aid = decision_aid()
    uses = []
    for option in aid.options:
        if option.medication == mono.id:
            for situation in option.applies:
                uses.append(Use(situation, option))
    openings = _openings()
    opening = openings.get(mono.id, openings["general"])
    return MedicationArticle(
        slug=mono.id,
        title=mono.name,
        summary=opening.text,
        opening=opening,
        monograph=mono,
        uses=tuple(uses),
    )


def situation_label(situation: str) -> str:
    aid = decision_aid()
    substance, phase = situation.split("/")
    return f"{aid.substances[substance].label}: {aid.phases[phase].label.lower()}"


def library() -> tuple[tuple[Article, ...], list[MedicationArticle]]:
    """Every article: the topics, then one per medication monograph."""
    load_decision_sources()
    return topic_articles(), [medication_article(m.id) for m in all_monographs()]


def find(slug: str) -> Article | MedicationArticle | None:
    for article in topic_articles():
        if article.slug == slug:
            return article
    if slug in medication_ids():
        return medication_article(slug)
    return None
