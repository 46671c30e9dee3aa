"""Medication pages: the library (monographs with their evidence) and the chart's Medications
tab (screening from stored facts, dose plans as calendars, doses given and taken, side effects).

Thin: parse the form, call the service, render. A refused input re-renders its form with 422,
the field marked and the reason (and its source) shown; nothing is stored.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tandem.access.accounts import display_names
from tandem.access.guard import Access
from tandem.access.policy import ACTIONS, Permission, decide, may
from tandem.access.queries import load_patient, patient_ref
from tandem.alerts.models import Alert
from tandem.choice.decisions import current_decision, describe
from tandem.clock import local, program_today, utcnow
from tandem.errors import InvalidInput
from tandem.kit import ChartTab, NavItem
from tandem.medications.dose import Frequency
from tandem.medications.dose_calendar import plan_view
from tandem.medications.dose_plan import plan_ceiling
from tandem.medications.doses import record_administration, record_statement
from tandem.medications.errors import PlanRefused
from tandem.medications.facts import (
    current_facts,
    facts_history,
    kidney_sex,
    patient_facts,
    record_facts,
    renal_of,
)
from tandem.medications.missed_doses import open_missed_dose_alerts
from tandem.medications.monograph import (
    Monograph,
    Source,
    all_monographs,
    load_monograph,
    medication_ids,
)
from tandem.medications.plans import (
    create_maintenance,
    create_taper,
    create_titration,
    current_dose_text,
    effective_status,
    get_plan,
    list_plans,
)
from tandem.medications.plans import stop_plan as stop_dose_plan
from tandem.medications.plausibility import creatinine_to_mg_dl, weight_to_kg
from tandem.medications.resources import ADMINISTRATION, ALERT, FACTS, PLAN, SIDE_EFFECT, STATEMENT
from tandem.medications.rules import FACTS as RULE_FACTS
from tandem.medications.rules import substance_vocabulary
from tandem.medications.safety import screen
from tandem.medications.side_effects import list_side_effects
from tandem.medications.side_effects import record_side_effect as record_effect
from tandem.medications.storage import MedicationFactsRow
from tandem.medications.validation import (
    BOOL_FACTS,
    DATE_FACTS,
    NUMBER_FACTS,
    SEVERITIES,
    SIDE_EFFECTS,
    FactsInput,
)
from tandem.patients.pages import chart_page
from tandem.plain_language import plain_language
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.forms import local_datetime, row_id
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

CHART_TAB = ChartTab("medications", "Medications", "/medications", 20)
NAV = NavItem(
    "library",
    "Medication library",
    "/medications",
    frozenset({"admin", "prescriber", "nurse", "counselor", "researcher"}),
    20,
)

SEVERITY_LABELS = {
    "contraindicated": "Contraindicated",
    "major_caution": "Major caution",
    "caution": "Caution",
    "info": "Note",
}
STATE_LABELS = {
    "given": "given",
    "not_given": "not given",
    "taken": "taken",
    "missed": "missed",
    "unrecorded": "no record",
    "upcoming": "planned",
    "before_plan": "before the plan",
}
FREQUENCIES = [(f.code, f.label) for f in Frequency]
KINDS = {"titration": "Titration", "taper": "Taper to stop", "maintenance": "Fixed dose"}
BOOL_LABELS = {
    "on_dialysis": "On dialysis",
    "pregnant": "Pregnant",
    "breastfeeding": "Breastfeeding",
    "seizure_history": "History of seizures or epilepsy",
    "psychosis_history": "Psychotic disorder or confusional state",
    "stroke_history": "History of stroke",
    "respiratory_disease": "Respiratory disease",
    "acute_hepatitis": "Acute hepatitis",
    "liver_failure": "Liver failure",
    "severe_heart_disease": "Severe myocardial disease or coronary occlusion",
    "qtc_prolonged": "QTc read as prolonged by a clinician",
    "opioid_withdrawal_signs": "Objective signs of opioid withdrawal now",
    "opioid_positive_test": "Opioid-positive urine or failed naloxone challenge",
    "intoxicated": "Intoxicated now",
}
# Core and service field names → the form field that holds them, and how to say it.
FORM_FIELDS = {
    "start": "start_mg",
    "target": "target_mg",
    "from_dose": "from_mg",
    "dose": "dose_mg",
    "protocol_max_mg_day": "protocol_max",
    "mg": "start_mg",
    "creatinine_mg_dl": "creatinine",
    "creatinine_umol_l": "creatinine",
    "medication_id": "medication",
}
FIELD_LABELS = {
    "start_mg": "start dose",
    "target_mg": "target dose",
    "step_mg": "step",
    "every_days": "interval",
    "from_mg": "current dose",
    "dose_mg": "dose",
    "over_days": "taper length",
    "start_date": "start date",
    "protocol_max": "protocol maximum",
    "renal": "kidney function",
    "medication": "medication",
    "then_stop": "plan end",
    "hold_days": "days at target",
    "creatinine": "creatinine",
    "creatinine_on": "creatinine date",
    "weight_kg": "weight",
    "ideal_weight_kg": "ideal weight",
    "due_at": "planned dose",
    "administered_at": "time given",
    "reason": "reason",
    "stop_on": "stop date",
    "effect": "side effect",
    "severity": "severity",
    "onset_at": "onset",
    "detail": "description",
    "taking": "current medications",
    "sex_for_kidney": "sex for kidney equations",
}


def _program_zone(access: Access, patient_id: str, operation: tuple[Permission, str]) -> str:
    """The time zone a form's times are read in: the patient's program's, once the policy allows
    the form's `operation` (authorization before validation: a person who may not do this is
    refused, 403, whatever the form holds). Unaudited: the service audits what it does."""
    return load_patient(access, patient_id, operation, read=None, audit=False).program.time_zone


def _allowed(access: Access, patient_id: str, *actions: str) -> None:
    """Refuse a form the person may not submit before it is shown or read: one of `actions`
    must be allowed (the first is asked, and audited, when none is)."""
    ref = patient_ref(load_patient(access, patient_id, read=None, audit=False))
    if not any(may(access.actor, action, ref) for action in actions):
        load_patient(access, patient_id, ACTIONS[actions[0]], audit=False)


def _may(access: Access, permission: Permission, resource_type: str, patient: Patient) -> bool:
    return bool(decide(access.actor, permission, resource_type, patient_ref(patient)))


def _refusal(exc: InvalidInput) -> dict[str, Any]:
    """The error context a form shows: which field, why, and the source when there is one."""
    field = FORM_FIELDS.get(exc.field, exc.field)
    sources: tuple[Source, ...] = exc.sources if isinstance(exc, PlanRefused) else ()
    return {
        "error_field": field,
        "error": exc.message,
        "error_label": FIELD_LABELS.get(field, field.replace("_", " ")),
        "error_sources": sources,
        "refused": isinstance(exc, PlanRefused),
    }


def _number(form: FormData, name: str, *, whole: bool = False) -> float | int | None:
    raw = str(form.get(name, "")).strip().replace(",", ".")
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidInput(name, "enter a number") from None
    if not math.isfinite(value):
        raise InvalidInput(name, "enter a number")
    if whole:
        if value != int(value):
            raise InvalidInput(name, "enter a whole number")
        return int(value)
    return value


def _date(form: FormData, name: str, default: date | None = None) -> date | None:
    raw = str(form.get(name, "")).strip()
    if not raw:
        return default
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(name, "enter the date as YYYY-MM-DD") from None


def _local_datetime(
    form: FormData, name: str, zone: str, default: datetime | None = None
) -> datetime | None:
    value = local_datetime(str(form.get(name, "")), zone, name, required=False)
    return default if value is None else value


def _dose_text(form: FormData, mg_name: str, freq_name: str) -> str:
    mg = _number(form, mg_name)
    if mg is None:
        raise InvalidInput(mg_name, "enter the dose in mg")
    if mg <= 0:
        raise InvalidInput(mg_name, f"a dose must be more than 0 mg, got {mg:g}")
    freq = str(form.get(freq_name, "")).strip()
    if freq not in {f.code for f in Frequency}:
        raise InvalidInput(freq_name, "choose how often")
    return f"{mg:g}mg-{freq}"


# --------------------------------------------------------------------------- library


def _matches(mono: Monograph, q: str) -> bool:
    words = q.lower().split()
    hay = " ".join(
        [
            mono.id,
            mono.name,
            *mono.brand_list,
            *(f.text for f in mono.indications),
            *(f.text for f in mono.uses),
            *(u.condition for u in mono.off_label_uses),
        ]
    ).lower()
    return all(w in hay for w in words)


@router.get("/medications")
def library(request: Request, q: str = "", access: Access = Depends(page_access)) -> Response:
    text = q.strip()
    monos = [m for m in all_monographs() if not text or _matches(m, text)]
    return render(request, "medications/library.html", active="library", monographs=monos, q=text)


@router.get("/medications/{medication_id}")
def monograph_page(
    request: Request, medication_id: str, access: Access = Depends(page_access)
) -> Response:
    if medication_id not in medication_ids():
        return render(
            request,
            "error.html",
            status_code=404,
            title="Not found",
            message=f"Tandem holds no monograph for {medication_id!r}.",
        )
    mono = load_monograph(medication_id)
    # Number each source in order of first use, so every claim can point to its citation.
    # Monograph sources are keyed by id (`monograph.load_sources`), so each has one.
    order: dict[str, int] = {}
    for _path, item in mono.sourced_items():
        for s in item.source:
            if s.id is not None:
                order.setdefault(s.id, len(order) + 1)
    sources = {s.id: s for _p, item in mono.sourced_items() for s in item.source if s.id}
    return render(
        request,
        "medications/monograph.html",
        active="library",
        m=mono,
        order=order,
        sources=[sources[k] for k in order],
        severity_labels=SEVERITY_LABELS,
        substances=substance_vocabulary(),
        unverified=mono.unverified_items(),
    )


# --------------------------------------------------------------------------- the chart tab


def _screening_context(
    access: Access, patient: Patient, medication: str | None, now: datetime
) -> dict[str, Any]:
    row = current_facts(access, patient)
    facts = patient_facts(patient, row, now)
    renal = facts.renal()
    chosen = medication if medication in medication_ids() else None
    result = screen(chosen, facts) if chosen else None
    return {
        "facts_row": row,
        "facts": facts,
        "renal": renal,
        "screening": result,
        "screen_id": chosen,
        "kidney_sex": kidney_sex(patient, row),
    }


@router.get("/patients/{patient_id}/medications")
def chart_tab(
    request: Request,
    patient_id: str,
    screen: str = "",
    plan: str = "",
    access: Access = Depends(page_access),
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    rows = list_plans(access, patient)
    today = program_today(patient.program.time_zone, now)
    shown = None
    wanted = row_id(plan)
    for row in rows:
        if (wanted is not None and row.id == wanted) or (
            wanted is None and effective_status(row, today) == "active"
        ):
            shown = row
            break
    views = {}
    for row in rows:
        if effective_status(row, today) == "active" or row is shown:
            views[row.id] = plan_view(access, patient, row, now)
    context = _screening_context(
        access, patient, screen or (shown.medication_id if shown else "baclofen"), now
    )
    return chart_page(
        request,
        access,
        patient_id,
        "medications",
        "medications/chart.html",
        plans=rows,
        views=views,
        shown=views.get(shown.id) if shown else None,
        today=today,
        side_effects=list_side_effects(access, patient),
        alerts=_alerts(access, patient),
        may_prescribe=_may(access, Permission.CREATE, PLAN, patient),
        may_record_facts=_may(access, Permission.CREATE, FACTS, patient),
        may_record=_may(access, Permission.CREATE, SIDE_EFFECT, patient),
        choice=current_decision(access, patient),
        describe_choice=describe,
        **_common(),
        **context,
    )


def _alerts(access: Access, patient: Patient) -> list[Alert]:
    """Open missed-dose alerts, for those the policy shows alerts to (not to patients)."""
    if not _may(access, Permission.SEARCH, ALERT, patient):
        return []
    return open_missed_dose_alerts(access, patient)


def _common() -> dict[str, Any]:
    return {
        "severity_labels": SEVERITY_LABELS,
        "state_labels": STATE_LABELS,
        "kinds": KINDS,
        "monographs": all_monographs(),
        "side_effect_labels": SIDE_EFFECTS,
        "severities": SEVERITIES,
        "frequencies": FREQUENCIES,
        "rule_facts": RULE_FACTS,
        "leaflets": plain_language("tandem.medications", "leaflets"),
    }


# --------------------------------------------------------------------------- facts


def _facts_values(row: MedicationFactsRow | None, zone: str) -> dict[str, str]:
    if row is None:
        return {"weight_basis": "actual", "creatinine_unit": "mg_dl"}
    values: dict[str, str] = {"creatinine_unit": "mg_dl"}
    for name in (
        *NUMBER_FACTS,
        *DATE_FACTS,
        "weight_basis",
        "sex_for_kidney",
        "hepatic_impairment",
        "note",
    ):
        value = getattr(row, name)
        values[name] = (
            "" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))
        )
    values["creatinine"] = values.pop("creatinine_mg_dl")
    for name in BOOL_FACTS:
        value = getattr(row, name)
        values[name] = "" if value is None else ("yes" if value else "no")
    values["taking_recorded"] = "" if row.taking is None else "yes"
    values["taking"] = row.taking or ""
    if row.last_drink_at is not None:
        values["last_drink_at"] = local(row.last_drink_at, zone).strftime("%Y-%m-%dT%H:%M")
    return values


def _facts_input(form: FormData, zone: str) -> FactsInput:
    def yes_no(name: str) -> bool | None:
        value = str(form.get(name, "")).strip()
        if value not in ("", "yes", "no"):
            raise InvalidInput(name, "choose yes, no or not recorded")
        return None if value == "" else value == "yes"

    # Explicit units, converted; each checked against its plausible range in the unit typed.
    creatinine = _number(form, "creatinine")
    if creatinine is not None:
        unit = str(form.get("creatinine_unit", "mg_dl"))
        creatinine = round(creatinine_to_mg_dl("creatinine", creatinine, unit), 3)
    weight = _number(form, "weight_kg")
    if weight is not None:
        weight = round(weight_to_kg("weight_kg", weight, str(form.get("weight_unit", "kg"))), 1)
    taking = None
    if str(form.get("taking_recorded", "")) == "yes":
        taking = tuple(str(v) for v in form.getlist("taking"))
    # Numbers, dates and yes/no answers by their FactsInput names (their types checked there).
    named: dict[str, Any] = {
        **{
            name: _number(form, name)
            for name in ("ideal_weight_kg", "alt_u_l", "ast_u_l", "qtc_ms")
        },
        "weight_kg": weight,
        **{name: _date(form, name) for name in DATE_FACTS},
        **{name: yes_no(name) for name in BOOL_FACTS},
    }
    return FactsInput(
        sex_for_kidney=str(form.get("sex_for_kidney", "")).strip() or None,
        hepatic_impairment=str(form.get("hepatic_impairment", "")).strip() or None,
        weight_basis=str(form.get("weight_basis", "actual")) or "actual",
        creatinine_mg_dl=creatinine,
        taking=taking,
        note=str(form.get("note", "")),
        last_drink_at=_local_datetime(form, "last_drink_at", zone),
        **named,
    )


def _facts_form(
    request: Request,
    access: Access,
    patient_id: str,
    values: dict[str, str],
    status_code: int = 200,
    **extra: Any,
) -> Response:
    patient = load_patient(access, patient_id)
    history = facts_history(access, patient, limit=5)
    names = display_names(access.db, (h.recorded_by for h in history))
    return chart_page(
        request,
        access,
        patient_id,
        "medications",
        "medications/facts.html",
        status_code=status_code,
        values=values,
        history=history,
        bool_labels=BOOL_LABELS,
        substances=substance_vocabulary(),
        needs_sex=patient.gender not in ("female", "male"),
        names=names,
        taking_list=[t for t in values.get("taking", "").split(",") if t],
        **extra,
    )


@router.get("/patients/{patient_id}/medications/facts")
def facts_form(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    _allowed(access, patient_id, "record_facts")
    patient = load_patient(access, patient_id)
    row = current_facts(access, patient)
    return _facts_form(request, access, patient_id, _facts_values(row, patient.program.time_zone))


@router.post("/patients/{patient_id}/medications/facts")
def save_facts(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    _allowed(access, patient_id, "record_facts")
    form = form_of(request)
    zone = _program_zone(access, patient_id, (Permission.CREATE, FACTS))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    values["taking"] = ",".join(str(v) for v in form.getlist("taking"))
    try:
        record_facts(access, patient_id, _facts_input(form, zone))
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        return _facts_form(request, access, patient_id, values, 422, **_refusal(exc))
    return RedirectResponse(
        f"/patients/{patient_id}/medications?flash=saved#screening", status_code=303
    )


# --------------------------------------------------------------------------- new plans


def _plan_defaults(mono: Monograph, kind: str, current: str | None, today: date) -> dict[str, str]:
    values = {"medication": mono.id, "start_date": today.isoformat(), "kind": kind}
    titr = mono.dosing.titration
    if kind == "titration" and titr is not None:
        values.update(
            start_mg=f"{titr.start.mg:g}",
            start_freq=titr.start.frequency.code,
            step_mg=f"{titr.step_mg:g}",
            every_days=str(titr.every_days),
            target_freq=titr.start.frequency.code,
        )
    if kind == "taper":
        guide = mono.dosing.taper
        values["over_days"] = str(guide.max_days if guide and guide.max_days else 14)
        if current:
            mg, _, freq = current.partition("mg-")
            values.update(from_mg=mg, from_freq=freq)
    return values


def _plan_form(
    request: Request,
    access: Access,
    patient_id: str,
    kind: str,
    values: dict[str, str],
    status_code: int = 200,
    **extra: Any,
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    medication = values.get("medication", "")
    mono = load_monograph(medication) if medication in medication_ids() else None
    facts_row = current_facts(access, patient)
    renal = renal_of(patient, facts_row, now)
    ceiling = None
    ceiling_refusal = None
    # The monograph's and kidney function's ceiling, before a protocol maximum: tandem.js
    # lowers it by the maximum as it is typed, to show the plan's mg/day against it.
    live_ceiling: tuple[float | None, float | None] | None = None
    if mono is not None:
        try:
            protocol = float(values["protocol_max"]) if values.get("protocol_max") else None
            ceiling = plan_ceiling(mono.id, renal, protocol if protocol and protocol > 0 else None)
            live_ceiling = plan_ceiling(mono.id, renal)[:2]
        except ValueError as exc:  # MedicationInputError too
            ceiling_refusal = exc
    plans = list_plans(access, patient)
    today = program_today(patient.program.time_zone, now)
    active = [
        p
        for p in plans
        if effective_status(p, today) == "active" and (mono is None or p.medication_id == mono.id)
    ]
    return chart_page(
        request,
        access,
        patient_id,
        "medications",
        "medications/plan_form.html",
        status_code=status_code,
        kind=kind,
        values=values,
        m=mono,
        renal=renal,
        facts_row=facts_row,
        ceiling=ceiling,
        ceiling_refusal=ceiling_refusal,
        live_ceiling=live_ceiling,
        choice=current_decision(access, patient),
        describe_choice=describe,
        per_day={f.code: f.per_day for f in Frequency},
        active_plans=active,
        **_common(),
        **extra,
    )


@router.get("/patients/{patient_id}/medications/plans/new")
def new_plan(
    request: Request,
    patient_id: str,
    kind: str = "titration",
    medication: str = "baclofen",
    access: Access = Depends(page_access),
) -> Response:
    _allowed(access, patient_id, "prescribe")
    now = utcnow()
    patient = load_patient(access, patient_id)
    kind = kind if kind in KINDS else "titration"
    medication = medication if medication in medication_ids() else "baclofen"
    today = program_today(patient.program.time_zone, now)
    current = None
    for row in list_plans(access, patient):
        if row.medication_id == medication and effective_status(row, today) == "active":
            current = current_dose_text(row, today)
            break
    values = _plan_defaults(load_monograph(medication), kind, current, today)
    return _plan_form(request, access, patient_id, kind, values)


@router.post("/patients/{patient_id}/medications/plans")
def create_plan(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    _allowed(access, patient_id, "prescribe")
    form = form_of(request)
    _program_zone(access, patient_id, (Permission.CREATE, PLAN))
    values = {k: str(v).strip() for k, v in form.items() if k != "csrf_token"}
    kind = values.get("kind", "")
    if kind not in KINDS:
        kind = "titration"
    try:
        medication = values.get("medication", "")
        if medication not in medication_ids():
            raise InvalidInput("medication", "choose a medication")
        start_date = _date(form, "start_date")
        if start_date is None:
            raise InvalidInput("start_date", "enter the first day of the plan")
        protocol = _number(form, "protocol_max")
        if protocol is not None and protocol <= 0:
            raise InvalidInput("protocol_max", f"must be more than 0 mg/day, got {protocol:g}")
        if kind == "titration":
            step = _number(form, "step_mg")
            every = _number(form, "every_days", whole=True)
            if step is None:
                raise InvalidInput("step_mg", "enter the increase per dose in mg")
            if every is None:
                raise InvalidInput("every_days", "enter the days between steps")
            row = create_titration(
                access,
                patient_id,
                medication,
                start=_dose_text(form, "start_mg", "start_freq"),
                step_mg=step,
                every_days=int(every),
                target=_dose_text(form, "target_mg", "target_freq"),
                start_date=start_date,
                protocol_max_mg_day=protocol,
            )
        elif kind == "taper":
            over = _number(form, "over_days", whole=True)
            if over is None:
                raise InvalidInput("over_days", "enter the taper length in days")
            if over < 0:
                raise InvalidInput("over_days", f"must be 0 or more days, got {over}")
            row = create_taper(
                access,
                patient_id,
                medication,
                from_dose=_dose_text(form, "from_mg", "from_freq"),
                over_days=int(over),
                start_date=start_date,
            )
        else:
            row = create_maintenance(
                access,
                patient_id,
                medication,
                dose=_dose_text(form, "dose_mg", "dose_freq"),
                start_date=start_date,
                protocol_max_mg_day=protocol,
            )
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        return _plan_form(request, access, patient_id, kind, values, 422, **_refusal(exc))
    return RedirectResponse(
        f"/patients/{patient_id}/medications/plans/{row.id}?flash=created", status_code=303
    )


# --------------------------------------------------------------------------- one plan


def _plan_page(
    request: Request,
    access: Access,
    patient_id: str,
    plan_id: int,
    status_code: int = 200,
    all_weeks: bool = False,
    due: str = "",
    **extra: Any,
) -> Response:
    now = utcnow()
    patient = load_patient(access, patient_id)
    row = get_plan(access, plan_id, patient_id)
    view = plan_view(access, patient, row, now, weeks_back=None if all_weeks else 6)
    mono = view.monograph
    return chart_page(
        request,
        access,
        patient_id,
        "medications",
        "medications/plan.html",
        status_code=status_code,
        v=view,
        m=mono,
        due=due,
        all_weeks=all_weeks,
        may_administer=_may(access, Permission.CREATE, ADMINISTRATION, patient),
        may_report=_may(access, Permission.CREATE, STATEMENT, patient),
        may_stop=_may(access, Permission.UPDATE, PLAN, patient),
        may_prescribe=_may(access, Permission.CREATE, PLAN, patient),
        now_local=local(now, patient.program.time_zone).strftime("%Y-%m-%dT%H:%M"),
        taper_required=bool(mono.discontinuation and mono.discontinuation.taper_required),
        **_common(),
        **extra,
    )


@router.get("/patients/{patient_id}/medications/plans/{plan_id}")
def plan_page(
    request: Request,
    patient_id: str,
    plan_id: int,
    all: int = 0,
    due: str = "",
    access: Access = Depends(page_access),
) -> Response:
    return _plan_page(request, access, patient_id, plan_id, all_weeks=bool(all), due=due)


@router.post("/patients/{patient_id}/medications/plans/{plan_id}/doses")
def record_dose(
    request: Request, patient_id: str, plan_id: int, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, "give_dose", "report_dose")
    form = form_of(request)
    outcome = str(form.get("outcome", ""))
    recorded = STATEMENT if outcome in ("taken", "missed") else ADMINISTRATION
    zone = _program_zone(access, patient_id, (Permission.CREATE, recorded))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        raw_due = str(form.get("due_at", ""))
        try:
            due_at = datetime.fromisoformat(raw_due)
        except ValueError:
            raise InvalidInput("due_at", "choose a planned dose") from None
        if due_at.tzinfo is None:
            raise InvalidInput("due_at", "choose a planned dose")
        reason = str(form.get("reason", ""))
        if outcome in ("given", "not_given"):
            when = _local_datetime(form, "administered_at", zone, default=utcnow())
            assert when is not None
            record_administration(
                access,
                patient_id,
                plan_id,
                due_at=due_at,
                given=outcome == "given",
                administered_at=when,
                reason=reason if outcome == "not_given" else "",
                note=reason if outcome == "given" else "",
            )
        elif outcome in ("taken", "missed"):
            record_statement(
                access, patient_id, plan_id, due_at=due_at, taken=outcome == "taken", reason=reason
            )
        else:
            raise InvalidInput("outcome", "choose what happened to the dose")
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        return _plan_page(
            request,
            access,
            patient_id,
            plan_id,
            422,
            form_values=values,
            error_form="dose",
            **_refusal(exc),
        )
    return RedirectResponse(
        f"/patients/{patient_id}/medications/plans/{plan_id}?flash=saved#calendar", status_code=303
    )


@router.post("/patients/{patient_id}/medications/plans/{plan_id}/stop")
def stop_plan(
    request: Request, patient_id: str, plan_id: int, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, "change_plan")
    form = form_of(request)
    zone = _program_zone(access, patient_id, (Permission.UPDATE, PLAN))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        stop_on = _date(form, "stop_on", program_today(zone, utcnow()))
        assert stop_on is not None
        stop_dose_plan(
            access, patient_id, plan_id, stop_on=stop_on, reason=str(form.get("reason", ""))
        )
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        return _plan_page(
            request,
            access,
            patient_id,
            plan_id,
            422,
            form_values=values,
            error_form="stop",
            **_refusal(exc),
        )
    return RedirectResponse(
        f"/patients/{patient_id}/medications/plans/{plan_id}?flash=saved", status_code=303
    )


# --------------------------------------------------------------------------- side effects


@router.post("/patients/{patient_id}/medications/side-effects")
def record_side_effect(
    request: Request, patient_id: str, access: Access = Depends(csrf_form)
) -> Response:
    _allowed(access, patient_id, "record_side_effect")
    form = form_of(request)
    zone = _program_zone(access, patient_id, (Permission.CREATE, SIDE_EFFECT))
    values = {k: str(v) for k, v in form.items() if k != "csrf_token"}
    try:
        medication = str(form.get("medication", ""))
        if medication not in medication_ids():
            raise InvalidInput("medication", "choose the medication suspected")
        onset = _local_datetime(form, "onset_at", zone, default=utcnow())
        assert onset is not None
        plan = str(form.get("plan_id", ""))
        record_effect(
            access,
            patient_id,
            medication_id=medication,
            effect=str(form.get("effect", "")),
            severity=str(form.get("severity", "")),
            onset_at=onset,
            detail=str(form.get("detail", "")),
            plan_id=row_id(plan),
        )
    except InvalidInput as exc:  # MedicationInputError too
        form_refused(request, access, exc)
        now = utcnow()
        patient = load_patient(access, patient_id)
        rows = list_plans(access, patient)
        today = program_today(patient.program.time_zone, now)
        views = {
            r.id: plan_view(access, patient, r, now)
            for r in rows
            if effective_status(r, today) == "active"
        }
        shown = next(iter(views.values()), None)
        return chart_page(
            request,
            access,
            patient_id,
            "medications",
            "medications/chart.html",
            status_code=422,
            plans=rows,
            views=views,
            shown=shown,
            today=today,
            side_effects=list_side_effects(access, patient),
            alerts=_alerts(access, patient),
            may_prescribe=_may(access, Permission.CREATE, PLAN, patient),
            may_record_facts=_may(access, Permission.CREATE, FACTS, patient),
            may_record=True,
            side_effect_values=values,
            error_form="side_effect",
            **_common(),
            **_screening_context(
                access, patient, shown.row.medication_id if shown else "baclofen", now
            ),
            **_refusal(exc),
        )
    return RedirectResponse(
        f"/patients/{patient_id}/medications?flash=saved#side-effects", status_code=303
    )
