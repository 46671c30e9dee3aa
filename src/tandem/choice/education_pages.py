"""The education library's pages: /learn and /learn/{slug}. Readable without signing in (no
patient data); linked from the decision aid and the patient's own record."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from tandem.choice.decision_options import decision_aid
from tandem.choice.education import Article, find, library, situation_label
from tandem.web.deps import UnitOfWorkRoute
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)


@router.get("/learn")
def learn(request: Request) -> Response:
    topics, medications = library()
    return render(request, "choice/education_index.html", topics=topics, medications=medications)


@router.get("/learn/{slug}")
def article(request: Request, slug: str) -> Response:
    found = find(slug)
    if found is None:
        return render(
            request,
            "error.html",
            status_code=404,
            title="Not found",
            message="There is no article at this address. The library lists every article.",
        )
    if isinstance(found, Article):
        return render(request, "choice/education_article.html", a=found)
    return render(
        request,
        "choice/education_medication.html",
        a=found,
        situation_label=situation_label,
        levels=decision_aid().evidence_levels,
        plain=decision_aid().plain_words.get(found.slug),
    )
