"""The decision aid's pages: the options side by side for the patient's substance and phase
(chart tab "Options"; "My options" for the patient), the printable handout (PDF), the form
recording the patient's decision, and the decision history as JSON for the signed-in browser.

Thin: parse, call the service, render. A refused form re-renders with 422 naming the field;
nothing is stored.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from tandem.access.guard import Access
from tandem.access.policy import Permission, decide
from tandem.access.queries import load_patient, patient_ref
from tandem.choice import decision_pdf
from tandem.choice.decision_fhir import decision_observation
from tandem.choice.decision_options import (
    check_situation,
    choice_labels,
    decision_aid,
    label_of,
    option_views,
)
from tandem.choice.decision_storage import TreatmentDecisionRow
from tandem.choice.decisions import (
    DECISION,
    DecisionInput,
    decision_history,
    record_decision,
)
from tandem.clock import program_today, utcnow
from tandem.errors import InvalidInput
from tandem.kit import ChartTab
from tandem.medications.facts import current_facts, patient_facts
from tandem.medications.pages import SEVERITY_LABELS
from tandem.patients.pages import chart_page
from tandem.patients.service import open_episode
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.withdrawal.context import CONDITION, context_row

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

CHART_TAB = ChartTab("options", "Options", "/options", 25, patient_label="My options")

FIELD_LABELS = {
    "substance": "substance",
    "phase": "phase",
    "choice": "decision",
    "discussed_on": "date discussed",
    "discussed_by": "discussed by",
    "preferences": "what matters to the patient",
    "notes": "notes",
}
# The episode's phase suggests which situation to show first.
PHASE_OF_EPISODE = {
    "detox": "withdrawal",
    "rehab": "staying_stopped",
    "aftercare": "staying_stopped",
}


# The withdrawal context's substance (detox) → the decision aid's.
SUBSTANCE_OF_WITHDRAWAL = {"alcohol": "alcohol", "opioid": "opioids"}


def _withdrawal_substance(access: Access, patient: Patient) -> str | None:
    """The substance recorded for the open episode's withdrawal monitoring, when the policy
    shows it (read and audited as the Condition it is)."""
    episode = open_episode(patient)
    ref = patient_ref(patient)
    if episode is None or not decide(access.actor, Permission.READ, CONDITION, ref):
        return None
    row = context_row(access.db, episode.id)
    if row is None:
        return None
    access.audit(
        "read", resource_type=CONDITION, resource_id=f"context-{row.id}", patient_id=patient.id
    )
    return SUBSTANCE_OF_WITHDRAWAL.get(row.substance)


def _situation(
    access: Access,
    patient: Patient,
    latest: TreatmentDecisionRow | None,
    substance: str,
    phase: str,
) -> tuple[str, str]:
    """The substance and phase asked for, else those of the latest decision, else the
    episode's (its withdrawal substance, its phase; alcohol first). Unknown values in the
    address fall back the same way."""
    aid = decision_aid()
    if substance not in aid.substances:
        if latest:
            substance = latest.substance
        else:
            substance = _withdrawal_substance(access, patient) or next(iter(aid.substances))
    if phase not in aid.phases:
        if latest:
            phase = latest.phase
        else:
            episode = open_episode(patient)
            phase = PHASE_OF_EPISODE.get(episode.phase if episode else "", "staying_stopped")
    return check_situation(substance, phase)


def _context(
    access: Access, patient: Patient, substance: str, phase: str, now: datetime
) -> dict[str, Any]:
    history = (
        decision_history(access, patient)
        if decide(access.actor, Permission.SEARCH, DECISION, patient_ref(patient))
        else []
    )
    latest = history[0] if history else None
    substance, phase = _situation(access, patient, latest, substance, phase)
    facts = patient_facts(patient, current_facts(access, patient), now)
    return {
        "aid": decision_aid(),
        "substance": substance,
        "phase": phase,
        "views": option_views(substance, phase, facts),
        "history": history,
        "latest": latest,
        "label_of": label_of,
        "choices": choice_labels(substance, phase),
        "may_record": bool(decide(access.actor, Permission.CREATE, DECISION, patient_ref(patient))),
        "today": program_today(patient.program.time_zone, now),
        "field_labels": FIELD_LABELS,
        "severity_labels": SEVERITY_LABELS,
    }


@router.get("/patients/{patient_id}/options")
def options_page(
    request: Request,
    patient_id: str,
    substance: str = "",
    phase: str = "",
    access: Access = Depends(page_access),
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    context = _context(access, patient, substance, phase, now)
    viewer = getattr(request.state, "viewer", None)
    name = viewer.display_name if viewer is not None else access.actor.label
    values = {"discussed_by": name, "discussed_on": context["today"].isoformat()}
    return chart_page(
        request, access, patient_id, "options", "choice/decision_options.html",
        values=values, **context,
    )  # fmt: skip


@router.get("/patients/{patient_id}/options.pdf")
def options_handout(
    request: Request,
    patient_id: str,
    substance: str = "",
    phase: str = "",
    access: Access = Depends(page_access),
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    context = _context(access, patient, substance, phase, now)
    pdf = decision_pdf.handout(patient=patient, printed_on=context["today"], **context)
    name = f"options-{context['substance']}-{context['phase']}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{name}"'},
    )


def _date(text: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput("discussed_on", "enter a date as YYYY-MM-DD") from None


@router.post("/patients/{patient_id}/options/decisions")
def save_decision(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    now = utcnow()
    # Authorization before validation: who may not record a decision is refused whatever the
    # form holds (load_patient asks for the create permission first).
    patient = load_patient(access, patient_id, (Permission.CREATE, DECISION), audit=False)
    form = form_of(request)
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        row = record_decision(
            access,
            patient_id,
            DecisionInput(
                substance=values.get("substance", ""),
                phase=values.get("phase", ""),
                choice=values.get("choice", ""),
                discussed_on=_date(values.get("discussed_on", "")),
                discussed_by=values.get("discussed_by", ""),
                preferences=values.get("preferences", ""),
                notes=values.get("notes", ""),
            ),
            now,
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        patient = load_patient(access, patient_id, audit=False)
        context = _context(
            access, patient, values.get("substance", ""), values.get("phase", ""), now
        )
        return chart_page(
            request, access, patient_id, "options", "choice/decision_options.html",
            status_code=422, values=values, error_field=exc.field, error=exc.message,
            **context,
        )  # fmt: skip
    return RedirectResponse(
        f"/patients/{patient_id}/options?substance={row.substance}&phase={row.phase}"
        "&flash=saved#decision",
        status_code=303,
    )


@router.get("/patients/{patient_id}/options/decisions.json")
def decisions_json(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    """The patient's decisions, newest first, for the signed-in browser, each also as a FHIR
    Observation (`decision_fhir`)."""
    patient = load_patient(access, patient_id)
    rows = decision_history(access, patient)
    return JSONResponse(
        {
            "patient": patient.id,
            "decisions": [
                {
                    "id": r.id,
                    "substance": r.substance,
                    "phase": r.phase,
                    "choice": r.choice,
                    "choice_label": label_of(r.choice),
                    "preferences": r.preferences,
                    "notes": r.notes,
                    "discussed_on": r.discussed_on.isoformat(),
                    "discussed_by": r.discussed_by,
                    "recorded_at": r.recorded_at.isoformat(),
                    "recorded_by": r.recorded_by,
                    "fhir": decision_observation(r),
                }
                for r in rows
            ],
        }
    )
