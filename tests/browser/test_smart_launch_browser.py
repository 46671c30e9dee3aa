"""A nurse opens an app from a patient's chart in Chromium (SMART EHR launch): Launch opens a
new tab at the app's launch address with `iss` and `launch` (the chart's Content-Security-Policy
lets its form lead there), the app asks with that launch, the consent page names the patient,
and Allow returns a code to the app."""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select

from tandem.access import smart
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import Patient, Program
from tests.browser.conftest import LiveServer, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

APP = "https://launch-app.example/callback"
LAUNCH = "https://launch-app.example/launch"


def _register(server: LiveServer) -> tuple[str, str, str]:
    """The app's client id, and a patient of its program (id, name on the chart)."""
    engine = make_engine(server.database_url)
    with session_scope(make_sessionmaker(engine)) as db:
        program = db.scalar(select(Program).where(Program.code == "riverside"))
        assert program is not None
        done = smart.register_app(
            db,
            name="Craving Coach",
            kind="public",
            program_id=program.id,
            now=utcnow(),
            created_by=None,
            redirect_uris=APP,
            launch_url=LAUNCH,
        )
        patient = db.scalars(
            select(Patient)
            .where(Patient.program_id == program.id, Patient.active)
            .order_by(Patient.id)
        ).first()
        assert patient is not None
        found = (done.client.client_id, patient.id, patient.display_name)
    engine.dispose()
    return found


def test_a_nurse_opens_an_app_from_the_chart(browser, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    arrived: list[str] = []

    def app_answers(route) -> None:  # type: ignore[no-untyped-def]
        arrived.append(route.request.url)
        route.fulfill(status=200, body="the app", content_type="text/plain")

    context.route("https://launch-app.example/**", app_answers)
    try:
        client_id, patient_id, name = _register(live_server)
        sign_in(page, live_server, "nurse")
        page.goto(f"{live_server.url}/patients/{patient_id}")
        with page.expect_popup() as opened:
            page.get_by_role("button", name="Launch Craving Coach").click()
        app_tab = opened.value
        app_tab.wait_for_url(re.compile(r"^https://launch-app\.example/launch"))
        sent = parse_qs(urlsplit(arrived[-1]).query)
        assert sent["iss"] == [f"{live_server.url}/fhir"] and sent["launch"][0]

        # The app, in its tab, asks Tandem for access with the launch it was given.
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": APP,
            "scope": "launch patient/*.rs",
            "state": "launch-state",
            "aud": sent["iss"][0],
            "launch": sent["launch"][0],
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        app_tab.goto(f"{live_server.url}/oauth/authorize?{urlencode(params)}")
        app_tab.get_by_role("heading", name=re.compile("Allow Craving Coach")).wait_for()
        assert app_tab.locator("[data-launched-for]").inner_text().startswith(f"For {name}")
        assert app_tab.locator("input[name=patient]").count() == 0  # the chart said whom
        screenshot(app_tab, "smart-ehr-launch-consent")
        app_tab.get_by_role("button", name="Allow").click()
        app_tab.wait_for_url(re.compile(r"^https://launch-app\.example/callback"))
        back = parse_qs(urlsplit(arrived[-1]).query)
        assert back["state"] == ["launch-state"] and back["code"][0]
        answer = app_tab.request.post(
            f"{live_server.url}/oauth/token",
            form={
                "grant_type": "authorization_code",
                "code": back["code"][0],
                "redirect_uri": APP,
                "code_verifier": verifier,
                "client_id": client_id,
            },
        )
        assert answer.ok and answer.json()["patient"] == patient_id
    finally:
        context.close()
