"""Ids in the address. Every route with an `int` path parameter, read from the app's route table
(a new route is covered the day it is added), given an id that is not one (letters, a negative
number, a number past any id, a NUL, zero) answers 400 with a page naming the parameter and what
it must be; given a well-formed id that names nothing, 404. FHIR routes answer the same with an
OperationOutcome (an id of valid FHIR syntax that names nothing is a 404, as FHIR reads are).
Signed in as someone who may use the route. On SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from tandem.settings import Settings
from tandem.web.app import create_app
from tests.conftest import World, make_token, sign_in


@dataclass(frozen=True)
class IdRoute:
    method: str
    path: str
    ids: tuple[str, ...]  # the int path parameters
    others: tuple[str, ...]  # the other path parameters

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def id_routes() -> list[IdRoute]:
    app = create_app(Settings(database_url="sqlite:///:memory:"))
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        params = route.dependant.path_params
        ids = tuple(p.name for p in params if p.field_info.annotation is int)
        if not ids:
            continue
        others = tuple(p.name for p in params if p.name not in ids)
        for method in sorted((context.methods or set()) - {"HEAD", "OPTIONS"}):
            found.append(IdRoute(method, str(context.path), ids, others))
    return found


ROUTES = id_routes()

# What fills the other path parameters of these routes: add a rule with a new parameter.
FILLS = {"patient_id": lambda world: world.patient_a}

MALFORMED = {
    "letters": "abc",
    "negative": "-1",
    "past any id": "99999999999999999999999",
    "a NUL": "%00",
    "zero": "0",
}
NOWHERE = "2000000000"  # well formed, no such row


def test_the_route_table_has_routes_with_ids() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/admin/users/{user_id}", "/detox/units/{unit_id}"} <= paths, paths
    assert any(r.path.startswith("/fhir/") for r in ROUTES), paths


def _caller(client: TestClient, world: World, route: IdRoute, sessions) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Headers and form for someone who may use the route (an administrator for /admin and
    the audit trail, a prescriber for the rest)."""
    if route.path.startswith("/fhir/"):
        token = make_token(sessions, world.email("admin"), "user/*.rs")
        return {"Authorization": f"Bearer {token}"}
    role = "admin" if route.path.startswith("/admin") else "prescriber"
    csrf = sign_in(client, world.email(role), world.passwords[role])
    return {"csrf_token": csrf}


def _ask(client: TestClient, route: IdRoute, path: str, given: dict[str, str]):  # type: ignore[no-untyped-def]
    if route.path.startswith("/fhir/"):
        return client.request(route.method, path, headers=given)
    if route.method == "GET":
        return client.get(path)
    return client.request(route.method, path, data=given)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_an_id_that_is_not_one_is_named_and_one_that_names_nothing_is_404(
    client: TestClient, world: World, sessions, route: IdRoute
) -> None:
    given = _caller(client, world, route, sessions)
    path = route.path
    for name in route.others:
        assert name in FILLS, f"{route}: add a fill rule for {{{name}}} in FILLS"
        path = path.replace(f"{{{name}}}", str(FILLS[name](world)))
    fhir = route.path.startswith("/fhir/")

    for name in route.ids:
        valid_elsewhere = path
        for other in route.ids:
            if other != name:
                valid_elsewhere = valid_elsewhere.replace(f"{{{other}}}", NOWHERE)
        for case, value in MALFORMED.items():
            answer = _ask(client, route, valid_elsewhere.replace(f"{{{name}}}", value), given)
            where = f"{route} with {name} = {case}"
            if fhir:
                body = answer.json()
                assert body["resourceType"] == "OperationOutcome", where
                told = body["issue"][0]["diagnostics"]
                if case == "a NUL":
                    assert answer.status_code == 400 and name in told, (where, told)
                else:  # valid FHIR id syntax: names nothing, as a FHIR read answers
                    assert answer.status_code == 404, (where, answer.status_code, told)
                continue
            assert answer.status_code == 400, (where, answer.status_code, answer.text[:300])
            assert answer.headers["content-type"].startswith("text/html"), where
            assert f"{name} in it" in answer.text, (
                where,
                answer.text[answer.text.find("<main") :][:800],
            )
            expected = "NUL character" if case == "a NUL" else "whole number from 1 to"
            assert expected in answer.text, (where, answer.text[:500])

        answer = _ask(client, route, valid_elsewhere.replace(f"{{{name}}}", NOWHERE), given)
        where = f"{route} with {name} naming nothing"
        assert answer.status_code == 404, (where, answer.status_code, answer.text[:300])
        if fhir:
            assert answer.json()["resourceType"] == "OperationOutcome", where
        else:
            assert answer.headers["content-type"].startswith("text/html"), where
