"""Turning pydantic errors into messages a sender's engineer can act on."""

from __future__ import annotations

from pydantic import ValidationError

from app.errors import AppError


def describe(exc: ValidationError, limit: int = 5) -> str:
    """``field.path: message`` for the first few problems."""
    parts = []
    for err in exc.errors(include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    more = len(exc.errors()) - limit
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def invalid_event(exc: ValidationError) -> AppError:
    """A 400 naming what is wrong with the event."""
    return AppError(400, f"The event is not valid: {describe(exc)}.", code="invalid_event")
