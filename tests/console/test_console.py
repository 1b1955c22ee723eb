"""The operator console over plain HTTP: login, the session cookie, CSRF, and the pages'
refusals, driven in-process against real PostgreSQL and Redis."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from app.admin import keys
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.admin import (
    csrf_of,
    dead_lettered_delivery,
    log_in,
    post_hrmanager,
    post_keldair,
)
from tests.support.app import add_connection, make_settings, run_app
from tests.support.fake_ats import FakeATS
from tests.support.keldair import SECRET
from tests.support.keldair import event as keldair_event
from tests.support.workers import add_source, fast_settings

PAGES = (
    "/console/records",
    "/console/dead-letters",
    "/console/refusals",
    "/console/dead-letters/retry",
    "/console/stats",
)


async def test_pages_redirect_to_the_login_form_until_logged_in(
    client: httpx.AsyncClient,
) -> None:
    for path in (*PAGES, "/console", "/console/records/0193a1c2-0000-7000-8000-000000000000"):
        response = await client.get(path, follow_redirects=False)
        assert response.status_code == 303, path
        assert response.headers["location"] == "/console/login"
    login = await client.get("/console/login")
    assert login.status_code == 200
    assert 'name="key"' in login.text and 'type="password"' in login.text
    # A cookie forged without the secret key is not a session either.
    client.cookies.set("hirehook_console", "eyJkIjoiMDAifQ.forged.sig", path="/console")
    assert (await client.get("/console/records")).status_code == 303


async def test_a_wrong_key_is_refused_and_a_right_one_sets_a_strict_httponly_cookie(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    wrong = await log_in(client, "hh_admin_" + "x" * 43)
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text
    assert (await client.get("/console/records")).status_code == 303

    right = await log_in(client, admin_key)
    assert right.status_code == 303 and right.headers["location"] == "/console/records"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    # Over plain http the cookie cannot be Secure (the browser would drop it); see the https case.
    assert "Secure" not in cookie
    # The cookie holds the key's digest, never the key.
    assert admin_key not in cookie and admin_key[len(keys.PREFIX) :] not in cookie
    page = await client.get("/console/records")
    assert page.status_code == 200 and "Signed in as" in page.text and ">ops<" in page.text
    again = await client.get("/console/login", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/console/records"
    assert page.headers["cache-control"] == "no-store"
    assert admin_key not in page.text


async def test_the_cookie_is_secure_over_https(services: Services, settings: Settings) -> None:
    key = (await keys.create(services.engine, "ops")).key
    app = create_app(make_settings(str(settings.database_url), str(settings.redis_url)))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://hirehook.test") as c:
            response = await log_in(c, key)
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]


async def test_a_post_without_or_with_a_wrong_csrf_token_is_refused(
    client: httpx.AsyncClient, services: Services, admin_key: str
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    sent = await post_keldair(client, keldair_event())
    record_id = sent.headers["hirehook-record-id"]

    # The login form too: a key posted without the form's token is not tried.
    no_token = await client.post("/console/login", data={"key": admin_key})
    assert no_token.status_code == 403
    assert (await client.get("/console/records")).status_code == 303

    assert (await log_in(client, admin_key)).status_code == 303
    page = await client.get(f"/console/records/{record_id}")
    token = csrf_of(page.text)
    posts = [
        (f"/console/records/{record_id}/replay", {}),
        ("/console/replays", {"tenant": "acme"}),
        ("/console/dead-letters", {"action": "retry", "kind": "configuration"}),
        ("/console/logout", {}),
    ]
    for path, form in posts:
        for csrf in (None, "wrong", token[:-1]):
            data = form if csrf is None else {**form, "csrf": csrf}
            refused = await client.post(path, data=data, follow_redirects=False)
            assert refused.status_code == 403, (path, csrf)
            assert "CSRF" in refused.text
    # Nothing was replayed, and the session survived the refused logout.
    detail = await client.get(f"/console/records/{record_id}")
    assert "Never replayed." in detail.text

    replayed = await client.post(
        f"/console/records/{record_id}/replay", data={"csrf": token}, follow_redirects=False
    )
    assert replayed.status_code == 303
    assert replayed.headers["location"].startswith(f"/console/records/{record_id}?replayed=")
    logout = await client.post("/console/logout", data={"csrf": token}, follow_redirects=False)
    assert logout.status_code == 303
    assert (await client.get("/console/records")).status_code == 303


async def test_a_revoked_key_ends_its_session(
    client: httpx.AsyncClient, services: Services, admin_key: str
) -> None:
    assert (await log_in(client, admin_key)).status_code == 303
    assert (await client.get("/console/stats")).status_code == 200
    [row] = await keys.list_keys(services.engine)
    await keys.revoke(services.engine, row.id)
    response = await client.get("/console/stats", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/console/login"
    # The cookie is cleared as well.
    assert 'hirehook_console=""' in response.headers["set-cookie"]


async def test_output_is_escaped_and_refusals_are_pages(
    client: httpx.AsyncClient, services: Services, admin_key: str
) -> None:
    await log_in(client, admin_key)
    hostile = "<script>alert(1)</script>"
    page = await client.get("/console/records", params={"tenant": hostile})
    # No such tenant: a refusal page, which names it escaped.
    assert page.status_code == 404
    assert hostile not in page.text and "&lt;script&gt;" in page.text
    bad_cursor = await client.get("/console/records", params={"cursor": "garbage"})
    assert bad_cursor.status_code == 400 and "cursor" in bad_cursor.text
    assert bad_cursor.headers["content-type"].startswith("text/html")
    bad_time = await client.get("/console/records", params={"received_from": "yesterday"})
    assert bad_time.status_code == 400
    missing = await client.get("/console/records/0193a1c2-0000-7000-8000-000000000000")
    assert missing.status_code == 404 and "does not exist" in missing.text


@pytest.fixture
async def second_client(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for c in run_app(create_app(settings)):
        yield c


async def test_a_session_token_is_not_valid_for_another_session(
    client: httpx.AsyncClient, second_client: httpx.AsyncClient, admin_key: str
) -> None:
    await log_in(client, admin_key)
    await log_in(second_client, admin_key)
    mine = csrf_of((await client.get("/console/records")).text)
    theirs = csrf_of((await second_client.get("/console/records")).text)
    assert mine != theirs
    refused = await client.post("/console/logout", data={"csrf": theirs})
    assert refused.status_code == 403


async def test_wrong_keys_at_the_login_form_count_in_the_brute_force_guard(
    services: Services, settings: Settings, admin_key: str
) -> None:
    strict = fast_settings(settings, auth_failure_limit_per_address=3)
    async for client in run_app(create_app(strict)):
        answers = [(await log_in(client, keys.new_key())).status_code for _ in range(4)]
        assert answers[:2] == [401, 401] and answers[-1] == 429
        # Blocked: further wrong keys are refused until the cool-off ends, no session starts ...
        blocked = await log_in(client, keys.new_key())
        assert blocked.status_code == 429 and "too many" in blocked.text.lower()
        assert "retry-after" in blocked.headers
        assert (await client.get("/console/records")).status_code == 303
        # ... but the right key, from the same address, logs in.
        assert (await log_in(client, admin_key)).status_code == 303
        assert (await client.get("/console/records")).status_code == 200


async def test_the_console_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert paths and not [p for p in paths if p.startswith("/console")]
    assert (await client.get("/console/console.css")).headers["content-type"].startswith("text/css")


async def test_a_quarantined_record_page_shows_the_missing_ids_and_how_to_map_them(
    client: httpx.AsyncClient, services: Services, admin_key: str, fake_ats: FakeATS
) -> None:
    hrm = await add_source(services, fake_ats, "hrmanager")
    record_id = await post_hrmanager(client, {"Event": "PositionPublished", "Id": "77"})
    await log_in(client, admin_key)
    page = await client.get(f"/console/records/{record_id}")
    assert page.status_code == 200
    found = re.search(r'<section id="quarantine">(.*?)</section>', page.text, re.S)
    assert found, "the page has no quarantine section"
    section = found.group(1)
    missing = re.search(r'<table id="missing-fields">(.*?)</table>', section, re.S)
    assert missing is not None
    assert "<th>position_id</th>" in missing.group(1)
    for name in ("PositionId", "positionId", "position_id", "PositionID"):
        assert f"<code>{name}</code>" in missing.group(1)
    assert "Names in the body: <code>Event</code>, <code>Id</code>" in section
    command = f"hirehook connections set-payload-fields {hrm.id} --field position_id=&lt;"
    assert command in section


async def test_a_record_whose_delivery_gave_up_has_a_dead_letter_badge_everywhere(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    admin_key: str,
    fake_ats: FakeATS,
) -> None:
    rid = await dead_lettered_delivery(services, settings, fake_ats)
    await log_in(client, admin_key)

    page = await client.get(f"/console/records/{rid}")
    badge = re.search(r'<span class="state state-([a-z_]+)" id="state">([a-z_]+)</span>', page.text)
    assert badge is not None and badge.groups() == ("dead_letter", "dead_letter")
    listed = await client.get("/console/records")
    assert '<span class="state state-dead_letter">dead_letter</span>' in listed.text
    assert "state-processed" not in listed.text
    filtered = await client.get("/console/records", params={"state": "dead_letter"})
    assert str(rid) in filtered.text
    assert '<option value="delivered"' in filtered.text
    stats = await client.get("/console/stats")
    assert '<span class="state state-dead_letter">dead_letter 1</span>' in stats.text


async def test_the_refused_and_group_retry_pages_refuse_and_escape(
    client: httpx.AsyncClient, services: Services, admin_key: str
) -> None:
    await log_in(client, admin_key)
    hostile = "<script>alert(1)</script>"
    page = await client.get("/console/refusals", params={"tenant": hostile, "window": "9y"})
    assert page.status_code == 200
    assert hostile not in page.text and "&lt;script&gt;" in page.text
    assert "0 refused request(s)" in page.text
    bad_status = await client.get("/console/refusals", params={"status": "500"})
    assert bad_status.status_code == 400 and "401, 413 and 429" in bad_status.text
    # A group with no open letter left: nothing to confirm, no retry form.
    gone = await client.get(
        "/console/dead-letters/retry",
        params={"kind": "pipeline", "reason": hostile, "stage": "delivery"},
    )
    assert gone.status_code == 200
    assert "No open letter is left" in gone.text and 'id="retry-group"' not in gone.text
    assert hostile not in gone.text
    groups = await client.get("/console/dead-letters", params={"tenant": "acme"})
    assert groups.status_code == 200 and "No open dead letters for these filters" in groups.text
