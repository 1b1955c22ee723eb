"""Cloud Elements event notifications: one notification, up to 20 event objects, one record each.

[C] Each event object carries the Cloud-Elements-standardized ``objectType``, ``objectId``,
``eventType`` (created/updated/deleted) and ``elementKey``; a notification holds up to 10 event
objects from polling and 20 from webhooks, and repeats the provider's full raw body in every
notification it is split into (docs/ats/cloudelements.md). [C] The notification's id is
``message.eventId`` and its header ``Elements-Webhook-Id`` (Cloud Elements' own event tests,
cloud-elements/churros ``test/platform/events``). [I] The envelope: the event objects in
``message.events`` (or ``events`` at the top level), the raw vendor body in ``message.raw``.

[I] Dedupe key per event object: (elementKey, objectType, objectId, eventType, the object's
updated date when present); without a date, the notification's id stands in (a redelivered
notification keeps it), or the hash of the body when there is no id either. Because the raw
vendor body repeats across the notifications of one split, it never keys anything.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.intake.payload import parse_json
from app.platform.errors import AppError
from app.schemas.cloudelements_config import CloudElementsOptions
from app.schemas.keys import digest
from app.schemas.parsed import Parsed
from app.schemas.polling import subject_kind

SOURCE = "cloudelements"
# [C] 10 (polling) or 20 (webhooks) per notification; far more is not a Cloud Elements body.
MAX_EVENTS = 100
# [C] Cloud Elements' event types; UNKNOWN (or anything else) is stored, not dispatched.
KNOWN_EVENT_TYPES = frozenset({"created", "updated", "deleted"})
_MAX_ID_CHARS = 255
# Kept per record beside the event object; the raw vendor body stays in raw_body only.
_DROPPED = frozenset({"events", "raw"})


@dataclass(frozen=True, slots=True)
class NotificationEvent:
    """One event object of a notification, ready for the intake."""

    parsed: Parsed
    dedupe_key: str
    payload: dict[str, Any]


def _ident(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= _MAX_ID_CHARS else None


def _unreadable(body: bytes, problem: str, payload: dict[str, Any]) -> list[NotificationEvent]:
    """The whole notification as one quarantined record, keyed by its bytes."""
    key = digest(SOURCE, "notification", hashlib.sha256(body).hexdigest())
    return [
        NotificationEvent(
            Parsed("cloudelements.notification", False, problems=(problem,)), key, payload
        )
    ]


def parse_notification(
    body: bytes, headers: Mapping[str, str], options: CloudElementsOptions
) -> list[NotificationEvent]:
    """Every event object of an authentic notification; an unexpected shape is quarantined,
    never refused (Cloud Elements retries a refused notification, then stops the subscription)."""
    try:
        document = parse_json(body)
    except AppError as exc:
        text = body[:65536].decode("utf-8", "replace").replace("\x00", "")
        return _unreadable(body, exc.user_message, {"unparsed": text})
    if not isinstance(document, dict):
        return _unreadable(body, "the body is not a JSON object", {"body": document})
    nested = document.get("message")
    message: dict[str, Any] = nested if isinstance(nested, dict) else document
    events = message.get("events")
    if not isinstance(events, list) or not events:
        return _unreadable(body, "no list of event objects in message.events", document)
    if len(events) > MAX_EVENTS:
        return _unreadable(body, f"more than {MAX_EVENTS} event objects", document)
    notification_id = _ident(message.get("eventId")) or headers.get("elements-webhook-id") or None
    body_hash = hashlib.sha256(body).hexdigest()
    context = {k: v for k, v in message.items() if k not in _DROPPED}
    return [
        parse_event(event, index, context, notification_id or f"sha256:{body_hash}", options)
        for index, event in enumerate(events)
    ]


def parse_event(
    event: Any,
    index: int,
    context: Mapping[str, Any],
    notification: str,
    options: CloudElementsOptions,
) -> NotificationEvent:
    """One event object: its type, subjects, problems and dedupe key."""
    payload: dict[str, Any] = {"event": event, "notification": dict(context), "index": index}
    if not isinstance(event, Mapping):
        parsed = Parsed(
            "cloudelements.unknown", False, problems=(f"events[{index}] is not an object",)
        )
        return NotificationEvent(parsed, digest(SOURCE, "malformed", notification, index), payload)
    object_type = _ident(event.get("objectType"))
    object_id = _ident(event.get("objectId"))
    event_type = _ident(event.get("eventType"))
    element_key = _ident(event.get("elementKey")) or _ident(context.get("elementKey"))
    problems = [
        f"events[{index}].{name}: missing, empty or not a string"
        for name, value in (
            ("objectType", object_type),
            ("objectId", object_id),
            ("eventType", event_type),
        )
        if value is None
    ]
    if problems or object_type is None or object_id is None or event_type is None:
        name = f"{object_type or 'cloudelements'}.{(event_type or 'unknown').lower()}"
        parsed = Parsed(name, False, problems=tuple(problems))
        return NotificationEvent(parsed, digest(SOURCE, "malformed", notification, index), payload)
    updated = next(
        (
            str(event[f])
            for f in options.updated_date_fields
            if isinstance(event.get(f), str | int)
            and not isinstance(event.get(f), bool)
            and event.get(f) != ""
        ),
        None,
    )
    version = ("updated", updated) if updated is not None else ("notification", notification)
    kind = options.subject_kinds.get(object_type) or subject_kind(object_type)
    action = event_type.lower()
    parsed = Parsed(f"{object_type}.{action}", action in KNOWN_EVENT_TYPES, {kind: object_id})
    key = digest(SOURCE, element_key, object_type, object_id, action, *version)
    return NotificationEvent(parsed, key, payload)


def reparse(payload: Any, options: CloudElementsOptions) -> Parsed:
    """Parse a quarantined record's stored event object again (its key stays as it was)."""
    if not isinstance(payload, dict) or "event" not in payload:
        return Parsed("cloudelements.notification", False, problems=("not an event object record",))
    stored = payload.get("notification")
    context: dict[str, Any] = stored if isinstance(stored, dict) else {}
    index = payload.get("index")
    at = index if isinstance(index, int) else 0
    return parse_event(payload["event"], at, context, "reparse", options).parsed
