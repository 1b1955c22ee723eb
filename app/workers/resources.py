"""Small helpers every source handler uses to read ids and build normalized resources."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from app.store.normalized import Resource, ResourceKind
from app.workers.fetch import Fetched

# Microsoft JSON dates, as HR Manager writes them: /Date(1514764800000)/ or /Date(...+0100)/.
_MS_DATE = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


def first_value(payload: Any, names: Iterable[str]) -> str | None:
    """The first of ``names`` present in ``payload`` with a non-empty scalar, as a string."""
    if not isinstance(payload, Mapping):
        return None
    for name in names:
        value = payload.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
            return str(value).strip()
    return None


def parse_time(value: Any) -> datetime | None:
    """An ISO-8601 or ``/Date(ms)/`` timestamp, as an aware datetime; None if unreadable."""
    if not isinstance(value, str) or not value:
        return None
    match = _MS_DATE.match(value)
    if match:
        return datetime.fromtimestamp(int(match.group(1)) / 1000, UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def from_fetched(
    kind: ResourceKind,
    external_id: str,
    fetched: Fetched,
    fields: Mapping[str, Any],
    *,
    document: Mapping[str, Any] | None = None,
    source_updated_at: datetime | None = None,
) -> Resource:
    """A resource carrying the fetch's version, so an older fetch never overwrites it."""
    body = document if document is not None else fetched.document
    return Resource(
        kind=kind,
        external_id=external_id,
        fields=fields,
        document=body if isinstance(body, Mapping) else {"value": body},
        fetched_at=fetched.fetched_at,
        version=fetched.version,
        source_updated_at=source_updated_at,
    )


def tombstone(kind: ResourceKind, external_id: str) -> Resource:
    """A resource the ATS reported deleted; nothing is fetched for it."""
    now = time.time()
    return Resource(
        kind=kind,
        external_id=external_id,
        fields={},
        document={},
        fetched_at=datetime.fromtimestamp(now, UTC),
        version=int(now * 1_000_000),
        deleted=True,
    )
