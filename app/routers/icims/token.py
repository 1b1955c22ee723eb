"""The OAuth 2.0 token endpoint: iCIMS fetches a token here, then posts events with it.

Errors follow RFC 6749 (``{"error", "error_description"}``), never iCIMS's event error shape.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

import orjson
import structlog
from authlib.oauth2.rfc6749 import InvalidRequestError
from fastapi import APIRouter, Request
from fastapi.responses import Response

from app.intake.guard import client_subject
from app.intake.payload import too_large
from app.platform.errors import AppError
from app.routers import openapi
from app.routers.common import ServicesDep, error_route, guarded, read_raw
from app.routers.icims import docs
from app.routers.icims.auth import TOKEN_PATH, load, signing_keys
from app.schemas.icims import SOURCE
from app.verifiers import icims_oauth

MAX_TOKEN_REQUEST_BYTES = 16 * 1024
NOT_A_FORM = "Send application/x-www-form-urlencoded parameters."
PUBLIC_URL_NOT_HTTPS = "HIREHOOK_PUBLIC_BASE_URL must be an https URL."

log = structlog.get_logger(__name__)


def _oauth_error_body(error: AppError) -> dict[str, Any]:
    # RFC 6749 has no code for a blocked client; temporarily_unavailable with Retry-After
    # tells it to come back later, where invalid_client would say its secret is wrong.
    code = {429: "temporarily_unavailable", 503: "temporarily_unavailable"}.get(
        error.status, "invalid_request"
    )
    if error.status >= 500 and error.status != 503:
        code = "server_error"
    return {"error": code, "error_description": error.user_message}


_NO_STORE = {"Cache-Control": {"description": "no-store", "schema": {"type": "string"}}}
_OAUTH_ANSWERS: openapi.Responses = {
    200: {"model": docs.TokenAnswer, "description": "A Bearer token.", "headers": _NO_STORE},
    **openapi.refusals(
        (400, 401, 408, 413, 429, 500, 503),
        docs.OAuthError,
        meanings={
            400: "invalid_request, unsupported_grant_type, ... (not a form, a repeated "
            "parameter, no grant_type).",
            401: "invalid_client: unknown client id or wrong secret.",
            408: "invalid_request: the body did not arrive within the request budget.",
            413: "invalid_request: the body is over 16 KiB.",
            429: "temporarily_unavailable: too many failed client authentications.",
            500: "server_error: HIREHOOK_PUBLIC_BASE_URL is not https.",
            503: "temporarily_unavailable: the database is unreachable; retry.",
        },
        errors={
            **openapi.DEFAULT_ERRORS,
            413: (too_large(MAX_TOKEN_REQUEST_BYTES, "request body"),),
            500: (AppError(500, PUBLIC_URL_NOT_HTTPS, code="config"),),
        },
        render=_oauth_error_body,
        # Answered by authlib (oauth_server), not raised.
        bodies={
            400: {
                "not_a_form": icims_oauth.error_reply(InvalidRequestError(NOT_A_FORM))[1],
                "no_grant_type": icims_oauth.error_reply(
                    InvalidRequestError("Missing grant_type parameter.")
                )[1],
            },
            401: {"invalid_client": icims_oauth.INVALID_CLIENT[1]},
        },
    ),
}


def _render_oauth_error(request: Request, error: AppError) -> Response:
    del request
    body = _oauth_error_body(error)
    return Response(
        orjson.dumps(body),
        error.status,
        headers={"Cache-Control": "no-store", **error.headers},
        media_type="application/json",
    )


def _reply(reply: icims_oauth.TokenReply) -> Response:
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


router = APIRouter(tags=["OAuth"], route_class=error_route(_render_oauth_error))


@router.post(
    TOKEN_PATH,
    responses=_OAUTH_ANSWERS,
    openapi_extra={**docs.token_body(), **openapi.security(("oauthClientBasic",), ())},
)
async def issue_token(request: Request, services: ServicesDep) -> Response:
    """OAuth 2.0 client-credentials token for iCIMS (client auth by HTTP Basic or form)."""
    settings = services.settings
    raw = await read_raw(request, MAX_TOKEN_REQUEST_BYTES, settings.request_deadline_s)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media != "application/x-www-form-urlencoded":
            raise InvalidRequestError(NOT_A_FORM)
        form = _parse_form(raw)
    except InvalidRequestError as exc:
        return _reply(icims_oauth.error_reply(exc))
    try:
        client_id = icims_oauth.basic_client_id(request.headers) or form.get("client_id")
    except ValueError:
        client_id = None  # token_reply answers invalid_client for an undecodable header
    subject = client_subject(SOURCE, "oauth", client_id) if client_id else None
    async with guarded(services, request, subject) as attempt:
        client: icims_oauth.OAuthClient | None = None
        if client_id:
            connection = await services.connections.by_option(SOURCE, "oauth_client_id", client_id)
            loaded = load(connection)
            if loaded is not None and loaded.auth.oauth_enabled:
                client = icims_oauth.OAuthClient(
                    connection_id=loaded.connection.id,
                    client_id=client_id,
                    secrets=list(loaded.auth.oauth_client_secrets),
                    expires_s=loaded.auth.oauth_token_expires_s,
                )
        status, body, headers = icims_oauth.token_reply(
            uri=settings.public_base_url.rstrip("/") + TOKEN_PATH,
            headers=request.headers,
            form=form,
            client=client,
            keys=signing_keys(settings),
        )
        if body.get("error") == "insecure_transport":
            log.warning("icims.token_insecure_public_url")
            raise AppError(500, PUBLIC_URL_NOT_HTTPS, code="config")
        if status == 200:
            log.info("icims.token_issued", client_id=client_id, expires_in=body.get("expires_in"))
        else:
            log.info("icims.token_refused", client_id=client_id, error=body.get("error"))
        if status == 401:
            # invalid_client is answered, not raised, so the guard is told here; the failure
            # that starts a block is answered with the 429 instead.
            await attempt.failed()
    return _reply((status, body, headers))
