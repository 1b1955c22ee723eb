"""iCIMS Integration Events: one URL for every customer, three ways to authenticate, link answers.

``POST /v1/icims/events`` serves all customers: the credentials (or, for HMAC without a
configured user, the payload's ``customerId``) find the connection, and the payload's
``customerId`` must be that connection's. Errors follow iCIMS's Error Reporting Standard for
Vendors (``errors.py``), worded for whoever triggered the event.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app.clients.icims import IcimsClient
from app.intake.connections import ConnectionInfo
from app.intake.core import Answer, Deadline, Event, Outcome, json_answer, replayed
from app.intake.link_tokens import record_token
from app.intake.payload import decode_content, parse_json, require_object
from app.intake.validation import describe
from app.routers import openapi
from app.routers.common import ServicesDep, guarded, read_raw, respond
from app.routers.icims import auth, docs
from app.routers.icims.checks import check, user_error, vendor_error
from app.routers.icims.errors import RECRUITER_MESSAGES, IcimsRoute, icims_answer
from app.schemas.icims import (
    ACTORS,
    LINK_EVENTS,
    SOURCE,
    Actor,
    IcimsEvent,
    dedupe_content,
    earlier_threads,
    parse_event,
    parse_link_header,
    subjects,
    thread,
)
from app.schemas.icims_config import EventSettings, IcimsConfig, render_link
from app.services import Services

EVENTS_PATH = "/v1/icims/events"

log = structlog.get_logger(__name__)
router = APIRouter(tags=["iCIMS"], route_class=IcimsRoute)

# Every refusal is rendered by errors.render_icims, which folds 408, 413 and 415 into 400.
_ANSWERS: openapi.Responses = {
    **openapi.accepted(
        200,
        docs.IcimsAccepted,
        "Recorded: Status Flow Update and Job Unposting (and their repeats).",
    ),
    303: {
        "model": docs.IcimsLinkAccepted,
        "description": "Recorded: Application Complete, Job Posting, Job Edit and Onboard "
        "Portal Task; the user's link is in `Location` (the same link on repeats).",
        "headers": {
            "Location": {"description": "The link for the user.", "schema": {"type": "string"}},
            **openapi.RECORD_HEADERS,
        },
    },
    **openapi.refusals(
        (400, 401, 429, 500, 503),
        docs.IcimsError,
        meanings={
            400: "User error the user can fix (event not configured, validation failed), or an "
            "unreadable request: malformed JSON, no customerId or eventType, a body too large, "
            "too slow or in an unsupported encoding.",
            401: "Unknown customerId or wrong credentials (indistinguishable).",
            429: "Too many failed authentications from this client or address.",
            500: "Vendor error: the connection is misconfigured, or a new hire's event failed "
            "validation; the message has a reference.",
            503: "Temporary: the database or the iCIMS API is unreachable; retry.",
        },
        errors={
            **openapi.DEFAULT_ERRORS,
            400: (
                *openapi.DEFAULT_ERRORS[400],
                user_error(RECRUITER_MESSAGES[400], "The notification has no eventType."),
            ),
            500: (vendor_error("the connection's configuration is invalid: no username"),),
        },
        # A fixed reference: a real 500 carries a new one each time.
        render=lambda error: icims_answer(error, ref="3f9a0c1d")[1],
    ),
}


@router.post(
    EVENTS_PATH,
    status_code=200,
    responses=_ANSWERS,
    openapi_extra={
        **docs.icims_body(),
        **openapi.security(
            ("icimsHmac", "icimsDate", "icimsContentSha256"), ("icimsBasic",), ("icimsOAuth",)
        ),
    },
)
async def receive_event(request: Request, services: ServicesDep) -> Response:
    """Receive one iCIMS Integration Event for any customer."""
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    # Unknown usernames and customerIds fail like wrong passwords: enumerating them costs a
    # connection lookup each, so they count against the address too.
    async with guarded(services, request, auth.claimed_client(request)) as attempt:
        wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
        identified = await auth.identify(request, services, wire)
        if identified is not None and identified.pending_hash is None:
            attempt.authenticated()
        body = decode_content(
            wire,
            request.headers.get("content-encoding"),
            settings.max_decompressed_bytes,
            settings.max_compression_ratio,
        )
        payload = require_object(parse_json(body))
        sent_type = payload.get("eventType")
        request.state.icims_actor = ACTORS.get(str(sent_type), Actor.RECRUITER)
        customer_id = _customer_id(payload)
        request.state.icims_customer = customer_id
        if identified is not None:
            auth.verify_pending(request, identified, body)
            loaded = identified.loaded
            if loaded.connection.account != customer_id:
                # Credentials speak for their own customer only: never record under another.
                auth.refuse(request, "", "the credentials belong to another customerId")
        else:
            found = await services.connections.by_account(SOURCE, customer_id)
            loaded = auth.verify_routed(request, found, body, wire)
    connection, config = loaded.usable()
    # iCIMS names its customer in the body, not the path: from here on, lines name the tenant.
    structlog.contextvars.bind_contextvars(tenant=connection.tenant_slug)

    if not isinstance(sent_type, str) or not sent_type.strip():
        raise user_error(RECRUITER_MESSAGES[400], "The notification has no eventType.")
    event_type = config.event_type(sent_type)
    request.state.icims_actor = ACTORS.get(event_type, Actor.RECRUITER)
    event_settings, event = _typed(config, event_type, sent_type, customer_id, payload)

    stored = dict(payload)
    header_links = parse_link_header(request.headers.get("link"))
    if header_links:
        # Kept beside the payload, namespaced so a future iCIMS field cannot collide.
        stored["_hirehook"] = {
            "linkHeader": [link.model_dump(exclude_none=True) for link in header_links]
        }
    named = subjects(event, header_links)
    key, event_thread, earlier = await _dedupe(services, connection, config, event, deadline)
    if earlier is not None:
        return respond(earlier)

    rules = event_settings.validation
    if rules is not None and rules.enabled:
        # A repeat was validated the first time: it gets the first answer, not a second check.
        earlier = await services.intake.find(
            tenant_id=connection.tenant_id, source=SOURCE, dedupe_key=key, deadline=deadline
        )
        if earlier is not None:
            return respond(earlier)
        note = await _validate(services, connection, config, event, named, event_settings, deadline)
        if note is not None:
            # Accepted although validation failed (failsafe): whoever reads the record sees why.
            stored["_hirehook"] = {**stored.get("_hirehook", {}), "validation": note}
    outcome = await services.intake.record(
        Event(
            connection=connection,
            dedupe_key=key,
            event_type=event_type,
            known=True,
            payload=stored,
            raw_body=body,
            headers=request.headers,
            subjects=named,
            thread=event_thread,
        ),
        answer_for=functools.partial(
            _answer,
            event=event,
            settings=event_settings,
            keys=auth.link_keys(settings),
        ),
        deadline=deadline,
    )
    await services.intake.publish(outcome, known=True)
    return respond(outcome)


def _typed(
    config: IcimsConfig, event_type: str, sent_type: str, customer_id: str, payload: dict[str, Any]
) -> tuple[EventSettings, IcimsEvent]:
    """The settings of ``event_type`` (as the connection names ``sent_type``) and the typed
    event; refused when the connection does not take it or it is malformed: a recruiter's 400,
    but a candidate or new hire cannot fix either, so for them it is a 500 for support (iCIMS's
    error standard; docs/icims.md, "Errors")."""
    front = ACTORS.get(event_type, Actor.RECRUITER) is not Actor.RECRUITER
    event_settings = config.options.events.get(event_type)
    if event_settings is None:
        debug = f"eventType {sent_type!r} is not configured for customer {customer_id}."
        if front:
            raise vendor_error(debug)
        raise user_error(
            f"This integration is not set up to receive {sent_type} notifications for your "
            "organization. Ask your iCIMS administrator to check the Event Notifications page, "
            "or ask the vendor to enable this notification.",
            debug,
        )
    try:
        event = parse_event({**payload, "eventType": event_type})
    except ValidationError as exc:
        debug = f"The {event_type} event is not valid: {describe(exc)}."
        if front:
            raise vendor_error(debug) from exc
        raise user_error(RECRUITER_MESSAGES[400], debug) from exc
    return event_settings, event


async def _dedupe(
    services: Services,
    connection: ConnectionInfo,
    config: IcimsConfig,
    event: IcimsEvent,
    deadline: Deadline,
) -> tuple[str, str | None, Outcome | None]:
    """The event's dedupe key and thread, or the outcome of the delivery it repeats.

    iCIMS sends no event id: a repeat of the newest event of its thread is the same delivery
    again, however late (docs/ats/icims.md scenario 5), unless the event type's window has passed;
    anything
    else (A->B, B->A, A->B; post, unpost, post) is new. The key names its predecessor, so
    concurrent copies of one delivery still meet on it. docs/icims.md, "Duplicates".
    """
    content = dedupe_content(event)
    event_thread = thread(event)
    if event_thread is None:
        # Application Complete, Onboard Portal Task: the ids name the action for good.
        return content, None, None
    head = await services.intake.thread_head(
        tenant_id=connection.tenant_id,
        source=SOURCE,
        threads=(event_thread, *earlier_threads(event)),
        deadline=deadline,
    )
    if head is None:
        return f"{content}/-", event_thread, None
    window = config.dedupe_window_s(event.event_type)
    if head.dedupe_key.split("/", 1)[0] == content and (window == 0 or head.age_s < window):
        log.info("icims.duplicate_of_thread_head", record_id=str(head.answer.record_id))
        return head.dedupe_key, event_thread, replayed(head.answer)
    return f"{content}/{head.answer.record_id}", event_thread, None


def _customer_id(payload: dict[str, Any]) -> str:
    value = payload.get("customerId")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise user_error(RECRUITER_MESSAGES[400], "The notification has no usable customerId.")
    return value.strip()


def _answer(
    record_id: uuid.UUID, *, event: IcimsEvent, settings: EventSettings, keys: list[bytes]
) -> Answer:
    if event.event_type not in LINK_EVENTS:
        return json_answer(200, {"status": "accepted", "recordId": str(record_id)})
    assert settings.link_template is not None  # IcimsConfig requires it for link events
    link = render_link(
        settings.link_template,
        event,
        token=record_token(record_id, keys),
        record_id=str(record_id),
    )
    # [I] docs/ats/icims.md: iCIMS says only that the link is "in the response header";
    # Location is the header a 303 carries. The JSON body repeats it for people reading logs.
    return json_answer(
        303, {"status": "accepted", "recordId": str(record_id), "link": link}, {"Location": link}
    )


async def _validate(
    services: Services,
    connection: ConnectionInfo,
    config: IcimsConfig,
    event: IcimsEvent,
    named: dict[str, str],
    settings: EventSettings,
    deadline: Deadline,
) -> dict[str, Any] | None:
    """Validate before commit (docs/icims.md): None, or the note of an accepted failure."""
    rules = settings.validation
    assert rules is not None
    client = IcimsClient.for_connection(
        services.http, services.budget, services.cache, connection, config=config
    )
    return await check(
        client=client,
        config=config,
        rules=rules,
        event=event,
        named=named,
        deadline=deadline,
        reserve_s=config.options.commit_reserve_s,
        call_timeout_s=services.settings.api_call_timeout_s,
    )
