"""Each person's home page: where signing in and the brand link lead. A home page is one the
person may see (tested for every role), never a refusal."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import RedirectResponse, Response

from tandem.access.guard import Access
from tandem.access.policy import Role
from tandem.web.deps import UnitOfWorkRoute, page_access

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

HOME_PAGES: dict[Role, str] = {
    Role.ADMIN: "/admin/users",
    Role.PRESCRIBER: "/patients",
    Role.NURSE: "/patients",
    Role.COUNSELOR: "/caseload",  # their patients in care, most at risk first
    Role.RESEARCHER: "/research",  # de-identified counts
    Role.PATIENT: "/patients/{patient_id}/today",  # their day: reminders, check-in, doses
}


def home_for(role: str, patient_id: str | None) -> str:
    page = HOME_PAGES[Role(role)]
    if "{patient_id}" in page:
        return page.format(patient_id=patient_id) if patient_id else "/login"
    return page


@router.get("/")
def home(access: Access = Depends(page_access)) -> Response:
    actor = access.actor
    return RedirectResponse(home_for(actor.role, actor.patient_id), status_code=303)
