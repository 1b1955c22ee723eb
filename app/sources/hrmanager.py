"""Talentech HR Manager: the source descriptor, its sample sender and its re-parser.

The sender signs as HR Manager does (``X-Signature-Base64HmacSha256`` = Base64(HMAC-SHA256(
secret, raw body)), docs/ats/hrmanager.md) and puts the User Data key where the connection reads
it. [I] The sample bodies use the first guess of app/schemas/hrmanager.py WIRE_NAMES for every
field: HR Manager's real field names are not published.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from typing import Annotated, Any

import httpx
import orjson
import typer

from app.clients.hrmanager import DEFAULT_LIMITS
from app.clients.http import verified_context
from app.dev.demo import DEMO_TENANTS, demo_connection
from app.schemas import hrmanager_config
from app.schemas.hrmanager import (
    EVENT_NAMES,
    SOURCE,
    URL_EVENT_HEADER,
    WIRE_NAMES,
    canonical_name,
    id_fields,
    parse,
)
from app.schemas.parsed import Parsed
from app.sources import sent
from app.sources.base import Source
from app.verifiers import hrmanager as hrm
from app.workers import hrmanager as worker

# The ids the samples name; the fake HR Manager API in tests serves these.
SAMPLE_IDS: dict[str, str] = {
    "candidate_id": "1001",
    "position_id": "77",
    "project_id": "501",
    "advertisement_id": "9001",
    "layout_template_id": "12",
    "questionnaire_id": "33",
    "user_id": "42",
}


def _put(payload: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = payload
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def sample(
    event_name: str,
    *,
    ids: Mapping[str, str] | None = None,
    event_in_body: bool = True,
    user_data: str | None = None,
    user_data_path: str = "UserData",
    timestamp: str | None = None,
) -> dict[str, Any]:
    """An HR Manager event body ([I] field names: the first guesses, PascalCase)."""
    named = {**SAMPLE_IDS, **(ids or {})}
    payload: dict[str, Any] = {}
    if event_in_body:
        payload[WIRE_NAMES["event"][0]] = event_name
    for field in id_fields(event_name):
        payload[WIRE_NAMES[field][0]] = named[field]
    if timestamp is not None:
        payload["Timestamp"] = timestamp
    if user_data is not None:
        _put(payload, user_data_path, user_data)
    return payload


def signed_request(
    payload: Mapping[str, Any],
    secret: str | None,
    *,
    encoding: hrm.SecretEncoding = "hex",
    gzip_body: bool = False,
) -> tuple[dict[str, str], bytes]:
    """Headers and body of one event as HR Manager sends it (unsigned without a secret).

    [I] A gzip'd body is signed before compression; Hirehook accepts either form.
    """
    body = orjson.dumps(payload)
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers[hrm.SIGNATURE_HEADER] = hrm.sign(body, hrm.decode_secret(secret, encoding))
    if gzip_body:
        headers["content-encoding"] = "gzip"
        body = gzip.compress(body)
    return headers, body


def events_url(base_url: str, tenant: str) -> str:
    """The tenant's webhook URL."""
    return f"{base_url.rstrip('/')}/v1/hrmanager/{tenant}/events"


def post(
    url: str,
    payload: Mapping[str, Any],
    secret: str | None,
    *,
    encoding: hrm.SecretEncoding = "hex",
    gzip_body: bool = False,
    url_event: str | None = None,
    http: httpx.Client | None = None,
) -> httpx.Response:
    """POST one event to ``url`` (with ``?event=`` when ``url_event`` is given)."""
    headers, content = signed_request(payload, secret, encoding=encoding, gzip_body=gzip_body)
    params = {"event": url_event} if url_event is not None else None
    if http is None:
        return sent.post(url, content=content, headers=headers, params=params, timeout=30)
    return http.post(url, content=content, headers=headers, params=params)


def send(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    tenant: Annotated[str, typer.Option(help="Tenant slug.")] = "demo",
    event: Annotated[
        str, typer.Option("--event", help="An HR Manager event name, or 'all' for the 20.")
    ] = "all",
    secret: Annotated[
        str | None, typer.Option(help="Shared secret; default: the demo tenants file's.")
    ] = None,
    secret_encoding: Annotated[
        str | None, typer.Option(help="hex or utf-8; default: the connection's.")
    ] = None,
    user_data: Annotated[
        str | None, typer.Option(help="User Data key; default: the demo tenants file's.")
    ] = None,
    in_url: Annotated[
        bool, typer.Option("--in-url", help="Name the event in ?event= instead of the body.")
    ] = False,
    candidate: Annotated[
        str | None, typer.Option(help="Candidate id (change it to see a new record).")
    ] = None,
    timestamp: Annotated[
        str | None, typer.Option(help="A Timestamp field (a new value is a new event).")
    ] = None,
    gzip_body: Annotated[bool, typer.Option("--gzip", help="Send gzip'd.")] = False,
) -> None:
    """Send HR Manager sample events, signed as HR Manager signs (default: demo secrets)."""
    names = list(EVENT_NAMES) if event == "all" else [canonical_name(event)]
    options: dict[str, Any] = {}
    secrets: dict[str, Any] = {}
    found = demo_connection(SOURCE, lambda t, _c: t.get("slug") == tenant)
    if found is not None:
        options, secrets = found[1].get("options", {}), found[1].get("secrets", {})
    elif secret is None and user_data is None:
        raise typer.BadParameter(
            f"no hrmanager connection for tenant {tenant!r} in {DEMO_TENANTS}; "
            "pass --secret and/or --user-data"
        )
    secret = secret or next(iter(secrets.get("signing_secrets", [])), None)
    user_data = user_data or secrets.get("user_data_key")
    encoding = secret_encoding or options.get("secret_encoding", "hex")
    if encoding not in ("hex", "utf-8"):
        raise typer.BadParameter("--secret-encoding is hex or utf-8")
    failed = 0
    # One client: the samples share its kept-alive connection.
    http = httpx.Client(timeout=30, verify=verified_context())
    try:
        for name in names:
            payload = sample(
                name,
                ids={"candidate_id": candidate} if candidate else None,
                event_in_body=not in_url,
                user_data=user_data,
                user_data_path=options.get("user_data_path", "UserData"),
                timestamp=timestamp,
            )
            response = post(
                events_url(url, tenant),
                payload,
                secret,
                encoding=encoding,  # type: ignore[arg-type]
                gzip_body=gzip_body,
                url_event=name if in_url else None,
                http=http,
            )
            repeat = " (repeat)" if "hirehook-duplicate" in response.headers else ""
            sent.answered(
                response, event=name, line=f"{response.status_code} {name}: {response.text}{repeat}"
            )
            failed += not response.is_success
    except (httpx.HTTPError, ValueError) as exc:
        typer.echo(f"failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    finally:
        http.close()
    if failed:
        raise typer.Exit(1)


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
    """Parse a quarantined event again with the connection's current mapping (and the event
    name its webhook URL gave, kept as the record's marker)."""
    try:
        opts = hrmanager_config.parse_options(options)
    except ValueError as exc:
        return Parsed("unknown", known=False, problems=(str(exc),))
    if not isinstance(payload, dict):
        return Parsed("unknown", known=False, problems=("the payload is not a JSON object",))
    return parse(
        payload,
        url_event=headers.get(URL_EVENT_HEADER),
        fields=opts.payload_fields,
        aliases=opts.event_aliases,
    )


HRMANAGER = Source(
    name=SOURCE,
    title="Talentech HR Manager",
    check=hrmanager_config.check,
    handler=worker.handle,
    limits=DEFAULT_LIMITS,
    reparse=reparse,
    send=send,
    payload_fields=True,
    router="app.routers.hrmanager",
    paths={"/v1/hrmanager/": SOURCE},
    tenant_in_path=True,
    openapi_tags=(("HR Manager", "Talentech HR Manager webhooks, one URL per tenant."),),
)
