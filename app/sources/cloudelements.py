"""Cloud Elements (event notifications of its element instances): descriptor and sample sender."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import orjson
import typer

from app.dev.demo import demo_connection
from app.schemas import cloudelements_config
from app.schemas.cloudelements import SOURCE
from app.schemas.cloudelements import reparse as reparse_event
from app.schemas.parsed import Parsed
from app.sources import sent
from app.sources.base import Source
from app.verifiers import cloudelements as signatures


def sample(count: int = 2, event_id: str | None = None) -> dict[str, Any]:
    """A notification as a SmartRecruiters element instance with polling sends it ([I] the
    envelope, see app/schemas/cloudelements.py)."""
    now = datetime.now(UTC)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    raw = [
        {"id": f"cand-{i}", "firstName": "Grace", "lastName": "Hopper", "updatedOn": stamp}
        for i in range(count)
    ]
    return {
        "message": {
            "eventId": event_id or uuid.uuid4().hex,
            "elementKey": "smartrecruiters",
            "instanceId": 12345,
            "events": [
                {
                    "elementKey": "smartrecruiters",
                    "objectType": "candidates",
                    "objectId": item["id"],
                    "eventType": "UPDATED",
                    "updatedDate": stamp,
                }
                for item in raw
            ],
            "raw": {"content": raw},
        }
    }


def post(url: str, payload: dict[str, Any], key: str) -> httpx.Response:
    """POST one notification signed as Cloud Elements signs it."""
    body = orjson.dumps(payload)
    headers = {
        "content-type": "application/json",
        cloudelements_config.DEFAULT_HEADER: signatures.signature(body, key.encode()),
        "elements-webhook-id": str(payload.get("message", {}).get("eventId", "")),
    }
    return sent.post(url, content=body, headers=headers, timeout=30)


def send(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    key: Annotated[
        str | None, typer.Option(help="Signature key; default: the demo tenants file's.")
    ] = None,
    events: Annotated[int, typer.Option(help="Event objects in the notification (1-20).")] = 2,
    event_id: Annotated[
        str | None, typer.Option(help="Notification id (repeat it, and the time, to see dedupe).")
    ] = None,
) -> None:
    """Send one Cloud Elements event notification, signed with the instance's key."""
    if key is None:
        found = demo_connection(SOURCE, lambda t, _c: t.get("slug") == tenant)
        if found is None:
            raise typer.BadParameter(f"no cloudelements key for tenant {tenant!r}; pass --key")
        key = str(found[1]["secrets"]["signature_keys"][0])
    started = time.monotonic()
    response = post(
        f"{url.rstrip('/')}/v1/cloud-elements/{tenant}/events",
        sample(max(1, min(events, 20)), event_id),
        key,
    )
    elapsed = time.monotonic() - started
    sent.answered(response, line=f"{response.status_code} {response.text} ({elapsed:.3f}s)")
    if not response.is_success:
        raise typer.Exit(1)


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
    """Parse a quarantined event object again with the connection's current options."""
    del headers
    try:
        opts = cloudelements_config.parse_options(options)
    except ValueError as exc:
        return Parsed("unknown", known=False, problems=(str(exc),))
    return reparse_event(payload, opts)


CLOUDELEMENTS = Source(
    name=SOURCE,
    title="Cloud Elements (event notifications)",
    check=cloudelements_config.check,
    reparse=reparse,
    send=send,
    stored_headers=frozenset({"elements-webhook-id"}),
    router="app.routers.cloudelements",
    paths={"/v1/cloud-elements/": SOURCE},
    tenant_in_path=True,
    openapi_tags=(("Cloud Elements", "Cloud Elements event notifications."),),
)
