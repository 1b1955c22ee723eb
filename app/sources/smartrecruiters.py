"""SmartRecruiters: the source descriptor, its re-parser and its sample sender."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

import orjson
import typer

from app.clients.smartrecruiters import DEFAULT_LIMITS
from app.dev.demo import demo_connection
from app.schemas import smartrecruiters_config as sr_config
from app.schemas.parsed import Parsed
from app.schemas.smartrecruiters import APPLICATION_EVENTS, SOURCE, parse
from app.sources import sent
from app.sources.base import Source
from app.verifiers import smartrecruiters as srv
from app.workers import smartrecruiters as worker

# [C] The event version of the reference's example notification.
SAMPLE_VERSION = "v201910"


def sample(event_name: str = "application.created") -> dict[str, Any]:
    """A notification body as SmartRecruiters sends it: ids only."""
    if event_name in APPLICATION_EVENTS:
        return {"job_id": "job-42", "candidate_id": "cand-1001"}
    return {"id": "job-42" if event_name.startswith("job.") else "cand-1001"}


def signed_request(
    payload: Any,
    keys: list[str],
    *,
    event_name: str,
    event_id: str,
    event_version: str = SAMPLE_VERSION,
    link: str | None = None,
    timestamp: int | None = None,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one notification, signed with every key as SmartRecruiters signs."""
    body = orjson.dumps(payload)
    resource = event_name.split(".", maxsplit=1)[0]
    headers = {
        "content-type": "application/json",
        "event-name": event_name,
        "event-version": event_version,
        "event-id": event_id,
        "link": link or f"<https://api.smartrecruiters.com/{resource}s>; rel=self",
    }
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    headers[srv.TIMESTAMP_HEADER] = stamp
    headers[srv.SIGNATURE_HEADER] = srv.signature_header(
        [key.encode() for key in keys], stamp, body, headers
    )
    return headers, body


def send(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    key: Annotated[
        list[str] | None,
        typer.Option(help="Signing key (repeat for several); default: the demo tenants file's."),
    ] = None,
    event_name: Annotated[str, typer.Option("--event", help="Event name.")] = "application.created",
    event_id: Annotated[
        str | None, typer.Option(help="event-id header (repeat it to see dedupe).")
    ] = None,
) -> None:
    """Send one SmartRecruiters notification, signed as SmartRecruiters signs it."""
    keys = key or []
    if not keys:
        found = demo_connection(SOURCE, lambda t, _c: t.get("slug") == tenant)
        config = sr_config.parse({}, found[1].get("secrets", {})) if found else None
        keys = [k.secret.decode() for k in config.secrets.verification_keys()] if config else []
        if not keys:
            raise typer.BadParameter(f"no smartrecruiters key for tenant {tenant!r}; pass --key")
    headers, body = signed_request(
        sample(event_name), keys, event_name=event_name, event_id=event_id or str(uuid.uuid4())
    )
    response = sent.post(
        f"{url.rstrip('/')}/v1/smartrecruiters/{tenant}/events",
        content=body,
        headers=headers,
        timeout=30,
    )
    sent.answered(response, event=event_name)
    if not response.is_success:
        raise typer.Exit(1)


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
    """Parse a quarantined notification again (the event's name is in its stored headers)."""
    del options
    return parse(payload, headers.get("event-name", ""))


SMARTRECRUITERS = Source(
    name=SOURCE,
    title="SmartRecruiters",
    check=sr_config.check,
    handler=worker.handle,
    limits=DEFAULT_LIMITS,
    reparse=reparse,
    send=send,
    stored_headers=frozenset(
        {"event-id", "event-name", "event-version", "link", "smartrecruiters-timestamp"}
    ),
    router="app.routers.smartrecruiters",
    paths={"/v1/smartrecruiters/": SOURCE},
    tenant_in_path=True,
    openapi_tags=(("SmartRecruiters", "SmartRecruiters webhooks, one URL per tenant."),),
)
