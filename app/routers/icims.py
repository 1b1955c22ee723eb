"""iCIMS Integration Events: one URL for every customer, three ways to authenticate, link answers.

``POST /v1/icims/events`` serves all customers: the payload's ``customerId`` finds the connection
and the presented credentials (Basic, HMAC or a Bearer token from ``POST /oauth/token``) must be
that connection's. Errors follow iCIMS's Error Reporting Standard for Vendors, worded for
whoever triggered the event.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from app import oauth_server
from app.body import decode_content, parse_json, read_raw, require_object
from app.clients.icims import IcimsClient
from app.connections import ConnectionInfo
from app.crypto import derive_keys
from app.errors import AppError, ErrorRenderer, unauthorized
from app.intake import Answer, Deadline, Event, Validate, json_answer
from app.link_tokens import KEY_PURPOSE as LINK_KEY_PURPOSE
from app.link_tokens import record_token
from app.routers.icims_checks import user_error, validate, vendor_error
from app.schemas.icims import (
    ACTORS,
    LINK_EVENTS,
    ONBOARD_PORTAL_TASK,
    Actor,
    AssessmentEvent,
    IcimsEvent,
    WorkFlowStatusChangeEvent,
    parse_event,
    parse_link_header,
)
from app.schemas.icims_connection import ConfigError, EventSettings, IcimsConfig, render_link
from app.services import Services, ServicesDep
from app.settings import Settings
from app.validation import describe
from app.verifiers import VerificationError
from app.verifiers import icims as icims_auth

SOURCE = "icims"
EVENTS_PATH = "/v1/icims/events"
TOKEN_PATH = "/oauth/token"  # noqa: S105 - a path
TOKEN_AUDIENCE = "hirehook:icims-events"  # noqa: S105 - an audience name
MAX_TOKEN_REQUEST_BYTES = 16 * 1024

log = structlog.get_logger(__name__)
router = APIRouter(tags=["iCIMS"])

# Checked when a customer is unknown or lacks a method, so that path costs what a real check
# costs. Random per process: nobody can present it.
_DECOY = secrets.token_urlsafe(32)

_EVENT_ERRORS: dict[int | str, dict[str, Any]] = {
    303: {"description": "Recorded; the link for the user is in `Location` (same on repeats)."},
    400: {"description": "User error, in iCIMS's error standard; the user can fix it."},
    401: {"description": "Unknown customerId or wrong credentials (indistinguishable)."},
    500: {"description": "Vendor error: the connection is misconfigured."},
    503: {"description": "Temporary: the database or the iCIMS API is unreachable; retry."},
}

# What candidates and new hires read: never a request to fix something they cannot reach.
_FRONT_MESSAGES: dict[Actor, dict[str, str]] = {
    Actor.CANDIDATE: {
        "temporary": "This step is briefly unavailable. Please try again in a few minutes.",
        "failed": "We could not open the next step of your application. Please try again "
        "later; if this keeps happening, contact the employer's recruiting team.",
    },
    Actor.NEW_HIRE: {
        "temporary": "This task is briefly unavailable. Please try again in a few minutes.",
        "failed": "We could not open this task. Please try again later; if this keeps "
        "happening, contact your HR or onboarding contact.",
    },
}
_RECRUITER_MESSAGES = {
    401: "This notification could not be authenticated. Ask your iCIMS administrator to "
    "check the URL and the credentials on the Event Notifications page.",
    400: "iCIMS sent a notification this integration could not read. Try again; if it keeps "
    "happening, contact your iCIMS administrator.",
    500: "This integration is not set up correctly for your organization. Please contact the "
    "vendor's support and quote reference {ref}.",
    503: "This integration is temporarily unavailable. Please try again in a few minutes.",
}


def _standard_status(status: int) -> int:
    # iCIMS's error standard knows 400, 500 and 503; 401 stays, the sender's auth depends on it.
    if status in (400, 401, 500, 503):
        return status
    return 400 if status < 500 else 500


def _renderer(request: Request) -> ErrorRenderer:
    """Render refusals as ``{"error": {"userMessage", "debugErrorMessage"}}`` for the actor."""

    def render(error: AppError) -> Response:
        actor: Actor = getattr(request.state, "icims_actor", Actor.RECRUITER)
        status = _standard_status(error.status)
        ref = secrets.token_hex(4)
        authored = error.code.startswith("icims.")
        debug = error.debug_message if authored else error.user_message
        if not authored and error.debug_message != error.user_message:
            debug = f"{debug} ({error.debug_message})"
        if status == 500:
            debug = f"{debug} [ref {ref}]"
        if actor in _FRONT_MESSAGES:
            user = _FRONT_MESSAGES[actor]["temporary" if status == 503 else "failed"]
        elif authored and status == 400:
            user = error.user_message
        else:
            user = _RECRUITER_MESSAGES[status].format(ref=ref)
        log.info(
            "icims.refused",
            status=status,
            actor=actor.value,
            code=error.code,
            debug=debug,
            customer_id=getattr(request.state, "icims_customer", None),
        )
        body = {"error": {"userMessage": user, "debugErrorMessage": debug}}
        headers = {k: v for k, v in error.headers.items() if k.lower() == "retry-after"}
        return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")

    return render


@functools.lru_cache(maxsize=8)
def _keys(
    secret_keys: tuple[str, ...], issuer: str
) -> tuple[oauth_server.SigningKeys, list[bytes]]:
    token_keys = derive_keys(list(secret_keys), oauth_server.KEY_PURPOSE)
    link_keys = derive_keys(list(secret_keys), LINK_KEY_PURPOSE)
    return oauth_server.SigningKeys(token_keys, issuer, TOKEN_AUDIENCE), link_keys


def signing_keys(settings: Settings) -> oauth_server.SigningKeys:
    """The keys access tokens are signed and verified with."""
    return _keys(tuple(settings.secret_keys), settings.public_base_url.rstrip("/"))[0]


def link_keys(settings: Settings) -> list[bytes]:
    """The keys per-record link tokens are signed with (first) and resolved with (any)."""
    return _keys(tuple(settings.secret_keys), settings.public_base_url.rstrip("/"))[1]


@router.post(EVENTS_PATH, status_code=200, responses=_EVENT_ERRORS)
async def receive_event(request: Request, services: ServicesDep) -> Response:
    """Receive one iCIMS Integration Event for any customer."""
    request.state.render_error = _renderer(request)
    settings = services.settings
    deadline = Deadline(settings.request_deadline_s)
    wire = await read_raw(request, settings.max_body_bytes, deadline.remaining())
    body = decode_content(
        wire, request.headers.get("content-encoding"), settings.max_decompressed_bytes
    )
    # The routing key is inside the body, so the JSON is read before the credentials are
    # checked; nothing is looked up or stored for a body that is not JSON.
    payload = require_object(parse_json(body))
    sent_type = payload.get("eventType")
    request.state.icims_actor = ACTORS.get(str(sent_type), Actor.RECRUITER)
    customer_id = _customer_id(payload)
    request.state.icims_customer = customer_id
    connection = await services.connections.by_account(SOURCE, customer_id)
    config = _authenticate(request, settings, connection, body, wire)
    assert connection is not None  # _authenticate refuses an unknown customer

    if not isinstance(sent_type, str) or not sent_type.strip():
        raise user_error(_RECRUITER_MESSAGES[400], "The notification has no eventType.")
    event_type = config.event_type(sent_type)
    request.state.icims_actor = ACTORS.get(event_type, Actor.RECRUITER)
    event_settings = config.options.events.get(event_type)
    if event_settings is None:
        raise user_error(
            f"This integration is not set up to receive {sent_type} notifications for your "
            "organization. Ask your iCIMS administrator to check the Event Notifications page, "
            "or ask the vendor to enable this notification.",
            f"eventType {sent_type!r} is not configured for customer {customer_id}.",
        )
    try:
        event = parse_event({**payload, "eventType": event_type})
    except ValidationError as exc:
        raise user_error(
            _RECRUITER_MESSAGES[400], f"The {event_type} event is not valid: {describe(exc)}."
        ) from exc

    stored = dict(payload)
    header_links = parse_link_header(request.headers.get("link"))
    if header_links:
        # Kept beside the payload, namespaced so a future iCIMS field cannot collide.
        stored["_hirehook"] = {
            "linkHeader": [link.model_dump(exclude_none=True) for link in header_links]
        }
    key, previous_key = _dedupe_keys(event, config.dedupe_window_s(event_type), time.time())
    if previous_key is not None:
        earlier = await services.intake.find(
            tenant_id=connection.tenant_id,
            source=SOURCE,
            dedupe_key=previous_key,
            deadline=deadline,
        )
        if earlier is not None:
            log.info("icims.duplicate_in_window", record_id=str(earlier.record_id))
            return earlier.response()

    outcome = await services.intake.record(
        Event(
            connection=connection,
            dedupe_key=key,
            event_type=event_type,
            known=True,
            payload=stored,
            raw_body=body,
            headers=request.headers,
        ),
        answer_for=functools.partial(
            _answer, event=event, settings=event_settings, keys=link_keys(settings)
        ),
        deadline=deadline,
        validate=_validator(services, connection, config, event, event_settings, deadline),
    )
    await services.intake.publish(outcome, known=True)
    return outcome.response()


def _customer_id(payload: dict[str, Any]) -> str:
    value = payload.get("customerId")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise user_error(_RECRUITER_MESSAGES[400], "The notification has no usable customerId.")
    return value.strip()


def _authenticate(
    request: Request,
    settings: Settings,
    connection: ConnectionInfo | None,
    body: bytes,
    wire: bytes,
) -> IcimsConfig:
    """The connection's configuration, once the credentials are proven to be its own."""
    config: IcimsConfig | None = None
    if connection is not None:
        try:
            config = IcimsConfig.parse(connection.options, connection.secrets)
        except ConfigError as exc:
            # The customer exists but cannot be served; the vendor has to act either way.
            raise vendor_error(
                f"connection {connection.tenant_slug}/{connection.name}: {exc}"
            ) from exc
    authorization = request.headers.get("authorization")
    scheme = icims_auth.scheme(authorization)
    try:
        if scheme == "basic":
            _check_basic(authorization, config)
        elif scheme == icims_auth.HMAC_ALGORITHM:
            _check_hmac(request, settings, config, body, wire)
        elif scheme == "bearer":
            _check_bearer(authorization or "", settings, connection, config)
        else:
            raise VerificationError("no Basic, HMAC or Bearer Authorization header")
    except VerificationError as exc:
        log.info(
            "icims.unauthenticated",
            customer_id=request.state.icims_customer,
            scheme=scheme or None,
            reason=str(exc),
        )
        raise unauthorized() from exc
    if config is None:  # pragma: no cover - every check above refuses an unknown customer
        raise unauthorized()
    return config


def _check_basic(authorization: str | None, config: IcimsConfig | None) -> None:
    if config is None or not config.basic_enabled:
        icims_auth.verify_basic(authorization, _DECOY, _DECOY)
        raise VerificationError("Basic is not configured for this customer")
    assert config.secrets.basic_username is not None
    assert config.secrets.basic_password is not None
    icims_auth.verify_basic(
        authorization, config.secrets.basic_username, config.secrets.basic_password
    )


def _check_hmac(
    request: Request, settings: Settings, config: IcimsConfig | None, body: bytes, wire: bytes
) -> None:
    usable = config is not None and config.hmac_enabled
    options = config.options if config is not None else None
    mode = options.hmac_body_hash if options is not None else "either"
    bodies = {"decoded": [body], "wire": [wire], "either": [body, wire]}[mode]
    icims_auth.verify_hmac(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers=request.headers,
        bodies=bodies if body is not wire else [body],
        secrets=config.secrets.hmac_secrets if config is not None and usable else [_DECOY],
        now=time.time(),
        tolerance_s=(options.hmac_tolerance_s if options else None)
        or settings.icims_hmac_tolerance_s,
        expected_user=options.hmac_user if options is not None else None,
    )
    if not usable:
        raise VerificationError("HMAC is not configured for this customer")


def _check_bearer(
    authorization: str,
    settings: Settings,
    connection: ConnectionInfo | None,
    config: IcimsConfig | None,
) -> None:
    parts = authorization.strip().split(None, 1)
    if len(parts) != 2:
        raise VerificationError("empty Bearer token")
    keys = signing_keys(settings)
    claims = oauth_server.verify_access_token(parts[1].strip(), keys)
    if connection is None or config is None or not config.oauth_enabled:
        raise VerificationError("OAuth is not configured for this customer")
    # A token is good for its own connection only: customers never speak for each other.
    if claims.connection_id != connection.id or claims.client_id != config.options.oauth_client_id:
        raise VerificationError("the token was issued to another connection")
    if not oauth_server.secret_still_valid(claims, config.secrets.oauth_client_secrets, keys):
        raise VerificationError("the token's client secret was rotated away (revoked)")


def _dedupe_keys(event: IcimsEvent, window_s: int, now: float) -> tuple[str, str | None]:
    """This delivery's key and, with a window, the previous window's key to check as well.

    iCIMS sends no event id; the ids in the payload identify the action. With a window the key
    carries the window number, and the previous window is checked too, so a repeat is caught
    for at least ``window_s`` and at most twice that.
    """
    parts = [event.event_type, event.customer_id, event.system_id]
    if isinstance(event, AssessmentEvent):
        parts.append(event.user_id)
    elif isinstance(event, WorkFlowStatusChangeEvent):
        parts += [event.person_id, event.job_id, event.old_status or "", event.new_status]
    elif event.event_type == ONBOARD_PORTAL_TASK:
        # Several portal tasks may point at one new hire; the task's return URL tells them apart.
        parts.append(hashlib.sha256(getattr(event, "return_url", "").encode()).hexdigest()[:16])
    base = ":".join(parts)
    if window_s <= 0:
        return base, None
    bucket = int(now // window_s)
    return f"{base}@{window_s}:{bucket}", f"{base}@{window_s}:{bucket - 1}"


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
    # [I] ATS-FACTS section 1: iCIMS says only that the link is "in the response header";
    # Location is the header a 303 carries. The JSON body repeats it for people reading logs.
    return json_answer(
        303, {"status": "accepted", "recordId": str(record_id), "link": link}, {"Location": link}
    )


def _validator(
    services: Services,
    connection: ConnectionInfo,
    config: IcimsConfig,
    event: IcimsEvent,
    settings: EventSettings,
    deadline: Deadline,
) -> Validate | None:
    rules = settings.validation
    if rules is None or not rules.enabled:
        return None
    if not isinstance(event, AssessmentEvent | WorkFlowStatusChangeEvent):  # pragma: no cover
        return None

    async def run() -> None:
        client = IcimsClient.for_connection(
            services.http, services.budget, services.cache, connection, config=config
        )
        await validate(
            client=client,
            config=config,
            rules=rules,
            event=event,
            deadline=deadline,
            reserve_s=services.settings.icims_commit_reserve_s,
            call_timeout_s=services.settings.api_call_timeout_s,
        )

    return run


# --- OAuth 2.0 token endpoint: iCIMS fetches a token here, then posts events with it. ----------

_OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"description": '`{"access_token", "token_type": "Bearer", "expires_in"}`'},
    400: {"description": "RFC 6749 error: invalid_request, unsupported_grant_type, ..."},
    401: {"description": "invalid_client: unknown client id or wrong secret."},
}


def _render_oauth_error(error: AppError) -> Response:
    code = {503: "temporarily_unavailable"}.get(error.status, "invalid_request")
    if error.status >= 500 and error.status != 503:
        code = "server_error"
    body = {"error": code, "error_description": error.user_message}
    return Response(
        orjson.dumps(body),
        error.status,
        headers={"Cache-Control": "no-store", **error.headers},
        media_type="application/json",
    )


def _reply(reply: oauth_server.TokenReply) -> Response:
    status, body, headers = reply
    plain = {k: v for k, v in headers if k.lower() != "content-type"}
    return Response(orjson.dumps(body), status, headers=plain, media_type="application/json")


_FORM_FIELDS = frozenset({"grant_type", "client_id", "client_secret", "scope", "audience"})


def _parse_form(raw: bytes) -> dict[str, str]:
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except ValueError as exc:
        raise InvalidRequestError("The body is not a valid form.") from exc
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:
            # RFC 6749 section 3.2: parameters must not be repeated.
            shown = name if name in _FORM_FIELDS else "A parameter"
            raise InvalidRequestError(f"{shown} is repeated.")
        form[name] = value
    return form


@router.post(TOKEN_PATH, tags=["OAuth"], responses=_OAUTH_ERRORS)
async def issue_token(request: Request, services: ServicesDep) -> Response:
    """OAuth 2.0 client-credentials token for iCIMS (client auth by HTTP Basic or form)."""
    request.state.render_error = _render_oauth_error
    settings = services.settings
    raw = await read_raw(request, MAX_TOKEN_REQUEST_BYTES, settings.request_deadline_s)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media != "application/x-www-form-urlencoded":
            raise InvalidRequestError("Send application/x-www-form-urlencoded parameters.")
        form = _parse_form(raw)
    except InvalidRequestError as exc:
        return _reply(oauth_server.error_reply(exc))
    try:
        client_id = oauth_server.basic_client_id(request.headers) or form.get("client_id")
    except ValueError:
        client_id = None  # token_reply answers invalid_client for an undecodable header
    client: oauth_server.OAuthClient | None = None
    if client_id:
        connection = await services.connections.by_option(SOURCE, "oauth_client_id", client_id)
        if connection is not None:
            try:
                config = IcimsConfig.parse(connection.options, connection.secrets)
            except ConfigError as exc:
                log.warning("icims.token_config_error", client_id=client_id, detail=str(exc))
                raise AppError(
                    500, "This client is misconfigured on the server.", str(exc), code="config"
                ) from exc
            if config.oauth_enabled:
                client = oauth_server.OAuthClient(
                    connection_id=connection.id,
                    client_id=client_id,
                    secrets=config.secrets.oauth_client_secrets,
                    expires_s=config.options.oauth_token_expires_s
                    or settings.icims_token_expires_s,
                )
    status, body, headers = oauth_server.token_reply(
        uri=settings.public_base_url.rstrip("/") + TOKEN_PATH,
        headers=request.headers,
        form=form,
        client=client,
        keys=signing_keys(settings),
    )
    if body.get("error") == "insecure_transport":
        log.warning("icims.token_insecure_public_url")
        raise AppError(500, "HIREHOOK_PUBLIC_BASE_URL must be an https URL.", code="config")
    if status == 200:
        log.info("icims.token_issued", client_id=client_id, expires_in=body.get("expires_in"))
    else:
        log.info("icims.token_refused", client_id=client_id, error=body.get("error"))
    return _reply((status, body, headers))
