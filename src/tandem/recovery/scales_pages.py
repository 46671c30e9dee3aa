"""The Scales tab of the chart: staff fill a self-report scale with the patient, a patient fills
one for themselves (their own chart is their view), each in the scale's own wording; after
saving, the total, band and source; a history per scale. A PHQ-9 item 9 above 0 raises the
urgent alert (the service) and shows a patient the crisis resources at once.

Thin: parse, call one service function, render. A form answered with its errors (422) records
the refusal first (`access.refused`); the unit of work does the rest."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from tandem.access.guard import Access
from tandem.access.policy import ACTIONS, Role, may
from tandem.access.queries import load_patient, patient_ref
from tandem.clock import local, utcnow
from tandem.errors import InvalidInput, NotFound
from tandem.instruments.engine import InvalidAnswers, parse_value
from tandem.kit import ChartTab
from tandem.patients.pages import chart_page
from tandem.recovery.scales_catalog import Scale, crisis_resources, scales
from tandem.recovery.scales_responses import (
    QR,
    ResponseQuery,
    save_response,
    search_responses,
)
from tandem.recovery.storage import QuestionnaireResponseRow
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, page_access
from tandem.web.forms import local_datetime

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

CHART_TAB = ChartTab("scales", "Scales", "/scales", 35)
HISTORY = 200  # responses shown on the tab, newest first
GROUPS = {"mood": "Mood", "craving": "Craving", "screening": "Screening"}


def _scale(scale_id: str) -> Scale:
    for each in scales():
        if each.instrument == scale_id:
            return each
    raise NotFound(f"Tandem holds no self-report scale {scale_id!r}.")


def _patient(access: Access, patient_id: str, fill: bool = False) -> Patient:
    """The patient, once the policy allows reading the chart and, for a form, filling a scale
    (asked before the form is shown and before a posted form is read)."""
    return load_patient(access, patient_id, *([ACTIONS["fill_scale"]] if fill else []))


def _history(
    access: Access, patient: Patient, query_text: str
) -> dict[str, list[QuestionnaireResponseRow]]:
    page = search_responses(
        access, ResponseQuery(patient_id=patient.id, count=HISTORY), query_text=query_text
    )
    by_scale: dict[str, list[QuestionnaireResponseRow]] = {s.instrument: [] for s in scales()}
    for row in page.rows:
        by_scale.setdefault(row.instrument_id, []).append(row)
    return by_scale


def _band(row: QuestionnaireResponseRow) -> dict[str, str] | None:
    instrument = next(s.definition for s in scales() if s.instrument == row.instrument_id)
    scheme = instrument.scheme(row.scheme_id)
    band = next((b for b in scheme.bands if b.id == row.band_id), None) if scheme else None
    if scheme is None or band is None:
        return None
    return {"label": band.label, "scheme": scheme.label, "source": scheme.source}


@router.get("/patients/{patient_id}/scales")
def scales_tab(
    request: Request,
    patient_id: str,
    saved: int | None = None,
    access: Access = Depends(page_access),
) -> Response:
    patient = _patient(access, patient_id)
    history = _history(access, patient, f"scales tab patient={patient_id}")
    saved_row = None
    if saved is not None:
        saved_row = next((r for rows in history.values() for r in rows if r.id == saved), None)
    is_patient = access.actor.role is Role.PATIENT
    return chart_page(
        request,
        access,
        patient_id,
        "scales",
        "recovery/scales/tab.html",
        scales=scales(),
        groups=GROUPS,
        history=history,
        saved=saved_row,
        saved_scale=_scale(saved_row.instrument_id) if saved_row else None,
        saved_band=_band(saved_row) if saved_row else None,
        band_of=_band,
        crisis=crisis_resources() if saved_row and saved_row.urgent and is_patient else None,
        is_patient=is_patient,
        may_fill=bool(may(access.actor, "fill_scale", patient_ref(patient))),
    )


def _form(
    request: Request,
    access: Access,
    patient: Patient,
    chosen: Scale,
    *,
    values: dict[str, str],
    errors: dict[str, str],
    authored_at: str,
    form_error: InvalidInput | None = None,
    status_code: int = 200,
) -> Response:
    return chart_page(
        request,
        access,
        patient.id,
        "scales",
        "recovery/scales/fill.html",
        status_code=status_code,
        scale=chosen,
        instrument=chosen.definition,
        values=values,
        errors=errors,
        form_error=form_error,
        authored_at=authored_at,
        is_patient=access.actor.role is Role.PATIENT,
    )


def _local_now(patient: Patient) -> str:
    return local(utcnow(), patient.program.time_zone).strftime("%Y-%m-%dT%H:%M")


@router.get("/patients/{patient_id}/scales/{scale_id}")
def fill_form(
    request: Request, patient_id: str, scale_id: str, access: Access = Depends(page_access)
) -> Response:
    patient = _patient(access, patient_id, fill=True)
    chosen = _scale(scale_id)
    return _form(
        request, access, patient, chosen, values={}, errors={}, authored_at=_local_now(patient)
    )


@router.post("/patients/{patient_id}/scales/{scale_id}")
def save_form(
    request: Request, patient_id: str, scale_id: str, access: Access = Depends(csrf_form)
) -> Response:
    patient = _patient(access, patient_id, fill=True)
    chosen = _scale(scale_id)
    form = form_of(request)
    instrument = chosen.definition
    values = {item.id: str(form.get(item.id, "")) for item in instrument.items}
    answers: dict[str, Any] = {k: parse_value(v) for k, v in values.items() if v != ""}
    is_patient = access.actor.role is Role.PATIENT
    # A patient answers now; staff may record when the patient answered (a paper form).
    authored_text = "" if is_patient else str(form.get("authored_at", ""))
    try:
        authored = (
            local_datetime(authored_text, patient.program.time_zone, "authored_at")
            if authored_text
            else None
        )
        saved = save_response(access, patient_id, chosen.instrument, answers, authored)
    except InvalidAnswers as exc:
        access.refused("create", f"invalid answers: {exc}", resource_type=QR, patient_id=patient_id)
        return _form(
            request,
            access,
            patient,
            chosen,
            values=values,
            errors={e.item_id: e.message for e in exc.errors},
            authored_at=authored_text,
            status_code=422,
        )
    except InvalidInput as exc:
        access.refused("create", f"invalid input: {exc}", resource_type=QR, patient_id=patient_id)
        return _form(
            request,
            access,
            patient,
            chosen,
            values=values,
            errors={},
            form_error=exc,
            authored_at=authored_text,
            status_code=422,
        )
    # The crisis resources come first on the page: a patient lands on them.
    anchor = "crisis" if saved.urgent and is_patient else "saved"
    return RedirectResponse(
        f"/patients/{patient_id}/scales?saved={saved.row.id}#{anchor}", status_code=303
    )
