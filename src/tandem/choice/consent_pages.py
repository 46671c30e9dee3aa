"""Consent pages: the chart's Consent tab (staff record consents; the patient sees theirs and
revokes one), the release of records (a PDF or a FHIR Bundle, only under a valid consent) and
the accounting of disclosures, in plain words for the patient."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from tandem.access.accounts import display_names
from tandem.access.guard import Access, AccessDenied
from tandem.access.policy import Role
from tandem.choice import consent as core
from tandem.choice import consent_fhir, consent_service
from tandem.choice.consent_records import EXPORTERS
from tandem.clock import program_today, utcnow
from tandem.errors import InvalidInput
from tandem.patients import service as patients
from tandem.patients.pages import chart_page
from tandem.storage.models import Patient
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.forms import row_id
from tandem.web.rendering import PACKAGE, templates

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)
TAB = "consent"
RELEASE_CSS = PACKAGE / "web" / "static" / "consent-release.css"


def _day(text: str, field: str) -> date | None:
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(field, "enter the date as YYYY-MM-DD") from None


def _values(form: FormData) -> dict[str, Any]:
    keys = (
        "recipient_kind",
        "recipient_program_id",
        "recipient_name",
        "purpose",
        "purpose_text",
        "expires_on",
        "expiry_event",
        "signed_on",
        "signed_by",
        "signer_role",
        "form",
    )
    values: dict[str, Any] = {k: str(form.get(k, "")).strip() for k in keys}
    values["information"] = [str(v) for v in form.getlist("information")]
    return values


def _input(values: dict[str, Any]) -> core.ConsentInput:
    program_id = None
    if values["recipient_kind"] == "program":
        program_id = row_id(values["recipient_program_id"])
        if program_id is None:
            raise InvalidInput("recipient", "choose the program that receives the records")
    return core.ConsentInput(
        recipient_program_id=program_id,
        recipient_name="" if program_id is not None else values["recipient_name"],
        purpose=values["purpose"],
        purpose_text=values["purpose_text"],
        information=tuple(values["information"]),
        expires_on=_day(values["expires_on"], "expiry"),
        expiry_event=values["expiry_event"],
        signed_on=_day(values["signed_on"], "signed_on"),
        signed_by=values["signed_by"],
        signer_role=values["signer_role"] or "patient",
    )


def _consent_page(
    request: Request,
    access: Access,
    patient_id: str,
    status_code: int = 200,
    **context: Any,
) -> Response:
    patient = patients.get_patient(access, patient_id)
    now = utcnow()
    consents = consent_service.list_consents(access, patient)
    disclosures = consent_service.list_disclosures(access, patient)
    names = display_names(
        access.db,
        {c.recorded_by for c in consents}
        | {c.revoked_by for c in consents}
        | {d.disclosed_by for d in disclosures},
    )
    may_record = consent_service.may_record(access, patient)
    defaults = {
        "recipient_kind": "outside",
        "signer_role": "patient",
        "signed_on": program_today(patient.program.time_zone, now).isoformat(),
        "information": ["all"],
    }
    return chart_page(
        request,
        access,
        patient_id,
        TAB,
        "choice/consent/list.html",
        status_code=status_code,
        consents=[(c, consent_service.consent_state(c, now)) for c in consents],
        disclosures=disclosures,
        names=names,
        may_record=may_record,
        is_patient=access.actor.role is Role.PATIENT,
        rules=core.rules(),
        state_text=core.STATE_TEXT,
        programs=consent_service.other_programs(access, patient) if may_record else [],
        information_label=core.information_label,
        information_plain=core.information_plain,
        values=context.pop("values", defaults),
        **context,
    )


@router.get("/patients/{patient_id}/consents")
def consents(request: Request, patient_id: str, access: Access = Depends(page_access)) -> Response:
    return _consent_page(request, access, patient_id)


@router.post("/patients/{patient_id}/consents")
def record(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    values = _values(form_of(request))
    try:
        consent_service.record_consent(access, patient_id, _input(values), utcnow())
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _consent_page(
            request,
            access,
            patient_id,
            status_code=422,
            values=values,
            error_field=exc.field,
            error=exc.message,
        )
    return RedirectResponse(f"/patients/{patient_id}/consents?flash=consent-saved", status_code=303)


def _change(
    request: Request, access: Access, patient_id: str, consent_id: int, action: str
) -> Response:
    try:
        row = consent_service.get_consent(access, consent_id)
        if row.patient_id != patient_id:
            raise InvalidInput("consent", "this consent is another patient's")
        if action == "revoke":
            note = str(form_of(request).get("note", ""))
            consent_service.revoke_consent(access, consent_id, utcnow(), note)
        else:
            consent_service.end_consent(access, consent_id, utcnow())
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _consent_page(request, access, patient_id, status_code=422, change_error=exc.message)
    flash = "consent-revoked" if action == "revoke" else "consent-ended"
    return RedirectResponse(f"/patients/{patient_id}/consents?flash={flash}", status_code=303)


@router.post("/patients/{patient_id}/consents/{consent_id}/revoke")
def revoke(
    request: Request, patient_id: str, consent_id: int, access: Access = Depends(csrf_form)
) -> Response:
    return _change(request, access, patient_id, consent_id, "revoke")


@router.post("/patients/{patient_id}/consents/{consent_id}/ended")
def ended(
    request: Request, patient_id: str, consent_id: int, access: Access = Depends(csrf_form)
) -> Response:
    return _change(request, access, patient_id, consent_id, "end")


# --- release of records ------------------------------------------------------------------------


def _release_form(
    request: Request, access: Access, patient: Patient, status_code: int = 200, **context: Any
) -> Response:
    now = utcnow()
    in_force = [
        c
        for c in consent_service.list_consents(access, patient)
        if consent_service.consent_state(c, now) == "in force"
    ]
    return chart_page(
        request,
        access,
        patient.id,
        TAB,
        "choice/consent/release.html",
        status_code=status_code,
        in_force=in_force,
        rules=core.rules(),
        programs=consent_service.other_programs(access, patient),
        information_label=core.information_label,
        values=context.pop(
            "values", {"recipient_kind": "outside", "information": ["all"], "form": "pdf"}
        ),
        **context,
    )


@router.get("/patients/{patient_id}/disclosures/new")
def release_form(
    request: Request, patient_id: str, access: Access = Depends(page_access)
) -> Response:
    patient = patients.get_patient(access, patient_id)
    consent_id = row_id(request.query_params.get("consent", ""))
    values: dict[str, Any] = {"recipient_kind": "outside", "information": ["all"], "form": "pdf"}
    if consent_id is not None:
        chosen = consent_service.get_consent(access, consent_id)
        if chosen.patient_id == patient.id:
            values.update(
                recipient_kind="program" if chosen.recipient_program_id else "outside",
                recipient_program_id=str(chosen.recipient_program_id or ""),
                recipient_name=chosen.recipient_name,
                purpose=chosen.purpose,
                information=chosen.information.split(","),
            )
    return _release_form(request, access, patient, values=values)


@router.post("/patients/{patient_id}/disclosures")
def release(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    patient = patients.get_patient(access, patient_id)
    values = _values(form_of(request))
    form = values["form"] if values["form"] in ("pdf", "bundle") else "pdf"
    try:
        program_id = None
        if values["recipient_kind"] == "program":
            program_id = row_id(values["recipient_program_id"])
            if program_id is None:
                raise InvalidInput("recipient", "choose the program that receives the records")
        made = consent_service.disclose(
            access,
            patient.id,
            recipient_program_id=program_id,
            recipient_name=values["recipient_name"],
            purpose=values["purpose"],
            information=values["information"],
            form=form,
            now=utcnow(),
            base_url=str(request.base_url).rstrip("/") + "/fhir",
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        patient = patients.get_patient(access, patient_id)
        return _release_form(
            request, access, patient, 422, values=values, error_field=exc.field, error=exc.message
        )
    except AccessDenied as exc:  # refused and audited by the service
        patient = patients.get_patient(access, patient_id)
        return _release_form(request, access, patient, 403, values=values, refused=exc.reason)
    discloser = display_names(access.db, {access.actor.user_id}).get(access.actor.user_id, "")
    program = made.patient.program.name
    consent = consent_fhir.to_consent(made.consent, program, None, None)
    filename = f"release-{made.disclosure.id}"
    if form == "bundle":
        bundle = consent_fhir.release_bundle(
            made.disclosure,
            consent,
            made.resources,
            program,
            discloser,
            str(request.base_url).rstrip("/") + "/fhir",
        )
        return Response(
            json.dumps(bundle, ensure_ascii=False, indent=1).encode(),
            media_type="application/fhir+json",
            headers={"Content-Disposition": f'attachment; filename="{filename}.json"'},
        )
    return Response(
        release_pdf(made, discloser),
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{filename}.pdf"'},
    )


def release_pdf(made: consent_service.Release, discloser: str) -> bytes:
    """The release as a PDF: the notice prohibiting redisclosure first, the consent's scope,
    then the records in words."""
    from weasyprint import CSS, HTML

    rows = [_summary(r) for r in made.resources]
    html = templates.env.get_template("choice/consent/release_pdf.html").render(
        release=made,
        patient=made.patient,
        consent=made.consent,
        disclosure=made.disclosure,
        notice=core.rules().notice,
        purpose=core.rules().purpose(made.disclosure.purpose),
        information=core.information_label(made.disclosure.information),
        discloser=discloser,
        rows=rows,
        zone=made.patient.program.time_zone,
        not_exported=sorted(
            t
            for t in (core.covered_types(made.disclosure.information) or frozenset(EXPORTERS))
            if t not in EXPORTERS
        ),
    )
    pdf: bytes = HTML(string=html).write_pdf(stylesheets=[CSS(filename=str(RELEASE_CSS))])
    return pdf


def _summary(resource: dict[str, Any]) -> dict[str, str]:
    """One record in words for the PDF: its kind, date and what it says."""
    kind = resource["resourceType"]
    when = ""
    for key in ("effectiveDateTime", "authored", "authoredOn", "dateTime", "date", "birthDate"):
        if resource.get(key):
            when = str(resource[key])[:16].replace("T", " ")
            break
    what = ""
    code = (
        resource.get("code") or resource.get("medicationCodeableConcept") or resource.get("event")
    )
    if isinstance(code, dict):
        what = str(
            code.get("text") or next((c.get("display", "") for c in code.get("coding", [])), "")
        )
    if kind == "Patient":
        names = resource.get("name") or [{}]
        what = " ".join([*names[0].get("given", []), names[0].get("family", "")]).strip()
    for key in ("valueInteger", "valueQuantity", "status"):
        if key in resource:
            value = resource[key]
            if isinstance(value, dict):
                value = f"{value.get('value', '')} {value.get('unit', '')}".strip()
            what = f"{what} · {key.removeprefix('value').lower()}: {value}" if what else f"{value}"
            break
    return {"kind": kind, "when": when, "what": what}
