"""Nurse and prescriber pages for withdrawal monitoring: the detox census, the assessment form,
the withdrawal context, doses given, and the withdrawal tab of the chart. Thin: parse, call one
function of the domain (which asks the policy and audits), render. A form answered with its
errors (422) records the refusal first (`access.refused`); the unit of work does the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from tandem.access.guard import Access, AccessDenied
from tandem.access.policy import ACTIONS, Permission, Role, decide, may
from tandem.access.queries import load_patient, patient_ref, read_row
from tandem.choice.decisions import current_decision, describe
from tandem.clock import duration_text, local, utcnow
from tandem.errors import InvalidInput, NotFound
from tandem.instruments.engine import InvalidAnswers, UnknownInstrument, get_instrument, parse_value
from tandem.instruments.models import Instrument
from tandem.kit import ChartTab, NavItem
from tandem.medications.administrations import ADMINISTRATION
from tandem.patients.pages import chart_page
from tandem.plain_language import plain_language
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, page_access
from tandem.web.forms import local_datetime
from tandem.web.rendering import render
from tandem.withdrawal import charts
from tandem.withdrawal.assessments import QR, save_assessment
from tandem.withdrawal.census import census, detox_units
from tandem.withdrawal.chart import WithdrawalChart, withdrawal_chart
from tandem.withdrawal.checks import HALF_LIFE, SUBSTANCES, ContextInput
from tandem.withdrawal.context import CONDITION, record_context
from tandem.withdrawal.doses import dose_history, dose_options, record_dose
from tandem.withdrawal.prn import ROUTES, DoseInput, dose_range
from tandem.withdrawal.protocol import INSTRUMENT_IDS
from tandem.withdrawal.protocols import program_protocol, short_name
from tandem.withdrawal.storage import AssessmentRow

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

CHART_TAB = ChartTab("withdrawal", "Withdrawal", "/withdrawal", 10)
NAV = NavItem(
    "detox",
    "Detox census",
    "/detox",
    frozenset({"admin", "prescriber", "nurse", "counselor"}),
    20,
)

REFRESH_SECONDS = 30
CENSUS_PAGE = 100  # most urgent first; a real unit fits on one page
TRI_STATE = {"": None, "yes": True, "no": False}


def _patient(access: Access, patient_id: str, action: str | None = None) -> Patient:
    """The patient, once the policy allows reading the chart and, for a form, its `action`
    (asked before the form is shown, and before a posted form is read)."""
    patient = load_patient(access, patient_id, *([ACTIONS[action]] if action else []))
    if action is not None:
        # An action storing more than its main record (an assessment stores Observations too)
        decision = may(access.actor, action, patient_ref(patient))
        if not decision:
            access.refused(
                "create",
                decision.reason,
                resource_type=ACTIONS[action][1],
                resource_id=patient_id,
                patient_id=patient_id,
            )
            raise AccessDenied(decision)
    return patient


def _local_now(zone: str) -> str:
    return local(utcnow(), zone).strftime("%Y-%m-%dT%H:%M")


# --------------------------------------------------------------------------- census


@router.get("/detox")
def detox_home(request: Request, access: Access = Depends(page_access)) -> Response:
    units = detox_units(access)
    if len(units) == 1:
        return RedirectResponse(f"/detox/units/{units[0].id}", status_code=303)
    return render(request, "withdrawal/units.html", active="detox", units=units)


@router.get("/detox/units/{unit_id}")
def census_page(
    request: Request,
    unit_id: int,
    every: int = REFRESH_SECONDS,
    page: int = 1,
    access: Access = Depends(page_access),
) -> Response:
    shown = census(
        access,
        unit_id,
        query_text=str(request.url.query) or f"census unit={unit_id}",
        page=page,
        page_size=CENSUS_PAGE,
    )
    every = min(max(every, 2), 600)
    context: dict[str, Any] = {
        "census": shown,
        "zone": shown.program.time_zone,
        "sparkline": charts.sparkline,
        "instrument_names": _instrument_names(),
        "units": detox_units(access),
        "refresh": every,
        "active": "detox",
        "duration": duration_text,
    }
    if request.headers.get("x-fragment"):
        return render(request, "withdrawal/_census_table.html", **context)
    return render(request, "withdrawal/census.html", **context)


def _instrument_names() -> dict[str, str]:
    return {i: short_name(get_instrument(i)) for i in sorted(INSTRUMENT_IDS)}


# --------------------------------------------------------------------------- chart tab


def _chart_series(chart: WithdrawalChart) -> list[dict[str, Any]]:
    """Per instrument: the SVG chart and the score -> dose -> reassessment loop as rows."""
    out = []
    by_assessment: dict[int, list[Any]] = {}
    for dose in chart.doses:
        if dose.assessment_id is not None:
            by_assessment.setdefault(dose.assessment_id, []).append(dose)
    for view in chart.views:
        inst_id = view.instrument.id
        scheme = chart.protocol.protocol.instrument(inst_id).band_scheme
        bands = (
            [charts.BandArea(b.label, b.level, b.min_total, b.max_total) for b in scheme.bands]
            if scheme
            else []
        )
        ids = {a.id for a in view.assessments}
        doses = [d for d in chart.doses if d.assessment_id in ids]
        points = [
            charts.Point(a.assessed_at, a.total, a.band_label, a.due_at) for a in view.assessments
        ]
        svg = charts.score_chart(
            title=f"{view.instrument.name} scores over time",
            points=points,
            bands=bands,
            doses=[charts.DoseMark(d.administered_at, d.medication_text) for d in doses],
            now=utcnow(),
            zone=chart.zone,
            max_total=view.instrument.total.max,
            key=inst_id,
        )
        loop = []
        for i, a in enumerate(view.assessments):
            following = view.assessments[i + 1] if i + 1 < len(view.assessments) else None
            loop.append({"assessment": a, "doses": by_assessment.get(a.id, []), "next": following})
        out.append({"view": view, "svg": svg, "loop": list(reversed(loop))})
    return out


@router.get("/patients/{patient_id}/withdrawal")
def withdrawal_tab(
    request: Request,
    patient_id: str,
    saved: int | None = None,
    access: Access = Depends(page_access),
) -> Response:
    patient = _patient(access, patient_id)
    chart = withdrawal_chart(access, patient)
    ref = patient_ref(patient)
    saved_row = None
    if saved is not None:
        saved_row = next((a for a in chart.assessments if a.id == saved), None)
    return chart_page(
        request,
        access,
        patient_id,
        "withdrawal",
        "withdrawal/chart.html",
        chart=chart,
        series=_chart_series(chart),
        saved=saved_row,
        now=utcnow(),
        instrument_names=_instrument_names(),
        instruments=[get_instrument(i) for i in chart.protocol.protocol.instruments],
        substances=SUBSTANCES,
        half_life=HALF_LIFE,
        unverified=chart.protocol.protocol.unverified_items(),
        patient_text=plain_language("tandem.withdrawal", "monitoring"),
        may_assess=bool(may(access.actor, "assess", ref)),
        may_give=bool(decide(access.actor, Permission.CREATE, ADMINISTRATION, ref)),
        may_context=bool(decide(access.actor, Permission.UPDATE, CONDITION, ref)),
        dose_options={a.id: dose_options(access.db, a) for a in chart.assessments[-3:]},
        choice=current_decision(access, patient),
        describe_choice=describe,
    )


# --------------------------------------------------------------------------- assessment form


def _instrument(instrument_id: str) -> Instrument:
    try:
        return get_instrument(instrument_id)
    except UnknownInstrument:
        raise NotFound(f"instrument {instrument_id!r} is not known") from None


def _form_context(access: Access, patient: Patient, instrument: Instrument) -> dict[str, Any]:
    current = program_protocol(access.db, patient.program_id)
    if instrument.id not in current.protocol.instruments:
        raise NotFound(
            f"{instrument.name} is not a withdrawal instrument of this program's protocol"
        )
    scheme = current.protocol.instrument(instrument.id).band_scheme
    bands = (
        [{"min": b.min_total, "max": b.max_total, "label": b.label} for b in scheme.bands]
        if scheme
        else []
    )
    return {"instrument": instrument, "bands": bands, "protocol": current}


@router.get("/patients/{patient_id}/withdrawal/assess")
def assessment_form(
    request: Request,
    patient_id: str,
    instrument: str = "ciwa_ar",
    access: Access = Depends(page_access),
) -> Response:
    patient = _patient(access, patient_id, "assess")
    context = _form_context(access, patient, _instrument(instrument))
    return chart_page(
        request,
        access,
        patient_id,
        "withdrawal",
        "withdrawal/assess.html",
        values={},
        errors={},
        assessed_at=_local_now(patient.program.time_zone),
        **context,
    )


@router.post("/patients/{patient_id}/withdrawal/assess")
def save_assessment_form(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    patient = _patient(access, patient_id, "assess")
    form = form_of(request)
    instrument = _instrument(str(form.get("instrument", "")))
    context = _form_context(access, patient, instrument)
    values = {item.id: str(form.get(item.id, "")) for item in instrument.items}
    answers: dict[str, object] = {k: parse_value(v) for k, v in values.items() if v != ""}
    zone = patient.program.time_zone
    assessed_text = str(form.get("assessed_at", ""))
    try:
        assessed_at = local_datetime(assessed_text, zone, "assessed_at")
        saved = save_assessment(access, patient_id, instrument.id, answers, assessed_at)
    except InvalidAnswers as exc:
        access.refused("create", f"invalid answers: {exc}", resource_type=QR, patient_id=patient_id)
        errors = {e.item_id: e.message for e in exc.errors}
        return chart_page(
            request,
            access,
            patient_id,
            "withdrawal",
            "withdrawal/assess.html",
            status_code=422,
            values=values,
            errors=errors,
            assessed_at=assessed_text,
            **context,
        )
    except InvalidInput as exc:
        access.refused("create", f"invalid input: {exc}", resource_type=QR, patient_id=patient_id)
        return chart_page(
            request,
            access,
            patient_id,
            "withdrawal",
            "withdrawal/assess.html",
            status_code=422,
            values=values,
            errors={},
            form_error=exc,
            assessed_at=assessed_text,
            **context,
        )
    return RedirectResponse(
        f"/patients/{patient_id}/withdrawal?saved={saved.assessment.id}#latest", status_code=303
    )


# --------------------------------------------------------------------------- context


def _context_values(row: Any, zone: str) -> dict[str, str]:
    if row is None:
        return {}

    def tri(value: bool | None) -> str:
        return "" if value is None else ("yes" if value else "no")

    return {
        "substance": row.substance,
        "last_use_at": local(row.last_use_at, zone).strftime("%Y-%m-%dT%H:%M")
        if row.last_use_at
        else "",
        "opioid_half_life_class": row.opioid_half_life_class or "",
        "history_withdrawal_seizures": tri(row.history_withdrawal_seizures),
        "history_delirium_tremens": tri(row.history_delirium_tremens),
        "liver_failure": tri(row.liver_failure),
        "elderly": tri(row.elderly),
        "note": row.note,
    }


CONTEXT_QUESTIONS = {
    "history_withdrawal_seizures": "History of withdrawal seizures",
    "history_delirium_tremens": "History of delirium tremens",
    "liver_failure": "Liver failure",
    "elderly": "Older patient (lower starting doses)",
}


def _context_page(
    request: Request,
    access: Access,
    patient: Patient,
    values: Mapping[str, str],
    status_code: int = 200,
    error: InvalidInput | None = None,
) -> Response:
    return chart_page(
        request,
        access,
        patient.id,
        "withdrawal",
        "withdrawal/context.html",
        status_code=status_code,
        values=values,
        substances=SUBSTANCES,
        half_life=HALF_LIFE,
        questions=CONTEXT_QUESTIONS,
        form_error=error,
    )


@router.get("/patients/{patient_id}/withdrawal/context")
def context_form(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    patient = _patient(access, patient_id, "record_context")
    chart = withdrawal_chart(access, patient)
    return _context_page(request, access, patient, _context_values(chart.context, chart.zone))


@router.post("/patients/{patient_id}/withdrawal/context")
def save_context(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    patient = _patient(access, patient_id, "record_context")
    form = form_of(request)
    keys = ("substance", "last_use_at", "opioid_half_life_class", *CONTEXT_QUESTIONS, "note")
    values = {k: str(form.get(k, "")).strip() for k in keys}
    try:
        for key in CONTEXT_QUESTIONS:
            if values[key] not in TRI_STATE:
                raise InvalidInput(key, "answer yes, no or not recorded")
        record_context(
            access,
            patient_id,
            ContextInput(
                substance=values["substance"],
                last_use_at=local_datetime(
                    values["last_use_at"], patient.program.time_zone, "last_use_at", required=False
                ),
                opioid_half_life_class=values["opioid_half_life_class"] or None,
                note=values["note"],
                **{k: TRI_STATE[values[k]] for k in CONTEXT_QUESTIONS},
            ),
        )
    except InvalidInput as exc:
        access.refused(
            "update", f"invalid input: {exc}", resource_type=CONDITION, patient_id=patient_id
        )
        return _context_page(request, access, patient, values, 422, exc)
    return RedirectResponse(f"/patients/{patient_id}/withdrawal?flash=saved", status_code=303)


# --------------------------------------------------------------------------- doses given


def _assessment(access: Access, patient: Patient, assessment_id: str) -> AssessmentRow:
    """The assessment a dose answers, read through the policy (and audited)."""
    if not assessment_id.isdigit() or len(assessment_id) > 18:
        raise NotFound("that assessment is not known for this patient")
    row = read_row(access, QR, AssessmentRow, int(assessment_id))
    if row.patient_id != patient.id:
        raise NotFound("that assessment is not known for this patient")
    return row


def _dose_page(
    request: Request,
    access: Access,
    patient: Patient,
    assessment: AssessmentRow,
    values: Mapping[str, str],
    status_code: int = 200,
    error: InvalidInput | None = None,
) -> Response:
    options = dose_options(access.db, assessment)
    return chart_page(
        request,
        access,
        patient.id,
        "withdrawal",
        "withdrawal/dose.html",
        status_code=status_code,
        assessment=assessment,
        instrument=get_instrument(assessment.instrument_id),
        options=options,
        short_name=short_name(get_instrument(assessment.instrument_id)),
        ranges=[dose_range(o.dose_text) for o in options],
        routes=ROUTES,
        values=values,
        form_error=error,
        given_by=access.actor.label,
        history=dose_history(access, patient, assessment, utcnow()),
        may_override=access.actor.role is Role.PRESCRIBER,
    )


@router.get("/patients/{patient_id}/withdrawal/dose")
def dose_form(
    request: Request, patient_id: str, assessment: str = "", access: Access = Depends(page_access)
) -> Response:
    patient = _patient(access, patient_id, "give_dose")
    row = _assessment(access, patient, assessment)
    return _dose_page(
        request, access, patient, row, {"administered_at": _local_now(patient.program.time_zone)}
    )


@router.post("/patients/{patient_id}/withdrawal/dose")
def save_dose(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    patient = _patient(access, patient_id, "give_dose")
    form = form_of(request)
    keys = (
        "assessment",
        "suggestion",
        "dose",
        "route",
        "administered_at",
        "indication",
        "note",
        "override_reason",
    )
    values = {k: str(form.get(k, "")).strip() for k in keys}
    row = _assessment(access, patient, values["assessment"])
    try:
        if not values["suggestion"].isdigit():
            raise InvalidInput("suggestion", "choose one of the protocol's suggestions")
        when = local_datetime(
            values["administered_at"], patient.program.time_zone, "administered_at"
        )
        record_dose(
            access,
            patient_id,
            DoseInput(
                assessment_id=row.id,
                suggestion=int(values["suggestion"]),
                dose=values["dose"],
                route=values["route"],
                administered_at=when,
                indication=values["indication"],
                note=values["note"],
                override_reason=values["override_reason"],
            ),
        )
    except InvalidInput as exc:
        access.refused(
            "create",
            f"invalid input: {exc}",
            resource_type=ADMINISTRATION,
            patient_id=patient_id,
        )
        return _dose_page(request, access, patient, row, values, 422, exc)
    return RedirectResponse(f"/patients/{patient_id}/withdrawal?flash=saved#loop", status_code=303)
