"""SMART on FHIR authorization (SMART App Launch 2.x and SMART Backend Services).

- Apps are registered by an administrator of their program (`register_app`): a public app
  (PKCE only), a confidential app (a client secret), or a backend service (its public keys, the
  role it acts as, the system/ scopes it may ask for).
- The authorization code flow with PKCE (S256 only): `check_authorization_request`, the
  consent page (tandem.web.smart_pages), `issue_code`; the token endpoint exchanges the code
  (`exchange_code`), refreshes (`refresh`), and serves backend services (`client_credentials`,
  a JWT client assertion signed RS384 or ES384 with a registered key).
- Tokens are opaque, stored as their sha256, and become the `Actor` every route already asks
  the policy with (`actor_of_token`): their resource scopes are `Actor.scopes`, narrowed at
  issue to what the role allows (`policy.grantable`), so no route changes.

Authlib does PKCE and the OAuth error answers; joserfc reads the keys and verifies the
assertions. Errors are Authlib's `OAuth2Error`s (RFC 6749 codes), raised here and answered by the
routes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import errors
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, joinedload, selectinload

from tandem.access import remote_keys
from tandem.access.credentials import actor_for
from tandem.access.keystore import Sealer, is_sealed
from tandem.access.policy import Actor, Role, grantable
from tandem.access.scopes import Scope, ScopeError, is_resource_scope, parse_scope
from tandem.errors import InvalidInput
from tandem.storage.models import (
    SmartAssertion,
    SmartClient,
    SmartCode,
    SmartLaunch,
    SmartSigningKey,
    SmartToken,
    User,
)

ACCESS_PREFIX = "tds_"  # noqa: S105 (a label, not a secret)
REFRESH_PREFIX = "tdr_"  # noqa: S105
CODE_LIFETIME = timedelta(seconds=60)
ACCESS_LIFETIME = timedelta(hours=1)
REFRESH_LIFETIME = timedelta(days=30)
ASSERTION_MAX_LIFETIME = timedelta(minutes=5)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGORITHMS = ["RS384", "ES384"]

KINDS = {
    "public": "App people launch, with no secret (PKCE)",
    "confidential": "App people launch, with a client secret",
    "backend": "Backend service (signed JWT, system/ scopes)",
}
# Roles a backend service may act as (never an administrator or a patient).
SERVICE_ROLES = (Role.PRESCRIBER, Role.NURSE, Role.COUNSELOR, Role.RESEARCHER)

LAUNCH_PATIENT = "launch/patient"
LAUNCH = "launch"  # an EHR launch: the app has the context the chart gave it
LAUNCH_LIFETIME = timedelta(minutes=5)
# id_tokens are signed with a key at most this old; older keys are published until the last
# id_token they signed has expired, then deleted.
SIGNING_KEY_DAYS = 90
OFFLINE = ("offline_access", "online_access")
OPENID, FHIR_USER = "openid", "fhirUser"
ID_TOKEN_LIFETIME = timedelta(hours=1)
# What Tandem answers to: the FHIR API with SMART v2 (and v1) scopes, a standalone launch with a
# patient in context, refresh tokens, and who signed in (OpenID Connect: an id_token; fhirUser
# for patients, whose record is a FHIR Patient).
SCOPES_SUPPORTED = (
    OPENID,
    FHIR_USER,
    LAUNCH,
    LAUNCH_PATIENT,
    "offline_access",
    "online_access",
    "patient/*.rs",
    "patient/*.cruds",
    "user/*.rs",
    "user/*.cruds",
    "system/*.rs",
)
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


def plain(text: str) -> str:
    """Text fit for an OAuth error_description (RFC 6749: printable ASCII but \" and \\),
    whatever a client sent that it repeats."""
    return "".join(c if 0x20 <= ord(c) <= 0x7E and c not in '"\\' else "?" for c in text)[:300]


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- registration -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    client: SmartClient
    secret: str | None  # shown once (confidential apps)


def _redirect_uris(text: str) -> list[str]:
    uris = [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]
    if not uris:
        raise InvalidInput("redirect_uris", "give at least one redirect URI")
    for uri in uris:
        parts = urlsplit(uri)
        loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise InvalidInput(
                "redirect_uris",
                f"{uri} must be an https address (http only for localhost)",
            )
        if not parts.netloc or parts.fragment:
            raise InvalidInput("redirect_uris", f"{uri} must be absolute and have no #fragment")
    return uris


def _public_keys(text: str) -> str:
    try:
        data = json.loads(text)
        if isinstance(data, dict) and "keys" not in data:
            data = {"keys": [data]}
        keys = KeySet.import_key_set(data)
    except (ValueError, TypeError, KeyError, JoseError) as exc:
        raise InvalidInput("jwks", f"not a JSON Web Key Set: {exc}") from None
    if not keys.keys:
        raise InvalidInput("jwks", "the key set holds no key")
    if any(key.is_private for key in keys.keys):
        raise InvalidInput("jwks", "give the public keys only, never a private key")
    if any(key.key_type not in ("RSA", "EC") for key in keys.keys):
        raise InvalidInput("jwks", "keys must be RSA (RS384) or EC P-384 (ES384)")
    return json.dumps({"keys": [key.as_dict(private=False) for key in keys.keys]})


def _jwks_uri(text: str) -> str:
    uri = text.strip()
    problem = remote_keys.address_problem(uri)
    if problem or len(uri) > 2000:
        raise InvalidInput("jwks_uri", f"{uri[:200]} {problem or 'is too long'}")
    return uri


def _launch_url(text: str) -> str | None:
    uri = text.strip()
    if not uri:
        return None
    parts = urlsplit(uri)
    loopback = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise InvalidInput(
            "launch_url", f"{uri[:200]} must be an https address (http only for localhost)"
        )
    if not parts.netloc or parts.fragment or len(uri) > 2000:
        raise InvalidInput("launch_url", "give the app's absolute launch address, no #fragment")
    return uri


def _service_scopes(text: str, role: Role) -> str:
    scopes = []
    for part in text.replace(",", " ").split():
        try:
            scope = parse_scope(part)
        except ScopeError as exc:
            raise InvalidInput("scopes", str(exc)) from None
        if scope.context != "system":
            raise InvalidInput("scopes", f"{part}: a backend service takes system/ scopes")
        narrowed = grantable(role, scope)
        if narrowed is None:
            raise InvalidInput("scopes", f"{part}: a {role.value} may do none of this")
        scopes.append(str(narrowed))
    if not scopes:
        raise InvalidInput("scopes", "give at least one system/ scope, e.g. system/*.rs")
    return " ".join(scopes)


def register_app(
    db: Session,
    *,
    name: str,
    kind: str,
    program_id: int,
    now: datetime,
    created_by: int | None,
    redirect_uris: str = "",
    jwks: str = "",
    jwks_uri: str = "",
    role: str = "",
    scopes: str = "",
    launch_url: str = "",
) -> Registered:
    """Register an app (the caller has checked that the registrant administers `program_id`)."""
    name = name.strip()
    if not name:
        raise InvalidInput("name", "give the app a name people will recognise")
    if kind not in KINDS:
        raise InvalidInput("kind", f"choose one of: {', '.join(KINDS)}")
    client = SmartClient(
        client_id=f"{'svc' if kind == 'backend' else 'app'}-{secrets.token_hex(8)}",
        name=name[:200],
        kind=kind,
        program_id=program_id,
        redirect_uris="",
        role="",
        scopes="",
        created_at=now,
        created_by=created_by,
    )
    secret = None
    if kind == "backend":
        try:
            service_role = Role(role)
        except ValueError:
            service_role = None
        if service_role not in SERVICE_ROLES:
            raise InvalidInput(
                "role", f"choose the role it acts as: {', '.join(r.value for r in SERVICE_ROLES)}"
            )
        assert service_role is not None
        client.role = service_role.value
        client.scopes = _service_scopes(scopes, service_role)
        if jwks.strip() and jwks_uri.strip():
            raise InvalidInput(
                "jwks", "give the keys or the address they are published at, not both"
            )
        if jwks_uri.strip():
            client.jwks_uri = _jwks_uri(jwks_uri)
        elif not jwks.strip():
            raise InvalidInput(
                "jwks",
                "give the service's public keys (a JWKS) or the https address it publishes "
                "them at (jwks_uri)",
            )
        else:
            client.jwks = _public_keys(jwks)
    else:
        client.redirect_uris = "\n".join(_redirect_uris(redirect_uris))
        client.launch_url = _launch_url(launch_url)
        if kind == "confidential":
            secret = secrets.token_urlsafe(32)
            client.secret_hash = _digest(secret)
    db.add(client)
    db.flush()
    return Registered(client, secret)


# --- dynamic registration (RFC 7591), by an administrator's token ------------------------------

_AUTH_METHODS = {
    "none": "public",
    "client_secret_basic": "confidential",
    "client_secret_post": "confidential",
    "private_key_jwt": "backend",
}
# Fields of Tandem's own: the program (by code) when the administrator has several, the role a
# backend service acts as, and where staff open an app from a chart.
PROGRAM_FIELD, ROLE_FIELD, LAUNCH_FIELD = "tandem_program", "tandem_role", "tandem_launch_url"


class RegistrationError(Exception):
    """RFC 7591 3.2.2: `error` (invalid_redirect_uri, invalid_client_metadata) and why."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = plain(description)


def _text(metadata: Mapping[str, Any], name: str) -> str:
    value = metadata.get(name, "")
    if not isinstance(value, str):
        raise RegistrationError("invalid_client_metadata", f"{name} must be a string")
    return value


def _strings(metadata: Mapping[str, Any], name: str) -> list[str]:
    value = metadata.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RegistrationError("invalid_client_metadata", f"{name} must be a list of strings")
    return value


def register_from_metadata(
    db: Session,
    metadata: Any,
    program_ids: Mapping[str, int],
    now: datetime,
    created_by: int,
) -> tuple[Registered, dict[str, Any]]:
    """Register an app from RFC 7591 client metadata, for one of `program_ids` (the programs
    the registering administrator administers, by code). Returns the registration and the
    answer (client_id, the secret once, the metadata as registered)."""
    if not isinstance(metadata, dict):
        raise RegistrationError(
            "invalid_client_metadata", "send the client metadata as a JSON object"
        )
    method = _text(metadata, "token_endpoint_auth_method") or "client_secret_basic"
    kind = _AUTH_METHODS.get(method)
    if kind is None:
        raise RegistrationError(
            "invalid_client_metadata",
            f"token_endpoint_auth_method must be one of {', '.join(_AUTH_METHODS)}",
        )
    program = _text(metadata, PROGRAM_FIELD)
    if program:
        if program not in program_ids:
            raise RegistrationError(
                "invalid_client_metadata", f"{PROGRAM_FIELD}: not a program you administer"
            )
        program_id = program_ids[program]
    elif len(program_ids) == 1:
        program, program_id = next(iter(program_ids.items()))
    else:
        raise RegistrationError(
            "invalid_client_metadata",
            f"{PROGRAM_FIELD}: name the program (its code): you administer several",
        )
    grants = _strings(metadata, "grant_types") or (
        ["client_credentials"] if kind == "backend" else ["authorization_code"]
    )
    allowed_grants = (
        {"client_credentials"} if kind == "backend" else {"authorization_code", "refresh_token"}
    )
    if not set(grants) <= allowed_grants:
        raise RegistrationError(
            "invalid_client_metadata",
            f"grant_types for {method}: {', '.join(sorted(allowed_grants))}",
        )
    jwks = metadata.get("jwks")
    try:
        registered = register_app(
            db,
            name=_text(metadata, "client_name"),
            kind=kind,
            program_id=program_id,
            now=now,
            created_by=created_by,
            redirect_uris="\n".join(_strings(metadata, "redirect_uris")),
            jwks=json.dumps(jwks) if jwks is not None else "",
            jwks_uri=_text(metadata, "jwks_uri"),
            role=_text(metadata, ROLE_FIELD),
            scopes=_text(metadata, "scope"),
            launch_url=_text(metadata, LAUNCH_FIELD),
        )
    except InvalidInput as exc:
        field = {
            "name": "client_name",
            "redirect_uris": "redirect_uris",
            "scopes": "scope",
            "role": ROLE_FIELD,
            "launch_url": LAUNCH_FIELD,
        }.get(exc.field, exc.field)
        error = (
            "invalid_redirect_uri" if exc.field == "redirect_uris" else "invalid_client_metadata"
        )
        raise RegistrationError(error, f"{field}: {exc.message}") from None
    client = registered.client
    answer: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(now.timestamp()),
        "client_name": client.name,
        "token_endpoint_auth_method": method,
        "grant_types": grants,
        PROGRAM_FIELD: program,
    }
    if registered.secret:
        answer["client_secret"] = registered.secret
        answer["client_secret_expires_at"] = 0
    if kind == "backend":
        answer["scope"] = client.scopes
        answer[ROLE_FIELD] = client.role
        if client.jwks_uri:
            answer["jwks_uri"] = client.jwks_uri
        else:
            answer["jwks"] = json.loads(client.jwks or "{}")
    else:
        answer["redirect_uris"] = client.redirect_uri_list
        answer["response_types"] = ["code"]
        if client.launch_url:
            answer[LAUNCH_FIELD] = client.launch_url
    return registered, answer


def disable_app(db: Session, client: SmartClient, now: datetime) -> int:
    """The app stops working at once: its tokens are revoked. Returns the tokens revoked."""
    if client.disabled_at is None:
        client.disabled_at = now
    result = db.execute(
        update(SmartToken)
        .where(SmartToken.client_pk == client.id, SmartToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return cast(CursorResult[Any], result).rowcount or 0


def find_client(db: Session, client_id: str) -> SmartClient | None:
    client = db.scalar(select(SmartClient).where(SmartClient.client_id == client_id[:64]))
    if client is None or client.disabled_at is not None:
        return None
    return client


# --- the authorization request ------------------------------------------------------------


class UnknownApp(Exception):
    """An unknown app or a redirect URI not registered for it: told to the person, never sent
    to the address (RFC 6749 4.1.2.1)."""


@dataclass(frozen=True)
class AuthorizationRequest:
    client: SmartClient
    redirect_uri: str
    state: str
    scope: str
    code_challenge: str
    nonce: str = ""
    launch: str = ""  # the `launch` value of an EHR launch, as the app sent it


def check_authorization_request(
    db: Session, params: Mapping[str, str], fhir_base: str
) -> AuthorizationRequest:
    client = find_client(db, params.get("client_id", ""))
    if client is None or client.kind == "backend":
        raise UnknownApp("This app is not registered with Tandem, or it has been disabled.")
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in client.redirect_uri_list:
        raise UnknownApp(
            f"{client.name} asked to return to an address that is not registered for it."
        )
    state = params.get("state", "")

    def refuse(error: type[errors.OAuth2Error], description: str) -> errors.OAuth2Error:
        return error(description=plain(description), state=state or None, redirect_uri=redirect_uri)

    if params.get("response_type") != "code":
        raise errors.UnsupportedResponseTypeError(
            plain(params.get("response_type", "")[:40]),
            state=state or None,
            redirect_uri=redirect_uri,
        )
    if not state:
        raise refuse(errors.InvalidRequestError, "state is required")
    if params.get("code_challenge_method") != "S256":
        raise refuse(errors.InvalidRequestError, "PKCE is required with code_challenge_method=S256")
    challenge = params.get("code_challenge", "")
    if not _VERIFIER.match(challenge):
        raise refuse(errors.InvalidRequestError, "code_challenge is missing or malformed")
    if params.get("aud", "").rstrip("/") != fhir_base.rstrip("/"):
        raise refuse(
            errors.InvalidRequestError, f"aud must be this server's FHIR base URL {fhir_base}"
        )
    return AuthorizationRequest(
        client,
        redirect_uri,
        state,
        params.get("scope", ""),
        challenge,
        params.get("nonce", "")[:200],
        params.get("launch", "")[:200],
    )


# --- EHR launch: an app opened from a patient's chart ---------------------------------------


def launchable_apps(db: Session, program_id: int) -> list[SmartClient]:
    """The apps of a program that can be opened from a chart (those with a launch URL)."""
    return list(
        db.scalars(
            select(SmartClient)
            .where(
                SmartClient.program_id == program_id,
                SmartClient.launch_url.is_not(None),
                SmartClient.disabled_at.is_(None),
                SmartClient.kind != "backend",
            )
            .order_by(SmartClient.name)
        )
    )


def start_launch(
    db: Session, client: SmartClient, user_id: int, patient_id: str, fhir_base: str, now: datetime
) -> str:
    """A launch of `client` by this person for this patient (the caller has checked that they
    may see the patient and use the app): the address to send the browser to, with `iss` and a
    single-use `launch` value that expires in LAUNCH_LIFETIME."""
    assert client.launch_url is not None
    launch = secrets.token_urlsafe(32)
    db.add(
        SmartLaunch(
            launch_hash=_digest(launch),
            client_pk=client.id,
            user_id=user_id,
            patient_id=patient_id,
            created_at=now,
            expires_at=now + LAUNCH_LIFETIME,
        )
    )
    db.execute(delete(SmartLaunch).where(SmartLaunch.expires_at < now - timedelta(days=1)))
    return str(add_params_to_uri(client.launch_url, [("iss", fhir_base), ("launch", launch)]))


def launch_context(
    db: Session, request: AuthorizationRequest, user_id: int, now: datetime
) -> SmartLaunch | None:
    """The EHR launch an authorization request redeems (None: a standalone launch). A launch
    value that is unknown, spent, expired, or another person's or app's is refused."""
    if not request.launch:
        return None

    def refuse(description: str) -> errors.OAuth2Error:
        return errors.InvalidRequestError(
            description=description, state=request.state, redirect_uri=request.redirect_uri
        )

    row = db.get(SmartLaunch, _digest(request.launch))
    if row is None or row.client_pk != request.client.id or row.user_id != user_id:
        raise refuse("unknown launch: open the app again from the patient's chart")
    if row.used_at is not None:
        raise refuse("this launch was used before: open the app again from the patient's chart")
    if row.expires_at <= now:
        raise refuse("this launch has expired: open the app again from the patient's chart")
    if LAUNCH not in request.scope.split():
        raise refuse("an app launched from a chart asks for the launch scope")
    return row


def redeem_launch(
    db: Session, row: SmartLaunch, request: AuthorizationRequest, now: datetime
) -> None:
    """Spend the launch (once, even with two answers at the same moment)."""
    used = db.execute(
        update(SmartLaunch)
        .where(SmartLaunch.launch_hash == row.launch_hash, SmartLaunch.used_at.is_(None))
        .values(used_at=now)
    )
    if cast(CursorResult[Any], used).rowcount != 1:
        raise errors.InvalidRequestError(
            description="this launch was used before: open the app again from the patient's chart",
            state=request.state,
            redirect_uri=request.redirect_uri,
        )


@dataclass(frozen=True)
class ScopeDecision:
    granted: tuple[str, ...]  # what the app gets, in the order asked
    not_granted: tuple[tuple[str, str], ...] = ()  # (scope asked, why not)
    needs_patient: bool = False  # staff asked for a patient in context (launch/patient)
    ehr_patient: str | None = None  # the patient in context of an EHR launch

    @property
    def text(self) -> str:
        return " ".join(self.granted)


def decide_scopes(
    role: Role,
    requested: str,
    *,
    redirect: AuthorizationRequest,
    ehr_patient: str | None = None,
) -> ScopeDecision:
    """What an app asking `requested` may be granted for someone of `role`: resource scopes
    narrowed to the role (policy.grantable), patient/ scopes for a patient, or for staff with a
    patient in context (the patient of an EHR launch, `ehr_patient`, or one they choose,
    launch/patient); never system/ scopes. Nothing of data access left: invalid_scope."""
    asked = requested.split()
    launch = LAUNCH_PATIENT in asked or ehr_patient is not None
    granted: list[str] = []
    refused: list[tuple[str, str]] = []
    data = False
    for item in dict.fromkeys(asked):
        if item in (LAUNCH_PATIENT, OPENID) or item in OFFLINE:
            granted.append(item)
            continue
        if item == LAUNCH:
            if ehr_patient is not None:
                granted.append(item)
            else:
                refused.append((item, "the app was not opened from a patient's chart"))
            continue
        if item == FHIR_USER:
            if role is Role.PATIENT:
                granted.append(item)
            else:
                refused.append((item, "staff accounts are not FHIR resources Tandem serves"))
            continue
        if not is_resource_scope(item):
            refused.append((item, "not a scope Tandem offers"))
            continue
        scope = parse_scope(item)
        if scope.context == "system":
            refused.append((item, "system/ scopes are for backend services"))
            continue
        if role is Role.PATIENT and scope.context != "patient":
            refused.append((item, "a patient's apps take patient/ scopes"))
            continue
        if role is not Role.PATIENT and scope.context == "patient" and not launch:
            refused.append((item, "patient/ scopes need a patient in context (launch/patient)"))
            continue
        narrowed = grantable(role, scope)
        if narrowed is None:
            refused.append((item, f"a {role.value} may not do this"))
            continue
        granted.append(str(narrowed))
        data = True
    if not data:
        raise errors.InvalidScopeError(
            description=f"none of the requested scopes can be granted to a {role.value}",
            state=redirect.state,
            redirect_uri=redirect.redirect_uri,
        )
    return ScopeDecision(
        tuple(granted),
        tuple(refused),
        launch and role is not Role.PATIENT and ehr_patient is None,
        ehr_patient,
    )


def may_use(client: SmartClient, actor: Actor) -> bool:
    """An app serves the people of the program that registered it."""
    return client.program_id in actor.program_ids


def issue_code(
    db: Session,
    request: AuthorizationRequest,
    user_id: int,
    scopes: str,
    patient_id: str | None,
    now: datetime,
) -> str:
    code = secrets.token_urlsafe(32)
    db.add(
        SmartCode(
            code_hash=_digest(code),
            grant_id=str(uuid.uuid4()),
            client_pk=request.client.id,
            user_id=user_id,
            redirect_uri=request.redirect_uri,
            scopes=scopes,
            code_challenge=request.code_challenge,
            patient_id=patient_id,
            nonce=request.nonce or None,
            created_at=now,
            expires_at=now + CODE_LIFETIME,
        )
    )
    return code


# --- the token endpoint -------------------------------------------------------------------


@dataclass
class TokenRefusal(Exception):
    """A refused token request: the OAuth error to answer, and what to do although refused
    (a reused code revokes the tokens issued with it)."""

    error: errors.OAuth2Error
    client: SmartClient | None = None
    revoke_grant: str | None = None

    def __str__(self) -> str:
        return f"{self.error.error}: {self.error.description}"


@dataclass
class Issued:
    """Tokens issued: the JSON answer, and what the audit trail records."""

    body: dict[str, Any]
    client: SmartClient
    user: User | None
    patient_id: str | None
    scopes: str


def _refuse(
    error: type[errors.OAuth2Error],
    description: str,
    client: SmartClient | None = None,
    revoke_grant: str | None = None,
    status: int | None = None,
) -> TokenRefusal:
    return TokenRefusal(
        error(description=plain(description), status_code=status), client, revoke_grant
    )


def _basic_credentials(header: str) -> tuple[str, str] | None:
    if not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    client_id, _, secret = decoded.partition(":")
    return unquote(client_id), unquote(secret)


def claimed_client_id(form: Mapping[str, str], authorization: str) -> str:
    """Which app a token request says it is (before any proof): the Basic user, the form's
    client_id, or the issuer of its client assertion. For rate limits."""
    basic = _basic_credentials(authorization)
    if basic:
        return basic[0][:64]
    assertion = form.get("client_assertion", "")
    if assertion:
        try:
            claims = json.loads(jws.extract_compact(assertion.encode()).payload)
        except (ValueError, JoseError):
            return ""
        return str(claims.get("iss", ""))[:64] if isinstance(claims, dict) else ""
    return form.get("client_id", "")[:64]


def authenticate_client(
    db: Session, form: Mapping[str, str], authorization: str, token_url: str, now: datetime
) -> SmartClient:
    """The app making a token request: a public app names itself; a confidential app proves its
    secret (HTTP Basic or in the form); a backend service signs a JWT assertion with a
    registered key. Anything else: invalid_client."""
    basic = _basic_credentials(authorization)
    assertion = form.get("client_assertion", "")
    if assertion or form.get("client_assertion_type"):
        return _assertion_client(db, form, assertion, token_url, now)
    client_id, secret = basic if basic else (form.get("client_id", ""), form.get("client_secret"))
    client = find_client(db, client_id)
    status = 401 if basic else None
    if client is None:
        raise _refuse(errors.InvalidClientError, "unknown or disabled client", status=status)
    if client.kind == "backend":
        raise _refuse(
            errors.InvalidClientError,
            "a backend service authenticates with a signed client_assertion",
            client,
            status=status,
        )
    if client.secret_hash is not None:
        if not secret or not secrets.compare_digest(_digest(secret), client.secret_hash):
            raise _refuse(
                errors.InvalidClientError, "wrong or missing client secret", client, status=401
            )
    return client


def _assertion_client(
    db: Session, form: Mapping[str, str], assertion: str, token_url: str, now: datetime
) -> SmartClient:
    if form.get("client_assertion_type") != ASSERTION_TYPE or not assertion:
        raise _refuse(errors.InvalidClientError, f"client_assertion_type must be {ASSERTION_TYPE}")
    try:
        compact = jws.extract_compact(assertion.encode())
        unverified = json.loads(compact.payload)
        issuer = str(unverified.get("iss", "")) if isinstance(unverified, dict) else ""
        kid = compact.headers().get("kid")
    except (ValueError, JoseError):
        raise _refuse(errors.InvalidClientError, "client_assertion is not a JWT") from None
    client = find_client(db, issuer)
    if client is None or (client.jwks is None and client.jwks_uri is None):
        raise _refuse(
            errors.InvalidClientError, "the assertion's issuer is not a registered service"
        )
    if client.jwks_uri is not None:
        try:
            keys = remote_keys.CACHE.keys_for(client.jwks_uri, str(kid) if kid else None)
        except remote_keys.KeySetUnavailable as exc:
            raise _refuse(errors.InvalidClientError, f"{exc}", client) from None
    else:
        keys = KeySet.import_key_set(json.loads(client.jwks or "{}"))
    try:
        token = jwt.decode(assertion, keys, algorithms=ASSERTION_ALGORITHMS)
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": client.client_id},
            sub={"essential": True, "value": client.client_id},
            aud={"essential": True, "value": token_url},
            exp={"essential": True},
            jti={"essential": True},
        ).validate(token.claims)
    except JoseError as exc:
        raise _refuse(
            errors.InvalidClientError, f"client_assertion refused: {exc.error}", client
        ) from None
    expires = datetime.fromtimestamp(int(token.claims["exp"]), UTC)
    if expires <= now or expires > now + ASSERTION_MAX_LIFETIME + timedelta(seconds=30):
        raise _refuse(
            errors.InvalidClientError, "client_assertion must expire within 5 minutes", client
        )
    jti = str(token.claims["jti"])[:200]
    db.execute(delete(SmartAssertion).where(SmartAssertion.expires_at < now))
    if db.get(SmartAssertion, (client.id, jti)) is not None:
        raise _refuse(errors.InvalidClientError, "client_assertion was used before (jti)", client)
    db.add(SmartAssertion(client_pk=client.id, jti=jti, expires_at=expires))
    return client


def _new_token(
    db: Session,
    prefix: str,
    kind: str,
    grant_id: str,
    client: SmartClient,
    user_id: int | None,
    patient_id: str | None,
    scopes: str,
    now: datetime,
    lifetime: timedelta,
) -> str:
    secret = prefix + secrets.token_urlsafe(32)
    db.add(
        SmartToken(
            token_hash=_digest(secret),
            kind=kind,
            grant_id=grant_id,
            client_pk=client.id,
            user_id=user_id,
            patient_id=patient_id,
            scopes=scopes,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    return secret


@dataclass(frozen=True)
class Server:
    """Where this Tandem is reached (the OpenID issuer, its root URL, and its FHIR base), and
    what seals its signing keys."""

    issuer: str
    fhir_base: str
    sealer: Sealer

    @property
    def style_url(self) -> str:
        return f"{self.issuer}/oauth/smart-style.json"


def _signing_keys(db: Session) -> list[SmartSigningKey]:
    return list(
        db.scalars(
            select(SmartSigningKey).order_by(SmartSigningKey.created_at, SmartSigningKey.kid)
        )
    )


def _seal_plain(rows: list[SmartSigningKey], sealer: Sealer) -> None:
    """Keys stored before sealing (a plain JWK) are sealed, their public half kept apart."""
    for row in rows:
        if not is_sealed(row.private_jwk):
            key = RSAKey.import_key(json.loads(row.private_jwk))
            row.public_jwk = json.dumps(key.as_dict(private=False))
            row.private_jwk = sealer.seal(json.dumps(key.as_dict(private=True)), row.kid)


def _retired(rows: list[SmartSigningKey], now: datetime) -> list[SmartSigningKey]:
    """Keys no id_token still valid was signed with: a newer key has signed for longer than an
    id_token lives."""
    return [
        row
        for row, successor in zip(rows, rows[1:], strict=False)
        if successor.created_at + ID_TOKEN_LIFETIME < now
    ]


def new_signing_key(db: Session, now: datetime, sealer: Sealer) -> RSAKey:
    """A new signing key (RS256, 2048 bits), sealed; keys retired by it are deleted."""
    rows = _signing_keys(db)
    _seal_plain(rows, sealer)
    kid = secrets.token_hex(8)
    key = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
    db.add(
        SmartSigningKey(
            kid=kid,
            private_jwk=sealer.seal(json.dumps(key.as_dict(private=True)), kid),
            public_jwk=json.dumps(key.as_dict(private=False)),
            created_at=now,
        )
    )
    for row in _retired(rows, now):
        db.delete(row)
    db.flush()
    return key


def signing_key(db: Session, now: datetime, sealer: Sealer) -> RSAKey:
    """The key id_tokens are signed with: the newest, unless it is older than SIGNING_KEY_DAYS or
    was sealed under another secret; then a new one (made the first time one is needed)."""
    rows = _signing_keys(db)
    _seal_plain(rows, sealer)
    if rows and rows[-1].created_at > now - timedelta(days=SIGNING_KEY_DAYS):
        opened = sealer.open(rows[-1].private_jwk, rows[-1].kid)
        if opened is not None:
            return RSAKey.import_key(json.loads(opened))
    return new_signing_key(db, now, sealer)


def public_keys(db: Session, now: datetime) -> dict[str, Any]:
    """The JWKS apps verify id_tokens with: every key an unexpired id_token may be signed with."""
    rows = _signing_keys(db)
    retired = {row.kid for row in _retired(rows, now)}
    keys = []
    for row in rows:
        if row.kid in retired:
            continue
        if row.public_jwk is not None:
            keys.append(json.loads(row.public_jwk))
        elif not is_sealed(row.private_jwk):
            keys.append(RSAKey.import_key(json.loads(row.private_jwk)).as_dict(private=False))
    return {"keys": keys}


# The look SMART apps may take on to match Tandem (smart_style_url; the colours of style.css).
STYLE = {
    "color_background": "#f5f7f9",
    "color_error": "#a4161a",
    "color_highlight": "#0b5cad",
    "color_modal_backdrop": "rgba(27, 31, 36, 0.5)",
    "color_success": "#1e6b34",
    "color_text": "#1b1f24",
    "dim_border_radius": "6px",
    "dim_font_size": "16px",
    "dim_spacing_size": "16px",
    "font_family_body": 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif',
    "font_family_heading": 'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif',
}


def _id_token(
    db: Session,
    server: Server,
    client: SmartClient,
    user: User,
    scopes: str,
    nonce: str | None,
    now: datetime,
) -> str:
    claims: dict[str, Any] = {
        "iss": server.issuer,
        "sub": str(user.id),
        "aud": client.client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ID_TOKEN_LIFETIME).timestamp()),
    }
    if nonce:
        claims["nonce"] = nonce
    if FHIR_USER in scopes.split() and user.patient_id is not None:
        claims["fhirUser"] = f"{server.fhir_base}/Patient/{user.patient_id}"
    key = signing_key(db, now, server.sealer)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key, algorithms=["RS256"])


def _tokens(
    db: Session,
    grant_id: str,
    client: SmartClient,
    user: User | None,
    patient_id: str | None,
    scopes: str,
    now: datetime,
    server: Server | None = None,
    nonce: str | None = None,
) -> Issued:
    user_id = user.id if user else None
    body: dict[str, Any] = {
        "access_token": _new_token(
            db,
            ACCESS_PREFIX,
            "access",
            grant_id,
            client,
            user_id,
            patient_id,
            scopes,
            now,
            ACCESS_LIFETIME,
        ),
        "token_type": "Bearer",
        "expires_in": int(ACCESS_LIFETIME.total_seconds()),
        "scope": scopes,
    }
    if patient_id is not None:
        body["patient"] = patient_id
        # Apps open in a tab of their own, outside Tandem's chart: they show whose record it is.
        body["need_patient_banner"] = True
        if server is not None:
            body["smart_style_url"] = server.style_url
    if user is not None and any(s in OFFLINE for s in scopes.split()):
        body["refresh_token"] = _new_token(
            db,
            REFRESH_PREFIX,
            "refresh",
            grant_id,
            client,
            user_id,
            patient_id,
            scopes,
            now,
            REFRESH_LIFETIME,
        )
    if user is not None and server is not None and OPENID in scopes.split():
        body["id_token"] = _id_token(db, server, client, user, scopes, nonce, now)
    return Issued(body, client, user, patient_id, scopes)


def _user_may_still(db: Session, user_id: int | None, client: SmartClient) -> User | None:
    if user_id is None:
        return None
    user = db.scalar(select(User).where(User.id == user_id).options(selectinload(User.memberships)))
    if user is None or not user.active or client.program_id not in user.program_ids:
        return None
    return user


def exchange_code(
    db: Session, client: SmartClient, form: Mapping[str, str], now: datetime, server: Server
) -> Issued:
    code = form.get("code", "")
    row = db.get(SmartCode, _digest(code)) if code else None
    if row is None or row.client_pk != client.id:
        raise _refuse(errors.InvalidGrantError, "unknown authorization code", client)
    if row.used_at is not None:
        raise _refuse(
            errors.InvalidGrantError,
            "the authorization code was used before: tokens issued with it are revoked",
            client,
            revoke_grant=row.grant_id,
        )
    if row.expires_at <= now:
        raise _refuse(errors.InvalidGrantError, "the authorization code has expired", client)
    if form.get("redirect_uri", "") != row.redirect_uri:
        raise _refuse(
            errors.InvalidGrantError, "redirect_uri differs from the authorization request", client
        )
    verifier = form.get("code_verifier", "")
    if not _VERIFIER.match(verifier) or not secrets.compare_digest(
        create_s256_code_challenge(verifier), row.code_challenge
    ):
        raise _refuse(
            errors.InvalidGrantError, "code_verifier does not match the code_challenge", client
        )
    used = db.execute(
        update(SmartCode)
        .where(SmartCode.code_hash == row.code_hash, SmartCode.used_at.is_(None))
        .values(used_at=now)
    )
    if cast(CursorResult[Any], used).rowcount != 1:  # another request used it just now
        raise _refuse(
            errors.InvalidGrantError,
            "the authorization code was used before: tokens issued with it are revoked",
            client,
            revoke_grant=row.grant_id,
        )
    user = _user_may_still(db, row.user_id, client)
    if user is None:
        raise _refuse(errors.InvalidGrantError, "the user may no longer use this app", client)
    return _tokens(
        db, row.grant_id, client, user, row.patient_id, row.scopes, now, server, row.nonce
    )


def refresh(
    db: Session,
    client: SmartClient,
    form: Mapping[str, str],
    now: datetime,
    server: Server | None = None,
) -> Issued:
    secret = form.get("refresh_token", "")
    row = (
        db.scalar(
            select(SmartToken).where(
                SmartToken.token_hash == _digest(secret), SmartToken.kind == "refresh"
            )
        )
        if secret
        else None
    )
    if (
        row is None
        or row.client_pk != client.id
        or row.revoked_at is not None
        or row.expires_at <= now
    ):
        raise _refuse(errors.InvalidGrantError, "unknown, expired or revoked refresh token", client)
    user = _user_may_still(db, row.user_id, client)
    if user is None:
        raise _refuse(errors.InvalidGrantError, "the user may no longer use this app", client)
    scopes = row.scopes
    if form.get("scope"):
        asked = form["scope"].split()
        beyond = [s for s in asked if s not in row.scopes.split()]
        if beyond:
            raise _refuse(
                errors.InvalidScopeError,
                f"beyond the original grant: {' '.join(beyond)[:200]}",
                client,
            )
        scopes = " ".join(dict.fromkeys(asked))
    row.revoked_at = now  # rotated: the old refresh token is spent
    return _tokens(db, row.grant_id, client, user, row.patient_id, scopes, now, server)


def _covered(scope: Scope, allowed: list[Scope]) -> Scope | None:
    """`scope` limited to the registered scopes of a service (None: none of it)."""
    for registered in allowed:
        if registered.resource_type in ("*", scope.resource_type):
            letters = "".join(c for c in scope.permissions if c in registered.permissions)
            if letters:
                return Scope(scope.context, scope.resource_type, letters)
    return None


def client_credentials(
    db: Session, client: SmartClient, form: Mapping[str, str], now: datetime
) -> Issued:
    if client.kind != "backend":
        raise _refuse(
            errors.UnauthorizedClientError, "client_credentials is for backend services", client
        )
    role = Role(client.role)
    allowed = [parse_scope(s) for s in client.scopes.split()]
    granted: list[str] = []
    for item in dict.fromkeys(form.get("scope", "").split()):
        if not is_resource_scope(item):
            continue
        scope = parse_scope(item)
        if scope.context != "system":
            continue
        narrowed = grantable(role, scope)
        covered = _covered(narrowed, allowed) if narrowed else None
        if covered is not None:
            granted.append(str(covered))
    if not granted:
        raise _refuse(
            errors.InvalidScopeError,
            f"none of the requested scopes is registered for this service ({client.scopes})",
            client,
        )
    return _tokens(db, str(uuid.uuid4()), client, None, None, " ".join(granted), now)


def revoke_grant(db: Session, grant_id: str, now: datetime) -> int:
    result = db.execute(
        update(SmartToken)
        .where(SmartToken.grant_id == grant_id, SmartToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return cast(CursorResult[Any], result).rowcount or 0


def revoke(db: Session, client: SmartClient, token: str, now: datetime) -> int:
    """RFC 7009: the token (access or refresh) and every token of its grant stop working. An
    unknown token, or another app's, changes nothing (and the answer says nothing of it)."""
    row = db.scalar(select(SmartToken).where(SmartToken.token_hash == _digest(token)))
    if row is None or row.client_pk != client.id:
        return 0
    return revoke_grant(db, row.grant_id, now)


# --- a request with an app's token --------------------------------------------------------


def actor_of_token(db: Session, secret: str, now: datetime) -> Actor | None:
    """The actor an access token acts as, or None (unknown, expired, revoked, or its app or
    user disabled). A person's token is that person with the token's scopes (and the patient in
    context); a backend service's acts as its role in its program."""
    row = db.scalar(
        select(SmartToken)
        .where(SmartToken.token_hash == _digest(secret), SmartToken.kind == "access")
        .options(
            joinedload(SmartToken.client),
            joinedload(SmartToken.user).selectinload(User.memberships),
        )
    )
    if row is None or row.revoked_at is not None or row.expires_at <= now:
        return None
    if row.client.disabled_at is not None:
        return None
    scopes = " ".join(s for s in row.scopes.split() if is_resource_scope(s))
    if row.user_id is None:
        return Actor(
            user_id=0,
            label=f"app {row.client.client_id}",
            role=Role(row.client.role),
            program_ids=frozenset({row.client.program_id}),
            scopes=tuple(parse_scope(s) for s in scopes.split()),
        )
    user = row.user
    if user is None or not user.active:
        return None
    actor = actor_for(user, scopes)
    if actor.role is not Role.PATIENT:
        actor = replace(actor, context_patient_id=row.patient_id)
    return actor


# --- discovery ----------------------------------------------------------------------------


def configuration(root: str) -> dict[str, Any]:
    """/.well-known/smart-configuration (SMART App Launch 2.x)."""
    return {
        "issuer": root,
        "jwks_uri": f"{root}/oauth/jwks",
        "authorization_endpoint": f"{root}/oauth/authorize",
        "token_endpoint": f"{root}/oauth/token",
        "revocation_endpoint": f"{root}/oauth/revoke",
        "registration_endpoint": f"{root}/oauth/register",
        "introspection_endpoint": f"{root}/oauth/introspect",
        "token_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ],
        "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS,
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": [
            "launch-ehr",
            "launch-standalone",
            "context-ehr-patient",
            "context-banner",
            "context-style",
            "sso-openid-connect",
            "client-public",
            "client-confidential-symmetric",
            "context-standalone-patient",
            "permission-offline",
            "permission-online",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
        ],
    }


# --- the consent page, in words ------------------------------------------------------------

_VERBS = {"c": "add", "r": "read", "u": "change", "d": "delete", "s": "search"}
_THINGS = {
    "Patient": "details (name, birth date, contacts)",
    "Observation": "measurements and observations",
    "QuestionnaireResponse": "assessments and questionnaires",
    "Condition": "conditions",
    "MedicationRequest": "dose plans",
    "MedicationAdministration": "doses given",
    "MedicationStatement": "doses reported",
    "AdverseEvent": "side effects",
    "EpisodeOfCare": "episodes of care",
}


def describe_scope(scope: str, role: Role, *, launched: bool = False) -> str:
    """What a granted scope lets the app do, as the consent page says it. `launched`: the app
    was opened from a chart (EHR launch), so a patient scope is that chart's patient."""
    own = role is Role.PATIENT
    if scope == LAUNCH:
        return "Know the patient whose chart you opened it from"
    if scope == LAUNCH_PATIENT:
        return "Know whose record it is working with" if own else "Open the patient you choose"
    if scope == "offline_access":
        return "Keep access after you close it, for up to 30 days unless you sign out everywhere"
    if scope == OPENID:
        return "Know who you are: your Tandem account"
    if scope == FHIR_USER:
        return "Know which record in Tandem is yours"
    if scope == "online_access":
        return "Keep access while you keep using it, for up to 30 days"
    parsed = parse_scope(scope)
    verbs = [_VERBS[c] for c in parsed.permissions]
    said = ", ".join(verbs[:-1]) + (" and " if len(verbs) > 1 else "") + verbs[-1]
    whose = {
        "patient": "your" if own else ("this patient's" if launched else "the chosen patient's"),
        "user": "your programs' patients'",
        "system": "the program's",
    }[parsed.context]
    what = (
        "records"
        if parsed.resource_type == "*"
        else _THINGS.get(parsed.resource_type, parsed.resource_type)
    )
    return f"{said[0].upper()}{said[1:]} {whose} {what}"


# --- the apps a person allowed -------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """One authorization a person gave an app, still in force."""

    grant_id: str
    app: str
    scopes: str
    since: datetime
    for_one_patient: bool


def allowed_apps(db: Session, user_id: int, now: datetime) -> list[Allowed]:
    rows = db.execute(
        select(SmartToken, SmartClient.name)
        .join(SmartClient, SmartClient.id == SmartToken.client_pk)
        .where(
            SmartToken.user_id == user_id,
            SmartToken.revoked_at.is_(None),
            SmartToken.expires_at > now,
            SmartClient.disabled_at.is_(None),
        )
        .order_by(SmartToken.created_at)
    ).all()
    grants: dict[str, Allowed] = {}
    for token, name in rows:
        first = grants.get(token.grant_id)
        grants[token.grant_id] = Allowed(
            token.grant_id,
            name,
            token.scopes,
            first.since if first else token.created_at,
            token.patient_id is not None,
        )
    return sorted(grants.values(), key=lambda g: g.since, reverse=True)


def stop_app(db: Session, user_id: int, grant_id: str, now: datetime) -> int:
    """A person ends an app's access they allowed: every token of that authorization."""
    result = db.execute(
        update(SmartToken)
        .where(
            SmartToken.user_id == user_id,
            SmartToken.grant_id == grant_id[:36],
            SmartToken.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return cast(CursorResult[Any], result).rowcount or 0


def introspect(
    db: Session, client: SmartClient, token: str, now: datetime, fhir_base: str
) -> dict[str, Any]:
    """RFC 7662, for the app's own tokens: what a token is, if it still works. Another app's
    token, or one that no longer works, is just inactive."""
    row = db.scalar(select(SmartToken).where(SmartToken.token_hash == _digest(token)))
    if (
        row is None
        or row.client_pk != client.id
        or row.revoked_at is not None
        or row.expires_at <= now
        or client.disabled_at is not None
    ):
        return {"active": False}
    answer: dict[str, Any] = {
        "active": True,
        "token_type": "Bearer" if row.kind == "access" else "refresh_token",
        "scope": row.scopes,
        "client_id": client.client_id,
        "iat": int(row.created_at.timestamp()),
        "exp": int(row.expires_at.timestamp()),
    }
    if row.user_id is not None:
        answer["sub"] = str(row.user_id)
        user = db.get(User, row.user_id)
        if user is None or not user.active:
            return {"active": False}
        if FHIR_USER in row.scopes.split() and user.patient_id is not None:
            answer["fhirUser"] = f"{fhir_base}/Patient/{user.patient_id}"
    if row.patient_id is not None:
        answer["patient"] = row.patient_id
    return answer
