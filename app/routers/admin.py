"""The admin API, ``/v1/admin/...``: thin HTTP over :mod:`app.admin.service`.

Every route needs an admin key (``Authorization: Bearer hh_admin_...``); failures count
against the caller's address in the brute-force guard, so keys cannot be guessed at speed.
The key is checked before anything else of the request is read: a body from a caller
without a key is never read at all, and one from a caller with a key is read up to
:data:`MAX_BODY_BYTES`. Every path, query and body string is then refused (400) if it holds
text no column can store (a NUL, a lone surrogate), before any route runs.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel

from app.admin import keys, service, subscriptions
from app.admin import schemas as s
from app.intake.payload import too_large
from app.platform.errors import AppError
from app.routers import admin_openapi
from app.routers.common import (
    ServicesDep,
    buffer_body,
    error_route,
    guarded,
    render_default,
    request_text_problem,
    security_headers,
    unstorable_text,
)
from app.routers.openapi import Responses, refusals, security

# The largest body any admin operation takes (10,000 record ids to replay are ~400 KB);
# anything longer is a 413 once this much has arrived.
MAX_BODY_BYTES = 1024 * 1024

_MEANINGS = {
    400: "The request is not valid (a parameter, the body, or a cursor); the message says why.",
    401: "No admin key, or one that is unknown or revoked.",
    404: "The tenant, connection or record named does not exist.",
    409: "It exists already (a tenant slug, a connection's tenant, source and name, or its "
    "source and account), or there is nothing to act on (a quarantined record to replay, "
    "dead letters already resolved); the message says what to do instead.",
    413: f"The body is larger than {MAX_BODY_BYTES} bytes (1 MiB).",
    429: "Too many failed authentications from this address; retry after Retry-After.",
    503: "A store Hirehook needs did not answer; nothing was changed. Retry later.",
}


def _answers(
    ok: int,
    model: Any,
    description: str,
    *refused: int,
    body: bool | type[BaseModel] = False,
) -> dict[str, Any]:
    """The decorator's ``responses`` and ``openapi_extra``: ``body`` is the route's body
    model (its examples are in :mod:`app.routers.admin_openapi`), or True for a route that
    takes none but is a POST, whose body is read (and can be too large) all the same."""
    responses: Responses = {ok: {"model": model, "description": description}}
    # Only what the route can send: any parameter (even one the route does not take) can be
    # refused, a 413 needs a body.
    sent = {400, 401, 429, *refused, *([413] if body else [])}
    errors = {**admin_openapi.ERRORS, 413: (too_large(MAX_BODY_BYTES, "request body"),)}
    responses.update(refusals(sorted(sent), meanings=_MEANINGS, errors=errors))
    extra = security(["adminKey"])
    if isinstance(body, type):
        extra.update(admin_openapi.body_examples(body))
    return {"responses": responses, "openapi_extra": extra}


async def authenticate(request: Request) -> keys.Caller:
    """The admin key's owner, or the 401 (counted by the guard).

    Replaced through ``app.dependency_overrides`` only by an app built in process for the
    host's own operator (:func:`app.main.create_app`'s ``operator``), never when served."""
    services = request.app.state.services
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    async with guarded(services, request):
        if scheme.lower() != "bearer":
            raise keys.unauthorized()
        return await keys.authenticate(services.engine, key.strip())


async def _admit(request: Request) -> None:
    """Authenticate, then read the body under the cap and refuse text no column can store."""
    identify = request.app.dependency_overrides.get(authenticate, authenticate)
    try:
        request.state.admin_caller = await identify(request)
    except AppError as exc:
        if request.headers.get("content-length", "0") != "0" or (
            "transfer-encoding" in request.headers
        ):
            # The body was never read: the connection cannot carry another request.
            exc.headers["Connection"] = "close"
        raise
    problem = request_text_problem(request)
    if problem is None and request.method in ("POST", "PUT", "PATCH"):
        raw = await buffer_body(request, MAX_BODY_BYTES)
        try:
            # Python's decoder, as FastAPI's, so the strings checked are the ones the route
            # gets. A body that does not decode is left to FastAPI to refuse.
            body = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        except RecursionError:
            # FastAPI's decoder would fail the same way, as a 500.
            problem = "the body is nested too deeply"
        else:
            problem = unstorable_text(body, "body")
    if problem is not None:
        raise AppError(400, f"The request is not valid: {problem}.", code="bad_request")


AdminRoute = error_route(render_default, admit=_admit, finish=security_headers)
"""The admin routes' class: :func:`_admit` before FastAPI reads or parses anything of the
request, :func:`~app.routers.common.security_headers` on every answer."""


async def admin_caller(request: Request) -> keys.Caller:
    """The caller :class:`AdminRoute` authenticated."""
    caller: keys.Caller = request.state.admin_caller
    return caller


CallerDep = Annotated[keys.Caller, Depends(admin_caller)]

router = APIRouter(prefix="/v1/admin", tags=["Admin"], route_class=AdminRoute)


# --- tenants ----------------------------------------------------------------------------------


@router.get("/tenants", **_answers(200, list[s.TenantView], "Every tenant."))
async def list_tenants(services: ServicesDep, caller: CallerDep) -> list[s.TenantView]:
    """List tenants."""
    return await service.list_tenants(services)


@router.post(
    "/tenants",
    status_code=201,
    **_answers(201, s.TenantDetail, "Created.", 400, 409, body=s.TenantCreate),
)
async def create_tenant(
    spec: s.TenantCreate, services: ServicesDep, caller: CallerDep
) -> s.TenantDetail:
    """Create a tenant (then add its connections)."""
    return await service.create_tenant(services, spec=spec)


@router.get("/tenants/{slug}", **_answers(200, s.TenantDetail, "The tenant.", 404))
async def show_tenant(slug: str, services: ServicesDep, caller: CallerDep) -> s.TenantDetail:
    """A tenant with its connections (secrets as names and a fingerprint) and destination."""
    return await service.show_tenant(services, slug=slug)


@router.patch(
    "/tenants/{slug}", **_answers(200, s.TenantDetail, "Updated.", 400, 404, body=s.TenantUpdate)
)
async def update_tenant(
    slug: str, spec: s.TenantUpdate, services: ServicesDep, caller: CallerDep
) -> s.TenantDetail:
    """Rename a tenant."""
    return await service.update_tenant(services, slug=slug, spec=spec)


# Each action its own operation, so the document says what each does; no body is taken.
@router.post(
    "/tenants/{slug}/enable",
    **_answers(200, s.TenantDetail, "Every connection enabled.", 404, body=True),
)
async def enable_tenant(slug: str, services: ServicesDep, caller: CallerDep) -> s.TenantDetail:
    """Enable every connection of the tenant: its senders are authenticated again. Takes no
    body."""
    return await service.set_tenant_enabled(services, slug=slug, enabled=True)


@router.post(
    "/tenants/{slug}/disable",
    **_answers(200, s.TenantDetail, "Every connection disabled.", 404, body=True),
)
async def disable_tenant(slug: str, services: ServicesDep, caller: CallerDep) -> s.TenantDetail:
    """Disable every connection of the tenant: a disabled connection authenticates nobody, so
    its senders get 401 (and retry, as their ATS does) until it is enabled again. What was
    recorded stays, and goes on being enriched and delivered. Takes no body."""
    return await service.set_tenant_enabled(services, slug=slug, enabled=False)


@router.put(
    "/tenants/{slug}/destination",
    **_answers(200, s.TenantDetail, "Set.", 400, 404, body=s.DestinationSet),
)
async def set_destination(
    slug: str, spec: s.DestinationSet, services: ServicesDep, caller: CallerDep
) -> s.TenantDetail:
    """Create or replace where the tenant's normalized events are delivered (the secret is
    write-only)."""
    return await service.set_destination(services, slug=slug, spec=spec)


# --- connections ------------------------------------------------------------------------------


@router.get("/connections", **_answers(200, list[s.ConnectionView], "Connections."))
async def list_connections(
    services: ServicesDep,
    caller: CallerDep,
    tenant: str | None = None,
    source: str | None = None,
) -> list[s.ConnectionView]:
    """List connections, optionally of one tenant or source."""
    return await service.list_connections(services, tenant=tenant, source=source)


@router.post(
    "/connections",
    status_code=201,
    **_answers(201, s.ConnectionView, "Created.", 400, 404, 409, body=s.ConnectionCreate),
)
async def create_connection(
    spec: s.ConnectionCreate, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """Create a connection; its source checks the options and secrets first."""
    return await service.create_connection(services, spec=spec)


@router.get(
    "/connections/{connection_id}", **_answers(200, s.ConnectionView, "The connection.", 400, 404)
)
async def show_connection(
    connection_id: int, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """One connection (secrets as names and a fingerprint, never their values)."""
    return await service.show_connection(services, connection_id=connection_id)


@router.patch(
    "/connections/{connection_id}",
    **_answers(200, s.ConnectionView, "Updated.", 400, 404, 409, body=s.ConnectionUpdate),
)
async def update_connection(
    connection_id: int, spec: s.ConnectionUpdate, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """Change a connection's name, account, options or enabled flag."""
    return await service.update_connection(services, connection_id=connection_id, spec=spec)


@router.post(
    "/connections/{connection_id}/payload-fields",
    **_answers(
        200,
        s.PayloadFieldsResult,
        "Set; quarantined records parsed again.",
        400,
        404,
        body=s.PayloadFieldsSet,
    ),
)
async def set_payload_fields(
    connection_id: int, spec: s.PayloadFieldsSet, services: ServicesDep, caller: CallerDep
) -> s.PayloadFieldsResult:
    """Name the body's fields (``options.payload_fields``) and parse the connection's
    quarantined records again: those that now fit go on to enrichment and delivery."""
    return await service.set_payload_fields(services, connection_id=connection_id, spec=spec)


@router.post(
    "/connections/{connection_id}/enable",
    **_answers(200, s.ConnectionView, "Enabled.", 400, 404, body=True),
)
async def enable_connection(
    connection_id: int, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """Enable one connection: its sender is authenticated again. Takes no body."""
    return await service.set_connection_enabled(services, connection_id=connection_id, enabled=True)


@router.post(
    "/connections/{connection_id}/disable",
    **_answers(200, s.ConnectionView, "Disabled.", 400, 404, body=True),
)
async def disable_connection(
    connection_id: int, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """Disable one connection: it authenticates nobody, so its sender gets 401 until it is
    enabled again; what was recorded stays. Takes no body."""
    return await service.set_connection_enabled(
        services, connection_id=connection_id, enabled=False
    )


@router.put(
    "/connections/{connection_id}/secrets",
    **_answers(200, s.ConnectionView, "Rotated.", 400, 404, body=s.SecretsRotate),
)
async def rotate_secrets(
    connection_id: int, spec: s.SecretsRotate, services: ServicesDep, caller: CallerDep
) -> s.ConnectionView:
    """Replace a connection's secrets (write-only: the answer names them, never shows them)."""
    return await service.rotate_secrets(services, connection_id=connection_id, spec=spec)


# --- records and replay -----------------------------------------------------------------------


@router.get("/records", **_answers(200, s.RecordPage, "A page of records, newest first.", 400, 404))
async def list_records(
    services: ServicesDep,
    caller: CallerDep,
    q: Annotated[s.RecordQuery, Query()],
    limit: Annotated[int, Query(ge=1, le=service.PAGE_MAX)] = 50,
    cursor: str | None = None,
) -> s.RecordPage:
    """Records by tenant, source, event type, state, time received and subject ids."""
    return await service.list_records(services, q=q, limit=limit, cursor=cursor)


@router.get("/records/{record_id}", **_answers(200, s.RecordDetail, "The record.", 400, 404))
async def show_record(
    record_id: uuid.UUID, services: ServicesDep, caller: CallerDep
) -> s.RecordDetail:
    """One record: headers, raw body, payload, the answer given, enrichment, delivery, dead
    letters and replays."""
    return await service.show_record(services, record_id=record_id)


@router.post(
    "/records/{record_id}/replay",
    **_answers(200, s.ReplayResult, "Replayed.", 400, 404, 409, body=True),
)
async def replay_record(
    record_id: uuid.UUID, services: ServicesDep, caller: CallerDep
) -> s.ReplayResult:
    """Run one record's enrichment (and a failed delivery) again."""
    return await service.replay(
        services, actor=caller.name, request=s.ReplayRequest(record_ids=[record_id])
    )


@router.post(
    "/replays",
    **_answers(200, s.ReplayResult, "Replayed.", 400, 404, 409, body=s.ReplayRequest),
    name="replay_records",
)
async def replay(
    request: s.ReplayRequest, services: ServicesDep, caller: CallerDep
) -> s.ReplayResult:
    """Run enrichment (and failed deliveries) again for named records or a filtered set."""
    return await service.replay(services, actor=caller.name, request=request)


# --- dead letters -----------------------------------------------------------------------------


@router.get("/dead-letters", **_answers(200, list[s.DeadLetterView], "Dead letters.", 400))
async def list_dead_letters(
    services: ServicesDep,
    caller: CallerDep,
    kind: Literal["configuration", "pipeline"] | None = None,
    stage: Literal["intake", "enrichment", "delivery"] | None = None,
    tenant: str | None = None,
    source: str | None = None,
    resolved: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[s.DeadLetterView]:
    """Dead letters by cause (configuration or pipeline), oldest first."""
    return await service.list_dead_letters(
        services,
        kind=kind,
        stage=stage,
        tenant=tenant,
        source=source,
        include_resolved=resolved,
        limit=limit,
    )


@router.get(
    "/dead-letters/groups",
    **_answers(200, list[s.DeadLetterGroup], "Open dead letters by cause and reason.", 400),
    name="list_dead_letter_groups",
)
async def dead_letter_groups(
    services: ServicesDep,
    caller: CallerDep,
    tenant: str | None = None,
    source: str | None = None,
) -> list[s.DeadLetterGroup]:
    """Open dead letters grouped by cause (kind), reason and stage, with counts; retry a group
    by posting its kind, reason and stage (and the same tenant and source) to
    ``/v1/admin/dead-letters/retry``."""
    return await service.dead_letter_groups(services, tenant=tenant, source=source)


@router.post(
    "/dead-letters/retry",
    **_answers(200, s.ActionResult, "Retried.", 400, 409, body=s.DeadLetterAction),
)
async def retry_dead_letters(
    action: s.DeadLetterAction, services: ServicesDep, caller: CallerDep
) -> s.ActionResult:
    """Start the stage over for these letters, once their cause is fixed."""
    return await service.retry_dead_letters(services, action=action)


@router.post(
    "/dead-letters/discard",
    **_answers(200, s.ActionResult, "Discarded.", 400, 409, body=s.DeadLetterAction),
)
async def discard_dead_letters(
    action: s.DeadLetterAction, services: ServicesDep, caller: CallerDep
) -> s.ActionResult:
    """Give up on these letters for good, with a note saying why."""
    return await service.discard_dead_letters(services, action=action)


# --- SmartRecruiters subscriptions -----------------------------------------------------------


@router.get(
    "/tenants/{slug}/smartrecruiters/subscriptions",
    **_answers(
        200,
        list[subscriptions.SubscriptionView],
        "The tenant's SmartRecruiters webhook subscriptions.",
        404,
    ),
)
async def list_subscriptions(
    slug: str, services: ServicesDep, caller: CallerDep
) -> list[subscriptions.SubscriptionView]:
    """Webhook subscriptions made through the SmartRecruiters API for the tenant's connection
    (``hirehook smartrecruiters subscribe``), with how many signing keys are live; never a
    key."""
    return await subscriptions.list_subscriptions(services, tenant=slug)


# --- refusals ---------------------------------------------------------------------------------


@router.get(
    "/refusals", **_answers(200, list[s.RefusalView], "Refused requests, newest first.", 400)
)
async def list_refusals(
    services: ServicesDep,
    caller: CallerDep,
    since: s.StoredTime | None = None,
    tenant: str | None = None,
    source: str | None = None,
    status: Annotated[int | None, Query(ge=400, le=499)] = None,
    address: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[s.RefusalView]:
    """Requests refused with 401, 413 or 429, counted per minute, tenant, source, reason and
    sender's address (kept 7 days; default: the last 24 hours). No body or credential is
    kept."""
    return await service.list_refusals(
        services,
        since=since,
        tenant=tenant,
        source=source,
        status=status,
        address=address,
        limit=limit,
    )


# --- erasure ----------------------------------------------------------------------------------


@router.post(
    "/erasures",
    status_code=201,
    **_answers(201, s.ErasureView, "Erased and audited.", 400, 404, 503, body=s.ErasureRequest),
)
async def erase_candidate(
    request: s.ErasureRequest, services: ServicesDep, caller: CallerDep
) -> s.ErasureView:
    """Forget one candidate: records' bodies, normalized rows, deliveries' bodies, dead-letter
    details and cached documents (dedupe keys and first answers stay); audited under this
    key's name (docs/privacy.md)."""
    return await service.erase_candidate(services, request=request, actor=caller.actor)


# --- statistics -------------------------------------------------------------------------------


@router.get(
    "/stats",
    **_answers(200, s.Stats, "Statistics per tenant and source.", 400, 404),
    name="show_stats",
)
async def stats(
    services: ServicesDep,
    caller: CallerDep,
    since: s.StoredTime | None = None,
    until: s.StoredTime | None = None,
    tenant: str | None = None,
    source: str | None = None,
) -> s.Stats:
    """Records by state, duplicate ratio and ack latency over a window (default: the last
    24 hours), and the enrichment and delivery backlog now."""
    return await service.stats(services, since=since, until=until, tenant=tenant, source=source)
