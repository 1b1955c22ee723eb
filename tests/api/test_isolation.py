"""Tenant isolation on every source: tenant A's credentials never record an event under tenant
B, and the same event sent to both is two records, each tenant answered with its own.

The only route that reads a record back is the duplicate replay (a repeat is answered with the
stored first answer), so "never read B's records" is checked there: a repeat to A replays A's
answer, never B's, even when both hold an event with the same dedupe key.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.services import Services
from app.sources import cloudelements, hrmanager, keldair, smartrecruiters
from app.sources.icims import IcimsCredentials, icims_request, icims_sample
from app.verifiers import cloudelements as ce_signatures
from tests.support.app import add_connection

# A request for one event: (path, headers, body), built with one tenant's credentials.
Build = Callable[[str, dict[str, Any], str], tuple[str, dict[str, str], bytes]]


def _whsec(tag: str) -> str:
    return "whsec_" + base64.b64encode(tag.encode().ljust(32, b"0")).decode()


@dataclass(frozen=True)
class Case:
    """One source: how to connect a tenant, build its event, and sign it as that tenant."""

    source: str
    secrets: Callable[[str], dict[str, Any]]
    options: Callable[[str], dict[str, Any]]
    event: Callable[[str], dict[str, Any]]
    build: Build
    account: Callable[[str], str | None] = lambda _tenant: None


def _keldair(
    tenant: str, payload: dict[str, Any], signer: str
) -> tuple[str, dict[str, str], bytes]:
    headers, body = keldair.signed_request(payload, _whsec(signer))
    return f"/v1/keldair/{tenant}/events", headers, body


def _hrmanager(
    tenant: str, payload: dict[str, Any], signer: str
) -> tuple[str, dict[str, str], bytes]:
    headers, body = hrmanager.signed_request(payload, f"{signer}-hrm-shared-secret".encode().hex())
    return f"/v1/hrmanager/{tenant}/events", headers, body


def _smartrecruiters(
    tenant: str, payload: dict[str, Any], signer: str
) -> tuple[str, dict[str, str], bytes]:
    headers, body = smartrecruiters.signed_request(
        payload["body"],
        [f"{signer}-smartrecruiters-signing-key-000000"],
        event_name="candidate.created",
        event_id=payload["event_id"],
    )
    return f"/v1/smartrecruiters/{tenant}/events", headers, body


def _cloudelements(
    tenant: str, payload: dict[str, Any], signer: str
) -> tuple[str, dict[str, str], bytes]:
    body = orjson.dumps(payload)
    key = f"{signer}-cloud-elements-signature-key-0000".encode()
    headers = {
        "content-type": "application/json",
        "elements-webhook-signature": ce_signatures.signature(body, key),
    }
    return f"/v1/cloud-elements/{tenant}/events", headers, body


def _icims(tenant: str, payload: dict[str, Any], signer: str) -> tuple[str, dict[str, str], bytes]:
    # iCIMS has one URL for every tenant; the customerId in the body names the tenant.
    credentials = IcimsCredentials(
        hmac_user=f"icims-{signer}", hmac_secret=f"{signer}-icims-hmac-secret-000000000000"
    )
    body = {**payload, "customerId": _customer(tenant)}
    url, headers, content = icims_request(
        "http://hirehook.test", body, auth="hmac", credentials=credentials
    )
    return url.removeprefix("http://hirehook.test"), headers, content


def _customer(tenant: str) -> str:
    return {"acme": "1001", "globex": "2002"}[tenant]


CASES = [
    Case(
        "keldair",
        secrets=lambda t: {"signing_secrets": [_whsec(t)]},
        options=lambda t: {},
        event=lambda eid: keldair.sample("applicant.hired", eid),
        build=_keldair,
    ),
    Case(
        "hrmanager",
        secrets=lambda t: {
            "api_key": f"{t}-api-key",
            "signing_secrets": [f"{t}-hrm-shared-secret".encode().hex()],
        },
        options=lambda t: {"base_url": "https://api.hrmanager.example", "customer_alias": t},
        event=lambda eid: hrmanager.sample("CandidateCreated", ids={"candidate": eid}),
        build=_hrmanager,
    ),
    Case(
        "smartrecruiters",
        secrets=lambda t: {"signing_keys": [f"{t}-smartrecruiters-signing-key-000000"]},
        options=lambda t: {},
        event=lambda eid: {"event_id": eid, "body": {"id": f"cand-{eid}"}},
        build=_smartrecruiters,
    ),
    Case(
        "cloudelements",
        secrets=lambda t: {"signature_keys": [f"{t}-cloud-elements-signature-key-0000"]},
        options=lambda t: {},
        event=lambda eid: cloudelements.sample(1, eid),
        build=_cloudelements,
    ),
    Case(
        "icims",
        secrets=lambda t: {"hmac_secrets": [f"{t}-icims-hmac-secret-000000000000"]},
        options=lambda t: {"hmac_user": f"icims-{t}", "events": {"WorkFlowStatusChangeEvent": {}}},
        event=lambda eid: icims_sample(
            "WorkFlowStatusChangeEvent", "0", system_id=str(uuid.UUID(eid).int % 10**9)
        ),
        build=_icims,
        account=_customer,
    ),
]


async def _records(services: Services) -> list[tuple[str, str]]:
    async with services.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT r.id::text, t.slug FROM record r JOIN tenant t ON t.id = r.tenant_id")
        )
    return [(row[0], row[1]) for row in rows]


async def _send(
    client: httpx.AsyncClient, request: tuple[str, dict[str, str], bytes]
) -> httpx.Response:
    path, headers, body = request
    return await client.post(path, content=body, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[c.source for c in CASES])
async def test_a_tenants_credentials_never_reach_another_tenant(
    case: Case, client: httpx.AsyncClient, services: Services
) -> None:
    for tenant in ("acme", "globex"):
        await add_connection(
            services,
            tenant=tenant,
            source=case.source,
            secrets=case.secrets(tenant),
            options=case.options(tenant),
            account=case.account(tenant),
        )
    event = case.event(str(uuid.uuid4()))

    # Signed by acme, addressed to globex: refused, nothing recorded for anyone.
    crossed = await _send(client, case.build("globex", event, "acme"))
    assert 400 <= crossed.status_code < 500, crossed.text
    assert await _records(services) == []

    # The same event sent properly to each: two records, one per tenant, neither a repeat.
    to_acme = await _send(client, case.build("acme", event, "acme"))
    to_globex = await _send(client, case.build("globex", event, "globex"))
    assert to_acme.status_code < 300 and to_globex.status_code < 300, (to_acme.text, to_globex.text)
    assert "hirehook-duplicate" not in to_globex.headers
    records = dict(await _records(services))
    acme_id, globex_id = (
        to_acme.headers["hirehook-record-id"],
        to_globex.headers["hirehook-record-id"],
    )
    assert records == {acme_id: "acme", globex_id: "globex"}

    # A repeat to acme is answered with acme's own first answer, never globex's.
    again = await _send(client, case.build("acme", event, "acme"))
    assert again.headers["hirehook-duplicate"] == "true"
    assert again.headers["hirehook-record-id"] == acme_id
    # Single-event sources replay the stored bytes; a Cloud Elements batch is answered afresh,
    # marking which of its events were repeats.
    if case.source != "cloudelements":
        assert again.content == to_acme.content
    assert globex_id.encode() not in again.content

    # And acme's credentials replaying the event at globex still reach nothing of globex's.
    crossed_again = await _send(client, case.build("globex", event, "acme"))
    assert 400 <= crossed_again.status_code < 500
    assert globex_id.encode() not in crossed_again.content
    assert dict(await _records(services)) == records
