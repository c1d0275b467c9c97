"""
Browser tests: Debian's chromium (apt), driven by Playwright, against the
live server.

Never a downloaded browser build: the browser is /usr/bin/chromium, installed
with ``apt-get install chromium`` (``.ci/run`` does it in CI). Without it
these tests fail in CI and skip, with the reason, on a developer machine.

One browser serves every test of this package; each test gets a fresh
context (cookies, storage). The Playwright driver and the
``DJANGO_ALLOW_ASYNC_UNSAFE`` switch live only as long as this package's
tests: Playwright's sync API marks an asyncio loop as running in the main
thread, which would make Django refuse ORM calls in the rest of the suite.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Admin pages render in well under a second; a hung page should fail fast.
TIMEOUT_MS = 10_000


@pytest.fixture(scope="package")
def _async_unsafe_allowed() -> Iterator[None]:
    """Let the ORM run in the main thread while Playwright's loop is marked running."""
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    yield
    if previous is None:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
    else:
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(_async_unsafe_allowed, tmp_path_factory):
    """Debian's chromium, launched once for this package's tests."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        message = (
            f"{CHROMIUM} not found: install Debian's chromium "
            "(apt-get install --no-install-recommends chromium). "
            "Never `playwright install`."
        )
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)

    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # launch() gives chromium a new, empty profile directory of its own
        # (a --user-data-dir argument is refused there), removed on close.
        # Its temporary files go to this run's own directory.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            downloads_path=tmp_path_factory.mktemp("chromium-downloads"),
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser, live_server):
    """A page in a fresh browser context (no cookies), on the live server."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


@pytest.fixture
def login(page) -> Callable[..., None]:
    """Log a user in through the admin's real login form."""
    from playwright.sync_api import expect

    def log_in(username: str, password: str) -> None:
        page.goto("/admin/login/?next=/admin/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page).to_have_url(re.compile(r"/admin/$"))
        expect(page.locator("#user-tools")).to_contain_text(username.upper(), ignore_case=True)

    return log_in


SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"


@pytest.fixture(scope="session")
def _screenshot_dir() -> Path:
    """artifacts/screenshots/ (git-ignored), emptied once per run."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def screenshot(page, request, _screenshot_dir) -> Callable[[str], Path]:
    """Save a full-page screenshot as a test artifact; return its path."""

    def take(name: str) -> Path:
        test = re.sub(r"[^\w.-]+", "_", request.node.name)
        path = _screenshot_dir / f"{test}--{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take
