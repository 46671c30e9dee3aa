"""Every role signs in to a home page of its own, never a refusal (SQLite; their storage and API run
on both engines)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import World, csrf_from
from tests.withdrawal.helpers import admit_to_detox

pytestmark = pytest.mark.one_engine  # a page test: see tests/conftest.py

HEADINGS = {
    "admin": "Administration",
    "prescriber": "Patients",
    "nurse": "Patients",
    "counselor": "Caseload",
    "researcher": "Research",
    "patient": "Today",  # their day: reminders, the check-in, doses, sessions
}


def _land(client, world: World, role: str):  # type: ignore[no-untyped-def]
    login = client.get("/login")
    posted = client.post(
        "/login",
        data={
            "email": world.email(role),
            "password": world.passwords[role],
            "csrf_token": csrf_from(login.text),
        },
    )
    assert posted.status_code == 303
    response = client.get(posted.headers["location"])
    for _ in range(3):
        if response.status_code != 303:
            break
        response = client.get(response.headers["location"])
    return response


@pytest.mark.parametrize("role", list(HEADINGS))
def test_each_role_lands_on_its_own_home_page(client, world: World, role: str) -> None:
    landing = _land(client, world, role)
    assert landing.status_code == 200, landing.text[:500]
    heading = re.search(r"<h1[^>]*>(.*?)</h1>", landing.text, re.S)
    assert heading and HEADINGS[role] in heading.group(1), heading
    # The brand link ("/") leads home too.
    again = client.get("/")
    assert again.status_code == 303
    assert client.get(again.headers["location"]).status_code in (200, 303)


def test_the_research_page_shows_de_identified_counts_only(client, sessions, world: World) -> None:
    admit_to_detox(sessions, world, world.patient_a)
    page = _land(client, world, "researcher")
    assert "Alpha Detox" in page.text
    assert "RIVERA" not in page.text and "ALP-1" not in page.text
    assert "fewer than 11" in page.text  # small counts are not shown exactly
    assert client.get("/patients").status_code == 403  # still no identified records


@pytest.mark.parametrize("role", ["admin", "nurse"])
def test_no_page_carries_an_inline_style(client, world: World, role: str) -> None:
    """The Content-Security-Policy (style-src 'self') blocks inline styles: the app has none."""
    _land(client, world, role)
    paths = ["/patients", f"/patients/{world.patient_a}", "/alerts", "/detox"]
    if role == "admin":
        paths += ["/admin/programs", "/admin/users", "/admin/audit"]
    for path in paths:
        page = client.get(path, follow_redirects=True)
        assert page.status_code == 200, path
        assert 'style="' not in page.text and "<style" not in page.text, path
