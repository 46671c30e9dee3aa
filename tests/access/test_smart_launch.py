"""SMART on FHIR, the rest of it, on SQLite and PostgreSQL: staff open an app from a patient's
chart (EHR launch), backend services publish their keys at an address, refused token requests
are limited across worker processes, and the id_token signing keys are sealed with a secret kept
outside the database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tandem.access import keystore, remote_keys, smart
from tandem.access.credentials import WIDE_LIMIT_FACTOR
from tandem.errors import InvalidInput
from tandem.settings import Settings
from tandem.storage.db import session_scope, utcnow
from tandem.storage.models import AuditEntry, SmartLaunch, SmartSigningKey
from tests.access.test_smart import (
    APP,
    AUD,
    App,
    assertion,
    bearer,
    error_of,
    exchange,
    live_root,
    pkce,
    register,
    service_token,
)
from tests.cli_runner import run_tandem
from tests.conftest import World, csrf_from, sign_in

__all__ = ["live_root"]  # the fixture, shared with test_smart

LAUNCH_URL = "https://app.example/launch"


def launch_from_chart(client: TestClient, world: World, app: App, patient: str) -> str:
    """On the chart (already signed in), press Launch: the app's launch value, `iss` checked."""
    chart = client.get(f"/patients/{patient}")
    assert chart.status_code == 200
    assert f'data-launch="{app.client_id}"' in chart.text
    opened = client.post(
        f"/patients/{patient}/launch",
        data={"csrf_token": csrf_from(chart.text), "app": app.client_id},
    )
    assert opened.status_code == 303, opened.text
    where = urlsplit(opened.headers["location"])
    assert f"{where.scheme}://{where.netloc}{where.path}" == LAUNCH_URL
    query = parse_qs(where.query)
    assert query["iss"] == [AUD]
    return query["launch"][0]


def authorize_launch(app: App, launch: str, scope: str, challenge: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": app.client_id,
        "redirect_uri": APP,
        "scope": scope,
        "state": "st-launch",
        "aud": AUD,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "launch": launch,
    }


# --- EHR launch -------------------------------------------------------------------------------


def test_staff_open_an_app_from_the_chart_with_that_patient(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a, launch_url=LAUNCH_URL)
    plain = register(sessions, world.program_a)  # no launch URL: not offered on the chart
    config = client.get("/.well-known/smart-configuration").json()
    assert {"launch-ehr", "context-ehr-patient", "launch-standalone"} <= set(config["capabilities"])
    assert "launch" in config["scopes_supported"]

    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    chart = client.get(f"/patients/{world.patient_a}")
    assert "Launch Test public app" in chart.text
    assert plain.client_id not in chart.text
    # The Launch form leads on to the app's address: the page's policy lets it.
    assert "form-action 'self' https://app.example" in chart.headers["content-security-policy"]
    launch = launch_from_chart(client, world, app, world.patient_a)

    verifier, challenge = pkce()
    params = authorize_launch(app, launch, "launch openid patient/*.rs", challenge)
    page = client.get("/oauth/authorize", params=params)
    assert page.status_code == 200, page.text
    assert "For <strong>RIVERA, Ana</strong>" in page.text
    assert "Which patient?" not in page.text  # the chart said which
    assert "Know the patient whose chart you opened it from" in page.text
    assert "Read and search this patient&#39;s records" in page.text  # not "the chosen"
    assert "chosen patient" not in page.text
    form = {**params, "csrf_token": csrf_from(page.text), "decision": "allow"}
    allowed = client.post("/oauth/authorize", data=form)
    assert allowed.status_code == 303
    code = parse_qs(urlsplit(allowed.headers["location"]).query)["code"][0]
    body = exchange(client, app, code, verifier).json()
    assert body["patient"] == world.patient_a
    assert body["need_patient_banner"] is True
    assert body["smart_style_url"] == "https://testserver/oauth/smart-style.json"
    assert body["scope"] == "launch openid patient/*.rs"
    assert client.get("/oauth/smart-style.json").json()["color_highlight"]

    # The launch is spent: the same value again is refused, with the way out in words.
    again = client.get("/oauth/authorize", params=params)
    sent = error_of(again.headers["location"])
    assert sent["error"] == ["invalid_request"] and "used before" in sent["error_description"][0]

    client.cookies.clear()
    headers = bearer(body["access_token"])
    assert client.get(f"/fhir/Patient/{world.patient_a}", headers=headers).status_code == 200
    assert client.get(f"/fhir/Patient/{world.patient_a2}", headers=headers).status_code == 403
    with sessions() as db:
        launched = db.scalars(select(AuditEntry).where(AuditEntry.operation == "launch")).one()
        assert launched.patient_id == world.patient_a and launched.outcome == "0"


def test_a_launch_is_for_that_person_that_app_and_a_few_minutes(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a, launch_url=LAUNCH_URL)
    other = register(sessions, world.program_a, launch_url="https://other.example/launch")
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    launch = launch_from_chart(client, world, app, world.patient_a)
    _, challenge = pkce()

    def refused(who: App, value: str, scope: str = "launch patient/*.rs") -> str:
        answer = client.get(
            "/oauth/authorize", params=authorize_launch(who, value, scope, challenge)
        )
        assert answer.status_code == 303, answer.text
        return error_of(answer.headers["location"])["error_description"][0]

    assert "unknown launch" in refused(other, launch)  # another app's launch
    assert "unknown launch" in refused(app, "made-up")
    assert "launch scope" in refused(app, launch, "patient/*.rs")
    # Someone else signed in (a counselor of the same program) cannot redeem the nurse's launch.
    client.cookies.clear()
    sign_in(client, world.email("counselor"), world.passwords["counselor"])
    assert "unknown launch" in refused(app, launch)
    client.cookies.clear()
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    with session_scope(sessions) as db:
        db.execute(update(SmartLaunch).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert "expired" in refused(app, launch)
    # Without a launch the launch scope is not granted; patient/ scopes then need a patient.
    standalone = client.get(
        "/oauth/authorize",
        params={**authorize_launch(app, "", "launch user/*.rs", challenge)},
    )
    assert standalone.status_code == 200
    assert "the app was not opened from a patient" in standalone.text

    # Only apps of the patient's program, and only for a patient the person may see.
    b_app = register(sessions, world.program_b, launch_url=LAUNCH_URL)
    for patient, wanted in (
        (world.patient_a, b_app.client_id),
        (world.patient_b, app.client_id),
        (world.patient_a, "app-nope"),
    ):
        answer = client.post(
            f"/patients/{patient}/launch", data={"csrf_token": csrf, "app": wanted}
        )
        assert answer.status_code == 403, (patient, wanted)
    with sessions() as db:
        assert len(db.scalars(select(SmartLaunch)).all()) == 1


def test_a_patient_has_no_launch_action(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    app = register(sessions, world.program_a, launch_url=LAUNCH_URL)
    csrf = sign_in(client, world.email("patient"), world.passwords["patient"])
    chart = client.get(f"/patients/{world.patient_a}")
    assert chart.status_code == 200 and "data-launch" not in chart.text
    tried = client.post(
        f"/patients/{world.patient_a}/launch", data={"csrf_token": csrf, "app": app.client_id}
    )
    assert tried.status_code == 403


def test_fhirclient_follows_an_ehr_launch(
    live_root: str, world: World, sessions: sessionmaker[Session]
) -> None:
    """SMART's Python client, given the `iss` and `launch` Tandem sent it to, asks with the
    launch scope, and gets the patient whose chart the nurse had open."""
    import httpx
    from fhirclient import client as fhirclient
    from fhirclient.models.patient import Patient as FhirPatient

    app = register(sessions, world.program_a, launch_url=LAUNCH_URL)
    with httpx.Client(base_url=live_root) as browser:
        login = browser.get("/login")
        browser.post(
            "/login",
            data={
                "email": world.email("nurse"),
                "password": world.passwords["nurse"],
                "csrf_token": csrf_from(login.text),
                "next": "/",
            },
        )
        chart = browser.get(f"/patients/{world.patient_a}")
        opened = browser.post(
            f"/patients/{world.patient_a}/launch",
            data={"csrf_token": csrf_from(chart.text), "app": app.client_id},
        )
        assert opened.status_code == 303
        sent = parse_qs(urlsplit(opened.headers["location"]).query)
        smart_client = fhirclient.FHIRClient(
            settings={
                "app_id": app.client_id,
                "api_base": sent["iss"][0],
                "launch_token": sent["launch"][0],
                "redirect_uri": APP,
                "scope": "patient/*.rs",
            }
        )
        authorize_url = smart_client.authorize_url
        assert "launch=" in authorize_url
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        form = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        allowed = browser.post(
            "/oauth/authorize",
            data={**form, "csrf_token": csrf_from(page.text), "decision": "allow"},
        )
        assert allowed.status_code == 303, allowed.text
    smart_client.handle_callback(allowed.headers["location"])
    assert smart_client.ready and smart_client.patient_id == world.patient_a
    assert FhirPatient.read(world.patient_a, smart_client.server).name[0].family == "Rivera"


# --- backend services' keys at an address ----------------------------------------------------


class KeyServer:
    """A real HTTP server on a loopback port serving a key set the test changes."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {"keys": []}
        self.fetches: dict[str, int] = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                outer.fetches[self.path] = outer.fetches.get(self.path, 0) + 1
                if self.path == "/slow":
                    time.sleep(remote_keys.TIMEOUT_SECONDS + 1)
                if self.path == "/moved":
                    self.send_response(302)
                    self.send_header("Location", "/jwks.json")
                    self.end_headers()
                    return
                body = (
                    b'{"keys": [' + b" " * (remote_keys.MAX_BYTES + 10) + b"]}"
                    if self.path == "/big.json"
                    else json.dumps(outer.keys).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.root = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> KeyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_server() -> Iterator[KeyServer]:
    with KeyServer() as server:
        yield server


def test_a_service_publishes_its_keys_at_an_address_and_rotates_them(
    client: TestClient, world: World, sessions: sessionmaker[Session], key_server: KeyServer
) -> None:
    first = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    key_server.keys = {"keys": [first.as_dict(private=False)]}
    app = register(
        sessions,
        world.program_a,
        "backend",
        role="nurse",
        scopes="system/*.rs",
        jwks_uri=f"{key_server.root}/jwks.json",
    )
    answer = service_token(client, assertion(app, first, "RS384"))
    assert answer.status_code == 200, answer.text
    assert (
        client.get(
            f"/fhir/Patient/{world.patient_a}", headers=bearer(answer.json()["access_token"])
        ).status_code
        == 200
    )
    assert service_token(client, assertion(app, first, "RS384")).status_code == 200
    assert key_server.fetches["/jwks.json"] == 1  # kept, not fetched for every request

    # The service rotates: a key id not seen yet is fetched again, once.
    second = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    key_server.keys = {"keys": [second.as_dict(private=False)]}
    time.sleep(remote_keys.REFETCH_AFTER)
    assert service_token(client, assertion(app, second, "RS384")).status_code == 200
    assert key_server.fetches["/jwks.json"] == 2
    time.sleep(remote_keys.REFETCH_AFTER)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k9"})
    refused = service_token(client, assertion(app, stranger, "RS384"))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    assert key_server.fetches["/jwks.json"] == 3
    # A stranger's key under a key id the service uses does not verify either.
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    assert service_token(client, assertion(app, impostor, "RS384")).status_code == 400
    assert key_server.fetches["/jwks.json"] == 3


@pytest.mark.parametrize(
    ("path", "said"),
    [("/big.json", "larger than 64 KB"), ("/moved", "redirect"), ("/missing", "did not")],
)
def test_a_key_set_address_that_misbehaves_is_refused_by_name(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    key_server: KeyServer,
    path: str,
    said: str,
) -> None:
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    if path == "/missing":
        key_server.server.shutdown()  # nothing answers there any more
        key_server.server.server_close()
    app = register(
        sessions,
        world.program_a,
        "backend",
        role="nurse",
        scopes="system/*.rs",
        jwks_uri=f"{key_server.root}{path}",
    )
    answer = service_token(client, assertion(app, key, "RS384"))
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    assert said in answer.json()["error_description"]


def test_a_slow_key_server_holds_up_no_one_else(
    live_root: str, world: World, sessions: sessionmaker[Session], key_server: KeyServer
) -> None:
    """The keys are fetched in the token request's worker thread, with a timeout: while it
    waits on a key server that does not answer, Tandem answers others at once (uvicorn on a
    loopback port)."""
    import httpx

    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    app = register(
        sessions,
        world.program_a,
        "backend",
        role="nurse",
        scopes="system/*.rs",
        jwks_uri=f"{key_server.root}/slow",
    )
    signed = assertion(app, key, "RS384", aud=f"{live_root}/oauth/token")
    answers: list[httpx.Response] = []

    def ask() -> None:
        answers.append(
            httpx.post(
                f"{live_root}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "scope": "system/*.rs",
                    "client_assertion_type": smart.ASSERTION_TYPE,
                    "client_assertion": signed,
                },
                timeout=60,
            )
        )

    waiting = threading.Thread(target=ask)
    started = time.monotonic()
    waiting.start()
    time.sleep(0.5)  # the token request is waiting on the key server by now
    assert httpx.get(f"{live_root}/healthz", timeout=60).status_code == 200
    assert httpx.get(f"{live_root}/.well-known/smart-configuration", timeout=60).status_code == 200
    assert time.monotonic() - started < remote_keys.TIMEOUT_SECONDS
    waiting.join(timeout=60)
    (answer,) = answers
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_client"
    assert "did not answer" in answer.json()["error_description"]
    assert time.monotonic() - started < remote_keys.TIMEOUT_SECONDS + 5


def test_a_key_set_address_must_be_https(world: World, sessions: sessionmaker[Session]) -> None:
    for address in ("http://keys.example/jwks.json", "ftp://127.0.0.1/jwks", "keys"):
        with pytest.raises(InvalidInput) as refused:
            register(
                sessions,
                world.program_a,
                "backend",
                role="nurse",
                scopes="system/*.rs",
                jwks_uri=address,
            )
        assert refused.value.field == "jwks_uri"


# --- limits on refused token requests ----------------------------------------------------------


def test_refused_token_requests_are_limited_across_processes(
    database_url: str, world: World, sessions: sessionmaker[Session]
) -> None:
    """Two app instances on one database (as two worker processes would be) share the limit;
    from another address the service, proving itself, is still served, even after refused
    requests under its id from many addresses (no one can block an app by guessing)."""
    from tandem.web.app import create_app

    settings = Settings(
        database_url=database_url,
        token_max_failures=3,
        token_window_minutes=15,
        trusted_proxies=1,
        login_slowdown_ms=0,
    )
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    app = register(
        sessions,
        world.program_a,
        "backend",
        role="nurse",
        scopes="system/*.rs",
        jwks=json.dumps({"keys": [key.as_dict(private=False)]}),
    )
    first, second = create_app(settings), create_app(settings)
    here = {"X-Forwarded-For": "203.0.113.7"}

    def ask(worker: TestClient, signer: RSAKey, headers: dict[str, str]) -> Any:
        return worker.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "scope": "system/*.rs",
                "client_assertion_type": smart.ASSERTION_TYPE,
                "client_assertion": assertion(app, signer, "RS384"),
            },
            headers=headers,
        )

    try:
        with (
            TestClient(first, base_url="https://testserver") as one,
            TestClient(second, base_url="https://testserver") as two,
        ):
            for attempt, worker in enumerate((one, two, one)):
                wrong = ask(worker, stranger, here)
                assert wrong.status_code == 400, attempt
                assert wrong.json()["error"] == "invalid_client"
            held = ask(two, stranger, here)
            assert held.status_code == 429
            assert held.json()["error"] == "invalid_client"
            assert 0 < int(held.headers["retry-after"]) <= 15 * 60
            assert "too many refused requests" in held.json()["error_description"]
            # From that address, even a good assertion waits ...
            assert ask(one, key, here).status_code == 429
            # ... but the service itself keeps working from its own address, however many
            # refused requests others send under its id from elsewhere.
            for n in range(3 * WIDE_LIMIT_FACTOR + 1):
                refused = ask(one, stranger, {"X-Forwarded-For": f"192.0.2.{n + 1}"})
                assert refused.status_code == 400, n
            served = ask(two, key, {"X-Forwarded-For": "198.51.100.20"})
            assert served.status_code == 200, served.text
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()


# --- the signing key, sealed ------------------------------------------------------------------


def openid_token(client: TestClient, world: World, sessions: sessionmaker[Session]) -> str:
    from tests.access.test_smart import launch

    app = register(sessions, world.program_a)
    return str(launch(client, world, "nurse", app, "openid user/*.rs")["id_token"])


def test_the_signing_key_is_sealed_and_rotated(
    client: TestClient,
    world: World,
    sessions: sessionmaker[Session],
    database_url: str,
    tmp_path: Path,
) -> None:
    id_token = openid_token(client, world, sessions)
    with sessions() as db:
        (row,) = db.scalars(select(SmartSigningKey)).all()
        first_kid = row.kid
        assert row.private_jwk.startswith("sealed:v1:")
        assert '"d"' not in row.private_jwk and row.public_jwk and '"d"' not in row.public_jwk
    keys = KeySet.import_key_set(client.get("/oauth/jwks").json())
    assert jwt.decode(id_token, keys, algorithms=["RS256"]).claims["sub"]

    # The operator rotates (say, after changing the secret): the new key signs, the old one is
    # still published for the id_tokens it signed.
    secret_file = tmp_path / "key-secret"
    secret_file.write_text("another secret, long enough to be one: 0123456789\n")
    secret_file.chmod(0o600)
    import os

    os.environ["TANDEM_KEY_FILE"] = str(secret_file)
    try:
        rotated = run_tandem(database_url, "client", "rotate-key")
    finally:
        del os.environ["TANDEM_KEY_FILE"]
    assert rotated.returncode == 0, rotated.stderr
    assert str(secret_file) in rotated.stdout
    published = {k["kid"] for k in client.get("/oauth/jwks").json()["keys"]}
    assert first_kid in published and len(published) == 2
    later = openid_token(client, world, sessions)
    keys = KeySet.import_key_set(client.get("/oauth/jwks").json())
    assert jwt.decode(id_token, keys, algorithms=["RS256"])
    assert jwt.decode(later, keys, algorithms=["RS256"])
    # The rotated key was sealed with the other secret: this server cannot open it, so it makes
    # its own; once the old key's id_tokens have expired, it is no longer published.
    with session_scope(sessions) as db:
        for row in db.scalars(select(SmartSigningKey)):
            row.created_at -= smart.ID_TOKEN_LIFETIME * 3
    openid_token(client, world, sessions)
    published = {k["kid"] for k in client.get("/oauth/jwks").json()["keys"]}
    assert first_kid not in published


def test_a_key_stored_before_sealing_is_sealed_at_next_use(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    legacy = RSAKey.generate_key(2048, parameters={"kid": "legacy", "use": "sig", "alg": "RS256"})
    with session_scope(sessions) as db:
        db.add(
            SmartSigningKey(
                kid="legacy",
                private_jwk=json.dumps(legacy.as_dict(private=True)),
                created_at=utcnow(),
            )
        )
    assert [k["kid"] for k in client.get("/oauth/jwks").json()["keys"]] == ["legacy"]
    id_token = openid_token(client, world, sessions)
    assert jwt.decode(id_token, legacy, algorithms=["RS256"]).header["kid"] == "legacy"
    with sessions() as db:
        row = db.get(SmartSigningKey, "legacy")
        assert row is not None and keystore.is_sealed(row.private_jwk) and row.public_jwk


def test_a_key_secret_that_cannot_protect_is_refused_at_start(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.write_text("x" * 40)
    loose.chmod(0o644)
    with pytest.raises(ValueError, match="readable by others"):
        Settings(key_file=str(loose))
    with pytest.raises(ValueError, match="at least 32"):
        Settings(key_secret="short")
    with pytest.raises(ValueError, match="No such file"):
        Settings(key_file=str(tmp_path / "absent"))
    sealer = Settings(key_secret="k" * 40).sealer()
    sealed = sealer.seal("private", "kid-1")
    assert sealer.open(sealed, "kid-1") == "private"
    assert sealer.open(sealed, "kid-2") is None  # bound to its key id
    assert Settings(key_secret="j" * 40).sealer().open(sealed, "kid-1") is None


# --- registration by an administrator's software (RFC 7591) ---------------------------------


def test_an_administrators_token_registers_apps_for_their_program(
    client: TestClient, world: World, sessions: sessionmaker[Session]
) -> None:
    from tests.conftest import make_token

    admin = bearer(make_token(sessions, world.email("admin"), "user/AuditEvent.rs"))
    nurse = bearer(make_token(sessions, world.email("nurse"), "user/*.rs"))
    endpoint = client.get("/.well-known/smart-configuration").json()["registration_endpoint"]
    assert endpoint == "https://testserver/oauth/register"
    public = {
        "client_name": "Dose diary",
        "redirect_uris": [APP],
        "token_endpoint_auth_method": "none",
        "tandem_launch_url": LAUNCH_URL,
    }
    assert client.post("/oauth/register", json=public).status_code == 401
    refused = client.post("/oauth/register", json=public, headers=nurse)
    assert refused.status_code == 403 and refused.json()["error"] == "insufficient_scope"

    made = client.post("/oauth/register", json=public, headers=admin)
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["client_id"].startswith("app-") and "client_secret" not in body
    assert body["redirect_uris"] == [APP] and body["tandem_launch_url"] == LAUNCH_URL
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    assert "Launch Dose diary" in client.get(f"/patients/{world.patient_a}").text
    client.cookies.clear()

    confidential = client.post(
        "/oauth/register",
        json={"client_name": "Clinic portal", "redirect_uris": [APP]},
        headers=admin,
    ).json()
    assert confidential["token_endpoint_auth_method"] == "client_secret_basic"
    assert confidential["client_secret"] and confidential["client_secret_expires_at"] == 0
    service = client.post(
        "/oauth/register",
        json={
            "client_name": "Lab feed",
            "token_endpoint_auth_method": "private_key_jwt",
            "jwks_uri": "https://lab.example/jwks.json",
            "scope": "system/*.rs",
            "tandem_role": "counselor",
        },
        headers=admin,
    )
    assert service.status_code == 201, service.text
    assert service.json()["grant_types"] == ["client_credentials"]

    for metadata, error, said in (
        ({**public, "redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri", "https"),
        ({**public, "tandem_program": "beta"}, "invalid_client_metadata", "not a program"),
        ({**public, "client_name": ""}, "invalid_client_metadata", "client_name"),
        ({**public, "grant_types": ["client_credentials"]}, "invalid_client_metadata", "grant"),
        ({**public, "redirect_uris": APP}, "invalid_client_metadata", "list of strings"),
        ([public], "invalid_client_metadata", "JSON object"),
    ):
        answer = client.post("/oauth/register", json=metadata, headers=admin)
        assert answer.status_code == 400, metadata
        assert answer.json()["error"] == error and said in answer.json()["error_description"]
    garbled = client.post(
        "/oauth/register",
        content=b"{not json",
        headers={**admin, "Content-Type": "application/json"},
    )
    assert garbled.status_code == 400
    with sessions() as db:
        names = set(db.scalars(select(smart.SmartClient.name)))
        refusals = db.scalars(
            select(AuditEntry).where(
                AuditEntry.resource_type == "SmartApp", AuditEntry.outcome == "4"
            )
        ).all()
    assert names == {"Dose diary", "Clinic portal", "Lab feed"}
    assert len(refusals) >= 8  # every refusal is in the audit trail


def test_the_operator_registers_a_launchable_app_from_the_command_line(
    database_url: str, world: World, sessions: sessionmaker[Session]
) -> None:
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
        "--jwks-uri",
        "http://lab.example/jwks.json",
    )
    assert refused.returncode == 2 and "--jwks-uri" in refused.stderr
    made = run_tandem(
        database_url,
        "client",
        "add",
        "--name",
        "Dose diary",
        "--program",
        "alpha",
        "--redirect-uri",
        APP,
        "--launch-url",
        LAUNCH_URL,
    )
    assert made.returncode == 0, made.stderr
    with sessions() as db:
        client = db.scalars(
            select(smart.SmartClient).where(smart.SmartClient.client_id == made.stdout.split()[0])
        ).one()
        assert client.launch_url == LAUNCH_URL
        assert [a.client_id for a in smart.launchable_apps(db, world.program_a)] == [
            client.client_id
        ]
