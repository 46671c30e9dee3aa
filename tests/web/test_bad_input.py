"""Bad input gets a clear 4xx, never a 500: an OperationOutcome naming what to fix under /fhir,
a page naming the field elsewhere. On SQLite and PostgreSQL (the real servers)."""

from __future__ import annotations

import json

from tests.conftest import World, make_token, sign_in

HUGE = str(2**64)
NEGATIVE_HUGE = str(-(2**64))
DIGITS_5000 = "9" * 5000


def _fhir(client, sessions, world: World) -> dict[str, str]:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    return {"Authorization": f"Bearer {token}"}


def _assert_outcome(response, status_range=(400, 499)) -> dict:
    assert status_range[0] <= response.status_code <= status_range[1], (
        response.status_code,
        response.text[:400],
    )
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"]
    return body


FHIR_GETS = [
    f"/fhir/Patient?_offset={HUGE}",
    f"/fhir/Patient?_offset={NEGATIVE_HUGE}",
    f"/fhir/Patient?_offset={DIGITS_5000}",
    f"/fhir/Observation?_offset={HUGE}",
    f"/fhir/AuditEvent?_offset={HUGE}",
    "/fhir/Patient/99999999999999999999",
    f"/fhir/Patient/{DIGITS_5000}",
    "/fhir/Observation/99999999999999999999",
    "/fhir/MedicationRequest/99999999999999999999",
    "/fhir/AuditEvent/99999999999999999999",
    "/fhir/Observation?date=ge9999-12-31T23:59:59Z",
    "/fhir/Observation?date=le0001-01-01T00:00:00Z",
    "/fhir/Observation?date=gt9999-12-31",
    "/fhir/AuditEvent?date=ge9999-12-31T23:59:59Z",
    "/fhir/AuditEvent?date=lt0001-01-01",
    "/fhir/Patient?name=a%00b",
    "/fhir/Patient?identifier=%00",
    "/fhir/Observation?patient=%00",
    "/fhir/Observation?patient=" + "x" * 40,
    "/fhir/MedicationRequest?patient=Patient/" + "1" * 40,
    "/fhir/AuditEvent?patient=" + "x" * 40,
    "/fhir/Patient/a%00b",
    "/fhir/Patient/" + "x" * 40,
]


def test_fhir_reads_and_searches_refuse_bad_values_with_an_outcome(
    client, sessions, world: World
) -> None:
    headers = _fhir(client, sessions, world)
    for url in FHIR_GETS:  # one app and database for all: the suite stays quick
        _assert_outcome(client.get(url, headers=headers))
    # A page size above the maximum is capped, as FHIR clients expect, not refused.
    capped = client.get(f"/fhir/Patient?_count={HUGE}", headers=headers)
    assert capped.status_code == 200 and capped.json()["resourceType"] == "Bundle"


def _patient(**extra: object) -> dict:
    return {
        "resourceType": "Patient",
        "name": [{"family": "Lopez", "given": ["Rosa"]}],
        "identifier": [{"value": "ALP-900"}],
        **extra,
    }


def _nested(depth: int) -> str:
    return '{"resourceType":"Patient","extension":' + "[" * depth + "]" * depth + "}"


FHIR_BODIES = {
    "organization above 2^63": json.dumps(
        _patient(managingOrganization={"reference": f"Organization/{HUGE}"})
    ),
    "organization of 5000 digits": json.dumps(
        _patient(managingOrganization={"reference": f"Organization/{DIGITS_5000}"})
    ),
    "nested 1000 levels": _nested(1000),
    "nested 100000 levels": _nested(100_000),
    "a number of 5000 digits": '{"resourceType":"Patient","birthDate":' + DIGITS_5000 + "}",
    "a NUL in a name": json.dumps(_patient(name=[{"family": "Lo\u0000pez"}])),
    "a NUL in an identifier": json.dumps(_patient(identifier=[{"value": "A\u0000"}])),
}


def test_fhir_create_refuses_bad_bodies_with_an_outcome(client, sessions, world: World) -> None:
    headers = {**_fhir(client, sessions, world), "Content-Type": "application/fhir+json"}
    for case, body in FHIR_BODIES.items():
        response = client.post("/fhir/Patient", content=body, headers=headers)
        assert _assert_outcome(response), case


def test_fhir_update_with_a_nul_is_refused(client, sessions, world: World) -> None:
    response = client.put(
        f"/fhir/Patient/{world.patient_a}",
        content=json.dumps(_patient(name=[{"family": "Ri\u0000vera"}])),
        headers={**_fhir(client, sessions, world), "Content-Type": "application/fhir+json"},
    )
    _assert_outcome(response)


PAGE_GETS_NURSE = [
    f"/patients?page={HUGE}",
    f"/patients?page={DIGITS_5000}",
    "/patients?q=a%00b",
    "/patients/99999999999999999999",
    f"/patients/{DIGITS_5000}",
    "/patients/a%00b",
    "/patients/" + "x" * 40,
    f"/detox/units/{HUGE}",
    "/detox/units/1?page=" + HUGE,
    f"/medications/{HUGE}",
    "/patients/{a}/medications/plans/" + HUGE,
]

PAGE_GETS_ADMIN = [
    f"/admin/audit?page={HUGE}",
    "/admin/audit?patient=a%00b",
    f"/admin/users/{HUGE}",
    f"/admin/users/{NEGATIVE_HUGE}",
]


def test_pages_refuse_bad_values_for_a_nurse(client, world: World) -> None:
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    for url in PAGE_GETS_NURSE:
        response = client.get(url.replace("{a}", world.patient_a))
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])
        assert "<html" in response.text.lower()


def test_pages_refuse_bad_values_for_an_administrator(client, world: World) -> None:
    sign_in(client, world.email("admin"), world.passwords["admin"])
    for url in PAGE_GETS_ADMIN:
        response = client.get(url)
        assert 400 <= response.status_code < 500, (url, response.status_code, response.text[:300])


def test_a_form_with_a_program_above_2_63_names_the_field(client, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    response = client.post(
        "/patients/new",
        data={"csrf_token": csrf, "program_id": HUGE, "family": "Lopez", "given": "Rosa"},
    )
    assert response.status_code == 422, response.text[:300]
    assert "program" in response.text.lower()


def test_a_form_with_a_nul_names_the_field(client, world: World) -> None:
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    response = client.post(
        "/patients/new",
        data={
            "csrf_token": csrf,
            "program_id": str(world.program_a),
            "family": "Lo\x00pez",
            "given": "Rosa",
        },
    )
    assert response.status_code in (400, 422), response.text[:300]
    assert "family" in response.text


def test_admin_forms_refuse_huge_ids(client, world: World) -> None:
    csrf = sign_in(client, world.email("admin"), world.passwords["admin"])
    response = client.post(
        f"/admin/programs/{HUGE}/units",
        data={"csrf_token": csrf, "code": "x", "name": "X", "kind": "detox"},
    )
    assert 400 <= response.status_code < 500, response.text[:300]
    response = client.post(
        f"/admin/users/{HUGE}", data={"csrf_token": csrf, "role": "nurse", "programs": HUGE}
    )
    assert 400 <= response.status_code < 500, response.text[:300]
    response = client.post(f"/alerts/{HUGE}/acknowledge", data={"csrf_token": csrf})
    assert 400 <= response.status_code < 500, response.text[:300]


def test_an_unauthorized_invalid_form_is_refused_for_access_not_validation(
    client, sessions, world: World
) -> None:
    """A nurse of program B posting nonsense to a program-A chart: 403, nothing kept."""
    csrf = sign_in(client, world.email("nurse_b"), world.passwords["nurse_b"])
    invalid = {"family": "", "medication": "none", "start_date": "x", "onset_at": "x", "x": HUGE}
    paths = (
        f"/patients/{world.patient_a}/withdrawal/assess",
        f"/patients/{world.patient_a}/edit",
        f"/patients/{world.patient_a}/medications/side-effects",
        f"/patients/{world.patient_a}/medications/plans",
        f"/patients/{world.patient_a}/medications/facts",
    )
    for path in paths:
        response = client.post(path, data={"csrf_token": csrf, **invalid})
        assert response.status_code == 403, (path, response.status_code, response.text[:300])
    # In the patient's program but without the right: a nurse does not prescribe, a researcher
    # records nothing.
    client.cookies.clear()
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    response = client.post(paths[3], data={"csrf_token": csrf, **invalid})
    assert response.status_code == 403, response.text[:300]
    client.cookies.clear()
    csrf = sign_in(client, world.email("researcher"), world.passwords["researcher"])
    for path in paths[2:]:
        response = client.post(path, data={"csrf_token": csrf, **invalid})
        assert response.status_code == 403, (path, response.status_code, response.text[:300])
    # A counselor reads the chart but records nothing.
    client.cookies.clear()
    csrf = sign_in(client, world.email("counselor"), world.passwords["counselor"])
    for path in (
        *paths,
        f"/patients/{world.patient_a}/withdrawal/context",
        f"/patients/{world.patient_a}/withdrawal/dose",
    ):
        response = client.post(
            path, data={"csrf_token": csrf, **invalid, "instrument": "nothing", "assessment": "x"}
        )
        assert response.status_code == 403, (path, response.status_code, response.text[:300])


def test_a_body_over_the_limit_is_refused_unread(client, sessions, world: World) -> None:
    headers = {**_fhir(client, sessions, world), "Content-Type": "application/fhir+json"}
    big = b'{"resourceType":"Patient","text":"' + b"x" * 1_100_000 + b'"}'
    declared = client.post("/fhir/Patient", content=big, headers=headers)
    assert declared.status_code == 413
    assert _assert_outcome(declared)["issue"][0]["code"] == "too-costly"
    assert declared.headers["x-content-type-options"] == "nosniff"
    sent: list[int] = []

    def chunks():  # no Content-Length (a served app is tested in test_never_stall)
        for _ in range(3):
            sent.append(1)
            yield b"x" * 1_000_000

    streamed = client.post("/fhir/Patient", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    _assert_outcome(streamed)
    csrf = sign_in(client, world.email("nurse"), world.passwords["nurse"])
    form = client.post(
        "/patients/new", data={"csrf_token": csrf, "family": "x" * 1_100_000, "given": "R"}
    )
    assert form.status_code == 413 and "larger than" in form.text


def test_security_headers_and_no_store_on_every_answer_including_errors(
    client, sessions, world: World
) -> None:
    headers = _fhir(client, sessions, world)
    answers = {
        "fhir read": client.get(f"/fhir/Patient/{world.patient_a}", headers=headers),
        "fhir 404": client.get("/fhir/Nothing", headers=headers),
        "fhir 405": client.delete("/fhir/Patient", headers=headers),
        "fhir 401": client.get("/fhir/Patient"),
        "fhir 400": client.get("/fhir/Patient?_count=x", headers=headers),
        "page 404": client.get("/nothing-here"),
        "login": client.get("/login"),
    }
    for name, response in answers.items():
        assert response.headers.get("x-frame-options") == "DENY", name
        assert "frame-ancestors" in response.headers.get("content-security-policy", ""), name
        assert response.headers.get("cache-control") == "no-store", name
        assert "strict-transport-security" not in response.headers, name
    assert "no-store" not in client.get("/static/tandem.css").headers.get("cache-control", "")


def test_hsts_when_the_setting_asks_for_it(settings, world: World) -> None:
    from fastapi.testclient import TestClient

    from tandem.web.app import create_app

    app = create_app(settings.model_copy(update={"hsts": True}))
    with TestClient(app, base_url="https://testserver") as hsts_client:
        response = hsts_client.get("/fhir/nothing")
    assert response.headers["strict-transport-security"].startswith("max-age=")
    app.state.engine.dispose()


def test_the_api_description_is_for_signed_in_staff_only(client, world: World) -> None:
    for path in ("/api/openapi.json", "/api/docs", "/docs", "/redoc", "/openapi.json"):
        assert client.get(path).status_code in (303, 404), path
    for outsider in ("patient", "researcher"):
        client.cookies.clear()
        sign_in(client, world.email(outsider), world.passwords[outsider])
        assert client.get("/api/openapi.json").status_code == 403, outsider
    client.cookies.clear()
    sign_in(client, world.email("nurse"), world.passwords["nurse"])
    described = client.get("/api/openapi.json").json()
    search = described["paths"]["/fhir/Observation"]["get"]
    assert {"patient", "date", "_count", "_offset"} <= {p["name"] for p in search["parameters"]}
    assert "requestBody" in described["paths"]["/fhir/Patient"]["post"]


def test_anonymous_401s_are_counted_not_audited_one_by_one(client, sessions, world: World) -> None:
    from sqlalchemy import select

    from tandem.storage.models import AnonymousRefusal, AuditEntry

    for _ in range(6):
        response = client.get("/fhir/Patient", headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401
    with sessions() as db:
        audited = db.scalars(select(AuditEntry).where(AuditEntry.operation == "authenticate")).all()
        counters = db.scalars(select(AnonymousRefusal)).all()
    assert len(audited) in (1, 2)  # one per address and minute (two if a minute turned)
    assert sum(c.count for c in counters) == 6 and len(counters) == len(audited)
    # A failed sign-in is still audited each time.
    from tests.conftest import csrf_from

    for _ in range(2):
        page = client.get("/login")
        client.post(
            "/login",
            data={
                "email": world.email("nurse"),
                "password": "wrong",
                "csrf_token": csrf_from(page.text),
            },
        )
    with sessions() as db:
        logins = db.scalars(select(AuditEntry).where(AuditEntry.operation == "login")).all()
    assert len(logins) >= 2


def test_a_sign_in_with_a_nul_is_refused_cleanly(client, world: World) -> None:
    from tests.conftest import csrf_from

    page = client.get("/login")
    response = client.post(
        "/login",
        data={
            "email": "nurse\x00@test.tandem.test",
            "password": "x\x00",
            "csrf_token": csrf_from(page.text),
        },
    )
    assert 400 <= response.status_code < 500, response.text[:300]
