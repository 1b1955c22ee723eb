"""The console's record story, refused requests and dead-letter groups in headless Chromium:
a record's page shows every delivery attempt and what enrichment wrote, the Refused page
lists a refusal with filters, a dead-letter group's retry shows its count and then runs, and
the pages fit 1280 px and 390 px wide screens (no sideways scrolling of the page, Discard
within the window).

Screenshots go to docs/screenshots/ with HIREHOOK_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from playwright.async_api import Page, ViewportSize

from app.admin import keys, service
from app.platform.settings import Settings
from app.services import Services
from app.store import dead_letters
from tests.support.browser import LiveServer, Pages, screenshot
from tests.support.fake_ats import FakeATS, Step
from tests.support.keldair import SECRET, signed
from tests.support.workers import (
    HRM_SECRET,
    add_source,
    fast_settings,
    record_event,
    run_worker,
)

NARROW: ViewportSize = {"width": 390, "height": 844}
WIDE: ViewportSize = {"width": 1280, "height": 900}


async def fits(page: Page) -> None:
    """The page never scrolls sideways: whatever is wide scrolls inside its own box."""
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= await page.evaluate("window.innerWidth"), page.url


async def within_window(page: Page, selector: str) -> None:
    box = await page.locator(selector).first.bounding_box()
    assert box is not None
    viewport = page.viewport_size
    assert viewport is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box


async def test_a_records_page_shows_every_delivery_attempt_and_what_was_written(
    page: Page,
    live_server: LiveServer,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    tmp_path: Path,
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    fake_ats.add_hrm_candidate("1001")
    conn = await add_source(services, fake_ats, "hrmanager", destination=True)
    fake_ats.script.append(Step("/vendor", status=503))
    rid = await record_event(services, conn, "CandidateUpdated", {"CandidateId": "1001"})
    await run_worker(fast_settings(settings))

    pages = Pages(page)
    await pages.log_in(key)
    await page.goto(f"/console/records/{rid}")
    html = await pages.keep()
    attempts = page.locator("#attempts tr")
    assert await attempts.count() == 3  # a header and two attempts
    failed = await attempts.nth(1).inner_text()
    assert "503" in failed and "destination answered 503" in failed and "scripted 503" in failed
    delivered = await attempts.nth(2).inner_text()
    assert "200" in delivered and "delivered" in delivered and '"ok"' in delivered
    written = await page.locator("#written").inner_text()
    assert "candidate" in written and "1001" in written
    # Done: no "Next attempt" for work that is finished.
    assert "Next attempt" not in html
    await fits(page)
    # The story below the record's bodies: the delivery, then its attempts.
    await page.locator("#attempts").evaluate(
        "el => el.parentElement.previousElementSibling.previousElementSibling.scrollIntoView()"
    )
    await screenshot(page, "console-record", tmp_path)
    await page.set_viewport_size(NARROW)
    await page.reload()
    await fits(page)
    pages.assert_never_shown(key, HRM_SECRET)
    assert live_server.blocked == []


async def test_the_refused_page_lists_refusals_with_filters(
    page: Page, live_server: LiveServer, services: Services, tmp_path: Path
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    raw = b'{"type": "applicant.hired"}'
    wrong = {**signed(raw, secret=SECRET), "webhook-signature": "v1,AAAA"}
    async with httpx.AsyncClient(base_url=live_server.base_url) as sender:
        for _ in range(2):
            answer = await sender.post("/v1/keldair/acme/events", content=raw, headers=wrong)
            assert answer.status_code == 401

    pages = Pages(page)
    await pages.log_in(key)
    await page.click("header a[href='/console/refusals']")
    await page.wait_for_url("**/console/refusals")
    rows = page.locator("#refusals tbody tr")
    assert await rows.count() == 1
    cells = await rows.first.locator("td").all_inner_texts()
    assert cells[1:7] == ["acme", "keldair", "401", "unauthorized", "127.0.0.1", "2"]
    await fits(page)
    await screenshot(page, "console-refused", tmp_path)

    await page.select_option("select[name=status]", "429")
    await page.click("#refusal-filters button[type=submit]")
    await page.wait_for_url("**status=429**")
    assert "None." in await page.locator("#refusals").inner_text()
    await page.goto("/console/refusals?tenant=acme&status=401")
    assert await page.locator("#refusals tbody tr").count() == 1
    await page.set_viewport_size(NARROW)
    await page.reload()
    await fits(page)
    pages.assert_never_shown(key, "v1,AAAA", "applicant.hired")


async def test_a_dead_letter_groups_retry_shows_its_count_then_runs_and_the_page_fits(
    page: Page,
    live_server: LiveServer,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    tmp_path: Path,
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    fake_ats.add_sr_candidate("c-1")
    sr = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": "expired"})
    hrm = await add_source(services, fake_ats, "hrmanager", tenant="globex")
    refused = await record_event(services, sr, "candidate.updated", {"id": "c-1"})
    missing: list[uuid.UUID] = []
    for who in ("nobody", "no-one", "none"):
        body = {"CandidateId": who, "Note": "a long detail " * 6}
        missing.append(await record_event(services, hrm, "CandidateUpdated", body))
    await run_worker(fast_settings(settings))
    # A detail as the ATS may write one: long, and with nowhere to break a line.
    async with services.engine.begin() as conn:
        await dead_letters.bury(
            conn,
            record_id=missing[2],
            stage="delivery",
            kind="pipeline",
            reason="delivery_exhausted",
            detail="destination answered 502 at https://vendor.example/" + "x" * 150,
            attempts=8,
        )

    pages = Pages(page)
    await pages.log_in(key)
    await page.goto("/console/dead-letters")
    text = await page.locator("#groups").inner_text()
    assert "credentials_refused" in text and "not_found" in text
    # 1280 px: the page does not scroll sideways, every Discard is inside the window, and a
    # record id is one line (cut, with the whole id in its title).
    await fits(page)
    for button in await page.locator("button[value=discard]").all():
        box = await button.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1280, box
    rid = page.locator(f"#cause-pipeline a.rid[title='{missing[0]}']")
    height = (await rid.bounding_box() or {"height": 99})["height"]
    assert height < 24
    await screenshot(page, "console-dead-letters", tmp_path)

    # Narrowed by source: only the HR Manager group is left.
    await page.select_option("#letter-filters select[name=source]", "hrmanager")
    await page.click("#letter-filters button[type=submit]")
    await page.wait_for_url("**source=hrmanager**")
    assert await page.locator("#groups tr").count() == 3  # a header and two groups
    await page.click("#group-pipeline-not_found-enrichment a.button")
    await page.wait_for_url("**/console/dead-letters/retry?**")
    assert await page.locator("#confirm-count").inner_text() == "3"
    await pages.keep()
    await page.click("#retry-group button[value=retry]")
    await page.wait_for_url("**done=retried**")
    assert "3 dead letter(s) retried" in await page.locator("#done").inner_text()
    assert sorted(x.reason for x in await service.list_dead_letters(services)) == [
        "credentials_refused",
        "delivery_exhausted",
    ]

    # Discarded from the record's own page, back to that page.
    await page.goto(f"/console/records/{refused}")
    await page.locator("#record-letters input[name=note]").fill("tenant left")
    await page.click("#record-letters button[value=discard]")
    await page.wait_for_url(f"**/console/records/{refused}?done=discarded")
    assert "discarded" in await page.locator("#state").inner_text()
    assert "tenant left" in await pages.keep()

    # 390 px: the pages fit, their tables scroll in their own boxes.
    await run_worker(fast_settings(settings))
    await page.set_viewport_size(NARROW)
    for path in ("/console/dead-letters", "/console/records", f"/console/records/{missing[0]}"):
        await page.goto(path)
        await fits(page)
        await pages.keep()
    await page.goto("/console/dead-letters")
    await screenshot(page, "console-dead-letters-390", tmp_path)
    await page.set_viewport_size(WIDE)
    await within_window(page, "button[value=discard]")
    pages.assert_never_shown(key, "expired", HRM_SECRET)
