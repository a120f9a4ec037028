"""Shared end-to-end fixtures: Debian's Chromium driven by Playwright against Django's live server.

Every test in ``tests/e2e`` is marked ``e2e`` and runs against pytest-django's ``live_server``
(a real HTTP server in a thread of the test process, on the test database). Typical use::

    def test_something(live_server, web_user, logged_in_page, screenshot):
        user = web_user(username="drhouse", can_upload=True)
        page = logged_in_page(user)                 # desktop size; viewport=PHONE for a phone
        page.goto(live_server.url + "/studies/")
        screenshot(page, "query-desktop")

Browsers are never downloaded: ``/usr/bin/chromium`` only (``tests.tools.require_tool`` makes a
missing Chromium fail under ``PACSWEB_REQUIRE_TOOLS=1`` and skip otherwise).
"""

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tools import CHROMIUM, CHROMIUM_ARGS, require_tool

# Playwright's synchronous API runs an asyncio loop in the test's thread; the ORM calls that tests
# make between browser steps are still plain synchronous code, so Django's guard does not apply.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

DESKTOP = {"width": 1366, "height": 900}
PHONE = {"width": 390, "height": 844}
DEFAULT_PASSWORD = "Correct-Horse-42"
# Generous enough for a loaded 2-core machine, short enough that a broken page fails quickly.
TIMEOUT_MS = 15_000

E2E_DIR = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if E2E_DIR in Path(item.fspath).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One Chromium for the whole run (launching it is the slow part); pages are per test."""
    require_tool(CHROMIUM)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def new_page(browser) -> Iterator[Callable]:
    """``new_page(viewport=DESKTOP)``: a page in a fresh browser context (own cookies)."""
    contexts = []

    def make(*, viewport: dict = DESKTOP, **context_args):
        context = browser.new_context(viewport=viewport, **context_args)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def web_user(transactional_db, django_user_model) -> Callable:
    """``web_user(username="drhouse", can_upload=False, ...)``: an active, non-staff web user.

    The password is ``DEFAULT_PASSWORD`` unless given.
    """

    def make(*, username: str = "physician", password: str = DEFAULT_PASSWORD, **fields: object):
        fields.setdefault("real_name", "Dr. " + username.title())
        user = django_user_model.objects.create_user(username=username, **fields)
        user.set_password(password)
        user.save(update_fields=["password"])
        user.plain_password = password
        return user

    return make


def log_in(page, base_url: str, username: str, password: str) -> None:
    """Log in through the real login form and wait until the app has left the login page."""
    page.goto(base_url + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"^(?!.*/login/).*$"))


@pytest.fixture
def logged_in_page(live_server, new_page) -> Callable:
    """``logged_in_page(user, viewport=DESKTOP)``: a page whose session belongs to ``user``."""

    def make(user, *, viewport: dict = DESKTOP, password: str | None = None):
        page = new_page(viewport=viewport)
        log_in(page, live_server.url, user.username, password or user.plain_password)
        return page

    return make


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``PACSWEB_SCREENSHOT_DIR`` if set, else the run's temporary folder."""
    configured = os.environ.get("PACSWEB_SCREENSHOT_DIR")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def screenshot(screenshot_dir: Path) -> Callable:
    """``screenshot(page, "query-phone")``: a full-page PNG, returned as its path."""

    def take(page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
