"""What a source makes of an event's payload, shared by its router and its re-parser."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a source made of an event's payload: its type, the ids it names, and, for an
    authentic event that did not fit its model, why (it is then recorded but quarantined)."""

    event_type: str
    known: bool
    subjects: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # For a quarantined event, each field it lacked with the body names tried for it, so the
    # operator can see what to map (``{"position_id": ("PositionId", ...)}``).
    missing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# A source's parser, run again on a quarantined record's stored payload once its model or the
# connection's mapping is fixed: (payload, stored headers, connection options) -> Parsed.
Reparse = Callable[[Any, Mapping[str, str], dict[str, Any]], Parsed]
