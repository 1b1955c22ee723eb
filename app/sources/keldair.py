"""KeldairHR (Standard Webhooks): the source descriptor and its sample sender."""

from __future__ import annotations

import gzip
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import orjson
import typer
from pydantic import ValidationError

from app.dev.demo import demo_connection
from app.intake.validation import describe
from app.schemas import keldair_config
from app.schemas.keldair import SOURCE, parse
from app.schemas.parsed import Parsed
from app.sources import sent
from app.sources.base import Source
from app.verifiers import standard_webhooks as swh
from app.workers import keldair as worker


def sample(event_type: str = "applicant.hired", event_id: str | None = None) -> dict[str, Any]:
    """A KeldairHR event in its documented envelope (docs/ats/keldairhr.md)."""
    now = datetime.now(UTC).isoformat()
    data: dict[str, Any]
    if event_type == "onboarding_file.completed":
        data = {"id": f"of_{uuid.uuid4().hex[:10]}", "applicantId": "ap_1001", "completedAt": now}
    else:
        data = {
            "id": "ap_1001",
            "firstName": "Ada",
            "lastName": "Lovelace",
            "email": "ada@example.com",
            "jobId": "job_42",
            "hiredAt": now,
        }
    return {
        "id": event_id or str(uuid.uuid4()),
        "type": event_type,
        "version": "2022-02-23",
        "dateOccurred": now,
        "data": data,
    }


def signed_request(
    payload: dict[str, Any], secret: str, *, gzip_body: bool = False
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one event signed as a Standard Webhooks sender signs it."""
    body = orjson.dumps(payload)
    headers = swh.signed_headers(str(payload.get("id", uuid.uuid4())), body, secret, time.time())
    if gzip_body:
        headers["content-encoding"] = "gzip"
        return headers, gzip.compress(body)
    return headers, body


def post(
    url: str, payload: dict[str, Any], secret: str, *, gzip_body: bool = False
) -> httpx.Response:
    """POST one signed event to ``url``."""
    headers, content = signed_request(payload, secret, gzip_body=gzip_body)
    return sent.post(url, content=content, headers=headers, timeout=30)


def send(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    secret: Annotated[
        str | None, typer.Option(help="whsec_ secret; default: the demo tenants file's.")
    ] = None,
    event_type: Annotated[str, typer.Option("--type", help="Event type.")] = "applicant.hired",
    event_id: Annotated[
        str | None, typer.Option(help="Event id (repeat it to see dedupe).")
    ] = None,
    gzip_body: Annotated[bool, typer.Option("--gzip", help="Send gzip'd.")] = False,
) -> None:
    """Send one KeldairHR event signed with Standard Webhooks."""
    if secret is None:
        found = demo_connection(SOURCE, lambda t, _c: t.get("slug") == tenant)
        if found is None:
            raise typer.BadParameter(f"no keldair secret for tenant {tenant!r}; pass --secret")
        secret = str(found[1]["secrets"]["signing_secrets"][0])
    response = post(
        f"{url.rstrip('/')}/v1/keldair/{tenant}/events",
        sample(event_type, event_id),
        secret,
        gzip_body=gzip_body,
    )
    sent.answered(response)
    if not response.is_success:
        raise typer.Exit(1)


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
    """Parse a quarantined event again with the connection's current mapping."""
    del headers
    try:
        opts = keldair_config.KeldairOptions.model_validate(options)
    except ValidationError as exc:
        return Parsed("unknown", known=False, problems=(f"options: {describe(exc)}",))
    if not isinstance(payload, dict):
        return Parsed("unknown", known=False, problems=("the payload is not a JSON object",))
    return parse(payload, type_aliases=opts.type_aliases, data_aliases=opts.data_aliases)


KELDAIR = Source(
    name=SOURCE,
    title="KeldairHR (Standard Webhooks)",
    check=keldair_config.check,
    handler=worker.handle,
    reparse=reparse,
    send=send,
    stored_headers=frozenset({"webhook-id", "webhook-timestamp"}),
    router="app.routers.keldair",
    paths={"/v1/keldair/": SOURCE},
    tenant_in_path=True,
    openapi_tags=(("KeldairHR", "Standard Webhooks events, one URL per tenant."),),
)
