"""The floor: the least the chosen stack (uvicorn + FastAPI + SQLAlchemy Core) can do for one
audited FHIR read, served the way `tandem serve` serves Tandem. bench/floor.py drives it.

Three apps, each a rung down from Tandem:

- `asgi`: a bare ASGI callable answering a fixed JSON body (uvicorn's HTTP handling alone);
- `fastapi`: FastAPI, an `async def` route answering the same body (routing, the framework);
- `audited`: FastAPI, a plain `def` route run in the thread pool as Tandem's are, that does
  what every Tandem read must: look the bearer token up (token joined with its user), read the
  patient with their program checked, insert the audit row and commit durably, and answer a
  hand-built JSON Patient. No ORM objects, no policy module, no FHIR models.

The database comes from TANDEM_DATABASE_URL (bench/floor.py loads it as bench/api.py does).
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import Response
from sqlalchemy import text

from tandem.storage.db import make_engine

BODY = json.dumps({"resourceType": "Patient", "id": "x", "active": True}).encode()
HEADERS = [
    (b"content-type", b"application/fhir+json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


fastapi = FastAPI(openapi_url=None)


@fastapi.get("/fhir/Patient/{patient_id}")
async def fixed(patient_id: str) -> Response:
    return Response(BODY, media_type="application/fhir+json")


@fastapi.get("/healthz")
async def fixed_health() -> Response:
    return Response(b"ok")


audited = FastAPI(openapi_url=None)
_engine = None

TOKEN = text(
    "SELECT api_tokens.user_id, users.email, users.role FROM api_tokens "
    "JOIN users ON users.id = api_tokens.user_id "
    "WHERE api_tokens.token_hash = :digest AND api_tokens.revoked_at IS NULL AND users.active"
)
PROGRAMS = text("SELECT program_id FROM memberships WHERE user_id = :user")
PATIENT = text(
    "SELECT id, program_id, family, given, gender, birth_date, active FROM patients WHERE id = :id"
)
AUDIT = text(
    "INSERT INTO audit_entries (recorded_at, user_id, actor, role, action, operation, "
    "resource_type, resource_id, patient_id, outcome, outcome_detail, source_ip, user_agent, "
    "channel, query) VALUES (:now, :user, :actor, :role, 'R', 'read', 'Patient', :id, :id, '0', "
    "'', :ip, :agent, 'api', '')"
)


def engine() -> Any:
    global _engine
    if _engine is None:
        _engine = make_engine(os.environ["TANDEM_DATABASE_URL"])
    return _engine


@audited.get("/healthz")
async def audited_health() -> Response:
    return Response(b"ok")


@audited.get("/fhir/Patient/{patient_id}")
def read_patient(patient_id: str, request: Request) -> Response:
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    digest = hashlib.sha256(bearer.encode()).hexdigest()
    with engine().begin() as conn:
        who = conn.execute(TOKEN, {"digest": digest}).first()
        if who is None:
            raise HTTPException(401)
        programs = set(conn.execute(PROGRAMS, {"user": who.user_id}).scalars())
        row = conn.execute(PATIENT, {"id": patient_id}).first()
        if row is None or row.program_id not in programs:
            raise HTTPException(404)
        conn.execute(
            AUDIT,
            {
                "now": datetime.now(UTC),
                "user": who.user_id,
                "actor": who.email,
                "role": who.role,
                "id": patient_id,
                "ip": request.client.host if request.client else "",
                "agent": request.headers.get("user-agent", "")[:300],
            },
        )
    body = {
        "resourceType": "Patient",
        "id": row.id,
        "active": bool(row.active),
        "name": [{"family": row.family, "given": row.given.split()}],
        "gender": row.gender,
        "birthDate": str(row.birth_date)[:10],
    }
    return Response(json.dumps(body).encode(), media_type="application/fhir+json")
