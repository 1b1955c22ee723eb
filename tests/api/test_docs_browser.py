"""/docs and /redoc render in headless Chromium with no network but loopback.

Swagger UI and ReDoc are served from the installed fastapi-offline files; a CDN reference left
anywhere would leave a blank page where the API host has no internet access, which is what
blocking every other host reproduces.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

from tests.support.browser import LiveServer, screenshot


async def test_swagger_ui_lists_the_operations_offline(
    page: Page, live_server: LiveServer, tmp_path: Path
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/docs")
    # Swagger UI builds one block per operation from /openapi.json once its scripts ran.
    operations = page.locator(".opblock")
    await operations.first.wait_for(state="visible")
    summaries = await page.locator(".opblock-summary-path").all_inner_texts()
    paths = {s.replace("\u200b", "").strip() for s in summaries}
    assert "/v1/keldair/{tenant}/events" in paths
    assert "/v1/icims/events" in paths
    assert "/oauth/token" in paths
    assert await operations.count() >= 8

    # One operation opened shows its request body example, read from the typed models.
    await page.locator(".opblock-summary", has_text="/v1/keldair/{tenant}/events").first.click()
    await page.locator(".opblock-body .body-param__example, .opblock-body .example").first.wait_for(
        state="visible"
    )
    assert live_server.blocked == [], f"the page reached off the host: {live_server.blocked}"
    assert errors == []
    await screenshot(page, "docs", tmp_path)


async def test_redoc_renders_offline(page: Page, live_server: LiveServer, tmp_path: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto("/redoc")
    # ReDoc's side menu holds one entry per operation once the document is rendered.
    menu = page.locator("[role=menuitem]", has_text="/oauth/token").or_(
        page.locator("li[data-item-id] label", has_text="token")
    )
    await page.locator("h1", has_text="Hirehook").first.wait_for(state="visible")
    await menu.first.wait_for(state="attached")
    assert await page.locator("[data-section-id^='operation/']").count() >= 8
    # ReDoc's bundle hard-codes one decorative image, its "API docs by Redocly" badge; its
    # absence leaves a broken-image icon in the footer and nothing else. No script, style,
    # font or data may come from elsewhere.
    assert [url for kind, url in live_server.blocked if kind != "image"] == []
    assert {url for _, url in live_server.blocked} <= {"https://cdn.redoc.ly/redoc/logo-mini.svg"}
    assert errors == []
    await screenshot(page, "redoc", tmp_path)


async def test_a_cdn_reference_would_be_caught(page: Page, live_server: LiveServer) -> None:
    # The guard itself: a request to another host is aborted and listed, so the two tests
    # above cannot pass on a machine that happens to be online.
    await page.goto("/health/live")
    failed = await page.evaluate(
        """async () => {
            try { await fetch('https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css');
                  return false; }
            catch (e) { return true; }
        }"""
    )
    assert failed is True
    assert any("cdn.jsdelivr.net" in url for _, url in live_server.blocked)
