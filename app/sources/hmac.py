"""Senders that sign the raw body with an HMAC in one header (Ashby, Greenhouse, ...): the
source descriptor, a sample per preset and its sender."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from app.dev.demo import demo_connection
from app.schemas import hmac_config
from app.schemas.hmac import SOURCE, parse
from app.schemas.parsed import Parsed
from app.sources import sent
from app.sources.base import Source
from app.verifiers import hmac as signatures
from app.workers import hmac as worker


def sample(preset: str, event_id: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """A sample event of ``preset``'s ATS (body and the headers beside the signature), in the
    envelope its write-ups show (docs/ats/hmac-signers.md): ``{"action", "data"}`` for Ashby,
    ``{"action", "payload"}`` for Greenhouse."""
    now = datetime.now(UTC).isoformat()
    if preset == "ashby":
        body = {
            "action": "applicationSubmit",
            "data": {
                "application": {
                    "id": event_id or str(uuid.uuid4()),
                    "createdAt": now,
                    "candidate": {"id": "cand-1001", "name": "Ada Lovelace"},
                    "job": {"id": "job-42", "title": "Analytical Engineer"},
                }
            },
        }
        return body, {}
    body = {
        "action": "new_candidate_application",
        "payload": {
            "application": {
                "id": 1001,
                "applied_at": now,
                "candidate": {"id": 2002, "first_name": "Ada", "last_name": "Lovelace"},
                "jobs": [{"id": 42, "name": "Analytical Engineer"}],
            }
        },
    }
    return body, {"Greenhouse-Event-ID": event_id or str(uuid.uuid4())}


def signed_request(
    preset: str, body: bytes, secret: str, headers: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The headers of ``body`` signed as ``preset``'s ATS signs it."""
    scheme = hmac_config.parse_options({"preset": preset})[1]
    timestamp = str(int(time.time())) if scheme.timestamp_header else None
    out = {"content-type": "application/json", **(headers or {})}
    out[scheme.signature_header] = signatures.signature(
        body,
        secret.encode(),
        algorithm=scheme.algorithm,
        encoding=scheme.encoding,
        prefix=scheme.prefix,
        signed=scheme.signed,
        timestamp=timestamp,
    )
    if scheme.timestamp_header and timestamp is not None:
        out[scheme.timestamp_header] = timestamp
    return out


def send(
    preset: Annotated[
        str | None,
        typer.Option(
            help="The sender's scheme: "
            + ", ".join(hmac_config.PRESETS)
            + "; default: the demo connection's, else ashby."
        ),
    ] = None,
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    secret: Annotated[
        str | None, typer.Option(help="Signing secret; default: the demo tenants file's.")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option(help="Event id (repeat it to see dedupe).")
    ] = None,
) -> None:
    """Send one sample event signed with an HMAC of the body, as the preset's ATS signs it."""
    if secret is None:
        found = demo_connection(SOURCE, lambda t, _c: t.get("slug") == tenant)
        if found is None:
            raise typer.BadParameter(f"no hmac secret for tenant {tenant!r}; pass --secret")
        secret = str(found[1]["secrets"]["signing_secrets"][0])
        if preset is None:
            preset = str(found[1].get("options", {}).get("preset", "ashby"))
    preset = preset or "ashby"
    if preset not in hmac_config.PRESETS:
        raise typer.BadParameter(f"--preset must be one of {', '.join(hmac_config.PRESETS)}")
    payload, headers = sample(preset, event_id)
    body = orjson.dumps(payload)
    response = sent.post(
        f"{url.rstrip('/')}/v1/hmac/{tenant}/events",
        content=body,
        headers=signed_request(preset, body, secret, headers),
        timeout=30,
    )
    sent.answered(response)
    if not response.is_success:
        raise typer.Exit(1)


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
    """Parse a quarantined event again with the connection's current options."""
    try:
        scheme = hmac_config.parse_options(options)[1]
    except ValueError as exc:
        return Parsed("unknown", known=False, problems=(str(exc),))
    return parse(payload, headers, scheme)


HMAC = Source(
    name=SOURCE,
    title="HMAC-signed webhooks (Ashby, Greenhouse, ...)",
    check=hmac_config.check,
    # Enrichment "none": the handler fetches nothing and delivers the generic event.
    handler=worker.handle,
    reparse=reparse,
    send=send,
    router="app.routers.hmac",
    paths={"/v1/hmac/": SOURCE},
    tenant_in_path=True,
    openapi_tags=(
        (
            "HMAC",
            "Webhooks signed with an HMAC of the body in one header (Ashby, Greenhouse, ...), "
            "one URL per tenant.",
        ),
    ),
)
