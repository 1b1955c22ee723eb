"""Events of senders that sign the body with an HMAC (app/schemas/hmac_config.py): the generic
envelope, its event name and its dedupe key.

Nothing of the body is modelled beyond the event's name: the event is delivered as the generic
event (its name and the object as sent) with no enrichment. An authentic body without a name
where the connection says it is, or one that is not JSON, is recorded and quarantined: the
sender's only recourse after a refusal is to retry and give up.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from app.schemas.hmac_config import Scheme
from app.schemas.parsed import Parsed

SOURCE = "hmac"
# Hirehook's own markers (app.intake.core.Event.markers): the event's name and id as a configured
# header stated them, for a re-parse (a sender's header of these names is never stored).
EVENT_MARKER = "hirehook-hmac-event"
ID_MARKER = "hirehook-hmac-id"
_MAX_NAME_CHARS = 255


class GenericEvent(BaseModel):
    """What is delivered for an ``hmac`` event: its name and the object as the sender sent it."""

    event: str = Field(description="The event's name, from the configured path or header.")
    object: Any = Field(description="The body as sent, unchanged.")


def lookup(payload: Any, path: str) -> Any:
    """The value at a dotted ``path`` ("payload.application.id"; list items by index), or
    None."""
    value = payload
    for part in path.split("."):
        if isinstance(value, dict):
            value = value.get(part)
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str | int):
        text = str(value).strip()
        return text[:_MAX_NAME_CHARS] if text else None
    return None


def markers(headers: Mapping[str, str], scheme: Scheme) -> dict[str, str]:
    """The event's name and id as the configured headers state them."""
    found = {}
    for header, marker in ((scheme.event_header, EVENT_MARKER), (scheme.id_header, ID_MARKER)):
        value = headers.get(header) if header else None
        if value and value.strip():
            found[marker] = value.strip()[:_MAX_NAME_CHARS]
    return found


def parse(payload: Any, marked: Mapping[str, str], scheme: Scheme) -> Parsed:
    """The event's name (from its header marker, else the body path); an event without one
    is quarantined with where it was looked for."""
    name = marked.get(EVENT_MARKER) or (
        _text(lookup(payload, scheme.event_path)) if scheme.event_path else None
    )
    if name is not None:
        return Parsed(name, known=True)
    places = tuple(
        p
        for p in (
            f"body {scheme.event_path}" if scheme.event_path else None,
            f"header {scheme.event_header}" if scheme.event_header else None,
        )
        if p
    )
    problem = "no event name at " + " or ".join(places)
    if not isinstance(payload, dict):
        problem = "the body is not a JSON object; " + problem
    return Parsed("unknown", known=False, problems=(problem,), missing={"event": places})


def dedupe_key(payload: Any, marked: Mapping[str, str], body: bytes, scheme: Scheme) -> str:
    """The event's id where the connection says it is; else a digest of the body, so only a
    byte-identical repeat is a duplicate."""
    event_id = marked.get(ID_MARKER) or (
        _text(lookup(payload, scheme.id_path)) if scheme.id_path else None
    )
    if event_id is not None:
        return f"id:{event_id}"
    return "sha256:" + hashlib.sha256(body).hexdigest()
