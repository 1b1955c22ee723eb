"""The operator console in headless Chromium, end to end: log in with an admin key, find an
event the KeldairHR sample sender posted, replay it (twice: one delivery, two replays
logged), retry a configuration dead letter after its fix from the page, discard another with a
note, be logged out when the key is revoked, and be refused a form with a wrong CSRF token.
Every page's HTML is searched for every secret in play.

Screenshots of the main pages go to docs/screenshots/ with HIREHOOK_UPDATE_SCREENSHOTS=1.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from itsdangerous import URLSafeTimedSerializer
from playwright.async_api import Page

from app.admin import keys, service
from app.admin import schemas as s
from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
)
from app.platform.crypto import derive_keys
from app.platform.settings import Settings
from app.services import Services
from app.sources import keldair as keldair_sender
from tests.support.browser import LiveServer, Pages, screenshot
from tests.support.fake_ats import HRM_KEY, SR_TOKEN, FakeATS
from tests.support.keldair import SECRET
from tests.support.workers import (
    HRM_SECRET,
    VENDOR_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)


async def test_find_a_sent_record_replay_it_and_see_the_replays(
    page: Page,
    live_server: LiveServer,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    tmp_path: Path,
) -> None:
    key = (await keys.create(services.engine, "ops-alice")).key
    tenant = TenantSpec(
        slug="acme",
        name="Acme",
        connection=[ConnectionSpec(source="keldair", secrets={"signing_secrets": [SECRET]})],
        destination=DestinationSpec(url=fake_ats.vendor_url, secret=VENDOR_SECRET),
    )
    await apply_tenants(
        TenantsFile(tenant=[tenant]), engine=services.engine, cipher=services.cipher
    )
    # Posted as `hirehook send keldair` posts them: the sample envelope, signed.
    url = f"{live_server.base_url}/v1/keldair/acme/events"
    sent_ids = []
    for person in ("ap_1001", "ap_2002"):
        body = keldair_sender.sample("applicant.hired")
        body["data"]["id"] = person
        sent = await asyncio.to_thread(keldair_sender.post, url, body, SECRET)
        assert sent.status_code == 200, sent.text
        sent_ids.append(uuid.UUID(sent.headers["hirehook-record-id"]))
    record_id = sent_ids[0]
    # The sender retries the last one: answered from the record, counted as a duplicate.
    again = await asyncio.to_thread(keldair_sender.post, url, body, SECRET)
    assert again.headers["hirehook-duplicate"] == "true"
    fast = fast_settings(settings)
    await run_worker(fast)
    assert len(fake_ats.deliveries()) == 2

    browser_pages = Pages(page)
    await page.goto("/console/login")
    await screenshot(page, "console-login", tmp_path)
    await browser_pages.log_in(key)
    assert await page.locator("#records tbody tr").count() == 2

    # Search by subject: the person the sample names.
    await page.fill("input[name=person]", "ap_1001")
    await page.select_option("select[name=source]", "keldair")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**person=ap_1001**")
    rows_shown = page.locator("#records tbody tr")
    assert await rows_shown.count() == 1
    assert "applicant.hired" in await rows_shown.first.inner_text()
    await browser_pages.keep()
    await screenshot(page, "console-records", tmp_path)

    await page.click(f"a[href='/console/records/{record_id}']")
    await page.wait_for_url(f"**/console/records/{record_id}")
    html = await browser_pages.keep()
    assert "delivered" in await page.locator("#state").inner_text()
    # The raw body, pretty-printed, and the answer the sender got.
    raw = await page.locator("#raw-body").inner_text()
    assert '"id": "ap_1001"' in raw and "\n" in raw
    assert "200" in await page.locator("#answer").inner_text()
    assert "Never replayed." in html

    for attempt in (1, 2):
        await page.click("#replay")
        await page.wait_for_url("**replayed=**")
        assert "ops-alice" in await page.locator("#replayed").inner_text()
        # A header row and one row per replay so far.
        assert await page.locator("#replays tr").count() == attempt + 1
        await browser_pages.keep()
        await run_worker(fast)

    # Both replays are logged with the key's name; enrichment ran again, the destination that
    # acknowledged was not sent the event a second time.
    log = await rows(services, "SELECT actor, record_ids FROM replay ORDER BY id")
    assert [(r.actor, r.record_ids) for r in log] == [("ops-alice", [record_id])] * 2
    assert len(fake_ats.deliveries()) == 2
    assert len(await rows(services, "SELECT 1 FROM delivery")) == 2
    await page.reload()
    assert await page.locator("#replays tr").count() == 3  # a header and two replays
    assert "delivered" in await page.locator("#state").inner_text()
    await browser_pages.keep()

    # A filtered set: every record of the tenant's KeldairHR connection.
    await page.goto("/console/records?tenant=acme&source=keldair")
    await page.click("#replay-filtered button")
    await page.wait_for_url("**/console/replays")
    assert await page.locator("#matched").inner_text() == "2"
    assert await page.locator("#enrichments").inner_text() == "2"
    await browser_pages.keep()
    assert len(await rows(services, "SELECT 1 FROM replay")) == 3

    await page.goto("/console/stats")
    stats = await page.locator("#stats").inner_text()
    assert "acme" in stats and "keldair" in stats
    # The filtered replay reopened both records and no worker has run since: both are back
    # to received and waiting in the enrichment backlog.
    cells = await page.locator("#stats tr").nth(1).locator("td").all_inner_texts()
    assert cells[:3] == ["acme", "keldair", "2"]
    assert cells[3].strip() == "received 2"
    assert cells[4:6] == ["1", "33.3%"]
    assert cells[7].startswith("2")
    await browser_pages.keep()
    await screenshot(page, "console-stats", tmp_path)
    browser_pages.assert_never_shown(key, SECRET, SECRET[6:], VENDOR_SECRET, VENDOR_SECRET[6:])
    assert live_server.blocked == []


async def test_retry_a_dead_letter_after_the_fix_and_discard_one_with_a_note(
    page: Page,
    live_server: LiveServer,
    services: Services,
    settings: Settings,
    fake_ats: FakeATS,
    tmp_path: Path,
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    fake_ats.add_sr_candidate("c-1")
    # The tenant's SmartRecruiters key has expired: enrichment fails with a configuration cause.
    expired = "expired-key-5d1e"
    sr = await add_source(services, fake_ats, "smartrecruiters", secrets={"api_key": expired})
    hrm = await add_source(services, fake_ats, "hrmanager", tenant="globex")
    refused = await record_event(services, sr, "candidate.updated", {"id": "c-1"})
    missing = await record_event(services, hrm, "CandidateUpdated", {"CandidateId": "nobody"})
    fast = fast_settings(settings)
    await run_worker(fast)

    browser_pages = Pages(page)
    await browser_pages.log_in(key)
    await page.goto("/console/dead-letters")
    configuration = page.locator("#cause-configuration")
    assert str(refused) in await configuration.inner_text()
    assert "credentials_refused" in await configuration.inner_text()
    assert str(missing) in await page.locator("#cause-pipeline").inner_text()
    await browser_pages.keep()

    # The fix, through the admin service layer as the API or CLI would make it.
    [connection] = await service.list_connections(services, tenant="acme")
    await service.rotate_secrets(
        services,
        connection_id=connection.id,
        spec=s.SecretsRotate(secrets={"api_key": SR_TOKEN}, merge=True),
    )
    [letter] = await service.list_dead_letters(services, kind="configuration")
    row = page.locator(f"#letter-{letter.id}")
    await row.locator("input[name=note]").fill("new API key")
    await row.locator("button[value=retry]").click()
    await page.wait_for_url("**done=retried**")
    assert "1 dead letter(s) retried" in await page.locator("#done").inner_text()
    await browser_pages.keep()
    await run_worker(fast)
    detail = await service.show_record(services, record_id=refused)
    assert detail.state == "processed"
    assert [(x.resolution, x.note) for x in detail.dead_letters] == [("retried", "new API key")]

    [pipeline] = await service.list_dead_letters(services, kind="pipeline")
    row = page.locator(f"#letter-{pipeline.id}")
    await row.locator("input[name=note]").fill("candidate deleted at the ATS")
    await row.locator("button[value=discard]").click()
    await page.wait_for_url("**done=discarded**")
    await browser_pages.keep()
    assert await service.list_dead_letters(services) == []
    await page.goto(f"/console/records/{missing}")
    assert "discarded" in await page.locator("#state").inner_text()
    assert "candidate deleted at the ATS" in await browser_pages.keep()
    browser_pages.assert_never_shown(key, expired, SR_TOKEN, HRM_SECRET, HRM_KEY)


async def test_a_revoked_key_is_logged_out_and_a_wrong_csrf_token_refused(
    page: Page, live_server: LiveServer, services: Services, settings: Settings
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    browser_pages = Pages(page)
    await browser_pages.log_in(key)

    # A form whose token was tampered with is refused, and the session is untouched.
    await page.goto("/console/dead-letters")
    await page.locator("header input[name=csrf]").evaluate("el => { el.value = 'forged'; }")
    response_waiter = page.expect_response("**/console/logout")
    async with response_waiter as answer:
        await page.click("header button[type=submit]")
    assert (await answer.value).status == 403
    assert "CSRF" in await page.content()
    await page.goto("/console/stats")
    assert page.url.endswith("/console/stats")

    [row] = await keys.list_keys(services.engine)
    await keys.revoke(services.engine, row.id)
    await page.goto("/console/stats")
    assert page.url.endswith("/console/login")
    # The cookie went with it: logging in again is the only way back.
    cookies = await page.context.cookies()
    sessions = [c for c in cookies if c["name"] == "hirehook_console"]
    # Only the login form's pre-session cookie is left: a CSRF token, no session id.
    [cookie] = sessions
    signing = list(reversed(derive_keys(settings.secret_keys, "console-session")))
    content = URLSafeTimedSerializer(signing, salt="hirehook-console").loads(cookie["value"])
    assert set(content) == {"c"}
    await page.goto("/console/records")
    assert page.url.endswith("/console/login")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    assert "unknown or revoked" in await page.content()
    assert page.url.endswith("/console/login")
