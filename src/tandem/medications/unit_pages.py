"""The unit's medication administration record page: the shift's doses across the nurse's
programs, and one small form per dose (given, held or refused with the reason).

Works without script: a form posts and comes back to the list (303), or to the list with the
row's refusal (422). With script (`/static/mar.js`), a form posts with `X-Row: 1` and the
answer is that one row, swapped in place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from tandem.access.guard import Access
from tandem.access.policy import Decision, Permission, decide
from tandem.access.queries import load_patient
from tandem.clock import utcnow
from tandem.errors import InvalidInput
from tandem.kit import NavItem
from tandem.medications.resources import ADMINISTRATION
from tandem.medications.shifts import SHIFTS
from tandem.medications.unit_mar import OUTCOMES, due_dose, record_from_unit, unit_record
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

PATH = "/unit/medications"
NAV = NavItem(
    "unit_medications",
    "Medication round",
    PATH,
    frozenset({"admin", "prescriber", "nurse", "counselor"}),
    15,
)
FIELD_LABELS = {"reason": "Reason", "outcome": "Outcome", "due_at": "Planned dose"}
SHIFT_LABELS = {"previous": "Previous shift", "current": "This shift", "next": "Next shift"}


def _shift(value: str) -> str:
    return value if value in SHIFTS else "current"


def _page(
    request: Request, access: Access, which: str, status_code: int = 200, **extra: Any
) -> Response:
    record = unit_record(access, which)
    return render(
        request,
        "medications/unit_mar.html",
        status_code=status_code,
        active="unit_medications",
        record=record,
        which=which,
        show_program=len(record.shifts) > 1,
        shift_labels=SHIFT_LABELS,
        outcomes=OUTCOMES,
        field_labels=FIELD_LABELS,
        **extra,
    )


@router.get(PATH)
def unit_medications(
    request: Request, shift: str = "current", access: Access = Depends(page_access)
) -> Response:
    if shift not in SHIFTS:
        raise InvalidInput("shift", f"choose one of {', '.join(SHIFTS)}")
    return _page(request, access, shift)


def _may_record_anywhere(access: Access) -> Decision:
    """Whether the actor's role records doses in any of their programs (asked before the form
    is read, so a person who may not record is refused whatever they sent)."""
    decisions = [
        decide(access.actor, Permission.CREATE, ADMINISTRATION, program_id=p)
        for p in sorted(access.actor.program_ids)
    ]
    allowed = next((d for d in decisions if d), None)
    if allowed is not None:
        return allowed
    return decisions[0] if decisions else Decision(False, "member of no program")


def _due_at(raw: str) -> datetime:
    try:
        due_at = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput("due_at", "choose a planned dose") from None
    if due_at.tzinfo is None:
        raise InvalidInput("due_at", "choose a planned dose")
    return due_at


def _int(raw: str, field: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise InvalidInput(field, "choose a planned dose") from None


def _row(
    request: Request,
    access: Access,
    patient: Patient,
    plan_id: int,
    due_at: datetime,
    status_code: int,
    **extra: Any,
) -> Response:
    """One row of the list again, for the script to swap in place."""
    return render(
        request,
        "medications/_unit_mar_row.html",
        status_code=status_code,
        d=due_dose(access, patient, plan_id, due_at),
        show_program=len(access.actor.program_ids) > 1,
        outcomes=OUTCOMES,
        field_labels=FIELD_LABELS,
        **extra,
    )


@router.post(f"{PATH}/doses")
def record_unit_dose(request: Request, access: Access = Depends(csrf_form)) -> Response:
    access.require_decision(_may_record_anywhere(access), "create", ADMINISTRATION)
    form = form_of(request)
    which = _shift(str(form.get("shift", "current")))
    in_place = request.headers.get("x-row") == "1"
    patient_id = str(form.get("patient_id", ""))
    # The patient first, through the policy (refused and audited when out of reach).
    patient = load_patient(access, patient_id, (Permission.CREATE, ADMINISTRATION), audit=False)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    plan_id, due_at = 0, None
    try:
        plan_id = _int(str(form.get("plan_id", "")), "due_at")
        due_at = _due_at(str(form.get("due_at", "")))
        record_from_unit(
            access,
            patient.id,
            plan_id,
            due_at=due_at,
            outcome=str(form.get("outcome", "")),
            reason=str(form.get("reason", "")),
            now=utcnow(),
        )
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        error = {
            "error_key": f"dose-{plan_id}-{int(due_at.timestamp())}" if due_at else "",
            "error_field": exc.field,
            "error": exc.message,
            "form_values": values,
        }
        if in_place and due_at is not None:
            patient = load_patient(access, patient.id, read=None)
            return _row(request, access, patient, plan_id, due_at, 422, which=which, **error)
        return _page(request, access, which, 422, **error)
    if in_place:
        return _row(request, access, patient, plan_id, due_at, 200, which=which, saved=True)
    key = f"dose-{plan_id}-{int(due_at.timestamp())}"
    return RedirectResponse(f"{PATH}?shift={which}&flash=saved#{key}", status_code=303)
