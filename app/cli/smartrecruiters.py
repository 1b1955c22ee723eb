"""``hirehook smartrecruiters``: webhook subscriptions made through the SmartRecruiters API.

``subscribe`` creates a subscription, opens a short activation window, asks SmartRecruiters to
activate it (SmartRecruiters then POSTs the ``X-Hook-Secret`` handshake to the callback URL,
which the running API accepts only inside that window), and generates the signing key the
notifications are verified with. ``rotate-key`` generates a new key; the previous one is still
accepted for 24 hours, as SmartRecruiters still signs with it that long.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, TypeVar
from urllib.parse import urlsplit

import typer

from app.cli.client import admin
from app.cli.common import load_settings, with_services
from app.cli.output import Column, nothing_done, print_json, print_list
from app.schemas.smartrecruiters import SOURCE

if TYPE_CHECKING:
    from app.intake.connections import ConnectionInfo
    from app.services import Services

# [I] The version of the reference's example notification; SmartRecruiters versions each event
# and the version subscribed to must be one it publishes for that event (name@version).
DEFAULT_EVENT_VERSION = "v201910"
DEFAULT_EVENTS = "candidate.created,candidate.updated,application.created"
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

smartrecruiters_cli = typer.Typer(
    help="SmartRecruiters webhook subscriptions (needs the webhooks_manage scope).",
    no_args_is_help=True,
)

T = TypeVar("T")


class CommandError(Exception):
    """A failure the operator can act on; the message names no secret."""


@dataclass(frozen=True, slots=True)
class Subscribed:
    """What ``subscribe`` did."""

    subscription_id: str
    callback_url: str
    events: list[dict[str, str]]


def parse_events(text: str, version: str) -> list[dict[str, str]]:
    """``a.b,c.d@v2`` -> ``[{"name": "a.b", "version": version}, {"name": "c.d", ...}]``."""
    events = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, _, own_version = item.partition("@")
        events.append({"name": name.strip(), "version": own_version.strip() or version})
    if not events:
        raise CommandError("--events names no event")
    return events


def check_callback_url(url: str) -> str:
    """Notifications carry personal data: https, or http to this machine only."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname in _LOOPBACK:
        return url
    raise CommandError("--callback-url must be an https:// URL (http:// only for loopback)")


async def _connection(services: Services, tenant: str) -> ConnectionInfo:
    connection = await services.connections.by_tenant(tenant, SOURCE)
    if connection is None:
        raise CommandError(f"tenant {tenant!r} has no enabled smartrecruiters connection")
    return connection


async def _store_new_key(
    services: Services, connection_id: int, external_id: str, key: str
) -> None:
    from app.schemas.smartrecruiters_config import with_new_key
    from app.store import subscriptions as store

    async with services.engine.begin() as conn:
        row = await store.by_external_id_for_update(conn, connection_id, external_id)
        if row is None:
            raise CommandError(f"subscription {external_id} is not recorded here")
        stored = services.cipher.decrypt_json(row.secrets)
        updated = with_new_key(stored, key, datetime.now(UTC))
        await store.set_secrets(conn, row.id, services.cipher.encrypt_json(updated))


async def subscribe(
    services: Services,
    *,
    tenant: str,
    callback_url: str,
    events: list[dict[str, str]],
    window_s: float,
) -> Subscribed:
    """Create, activate and key one subscription for ``tenant``'s connection."""
    from app.clients.smartrecruiters_webhooks import SubscriptionApiError, SubscriptionsApi
    from app.store import subscriptions as store

    connection = await _connection(services, tenant)
    api = SubscriptionsApi(services.http, connection)
    async with services.engine.begin() as conn:
        await store.expire_pending(conn, connection.id)
        if await store.pending_for_update(conn, connection.id) is not None:
            raise CommandError("another activation for this connection is under way; retry soon")
    created = await api.create(callback_url, events)
    external_id = str(created["id"])
    async with services.engine.begin() as conn:
        await store.expire_pending(conn, connection.id)
        # Opened only now, just before activation, and closed by the handshake: the window in
        # which the API accepts a handshake for this connection is as short as it can be.
        row_id = await store.insert_pending(
            conn,
            connection_id=connection.id,
            external_id=external_id,
            callback_url=callback_url,
            events=events,
            secrets=services.cipher.encrypt_json({}),
            window_s=window_s,
        )
    if row_id is None:
        raise CommandError(
            f"another activation started meanwhile; subscription {external_id} stays inactive "
            "at SmartRecruiters (delete it there or run subscribe again)"
        )
    try:
        await api.activate(external_id)
    except SubscriptionApiError:
        await _set_status(services, row_id, "failed")
        raise
    async with services.engine.connect() as conn:
        row = await store.by_id(conn, row_id)
    if row is None or row.status != "active":
        await _set_status(services, row_id, "failed")
        raise CommandError(
            "SmartRecruiters reported the subscription active, but its handshake did not reach "
            "this deployment: check that --callback-url leads to this API"
        )
    try:
        key = await api.generate_secret_key(external_id)
    except SubscriptionApiError as exc:
        raise CommandError(
            f"subscription {external_id} is active but has no signing key yet ({exc}); "
            f"notifications are refused until `hirehook smartrecruiters rotate-key {tenant}`"
        ) from exc
    await _store_new_key(services, connection.id, external_id, key)
    return Subscribed(external_id, callback_url, events)


async def rotate_key(services: Services, *, tenant: str, subscription: str | None) -> list[str]:
    """A new signing key for one (or every active) subscription; the ids rotated."""
    from app.clients.smartrecruiters_webhooks import SubscriptionsApi
    from app.store import subscriptions as store

    connection = await _connection(services, tenant)
    async with services.engine.begin() as conn:
        rows = await store.active_for_update(conn, connection.id)
    targets = [str(r.external_id) for r in rows if subscription in (None, r.external_id)]
    if not targets:
        raise CommandError("no active subscription to rotate the key of")
    api = SubscriptionsApi(services.http, connection)
    for external_id in targets:
        # SmartRecruiters signs with the new key (and the old one, for 24 h) from now on; it is
        # stored right after, and the old key is accepted meanwhile.
        key = await api.generate_secret_key(external_id)
        await _store_new_key(services, connection.id, external_id, key)
    return targets


async def unsubscribe(services: Services, *, tenant: str, subscription: str) -> None:
    """Delete the subscription at SmartRecruiters and stop accepting its keys."""
    from app.clients.smartrecruiters_webhooks import SubscriptionsApi
    from app.store import subscriptions as store

    connection = await _connection(services, tenant)
    async with services.engine.connect() as conn:
        rows = await store.for_connection(conn, connection.id)
    row = next((r for r in rows if r.external_id == subscription), None)
    if row is None:
        raise CommandError(f"subscription {subscription} is not recorded for {tenant!r}")
    await SubscriptionsApi(services.http, connection).delete(subscription)
    await _set_status(services, row.id, "deleted")


async def _set_status(services: Services, row_id: int, status: str) -> None:
    from app.store import subscriptions as store

    async with services.engine.begin() as conn:
        await store.set_status(conn, row_id, status)


def _run(action: Callable[[Services], Awaitable[T]]) -> T:
    """Run ``action`` with services; an operator's error is one line on stderr and exit 1."""
    from app.clients.smartrecruiters_webhooks import SubscriptionApiError
    from app.platform.db import DB_ERRORS

    try:
        result: T = asyncio.run(with_services(load_settings(), action))
    except (CommandError, SubscriptionApiError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except DB_ERRORS as exc:
        typer.echo(f"error: the database is unavailable ({type(exc).__name__})", err=True)
        raise typer.Exit(1) from exc
    return result


TenantArgument = Annotated[str, typer.Argument(help="Tenant slug.")]


@smartrecruiters_cli.command("subscribe")
def subscribe_command(
    tenant: TenantArgument,
    events: Annotated[
        str, typer.Option(help="Comma-separated event names, each optionally name@version.")
    ] = DEFAULT_EVENTS,
    event_version: Annotated[
        str, typer.Option(help="Version for events given without one.")
    ] = DEFAULT_EVENT_VERSION,
    callback_url: Annotated[
        str | None,
        typer.Option(
            help="Where SmartRecruiters posts; default "
            "HIREHOOK_PUBLIC_BASE_URL/v1/smartrecruiters/<tenant>/events."
        ),
    ] = None,
    activation_window: Annotated[
        float, typer.Option(help="Seconds the API waits for the handshake.", min=5, max=600)
    ] = 120.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Create and activate a webhook subscription, and generate its signing key."""
    settings = load_settings()
    url = callback_url or (
        f"{settings.public_base_url.rstrip('/')}/v1/smartrecruiters/{tenant}/events"
    )
    try:
        wanted = parse_events(events, event_version)
        check_callback_url(url)
    except CommandError as exc:
        raise typer.BadParameter(str(exc)) from exc
    done = _run(
        lambda s: subscribe(
            s, tenant=tenant, callback_url=url, events=wanted, window_s=activation_window
        )
    )
    if as_json:
        print_json(
            {
                "subscription": done.subscription_id,
                "events": done.events,
                "callback_url": done.callback_url,
            }
        )
        return
    names = ", ".join(f"{e['name']}@{e['version']}" for e in done.events)
    typer.echo(f"subscription {done.subscription_id} active: {names} -> {done.callback_url}")
    typer.echo("signing key generated and stored (it is never printed)")


@smartrecruiters_cli.command("rotate-key")
def rotate_key_command(
    tenant: TenantArgument,
    subscription: Annotated[
        str | None, typer.Option(help="SmartRecruiters subscription id; default: every active.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Generate a new signing key; the previous one is still accepted for 24 hours."""
    rotated = _run(lambda s: rotate_key(s, tenant=tenant, subscription=subscription))
    if as_json:
        print_json({"rotated": rotated})
    if not rotated:
        raise nothing_done("no active subscription matched; no key was rotated")
    if as_json:
        return
    for external_id in rotated:
        typer.echo(f"subscription {external_id}: new key stored; the old one expires in 24 h")


@smartrecruiters_cli.command("unsubscribe")
def unsubscribe_command(
    tenant: TenantArgument,
    subscription: Annotated[str, typer.Argument(help="SmartRecruiters subscription id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """Delete a subscription at SmartRecruiters; its keys are no longer accepted."""
    _run(lambda s: unsubscribe(s, tenant=tenant, subscription=subscription))
    if as_json:
        print_json({"subscription": subscription, "deleted": True})
        return
    typer.echo(f"subscription {subscription} deleted")


@smartrecruiters_cli.command("list")
def list_command(
    tenant: TenantArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")] = False,
) -> None:
    """The tenant's subscriptions and how many live keys each has."""
    from app.admin.subscriptions import SubscriptionView

    rows = admin(
        lambda api: api.get(
            f"/tenants/{tenant}/smartrecruiters/subscriptions", list[SubscriptionView]
        )
    )
    print_list(rows, as_json=as_json, columns=_COLUMNS)
    if not as_json:
        typer.echo(f"{len(rows)} subscription(s)", err=True)


_COLUMNS: list[Column] = [
    ("SUBSCRIPTION", lambda s: s.subscription),
    ("STATUS", lambda s: s.status),
    ("EVENTS", lambda s: s.events),
    ("CALLBACK URL", lambda s: s.callback_url),
    ("LIVE KEYS", lambda s: s.live_keys),
    ("CREATED AT", lambda s: s.created_at),
    ("ACTIVATED AT", lambda s: s.activated_at),
]
