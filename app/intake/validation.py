"""Turning pydantic errors into messages a sender's engineer can act on."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


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


def validated(model: type[M], value: Any, where: str) -> M:
    """``value`` as ``model``, or a ValueError naming the settings at fault under ``where``
    (``options``, ``secrets``): locations and messages only, so no secret value can leak."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"{where}: {describe(exc)}") from None
