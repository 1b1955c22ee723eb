"""The brute-force guard wired into the routes, and weak secrets refused at load.

Every test runs the whole app over the session's real PostgreSQL and Redis, with limits small
enough to reach: 3 failures per client and 5 per address are tolerated, the next one blocks.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from typer.testing import CliRunner

from app.admin import keys
from app.admin.tenants_file import (
    ConnectionSpec,
    DestinationSpec,
    TenantsFile,
    TenantSpec,
    apply_tenants,
)
from app.cli import cli
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from app.verifiers import standard_webhooks as swh
from tests.support.admin import log_in
from tests.support.app import TEST_SECRET_KEY, add_connection, make_settings, run_app
from tests.support.cloudelements import KEY as CE_KEY
from tests.support.cloudelements import OTHER_KEY as CE_OTHER_KEY
from tests.support.cloudelements import URL as CE_URL
from tests.support.cloudelements import event as ce_event
from tests.support.cloudelements import notification
from tests.support.cloudelements import sign as ce_sign
from tests.support.fake_smartrecruiters import sr_headers
from tests.support.hrmanager import HEX_SECRET as HRM_SECRET
from tests.support.hrmanager import URL as HRM_URL
from tests.support.hrmanager import signed as hrm_signed
from tests.support.icims import (
    BASIC_PASSWORD,
    BASIC_USER,
    CLIENT_ID,
    CLIENT_SECRET,
    HMAC_SECRET,
    URL,
    add_icims,
    basic_header,
    error_of,
    icims_hmac_headers,
    icims_options,
    icims_secrets,
    payload,
)
from tests.support.keldair import SECRET as KELDAIR_SECRET
from tests.support.keldair import URL as KELDAIR_URL
from tests.support.keldair import event, signed
from tests.support.smartrecruiters import KEY_A as SR_KEY
from tests.support.smartrecruiters import URL as SR_URL

PER_CLIENT, PER_ADDRESS, BLOCK_S = 3, 5, 2.0
OTHER_ADDRESS = ("10.0.0.7", 1234)
# A secret one character short of the minimum.
SHORT = "q7Zr" * 7 + "abc"
# 23 bytes: 31 base64 characters and one "=", a byte short of the spec's 24.
SHORT_WHSEC = "whsec_" + base64.b64encode(b"k" * 23).decode()


@dataclass
class Guarded:
    """The app under small limits: a client at the default test address and one elsewhere."""

    app: FastAPI
    client: httpx.AsyncClient
    other: httpx.AsyncClient

    @property
    def services(self) -> Services:
        services: Services = self.app.state.services
        return services


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Guarded]:
    """The app with its lifespan running, reachable from two addresses."""
    app = create_app(settings)
    async for client in run_app(app):
        transport = httpx.ASGITransport(app=app, client=OTHER_ADDRESS)
        async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as other:
            yield Guarded(app, client, other)


def limits(servers: tuple[str, str], **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "auth_failure_limit_per_client": PER_CLIENT,
        "auth_failure_limit_per_address": PER_ADDRESS,
        "auth_block_s": BLOCK_S,
        **overrides,
    }
    return make_settings(*servers, **values)


@pytest.fixture
async def guarded(services: Services, servers: tuple[str, str]) -> AsyncIterator[Guarded]:
    """Acme on iCIMS and KeldairHR, served under small limits."""
    await add_icims(services)
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [KELDAIR_SECRET]}
    )
    async with serve(limits(servers)) as served:
        yield served


async def post_basic(
    client: httpx.AsyncClient, user: str = BASIC_USER, password: str = BASIC_PASSWORD
) -> httpx.Response:
    body = orjson.dumps(payload("WorkFlowStatusChangeEvent"))
    headers = {"content-type": "application/json"} | basic_header(user, password)
    return await client.post(URL, content=body, headers=headers)


def partial_call(call: Callable[..., Awaitable[httpx.Response]], credential: Any) -> Call:
    """``call`` with its credential (a secret, or whether the right one) bound."""

    async def bound(served: Guarded, client: httpx.AsyncClient, n: int) -> httpx.Response:
        return await call(served, client, n, credential)

    return bound


def assert_blocked(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    wait = int(response.headers["retry-after"])
    assert 1 <= wait <= BLOCK_S


# --- iCIMS events ----------------------------------------------------------------------------


async def test_a_guessed_basic_password_is_blocked_then_the_block_ends(guarded: Guarded) -> None:
    for attempt in range(PER_CLIENT):
        response = await post_basic(guarded.client, password=f"guess-{attempt}")
        assert response.status_code == 401, response.text
    tipping = await post_basic(guarded.client, password="guess-last")
    assert_blocked(tipping)
    # iCIMS's error shape, and nothing of what was presented.
    error = error_of(tipping)
    assert "guess-last" not in tipping.text and BASIC_PASSWORD not in tipping.text
    assert "too many failed authentication" in error["debugErrorMessage"].lower()
    # While blocked, every further guess of the username is refused, from any address.
    for client in (guarded.client, guarded.other):
        assert_blocked(await post_basic(client, password="guess-again"))

    # Once the block ends, a guess is a plain 401 again (from the address that has not used up
    # its own budget).
    await asyncio.sleep(BLOCK_S + 0.2)
    after = await post_basic(guarded.other, password="guess-after")
    assert after.status_code == 401, after.text


async def test_the_right_basic_password_passes_while_its_username_is_blocked(
    guarded: Guarded,
) -> None:
    """A Basic username is no secret: guesses against it from one address must not lock its
    owner out, wherever the owner sends from."""
    for attempt in range(PER_ADDRESS + 1):
        await post_basic(guarded.client, password=f"guess-{attempt}")
    # The username and the address are both blocked now.
    assert_blocked(await post_basic(guarded.other, password="guess-elsewhere"))
    for client in (guarded.client, guarded.other):
        right = await post_basic(client)
        assert right.status_code == 200, right.text
    assert_blocked(await post_basic(guarded.client, password="guess-still"))


async def test_wrong_oauth_client_secrets_are_blocked_in_the_oauth_shape(
    guarded: Guarded,
) -> None:
    async def token(secret: str) -> httpx.Response:
        return await guarded.client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, secret),
        )

    for attempt in range(PER_CLIENT):
        response = await token(f"guess-{attempt}")
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"
    blocked = await token("guess-last")
    assert_blocked(blocked)
    body = blocked.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == "temporarily_unavailable"
    assert blocked.headers["cache-control"] == "no-store"
    assert "guess-last" not in blocked.text and "access_token" not in blocked.text

    # The client id is no secret: its owner still gets tokens, from this address or another,
    # at once, while the guesses go on being refused.
    for client in (guarded.client, guarded.other):
        issued = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
        assert issued.status_code == 200, issued.text
        assert issued.json()["access_token"]
    assert_blocked(await token("guess-again"))


async def test_bogus_usernames_block_their_address_for_failures_only(guarded: Guarded) -> None:
    statuses = [
        (await post_basic(guarded.client, user=f"nobody-{i}", password="x")).status_code
        for i in range(30)
    ]
    # Each username is new, so only the address limit can stop this.
    assert statuses == [401] * PER_ADDRESS + [429] * (30 - PER_ADDRESS)

    # The blocked address is an ATS's shared egress as likely as an attacker: a sender there
    # with the right credentials is accepted, and so is one elsewhere.
    for client in (guarded.client, guarded.other):
        response = await post_basic(client)
        assert response.status_code == 200, response.text


async def test_a_bearer_token_cannot_be_guessed_past_the_address_limit(
    guarded: Guarded,
) -> None:
    body = orjson.dumps(payload("WorkFlowStatusChangeEvent"))
    statuses = []
    for i in range(PER_ADDRESS + 2):
        headers = {"content-type": "application/json", "authorization": f"Bearer forged.{i}.x"}
        statuses.append((await guarded.client.post(URL, content=body, headers=headers)).status_code)
    assert statuses == [401] * PER_ADDRESS + [429, 429]


# --- KeldairHR -------------------------------------------------------------------------------


async def test_bad_keldair_signatures_block_the_address_for_failures_only(guarded: Guarded) -> None:
    wrong = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    statuses = []
    for i in range(PER_ADDRESS + 1):
        body = orjson.dumps(event())
        response = await guarded.client.post(
            KELDAIR_URL, content=body, headers=signed(body, secret=wrong, msg_id=f"msg_{i}")
        )
        statuses.append(response.status_code)
    assert statuses == [401] * PER_ADDRESS + [429]
    blocked = response.json()
    assert blocked["error"]["code"] == "too_many_failures"
    assert 1 <= int(response.headers["retry-after"]) <= BLOCK_S

    # A correctly signed event is accepted from the blocked address (an ATS's shared egress)
    # and from anywhere else: the tenant is not locked either.
    for n, client in enumerate((guarded.client, guarded.other)):
        body = orjson.dumps(event())
        good = signed(body, msg_id=f"msg_good{n}")
        response = await client.post(KELDAIR_URL, content=body, headers=good)
        assert response.status_code == 200, response.text


# --- Right credentials are never refused nor held, on every route -------------------------

Call = Callable[[Guarded, httpx.AsyncClient, int], Awaitable[httpx.Response]]
WRONG_KELDAIR = "whsec_" + base64.b64encode(b"w" * 32).decode()


@dataclass(frozen=True)
class Route:
    """One authenticated route: how to set it up and call it with right or wrong credentials."""

    setup: Callable[[Services], Awaitable[object]]
    right: Call
    wrong: Call
    accepted: int


async def keldair_call(served: Guarded, client: httpx.AsyncClient, n: int, secret: str) -> Any:
    body = orjson.dumps(event())
    headers = signed(body, secret=secret, msg_id=f"msg_{secret[-4:]}_{n}")
    return await client.post(KELDAIR_URL, content=body, headers=headers)


async def hrmanager_call(served: Guarded, client: httpx.AsyncClient, n: int, key: bytes) -> Any:
    body = orjson.dumps({"event": "candidate_created", "candidateId": n, "nonce": uuid4().hex})
    return await client.post(HRM_URL, content=body, headers=hrm_signed(body, key))


async def sr_call(served: Guarded, client: httpx.AsyncClient, n: int, key: str) -> Any:
    body = orjson.dumps({"id": f"c-{n}"})
    headers = sr_headers([key], body, event_name="candidate.created", event_id=uuid4().hex)
    return await client.post(SR_URL, content=body, headers=headers)


async def ce_call(served: Guarded, client: httpx.AsyncClient, n: int, key: str) -> Any:
    body = orjson.dumps(notification(ce_event(f"c-{n}"), event_id=uuid4().hex))
    headers = {"Elements-Webhook-Signature": ce_sign(body, key), "content-type": "application/json"}
    return await client.post(CE_URL, content=body, headers=headers)


async def icims_hmac_call(served: Guarded, client: httpx.AsyncClient, n: int, secret: str) -> Any:
    body = orjson.dumps(payload("WorkFlowStatusChangeEvent", newStatus=f"S{n}"))
    return await client.post(URL, content=body, headers=icims_hmac_headers(body, secret=secret))


async def token_call(served: Guarded, client: httpx.AsyncClient, n: int, secret: str) -> Any:
    form = {"grant_type": "client_credentials"}
    return await client.post("/oauth/token", data=form, auth=(CLIENT_ID, secret))


async def admin_key(services: Services) -> str:
    return (await keys.create(services.engine, "ops")).key


async def admin_call(served: Guarded, client: httpx.AsyncClient, n: int, right: bool) -> Any:
    key = served.app.state.right_key if right else keys.new_key()
    return await client.get("/v1/admin/tenants", headers={"authorization": f"Bearer {key}"})


async def console_call(served: Guarded, client: httpx.AsyncClient, n: int, right: bool) -> Any:
    # Logged out first: the login form redirects a session away.
    client.cookies.clear()
    return await log_in(client, served.app.state.right_key if right else keys.new_key())


def keldair_setup(services: Services) -> Awaitable[None]:
    return add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [KELDAIR_SECRET]}
    )


ROUTES = {
    "keldair": Route(
        keldair_setup,
        partial_call(keldair_call, KELDAIR_SECRET),
        partial_call(keldair_call, WRONG_KELDAIR),
        200,
    ),
    "hrmanager": Route(
        lambda services: add_connection(
            services, tenant="acme", source="hrmanager", secrets={"signing_secrets": [HRM_SECRET]}
        ),
        partial_call(hrmanager_call, bytes.fromhex(HRM_SECRET)),
        partial_call(hrmanager_call, b"not-the-hr-manager-secret-of-acme-000"),
        200,
    ),
    "smartrecruiters": Route(
        lambda services: add_connection(
            services, tenant="acme", source="smartrecruiters", secrets={"signing_keys": [SR_KEY]}
        ),
        partial_call(sr_call, SR_KEY),
        partial_call(sr_call, "not-a-key-of-this-tenant-0000000000"),
        202,
    ),
    "cloudelements": Route(
        lambda services: add_connection(
            services, tenant="acme", source="cloudelements", secrets={"signature_keys": [CE_KEY]}
        ),
        partial_call(ce_call, CE_KEY),
        partial_call(ce_call, CE_OTHER_KEY),
        200,
    ),
    "icims-basic": Route(
        add_icims,
        lambda served, client, n: post_basic(client),
        lambda served, client, n: post_basic(client, password=f"guess-{n}"),
        200,
    ),
    "icims-hmac": Route(
        add_icims,
        partial_call(icims_hmac_call, HMAC_SECRET),
        partial_call(icims_hmac_call, "not-the-hmac-secret-of-acme-000000000"),
        200,
    ),
    "icims-oauth": Route(
        add_icims,
        partial_call(token_call, CLIENT_SECRET),
        partial_call(token_call, "not-the-oauth-secret-of-acme-0000000"),
        200,
    ),
    "admin-key": Route(
        admin_key, partial_call(admin_call, True), partial_call(admin_call, False), 200
    ),
    "console-login": Route(
        admin_key, partial_call(console_call, True), partial_call(console_call, False), 303
    ),
}


@pytest.mark.parametrize("name", list(ROUTES))
async def test_right_credentials_pass_at_once_from_a_blocked_address_and_identity(
    services: Services, servers: tuple[str, str], name: str
) -> None:
    """Wrong guesses from one address block it (and the identity they name); the right
    credentials, from that address or another, are accepted at once, never held, while
    further guesses are still refused and held."""
    route = ROUTES[name]
    made = await route.setup(services)
    settings = limits(servers, auth_failure_delay_s=0.2, auth_failure_delay_after=0)
    async with serve(settings) as served:
        served.app.state.right_key = made
        guard = served.services.guard
        guesses = [(await route.wrong(served, served.client, n)).status_code for n in range(6)]
        assert guesses[:PER_CLIENT] == [401] * PER_CLIENT and guesses[-1] == 429, guesses

        for n, client in enumerate((served.client, served.other)):
            right = await route.right(served, client, 100 + n)
            assert right.status_code == route.accepted, right.text
        # Every guess was held, and nothing else.
        assert guard.held_total == len(guesses)

        again = await route.wrong(served, served.client, 200)
        assert again.status_code == 429 and guard.held_total == len(guesses) + 1


async def test_a_body_refused_after_its_credentials_passed_is_never_held(
    services: Services, servers: tuple[str, str]
) -> None:
    """A sender whose credentials are right but whose body is not JSON is refused by the
    route, at once: the guard holds only requests that did not authenticate."""
    await add_icims(services)
    await add_connection(
        services, tenant="acme", source="hrmanager", secrets={"signing_secrets": [HRM_SECRET]}
    )
    settings = limits(servers, auth_failure_delay_s=0.2, auth_failure_delay_after=0)
    broken = b'{"not json'
    async with serve(settings) as served:
        guard = served.services.guard
        # The address has failed: its next refusals are held.
        assert (await post_basic(served.client, password="guess")).status_code == 401
        icims = await served.client.post(
            URL, content=broken, headers={"content-type": "application/json"} | basic_header()
        )
        assert icims.status_code == 400, icims.text
        hrm = await served.client.post(
            HRM_URL, content=broken, headers=hrm_signed(broken, bytes.fromhex(HRM_SECRET))
        )
        assert hrm.status_code == 400, hrm.text
        # Only the failed guess was held.
        assert guard.held_total == 1


async def test_a_flood_of_failures_from_a_real_senders_address_refuses_and_holds_none_of_it(
    services: Services, servers: tuple[str, str]
) -> None:
    """An ATS sends for all its customers from shared addresses, and any customer can point a
    webhook with a wrong secret, or at an unknown tenant, at us from there: the correctly
    signed events from that same address are all accepted, none held, through the flood."""
    await keldair_setup(services)
    settings = limits(
        servers, auth_failure_delay_s=0.2, auth_failure_delay_after=1, auth_block_s=60
    )
    unknown_url = KELDAIR_URL.replace("/acme/", "/nobody/")
    async with serve(settings) as served:
        guard = served.services.guard
        flood: list[int] = []
        real: list[int] = []
        for n in range(3 * PER_ADDRESS):
            body = orjson.dumps(event())
            headers = signed(body, secret=WRONG_KELDAIR, msg_id=f"msg_bad{n}")
            url = unknown_url if n % 2 else KELDAIR_URL
            flood.append((await served.client.post(url, content=body, headers=headers)).status_code)
            real.append((await keldair_call(served, served.client, n, KELDAIR_SECRET)).status_code)
        assert real == [200] * len(real)
        assert set(flood) == {401, 429} and flood[-1] == 429
        # The flood was held, all but its first answer, and none of the real events was.
        assert guard.held_total == len(flood) - 1


async def test_a_failing_address_gets_its_refusals_held_and_its_block_closes_the_connection(
    services: Services, servers: tuple[str, str]
) -> None:
    """Past the first failures an address's refusals are held, whatever was wrong (an unknown
    tenant and a bad signature alike), so a sender that waits for answers cannot drive them
    fast; its 429 closes the connection. Another address's good events are not slowed."""
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [KELDAIR_SECRET]}
    )
    # An unheld refusal is compared with held ones: the first request of a fresh service
    # (its connections opened) took 0.39 s on a loaded machine, so the delay is well above it.
    delay_s = 1.0
    settings = limits(
        servers, auth_failure_delay_s=delay_s, auth_failure_delay_after=2, auth_block_s=5
    )
    wrong = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    unknown_url = KELDAIR_URL.replace("/acme/", "/nobody/")
    async with serve(settings) as served:

        async def refused(url: str, i: int) -> tuple[httpx.Response, float]:
            body = orjson.dumps(event())
            started = time.monotonic()
            response = await served.client.post(
                url, content=body, headers=signed(body, secret=wrong, msg_id=f"msg_h{i}")
            )
            return response, time.monotonic() - started

        answers = [await refused(KELDAIR_URL if i % 2 else unknown_url, i) for i in range(5)]
        assert [r.status_code for r, _ in answers] == [401] * 5
        # Held ones take the delay at least; the first two are answered sooner than any held
        # one (compared with each other, not with a clock a loaded machine slows).
        held = [t for _, t in answers[2:]]
        assert all(t >= 0.75 * delay_s for t in held)
        assert max(t for _, t in answers[:2]) < min(held)

        blocked, took = await refused(KELDAIR_URL, 6)
        assert blocked.status_code == 429 and took >= 0.75 * delay_s
        assert blocked.headers["connection"] == "close"

        body = orjson.dumps(event())
        started = time.monotonic()
        good = await served.other.post(
            KELDAIR_URL, content=body, headers=signed(body, msg_id="msg_good")
        )
        assert good.status_code == 200, good.text
        assert time.monotonic() - started < min(held)


async def test_bodies_refused_before_authentication_are_held_but_never_block(
    services: Services, servers: tuple[str, str]
) -> None:
    """A gzip bomb is inflated to its cap before its signature can be checked (the signature
    may cover the inflated body) and answered 413; repeated, such refusals are held like
    failed credentials, so they are no cheaper to flood with, but they never block the
    address: its correctly signed events still go through."""
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [KELDAIR_SECRET]}
    )
    # Inflating the bomb to its cap takes CPU time a loaded machine stretches; the delay is
    # long enough that a held answer still comes after every unheld one.
    delay_s = 1.0
    settings = limits(servers, auth_failure_delay_s=delay_s, auth_failure_delay_after=2)
    bomb = gzip.compress(b"0" * (8 * 2**20), compresslevel=9)
    wrong = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    async with serve(settings) as served:
        took = []
        for i in range(PER_ADDRESS + 2):
            headers = swh.signed_headers(f"msg_bomb{i}", bomb, wrong, time.time())
            started = time.monotonic()
            response = await served.client.post(
                KELDAIR_URL, content=bomb, headers={**headers, "content-encoding": "gzip"}
            )
            took.append(time.monotonic() - started)
            assert response.status_code == 413, response.text
        assert all(t >= 0.75 * delay_s for t in took[2:])
        assert max(took[:2]) < min(took[2:])

        body = orjson.dumps(event())
        good = await served.client.post(
            KELDAIR_URL, content=body, headers=signed(body, msg_id="msg_after_bombs")
        )
        assert good.status_code == 200, good.text


# --- Defect 5: a flood of unknown customerIds ------------------------------------------------

FLOOD = 500
# Requests in flight at once.
CONCURRENCY = 25
# Each attempt is checked, blocked address or not: its HMAC user, then its customerId.
LOOKUPS_PER_ATTEMPT = 2


async def asgi_post(app: FastAPI, path: str, headers: dict[str, str], body: bytes) -> int:
    """POST straight to the ASGI app from 127.0.0.1; the status it answers.

    For the flood only: httpx's ASGITransport costs about what the app does per request
    (half of it a failed import it retries every time), which would double the test's time.
    """
    sent = headers | {"host": "hirehook.test", "content-length": str(len(body))}
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "client": ("127.0.0.1", 123),
        "server": ("hirehook.test", 80),
        "headers": [(k.encode(), v.encode()) for k, v in sent.items()],
    }
    messages: list[dict[str, Any]] = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def routed_hmac_headers(i: int) -> dict[str, str]:
    """HMAC from a user no connection knows, so the request is routed by its customerId."""
    return {
        "content-type": "application/json",
        "x-icims-date": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime()),
        "x-icims-content-sha256": hashlib.sha256(str(i).encode()).hexdigest(),
        "authorization": (
            f"x-icims-v1-hmac-sha256 user=intruder-{i},"
            "signedheaders=content-type;host;x-icims-content-sha256;x-icims-date,"
            f"signature={'0' * 64}"
        ),
    }


async def test_a_flood_of_unknown_customer_ids_costs_a_lookup_per_new_id_and_never_evicts(
    services: Services, servers: tuple[str, str]
) -> None:
    """Every attempt's credentials are checked, a blocked address's too (its right ones must
    pass), so each unknown id costs its lookups once; then it is a cached miss, and the flood
    never evicts the configuration of a tenant that is really sending."""
    await add_icims(services)
    # The connection cache on, as in production; the block outlasts the flood; and a test
    # machine busy with the flood must not look like a Redis outage (the guard fails open).
    settings = limits(servers, connection_cache_ttl_s=600, auth_block_s=600, redis_timeout_s=5.0)
    real_answers: list[int] = []
    answers: dict[int, int] = {}
    async with serve(settings) as served:
        store = served.services.connections

        async def real(n: int) -> int:
            body = payload("WorkFlowStatusChangeEvent", newStatus=f"C{n}")
            response = await served.other.post(
                URL,
                content=orjson.dumps(body),
                headers={"content-type": "application/json"} | basic_header(),
            )
            return response.status_code

        async def bogus(i: int) -> None:
            body = orjson.dumps(payload("WorkFlowStatusChangeEvent", customer=f"bogus-{i}"))
            status = await asgi_post(served.app, URL, routed_hmac_headers(i), body)
            answers[status] = answers.get(status, 0) + 1

        async def flood() -> None:
            for start in range(0, FLOOD, CONCURRENCY):
                await asyncio.gather(*(bogus(i) for i in range(start, start + CONCURRENCY)))

        assert await real(0) == 200
        real_lookups = store.queries
        # The real sender keeps posting, one event after another, while the flood lasts.
        flooding = asyncio.create_task(flood())
        while not flooding.done():
            real_answers.append(await real(len(real_answers) + 1))
            await asyncio.sleep(0.05)
        await flooding

        assert len(real_answers) > 1 and set(real_answers) == {200}
        assert sum(answers.values()) == FLOOD and set(answers) == {401, 429}
        assert answers[401] <= PER_ADDRESS + CONCURRENCY
        flood_lookups = store.queries - real_lookups
        assert flood_lookups <= LOOKUPS_PER_ATTEMPT * FLOOD
        # The same ids again cost nothing: every one is a cached miss now.
        await flood()
        assert store.queries - real_lookups == flood_lookups
        # The real sender cost none: answered from the cache all along, and still, so its
        # connection was never evicted.
        assert await real(len(real_answers) + 1) == 200
        assert store.queries - real_lookups == flood_lookups
    async with services.engine.connect() as conn:
        recorded = (await conn.execute(text("SELECT count(*) FROM record"))).scalar_one()
    assert recorded == len(real_answers) + 2


# --- Weak secrets ----------------------------------------------------------------------------


def icims_with(**secrets_: Any) -> ConnectionSpec:
    options = icims_options()
    if "api_client_secret" in secrets_:
        options["api"] = {"client_id": "vendor", "token_url": "https://login.example/token"}
    return ConnectionSpec(
        source="icims", account="1234", options=options, secrets=icims_secrets(**secrets_)
    )


@pytest.mark.parametrize(
    ("connection", "field"),
    [
        (icims_with(basic_password=SHORT), "secrets.basic_password"),
        (icims_with(hmac_secrets=["h" * 40, SHORT]), "secrets.hmac_secrets[1]"),
        (icims_with(oauth_client_secrets=[SHORT]), "secrets.oauth_client_secrets[0]"),
        (icims_with(api_client_secret=SHORT), "secrets.api_client_secret"),
        (
            ConnectionSpec(source="keldair", secrets={"signing_secrets": [SHORT_WHSEC]}),
            "secrets.signing_secrets[0]",
        ),
    ],
    ids=["basic", "hmac", "oauth", "api", "keldair"],
)
async def test_a_secret_under_32_characters_is_refused_at_load(
    services: Services, connection: ConnectionSpec, field: str
) -> None:
    spec = TenantsFile(tenant=[TenantSpec(slug="acme", name="Acme", connection=[connection])])
    with pytest.raises(ValueError, match="at least 32 characters") as caught:
        await apply_tenants(spec, engine=services.engine, cipher=services.cipher)
    message = str(caught.value)
    assert field in message and "tenant 'acme'" in message
    assert SHORT not in message and SHORT_WHSEC[6:].rstrip("=") not in message
    async with services.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM connection"))).scalar_one() == 0


async def test_a_short_destination_secret_is_refused_at_load(services: Services) -> None:
    spec = TenantSpec(
        slug="acme",
        name="Acme",
        destination=DestinationSpec(url="https://hooks.vendor.example/x", secret=SHORT_WHSEC),
    )
    with pytest.raises(ValueError, match=r"destination\.secret must be at least 32") as caught:
        await apply_tenants(
            TenantsFile(tenant=[spec]), engine=services.engine, cipher=services.cipher
        )
    assert SHORT_WHSEC[6:].rstrip("=") not in str(caught.value)


def test_a_whsec_secret_of_24_bytes_is_enough() -> None:
    from app.schemas import keldair_config

    enough = "whsec_" + base64.b64encode(b"k" * 24).decode()
    keldair_config.check({}, {"signing_secrets": [enough]})
    with pytest.raises(ValueError, match=r"base64 part of secrets\.signing_secrets\[1\]"):
        keldair_config.check({}, {"signing_secrets": [enough, SHORT_WHSEC]})


async def test_tenants_load_refuses_a_31_character_password_naming_the_field(
    services: Services, servers: tuple[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[[tenant]]
slug = "acme"
name = "Acme"

[[tenant.connection]]
source = "icims"
account = "1234"
secrets = {{ basic_username = "icims-acme", basic_password = "{SHORT}" }}
"""
    )
    env = {
        "HIREHOOK_ENVIRONMENT": "test",
        "HIREHOOK_DATABASE_URL": servers[0],
        "HIREHOOK_REDIS_URL": servers[1],
        "HIREHOOK_SECRET_KEY": TEST_SECRET_KEY,
        "HIREHOOK_LOG_FORMAT": "console",
    }
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["tenants", "load", str(path)], env=env
    )
    assert result.exit_code == 1, result.output
    assert "secrets.basic_password must be at least 32 characters" in result.output
    assert "secrets.token_urlsafe(32)" in result.output
    assert SHORT not in result.output
    async with services.engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM connection"))).scalar_one() == 0


def test_the_demo_tenants_file_has_strong_secrets() -> None:
    from app.admin.tenants_file import check_connection, read_tenants_file
    from app.dev.demo import DEMO_TENANTS

    spec = read_tenants_file(DEMO_TENANTS)
    checked = [
        check_connection(tenant.slug, conn, conn.secrets)
        for tenant in spec.tenant
        for conn in tenant.connection
    ]
    # Every demo connection passed its source's checks (check_connection raises otherwise).
    assert len(checked) == sum(len(tenant.connection) for tenant in spec.tenant) >= 2
