"""The operator console, ``/console``: server-rendered pages over :mod:`app.admin.service`.

Behind the same admin keys as the API. Logging in with a key starts a session kept in
PostgreSQL (``console_session``) and sets a signed, HttpOnly, SameSite=Strict cookie holding
the session's random id (never the key) and a CSRF token; the session and its key are checked
on every request, so logging out, or revoking the key, ends it at once wherever the cookie
is. Every form posts the token back, and a POST without the session's token is refused.
No page shows a secret: the service layer returns none, and Jinja2 escapes everything. As in
the admin API, a body is read up to 1 MiB, and a path, query or form value holding a NUL
is refused before any page runs.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from itsdangerous import BadSignature, URLSafeTimedSerializer
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from pydantic import ValidationError

from app.admin import keys, service
from app.admin import schemas as s
from app.platform.crypto import derive_keys
from app.platform.errors import AppError
from app.routers.common import (
    BodyTooLarge,
    ServicesDep,
    buffer_body,
    capped,
    guarded,
    http_refusal,
    request_invalid,
    request_text_problem,
    security_headers,
    unstorable_text,
)
from app.services import Services

COOKIE = "hirehook_console"
# A session lasts a working day; the key is re-checked on every request regardless.
SESSION_MAX_AGE_S = 12 * 3600
# No console form comes near this; the admin API's cap.
MAX_BODY_BYTES = 1024 * 1024
PAGE_SIZE = 50
STATES = s.RECORD_STATES

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=StrictUndefined,
)
templates = Jinja2Templates(env=_env)


def _pretty(value: Any) -> str:
    """JSON indented for reading; text that is not JSON as it is."""
    if isinstance(value, str):
        text = value
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
    pretty: bytes = orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    return pretty.decode()


_env.filters["pretty"] = _pretty


def _serializer(request: Request) -> URLSafeTimedSerializer:
    services: Services = request.app.state.services
    # itsdangerous signs with the last key and verifies with all: the first configured key
    # signs here, like everywhere else.
    signing = list(reversed(derive_keys(services.settings.secret_keys, "console-session")))
    return URLSafeTimedSerializer(signing, salt="hirehook-console")


def _read_cookie(request: Request) -> dict[str, str]:
    raw = request.cookies.get(COOKIE)
    if not raw:
        return {}
    try:
        data = _serializer(request).loads(raw, max_age=SESSION_MAX_AGE_S)
    except BadSignature:
        return {}
    return data if isinstance(data, dict) else {}


def _set_cookie(request: Request, response: Response, data: dict[str, str]) -> None:
    response.set_cookie(
        COOKIE,
        _serializer(request).dumps(data),
        max_age=SESSION_MAX_AGE_S,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def _clear_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="strict")


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in operator: the key's owner, the session and its CSRF token."""

    caller: keys.Caller
    csrf: str
    session_id: str


async def _session(request: Request, services: ServicesDep) -> Session:
    """The operator behind the cookie, or a redirect to the login page."""
    data = _read_cookie(request)
    session_id, csrf = data.get("s"), data.get("c")
    if session_id and csrf:
        try:
            caller = await keys.session_caller(services.engine, session_id)
        except AppError:
            pass
        else:
            return Session(caller, csrf, session_id)
    # A revoked key or an expired or forged cookie: back to the login form, cookie cleared.
    cleared = Response()
    _clear_cookie(cleared)
    raise HTTPException(
        303,
        "Log in first.",
        headers={"location": "/console/login", "set-cookie": cleared.headers["set-cookie"]},
    )


SessionDep = Annotated[Session, Depends(_session)]


def _check_csrf(expected: str | None, presented: str) -> None:
    if not expected or not presented or not hmac.compare_digest(expected, presented):
        raise HTTPException(403, "The form's CSRF token is missing or wrong; reload the page.")


CsrfField = Annotated[str, Form()]


async def _admit(request: Request) -> None:
    """Read the body under the cap, and refuse a path, query or form value that no column can
    store (:func:`app.routers.common.unstorable_text`), before any page runs."""
    problem = request_text_problem(request)
    if problem is None and request.method == "POST":
        await buffer_body(request, MAX_BODY_BYTES)
        try:
            form = await request.form()
        except HTTPException:
            pass  # a form that does not parse is the route's to refuse
        else:
            fields = [(k, v) for k, v in form.multi_items() if isinstance(v, str)]
            for name, value in fields:
                if problem := unstorable_text(value, f"form field {name!r}"):
                    break
    if problem is not None:
        raise AppError(400, f"The request is not valid: {problem}.", code="bad_request")


class ConsoleRoute(APIRoute):
    """Refusals become an HTML page with their message (a redirect stays a redirect), and
    every answer carries :func:`~app.routers.common.security_headers`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                request = capped(request)
                await _admit(request)
                response = await handler(request)
            except AppError as exc:
                response = _page(request, "error.html", None, exc.status, message=exc.user_message)
                for name in ("Retry-After", "Connection"):
                    if name in exc.headers:
                        response.headers[name.lower()] = exc.headers[name]
            except RequestValidationError as exc:
                message = request_invalid(exc).user_message
                response = _page(request, "error.html", None, 400, message=message)
            except BodyTooLarge as exc:
                error = http_refusal(exc)
                response = _page(request, "error.html", None, 413, message=error.user_message)
                response.headers.update(error.headers)
            except HTTPException as exc:
                if 300 <= exc.status_code < 400:
                    # The way to the login page (_session), cookie cleared.
                    response = Response(status_code=exc.status_code, headers=exc.headers)
                else:
                    message = str(exc.detail)
                    response = _page(request, "error.html", None, exc.status_code, message=message)
            return security_headers(response)

        return route


router = APIRouter(prefix="/console", include_in_schema=False, route_class=ConsoleRoute)


def _page(
    request: Request,
    name: str,
    session: Session | None,
    status: int = 200,
    **context: Any,
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request,
        name,
        {"session": session, "csrf": session.csrf if session else "", **context},
        status_code=status,
    )
    # Pages carry record data: never cached, never framed.
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["content-security-policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response


# --- login ------------------------------------------------------------------------------------


@router.get("")
async def home(session: SessionDep) -> RedirectResponse:
    """The records list."""
    return RedirectResponse("/console/records", 303)


@router.get("/login")
async def login_form(request: Request, services: ServicesDep) -> Response:
    """The login form, with a CSRF token of its own (a pre-session cookie)."""
    try:
        await _session(request, services)
    except HTTPException:
        pass
    else:
        return RedirectResponse("/console/records", 303)
    token = _read_cookie(request).get("c") or secrets.token_urlsafe(32)
    response = _page(request, "login.html", None, csrf_login=token, error=None)
    _set_cookie(request, response, {"c": token})
    return response


@router.post("/login")
async def login(
    request: Request,
    services: ServicesDep,
    key: Annotated[str, Form()] = "",
    csrf: CsrfField = "",
) -> Response:
    """Log in with an admin key; a wrong one counts against the address like the API's."""
    _check_csrf(_read_cookie(request).get("c"), csrf)
    try:
        async with guarded(services, request):
            caller = await keys.authenticate(services.engine, key.strip())
    except AppError as exc:
        if exc.status != 401:
            raise
        token = secrets.token_urlsafe(32)
        response: Response = _page(
            request,
            "login.html",
            None,
            401,
            csrf_login=token,
            error="That key is unknown or revoked.",
        )
        _set_cookie(request, response, {"c": token})
        return response
    session_id = await keys.start_session(services.engine, caller, SESSION_MAX_AGE_S)
    response = RedirectResponse("/console/records", 303)
    # A fresh token at login: one planted before it is worth nothing after.
    _set_cookie(request, response, {"s": session_id, "c": secrets.token_urlsafe(32)})
    return response


@router.post("/logout")
async def logout(services: ServicesDep, session: SessionDep, csrf: CsrfField = "") -> Response:
    """End the session, on the server: a copy of the cookie opens nothing after."""
    _check_csrf(session.csrf, csrf)
    await keys.end_session(services.engine, session.session_id)
    response = RedirectResponse("/console/login", 303)
    _clear_cookie(response)
    return response


# --- records ----------------------------------------------------------------------------------

_FILTERS = (
    "tenant",
    "source",
    "event_type",
    "state",
    "received_from",
    "received_to",
    "person",
    "job",
    "application",
)


def _as_utc(value: str) -> datetime:
    # <input type=datetime-local> sends no zone; the console speaks UTC throughout.
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _query(values: dict[str, str]) -> s.ReplayFilters:
    given = {k: v.strip() for k, v in values.items() if k in _FILTERS and v.strip()}
    try:
        for name in ("received_from", "received_to"):
            if name in given:
                given[name] = _as_utc(given[name]).isoformat()
        return s.ReplayFilters.model_validate(given)
    except (ValueError, ValidationError) as exc:
        raise AppError(400, "A filter is not valid: times are YYYY-MM-DDTHH:MM (UTC).") from exc


def _form_values(q: s.ReplayFilters) -> dict[str, str]:
    values = {}
    for name, value in q.model_dump(exclude_none=True).items():
        values[name] = (
            value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")
            if isinstance(value, datetime)
            else str(value)
        )
    return values


@router.get("/records")
async def records(request: Request, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    """Records with filters, subject search and cursor pages, newest first."""
    params = dict(request.query_params)
    q = _query(params)
    cursor = params.get("cursor") or None
    page = await service.list_records(services, q=q, limit=PAGE_SIZE, cursor=cursor)
    values = _form_values(q)
    next_url = (
        None
        if page.next_cursor is None
        else "/console/records?" + urlencode({**values, "cursor": page.next_cursor})
    )
    return _page(
        request,
        "records.html",
        session,
        page=page,
        values=values,
        states=STATES,
        sources=sorted(service.reparsers()),
        next_url=next_url,
        filtered=bool(values),
    )


@router.get("/records/{record_id}")
async def record(
    request: Request, record_id: uuid.UUID, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """One record's whole story."""
    detail = await service.show_record(services, record_id=record_id)
    replayed = request.query_params.get("replayed")
    done = request.query_params.get("done")
    return _page(
        request,
        "record.html",
        session,
        r=detail,
        replayed=next((x for x in detail.replays if str(x.id) == replayed), None),
        done=done if done in ("retried", "discarded") else None,
    )


@router.post("/records/{record_id}/replay")
async def replay_record(
    record_id: uuid.UUID, services: ServicesDep, session: SessionDep, csrf: CsrfField = ""
) -> RedirectResponse:
    """Replay one record, then show it again."""
    _check_csrf(session.csrf, csrf)
    result = await service.replay(
        services, actor=session.caller.name, request=s.ReplayRequest(record_ids=[record_id])
    )
    return RedirectResponse(f"/console/records/{record_id}?replayed={result.id}", 303)


@router.post("/replays")
async def replay_filtered(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Replay every record matching the filters; the page shows what was reopened. Above
    ``service.REPLAY_CONFIRM_ABOVE`` records a page first says how many match and asks to
    confirm that number."""
    form = await request.form()
    _check_csrf(session.csrf, str(form.get("csrf", "")))
    q = _query({k: str(v) for k, v in form.items()})
    given = str(form.get("confirm", "")).strip()
    confirm = int(given) if given.isdigit() and len(given) <= 18 else None
    if confirm is None:
        counted = await service.replay(
            services, actor=session.caller.name, request=s.ReplayRequest(filters=q, dry_run=True)
        )
        if counted.matched > service.REPLAY_CONFIRM_ABOVE:
            return _page(
                request,
                "replay_confirm.html",
                session,
                matched=counted.matched,
                values=_form_values(q),
                back="/console/records?" + urlencode(_form_values(q)),
            )
    batches: list[tuple[int, int]] = []
    result = await service.replay(
        services,
        actor=session.caller.name,
        request=s.ReplayRequest(filters=q, confirm=confirm),
        progress=lambda done, total: batches.append((done, total)),
    )
    return _page(
        request,
        "replayed.html",
        session,
        result=result,
        batches=batches,
        values=_form_values(q),
        back="/console/records?" + urlencode(_form_values(q)),
    )


# --- dead letters -----------------------------------------------------------------------------

_CAUSES = {
    "configuration": "Configuration: the tenant must fix something (credentials, settings), "
    "then retry",
    "pipeline": "Pipeline: the ATS or Hirehook failed past every retry",
}


def _letter_filters(values: Any) -> dict[str, str]:
    """The tenant and source a dead-letter page is narrowed to (blank: any)."""
    return {
        k: str(values.get(k, "")).strip()
        for k in ("tenant", "source")
        if str(values.get(k, "")).strip()
    }


@router.get("/dead-letters")
async def dead_letters(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """Open dead letters grouped by cause and reason with counts, then each letter with
    Retry and Discard; narrowed by tenant and source."""
    resolved = request.query_params.get("resolved") == "1"
    narrowed = _letter_filters(request.query_params)
    letters = await service.list_dead_letters(
        services,
        include_resolved=resolved,
        limit=1000,
        tenant=narrowed.get("tenant"),
        source=narrowed.get("source"),
    )
    reasons = await service.dead_letter_groups(
        services, tenant=narrowed.get("tenant"), source=narrowed.get("source")
    )
    groups = [
        (kind, title, [x for x in letters if x.kind == kind]) for kind, title in _CAUSES.items()
    ]
    done = request.query_params.get("done")
    count = request.query_params.get("count")
    return _page(
        request,
        "dead_letters.html",
        session,
        groups=groups,
        reasons=[
            (g, "/console/dead-letters/retry?" + urlencode({**narrowed, **_group_of(g)}))
            for g in reasons
        ],
        resolved=resolved,
        values=narrowed,
        sources=sorted(service.reparsers()),
        done=done if done in ("retried", "discarded") and count and count.isdigit() else None,
        count=count,
    )


def _group_of(group: s.DeadLetterGroup) -> dict[str, str]:
    return {"kind": group.kind, "reason": group.reason, "stage": group.stage}


@router.get("/dead-letters/retry")
async def confirm_group_retry(
    request: Request, services: ServicesDep, session: SessionDep
) -> HTMLResponse:
    """How many open letters a group's retry starts over, before it runs."""
    narrowed = _letter_filters(request.query_params)
    wanted = {k: request.query_params.get(k, "") for k in ("kind", "reason", "stage")}
    found = [
        g
        for g in await service.dead_letter_groups(
            services, tenant=narrowed.get("tenant"), source=narrowed.get("source")
        )
        if _group_of(g) == wanted
    ]
    return _page(
        request,
        "dead_letters_retry.html",
        session,
        group=found[0] if found else None,
        wanted=wanted,
        values=narrowed,
        back="/console/dead-letters?" + urlencode(narrowed),
    )


@router.post("/dead-letters")
async def act_on_dead_letters(
    services: ServicesDep,
    session: SessionDep,
    action: Annotated[str, Form()] = "",
    csrf: CsrfField = "",
    letter: Annotated[int | None, Form()] = None,
    kind: Annotated[str, Form()] = "",
    reason: Annotated[str, Form()] = "",
    stage: Annotated[str, Form()] = "",
    tenant: Annotated[str, Form()] = "",
    source: Annotated[str, Form()] = "",
    note: Annotated[str, Form()] = "",
    back: Annotated[str, Form()] = "",
) -> RedirectResponse:
    """Retry or discard one letter (``letter``), every open one of a cause (``kind``), or of
    one group (``kind``, ``reason`` and ``stage``, with ``tenant`` and ``source``)."""
    _check_csrf(session.csrf, csrf)
    if action not in ("retry", "discard"):
        raise AppError(400, "Choose Retry or Discard.")
    group = {
        "kind": kind or None,
        "reason": reason or None,
        "stage": stage or None,
        "tenant": tenant or None,
        "source": source or None,
    }
    try:
        chosen = s.DeadLetterAction.model_validate(
            {
                "ids": [letter] if letter is not None else [],
                **(group if letter is None else {}),
                "note": note.strip() or None,
            }
        )
    except ValidationError as exc:
        raise AppError(
            400, "Name a dead letter or a cause; a note is at most 2000 characters."
        ) from exc
    act = service.retry_dead_letters if action == "retry" else service.discard_dead_letters
    result = await act(services, action=chosen)
    done = "retried" if action == "retry" else "discarded"
    if letter is not None and _RECORD_PAGE.fullmatch(back):
        # Acted on from the record's page: back to it.
        return RedirectResponse(f"{back}?done={done}", 303)
    return RedirectResponse(f"/console/dead-letters?done={done}&count={result.count}", 303)


_RECORD_PAGE = re.compile(r"/console/records/[0-9a-f-]{36}")


# --- refusals ---------------------------------------------------------------------------------

_REFUSAL_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


@router.get("/refusals")
async def refusals(request: Request, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    """Refused requests (401, 413, 429) per minute, tenant, source, reason and address."""
    params = request.query_params
    values = {
        k: params.get(k, "").strip()
        for k in ("tenant", "source", "status", "address")
        if params.get(k, "").strip()
    }
    window = params.get("window", "24h")
    if window not in _REFUSAL_WINDOWS:
        window = "24h"
    status = values.get("status")
    if status is not None and status not in ("401", "413", "429"):
        raise AppError(400, "The status is one of 401, 413 and 429.")
    listed = await service.list_refusals(
        services,
        since=datetime.now(UTC) - _REFUSAL_WINDOWS[window],
        tenant=values.get("tenant"),
        source=values.get("source"),
        status=int(status) if status else None,
        address=values.get("address"),
        limit=500,
    )
    return _page(
        request,
        "refusals.html",
        session,
        refusals=listed,
        values=values,
        window=window,
        windows=list(_REFUSAL_WINDOWS),
        total=sum(r.count for r in listed),
    )


# --- statistics -------------------------------------------------------------------------------

_WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7)}


@router.get("/stats")
async def stats(request: Request, services: ServicesDep, session: SessionDep) -> HTMLResponse:
    """Counters per tenant and source over a window, and the backlog now."""
    window = request.query_params.get("window", "24h")
    if window not in _WINDOWS:
        window = "24h"
    now = datetime.now(UTC)
    figures = await service.stats(services, since=now - _WINDOWS[window], until=now)
    return _page(
        request,
        "stats.html",
        session,
        stats=figures,
        window=window,
        windows=list(_WINDOWS),
        states=STATES,
    )


# --- style ------------------------------------------------------------------------------------

_STYLE = (Path(__file__).parent / "console.css").read_bytes()


@router.get("/console.css")
async def style() -> Response:
    """The console's one stylesheet, served from the package (no CDN, no build step)."""
    return Response(_STYLE, media_type="text/css", headers={"cache-control": "max-age=3600"})
