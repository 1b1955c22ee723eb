"""Real refusals against the documented schemas: bad requests sent to every route family
(admin API, each ATS's event route, the OAuth token endpoint), each answer's status among those
its operation documents and its body valid against the schema documented for that status.
Against real PostgreSQL and Redis."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from app.admin import keys
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection, run_app
from tests.support.keldair import SECRET, signed
from tests.support.workers import fast_settings

ADMIN = "/v1/admin"
KELDAIR = "/v1/keldair/{tenant}/events"


class Checker:
    """Sends requests and checks each answer against the document's word for it."""

    def __init__(self, client: httpx.AsyncClient, doc: dict[str, Any]) -> None:
        self.client = client
        self.doc = doc
        self.seen: set[tuple[str, str, int]] = set()

    async def send(
        self, method: str, template: str, path: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        response = await self.client.request(method, path or template, **kwargs)
        operation = self.doc["paths"][template][method.lower()]
        status = str(response.status_code)
        assert status in operation["responses"], (method, template, status, response.text)
        if response.status_code >= 400:
            schema = operation["responses"][status]["content"]["application/json"]["schema"]
            validator = Draft202012Validator({**schema, "components": self.doc["components"]})
            body = response.json()
            errors = [e.message for e in validator.iter_errors(body)]
            assert not errors, (method, template, status, body, errors)
            self.seen.add((method, template, response.status_code))
        return response


@pytest.fixture
async def api(services: Services, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    # A small body cap and a short guard, so a 413 and a 429 are cheap to provoke.
    app = create_app(
        fast_settings(settings, max_body_bytes=4096, auth_failure_limit_per_address=12)
    )
    async for client in run_app(app):
        yield client


@pytest.fixture
async def check(api: httpx.AsyncClient) -> Checker:
    return Checker(api, (await api.get("/openapi.json")).json())


async def test_admin_refusals_fit_the_documented_schemas(
    check: Checker, services: Services
) -> None:
    key = {"authorization": f"Bearer {(await keys.create(services.engine, 'ops')).key}"}
    await check.send("GET", f"{ADMIN}/tenants", headers={"authorization": "Bearer nope"})
    await check.send("GET", f"{ADMIN}/tenants", params={"cursor": "\x00"}, headers=key)
    await check.send("GET", f"{ADMIN}/records", params={"cursor": "not-a-cursor"}, headers=key)
    await check.send("GET", f"{ADMIN}/tenants/{{slug}}", f"{ADMIN}/tenants/nosuch", headers=key)
    await check.send(
        "POST", f"{ADMIN}/tenants/{{slug}}/disable", f"{ADMIN}/tenants/nosuch/disable", headers=key
    )
    tenant = {"slug": "acme", "name": "Acme"}
    assert (await check.send("POST", f"{ADMIN}/tenants", json=tenant, headers=key)).is_success
    await check.send("POST", f"{ADMIN}/tenants", json=tenant, headers=key)
    await check.send("POST", f"{ADMIN}/tenants", json={"slug": "Not A Slug"}, headers=key)
    connection = {"tenant": "acme", "source": "keldair", "secrets": {"signing_secrets": [SECRET]}}
    for _ in range(2):
        await check.send("POST", f"{ADMIN}/connections", json=connection, headers=key)
    await check.send(
        "POST", f"{ADMIN}/tenants", content=b'{"slug": "' + b"a" * (2 << 20) + b'"}', headers=key
    )
    assert {status for _, _, status in check.seen} == {400, 401, 404, 409, 413}
    # The repeated connection names its cause: the one answer that carries `detail`.
    again = await check.send("POST", f"{ADMIN}/connections", json=connection, headers=key)
    assert again.status_code == 409
    assert "detail" in again.json()["error"]
    for _ in range(20):
        response = await check.send(
            "GET", f"{ADMIN}/tenants", headers={"authorization": "Bearer nope"}
        )
    assert response.status_code == 429


async def test_event_route_refusals_fit_the_documented_schemas(
    check: Checker, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    url = "/v1/keldair/acme/events"
    raw = b'{"type": "applicant.hired", '
    await check.send(
        "POST", KELDAIR, url, content=raw, headers={"content-type": "application/json"}
    )
    await check.send("POST", KELDAIR, url, content=raw, headers=signed(raw))
    await check.send("POST", KELDAIR, url, content=b"x" * 5000, headers=signed(b"x" * 5000))
    await check.send(
        "POST", KELDAIR, url, content=b"{}", headers={**signed(b"{}"), "content-encoding": "br"}
    )
    # A corrupt gzip body (400, or 401 if the signature is checked first: both documented).
    corrupt = gzip.compress(b"{}")[:-6]
    headers = {**signed(b"{}"), "content-encoding": "gzip"}
    await check.send("POST", KELDAIR, url, content=corrupt, headers=headers)
    for template in (
        "/v1/keldair/{tenant}/events/{token}",
        "/v1/hrmanager/{tenant}/events",
        "/v1/smartrecruiters/{tenant}/events",
        "/v1/cloud-elements/{tenant}/events",
        "/v1/cloud-elements/{tenant}/events/{token}",
        "/v1/hmac/{tenant}/events",
    ):
        path = template.replace("{tenant}", "nosuch").replace("{token}", "t0ken")
        response = await check.send("POST", template, path, json={"id": "1"})
        assert response.status_code in (400, 401), (template, response.text)
    await check.send("POST", "/v1/icims/events", content=b"{", headers={"authorization": "x"})
    await check.send("POST", "/v1/icims/events", json={"customerId": "1", "eventType": "x"})
    await check.send("POST", "/oauth/token", json={"grant_type": "client_credentials"})
    await check.send(
        "POST",
        "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("nobody", "wrong"),
    )
    statuses = {(t, status) for _, t, status in check.seen}
    assert {(KELDAIR, s) for s in (400, 401, 413, 415)} <= statuses
    assert {("/oauth/token", 400), ("/oauth/token", 401)} <= statuses
    assert any(t == "/v1/icims/events" for t, _ in statuses)
