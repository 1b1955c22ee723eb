"""What the operator actions share: their page size, their two errors and the parsers of
quarantined events."""

from __future__ import annotations

from app.platform.errors import AppError
from app.poller.items import with_polled
from app.schemas.parsed import Reparse
from app.sources import REGISTRY

PAGE_MAX = 500


def not_found(what: str) -> AppError:
    """The 404 of an unknown tenant, connection, record or key."""
    return AppError(404, f"{what} does not exist.", code="not_found")


def invalid(message: str) -> AppError:
    """The 400 of a request the operator must correct."""
    return AppError(400, message, code="invalid")


def reparsers() -> dict[str, Reparse]:
    """Each source's parser, for quarantined events (polled records of any source included)."""
    return {name: with_polled(src.reparse) for name, src in REGISTRY.items()}
