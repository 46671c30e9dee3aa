"""The research page: de-identified, program-level counts (the researcher's home page)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tandem.access.guard import Access
from tandem.kit import NavItem
from tandem.outcomes.measures import SMALL_CELL, program_counts
from tandem.web.deps import UnitOfWorkRoute, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

NAV = NavItem("research", "Research", "/research", frozenset({"researcher", "admin"}), 60)


@router.get("/research")
def research(request: Request, access: Access = Depends(page_access)) -> Response:
    return render(
        request,
        "outcomes/research.html",
        active="research",
        programs=program_counts(access),
        small_cell=SMALL_CELL,
    )
