"""Operator actions on tenants, connections, records, replays, dead letters, refusals,
erasure and statistics: the one surface the admin API, the console and the CLI call.

Each concern lives in its own module (``app.admin.tenants``, ``.connections``, ``.records``,
``.replay``, ``.dead_letters``, ``.refusals``, ``.erasure``, ``.stats``); this module names
them together. Every function takes the process's :class:`~app.services.Services` and keyword
arguments, owns its transaction, and raises :class:`~app.platform.errors.AppError` (404, 400,
409) for what the operator must correct; the admin API renders those, the CLI prints them.
"""

from __future__ import annotations

from app.admin.common import PAGE_MAX, reparsers
from app.admin.connections import (
    create_connection,
    list_connections,
    rotate_secrets,
    set_connection_enabled,
    set_payload_fields,
    show_connection,
    update_connection,
)
from app.admin.dead_letters import (
    dead_letter_groups,
    discard_dead_letters,
    list_dead_letters,
    retry_dead_letters,
)
from app.admin.erasure import erase_candidate
from app.admin.records import list_records, show_record
from app.admin.refusals import list_refusals
from app.admin.replay import REPLAY_CONFIRM_ABOVE, replay
from app.admin.stats import stats
from app.admin.tenants import (
    create_tenant,
    list_tenants,
    set_destination,
    set_tenant_enabled,
    show_tenant,
    update_tenant,
)

__all__ = [
    "PAGE_MAX",
    "REPLAY_CONFIRM_ABOVE",
    "create_connection",
    "create_tenant",
    "dead_letter_groups",
    "discard_dead_letters",
    "erase_candidate",
    "list_connections",
    "list_dead_letters",
    "list_records",
    "list_refusals",
    "list_tenants",
    "reparsers",
    "replay",
    "retry_dead_letters",
    "rotate_secrets",
    "set_connection_enabled",
    "set_destination",
    "set_payload_fields",
    "set_tenant_enabled",
    "show_connection",
    "show_record",
    "show_tenant",
    "stats",
    "update_connection",
    "update_tenant",
]
