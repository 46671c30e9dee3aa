"""Schemathesis over the app's own OpenAPI description, which declares every FHIR search
parameter and body: valid and invalid values in paths, queries and bodies, sent by a nurse with
a full token. Whatever is sent, the answer is below 500. On SQLite and PostgreSQL; a bounded
number of examples keeps it to seconds."""

from __future__ import annotations

import json
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tandem.web.app import openapi_schema
from tests.conftest import World, make_token

_NOT_SET = object()


def _strategy(app: Any) -> st.SearchStrategy[Any]:
    schema = schemathesis.openapi.from_dict(openapi_schema(app))
    return st.one_of(
        schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE)
    )


def _query(query: dict[str, Any] | None) -> list[tuple[str, str]]:
    pairs = []
    for name, value in (query or {}).items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(name), "" if item is None else str(item)))
    return pairs


def test_the_declared_api_never_answers_5xx(client, sessions, world: World) -> None:
    token = make_token(sessions, world.email("nurse"), "user/*.cruds")
    seen: dict[str, int] = {}

    @settings(
        max_examples=40,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_strategy(client.app))
    def probe(case: Any) -> None:
        headers = {str(k): str(v) for k, v in (case.headers or {}).items()}
        headers["Authorization"] = f"Bearer {token}"
        body = getattr(case, "body", _NOT_SET)
        content = None
        if case.method.upper() in ("POST", "PUT") and not isinstance(body, type(_NOT_SET)):
            try:
                content = json.dumps(body).encode()
            except (TypeError, ValueError):
                content = str(body).encode()
            headers["Content-Type"] = case.media_type or "application/fhir+json"
        response = client.request(
            case.method,
            case.formatted_path,
            params=_query(case.query),
            headers=headers,
            content=content,
        )
        key = f"{case.method} {case.path}"
        seen[key] = seen.get(key, 0) + 1
        assert response.status_code < 500, (
            case.method,
            case.formatted_path,
            case.query,
            body,
            response.text[:500],
        )

    probe()
    assert len(seen) >= 5, seen  # cases are spread over the operations (which ones: random)
