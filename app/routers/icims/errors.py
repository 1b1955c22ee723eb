"""iCIMS's Error Reporting Standard for Vendors, worded for whoever pressed the button.

Every refusal on the iCIMS event route, early (body too large, wrong credentials) or late
(validation, database down), is rendered here through the router's route class, as
``{"error": {"userMessage", "debugErrorMessage"}}`` with 400, 401, 429, 500 or 503.
"""

from __future__ import annotations

import secrets
from typing import Any

import orjson
import structlog
from fastapi import Request
from fastapi.responses import Response

from app.platform.errors import AppError
from app.routers.common import error_route
from app.schemas.icims import Actor

log = structlog.get_logger(__name__)

# What candidates and new hires read: never a request to fix something they cannot reach.
FRONT_MESSAGES: dict[Actor, dict[str, str]] = {
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
RECRUITER_MESSAGES = {
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
    # A 429 (too many failed credentials) keeps its status so the sender backs off.
    if status in (400, 401, 429, 500, 503):
        return status
    return 400 if status < 500 else 500


def icims_answer(
    error: AppError, actor: Actor = Actor.RECRUITER, ref: str | None = None
) -> tuple[int, dict[str, Any]]:
    """The status and body of a refusal worded for ``actor`` (``ref``: the reference a 500
    quotes; a new one by default). Also the OpenAPI document's examples."""
    status = _standard_status(error.status)
    ref = ref or secrets.token_hex(4)
    authored = error.code.startswith("icims.")
    debug = error.debug_message if authored else error.user_message
    if not authored and error.debug_message != error.user_message:
        debug = f"{debug} ({error.debug_message})"
    if status == 500:
        debug = f"{debug} [ref {ref}]"
    if actor in FRONT_MESSAGES:
        user = FRONT_MESSAGES[actor]["temporary" if status in (429, 503) else "failed"]
        if status == 500:
            # Whoever they turn to can find the log line (and the vendor's support) by it.
            user = f"{user} Reference: {ref}."
    elif authored and status == 400:
        user = error.user_message
    else:
        user = RECRUITER_MESSAGES.get(status, RECRUITER_MESSAGES[503]).format(ref=ref)
    return status, {"error": {"userMessage": user, "debugErrorMessage": debug}}


def render_icims(request: Request, error: AppError) -> Response:
    """Render a refusal for the actor the event's type names (a recruiter by default)."""
    actor: Actor = getattr(request.state, "icims_actor", Actor.RECRUITER)
    status, body = icims_answer(error, actor)
    if status != 429:
        # Not for a blocked sender: under attack that would be a line per request. app.intake.guard
        # logs each block once, and every refusal is counted in the rejected metric.
        log.info(
            "icims.refused",
            status=status,
            actor=actor.value,
            code=error.code,
            debug=body["error"]["debugErrorMessage"],
            customer_id=getattr(request.state, "icims_customer", None),
        )
    headers = {k: v for k, v in error.headers.items() if k.lower() == "retry-after"}
    return Response(orjson.dumps(body), status, headers=headers, media_type="application/json")


IcimsRoute = error_route(render_icims)
