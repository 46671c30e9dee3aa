"""Each scale's wording and where it comes from: the page the assessment form links to, so the
form itself shows only the scale's own words (a flowsheet column) and never the provenance."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from tandem.access.guard import Access
from tandem.errors import NotFound
from tandem.instruments.engine import UnknownInstrument, get_instrument
from tandem.web.deps import UnitOfWorkRoute, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)


@router.get("/scales/{instrument_id}")
def scale_page(
    request: Request, instrument_id: str, access: Access = Depends(page_access)
) -> Response:
    try:
        instrument = get_instrument(instrument_id)
    except UnknownInstrument:
        raise NotFound(f"Tandem holds no scale {instrument_id!r}.") from None
    return render(request, "instruments/scale.html", instrument=instrument)
