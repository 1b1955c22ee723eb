"""The admin API and the console as an operator drives them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from typing import Any

import httpx
import orjson

from app.platform.settings import Settings
from app.services import Services
from tests.support.fake_ats import FakeATS, Step
from tests.support.keldair import URL, signed
from tests.support.workers import (
    HRM_SECRET,
    add_source,
    fast_settings,
    record_event,
    rows,
    run_worker,
)

ADMIN = "/v1/admin"


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


class Recorder:
    """Every admin answer a test saw, so it can grep them all for secrets at the end."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client = client
        self.key = key
        self.seen: list[str] = []

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self.client.request(method, ADMIN + path, headers=auth(self.key), **kwargs)
        self.seen.append(response.text)
        return response

    def assert_never_shown(self, *secrets: str) -> None:
        for text in self.seen:
            for secret in secrets:
                assert secret not in text


async def post_keldair(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    raw = orjson.dumps(body)
    return await client.post(
        URL, content=raw, headers={**signed(raw), "content-type": "application/json"}
    )


async def post_hrmanager(
    client: httpx.AsyncClient, body: dict[str, Any], tenant: str = "acme"
) -> uuid.UUID:
    """One HR Manager event, signed as HR Manager signs it; the record's id."""
    raw = orjson.dumps(body)
    mac = hmac.new(bytes.fromhex(HRM_SECRET), raw, hashlib.sha256).digest()
    response = await client.post(
        f"/v1/hrmanager/{tenant}/events",
        content=raw,
        headers={
            "content-type": "application/json",
            "X-Signature-Base64HmacSha256": base64.b64encode(mac).decode(),
        },
    )
    assert response.status_code == 200, response.text
    return uuid.UUID(response.json()["record_id"])


async def dead_lettered_delivery(
    services: Services, settings: Settings, fake_ats: FakeATS
) -> uuid.UUID:
    """A record enriched (its stored state ``processed``) whose delivery gave up: the
    destination answered 503 past every retry of the fast schedule."""
    fake_ats.add_sr_candidate("c-1")
    fake_ats.script.extend(Step(match="/vendor", status=503) for _ in range(4))
    conn = await add_source(services, fake_ats, "smartrecruiters", destination=True)
    rid = await record_event(services, conn, "candidate.updated", {"id": "c-1"})
    await run_worker(fast_settings(settings))
    [letter] = await rows(services, "SELECT stage FROM dead_letter WHERE resolved_at IS NULL")
    assert letter.stage == "delivery"
    return rid


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


async def log_in(client: httpx.AsyncClient, key: str) -> httpx.Response:
    form = await client.get("/console/login")
    return await client.post(
        "/console/login", data={"key": key, "csrf": csrf_of(form.text)}, follow_redirects=False
    )
