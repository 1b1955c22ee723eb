"""Talentech HR Manager webhook events: one typed model per event HR Manager lists
(docs/ats/hrmanager.md).

[C] HR Manager POSTs one event per request to the URL the admin chose for that webhook; many
webhooks may share one URL; the body holds "only some identifiers" and the consumer fetches the
rest from the REST API; "some of our hooks can send a lot of duplicates"
(docs/ats/hrmanager.md). The 20 event names below are the documented
"Supported events" list, spelled as there (note ``AdvertisementUnPublished`` against
``PositionUnpublished``; names are matched without regard to case).

[I] The body's field names are not published (docs/ats/hrmanager.md, "Gaps"): neither the key
holding the event name nor the keys of the identifiers. Every name this module guesses is in
:data:`WIRE_NAMES`, the one place they are written; a connection replaces the guesses for any
key with ``options.payload_fields`` (``{"candidate_id": ["CandidateGuid"]}``), and the admin
may put the event name into the webhook's URL instead (``?event=CandidateUpdated``), which
then takes precedence over anything in the body.

An authentic event without the id its model needs is recorded *quarantined* (``problems``,
and in ``missing`` the names tried), never refused, and parsed again by ``hirehook connections
set-payload-fields`` (which sets the mapping) or ``hirehook dead-letters retry``;
an event name this version does not know is recorded with ``known=False`` and not dispatched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints, ValidationError

from app.schemas.keys import digest
from app.schemas.parsed import Parsed

SOURCE = "hrmanager"

# The marker (``record.markers``) the router stores the URL's ``?event=`` under, so a
# quarantined record can be parsed again with the name its webhook URL gave (the record keeps
# no URL). Re-parsers read it beside the stored headers (app/admin/dead_letters.py).
URL_EVENT_HEADER = "hirehook-url-event"
MAX_NAME_CHARS = 255

POSITION_PUBLISHED = "PositionPublished"
POSITION_UNPUBLISHED = "PositionUnpublished"
PROJECT_CREATED = "ProjectCreated"
PROJECT_UPDATED = "ProjectUpdated"
PROJECT_DELETED = "ProjectDeleted"
PROJECT_DEACTIVATED = "ProjectDeactivated"
SEND_CALENDAR_INVITE = "SendCalendarInvite"
CANDIDATE_REGISTERED = "CandidateRegistered"
CANDIDATE_DELETED = "CandidateDeleted"
CANDIDATE_UPDATED = "CandidateUpdated"
CANDIDATE_STATUS_UPDATED = "CandidateStatusUpdated"
CANDIDATE_DELETED_BY_USER = "CandidateDeletedByUser"
CANDIDATE_DELETED_OWN = "CandidateDeletedOwn"
CANDIDATE_HIRED = "CandidateHired"
ADVERTISEMENT_UPDATED = "AdvertisementUpdated"
ADVERTISEMENT_PUBLISHED = "AdvertisementPublished"
ADVERTISEMENT_UNPUBLISHED = "AdvertisementUnPublished"
LAYOUT_TEMPLATE_PUBLISHED = "LayoutTemplatePublished"
LAYOUT_TEMPLATE_UNPUBLISHED = "LayoutTemplateUnpublished"
QUESTIONNAIRE_UPDATED = "QuestionnaireUpdated"


def _id_variants(stem: str, snake: str) -> tuple[str, ...]:
    """PascalCase, camelCase, snake_case and upper-ID spellings of ``<stem>Id``."""
    return (f"{stem}Id", f"{stem[0].lower()}{stem[1:]}Id", f"{snake}_id", f"{stem}ID")


# [I] Every field name guessed for the webhook body, by our name for it. The REST API spells
# ids ``Id`` in PascalCase (docs/ats/hrmanager.md), so those come first; camelCase and snake_case
# cover a sender serialising otherwise. ``options.payload_fields`` replaces a key's list; a name
# with dots is also tried as a path into nested objects (``Data.CandidateId``).
WIRE_NAMES: dict[str, tuple[str, ...]] = {
    "event": (
        "Event",
        "EventName",
        "EventType",
        "Type",
        "event",
        "eventName",
        "eventType",
        "type",
        "event_name",
        "event_type",
    ),
    "candidate_id": _id_variants("Candidate", "candidate"),
    "position_id": _id_variants("Position", "position"),
    "project_id": _id_variants("Project", "project"),
    "advertisement_id": _id_variants("Advertisement", "advertisement"),
    "layout_template_id": _id_variants("LayoutTemplate", "layout_template"),
    "questionnaire_id": _id_variants("Questionnaire", "questionnaire"),
    # The user who sent a calendar invite (an HR Manager user, ``Users/`` in the REST API).
    "user_id": _id_variants("User", "user"),
}
ID_FIELDS = tuple(name for name in WIRE_NAMES if name.endswith("_id"))


def _id_text(value: Any) -> Any:
    # [I] Ids may be integers (the REST samples) or GUID strings; both become text. A boolean
    # is an int to Python but never an id, so it is left for the string check to refuse.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Id = Annotated[
    str,
    BeforeValidator(_id_text),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS),
]


class _Event(BaseModel):
    """What every event carries: its name. Fields are ours; :func:`fields_of` maps the wire."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str


class _PositionEvent(_Event):
    position_id: Id


class PositionPublished(_PositionEvent):
    """A position was published."""

    event: Literal["PositionPublished"]


class PositionUnpublished(_PositionEvent):
    """A position was unpublished."""

    event: Literal["PositionUnpublished"]


class _ProjectEvent(_Event):
    project_id: Id
    # [I] A recruitment project may name the position it belongs to.
    position_id: Id | None = None


class ProjectCreated(_ProjectEvent):
    """A project was created."""

    event: Literal["ProjectCreated"]


class ProjectUpdated(_ProjectEvent):
    """A project was updated."""

    event: Literal["ProjectUpdated"]


class ProjectDeleted(_ProjectEvent):
    """A project was deleted."""

    event: Literal["ProjectDeleted"]


class ProjectDeactivated(_ProjectEvent):
    """A project was deactivated."""

    event: Literal["ProjectDeactivated"]


class SendCalendarInvite(_Event):
    """A calendar invite was mailed ([I] to a candidate, for a position, by a user)."""

    event: Literal["SendCalendarInvite"]
    candidate_id: Id
    position_id: Id | None = None
    user_id: Id | None = None


class _CandidateEvent(_Event):
    candidate_id: Id
    # [I] Present when the change concerns one application (status, hiring, registration).
    position_id: Id | None = None


class CandidateRegistered(_CandidateEvent):
    """A candidate registered (applied)."""

    event: Literal["CandidateRegistered"]


class CandidateDeleted(_CandidateEvent):
    """A candidate was deleted."""

    event: Literal["CandidateDeleted"]


class CandidateUpdated(_CandidateEvent):
    """A candidate was updated."""

    event: Literal["CandidateUpdated"]


class CandidateStatusUpdated(_CandidateEvent):
    """A candidate's status (on a position) changed."""

    event: Literal["CandidateStatusUpdated"]


class CandidateDeletedByUser(_CandidateEvent):
    """A recruiter deleted a candidate."""

    event: Literal["CandidateDeletedByUser"]


class CandidateDeletedOwn(_CandidateEvent):
    """A candidate deleted their own profile."""

    event: Literal["CandidateDeletedOwn"]


class CandidateHired(_CandidateEvent):
    """A candidate was hired."""

    event: Literal["CandidateHired"]


class _AdvertisementEvent(_Event):
    advertisement_id: Id
    # [I] An advertisement belongs to a position.
    position_id: Id | None = None


class AdvertisementUpdated(_AdvertisementEvent):
    """An advertisement was updated."""

    event: Literal["AdvertisementUpdated"]


class AdvertisementPublished(_AdvertisementEvent):
    """An advertisement was published."""

    event: Literal["AdvertisementPublished"]


class AdvertisementUnPublished(_AdvertisementEvent):
    """An advertisement was unpublished."""

    event: Literal["AdvertisementUnPublished"]


class _LayoutTemplateEvent(_Event):
    layout_template_id: Id


class LayoutTemplatePublished(_LayoutTemplateEvent):
    """A layout template was published."""

    event: Literal["LayoutTemplatePublished"]


class LayoutTemplateUnpublished(_LayoutTemplateEvent):
    """A layout template was unpublished."""

    event: Literal["LayoutTemplateUnpublished"]


class QuestionnaireUpdated(_Event):
    """A questionnaire was updated."""

    event: Literal["QuestionnaireUpdated"]
    questionnaire_id: Id


_MODEL_LIST: tuple[type[_Event], ...] = (
    PositionPublished,
    PositionUnpublished,
    ProjectCreated,
    ProjectUpdated,
    ProjectDeleted,
    ProjectDeactivated,
    SendCalendarInvite,
    CandidateRegistered,
    CandidateDeleted,
    CandidateUpdated,
    CandidateStatusUpdated,
    CandidateDeletedByUser,
    CandidateDeletedOwn,
    CandidateHired,
    AdvertisementUpdated,
    AdvertisementPublished,
    AdvertisementUnPublished,
    LayoutTemplatePublished,
    LayoutTemplateUnpublished,
    QuestionnaireUpdated,
)
MODELS: dict[str, type[_Event]] = {m.__name__: m for m in _MODEL_LIST}
# In the documented order (docs/ats/hrmanager.md).
EVENT_NAMES: tuple[str, ...] = tuple(MODELS)
_BY_FOLDED = {name.casefold(): name for name in EVENT_NAMES}


def id_fields(event_name: str) -> tuple[str, ...]:
    """The id fields of an event's model (all of :data:`ID_FIELDS` for an unknown name)."""
    model = MODELS.get(event_name)
    if model is None:
        return ID_FIELDS
    return tuple(name for name in model.model_fields if name.endswith("_id"))


def required_ids(event_name: str) -> tuple[str, ...]:
    """The id fields an event cannot do without (none for an unknown name)."""
    model = MODELS.get(event_name)
    if model is None:
        return ()
    return tuple(
        name
        for name, info in model.model_fields.items()
        if name.endswith("_id") and info.is_required()
    )


def canonical_name(name: str) -> str:
    """The documented spelling of a known event name, whatever its case; others unchanged."""
    return _BY_FOLDED.get(name.casefold(), name)


_MISSING = object()


def lookup(payload: Any, name: str) -> Any:
    """The value under ``name``: a top-level key as written, else a dotted path into nested
    objects. ``None`` when absent.

    [I] A JSON object met on the way as a *string* is parsed and entered: a .NET sender may
    serialise a free-form section (the webhook's "User Data") as a string of JSON.
    """
    if isinstance(payload, Mapping) and name in payload:
        return payload[name]
    node: Any = payload
    for part in name.split("."):
        if isinstance(node, str) and node.lstrip().startswith("{"):
            try:
                node = orjson.loads(node)
            except orjson.JSONDecodeError:
                return None
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and not value.strip())


def first_present(payload: Any, names: Iterable[str]) -> Any:
    """The first of ``names`` whose value is neither absent, null nor blank; ``_MISSING`` if
    none is."""
    for name in names:
        value = lookup(payload, name)
        if _present(value):
            return value
    return _MISSING


def wire_names(field: str, overrides: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The body field names tried for ``field``: the connection's, else the guesses."""
    if overrides and overrides.get(field):
        return list(overrides[field])
    return list(WIRE_NAMES[field])


def event_name(
    payload: Mapping[str, Any],
    *,
    url_event: str | None = None,
    fields: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> str | None:
    """The event's name: the URL's ``?event=`` if given (the admin's own statement for that
    webhook), else the body's; a known name wins over an unknown one found under another key
    (an object's ``Type`` is not an event name). None when nothing names it."""
    aliases = aliases or {}
    if url_event is not None and url_event.strip():
        found = [url_event.strip()]
    else:
        found = []
        for name in wire_names("event", fields):
            value = lookup(payload, name)
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)  # [I] a .NET enum serialised as its number; see aliases
            if isinstance(value, str) and value.strip():
                found.append(value.strip())
    resolved = [canonical_name(aliases.get(value, value)) for value in found]
    for value in resolved:
        if value in MODELS:
            return value
    return resolved[0] if resolved else None


def _missing_message(field: str, fields: Mapping[str, Sequence[str]] | None) -> str:
    tried = ", ".join(wire_names(field, fields))
    return (
        f"{field}: missing (looked for {tried}; name the payload's own field in "
        f"options.payload_fields.{field})"
    )


def parse(
    payload: Mapping[str, Any],
    *,
    url_event: str | None = None,
    fields: Mapping[str, Sequence[str]] | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Parsed:
    """The event's name, the ids it names (``subjects``: ``{"candidate": "1001", ...}``) and,
    for an event that does not fit its model, why (it is then quarantined)."""
    name = event_name(payload, url_event=url_event, fields=fields, aliases=aliases)
    if name is None:
        tried = wire_names("event", fields)
        return Parsed(
            "unknown",
            known=False,
            problems=(
                f"event: no event name (looked for {', '.join(tried)}; add ?event=<Name> to the "
                "webhook's URL or name the field in options.payload_fields.event)",
            ),
            missing={"event": tuple(tried)},
        )
    if len(name) > MAX_NAME_CHARS:
        return Parsed("unknown", known=False, problems=("event: the event name is too long",))
    found = {
        field: value
        for field in id_fields(name)
        if (value := first_present(payload, wire_names(field, fields))) is not _MISSING
    }
    model = MODELS.get(name)
    if model is None:
        # Stored for later, not dispatched; its ids are kept for whoever looks at it.
        ids = {f[:-3]: str(v) for f, v in found.items() if isinstance(_id_text(v), str)}
        return Parsed(name, known=False, subjects=ids)
    try:
        event = model.model_validate({"event": name, **found})
    except ValidationError as exc:
        problems = []
        missing: dict[str, tuple[str, ...]] = {}
        for err in exc.errors(include_url=False)[:5]:
            where = ".".join(str(p) for p in err["loc"])
            if err["type"] == "missing":
                problems.append(_missing_message(where, fields))
                missing[where] = tuple(wire_names(where, fields))
            else:
                # The message only, never the value: it came from the sender.
                problems.append(f"{where}: {err['msg']}")
        return Parsed(name, known=True, problems=tuple(problems), missing=missing)
    return Parsed(name, known=True, subjects=subjects(event))


def subjects(event: _Event) -> dict[str, str]:
    """The ids an event names, by kind: ``candidate``, ``position``, ``project``, ..."""
    named = {}
    for field in type(event).model_fields:
        value = getattr(event, field)
        if field.endswith("_id") and value:
            named[field[:-3]] = value
    return named


def _without(payload: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """A copy of ``payload`` without the values at ``paths`` (top-level keys or dotted)."""
    kept: dict[str, Any] = orjson.loads(orjson.dumps(payload))
    for path in paths:
        if path in kept:
            del kept[path]
            continue
        *parents, last = path.split(".")
        node: Any = kept
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return kept


def dedupe_key(event_type: str, payload: Mapping[str, Any], ignore: Sequence[str] = ()) -> str:
    """The key a re-delivery repeats: the event name and the whole body, canonically encoded.

    [C] The body is "only some identifiers" (and, where it has one, a timestamp), so its whole
    content *is* the event's identity. A key from a chosen subset could make two distinct
    changes one record (a status changed twice, no timestamp), and the second would then never
    be fetched; a spare record costs nothing, as fetches within the coalescing window are
    shared. [I] ``ignore`` (``options.dedupe_ignore``) drops fields a sender would stamp on
    each delivery attempt, should HR Manager turn out to add one.
    """
    body = _without(payload, ignore) if ignore else payload
    return digest(SOURCE, event_type, orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode())


# One JSON string token (an object's name or a value) as it is spelled in the body.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_MARK = "[redacted]"


def redact(payload: Any, raw_body: bytes, secret: str) -> tuple[Any, bytes]:
    """``payload`` and ``raw_body`` with every occurrence of ``secret`` (the webhook's User Data
    key) replaced: a credential must not outlive the request that carried it.

    The key is restricted to characters no JSON encoder escapes (see the connection's
    configuration), so in ``payload`` re-encoded its bytes appear verbatim and are replaced
    without walking the document. In ``raw_body`` the sender may have spelled it with JSON
    escapes (``"\\u0064emo..."``), which the parser read as the key: every string token that
    holds a backslash is decoded, and one whose value holds the key is written again,
    re-encoded, with the key replaced. The rest of the body stays as it arrived, and what is
    stored decodes to no key however it was spelled.
    """
    needle = secret.encode()
    mark = _MARK.encode()
    encoded = orjson.dumps(payload)
    if needle in encoded:
        payload = orjson.loads(encoded.replace(needle, mark))
    raw_body = raw_body.replace(needle, mark)
    if b"\\" in raw_body:
        raw_body = _JSON_STRING.sub(lambda m: _redacted_token(m.group(0), secret), raw_body)
    return payload, raw_body


def _redacted_token(token: bytes, secret: str) -> bytes:
    if b"\\" not in token:
        return token
    try:
        value = orjson.loads(token)
    except orjson.JSONDecodeError:  # pragma: no cover - the body parsed, so its tokens do
        return token
    if not isinstance(value, str) or secret not in value:
        return token
    return orjson.dumps(value.replace(secret, _MARK))


__all__ = [
    "EVENT_NAMES",
    "MODELS",
    "SOURCE",
    "URL_EVENT_HEADER",
    "WIRE_NAMES",
    "dedupe_key",
    "event_name",
    "lookup",
    "parse",
    "redact",
]
