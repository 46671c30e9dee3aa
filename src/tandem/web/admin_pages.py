"""Administration: users and their roles and programs, programs and units, roles, the audit trail."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy import select

from tandem.access import accounts, administration, audit, smart
from tandem.access.guard import Access
from tandem.access.policy import (
    ROLE_DUTIES,
    ROLE_GRANTS,
    ROLE_LABELS,
    Role,
    may_administer,
    may_administer_program,
    may_create_program,
)
from tandem.access.queries import visible
from tandem.errors import InvalidInput, NotFound
from tandem.storage.db import utcnow
from tandem.storage.models import (
    AuditEntry,
    Patient,
    PatientIdentifier,
    Program,
    SmartClient,
    User,
)
from tandem.web.deps import UnitOfWorkRoute, csrf_form, form_of, form_refused, page_access
from tandem.web.forms import row_id
from tandem.web.rendering import render

router = APIRouter(prefix="/admin", include_in_schema=False, route_class=UnitOfWorkRoute)


def admin_access(access: Access = Depends(page_access)) -> Access:
    access.require_decision(may_administer(access.actor), "admin", "Admin")
    return access


def admin_form(access: Access = Depends(csrf_form)) -> Access:
    access.require_decision(may_administer(access.actor), "admin", "Admin")
    return access


def _programs(access: Access) -> list[Program]:
    """The programs this administrator administers: the only ones the pages show or offer."""
    return administration.programs(access)


def _page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    return render(
        request, name, status_code=status_code, active="admin", roles=ROLE_LABELS, **context
    )


@router.get("/users")
def users(request: Request, access: Access = Depends(admin_access)) -> Response:
    rows = administration.users(access)
    programs = {p.id: p for p in _programs(access)}
    managed = {u.id for u in rows if administration.manages(access, u)}
    return _page(
        request,
        "admin/users.html",
        section="users",
        users=rows,
        programs=programs,
        managed=managed,
    )


def _user_values(form: Any) -> dict[str, Any]:
    return {
        "email": str(form.get("email", "")).strip(),
        "display_name": str(form.get("display_name", "")).strip(),
        "role": str(form.get("role", "")),
        "password": str(form.get("password", "")),
        "programs": [p for p in map(row_id, form.getlist("programs")) if p is not None],
        "patient_mrn": str(form.get("patient_mrn", "")).strip(),
        "active": form.get("active") == "on",
    }


def _patient_by_mrn(access: Access, mrn: str) -> str | None:
    return administration.patient_by_mrn(access, mrn)


@router.get("/users/new")
def new_user_form(request: Request, access: Access = Depends(admin_access)) -> Response:
    return _page(
        request,
        "admin/user_edit.html",
        section="users",
        values={"programs": [], "role": "nurse", "active": True},
        programs=_programs(access),
        edited=None,
    )


@router.post("/users/new")
def create_user(request: Request, access: Access = Depends(admin_form)) -> Response:
    values = _user_values(form_of(request))
    try:
        user = accounts.create_user(
            access.db,
            values["email"],
            values["display_name"],
            values["role"],
            values["password"],
            values["programs"],
            _patient_by_mrn(access, values["patient_mrn"]),
            actor=access.actor,
        )
        access.audit(
            "create",
            resource_type="User",
            resource_id=str(user.id),
            patient_id=user.patient_id,
            detail=f"role {user.role}; programs: "
            + ", ".join(p.name for p in _programs(access) if p.id in user.program_ids),
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _page(
            request,
            "admin/user_edit.html",
            422,
            section="users",
            values=values,
            programs=_programs(access),
            edited=None,
            error_field=exc.field,
            error=exc.message,
        )
    return RedirectResponse("/admin/users?flash=created", status_code=303)


def _edited(access: Access, user_id: int) -> User:
    return administration.user(access, user_id)


@router.get("/users/{user_id}")
def edit_user_form(
    request: Request, user_id: int, access: Access = Depends(admin_access)
) -> Response:
    user = _edited(access, user_id)
    mrn = ""
    if user.patient_id:
        mrn = (
            access.db.scalar(
                select(PatientIdentifier.value).where(
                    PatientIdentifier.patient_id == user.patient_id
                )
            )
            or ""
        )
    values = {
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "programs": sorted(user.program_ids),
        "patient_mrn": mrn,
        "active": user.active,
    }
    return _page(
        request,
        "admin/user_edit.html",
        section="users",
        values=values,
        programs=_programs(access),
        edited=user,
    )


@router.post("/users/{user_id}")
def update_user(request: Request, user_id: int, access: Access = Depends(admin_form)) -> Response:
    user = _edited(access, user_id)
    values = _user_values(form_of(request))
    values["email"] = user.email
    now = utcnow()
    # Changing one's own account keeps the session making the change; every other one ends.
    own = request.state.web_session.id if user.id == access.actor.user_id else None
    # Memberships in programs out of the administrator's reach are kept as they are.
    kept = sorted(user.program_ids - {p.id for p in _programs(access)})
    try:
        changes = accounts.update_user(
            access.db,
            user,
            values["display_name"],
            values["role"],
            values["active"],
            values["programs"] + kept,
            _patient_by_mrn(access, values["patient_mrn"]),
            access.actor,
            now,
            keep_session=own,
        )
        if values["password"]:
            changes.append(accounts.reset_password(access.db, user, values["password"], now, own))
        access.audit(
            "update",
            resource_type="User",
            resource_id=str(user.id),
            patient_id=user.patient_id,
            detail="; ".join(changes) or "no change",
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _page(
            request,
            "admin/user_edit.html",
            422,
            section="users",
            values=values,
            programs=_programs(access),
            edited=user,
            error_field=exc.field,
            error=exc.message,
        )
    return RedirectResponse("/admin/users?flash=saved", status_code=303)


@router.get("/programs")
def programs(request: Request, access: Access = Depends(admin_access)) -> Response:
    return _page(
        request,
        "admin/programs.html",
        section="programs",
        programs=_programs(access),
        kinds=accounts.UNIT_KINDS,
        values={},
        may_create_program=bool(may_create_program(access.actor)),
    )


@router.post("/programs")
def create_program(request: Request, access: Access = Depends(admin_form)) -> Response:
    access.require_decision(may_create_program(access.actor), "create", "Organization")
    form = form_of(request)
    values = {k: str(form.get(k, "")).strip() for k in ("code", "name", "site", "time_zone")}
    try:
        program = accounts.create_program(
            access.db, values["code"], values["name"], values["site"], values["time_zone"] or "UTC"
        )
        admin = access.db.get(User, access.actor.user_id)
        if admin is not None:  # its creator administers it
            accounts.set_memberships(access.db, admin, sorted(admin.program_ids | {program.id}))
            access.audit(
                "update",
                resource_type="User",
                resource_id=str(admin.id),
                detail=f"programs added: {program.name} (created by them)",
            )
        access.audit("create", resource_type="Organization", resource_id=str(program.id))
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _page(
            request,
            "admin/programs.html",
            422,
            section="programs",
            programs=_programs(access),
            kinds=accounts.UNIT_KINDS,
            values=values,
            may_create_program=True,
            error_field=exc.field,
            error=exc.message,
        )
    return RedirectResponse("/admin/programs?flash=created", status_code=303)


@router.post("/programs/{program_id}/units")
def add_unit(request: Request, program_id: int, access: Access = Depends(admin_form)) -> Response:
    form = form_of(request)
    program = administration.program(access, program_id)
    try:
        unit = accounts.add_unit(
            access.db,
            program,
            str(form.get("unit_code", "")),
            str(form.get("unit_name", "")),
            str(form.get("kind", "")),
        )
        access.audit("create", resource_type="Location", resource_id=str(unit.id))
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _page(
            request,
            "admin/programs.html",
            422,
            section="programs",
            programs=_programs(access),
            kinds=accounts.UNIT_KINDS,
            values={},
            may_create_program=bool(may_create_program(access.actor)),
            unit_program=program_id,
            error_field=exc.field,
            error=exc.message,
        )
    return RedirectResponse("/admin/programs?flash=created", status_code=303)


@router.get("/roles")
def roles(request: Request, access: Access = Depends(admin_access)) -> Response:
    letters = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
    rows = [
        {
            "role": role,
            "label": ROLE_LABELS[role],
            "duties": ROLE_DUTIES[role],
            "grants": ", ".join(letters[x] for x in ROLE_GRANTS[role].get("*", "")) or "none",
        }
        for role in Role
    ]
    return _page(request, "admin/roles.html", section="roles", rows=rows)


@router.get("/audit")
def audit_trail(
    request: Request,
    patient: str = "",
    outcome: str = "",
    page: int = 1,
    access: Access = Depends(admin_access),
) -> Response:
    page = max(1, page)
    stmt = administration.audit_entries(access)
    if patient.strip():
        stmt = stmt.where(AuditEntry.patient_id == patient.strip())
    if outcome in ("0", "4", "8"):
        stmt = stmt.where(AuditEntry.outcome == outcome)
    rows = list(
        access.db.scalars(stmt.order_by(AuditEntry.id.desc()).offset((page - 1) * 50).limit(51))
    )
    shown = sorted({r.patient_id for r in rows[:50] if r.patient_id})
    names = {
        p.id: p.display_name
        for p in access.db.scalars(
            select(Patient).where(
                Patient.id.in_(shown), visible(access, "Patient", Patient.id, Patient.program_id)
            )
        )
    }
    access.audit(
        "search", resource_type="AuditEvent", query=str(request.url.query), shown=list(names)
    )
    return _page(
        request,
        "admin/audit.html",
        section="audit",
        entries=rows[:50],
        has_more=len(rows) > 50,
        page=page,
        patient=patient,
        outcome=outcome,
        names=names,
        describe=audit.describe,
    )


# --- apps (SMART on FHIR) -----------------------------------------------------------------


def _apps_page(
    request: Request, access: Access, status_code: int = 200, **context: Any
) -> Response:
    programs = _programs(access)
    rows = list(
        access.db.scalars(
            select(SmartClient)
            .where(SmartClient.program_id.in_([p.id for p in programs]))
            .order_by(SmartClient.disabled_at.is_not(None), SmartClient.name)
        )
    )
    context.setdefault("values", {"kind": "public"})
    return _page(
        request,
        "admin/apps.html",
        status_code,
        section="apps",
        apps=rows,
        programs=programs,
        program_names={p.id: p.name for p in programs},
        kinds=smart.KINDS,
        service_roles=[(r.value, ROLE_LABELS[r]) for r in smart.SERVICE_ROLES],
        **context,
    )


@router.get("/apps")
def apps(request: Request, access: Access = Depends(admin_access)) -> Response:
    """Apps registered for the administrator's programs: SMART apps people launch and backend
    services, and the form to register one."""
    return _apps_page(request, access)


@router.post("/apps")
def register_app(request: Request, access: Access = Depends(admin_form)) -> Response:
    form = form_of(request)
    values = {
        k: str(form.get(k, "")).strip()
        for k in (
            "name",
            "kind",
            "program",
            "redirect_uris",
            "launch_url",
            "jwks",
            "jwks_uri",
            "role",
            "scopes",
        )
    }
    try:
        program_id = row_id(values["program"])
        if program_id is None or not may_administer_program(access.actor, program_id):
            raise InvalidInput("program", "choose one of the programs you administer")
        registered = smart.register_app(
            access.db,
            name=values["name"],
            kind=values["kind"],
            program_id=program_id,
            now=utcnow(),
            created_by=access.actor.user_id,
            redirect_uris=values["redirect_uris"],
            jwks=values["jwks"],
            jwks_uri=values["jwks_uri"],
            role=values["role"],
            scopes=values["scopes"],
            launch_url=values["launch_url"],
        )
        access.audit(
            "create",
            resource_type="SmartApp",
            resource_id=registered.client.client_id,
            detail=f"{registered.client.kind} app {registered.client.name}",
        )
    except InvalidInput as exc:
        form_refused(request, access, exc)
        return _apps_page(
            request, access, 422, values=values, error_field=exc.field, error=exc.message
        )
    return _apps_page(request, access, registered=registered)


@router.post("/apps/{app_id}/disable")
def disable_app(request: Request, app_id: int, access: Access = Depends(admin_form)) -> Response:
    client = access.db.get(SmartClient, app_id)
    if client is None or not may_administer_program(access.actor, client.program_id):
        raise NotFound(f"app {app_id} is not known")
    revoked = smart.disable_app(access.db, client, utcnow())
    access.audit(
        "update",
        resource_type="SmartApp",
        resource_id=client.client_id,
        detail=f"disabled; {revoked} tokens revoked",
    )
    return RedirectResponse("/admin/apps?flash=saved", status_code=303)
