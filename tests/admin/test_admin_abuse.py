"""Hostile input to the admin API and the console: NUL bytes and lone surrogates, numbers and
times out of the database's range, bodies before the key, ambiguous and unbounded replays,
sessions after logout, and connections that could never be used."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from app.admin import replay, service
from app.admin.tenants_file import ConnectionSpec, TenantsFile, TenantSpec, apply_tenants
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.admin import ADMIN, Recorder, auth, csrf_of, log_in, post_keldair
from tests.support.app import add_connection, run_app
from tests.support.keldair import SECRET
from tests.support.keldair import event as keldair_event
from tests.support.workers import fast_settings, rows

INT64_MAX = 2**63 - 1


@pytest.fixture
async def acme(services: Services) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )


def assert_refused(response: httpx.Response, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    return error


# --- NUL bytes and lone surrogates ---------------------------------------------------------------

NUL_REQUESTS: list[tuple[str, str, Any]] = [
    ("GET", "/records?tenant=ac%00me", None),
    ("GET", "/records?person=%00", None),
    ("GET", "/records?event_type=x%00", None),
    ("GET", "/tenants/ac%00me", None),
    ("PATCH", "/tenants/ac%00me", {"name": "Acme"}),
    ("POST", "/tenants/ac%00me/disable", None),
    ("PUT", "/tenants/ac%00me/destination", {"url": "https://x.test", "secret": SECRET}),
    ("POST", "/tenants", {"slug": "nul", "name": "a\x00b"}),
    ("PATCH", "/tenants/acme", {"name": "a\x00b"}),
    ("GET", "/connections?tenant=%00", None),
    ("GET", "/connections?source=keldair%00", None),
    ("POST", "/connections", {"tenant": "acme", "source": "keldair", "name": "n\x00"}),
    (
        "POST",
        "/connections",
        {
            "tenant": "acme",
            "source": "keldair",
            "name": "second",
            "options": {"x": ["\x00"]},
            "secrets": {"signing_secrets": [SECRET]},
        },
    ),
    ("POST", "/erasures", {"tenant": "acme", "source": "keldair", "candidate_id": "c\x00"}),
    ("POST", "/erasures", {"tenant": "ac\x00me", "source": "keldair", "candidate_id": "c"}),
    ("POST", "/dead-letters/discard", {"tenant": "acme\x00"}),
    ("POST", "/dead-letters/retry", {"all": True, "note": "fixed\x00"}),
    ("GET", "/dead-letters?tenant=%00", None),
    ("POST", "/replays", {"filters": {"tenant": "acme\x00"}}),
    ("POST", "/replays", {"filters": {"job": "\x00"}}),
    ("GET", "/stats?tenant=%00", None),
    ("GET", "/stats?source=%00", None),
]


@pytest.mark.parametrize(("method", "path", "body"), NUL_REQUESTS)
async def test_a_nul_byte_in_any_admin_input_is_a_400_naming_it(
    admin: Recorder, acme: None, method: str, path: str, body: Any
) -> None:
    response = await admin.call(method, path, json=body)
    error = assert_refused(response)
    assert "NUL" in error["message"], error


async def test_a_lone_surrogate_in_a_body_is_a_400(admin: Recorder, acme: None) -> None:
    # JSON's \ud800 escape decodes to a string no database (nor UTF-8) can hold.
    for raw in (
        b'{"name": "\\ud800"}',
        b'{"tenant": "acme", "source": "keldair", "candidate_id": "\\udfff"}',
    ):
        path = "/tenants/acme" if b"name" in raw else "/erasures"
        response = await admin.client.request(
            "PATCH" if path == "/tenants/acme" else "POST",
            ADMIN + path,
            content=raw,
            headers={**auth(admin.key), "content-type": "application/json"},
        )
        error = assert_refused(response)
        assert "surrogate" in error["message"], error


@pytest.mark.parametrize(
    "path",
    [
        "/v1/keldair/ac%00me/events",
        "/v1/hrmanager/ac%00me/events",
        "/v1/cloud-elements/ac%00me/events",
        "/v1/smartrecruiters/ac%00me/events",
    ],
)
async def test_a_nul_in_a_webhook_tenant_is_an_unknown_tenant_not_a_503(
    client: httpx.AsyncClient, acme: None, path: str
) -> None:
    body = orjson.dumps(keldair_event())
    unknown = await client.post(path.replace("ac%00me", "nobody"), content=body)
    nul = await client.post(path, content=body)
    assert nul.status_code == unknown.status_code < 500, nul.text
    assert nul.json() == unknown.json()


# --- numbers and times out of range ----------------------------------------------------------


@pytest.mark.parametrize("connection_id", [str(2**63), str(2**64), "99999999999999999999999"])
async def test_a_connection_id_out_of_range_is_a_404(admin: Recorder, connection_id: str) -> None:
    assert_refused(await admin.call("GET", f"/connections/{connection_id}"), 404)
    assert_refused(
        await admin.call("PATCH", f"/connections/{connection_id}", json={"enabled": False}), 404
    )
    assert_refused(await admin.call("POST", f"/connections/{connection_id}/disable"), 404)
    assert_refused(
        await admin.call("PUT", f"/connections/{connection_id}/secrets", json={"secrets": {}}),
        404,
    )


@pytest.mark.parametrize("ids", [[2**63], [-(2**63) - 1], [1, 2**70]])
async def test_dead_letter_ids_out_of_range_are_a_400(admin: Recorder, ids: list[int]) -> None:
    for verb in ("retry", "discard"):
        error = assert_refused(await admin.call("POST", f"/dead-letters/{verb}", json={"ids": ids}))
        assert "ids" in error["message"]


EXTREME_TIMES = [
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
]


@pytest.mark.parametrize("at", EXTREME_TIMES)
async def test_times_beyond_what_can_be_stored_are_a_400(admin: Recorder, at: str) -> None:
    for path, params in (
        ("/records", {"received_from": at}),
        ("/records", {"received_to": at}),
        ("/stats", {"since": at}),
        ("/stats", {"until": at}),
    ):
        response = await admin.client.get(ADMIN + path, params=params, headers=auth(admin.key))
        error = assert_refused(response)
        assert "between" in error["message"], (path, params, error)
    replay = await admin.call("POST", "/replays", json={"filters": {"received_from": at}})
    assert "between" in assert_refused(replay)["message"]


async def test_the_console_refuses_an_extreme_time_with_a_page(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    await log_in(client, admin_key)
    for at in ("9999-12-31T23:59:59-23:59", "0001-01-01T00:00+23:59"):
        page = await client.get("/console/records", params={"received_from": at})
        assert page.status_code == 400, page.text
        assert "text/html" in page.headers["content-type"]


async def test_the_console_refuses_a_nul_in_a_filter_or_a_note(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    await log_in(client, admin_key)
    page = await client.get("/console/records", params={"tenant": "a\x00"})
    assert page.status_code == 400 and "NUL" in page.text
    letters = await client.get("/console/dead-letters")
    answer = await client.post(
        "/console/dead-letters",
        data={
            "action": "discard",
            "kind": "pipeline",
            "note": "x\x00",
            "csrf": csrf_of(letters.text),
        },
        follow_redirects=False,
    )
    assert answer.status_code == 400 and "NUL" in answer.text


# --- the key before the body -------------------------------------------------------------------


async def test_a_body_without_a_key_is_refused_401_before_it_is_read(
    services: Services, settings: Settings
) -> None:
    strict = fast_settings(settings, auth_failure_limit_per_address=3)
    junk = b"{" + b"x" * (8 * 1024 * 1024)
    async for client in run_app(create_app(strict)):
        responses = [
            await client.post(
                f"{ADMIN}/tenants", content=junk, headers={"content-type": "application/json"}
            )
            for _ in range(4)
        ]
        answers = [r.status_code for r in responses]
        assert answers[:2] == [401, 401], answers
        # Its body unread, the connection is closed after the answer.
        assert responses[0].headers["connection"] == "close"
        assert responses[0].json()["error"]["code"] == "unauthorized"
        # Counted by the guard like any failed key: the address is now blocked.
        assert answers[-1] == 429


async def test_a_body_beyond_the_cap_is_a_413(admin: Recorder) -> None:
    big = orjson.dumps({"slug": "big", "name": "x" * (1024 * 1024)})
    response = await admin.client.post(
        f"{ADMIN}/tenants",
        content=big,
        headers={**auth(admin.key), "content-type": "application/json"},
    )
    error = assert_refused(response, 413)
    assert "1048576" in error["message"]
    assert response.headers["connection"] == "close"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b" " * 4096

    # Streamed without a length: counted as it arrives.
    streamed = await admin.client.post(
        f"{ADMIN}/tenants",
        content=chunks(),
        headers={**auth(admin.key), "content-type": "application/json"},
    )
    assert_refused(streamed, 413)


# --- replays --------------------------------------------------------------------------------


async def _records(client: httpx.AsyncClient, n: int) -> None:
    for i in range(n):
        answer = await post_keldair(client, keldair_event(f"evt_{i}"))
        assert answer.status_code == 200, answer.text


async def test_a_replay_naming_both_ids_and_filters_is_refused(admin: Recorder, acme: None) -> None:
    await _records(admin.client, 2)
    both = await admin.call(
        "POST", "/replays", json={"record_ids": [], "filters": {"tenant": "acme"}}
    )
    assert "not both" in assert_refused(both)["message"]
    assert await rows(admin_services(admin), "SELECT 1 FROM replay") == []


def admin_services(admin: Recorder) -> Services:
    services: Services = admin.client._transport.app.state.services  # type: ignore[attr-defined]
    return services


async def test_a_large_replay_needs_a_dry_run_count_and_a_confirmation(
    admin: Recorder, acme: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound is the replay module's; the console reads it through the service surface.
    monkeypatch.setattr(replay, "REPLAY_CONFIRM_ABOVE", 2)
    monkeypatch.setattr(service, "REPLAY_CONFIRM_ABOVE", 2)
    await _records(admin.client, 3)
    services = admin_services(admin)
    everything = {"filters": {"received_from": "0001-01-02T00:00:00Z"}}

    dry = await admin.call("POST", "/replays", json={**everything, "dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["matched"] == 3 and dry.json()["dry_run"] is True
    assert dry.json()["id"] is None and dry.json()["enrichments"] == 0

    unconfirmed = await admin.call("POST", "/replays", json=everything)
    error = assert_refused(unconfirmed)
    assert error["code"] == "confirmation_required" and "3" in error["message"]
    too_few = await admin.call("POST", "/replays", json={**everything, "confirm": 2})
    assert assert_refused(too_few)["code"] == "confirmation_required"
    assert await rows(services, "SELECT 1 FROM replay") == []

    confirmed = await admin.call("POST", "/replays", json={**everything, "confirm": 3})
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["matched"] == 3 and confirmed.json()["dry_run"] is False
    # Under the threshold no confirmation is needed.
    small = await admin.call("POST", "/replays", json={"filters": {"event_type": "nothing"}})
    assert small.status_code == 200 and small.json()["matched"] == 0


async def test_the_console_asks_before_a_large_replay(
    client: httpx.AsyncClient, admin_key: str, acme: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The bound is the replay module's; the console reads it through the service surface.
    monkeypatch.setattr(replay, "REPLAY_CONFIRM_ABOVE", 2)
    monkeypatch.setattr(service, "REPLAY_CONFIRM_ABOVE", 2)
    await _records(client, 3)
    await log_in(client, admin_key)
    page = await client.get("/console/records", params={"tenant": "acme"})
    first = await client.post(
        "/console/replays", data={"tenant": "acme", "csrf": csrf_of(page.text)}
    )
    assert first.status_code == 200, first.text
    assert "3 records match" in first.text
    confirm = re.search(r'name="confirm" value="(\d+)"', first.text)
    assert confirm and confirm.group(1) == "3"
    services: Services = client._transport.app.state.services  # type: ignore[attr-defined]
    assert await rows(services, "SELECT 1 FROM replay") == []
    done = await client.post(
        "/console/replays",
        data={"tenant": "acme", "confirm": "3", "csrf": csrf_of(first.text)},
    )
    assert done.status_code == 200 and 'id="replay-result"' in done.text
    assert len(await rows(services, "SELECT 1 FROM replay")) == 1


# --- console sessions and headers --------------------------------------------------------------


async def test_logout_ends_the_session_on_the_server(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    await log_in(client, admin_key)
    page = await client.get("/console/records")
    assert page.status_code == 200
    stolen = dict(client.cookies)
    out = await client.post(
        "/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert out.status_code == 303
    # The cookie as it was before logout (kept by an attacker or a stale tab) opens nothing.
    client.cookies.clear()
    for name, value in stolen.items():
        client.cookies.set(name, value, path="/console")
    again = await client.get("/console/records", follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"] == "/console/login"


async def test_console_and_admin_answers_forbid_sniffing_and_referrers(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    answers = [
        await client.get("/console/login"),
        await client.get("/console/records", follow_redirects=False),
        await client.get(f"{ADMIN}/tenants"),
        await client.get(f"{ADMIN}/tenants", headers=auth(admin_key)),
        await client.get(f"{ADMIN}/connections/{2**63}", headers=auth(admin_key)),
    ]
    await log_in(client, admin_key)
    answers.append(await client.get("/console/records"))
    answers.append(await client.get("/console/console.css"))
    for answer in answers:
        assert answer.headers.get("x-content-type-options") == "nosniff", answer.url
        assert answer.headers.get("referrer-policy") == "no-referrer", answer.url


# --- connections that could never be used --------------------------------------------------------


async def test_a_short_smartrecruiters_signing_key_is_refused(
    admin: Recorder, services: Services, acme: None
) -> None:
    for keys_given in (["abc"], [{"key": "abc"}], ["x" * 31]):
        made = await admin.call(
            "POST",
            "/connections",
            json={
                "tenant": "acme",
                "source": "smartrecruiters",
                "secrets": {"signing_keys": keys_given},
            },
        )
        error = assert_refused(made)
        assert "32" in error["message"] and "abc" not in error["message"]
    good = "k" * 32
    made = await admin.call(
        "POST",
        "/connections",
        json={"tenant": "acme", "source": "smartrecruiters", "secrets": {"signing_keys": [good]}},
    )
    assert made.status_code == 201, made.text
    rotated = await admin.call(
        "PUT",
        f"/connections/{made.json()['id']}/secrets",
        json={"secrets": {"signing_keys": ["abc"]}},
    )
    assert "32" in assert_refused(rotated)["message"]
    with pytest.raises(ValueError, match="32"):
        await add_connection(
            services, tenant="beta", source="smartrecruiters", secrets={"signing_keys": ["abc"]}
        )


async def test_a_tenants_file_with_a_connection_twice_is_refused(services: Services) -> None:
    twice = [
        ConnectionSpec(source="keldair", secrets={"signing_secrets": [SECRET]}),
        ConnectionSpec(source="keldair", secrets={"signing_secrets": [SECRET]}, enabled=False),
    ]
    with pytest.raises(ValueError, match=r"keldair.*default.*twice"):
        await apply_tenants(
            TenantsFile(tenant=[TenantSpec(slug="dup", name="Dup", connection=twice)]),
            engine=services.engine,
            cipher=services.cipher,
        )
    assert await rows(services, "SELECT 1 FROM tenant WHERE slug = 'dup'") == []


async def test_a_second_connection_with_the_same_name_is_a_409_naming_it(
    admin: Recorder, acme: None
) -> None:
    spec = {"tenant": "acme", "source": "keldair", "secrets": {"signing_secrets": [SECRET]}}
    again = await admin.call("POST", "/connections", json=spec)
    error = assert_refused(again, 409)
    assert "'acme'" in error["message"] and "'default'" in error["message"]
    other = await admin.call("POST", "/connections", json={**spec, "name": "other"})
    assert other.status_code == 201
    renamed = await admin.call(
        "PATCH", f"/connections/{other.json()['id']}", json={"name": "default"}
    )
    assert "'default'" in assert_refused(renamed, 409)["message"]


async def test_the_cli_counts_first_and_replays_a_large_set_only_when_confirmed(
    client: httpx.AsyncClient,
    services: Services,
    settings: Settings,
    acme: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.support.cli import hirehook, ok

    # The bound is the replay module's; the console reads it through the service surface.
    monkeypatch.setattr(replay, "REPLAY_CONFIRM_ABOVE", 2)
    monkeypatch.setattr(service, "REPLAY_CONFIRM_ABOVE", 2)
    await _records(client, 3)
    dry = ok(
        await hirehook(settings, "records", "replay", "--tenant", "acme", "--dry-run", "--json")
    )
    assert (dry["matched"], dry["dry_run"], dry["id"]) == (3, True, None)
    refused = await hirehook(settings, "records", "replay", "--tenant", "acme")
    assert refused.returncode == 1 and "confirm=3" in refused.stderr
    assert await rows(services, "SELECT 1 FROM replay") == []
    done = ok(
        await hirehook(
            settings, "records", "replay", "--tenant", "acme", "--confirm", "3", "--json"
        )
    )
    assert done["matched"] == 3 and done["dry_run"] is False


async def test_a_null_where_a_connection_needs_a_value_is_a_400(
    admin: Recorder, acme: None
) -> None:
    # Found by make fuzz: {"name": null} reached the connection check and failed there (500).
    [connection] = (await admin.call("GET", "/connections")).json()
    for body in ({"name": None}, {"enabled": None}, {"options": None}):
        patched = await admin.call("PATCH", f"/connections/{connection['id']}", json=body)
        assert "cannot be null" in assert_refused(patched)["message"], body
    cleared = await admin.call("PATCH", f"/connections/{connection['id']}", json={"account": None})
    assert cleared.status_code == 200 and cleared.json()["account"] is None
