"""Headless Chromium against the real app under uvicorn, for tests of pages people look at.

The system Chromium (Debian's ``chromium`` package, which ``.ci/run`` installs when it is
missing) is driven by Playwright's async API: the tests run inside pytest-asyncio's session
loop, where the sync API refuses to start. Playwright never downloads a browser here.

Its fixtures (``browser``, ``live_server``, ``page``) reach every test module: tests/conftest.py
loads this module as a plugin.

``live_server`` serves ``create_app(settings)`` with uvicorn on a free loopback port, in the
test's own event loop, against the session's PostgreSQL and Redis (tables emptied by the
``services`` fixture). ``page`` is a fresh browser context and page whose every request to a
host other than 127.0.0.1 is aborted, so a page that needs the internet fails its test
rather than pass on a machine that happens to have it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, Route, async_playwright

from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.paths import REPO

# Debian's path, or whatever `chromium` the PATH finds (None: the browser tests are skipped).
CHROMIUM = shutil.which("/usr/bin/chromium") or shutil.which("chromium")
# No GPU, sandbox or background traffic in a container; QUIC and component updates would
# reach for the network on their own.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = "127.0.0.1"
SCREENSHOTS = REPO / "docs" / "screenshots"


@dataclass
class LiveServer:
    """The app served on loopback; ``blocked`` lists the (resource type, URL) of each
    off-host request its pages made."""

    base_url: str
    blocked: list[tuple[str, str]] = field(default_factory=list)


@pytest.fixture
async def live_server(settings: Settings, services: Services) -> AsyncIterator[LiveServer]:
    """The real app under uvicorn on a free loopback port, running until the test ends."""
    del services  # requested for its emptied tables
    # Bound here and handed over: a port picked free and bound later could be taken meanwhile
    # by a parallel test worker.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(settings),
        host=LOOPBACK,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    base_url = f"http://{LOOPBACK}:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=2) as client:
            for _ in range(200):
                if task.done():
                    task.result()
                    pytest.fail("uvicorn stopped before it was ready")
                try:
                    if (await client.get("/health/live")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
            else:
                pytest.fail("the API did not start listening")
        yield LiveServer(base_url)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        sock.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """The system Chromium, headless; the test is skipped only where it is not installed."""
    executable = CHROMIUM
    if executable is None:
        pytest.skip("Debian's chromium package is not installed (.ci/run installs it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable,
            args=CHROMIUM_ARGS,
            headless=True,
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live_server: LiveServer) -> AsyncIterator[Page]:
    """A fresh page that can reach only loopback; other requests are aborted and listed."""
    context = await browser.new_context(
        base_url=live_server.base_url, viewport={"width": 1280, "height": 900}
    )

    async def loopback_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == LOOPBACK:
            await route.continue_()
        else:
            live_server.blocked.append((route.request.resource_type, route.request.url))
            await route.abort("internetdisconnected")

    await context.route("**/*", loopback_only)
    opened = await context.new_page()
    opened.set_default_timeout(20_000)
    try:
        yield opened
    finally:
        await context.close()


async def screenshot(page: Page, name: str, scratch: Path) -> Path:
    """Save a screenshot of ``page`` as ``<name>.png``: into docs/screenshots/ when
    ``HIREHOOK_UPDATE_SCREENSHOTS`` is set (to refresh the committed ones), else into
    ``scratch``, so an ordinary test run leaves the working tree untouched."""
    folder = SCREENSHOTS if os.environ.get("HIREHOOK_UPDATE_SCREENSHOTS") else scratch
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    await page.screenshot(path=str(path))
    assert path.stat().st_size > 1000
    return path


class Pages:
    """The browser page, and every HTML document it showed (searched for secrets at the end)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.seen: list[str] = []

    async def keep(self) -> str:
        html = await self.page.content()
        self.seen.append(html)
        return html

    async def log_in(self, key: str) -> None:
        await self.page.goto("/console/records")
        # Not logged in: the console sends the browser to its login form.
        assert self.page.url.endswith("/console/login")
        await self.keep()
        await self.page.fill("#key", key)
        await self.page.click("button[type=submit]")
        await self.page.wait_for_url("**/console/records")
        await self.keep()

    def assert_never_shown(self, *secrets: str) -> None:
        assert self.seen
        for html in self.seen:
            for secret in secrets:
                assert secret not in html
