"""Browser tests: Playwright driving Debian's Chromium against a live Tandem on a demo database."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import once_per_run, sqlite_checkpoint

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@dataclass
class LiveServer:
    url: str
    logins: dict[str, str]  # email -> password
    database_url: str

    def login(self, name: str) -> tuple[str, str]:
        email = f"{name}@demo.tandem.test"
        return email, self.logins[email]


BROWSER_WORKERS = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`), the browser tests run on two workers, a test
    file's tests together (`browser-0`, `browser-1`: files by name, alternately): each worker
    starts one live server on its own copy of one demo database and one Chromium. On one worker
    they were the suite's longest thread, mostly waiting for pages."""
    if not config.pluginmanager.hasplugin("xdist"):
        return
    here = Path(__file__).parent
    files = sorted({item.path for item in items if here in item.path.parents})
    group = {path: f"browser-{n % BROWSER_WORKERS}" for n, path in enumerate(files)}
    for item in items:
        if item.path in group:
            item.add_marker(pytest.mark.xdist_group(group[item.path]))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    import uvicorn

    from tandem import demo
    from tandem.domains import demo_steps
    from tandem.settings import Settings
    from tandem.storage.db import make_engine, make_sessionmaker, session_scope
    from tandem.storage.migrate import upgrade
    from tandem.web.app import create_app

    def build(directory: Path) -> tuple[Path, dict[str, str]]:
        path = directory / "demo.db"
        engine = make_engine(f"sqlite:///{path}")
        upgrade(engine)
        with session_scope(make_sessionmaker(engine)) as db:
            world = demo.build_platform(db, 80, seed=7)
            logins = demo.create_logins(db, world, seed=7)
            for _label, step in demo_steps():
                step(db, world)
        sqlite_checkpoint(engine)
        return path, {login.email: login.password for login in logins}

    # The demo is built once per run; each worker's server gets a copy of its own.
    demo_file, logins = once_per_run(tmp_path_factory, "browser-demo", build)
    path = tmp_path_factory.mktemp("live") / "tandem.db"
    shutil.copy(demo_file, path)
    url = f"sqlite:///{path}"
    port = _free_port()
    config = uvicorn.Config(
        create_app(Settings(database_url=url, cookie_secure=True)),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield LiveServer(f"http://127.0.0.1:{port}", logins, url)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():  # type: ignore[no-untyped-def]
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install -y chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def sign_in(page, server: LiveServer, name: str) -> None:  # type: ignore[no-untyped-def]
    email, password = server.login(name)
    page.goto(server.url + "/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def own_record(page) -> str:  # type: ignore[no-untyped-def]
    """The address of a signed-in patient's own record (they land on their Today page)."""
    href = page.get_by_role("link", name="My record").first.get_attribute("href")
    assert href, "no link to the patient's own record"
    return str(page.url.split("/patients/")[0] + href)


def screenshot(page, name: str, *, full_page: bool = True) -> None:  # type: ignore[no-untyped-def]
    """Save what the page shows to screenshots/<name>.png for people to look at.

    Chromium under load sometimes answers "Unable to capture screenshot" (more often for a
    very tall page). The picture is not what a test asserts, so try the full page, then the
    viewport after the page has settled, and if Chromium still cannot, say so as a warning
    rather than fail the behaviour the test checks."""
    import warnings

    from playwright.sync_api import Error as PlaywrightError

    SHOTS.mkdir(exist_ok=True)
    path = str(SHOTS / f"{name}.png")
    attempts = [full_page, False, False] if full_page else [False, False, False]
    for attempt, whole in enumerate(attempts):
        try:
            page.screenshot(path=path, full_page=whole)
            return
        except PlaywrightError as error:
            last = error
            page.wait_for_timeout(250 * (attempt + 1))
    warnings.warn(f"screenshot {name} not saved: {last.message}", stacklevel=2)
