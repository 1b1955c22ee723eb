"""iCIMS requests as iCIMS sends them (signed by an HMAC implementation written from
docs/ats/icims.md alone, not by the production signer), its tenants and its answers."""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from sqlalchemy import text

from app.services import Services
from app.store import partitions
from tests.support.app import (
    add_connection,
)
from tests.support.fake_icims import FakeIcims

URL = "/v1/icims/events"


HOST = "hirehook.test"


CUSTOMER = "1234"


BASIC_USER, BASIC_PASSWORD = "icims-acme", "basic-password-acme-1-zQ4vN8rT2kWx5p"


HMAC_USER, HMAC_SECRET = "icims-acme", "hmac-secret-acme-1-Lm7cR3yH9sDq2fJw"


CLIENT_ID, CLIENT_SECRET = "acme-icims-client", "oauth-secret-acme-1-Tb6gK1nV8eXz4uPa"


SECRET_VALUES = (BASIC_PASSWORD, HMAC_SECRET, CLIENT_SECRET)


ALL_TYPES = (
    "AssessmentEvent",
    "WorkFlowStatusChangeEvent",
    "JobPostToWebEvent",
    "ViewJobWebPostEvent",
    "JobUnpostToWebEvent",
    "OnboardPortalTaskEvent",
)


LINKS = {
    "AssessmentEvent": "https://assess.example.com/start/{token}?return={returnUrl}",
    "JobPostToWebEvent": "https://jobs.example.com/postings/{systemId}?ref={token}",
    "ViewJobWebPostEvent": "https://jobs.example.com/postings/{systemId}/edit",
    "OnboardPortalTaskEvent": "https://onboard.example.com/tasks/{token}?done={returnUrl}",
}


AUTHS = ("basic", "hmac", "oauth")


def icims_options(**overrides: Any) -> dict[str, Any]:
    """Every event type set up, all three auth methods."""
    events = {t: ({"link_template": LINKS[t]} if t in LINKS else {}) for t in ALL_TYPES}
    return {"oauth_client_id": CLIENT_ID, "hmac_user": HMAC_USER, "events": events, **overrides}


def icims_secrets(**overrides: Any) -> dict[str, Any]:
    return {
        "basic_username": BASIC_USER,
        "basic_password": BASIC_PASSWORD,
        "hmac_secrets": [HMAC_SECRET],
        "oauth_client_secrets": [CLIENT_SECRET],
        **overrides,
    }


async def add_icims(
    services: Services,
    *,
    tenant: str = "acme",
    customer: str = CUSTOMER,
    options: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
) -> None:
    await add_connection(
        services,
        tenant=tenant,
        source="icims",
        account=customer,
        options=options if options is not None else icims_options(),
        secrets=secrets if secrets is not None else icims_secrets(),
    )


def payload(event_type: str, customer: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    """A documented payload for ``event_type`` (developer-community event pages)."""
    api = f"https://api.icims.com/customers/{customer}"
    body: dict[str, Any] = {"customerId": customer, "eventType": event_type}
    if event_type == "AssessmentEvent":
        body |= {
            "userId": "2468",
            "systemId": "13",
            "returnUrl": "https://careers.example.com/jobs/1209/return?step=2&lang=en",
            "links": [{"rel": "person", "title": "Candidate", "url": f"{api}/people/2468"}],
        }
    elif event_type == "WorkFlowStatusChangeEvent":
        body |= {
            "userId": "121",
            "personId": "2468",
            "jobId": "1209",
            "systemId": "13",
            "newStatus": "C51218",
            "oldStatus": "C51216",
            "links": [{"rel": "job", "title": "Job Profile", "url": f"{api}/jobs/1209"}],
        }
    elif event_type == "OnboardPortalTaskEvent":
        body |= {
            "userId": "2468",
            "systemId": "2468",
            "returnUrl": "https://onboard.example.com/portal/done?task=7",
            "incompleteUrl": "https://onboard.example.com/portal",
        }
    elif event_type == "JobPostToWebEvent":
        body |= {"userId": "121", "systemId": "1209", "portalUrl": "https://careers.example.com"}
    else:
        body |= {"userId": "121", "systemId": "1209"}
    return body | extra


def basic_header(user: str = BASIC_USER, password: str = BASIC_PASSWORD) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def icims_hmac_headers(
    hashed_body: bytes,
    *,
    user: str = HMAC_USER,
    secret: str = HMAC_SECRET,
    date: str | None = None,
    content_type: str = "application/json",
    path: str = URL,
    signed: tuple[str, ...] = ("content-type", "host", "x-icims-content-sha256", "x-icims-date"),
) -> dict[str, str]:
    """Sign as docs/ats/icims.md describes, independently of app.verifiers.icims.

    canonical = METHOD \\n path \\n query \\n sorted name:value lines \\n (empty) \\n signedheaders
    string_to_sign = algorithm \\n x-icims-date \\n hex(sha256(canonical))
    signature = hex(HMAC-SHA256(secret, string_to_sign))
    """
    date = date or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    values = {
        "content-type": content_type,
        "host": HOST,
        "x-icims-content-sha256": hashlib.sha256(hashed_body).hexdigest(),
        "x-icims-date": date,
    }
    names = sorted(signed)
    signed_headers = ";".join(names)
    lines = "\n".join(f"{name}:{values[name]}" for name in names)
    canonical = f"POST\n{path}\n\n{lines}\n\n{signed_headers}"
    to_sign = "x-icims-v1-hmac-sha256\n" + date + "\n"
    to_sign += hashlib.sha256(canonical.encode()).hexdigest()
    signature = hmac.new(secret.encode(), to_sign.encode(), hashlib.sha256).hexdigest()
    return values | {
        "authorization": (
            f"x-icims-v1-hmac-sha256 user={user},signedheaders={signed_headers},"
            f"signature={signature}"
        )
    }


async def fetch_token(
    client: httpx.AsyncClient, client_id: str = CLIENT_ID, secret: str = CLIENT_SECRET
) -> str:
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def send(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    *,
    auth: str = "basic",
    gzip_body: bool = True,
    token: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> httpx.Response:
    """POST an event the way iCIMS does: gzip'd JSON, one of the three auth methods."""
    plain = orjson.dumps(body)
    headers: dict[str, str] = {"content-type": "application/json"}
    if auth == "basic":
        headers |= basic_header()
    elif auth == "hmac":
        headers = icims_hmac_headers(plain)
    elif auth == "oauth":
        headers["authorization"] = f"Bearer {token or await fetch_token(client)}"
    content = plain
    if gzip_body:
        content = gzip.compress(plain)
        headers["content-encoding"] = "gzip"
    return await client.post(URL, content=content, headers=headers | (extra_headers or {}))


async def records(services: Services) -> list[Any]:
    async with services.engine.connect() as conn:
        # The first answer lives with the key (record_key), the rest in record.
        result = await conn.execute(
            text(
                "SELECT r.*, k.answer_status, k.answer_headers, k.answer_body "
                "FROM record r JOIN record_key k ON k.id = r.id ORDER BY r.received_at, r.id"
            )
        )
        return list(result.all())


async def outbox_count(services: Services) -> int:
    async with services.engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"userMessage", "debugErrorMessage"}, body
    error: dict[str, str] = body["error"]
    return error


async def age_records(services: Services, seconds: int) -> None:
    async with services.engine.begin() as conn:
        oldest = (await conn.execute(text("SELECT min(received_at) FROM record"))).scalar()
        if oldest is not None:
            # Aged past the first of the month, a record needs last month's partition.
            await partitions.ensure(conn, oldest - timedelta(seconds=seconds), ahead=2)
        await conn.execute(
            text("UPDATE record SET received_at = received_at - make_interval(secs => :s)"),
            {"s": seconds},
        )


API_CLIENT_ID, API_SECRET = "vendor-api-client", "vendor-api-secret-1-Us6hL3vT8mGa2rKp"


PERSON = {
    "firstname": "Ada",
    "lastname": "Lovelace",
    "email": "ada@example.com",
    "usssn": "",
}


JOB = {"jobtitle": "Analyst", "joblocation": {"id": 5, "value": "Berlin"}}


WORKFLOW = {"baseprofile": 1209, "associatedprofile": 2468, "rcf3001": {"id": "C1", "value": ""}}


def api_options(fake: FakeIcims, **overrides: Any) -> dict[str, Any]:
    return icims_options(
        api={
            "client_id": API_CLIENT_ID,
            "token_url": f"{fake.url}/oauth2/token",
            "base_url": fake.url,
        },
        **overrides,
    )
