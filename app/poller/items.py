"""One listed item -> one intake event: its type, dedupe key, subjects and problems.

Created vs updated: [C] an item whose created date (``createdDateField``) is after the cursor
is new, so it is recorded as ``<object>.created`` whatever its updated date says
(docs/ats/cloudelements.md): an
item created *and* changed between two polls is reported as created. The cursor here is how
far the previous sweep saw (:attr:`app.poller.position.Position.created_after`), not the
window's start, which the overlap moves back to read the boundary again. Otherwise [I] an
item whose updated date equals its created date, or that has no updated date, has not been
changed since it was created (``.created``), and any other is ``.updated``. SmartRecruiters
documents ``updatedOn`` as optional on a candidate (docs/ats/smartrecruiters.md); that it equals
``createdOn`` until the first change is assumed.

The dedupe key is (object type, id, the item's updated date — its created date if it has
none): reading the same version twice, as the poll overlap does on purpose, records nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from app.intake.connections import ConnectionInfo
from app.intake.core import Event, Intake
from app.intake.payload import MAX_DEPTH, TooDeepError, strip_nul
from app.schemas import polling
from app.schemas.keys import digest
from app.schemas.parsed import Parsed, Reparse

# The marker stored with each polled record (``record.markers``): which resource of the
# connection's polling it came from (re-parsing a quarantined record needs it). Intake never
# stores a request header of that name, so a webhook record never carries it.
RESOURCE_HEADER = "hirehook-poll-resource"
# And the cursor it was read under, which decides created vs updated when it is parsed again.
CREATED_AFTER_HEADER = "hirehook-poll-created-after"
_MAX_ID_CHARS = 255


@dataclass(frozen=True, slots=True)
class PolledItem:
    """What the poller needs of one item: its event, and the date it moves the cursor to."""

    event: Event
    # The newest of the item's dates, or None when it has none that can be read.
    newest: datetime | None


def _field(item: Mapping[str, Any], path: str | None) -> Any:
    # Dotted paths reach nested fields ("meta.updatedOn").
    if not path:
        return None
    value: Any = item
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _date(
    item: Mapping[str, Any], path: str | None, reader: polling.DateReader, problems: list[str]
) -> tuple[datetime | None, str | None]:
    """(the date, how it is keyed) of one date field; an unreadable date is a problem."""
    raw = _field(item, path)
    if raw is None or raw == "":
        return None, None
    try:
        moment = reader.read(raw)
    except (ValueError, OverflowError, OSError) as exc:
        problems.append(f"{path}: {raw!r:.60} is not a date ({exc})")
        return None, f"raw:{raw}"
    return moment, moment.isoformat()


def parse_item(
    name: str,
    config: polling.ResourceConfig,
    item: Any,
    created_after: datetime | None = None,
) -> tuple[Parsed, str]:
    """(what the item is, its dedupe key) for an item of resource ``name``, listed by a poll
    whose cursor was ``created_after`` (None: unknown, the dates alone decide)."""
    prefix = config.event_prefix(name)
    if not isinstance(item, Mapping):
        blob = hashlib.sha256(orjson.dumps(item)).hexdigest()
        parsed = Parsed(f"{prefix}.updated", known=False, problems=("the item is not an object",))
        return parsed, digest("poll", prefix, None, blob)
    problems: list[str] = []
    dates = config.dates_configuration
    updated, updated_key = _date(item, dates.updated_date_field, dates.updated_reader(), problems)
    created, created_key = _date(item, dates.created_date_field, dates.created_reader(), problems)
    raw_id = _field(item, config.id_field)
    item_id = None
    if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
        item_id = str(raw_id)
    if not item_id or len(item_id) > _MAX_ID_CHARS:
        problems.append(f"{config.id_field}: missing, empty or longer than {_MAX_ID_CHARS}")
        item_id = None
    kind = "created" if updated_key is None or updated == created else "updated"
    if updated is None and updated_key is not None:
        kind = "updated"  # an unreadable updated date still says the item changed
    if created is not None and created_after is not None and created > created_after:
        kind = "created"
    version = updated_key or created_key
    if item_id is None:
        # No id to key by: the item's whole content keys it, so the same unreadable item
        # listed again is still recorded once.
        version = hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()
    subjects = {config.subject_kind(name): item_id} if item_id else {}
    parsed = Parsed(f"{prefix}.{kind}", known=True, subjects=subjects, problems=tuple(problems))
    return parsed, digest("poll", prefix, item_id, version)


def newest_date(config: polling.ResourceConfig, item: Any) -> datetime | None:
    """The newest readable date of an item (what moves the cursor)."""
    if not isinstance(item, Mapping):
        return None
    dates = config.dates_configuration
    found = []
    for path, reader in (
        (dates.updated_date_field, dates.updated_reader()),
        (dates.created_date_field, dates.created_reader()),
    ):
        moment, _ = _date(item, path, reader, [])
        if moment is not None:
            found.append(moment)
    return max(found) if found else None


def polled_item(
    connection: ConnectionInfo,
    name: str,
    config: polling.ResourceConfig,
    item: Any,
    created_after: datetime,
) -> PolledItem:
    """The intake event of one listed item, listed by a poll whose cursor is
    ``created_after``."""
    try:
        # PostgreSQL's JSONB refuses U+0000, and nothing an ATS lists is nested this deep.
        item = strip_nul(item, max_depth=MAX_DEPTH)
    except TooDeepError:
        item = {"unreadable": f"nested deeper than {MAX_DEPTH} levels"}
    parsed, key = parse_item(name, config, item, created_after)
    event = Intake.event(
        connection,
        parsed,
        dedupe_key=key,
        payload=item,
        raw_body=orjson.dumps(item),
        headers={},
        markers={RESOURCE_HEADER: name, CREATED_AFTER_HEADER: created_after.isoformat()},
    )
    return PolledItem(event, newest_date(config, item))


def reparse(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed | None:
    """Parse a quarantined polled record again with its connection's current polling options;
    None if the record was not polled (a source's own reparse then applies)."""
    name = headers.get(RESOURCE_HEADER)
    if name is None:
        return None
    try:
        resources = polling.PollingOptions.model_validate(options.get("polling")).resources
    except ValueError as exc:
        return Parsed("unknown", known=False, problems=(f"options.polling: {exc}",))
    config = resources.get(name)
    if config is None:
        return Parsed("unknown", known=False, problems=(f"resource {name!r} is not polled",))
    try:
        created_after = datetime.fromisoformat(headers.get(CREATED_AFTER_HEADER, ""))
    except ValueError:
        created_after = None  # polled before the cursor was kept with the record
    return parse_item(name, config, payload, created_after)[0]


def with_polled(own: Reparse | None) -> Reparse:
    """A source's re-parser that first recognises records the poller made (their
    ``hirehook-poll-resource`` marker) and parses those as polled items."""

    def reparse_any(payload: Any, headers: Mapping[str, str], options: dict[str, Any]) -> Parsed:
        polled = reparse(payload, headers, options)
        if polled is not None:
            return polled
        if own is None:
            return Parsed("unknown", known=False, problems=("no parser for this source",))
        return own(payload, headers, options)

    return reparse_any
