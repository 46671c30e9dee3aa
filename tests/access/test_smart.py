"""SMART on FHIR, driven as an app would over HTTP (TestClient), on SQLite and PostgreSQL:
discovery, the authorization code flow with PKCE and its refusals, a patient in context, scopes
never beyond the role, refresh, backend services with a signed JWT, revocation, and access that
ends with a password change."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import accounts, smart
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, User
from tests.cli_runner import run_tandem
from tests.conftest import World, csrf_from, sign_in

APP = "https://app.example/callback"
AUD = "https://testserver/fhir"
TOKEN_URL = "https://testserver/oauth/token"


@dataclass(frozen=True)
class App:
    client_id: str
    secret: str | None = None


def register(
    sessions: sessionmaker[Session],
    program_id: int,
    kind: str = "public",
    **more: Any,
) -> App:
    with session_scope(sessions) as db:
        done = smart.register_app(
            db,
            name=f"Test {kind} app",
            kind=kind,
            program_id=program_id,
            now=utcnow(),
            created_by=None,
            redirect_uris=more.pop("redirect_uris", APP if kind != "backend" else ""),
            **more,
        )
        return App(done.client.client_id, done.secret)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, create_s256_code_challenge(verifier)


def authorize_params(app: App, scope: str, challenge: str, **more: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": APP,
        "scope": scope,
        "state": "st-" + secrets.token_hex(4),
        "aud": AUD,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **more,
    }


def consent(client: TestClient, params: dict[str, str], patient: str | None = None) -> str:
    """Open the consent page and allow; returns the code (state checked)."""
    page = client.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    form = {**params, "csrf_token": csrf_from(page.text), "decision": "allow"}
    if patient is not None:
        form["patient"] = patient
    answer = client.post("/oauth/authorize", data=form)
    assert answer.status_code == 303, answer.text
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == APP
    query = parse_qs(back.query)
    assert query["state"] == [params["state"]]
    return query["code"][0]


def exchange(client: TestClient, app: App, code: str, verifier: str, **more: str) -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP,
            "code_verifier": verifier,
            "client_id": app.client_id,
            **more,
        },
    )


def launch(
    client: TestClient,
    world: World,
    who: str,
    app: App,
    scope: str,
    patient: str | None = None,
) -> dict[str, Any]:
    """Sign in as `who`, allow `app` the `scope`, exchange the code: the token answer."""
    sign_in(client, world.email(who), world.passwords[who])
    verifier, challenge = pkce()
    code = consent(client, authorize_params(app, scope, challenge), patient)
    answer = exchange(client, app, code, verifier)
    assert answer.status_code == 200, answer.text
    client.cookies.clear()  # the app calls the API with its token only
    return answer.json()  # type: ignore[no-any-return]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error_of(location: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(location).query)


# --- discovery ------------------------------------------------------------------------------


def test_apps_discover_the_endpoints(client: TestClient) -> None:
    for path in ("/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"):
        found = client.get(path)
        assert found.status_code == 200
        config = found.json()
        assert config["authorization_endpoint"] == "https://testserver/oauth/authorize"
        assert config["token_endpoint"] == TOKEN_URL
        assert config["code_challenge_methods_supported"] == ["S256"]
        assert "launch-standalone" in config["capabilities"]
        assert {"RS384", "ES384"} <= set(config["token_endpoint_auth_signing_alg_values_supported"])
    metadata = client.get("/fhir/metadata").json()
    security = metadata["rest"][0]["security"]
    (oauth,) = [e for e in security["extension"] if e["url"].endswith("oauth-uris")]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    assert uris["authorize"] == "https://testserver/oauth/authorize"
    assert uris["token"] == TOKEN_URL


# --- the authorization code flow ------------------------------------------------------------


def test_a_code_works_once_with_its_verifier_and_redirect_uri(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    verifier, challenge = pkce()
    params = authorize_params(app, "launch/patient patient/*.rs offline_access", challenge)
    page = client.get("/oauth/authorize", params=params)
    assert "Allow Test public app" in page.text
    assert "Read and search your records" in page.text
    code = consent(client, params)

    wrong_verifier = exchange(client, app, code, pkce()[0])
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    wrong_redirect = exchange(client, app, code, verifier, redirect_uri=APP + "/other")
    assert wrong_redirect.json()["error"] == "invalid_grant"
    other_app = register(sessions, world.program_a)
    stolen = exchange(client, other_app, code, verifier)
    assert stolen.json()["error"] == "invalid_grant"

    issued = exchange(client, app, code, verifier)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert issued.headers["cache-control"] == "no-store"
    assert body["token_type"] == "Bearer" and body["patient"] == world.patient_a
    assert body["scope"] == "launch/patient patient/*.rs offline_access"
    assert body["refresh_token"]
    client.cookies.clear()
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(body["access_token"])
        ).status_code
        == 200
    )

    reused = exchange(client, app, code, verifier)
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # A code used twice is a stolen code: what was issued with it stops working.
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(body["access_token"])
        ).status_code
        == 401
    )
    refreshed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"
    with sessions() as db:
        outcomes = [
            (e.operation, e.outcome)
            for e in db.scalars(select(AuditEntry).where(AuditEntry.resource_type == "SmartApp"))
        ]
    assert ("authorize", "0") in outcomes and ("token", "0") in outcomes
    assert outcomes.count(("token", "4")) >= 4  # every refusal is in the audit trail


def test_a_code_expires_within_a_minute(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from tandem.storage.models import SmartCode

    app = register(sessions, world.program_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    verifier, challenge = pkce()
    code = consent(client, authorize_params(app, "user/*.rs", challenge))
    with session_scope(sessions) as db:
        (row,) = db.scalars(select(SmartCode)).all()
        assert row.expires_at - row.created_at <= timedelta(seconds=60)
        db.execute(update(SmartCode).values(expires_at=utcnow() - timedelta(seconds=1)))
    late = exchange(client, app, code, verifier)
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    assert "expired" in late.json()["error_description"]


def test_requests_the_app_did_not_make_properly_are_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    _, challenge = pkce()
    params = authorize_params(app, "user/*.rs", challenge)
    # An address not registered for the app: told to the person, never sent there.
    page = client.get(
        "/oauth/authorize", params={**params, "redirect_uri": "https://evil.example/cb"}
    )
    assert page.status_code == 400 and "not registered" in page.text
    unknown = client.get("/oauth/authorize", params={**params, "client_id": "app-nope"})
    assert unknown.status_code == 400
    for broken, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"aud": "https://elsewhere.example/fhir"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ):
        answer = client.get("/oauth/authorize", params={**params, **broken})
        assert answer.status_code == 303, broken
        sent = error_of(answer.headers["location"])
        assert answer.headers["location"].startswith(APP)
        assert sent["error"] == [error] and sent["state"] == [params["state"]], broken
    odd = client.get("/oauth/authorize", params={**params, "response_type": 'to"k\\en é'})
    assert error_of(odd.headers["location"])["error"] == ["unsupported_response_type"]
    for grant in ("password", 'x"\\é', ""):
        answer = client.post("/oauth/token", data={"grant_type": grant, "client_id": app.client_id})
        assert answer.status_code == 400 and answer.json()["error"] == "unsupported_grant_type"
    page = client.get("/oauth/authorize", params=params)
    denied = client.post(
        "/oauth/authorize", data={**params, "csrf_token": csrf_from(page.text), "decision": "deny"}
    )
    assert error_of(denied.headers["location"])["error"] == ["access_denied"]


def test_an_app_never_gets_more_than_the_role_allows(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    _, challenge = pkce()
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    asked = client.get(
        "/oauth/authorize", params=authorize_params(app, "user/Observation.c", challenge)
    )
    assert error_of(asked.headers["location"])["error"] == ["invalid_scope"]
    client.cookies.clear()
    sign_in(client, world.email("patient"), world.passwords["patient"])
    asked = client.get(
        "/oauth/authorize", params=authorize_params(app, "user/*.rs system/*.rs", challenge)
    )
    assert error_of(asked.headers["location"])["error"] == ["invalid_scope"]
    client.cookies.clear()

    body = launch(client, world, "nurse", app, "user/*.cruds offline_access")
    assert body["scope"] == "user/*.crus offline_access"  # nobody deletes a clinical record
    assert "patient" not in body
    escalate = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
            "scope": "user/*.cruds",
        },
    )
    assert escalate.status_code == 400 and escalate.json()["error"] == "invalid_scope"
    odd = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
            "scope": 'user/"é\\',
        },
    )
    assert odd.status_code == 400 and odd.json()["error"] == "invalid_scope"
    narrower = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
            "scope": "user/*.crus",
        },
    )
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "user/*.crus"
    again = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert again.json()["error"] == "invalid_grant"  # a refresh token is spent once used


def test_a_patient_token_reads_only_that_patient(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    body = launch(client, world, "patient", app, "launch/patient patient/*.rs")
    headers = bearer(body["access_token"])
    assert body["patient"] == world.patient_a
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    assert client.get(f"/fhir/Patient/{world.patient_a2}", headers=headers).status_code == 403
    found = client.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [world.patient_a]
    write = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "New"}]},
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert write.status_code == 403


def test_staff_launch_for_one_patient_reads_only_that_patient(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    verifier, challenge = pkce()
    params = authorize_params(app, "launch/patient patient/*.rs", challenge)
    page = client.get("/oauth/authorize", params=params)
    assert "Which patient?" in page.text and "RIVERA, Ana" in page.text
    assert "NOVAK" not in page.text  # another program's patient is never offered
    unchosen = client.post(
        "/oauth/authorize", data={**params, "csrf_token": csrf_from(page.text), "decision": "allow"}
    )
    assert unchosen.status_code == 422 and "Choose the patient" in unchosen.text
    outside = client.post(
        "/oauth/authorize",
        data={
            **params,
            "csrf_token": csrf_from(page.text),
            "decision": "allow",
            "patient": world.patient_b,
        },
    )
    assert outside.status_code == 403
    code = consent(client, params, patient=world.patient_a)
    body = exchange(client, app, code, verifier).json()
    client.cookies.clear()
    headers = bearer(body["access_token"])
    assert body["patient"] == world.patient_a
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    assert client.get(f"/fhir/Patient/{world.patient_a2}", headers=headers).status_code == 403
    found = client.get("/fhir/Patient", headers=headers).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [world.patient_a]


def test_an_app_of_another_program_is_refused(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_b)
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    asked = client.get("/oauth/authorize", params=authorize_params(app, "user/*.rs", pkce()[1]))
    assert error_of(asked.headers["location"])["error"] == ["access_denied"]


def test_a_confidential_app_proves_its_secret(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a, "confidential")
    assert app.secret
    sign_in(client, world.email("prescriber"), world.passwords["prescriber"])
    verifier, challenge = pkce()
    code = consent(client, authorize_params(app, "user/Patient.rs", challenge))
    no_secret = exchange(client, app, code, verifier)
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    wrong = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP,
            "code_verifier": verifier,
        },
        auth=(app.client_id, "wrong"),
    )
    assert wrong.status_code == 401
    right = client.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": APP,
            "code_verifier": verifier,
        },
        auth=(app.client_id, app.secret),
    )
    assert right.status_code == 200, right.text


def test_openid_tells_the_app_who_signed_in(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    from joserfc.jwk import KeySet

    app = register(sessions, world.program_a)
    sign_in(client, world.email("patient"), world.passwords["patient"])
    verifier, challenge = pkce()
    params = authorize_params(
        app, "openid fhirUser launch/patient patient/*.rs", challenge, nonce="n-0S6_WzA2Mj"
    )
    page = client.get("/oauth/authorize", params=params)
    assert "Know which record in Tandem is yours" in page.text
    body = exchange(client, app, consent(client, params), verifier).json()
    keys = KeySet.import_key_set(client.get("/oauth/jwks").json())
    token = jwt.decode(body["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": "https://testserver"},
        aud={"essential": True, "value": app.client_id},
        nonce={"essential": True, "value": "n-0S6_WzA2Mj"},
        fhirUser={"essential": True, "value": f"{AUD}/Patient/{world.patient_a}"},
    ).validate(token.claims)
    client.cookies.clear()
    # Staff are not FHIR resources Tandem serves: openid, but no fhirUser.
    staff = launch(client, world, "nurse", app, "openid fhirUser user/*.rs")
    assert staff["scope"] == "openid user/*.rs"
    claims = jwt.decode(staff["id_token"], keys, algorithms=["RS256"]).claims
    assert "fhirUser" not in claims and claims["sub"]
    config = client.get("/.well-known/smart-configuration").json()
    assert config["jwks_uri"] == "https://testserver/oauth/jwks"
    assert "sso-openid-connect" in config["capabilities"]


# --- revocation and the end of access -------------------------------------------------------


def test_revoked_tokens_and_a_password_change_end_an_apps_access(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    first = launch(client, world, "nurse", app, "user/*.rs offline_access")
    revoked = client.post(
        "/oauth/revoke", data={"token": first["refresh_token"], "client_id": app.client_id}
    )
    assert revoked.status_code == 200
    # Revoking the refresh token ends the access token of the same authorization too.
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(first["access_token"])
        ).status_code
        == 401
    )

    second = launch(client, world, "nurse", app, "user/*.rs")
    headers = bearer(second["access_token"])
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    with session_scope(sessions) as db:
        nurse = db.scalars(select(User).where(User.email == world.email("nurse"))).one()
        accounts.reset_password(db, nurse, "a-brand-new-password-1", utcnow())
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 401


def test_an_app_asks_whether_its_token_still_works(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    other = register(sessions, world.program_a)
    body = launch(client, world, "patient", app, "fhirUser launch/patient patient/*.rs")

    def ask(who: App, token: str) -> dict[str, Any]:
        answer = client.post("/oauth/introspect", data={"token": token, "client_id": who.client_id})
        assert answer.status_code == 200
        return answer.json()  # type: ignore[no-any-return]

    found = ask(app, body["access_token"])
    assert found["active"] is True and found["client_id"] == app.client_id
    assert found["scope"] == "fhirUser launch/patient patient/*.rs"
    assert found["patient"] == world.patient_a
    assert found["fhirUser"] == f"{AUD}/Patient/{world.patient_a}"
    assert ask(other, body["access_token"]) == {"active": False}  # not its token
    assert ask(app, "tds_nonsense") == {"active": False}
    client.post("/oauth/revoke", data={"token": body["access_token"], "client_id": app.client_id})
    assert ask(app, body["access_token"]) == {"active": False}
    assert client.get("/.well-known/smart-configuration").json()["introspection_endpoint"]


# --- backend services -----------------------------------------------------------------------


def assertion(app: App, key: Any, alg: str, **claims: Any) -> str:
    values = {
        "iss": app.client_id,
        "sub": app.client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + 240,
        "jti": str(uuid.uuid4()),
        **claims,
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, values, key, algorithms=[alg])


def service_token(client: TestClient, signed: str, scope: str = "system/*.rs") -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": smart.ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_a_backend_service_reads_its_program_only(
    client: TestClient, world: World, sessions: sessionmaker[Session], alg: str
) -> None:
    key = (
        RSAKey.generate_key(2048, parameters={"kid": "k1"})
        if alg == "RS384"
        else ECKey.generate_key("P-384", parameters={"kid": "k1"})
    )
    app = register(
        sessions,
        world.program_a,
        "backend",
        role="nurse",
        scopes="system/*.rs",
        jwks=json.dumps({"keys": [key.as_dict(private=False)]}),
    )
    signed = assertion(app, key, alg)
    answer = service_token(client, signed, "system/*.cruds")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["scope"] == "system/*.rs" and "refresh_token" not in body
    headers = bearer(body["access_token"])
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    assert client.get(f"/fhir/Patient/{world.patient_b}", headers=headers).status_code == 403
    found = client.get("/fhir/Patient", headers=headers).json()
    assert {e["resource"]["id"] for e in found["entry"]} == {world.patient_a, world.patient_a2}
    write = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "New"}]},
        headers={**headers, "Content-Type": "application/fhir+json"},
    )
    assert write.status_code == 403

    replayed = service_token(client, signed)
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_client"
    for bad in (
        assertion(app, key, alg, aud="https://elsewhere.example/token"),
        assertion(app, key, alg, exp=int(time.time()) + 3600),
        assertion(app, key, alg, exp=int(time.time()) - 10),
    ):
        assert service_token(client, bad).json()["error"] == "invalid_client"
    stranger = (
        RSAKey.generate_key(2048, parameters={"kid": "k1"})
        if alg == "RS384"
        else ECKey.generate_key("P-384", parameters={"kid": "k1"})
    )
    assert service_token(client, assertion(app, stranger, alg)).json()["error"] == "invalid_client"
    assert (
        service_token(client, assertion(app, key, alg), "user/*.rs").json()["error"]
        == "invalid_scope"
    )


def test_administrators_register_and_disable_apps(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert client.get("/admin/apps").status_code == 403
    client.cookies.clear()
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    page = client.get("/admin/apps")
    assert page.status_code == 200 and "Register an app" in page.text
    bad = client.post(
        "/admin/apps",
        data={
            "csrf_token": csrf,
            "name": "Tracker",
            "kind": "public",
            "program": str(world.program_a),
            "redirect_uris": "http://tracker.example/cb",
        },
    )
    assert bad.status_code == 422 and "https" in bad.text
    other = client.post(
        "/admin/apps",
        data={
            "csrf_token": csrf,
            "name": "Tracker",
            "kind": "public",
            "program": str(world.program_b),
            "redirect_uris": APP,
        },
    )
    assert other.status_code == 422  # not a program this administrator administers
    made = client.post(
        "/admin/apps",
        data={
            "csrf_token": csrf,
            "name": "Tracker",
            "kind": "confidential",
            "program": str(world.program_a),
            "redirect_uris": APP,
        },
    )
    assert made.status_code == 200 and "data-client-secret" in made.text
    client.cookies.clear()
    with sessions() as db:
        row = db.scalars(select(smart.SmartClient).where(smart.SmartClient.name == "Tracker")).one()
        app_id, client_id = row.id, row.client_id
    assert client_id in made.text
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    disabled = client.post(f"/admin/apps/{app_id}/disable", data={"csrf_token": csrf})
    assert disabled.status_code == 303
    client.cookies.clear()
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    gone = client.get(
        "/oauth/authorize", params=authorize_params(App(client_id), "user/*.rs", pkce()[1])
    )
    assert gone.status_code == 400


def test_the_operator_registers_a_service_from_the_command_line(
    client: TestClient, world: World, database_url: str, tmp_path: Any
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "ops"})
    keys = tmp_path / "jwks.json"
    keys.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [key.as_dict(private=True)]}))
    refused = run_tandem(
        database_url,
        "client",
        "add",
        "--name",
        "Lab feed",
        "--program",
        "alpha",
        "--kind",
        "backend",
        "--role",
        "counselor",
        "--scope",
        "system/*.rs",
        "--jwks",
        str(private),
    )
    assert refused.returncode == 2 and "--jwks" in refused.stderr and "private" in refused.stderr
    made = run_tandem(
        database_url,
        "client",
        "add",
        "--name",
        "Lab feed",
        "--program",
        "alpha",
        "--kind",
        "backend",
        "--role",
        "counselor",
        "--scope",
        "system/*.rs",
        "--jwks",
        str(keys),
    )
    assert made.returncode == 0, made.stderr
    app = App(made.stdout.split()[0])
    body = service_token(client, assertion(app, key, "RS384")).json()
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(body["access_token"])
        ).status_code
        == 200
    )
    listed = run_tandem(database_url, "client", "list")
    assert app.client_id in listed.stdout and "active" in listed.stdout
    assert run_tandem(database_url, "client", "disable", app.client_id).returncode == 0
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(body["access_token"])
        ).status_code
        == 401
    )


def test_a_restore_keeps_apps_revoked(
    client: TestClient, world: World, sessions: sessionmaker[Session], engine: Any
) -> None:
    from sqlalchemy import update

    from tandem.storage import backups
    from tandem.storage.models import SmartToken

    app = register(sessions, world.program_a)
    body = launch(client, world, "nurse", app, "user/*.rs")
    headers = bearer(body["access_token"])
    client.post("/oauth/revoke", data={"token": body["access_token"], "client_id": app.client_id})
    before = backups.capture(engine)
    with session_scope(sessions) as db:  # the backup was made before the revocation
        db.execute(update(SmartToken).values(revoked_at=None))
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    kept = backups.keep_revocations(engine, before, utcnow())
    assert kept.tokens == 1
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 401


# --- an off-the-shelf SMART client over real HTTP ------------------------------------------


@pytest.fixture
def live_root(database_url: str, world: World) -> Any:
    """Tandem served by uvicorn on a loopback port (cookies without Secure: plain http)."""
    import socket
    import threading

    import uvicorn

    from tandem.settings import Settings
    from tandem.web.app import create_app

    app = create_app(Settings(database_url=database_url, cookie_secure=False, login_slowdown_ms=0))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.engine.dispose()


def test_fhirclient_connects_the_standard_way(
    live_root: str, world: World, sessions: sessionmaker[Session]
) -> None:
    """SMART on FHIR's own Python client finds the endpoints in the CapabilityStatement, sends
    the person to the consent page with PKCE, exchanges the code and reads the patient."""
    import httpx
    from fhirclient import client as fhirclient
    from fhirclient.models.patient import Patient as FhirPatient
    from fhirclient.server import FHIRPermissionDeniedException

    app = register(sessions, world.program_a)
    smart_client = fhirclient.FHIRClient(
        settings={
            "app_id": app.client_id,
            "api_base": f"{live_root}/fhir",
            "redirect_uri": APP,
            "scope": "launch/patient patient/*.rs offline_access",
        }
    )
    authorize_url = smart_client.authorize_url
    assert authorize_url.startswith(f"{live_root}/oauth/authorize?")
    with httpx.Client(base_url=live_root) as browser:
        login = browser.get("/login")
        signed_in = browser.post(
            "/login",
            data={
                "email": world.email("patient"),
                "password": world.passwords["patient"],
                "csrf_token": csrf_from(login.text),
                "next": "/",
            },
        )
        assert signed_in.status_code == 303
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        assert "form-action 'self' https://app.example" in page.headers["content-security-policy"]
        query = dict(parse_qs(urlsplit(authorize_url).query))
        form = {k: v[0] for k, v in query.items()}
        allowed = browser.post(
            "/oauth/authorize",
            data={**form, "csrf_token": csrf_from(page.text), "decision": "allow"},
        )
        assert allowed.status_code == 303
    smart_client.handle_callback(allowed.headers["location"])
    assert smart_client.ready and smart_client.patient_id == world.patient_a
    mine = FhirPatient.read(world.patient_a, smart_client.server)
    assert mine.name[0].family == "Rivera"
    with pytest.raises(FHIRPermissionDeniedException):
        FhirPatient.read(world.patient_a2, smart_client.server)


def test_a_person_sees_and_stops_the_apps_they_allowed(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a)
    body = launch(client, world, "patient", app, "launch/patient patient/*.rs offline_access")
    headers = bearer(body["access_token"])
    csrf = sign_in(client, world.email("patient2"), world.passwords["patient2"])
    assert "You have not allowed any app" in client.get("/account/apps").text
    with sessions() as db:
        (grant,) = set(db.scalars(select(smart.SmartToken.grant_id)))
    # Someone else cannot stop it (nothing happens).
    client.post("/account/apps", data={"csrf_token": csrf, "grant": grant})
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    client.cookies.clear()
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    page = client.get("/account/apps")
    assert "Test public app" in page.text and "Read and search your records" in page.text
    stopped = client.post("/account/apps", data={"csrf_token": csrf, "grant": grant})
    assert stopped.status_code == 303
    assert "Test public app" not in client.get("/account/apps").text
    client.cookies.clear()
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 401
    refreshed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": app.client_id,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"
