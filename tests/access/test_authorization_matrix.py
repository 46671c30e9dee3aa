"""The authorization matrix: every route of the app (read from `create_app`, so a new route is
covered the day it is added) × every kind of caller: each role in the patient's program and in
another program, a patient and another patient, anonymous, a browser session and an API token
(full and narrow). Path parameters are filled with real records of one patient of program A.

For every request: never a 5xx; anonymous reaches only the public routes; nobody the one policy
(`tandem.access.policy`) refuses reaches a record of that patient, and a member of another
program or another patient never does; the patient's name and MRN are never in an answer to
anyone who may not read their chart; a refused write leaves every table as it was.

One test per route and engine (SQLite and PostgreSQL; a page's form post on SQLite only, see
`_cells`), each a unit pytest-xdist may give to any worker. The records and callers are seeded once per run and engine; each worker that runs cells
works on a copy of its own, with one app (module scope).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine, func, literal, select, union_all
from sqlalchemy.orm import Session, sessionmaker
from starlette.routing import Mount

from tandem import domains
from tandem.access import accounts, smart
from tandem.access.audit import Origin
from tandem.access.credentials import actor_for, create_token, start_session
from tandem.access.guard import Access
from tandem.access.policy import (
    Actor,
    Decision,
    PatientRef,
    Permission,
    decide,
    may_administer,
    may_create_program,
    may_read_audit,
)
from tandem.alerts.models import Alert
from tandem.choice.consent import ConsentInput
from tandem.choice.consent_service import record_consent
from tandem.clock import program_today
from tandem.counseling import questions
from tandem.counseling.storage import MessageRow
from tandem.counseling.triage import AskForm
from tandem.instruments.engine import get_instrument
from tandem.medications.dose_calendar import plan_view
from tandem.medications.doses import record_administration, record_statement
from tandem.medications.plans import create_titration
from tandem.medications.side_effects import record_side_effect
from tandem.medications.storage import (
    DosePlanRow,
    MedicationAdministrationRow,
    MedicationStatementRow,
    SideEffectRow,
)
from tandem.patients.service import get_patient
from tandem.recovery.scales_responses import save_response
from tandem.settings import Settings
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import AuditEntry, Episode, Patient, User
from tandem.storage.registry import full_metadata
from tandem.web.app import STATIC, create_app
from tandem.withdrawal import assessments
from tandem.withdrawal.storage import AssessmentRow, ObservationRow
from tests.conftest import PostgresClones, World, once_per_run, sqlite_checkpoint
from tests.postgres_schemas import SchemaCloner, Statement
from tests.withdrawal.helpers import admit_to_detox, ciwa_answers

# The patient every path parameter points at (program A), as the answers would show them.
NAME, MRN = "Rivera", "ALP-1"

# Reachable without signing in: the sign-in page, static files, the health check, the FHIR
# capability statement, "Ask a counselor" with its private links, the education library, and
# SMART discovery and the token endpoints (where an app proves who it is, not a person).
# Nothing else.
PUBLIC = frozenset(
    {
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/ask"),
        ("POST", "/ask"),
        ("GET", "/ask/t/{token}"),
        ("GET", "/static/{path}"),
        ("GET", "/healthz"),
        ("GET", "/fhir/metadata"),
        ("GET", "/learn"),  # the education library: no patient data
        ("GET", "/learn/{slug}"),
        ("GET", "/.well-known/smart-configuration"),
        ("GET", "/fhir/.well-known/smart-configuration"),
        ("POST", "/oauth/token"),
        ("POST", "/oauth/revoke"),
        ("GET", "/oauth/jwks"),
        ("GET", "/oauth/smart-style.json"),  # colours for apps (smart_style_url)
        ("POST", "/oauth/introspect"),
    }
)

# Tables that record who is asking (sessions, tokens, sign-in attempts, the audit trail, job
# runs) rather than what they changed: a refused write may add to these, never to the others.
BOOKKEEPING = frozenset(
    {
        "web_sessions",
        "api_tokens",
        "login_attempts",
        "known_devices",
        "anonymous_refusals",
        "counseling_ask_counts",
        "audit_entries",
        "audit_entry_patients",
        "audit_chain",
        "scheduled_jobs",
        "smart_codes",
        "smart_tokens",
        "smart_assertions",
        "smart_signing_keys",
    }
)

FHIR_WRITE = {"POST": Permission.CREATE, "PUT": Permission.UPDATE}


# --- the routes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    method: str
    path: str  # the route's template, e.g. /patients/{patient_id}/edit
    params: tuple[str, ...]
    module: str  # the module of the route's function
    query: tuple[str, ...] = ()  # the query parameters the route's function declares

    @property
    def fhir(self) -> bool:
        return self.path.startswith("/fhir/")

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    @property
    def fhir_type(self) -> str:
        return self.path.split("/")[2] if self.fhir else ""

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def app_routes() -> list[Probe]:
    """Every method of every route of the app (routers included, with their prefixes), and
    every mounted directory."""
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    probes = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, Mount):
            probes.append(Probe("GET", f"{context.path}/{{path}}", ("path",), "mount"))
        elif isinstance(route, APIRoute):
            path = str(context.path)
            params = tuple(re.findall(r"{(\w+)(?::\w+)?}", path))
            query = tuple(q.name for q in route.dependant.query_params)
            for method in sorted((context.methods or set()) - {"HEAD", "OPTIONS"}):
                probes.append(Probe(method, path, params, route.endpoint.__module__, query))
        else:
            raise AssertionError(f"a route of a kind this matrix does not know: {route!r}")
    return probes


ROUTES = app_routes()


# --- the callers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    name: str
    kind: str  # anonymous | session | token
    actor: Actor | None = None
    user_id: int = 0
    token: str = ""
    cookie: str = ""
    csrf: str = ""


# Users of the world (tests/conftest.py) and the ones added here, by the name used in reports.
SESSION_USERS = (
    "admin",
    "prescriber",
    "nurse",
    "counselor",
    "researcher",
    "patient",
    "patient2",
    "admin_b",
    "prescriber_b",
    "nurse_b",
    "counselor_b",
    "researcher_b",
    "patient_b",
)
EXTRA_USERS = (  # name, role, program ("b": program B), own patient
    ("admin_b", "admin", "b", None),
    ("counselor_b", "counselor", "b", None),
    ("researcher_b", "researcher", "b", None),
    ("patient_b", "patient", "b", "patient_b"),
    ("target", "nurse", "a", None),  # the user /users/{user_id} is about: no caller
)
NARROW = ("nurse_narrow", "nurse", "user/Observation.rs")


@dataclass
class Matrix:
    client: TestClient
    engine: Engine
    sessions: sessionmaker[Session]
    world: World
    fills: dict[str, str]
    callers: dict[str, Caller]
    counted: list[str]

    @property
    def patient(self) -> PatientRef:
        return PatientRef(self.world.patient_a, self.world.program_a)

    def fresh_session(self, caller: Caller) -> Caller:
        """A new browser session for a form post, so that a post that ends sessions (sign-out,
        a change to an account) leaves the caller's other requests unaffected."""
        with session_scope(self.sessions) as db:
            user = db.get(User, caller.user_id)
            assert user is not None
            cookie, web_session = start_session(db, user, "testclient", utcnow())
            csrf = web_session.csrf_token
        return replace(caller, cookie=cookie, csrf=csrf)

    def rows(self) -> dict[str, int]:
        """Rows in every table but the bookkeeping ones, in one query."""
        tables = full_metadata().tables
        query = union_all(
            *(
                select(literal(name).label("t"), func.count().label("n")).select_from(tables[name])
                for name in self.counted
            )
        )
        with self.engine.connect() as conn:
            return {str(t): int(n) for t, n in conn.execute(query)}


def _seed(sessions: sessionmaker[Session], world: World) -> dict[str, str]:
    """Records of every kind for patient A (an open detox episode, a CIWA-Ar assessment with its
    observations and alerts, a dose plan with a dose given, a dose reported and a side effect),
    the extra users; and the value of every path parameter."""
    now = utcnow()
    episode_id = admit_to_detox(sessions, world, world.patient_a)
    with session_scope(sessions) as db:
        programs = {"a": world.program_a, "b": world.program_b}
        patients = {"patient_b": world.patient_b}
        for name, role, program, own in EXTRA_USERS:
            world.passwords[name] = f"pw-{name}-0123456789"
            accounts.create_user(
                db,
                world.email(name),
                name.replace("_", " ").title(),
                role,
                world.passwords[name],
                [programs[program]],
                patients.get(own or ""),
            )
    with session_scope(sessions) as db:
        nurse = Access(
            actor_for(db.scalars(select(User).where(User.email == world.email("nurse"))).one()),
            Origin(channel="web"),
            db,
            sessions,
        )
        assessments.save_assessment(
            nurse, world.patient_a, "ciwa_ar", ciwa_answers(22), now - timedelta(minutes=10)
        )
        save_response(  # a self-report scale (recovery), so its search has something to show
            nurse, world.patient_a, "phq9", {i.id: 1 for i in get_instrument("phq9").items}
        )
    with session_scope(sessions) as db:
        prescriber = Access(
            actor_for(
                db.scalars(select(User).where(User.email == world.email("prescriber"))).one()
            ),
            Origin(channel="web"),
            db,
            sessions,
        )
        plan = create_titration(
            prescriber,
            world.patient_a,
            "baclofen",
            start="5mg-tid",
            step_mg=5,
            every_days=3,
            target="20mg-tid",
            start_date=program_today("America/New_York", now) - timedelta(days=1),
            now=now,
        )
        doses = plan_view(prescriber, get_patient(prescriber, world.patient_a), plan, now).doses
        record_statement(
            prescriber,
            world.patient_a,
            plan.id,
            due_at=doses[0].planned.due_at,
            taken=True,
            now=now,
        )
        record_administration(
            prescriber,
            world.patient_a,
            plan.id,
            due_at=doses[1].planned.due_at,
            given=True,
            administered_at=doses[1].planned.due_at,
            now=now,
        )
        record_side_effect(
            prescriber,
            world.patient_a,
            medication_id="baclofen",
            effect="drowsiness",
            severity="mild",
            onset_at=now - timedelta(hours=3),
            plan_id=plan.id,
            now=now,
        )
        # A consent naming someone outside Tandem (never program B: its callers stay outsiders).
        consent = record_consent(
            prescriber,
            world.patient_a,
            ConsentInput(
                recipient_name="Dr Lee's clinic",
                purpose="TREAT",
                information=("all",),
                expiry_event="the end of treatment",
                signed_on=program_today("America/New_York", now),
                signed_by="Ana Rivera",
            ),
            now,
        )
    care_plan_id, session_id = _seed_recovery(sessions, world)
    with session_scope(sessions) as db:
        patient = Access(
            actor_for(db.scalars(select(User).where(User.email == world.email("patient"))).one()),
            Origin(channel="web"),
            db,
            sessions,
        )
        tomorrow = (now + timedelta(days=1)).date().isoformat()
        callback = questions.ask_as_patient(
            patient,
            world.patient_a,
            AskForm(
                kind="callback",
                question="Please call me about my plan",
                phone="555 0100",
                callback_date=tomorrow,
                callback_from="10:00",
                callback_to="12:00",
            ),
            now,
        ).question
        visitor = questions.ask_as_visitor(
            db, sessions, Origin(), world.program_a, AskForm(question="A visitor asks"), now
        )
        db.flush()
        question_fills = {
            "question_id": str(callback.id),
            "communication_request_id": str(callback.id),
            "token": str(visitor.token),
        }
    smart_apps = {}
    with session_scope(sessions) as db:
        for name in ("launched", "disabled"):  # one to launch, one for the page that disables one
            smart_apps[name] = smart.register_app(
                db,
                name=f"Matrix {name} app",
                kind="public",
                program_id=world.program_a,
                now=now,
                created_by=None,
                redirect_uris="https://app.example/callback",
            ).client
            db.flush()
            smart_apps[name] = (smart_apps[name].id, smart_apps[name].client_id)
    with sessions() as db:

        def first(column, owner) -> str:  # type: ignore[no-untyped-def]
            found = db.scalars(select(column).where(owner == world.patient_a)).first()
            assert found is not None, f"the world has no {column} for patient A"
            return str(found)

        fills = {
            "patient_id": world.patient_a,
            "version_id": "1",
            "episode_id": str(episode_id),
            "plan_id": str(plan.id),
            "request_id": str(plan.id),
            "response_id": first(AssessmentRow.id, AssessmentRow.patient_id),
            "observation_id": first(ObservationRow.id, ObservationRow.patient_id),
            "alert_id": first(Alert.id, Alert.patient_id),
            "administration_id": first(
                MedicationAdministrationRow.id, MedicationAdministrationRow.patient_id
            ),
            "statement_id": first(MedicationStatementRow.id, MedicationStatementRow.patient_id),
            "event_id": first(SideEffectRow.id, SideEffectRow.patient_id),
            "consent_id": str(consent.id),
            "entry_id": first(AuditEntry.id, AuditEntry.patient_id),
            "user_id": str(
                db.scalars(select(User.id).where(User.email == world.email("target"))).one()
            ),
            "care_plan_id": str(care_plan_id),
            "appointment_id": str(session_id),
            "encounter_id": str(session_id),
            "session_id": str(session_id),
            "program_id": str(world.program_a),
            "app_id": str(smart_apps["disabled"][0]),
            # A SMART app of program A asking a signed-in person for access (GET /oauth/authorize).
            "smart_client_id": smart_apps["launched"][1],
            "smart_redirect_uri": "https://app.example/callback",
            "smart_response_type": "code",
            "smart_scope": "launch/patient user/*.rs patient/*.rs",
            "smart_state": "matrix",
            "smart_aud": "https://testserver/fhir",
            "smart_code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "smart_code_challenge_method": "S256",
            "unit_id": str(world.unit_a_detox),
            "medication_id": "baclofen",
            "knowledge_id": "baclofen",
            "questionnaire_id": "ciwa-ar",
            "instrument_id": "ciwa_ar",
            "slug": "what-detox-is-like",
            "scale_id": "phq9",
            "path": sorted(p.name for p in STATIC.iterdir() if p.is_file())[0],
            "communication_id": first(MessageRow.id, MessageRow.patient_id),
            **question_fills,
        }
        assert db.get(Episode, episode_id) is not None and db.get(DosePlanRow, plan.id)
    return fills


def _seed_recovery(sessions: sessionmaker[Session], world: World) -> tuple[int, int]:
    """Patient A's rehab program: a care plan and a session attended (an Appointment that is
    also an Encounter)."""
    from tandem.recovery.care_plans import PlannedService, create_care_plan
    from tandem.recovery.storage import TherapySessionRow

    now = utcnow()
    with session_scope(sessions) as db:
        nurse = Access(
            actor_for(db.scalars(select(User).where(User.email == world.email("nurse"))).one()),
            Origin(channel="web"),
            db,
            sessions,
        )
        plan = create_care_plan(
            nurse,
            world.patient_a,
            counselor_id=None,
            substances=["alcohol"],
            planned=[PlannedService("group_therapy", "weekly")],
            started_on=program_today("America/New_York", now) - timedelta(days=7),
            now=now,
        )
        held = TherapySessionRow(
            patient_id=world.patient_a,
            program_id=world.program_a,
            care_plan_id=plan.id,
            service="group_therapy",
            starts_at=now - timedelta(days=1),
            minutes=90,
            status="attended",
            status_at=now,
            created_at=now - timedelta(days=3),
        )
        db.add(held)
        db.flush()
        return plan.id, held.id


# Query parameters that name a record, filled like path parameters when a route declares them
# (the form to give an as-needed dose answers one assessment).
QUERY_FILLS = {
    "assessment": "response_id",
    **{
        name: f"smart_{name}"
        for name in (
            "client_id",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "aud",
            "code_challenge",
            "code_challenge_method",
        )
    },
}

# What each path parameter names: a record of patient A, something of program A, or neither.
PATIENT_BOUND = frozenset(
    {
        "patient_id",
        "version_id",
        "episode_id",
        "plan_id",
        "request_id",
        "response_id",
        "observation_id",
        "alert_id",
        "administration_id",
        "statement_id",
        "event_id",
        "care_plan_id",
        "appointment_id",
        "encounter_id",
        "session_id",
        "question_id",
        "communication_id",
        "communication_request_id",
        "consent_id",
    }
)
PROGRAM_BOUND = frozenset({"entry_id", "user_id", "program_id", "unit_id", "app_id"})
# Reference data, and a visitor's private link (public: the link is the secret).
NEUTRAL = frozenset(
    {
        "medication_id",
        "knowledge_id",
        "questionnaire_id",
        "instrument_id",
        "scale_id",
        "path",
        "slug",
        "token",
    }
)


def _callers(sessions: sessionmaker[Session], world: World) -> dict[str, Caller]:
    callers = {"anonymous": Caller("anonymous", "anonymous")}
    now = utcnow()
    with session_scope(sessions) as db:
        for name in SESSION_USERS:
            user = db.scalars(select(User).where(User.email == world.email(name))).one()
            cookie, web_session = start_session(db, user, "testclient", now)
            callers[f"session:{name}"] = Caller(
                f"session:{name}",
                "session",
                actor_for(user),
                user.id,
                cookie=cookie,
                csrf=web_session.csrf_token,
            )
            scopes = "patient/*.rs" if user.role == "patient" else "user/*.cruds"
            secret, _ = create_token(db, user, [scopes], "matrix", now)
            callers[f"token:{name}"] = Caller(
                f"token:{name}", "token", actor_for(user, scopes), user.id, token=secret
            )
        name, email_of, scope = NARROW
        user = db.scalars(select(User).where(User.email == world.email(email_of))).one()
        secret, _ = create_token(db, user, [scope], "matrix narrow", now)
        callers[f"token:{name}"] = Caller(
            f"token:{name}", "token", actor_for(user, scope), user.id, token=secret
        )
    return callers


Seeded = tuple[World, dict[str, str], dict[str, Caller]]


def _seeded(engine: Engine, built: World) -> Seeded:
    """Seed the world in `engine`'s database with the matrix's records and callers."""
    world = World(**{**built.__dict__, "passwords": dict(built.passwords)})
    sessions = make_sessionmaker(engine)
    fills = _seed(sessions, world)
    return world, fills, _callers(sessions, world)


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    """The world (tests/conftest.py) with records of every kind, one app and its callers, for
    all the routes. The seeding is done once per run and engine (a SQLite file; a recorded
    PostgreSQL step): each test process that runs cells gets a copy of its own, so the cells
    spread over every pytest-xdist worker without seeding again."""
    release: Callable[[], None] = lambda: None  # noqa: E731
    if request.param == "sqlite":
        template, built = request.getfixturevalue("sqlite_world_template")

        def seed_sqlite(directory: Path) -> tuple[Path, Seeded]:
            path = directory / "matrix.db"
            shutil.copy(template, path)
            engine = make_engine(f"sqlite:///{path}")
            seeded = _seeded(engine, built)
            sqlite_checkpoint(engine)
            return path, seeded

        seeded_file, (world, fills, callers) = once_per_run(
            tmp_path_factory, "matrix-sqlite", seed_sqlite
        )
        path = tmp_path_factory.mktemp("matrix") / "tandem.db"
        shutil.copy(seeded_file, path)
        url = f"sqlite:///{path}"
    else:
        postgres: PostgresClones = request.getfixturevalue("postgres_schemas")
        cloner = postgres.cloner

        def seed_postgres(_: Path) -> tuple[list[Statement], Seeded]:
            recorder = SchemaCloner(cloner.server_url)
            recorder.recordings = dict(cloner.recordings)
            try:
                seeded = recorder.record_on(
                    ("migrations", "world"),
                    "matrix",
                    lambda engine: _seeded(engine, postgres.world),
                    make_engine,
                )
            finally:
                recorder.close()
            return recorder.recordings["matrix"], seeded  # type: ignore[return-value]

        steps, (world, fills, callers) = once_per_run(
            tmp_path_factory, "matrix-postgres", seed_postgres
        )
        cloner.recordings["matrix"] = steps
        schema = cloner.checkout("migrations", "world", "matrix")
        url = cloner.url(schema)
        release = lambda: cloner.checkin(schema, "migrations", "world", "matrix")  # noqa: E731
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    settings = Settings(
        database_url=url, cookie_secure=True, session_idle_minutes=240, login_slowdown_ms=0
    )
    app = create_app(settings)
    counted = [t.name for t in full_metadata().sorted_tables if t.name not in BOOKKEEPING]
    try:
        with TestClient(
            app,
            base_url="https://testserver",
            follow_redirects=False,
            raise_server_exceptions=False,
        ) as client:
            yield Matrix(client, engine, sessions, world, fills, callers, counted)
    finally:
        app.state.engine.dispose()
        engine.dispose()
        release()


# --- what the policy says ---------------------------------------------------------------------


def _searches_by_patient() -> frozenset[str]:
    return frozenset(
        support.type
        for support in domains.fhir_resources()
        if any(p.name == "patient" for p in support.search_params)
    )


SEARCH_BY_PATIENT = _searches_by_patient()


def _bound(probe: Probe) -> str:
    """What the request names: "patient" (a record of patient A), "program" (program A), or ""."""
    if any(p in PATIENT_BOUND for p in probe.params):
        return "patient"
    if any(p in PROGRAM_BOUND for p in probe.params):
        return "program"
    if probe.fhir and probe.method in ("GET", "POST") and not probe.params:
        if probe.fhir_type in SEARCH_BY_PATIENT or probe.method == "POST":
            # Searches name the patient (?patient=); creates name them as their subject. The
            # Patient resource itself takes neither.
            return "" if probe.fhir_type == "Patient" else "patient"
    return ""


def _must_refuse(m: Matrix, probe: Probe, caller: Caller) -> str:
    """Why `caller` must not reach `probe` (an empty string: the policy does not forbid it)."""
    route = (probe.method, probe.path)
    if route in PUBLIC:
        return ""
    if caller.actor is None:
        return "anonymous callers reach only the public routes"
    actor = caller.actor
    if caller.kind == "token" and not probe.fhir:
        return "pages are for browser sessions, not API tokens"
    if caller.kind == "session" and probe.fhir and probe.writes:
        return "a browser session does not write through the API"
    bound = _bound(probe)
    decision = Decision(True, "")
    outsider = m.world.program_a not in actor.program_ids and not actor.system_admin
    if bound == "patient":
        if outsider:
            return "a member of another program"
        if actor.patient_id is not None and actor.patient_id != m.world.patient_a:
            return "another patient"
        if probe.fhir:
            permission = FHIR_WRITE.get(
                probe.method,
                Permission.READ
                if probe.params or probe.fhir_type == "Patient"
                else Permission.SEARCH,
            )
            decision = decide(actor, permission, probe.fhir_type, m.patient)
        else:
            decision = decide(actor, Permission.READ, "Patient", m.patient)
    elif bound == "program" and outsider:
        return "a member of another program"
    if decision and probe.module == "tandem.web.admin_pages":
        decision = may_administer(actor)
        if (probe.method, probe.path) == ("POST", "/admin/programs"):
            decision = may_create_program(actor)
    if decision and probe.fhir_type == "AuditEvent":
        decision = may_read_audit(actor)
    return "" if decision else f"the policy says: {decision.reason}"


def _may_see_patient(m: Matrix, caller: Caller) -> bool:
    """May the caller's role, in their programs, read patient A's chart (whatever the token)?"""
    if caller.actor is None:
        return False
    return bool(decide(replace(caller.actor, scopes=None), Permission.READ, "Patient", m.patient))


# --- the requests -----------------------------------------------------------------------------


def _callers_for(m: Matrix, probe: Probe) -> list[Caller]:
    everyone = list(m.callers.values())
    if probe.fhir:
        if probe.writes:  # sessions may not write through the API: one is enough to show it
            return [c for c in everyone if c.kind != "session" or c.name == "session:nurse"]
        return everyone
    # Pages: every session, and one token (tokens open no page).
    return [c for c in everyone if c.kind != "token" or c.name == "token:nurse"]


def unfilled(probe: Probe, fills: dict[str, str]) -> str:
    """Why `probe` cannot be filled with a real record ("" when it can)."""
    missing = [
        p
        for p in probe.params
        if p not in fills or p not in PATIENT_BOUND | PROGRAM_BOUND | NEUTRAL
    ]
    if not missing:
        return ""
    return (
        f"route {probe} has path parameter(s) {', '.join(missing)} with no fill rule: add a "
        "real record of patient A (or program A) for each to _seed() and name what it is "
        "(PATIENT_BOUND, PROGRAM_BOUND or NEUTRAL) in tests/access/test_authorization_matrix.py"
    )


def _send(m: Matrix, probe: Probe, caller: Caller) -> Response:
    problem = unfilled(probe, m.fills)
    if problem:
        pytest.fail(problem)
    url = probe.path.format(**{p: m.fills[p] for p in probe.params})
    headers: dict[str, str] = {}
    if caller.kind == "session":
        if probe.writes and not probe.fhir:
            caller = m.fresh_session(caller)
        headers["Cookie"] = f"tandem_session={caller.cookie}"
    elif caller.kind == "token":
        headers["Authorization"] = f"Bearer {caller.token}"
    m.client.cookies.clear()  # only the caller's own credentials
    if not probe.writes:
        params = {
            q: m.fills[QUERY_FILLS[q]]
            for q in probe.query
            # The SMART authorization request's parameters, for the OAuth routes only (other
            # routes have a `scope` or `state` of their own).
            if q in QUERY_FILLS
            and (probe.path.startswith("/oauth/") or not QUERY_FILLS[q].startswith("smart_"))
        }
        params.update(
            {"patient": m.world.patient_a}
            if _bound(probe) == "patient" and not probe.params
            else {}
        )
        return m.client.get(url, params=params, headers=headers)
    if probe.fhir:
        body: dict[str, object] = {"resourceType": probe.fhir_type}
        if "patient_id" in probe.params:
            body["id"] = m.world.patient_a
        elif probe.fhir_type != "Patient":
            body["subject"] = {"reference": f"Patient/{m.world.patient_a}"}
        headers["Content-Type"] = "application/fhir+json"
        return m.client.request(probe.method, url, content=json.dumps(body), headers=headers)
    data = {"csrf_token": caller.csrf} if caller.kind == "session" else {}
    return m.client.request(probe.method, url, data=data, headers=headers)


def _reached(response: Response) -> bool:
    """Answered with what was asked (2xx, and for a search at least one entry), or a form post
    went through (a redirect anywhere but to the sign-in page). A search naming a patient out of
    reach is refused on most resource types; an empty searchset shows nothing of them either."""
    if 200 <= response.status_code < 300:
        if "json" in response.headers.get("content-type", ""):
            body = response.json()
            if isinstance(body, dict) and body.get("type") == "searchset":
                return bool(body.get("entry"))
        return True
    location = response.headers.get("location", "")
    return 300 <= response.status_code < 400 and not location.split("?")[0].endswith("/login")


def _cells() -> list[Any]:
    """Every route; a form post of a page runs on SQLite only (`one_engine`): its refusal is
    the policy's, decided before anything is written, and the same data-access layer's reads
    and searches, and every FHIR and OAuth route, run on both engines."""
    return [
        pytest.param(p, marks=pytest.mark.one_engine)
        if p.writes and not p.fhir and not p.path.startswith("/oauth/")
        else p
        for p in ROUTES
    ]


@pytest.mark.parametrize("probe", _cells(), ids=str)
def test_every_route_answers_every_caller_as_the_policy_says(matrix: Matrix, probe: Probe) -> None:
    m = matrix
    problems: list[str] = []
    reached_by: list[str] = []
    for caller in _callers_for(m, probe):
        before = m.rows() if probe.writes else {}
        response = _send(m, probe, caller)
        said = f"{caller.name}: {response.status_code} {response.text[:200]!r}"
        if response.status_code >= 500:
            problems.append(f"{said} (a 5xx)")
            continue
        reached = _reached(response)
        if reached:
            reached_by.append(caller.name)
        refuse = _must_refuse(m, probe, caller)
        if reached and refuse:
            problems.append(f"{said}, but must be refused: {refuse}")
        if not _may_see_patient(m, caller) and (NAME in response.text or MRN in response.text):
            problems.append(f"{said}: shows patient A's name or MRN to someone who may not see it")
        if probe.writes and not reached:
            after = m.rows()
            changed = {t: (before[t], after[t]) for t in before if before[t] != after[t]}
            if changed:
                problems.append(f"{said}: refused, yet rows changed {changed}")
    if probe.writes:  # the names the matrix looks for are still there for the routes that follow
        with m.sessions() as db:
            patient = db.get(Patient, m.world.patient_a)
            assert patient is not None and patient.family == NAME, f"{probe} changed patient A"
            assert MRN in {i.value for i in patient.identifiers}, f"{probe} changed patient A"
    if not probe.writes and not reached_by:
        problems.append(
            "nobody reached this route: its path parameters do not name a real record "
            f"({ {p: m.fills.get(p) for p in probe.params} })"
        )
    assert not problems, f"{probe}:\n" + "\n".join(problems)


def test_the_matrix_covers_every_kind_of_route() -> None:
    """The routes were read from the app: pages, forms, the FHIR API, static files."""
    kinds = {(p.fhir, p.method) for p in ROUTES}
    assert {(True, "GET"), (True, "POST"), (True, "PUT"), (False, "GET"), (False, "POST")} <= kinds
    assert any(p.module == "mount" for p in ROUTES)
    assert len(ROUTES) > 60
    assert set(PUBLIC) <= {(p.method, p.path) for p in ROUTES}


def test_a_new_route_without_a_fill_rule_fails_naming_it() -> None:
    fills = {"patient_id": "p", "thing_id": "1"}
    assert unfilled(Probe("GET", "/fhir/Patient/{patient_id}", ("patient_id",), "x"), fills) == ""
    for params in (("carepath_id",), ("thing_id",)):  # no value; a value but not classified
        problem = unfilled(Probe("POST", "/carepaths/{x}", params, "x"), fills)
        assert problem.startswith(f"route POST /carepaths/{{x}} has path parameter(s) {params[0]}")
