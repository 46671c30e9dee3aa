"""An app asking a nurse for access in Chromium: the consent page says what it may do in words,
offers the nurse's patients to choose from, and Allow leads on to the app's address with a code
(the page's Content-Security-Policy lets its form go there). At 375 px and on a desktop."""

from __future__ import annotations

import re
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from sqlalchemy import select

from tandem.access import smart
from tandem.storage.db import make_engine, make_sessionmaker, session_scope, utcnow
from tandem.storage.models import Program
from tests.browser.conftest import SHOTS, LiveServer, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.slow]

APP = "https://app.example/callback"


def _register(server: LiveServer) -> str:
    engine = make_engine(server.database_url)
    with session_scope(make_sessionmaker(engine)) as db:
        program = db.scalar(select(Program).where(Program.code == "riverside"))
        assert program is not None
        done = smart.register_app(
            db,
            name="Recovery Diary",
            kind="public",
            program_id=program.id,
            now=utcnow(),
            created_by=None,
            redirect_uris=APP,
        )
        client_id = done.client.client_id
    engine.dispose()
    return client_id


@pytest.mark.parametrize("width", [375, 1280])
def test_a_nurse_allows_an_app_for_one_patient(
    browser, live_server: LiveServer, width: int
) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    arrived: list[str] = []

    def app_answers(route) -> None:  # type: ignore[no-untyped-def]
        arrived.append(route.request.url)
        route.fulfill(status=200, body="the app")

    page.route("https://app.example/**", app_answers)
    try:
        client_id = _register(live_server)
        sign_in(page, live_server, "nurse")
        verifier = secrets.token_urlsafe(48)
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": APP,
            "scope": "launch/patient patient/*.rs openid",
            "state": "browser-state",
            "aud": f"{live_server.url}/fhir",
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        page.goto(f"{live_server.url}/oauth/authorize?{urlencode(params)}")
        page.get_by_role("heading", name=re.compile("Allow Recovery Diary")).wait_for()
        assert page.get_by_text("Read and search the chosen patient's records").is_visible()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"smart-consent-{width}.png"))
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.get_by_role("button", name="Allow").click()
        page.get_by_text("Choose the patient to open.").wait_for()
        page.locator("input[name=patient]").first.check()
        page.get_by_role("button", name="Allow").click()
        page.wait_for_url(re.compile(r"^https://app\.example/callback"))
        sent = parse_qs(urlsplit(arrived[-1]).query)
        assert sent["state"] == ["browser-state"] and sent["code"][0]
        # The app exchanges its code; the nurse then finds it under Apps, and can stop it.
        page.request.post(
            f"{live_server.url}/oauth/token",
            form={
                "grant_type": "authorization_code",
                "code": sent["code"][0],
                "redirect_uri": APP,
                "code_verifier": verifier,
                "client_id": client_id,
            },
        )
        page.goto(live_server.url + "/account/apps")
        page.get_by_role("heading", name="Recovery Diary").first.wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        page.screenshot(path=str(SHOTS / f"smart-allowed-apps-{width}.png"))
    finally:
        context.close()


def test_an_administrator_registers_an_app(browser, live_server: LiveServer) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    try:
        sign_in(page, live_server, "admin")
        page.goto(live_server.url + "/admin/users")
        page.get_by_role("navigation", name="Administration").get_by_role(
            "link", name="Apps", exact=True
        ).click()
        page.get_by_label("Name people will see").fill("Sleep Tracker")
        page.get_by_label("App people launch, with a client secret").check()
        page.get_by_label(re.compile("Redirect URIs")).fill("https://sleep.example/return")
        page.get_by_role("button", name="Register app").click()
        page.get_by_role("heading", name="Sleep Tracker is registered").wait_for()
        assert page.locator("[data-client-secret]").inner_text().strip()
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "smart-admin-apps-1280.png"))
        page.set_viewport_size({"width": 375, "height": 900})
        page.goto(live_server.url + "/admin/apps")  # the secret is not shown again
        assert page.locator("[data-client-secret]").count() == 0
        page.get_by_role("cell", name=re.compile("Sleep Tracker")).wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(SHOTS / "smart-admin-apps-375.png"))
    finally:
        context.close()
