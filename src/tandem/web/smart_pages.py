"""SMART on FHIR for apps: discovery, the authorization (consent) page, the token and revocation
endpoints. Thin: the protocol is in `tandem.access.smart`; the policy decides as for every
other request once an app holds a token."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import errors
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from tandem.access import administration, audit, smart
from tandem.access.credentials import actor_for, claim_login_attempt, login_succeeded
from tandem.access.guard import Access
from tandem.access.policy import Decision, Role
from tandem.access.queries import Page, load_patient, search_page
from tandem.errors import NotFound
from tandem.fhir.http import base_url, parse_json
from tandem.fhir.outcome import FhirError
from tandem.kit import NavItem
from tandem.storage.db import utcnow
from tandem.storage.models import Patient, Program, SmartClient, SmartLaunch
from tandem.web.deps import (
    UnitOfWorkRoute,
    api_access,
    client_ip,
    csrf_form,
    form_of,
    get_db,
    origin_of,
    page_access,
    read_form,
    sessions_of,
    settings_of,
)
from tandem.web.rendering import render

router = APIRouter(include_in_schema=False, route_class=UnitOfWorkRoute)

AUTHORIZE_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "aud",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "launch",
)
PICKER_SIZE = 20


def _root(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/.well-known/smart-configuration")
def smart_configuration(request: Request) -> JSONResponse:
    """Where apps find the authorization and token endpoints (also under the FHIR base)."""
    return JSONResponse(smart.configuration(_root(request)))


@router.get("/fhir/.well-known/smart-configuration")
def fhir_smart_configuration(request: Request) -> JSONResponse:
    return JSONResponse(smart.configuration(_root(request)))


def _server(request: Request) -> smart.Server:
    return smart.Server(_root(request), base_url(request), settings_of(request).sealer())


@router.get("/oauth/jwks")
def jwks(request: Request, db: Session = Depends(get_db)) -> JSONResponse:
    """The public keys id_tokens are signed with (OpenID Connect)."""
    now = utcnow()
    published = smart.public_keys(db, now)
    if not published["keys"]:  # made now, for apps that fetch the keys before an id_token
        smart.signing_key(db, now, _server(request).sealer)
        published = smart.public_keys(db, now)
    return JSONResponse(published)


@router.get("/oauth/smart-style.json")
def smart_style() -> JSONResponse:
    """Tandem's colours and type, for apps that want to look at home (smart_style_url)."""
    return JSONResponse(smart.STYLE)


# --- the authorization page ---------------------------------------------------------------


def consent_policy(redirect_uri: str) -> str:
    """The page's Content-Security-Policy, letting its form lead on to the app's address."""
    from tandem.web.app import SECURITY_HEADERS

    parts = urlsplit(redirect_uri)
    return SECURITY_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}"
    )


def _redirect_error(error: errors.OAuth2Error) -> Response:
    _, _, headers = error()
    return RedirectResponse(dict(headers)["Location"], status_code=303)


def _unknown_app(request: Request, access: Access, exc: smart.UnknownApp) -> Response:
    access.refused("authorize", str(exc), resource_type="SmartApp")
    return render(request, "error.html", status_code=400, title="Cannot connect", message=str(exc))


def _refused(access: Access, client: SmartClient, exc: errors.OAuth2Error) -> Response:
    access.refused(
        "authorize",
        f"{exc.error}: {exc.description or ''}",
        resource_type="SmartApp",
        resource_id=client.client_id,
    )
    return _redirect_error(exc)


def _picker(access: Access, program_id: int, find: str) -> Page[Patient]:
    """Patients of the app's program the person may see, by name (audited as a search)."""
    statement = select(Patient).where(Patient.program_id == program_id, Patient.active)
    if find.strip():
        statement = statement.where(Patient.family_lower.startswith(find.strip().lower()))
    page: Page[Patient] = search_page(
        access,
        "Patient",
        statement,
        patient_column=Patient.id,
        program_column=Patient.program_id,
        patient_of=lambda p: p.id,
        order=(Patient.family_lower, Patient.given_lower, Patient.id),
        count=PICKER_SIZE,
        query_text=f"app launch patient picker: {find[:100]}",
    )
    return page


@dataclass(frozen=True)
class Checked:
    wanted: smart.AuthorizationRequest
    scopes: smart.ScopeDecision
    launched: SmartLaunch | None  # the EHR launch it redeems


def _checked_request(
    request: Request, access: Access, params: dict[str, str]
) -> Response | Checked:
    """The authorization request checked (app, redirect, PKCE, the EHR launch it redeems), the
    app usable by this person, and the scopes they may grant it; or the refusal to answer with
    (a page for an unknown app, otherwise a redirect to the app with the OAuth error)."""
    try:
        wanted = smart.check_authorization_request(access.db, params, base_url(request))
    except smart.UnknownApp as exc:
        return _unknown_app(request, access, exc)
    except errors.OAuth2Error as exc:
        client = smart.find_client(access.db, params.get("client_id", ""))
        assert client is not None
        return _refused(access, client, exc)
    client = wanted.client
    try:
        if not smart.may_use(client, access.actor):
            raise errors.AccessDeniedError(
                description="the app belongs to a program you are not a member of",
                state=wanted.state,
                redirect_uri=wanted.redirect_uri,
            )
        launched = smart.launch_context(access.db, wanted, access.actor.user_id, utcnow())
        scopes = smart.decide_scopes(
            access.actor.role,
            wanted.scope,
            redirect=wanted,
            ehr_patient=launched.patient_id if launched else None,
        )
    except errors.OAuth2Error as exc:
        return _refused(access, client, exc)
    return Checked(wanted, scopes, launched)


def _consent(
    request: Request,
    access: Access,
    params: dict[str, str],
    find: str = "",
    error: str = "",
    status_code: int = 200,
) -> Response:
    checked = _checked_request(request, access, params)
    if isinstance(checked, Response):
        return checked
    wanted, scopes = checked.wanted, checked.scopes
    client = wanted.client
    picked = _picker(access, client.program_id, find) if scopes.needs_patient else None
    launched_for = load_patient(access, scopes.ehr_patient) if scopes.ehr_patient else None
    program = access.db.get(Program, client.program_id)
    response = render(
        request,
        "smart/consent.html",
        status_code=status_code,
        client=client,
        program=program,
        params=params,
        fields=AUTHORIZE_FIELDS,
        granted=[
            (s, smart.describe_scope(s, access.actor.role, launched=launched_for is not None))
            for s in scopes.granted
        ],
        not_granted=scopes.not_granted,
        needs_patient=scopes.needs_patient,
        launched_for=launched_for,
        patients=picked.rows if picked else [],
        more_patients=bool(picked and picked.has_more),
        find=find,
        error=error,
        return_host=urlsplit(wanted.redirect_uri).netloc,
    )
    # The consent form's answer sends the browser on to the app's address.
    response.headers["Content-Security-Policy"] = consent_policy(wanted.redirect_uri)
    return response


@router.get("/oauth/authorize")
def authorize_page(
    request: Request,
    access: Access = Depends(page_access),
    response_type: str = "",
    client_id: str = "",
    redirect_uri: str = "",
    scope: str = "",
    state: str = "",
    aud: str = "",
    code_challenge: str = "",
    code_challenge_method: str = "",
    nonce: str = "",
    launch: str = "",
    find: str = "",
) -> Response:
    """An app asks for access: the signed-in person sees what it asks, in words, and allows or
    denies it (choosing a patient first when a member of staff launches it for one)."""
    params = {
        "response_type": response_type,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": scope,
        "state": state,
        "aud": aud,
        "code_challenge": code_challenge,
        "code_challenge_method": code_challenge_method,
        "nonce": nonce,
        "launch": launch,
    }
    return _consent(request, access, params, find)


@router.post("/oauth/authorize")
def authorize(request: Request, access: Access = Depends(csrf_form)) -> Response:
    form = form_of(request)
    params = {name: str(form.get(name, "")) for name in AUTHORIZE_FIELDS}
    checked = _checked_request(request, access, params)
    if isinstance(checked, Response):
        return checked
    wanted, scopes = checked.wanted, checked.scopes
    client = wanted.client
    if form.get("decision") != "allow":
        denied = errors.AccessDeniedError(
            description="the user denied access",
            state=wanted.state,
            redirect_uri=wanted.redirect_uri,
        )
        return _refused(access, client, denied)
    patient_id: str | None = None
    if access.actor.role is Role.PATIENT:
        patient_id = access.actor.patient_id
    elif checked.launched is not None:
        # Still allowed to see the patient the chart was open on; the launch is spent.
        patient_id = load_patient(access, checked.launched.patient_id).id
        try:
            smart.redeem_launch(access.db, checked.launched, wanted, utcnow())
        except errors.OAuth2Error as exc:
            return _refused(access, client, exc)
    elif scopes.needs_patient:
        chosen = str(form.get("patient", ""))
        try:
            patient = load_patient(access, chosen) if 0 < len(chosen) <= 36 else None
        except NotFound:
            patient = None
        if patient is None or patient.program_id != client.program_id:
            return _consent(
                request, access, params, error="Choose the patient to open.", status_code=422
            )
        patient_id = patient.id
    code = smart.issue_code(
        access.db, wanted, access.actor.user_id, scopes.text, patient_id, utcnow()
    )
    access.audit(
        "authorize",
        resource_type="SmartApp",
        resource_id=client.client_id,
        patient_id=patient_id,
        detail=f"allowed {client.name}: {scopes.text}",
    )
    location = add_params_to_uri(wanted.redirect_uri, [("code", code), ("state", wanted.state)])
    return RedirectResponse(location, status_code=303)


# --- EHR launch: an app opened from a patient's chart ---------------------------------------


def chart_apps(access: Access, patient: Patient) -> list[SmartClient]:
    """The apps a member of staff may open from this patient's chart: their program's apps with
    a launch URL, when the patient is of that program (the chart was opened through the policy)."""
    if access.actor.role is Role.PATIENT or patient.program_id not in access.actor.program_ids:
        return []
    return smart.launchable_apps(access.db, patient.program_id)


def chart_policy(apps: list[SmartClient]) -> str | None:
    """The chart's Content-Security-Policy when its Launch forms lead on to apps' addresses."""
    from tandem.web.app import SECURITY_HEADERS

    origins = sorted(
        {
            f"{urlsplit(a.launch_url).scheme}://{urlsplit(a.launch_url).netloc}"
            for a in apps
            if a.launch_url
        }
    )
    if not origins:
        return None
    return SECURITY_HEADERS["Content-Security-Policy"].replace(
        "form-action 'self'", "form-action 'self' " + " ".join(origins)
    )


@router.post("/patients/{patient_id}/launch")
def launch_app(request: Request, patient_id: str, access: Access = Depends(csrf_form)) -> Response:
    """Open an app for the patient whose chart is open (SMART EHR launch): the browser goes to
    the app's launch URL with `iss` and a single-use `launch` that gives the app this patient."""
    patient = load_patient(access, patient_id[:36])
    wanted = str(form_of(request).get("app", ""))[:64]
    client = next((a for a in chart_apps(access, patient) if a.client_id == wanted), None)
    if client is None:
        access.require_decision(
            Decision(False, "no app of the patient's program that staff may open from the chart"),
            "launch",
            "SmartApp",
        )
        raise NotFound(f"app {wanted} is not known")  # not reached: refused above
    location = smart.start_launch(
        access.db, client, access.actor.user_id, patient.id, base_url(request), utcnow()
    )
    access.audit(
        "launch",
        resource_type="SmartApp",
        resource_id=client.client_id,
        patient_id=patient.id,
        detail=f"opened {client.name} from the chart",
    )
    return RedirectResponse(location, status_code=303)


# --- the token and revocation endpoints ------------------------------------------------------

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(exc: errors.OAuth2Error) -> JSONResponse:
    body = dict(exc.get_body())
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return JSONResponse(body, status_code=exc.status_code or 400, headers=headers)


def _token_refused(
    request: Request, db: Session, refusal: smart.TokenRefusal, grant_type: str
) -> JSONResponse:
    """Nothing of the refused request is kept but what the refusal itself does (a reused code
    revokes its tokens), and the refusal is audited."""
    db.rollback()
    now = utcnow()
    revoked = smart.revoke_grant(db, refusal.revoke_grant, now) if refusal.revoke_grant else 0
    db.add(
        audit.entry(
            None,
            "token",
            origin_of(request, "api"),
            outcome=audit.MINOR_FAILURE,
            resource_type="SmartApp",
            resource_id=refusal.client.client_id if refusal.client else None,
            detail=f"{grant_type or 'no grant_type'}: {refusal}"
            + (f"; {revoked} tokens revoked" if revoked else ""),
            actor_label=f"app {refusal.client.client_id}" if refusal.client else "anonymous app",
            now=now,
        )
    )
    db.commit()
    return _oauth_error(refusal.error)


def _form_values(form: FormData) -> dict[str, str]:
    return {key: value for key, value in form.items() if isinstance(value, str)}


# Token requests share the sign-in limits (login_attempts, atomic across worker processes),
# under a key no e-mail address can take (it has no @).
CLIENT_KEY = "oauth-client:"


@dataclass(frozen=True)
class Claimed:
    """A token request under the limits: recorded as failed until `succeeded`."""

    attempt_id: int | None

    def succeeded(self, db: Session) -> None:
        if self.attempt_id is not None:
            login_succeeded(db, self.attempt_id)


def _claim(request: Request, values: dict[str, str]) -> Claimed | JSONResponse:
    """Count this request against the limits on refused token requests (per app from one
    address, per address), or answer 429 with Retry-After if one is reached. Not per app across
    addresses: an app proves itself with a key or a random secret, which no number of guesses
    finds, and such a limit would let anyone who knows an app's id block it."""
    settings = settings_of(request)
    claimed = smart.claimed_client_id(values, request.headers.get("authorization", ""))
    lockout = claim_login_attempt(
        sessions_of(request),
        f"{CLIENT_KEY}{claimed}",
        client_ip(request),
        utcnow(),
        settings.token_max_failures,
        settings.token_window_minutes,
        across_addresses=False,
    )
    if lockout.locked:
        seconds = lockout.retry_after_minutes * 60
        return JSONResponse(
            {
                "error": "invalid_client",
                "error_description": "too many refused requests from this app or address: "
                f"try again in {lockout.retry_after_minutes} minutes",
            },
            status_code=429,
            headers={**_NO_STORE, "Retry-After": str(seconds)},
        )
    return Claimed(lockout.attempt_id)


@router.post("/oauth/token")
def token(
    request: Request, form: FormData = Depends(read_form), db: Session = Depends(get_db)
) -> Response:
    values = _form_values(form)
    grant_type = values.get("grant_type", "")[:40]
    claim = _claim(request, values)
    if isinstance(claim, Response):
        return claim
    now = utcnow()
    try:
        client = smart.authenticate_client(
            db,
            values,
            request.headers.get("authorization", ""),
            f"{_root(request)}/oauth/token",
            now,
        )
        if grant_type == "authorization_code":
            issued = smart.exchange_code(db, client, values, now, _server(request))
        elif grant_type == "refresh_token":
            issued = smart.refresh(db, client, values, now, _server(request))
        elif grant_type == "client_credentials":
            issued = smart.client_credentials(db, client, values, now)
        else:
            raise smart.TokenRefusal(
                errors.UnsupportedGrantTypeError(smart.plain(grant_type)), client
            )
    except smart.TokenRefusal as refusal:
        return _token_refused(request, db, refusal, grant_type)
    claim.succeeded(db)
    actor = actor_for(issued.user, "") if issued.user is not None else None
    db.add(
        audit.entry(
            actor,
            "token",
            origin_of(request, "api"),
            resource_type="SmartApp",
            resource_id=issued.client.client_id,
            patient_id=issued.patient_id,
            detail=f"{grant_type}: issued to {issued.client.name}: {issued.scopes}",
            actor_label=None if actor else f"app {issued.client.client_id}",
            now=now,
        )
    )
    return JSONResponse(issued.body, headers=_NO_STORE)


@router.post("/oauth/revoke")
def revoke(
    request: Request, form: FormData = Depends(read_form), db: Session = Depends(get_db)
) -> Response:
    """RFC 7009: the app's token, and every token of the same authorization, stop working."""
    values = _form_values(form)
    claim = _claim(request, values)
    if isinstance(claim, Response):
        return claim
    now = utcnow()
    try:
        client = smart.authenticate_client(
            db,
            values,
            request.headers.get("authorization", ""),
            f"{_root(request)}/oauth/revoke",
            now,
        )
    except smart.TokenRefusal as refusal:
        return _token_refused(request, db, refusal, "revoke")
    claim.succeeded(db)
    revoked = smart.revoke(db, client, values.get("token", ""), now)
    db.add(
        audit.entry(
            None,
            "revoke",
            origin_of(request, "api"),
            resource_type="SmartApp",
            resource_id=client.client_id,
            detail=f"{revoked} tokens revoked",
            actor_label=f"app {client.client_id}",
            now=now,
        )
    )
    return JSONResponse({}, headers=_NO_STORE)


@router.post("/oauth/introspect")
def introspect(
    request: Request, form: FormData = Depends(read_form), db: Session = Depends(get_db)
) -> Response:
    """RFC 7662: an app asks whether one of its tokens still works, and what it grants."""
    values = _form_values(form)
    claim = _claim(request, values)
    if isinstance(claim, Response):
        return claim
    now = utcnow()
    try:
        client = smart.authenticate_client(
            db,
            values,
            request.headers.get("authorization", ""),
            f"{_root(request)}/oauth/introspect",
            now,
        )
    except smart.TokenRefusal as refusal:
        return _token_refused(request, db, refusal, "introspect")
    claim.succeeded(db)
    answer = smart.introspect(db, client, values.get("token", ""), now, base_url(request))
    return JSONResponse(answer, headers=_NO_STORE)


# --- dynamic registration (RFC 7591) -----------------------------------------------------------


async def raw_body(request: Request) -> bytes:
    """The body, read on the event loop (within TANDEM_MAX_BODY_BYTES) and parsed by the route
    once the caller is known to be allowed."""
    return await request.body()


@router.post("/oauth/register")
def register_client(
    request: Request, access: Access = Depends(api_access), raw: bytes = Depends(raw_body)
) -> Response:
    """An administrator's software registers an app for one of their programs (RFC 7591), with
    the administrator's API token as the initial access token: the same decision as Admin → Apps,
    for the same person, and audited as theirs."""
    header = request.headers.get("authorization", "")
    app_token = header[7:].strip().startswith(smart.ACCESS_PREFIX)
    programs = {p.code: p.id for p in administration.programs(access)} if not app_token else {}
    if access.actor.role is not Role.ADMIN or app_token or not programs:
        why = "registering an app takes an API token of an administrator of its program"
        access.refused("create", why, resource_type="SmartApp")
        return JSONResponse(
            {"error": "insufficient_scope", "error_description": why},
            status_code=403,
            headers={**_NO_STORE, "WWW-Authenticate": 'Bearer error="insufficient_scope"'},
        )
    try:
        metadata = parse_json(raw)
        registered, answer = smart.register_from_metadata(
            access.db, metadata, programs, utcnow(), access.actor.user_id
        )
    except (FhirError, smart.RegistrationError) as exc:
        error = exc.error if isinstance(exc, smart.RegistrationError) else "invalid_client_metadata"
        why = exc.description if isinstance(exc, smart.RegistrationError) else str(exc)
        access.refused("create", f"{error}: {why}", resource_type="SmartApp")
        return JSONResponse(
            {"error": error, "error_description": smart.plain(why)},
            status_code=400,
            headers=_NO_STORE,
        )
    access.audit(
        "create",
        resource_type="SmartApp",
        resource_id=registered.client.client_id,
        detail=f"{registered.client.kind} app {registered.client.name} (registered by its API)",
    )
    return JSONResponse(answer, status_code=201, headers=_NO_STORE)


# --- the apps a person allowed ---------------------------------------------------------------

NAV = NavItem(
    "apps",
    "My apps",
    "/account/apps",
    frozenset({"admin", "prescriber", "nurse", "counselor", "researcher", "patient"}),
    90,
)


@router.get("/account/apps")
def allowed_apps(request: Request, access: Access = Depends(page_access)) -> Response:
    """The apps the signed-in person allowed, and a way to stop each."""
    return render(
        request,
        "smart/allowed.html",
        active="apps",
        grants=smart.allowed_apps(access.db, access.actor.user_id, utcnow()),
        describe=lambda scope: smart.describe_scope(scope, access.actor.role),
    )


@router.post("/account/apps")
def stop_app(request: Request, access: Access = Depends(csrf_form)) -> Response:
    grant = str(form_of(request).get("grant", ""))
    stopped = smart.stop_app(access.db, access.actor.user_id, grant, utcnow())
    if stopped:
        access.audit(
            "revoke",
            resource_type="SmartApp",
            detail=f"the person stopped an app's access: {stopped} tokens revoked",
        )
    return RedirectResponse("/account/apps?flash=saved", status_code=303)
