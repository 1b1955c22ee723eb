"""What the rest of the application knows of one ATS: a :class:`Source` descriptor."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.clients.budget import Limits
from app.schemas.parsed import Reparse
from app.workers.context import RecordHandler

# Validates a connection's options and secrets when the tenants file is loaded; raises
# ValueError naming the setting at fault, never its value.
ConfigCheck = Callable[[dict[str, Any], dict[str, Any]], None]


@dataclass(frozen=True, slots=True)
class Source:
    """One ATS: its name, API limits, connection check, enrichment handler and sample sender.

    Its router is named, not imported: ``app.main`` imports and mounts it, so a worker that
    imports the registry never imports FastAPI, and no source's layers reach another's.
    """

    name: str
    title: str
    check: ConfigCheck
    handler: RecordHandler | None = None
    # The ATS's published API limits; a connection's options.limits override them.
    limits: Limits | None = None
    # Fingerprints (app.schemas.keys.credential_id) of the identities a connection's sender
    # presents, stored with the connection so a request is tied to it before its body is read.
    credential_ids: Callable[[dict[str, Any], dict[str, Any]], list[str]] | None = None
    # Parses a stored payload again: `hirehook dead-letters retry` releases a quarantined record
    # (an authentic event that did not fit its model) once this accepts it.
    reparse: Reparse | None = None
    # A typer command that posts signed sample events (``hirehook send <name>``).
    send: Callable[..., None] | None = None
    # Request headers kept with a record beside app.intake.core.STORED_HEADERS (lower case): the
    # event's id and time as the sender states them, never a credential or a signature.
    stored_headers: frozenset[str] = frozenset()
    # Whether ``options.payload_fields`` names the body's fields for the parser (the sender's
    # field names are guessed): ``hirehook connections set-payload-fields`` sets it.
    payload_fields: bool = False
    # The module holding the source's routers (a ``ROUTERS`` tuple), imported by app.main.
    router: str | None = None
    # Path prefixes of its routes -> the label their latency, refusals and authentication
    # failures are counted under (app.routers.request_context, app.platform.metrics).
    paths: Mapping[str, str] = field(default_factory=dict)
    # Whether its routes read /v1/<label>/<tenant>/...: the tenant is bound to the log context.
    tenant_in_path: bool = False
    # The OpenAPI tags of its routes, (name, description), in the order /docs shows them.
    openapi_tags: tuple[tuple[str, str], ...] = ()
