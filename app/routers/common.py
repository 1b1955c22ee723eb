"""What every router shares: reading bodies under limits, answering outcomes, rendering errors.

This is the only place (with the routers themselves and ``app.main``) that knows HTTP: the core
(``app.intake.core``, ``app.store``, ``app.workers``) speaks in answers and errors, not responses.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import typing
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import orjson
import structlog
from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.types import Message

from app.intake.connections import ConnectionInfo
from app.intake.core import Answer, Deadline, Outcome, json_answer
from app.intake.guard import FailureLimiter, address_subject, retry_after
from app.intake.payload import decode_content, too_large
from app.platform.errors import AppError, unauthorized
from app.platform.metrics import AUTH_FAILURES, REFUSED
from app.routers.request_context import source_in
from app.schemas.parsed import Parsed
from app.services import Services
from app.verifiers import VerificationError, url_token

log = structlog.get_logger(__name__)

ErrorRenderer = Callable[[Request, AppError], Response]
Handler = Callable[[Request], Coroutine[Any, Any, Response]]
C = TypeVar("C")

# Verifying against a key nobody holds keeps an unknown tenant as slow as a bad signature.
DECOY_KEY = b"\x00" * 32


async def get_services(request: Request) -> Services:
    """The services of the running app (async: a sync dependency costs a thread hop)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


class BodyTooLarge(HTTPException):
    """A body declared or read past the cap of :func:`capped`: an HTTPException, because
    FastAPI passes those on from its own body reading (anything else becomes a 400)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, "The request body is too large.")
        self.max_bytes = max_bytes


def _declared_over(request: Request, max_bytes: int) -> bool:
    declared = request.headers.get("content-length")
    return declared is not None and declared.isdigit() and int(declared) > max_bytes


def capped(request: Request) -> Request:
    """``request`` with its body capped at ``max_body_bytes``, for every route: reading it
    raises :class:`BodyTooLarge` at once for a declared length over the cap, or as soon as
    the body passes it. Nothing is read that no route asks for."""
    services: Services = request.app.state.services
    max_bytes = services.settings.max_body_bytes
    receive = request.receive
    size = 0

    async def limited() -> Message:
        nonlocal size
        if _declared_over(request, max_bytes):
            raise BodyTooLarge(max_bytes)
        message = await receive()
        if message["type"] == "http.request":
            size += len(message.get("body", b""))
            if size > max_bytes:
                raise BodyTooLarge(max_bytes)
        return message

    return Request(request.scope, limited)


async def read_raw(request: Request, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """The body as sent, refused as soon as it passes ``max_bytes`` or takes ``timeout_s``."""
    if _declared_over(request, max_bytes):
        raise _unread(too_large(max_bytes, "request body"))
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _unread(too_large(max_bytes, "request body"))
                chunks.append(chunk)
    except BodyTooLarge as exc:
        # The route's cap is the app's or lower: the same refusal, in the route's hands.
        raise _unread(too_large(max_bytes, "request body")) from exc
    except TimeoutError as exc:
        # A body trickling in must not hold the request past the sender's own budget.
        raise _unread(too_slow(timeout_s or 0)) from exc
    return b"".join(chunks)


def too_slow(timeout_s: float) -> AppError:
    """The 408 of a body that did not finish arriving within ``timeout_s``."""
    return AppError(
        408, f"The request body did not arrive within {timeout_s:.0f} s.", code="timeout"
    )


async def buffer_body(request: Request, max_bytes: int) -> bytes:
    """Read the body under ``max_bytes`` (:func:`read_raw`) and keep it where FastAPI's own
    body parsing (JSON, forms) finds it, so a route declaring a body model reads it once and
    never more than the cap."""
    raw = await read_raw(request, max_bytes)
    # Starlette's Request.body() caches the bytes in ``_body`` and stream() replays them from
    # there; setting it is how a body read ahead is handed on.
    request._body = raw
    return raw


def unstorable_text(value: Any, where: str) -> str | None:
    """Where ``value`` (a string, or JSON's lists and objects of them, keys included) holds
    text no database column can take, and why; None if it holds none.

    PostgreSQL's text and JSONB cannot store U+0000, and a lone surrogate (JSON's ``\\ud800``
    escape) is not Unicode at all: either would fail the statement with a driver error deep
    in the store, so both are refused at the edge with the place they were found.
    """
    # Walked with a stack, not recursion: a body nested as deep as the JSON decoder allows
    # must not overflow here.
    pending: list[tuple[Any, str]] = [(value, where)]
    while pending:
        item, at = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return f"{at} contains a NUL character (U+0000), which cannot be stored"
            try:
                item.encode()
            except UnicodeEncodeError:
                return f"{at} contains a lone surrogate (U+D800 to U+DFFF), which is not text"
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                pending += [(inner, f"{at}.{key}"), (key, f"{at} (a key)")]
        elif isinstance(item, list):
            pending += [(inner, f"{at}.{i}") for i, inner in reversed(list(enumerate(item)))]
    return None


def request_text_problem(request: Request) -> str | None:
    """The first path or query parameter holding text that cannot be stored
    (:func:`unstorable_text`)."""
    for name, value in request.path_params.items():
        if found := unstorable_text(value, f"path.{name}"):
            return found
    for name, value in request.query_params.multi_items():
        if found := unstorable_text(name, "query (a name)") or unstorable_text(
            value, f"query.{name}"
        ):
            return found
    return None


def security_headers(response: Response) -> Response:
    """Headers every admin and console answer carries: no content sniffing (an error body
    quoting input must never be run as HTML) and no Referer leaking a console URL, whose
    query string holds record filters and subject ids."""
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "no-referrer"
    return response


def _unread(error: AppError) -> AppError:
    """``error``, answered on a connection that is then closed: the rest of the body was never
    read, and the connection cannot carry another request until it has been."""
    error.headers["Connection"] = "close"
    return error


def client_address(request: Request) -> str:
    """The sender's address (behind a proxy, as uvicorn's proxy headers report it)."""
    return request.client.host if request.client is not None else "unknown"


def too_many_failures(wait_s: float) -> AppError:
    """The 429 of a client or address blocked for failing authentication too often."""
    return AppError(
        429,
        "Too many failed authentication attempts from this client or address. Check the "
        "credentials configured for this endpoint, then retry after the time in Retry-After.",
        code="too_many_failures",
        # Closed after the answer: the body may be unread, and a client refused this way has
        # nothing to send on the connection until Retry-After has passed.
        headers={"Retry-After": retry_after(wait_s), "Connection": "close"},
    )


class AuthAttempt:
    """One request's dealings with the brute-force guard (:mod:`app.intake.guard`), which only ever
    sees the request if it fails: right credentials are never refused nor held by it."""

    def __init__(self, limiter: FailureLimiter, subjects: tuple[str, ...]) -> None:
        self._limiter = limiter
        self._subjects = subjects
        self.proven = False

    def authenticated(self) -> None:
        """The credentials are right: whatever this request is refused for from here on (its
        body, its customer), the guard neither counts nor holds it."""
        self.proven = True

    async def refused(self) -> None:
        """A refusal of a request not yet authenticated for another reason than its
        credentials (its body too large, undecodable or too slow): held like a failure when
        the subjects keep being refused, never counted towards a block."""
        if self.proven:
            return
        self._limiter.refused(*self._subjects)
        await self._limiter.hold(*self._subjects)

    async def failed(self) -> None:
        """Count a failed authentication, holding the answer if the subjects keep failing;
        raise the 429 if the subjects are blocked."""
        if self.proven:
            return
        wait = await self._limiter.failed(*self._subjects)
        await self._limiter.hold(*self._subjects, blocked=wait is not None)
        if wait is not None:
            raise too_many_failures(wait)


@asynccontextmanager
async def guarded(
    services: Services, request: Request, client: str | None = None
) -> AsyncIterator[AuthAttempt]:
    """Run a route's authentication under the brute-force guard.

    Nothing is asked of the guard on the way in: the credentials are checked first, whatever
    the sender's address (``addr:``) or ``client`` (an :func:`app.intake.guard.client_subject`
    of the identity the request claims, if it names one) did before, so the right secret is always
    accepted at once. A 401 raised inside counts as a failure of both subjects and becomes
    the 429 while either is blocked; any other 4xx raised inside before
    :meth:`AuthAttempt.authenticated` (the body refused before the credentials could be
    checked) is held like one, but never starts a block. A route that answers 401 without
    raising calls :meth:`AuthAttempt.failed` itself.
    """
    address = address_subject(client_address(request))
    attempt = AuthAttempt(services.guard, (address, client) if client else (address,))
    try:
        yield attempt
    except AppError as exc:
        if exc.status == 401:
            await attempt.failed()
        elif 400 <= exc.status < 500 and exc.status != 429:
            # A body refused before its credentials were checked (a gzip bomb inflated to its
            # cap, an oversized declared length) costs as much as a wrong credential and
            # must not be cheaper to repeat.
            await attempt.refused()
        raise


def answer_response(answer: Answer, *, record_id: Any, duplicate: bool) -> Response:
    """The HTTP response for a stored answer, marked so operators can tell a replay."""
    headers = dict(answer.headers)
    headers["hirehook-record-id"] = str(record_id)
    if duplicate:
        headers["hirehook-duplicate"] = "true"
    return Response(answer.body, answer.status, headers=headers, media_type="application/json")


def respond(outcome: Outcome, *, fallback: Answer | None = None) -> Response:
    """The response for an intake outcome (``fallback`` for a record nobody was answered for,
    such as one that arrived by polling and is now delivered again as a webhook)."""
    answer = outcome.answer or fallback or Answer(200, b'{"status":"accepted"}')
    return answer_response(answer, record_id=outcome.record_id, duplicate=outcome.duplicate)


async def accept(
    services: Services,
    connection: ConnectionInfo,
    parsed: Parsed,
    *,
    dedupe_key: str,
    payload: Any,
    raw_body: bytes,
    headers: Mapping[str, str],
    deadline: Deadline,
    answer: Callable[[uuid.UUID], Answer],
    markers: Mapping[str, str] | None = None,
) -> Response:
    """Record one parsed event (quarantined if it did not fit), publish its job after the
    commit, and answer: the tail every single-event route shares."""
    outcome = await services.intake.record(
        services.intake.event(
            connection,
            parsed,
            dedupe_key=dedupe_key,
            payload=payload,
            raw_body=raw_body,
            headers=headers,
            markers=markers,
        ),
        answer_for=answer,
        deadline=deadline,
    )
    await services.intake.publish(outcome, known=parsed.known and not parsed.problems)
    return respond(outcome)


def configured(
    connection: ConnectionInfo | None,
    parse: Callable[[dict[str, Any], dict[str, Any]], C],
    *,
    source: str,
    tenant: str,
) -> C | None:
    """``connection``'s configuration, or None for no connection or one whose configuration
    broke after it was loaded (refused when loaded; logged, and answered like an unknown
    tenant)."""
    if connection is None:
        return None
    try:
        return connection.parsed(parse)
    except ValueError as exc:
        log.warning(f"{source}.connection_invalid", tenant=tenant, detail=str(exc))
        return None


async def tenant_config(
    services: Services,
    tenant: str,
    source: str,
    parse: Callable[[dict[str, Any], dict[str, Any]], C],
) -> tuple[ConnectionInfo | None, C | None]:
    """The opening of every route with the tenant in its URL: the tenant's connection to
    ``source`` and its configuration (:func:`configured`)."""
    connection = await services.connections.by_tenant(tenant, source)
    return connection, configured(connection, parse, source=source, tenant=tenant)


def decoded(request: Request, services: Services, wire: bytes) -> bytes:
    """The body as sent (``wire``), inflated under the settings' caps."""
    return decode_content(
        wire,
        request.headers.get("content-encoding"),
        services.settings.max_decompressed_bytes,
        services.settings.max_compression_ratio,
    )


async def token_opening(
    services: Services,
    request: Request,
    *,
    tenant: str,
    token: str,
    source: str,
    parse: Callable[[dict[str, Any], dict[str, Any]], C],
    tokens: Callable[[C], Sequence[str]],
    deadline: Deadline,
) -> tuple[ConnectionInfo, C, bytes]:
    """The opening of a route whose sender is authenticated by a secret token in its URL
    (``auth = "url_token"``): the connection, its configuration and the decoded body, once
    ``token`` is one of ``tokens(config)``. A wrong token, an unknown tenant and a connection
    that signs instead are one and the same 401, counted by the guard."""
    async with guarded(services, request):
        wire = await read_raw(request, services.settings.max_body_bytes, deadline.remaining())
        connection, config = await tenant_config(services, tenant, source, parse)
        accepted = tokens(config) if config is not None else []
        if connection is None or config is None or not url_token.matches(accepted, token):
            raise unauthenticated(source, tenant, "unknown tenant or token")
        return connection, config, decoded(request, services, wire)


def unauthenticated(
    source: str, tenant: str, reason: str, *, decoy: Callable[[], object] | None = None
) -> AppError:
    """The 401 of a request that cannot be authentic, logged with ``reason``.

    ``decoy`` runs the source's own check against :data:`DECOY_KEY` first (its failure
    ignored) when no real check was made, so timing does not tell a tenant exists.
    """
    if decoy is not None:
        with contextlib.suppress(VerificationError):
            decoy()
    log.info(f"{source}.unauthenticated", tenant=tenant, reason=reason)
    return unauthorized()


def accepted_answer(status: int = 200, **fields: str) -> Callable[[uuid.UUID], Answer]:
    """The first answer to an accepted event: ``{"status": "accepted", "record_id", ...}``."""
    return lambda rid: json_answer(status, {"status": "accepted", "record_id": str(rid), **fields})


def default_body(error: AppError) -> dict[str, Any]:
    """The body of ``error`` in the default shape (also the OpenAPI document's examples)."""
    body: dict[str, Any] = {"error": {"code": error.code, "message": error.user_message}}
    if error.debug_message != error.user_message:
        body["error"]["detail"] = error.debug_message
    return body


def render_default(request: Request, error: AppError) -> Response:
    """The shape every source uses unless its sender expects another."""
    del request
    return Response(
        orjson.dumps(default_body(error)),
        error.status,
        headers=error.headers,
        media_type="application/json",
    )


def request_invalid(exc: RequestValidationError) -> AppError:
    """A 400 for a request FastAPI itself refused (a path or query parameter)."""
    return invalid_request(
        *(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5])
    )


def invalid_request(*problems: str) -> AppError:
    """The 400 of a request parameter out of bounds, each problem as ``<where>: <what>``."""
    return AppError(
        400, "The request is not valid: " + "; ".join(problems) + ".", code="bad_request"
    )


def http_refusal(exc: HTTPException) -> AppError:
    """FastAPI's own refusal (a JSON body it could not decode, ...) as one of ours, so the
    sender gets the route's error shape with a message that says what to fix."""
    if isinstance(exc, BodyTooLarge):
        return _unread(too_large(exc.max_bytes, "request body"))
    code = "bad_request"
    if exc.status_code == 400 and "pars" in str(exc.detail):
        message = "The request body could not be read as JSON; send a JSON object in UTF-8."
    elif exc.status_code == 404:
        # No route matched (Starlette's router): the path is not one of ours.
        code, message = "not_found", "Nothing is served at this path; /docs lists the operations."
    elif exc.status_code == 405:
        code = "method_not_allowed"
        message = "This path does not take this method; the Allow header lists those it takes."
    else:
        message = str(exc.detail)
    return AppError(exc.status_code, message, code=code, headers=dict(exc.headers or {}))


def note_refusal(request: Request, error: AppError, source: str) -> None:
    """Count a 401, 413 or 429 for the operators' list of refusals (:mod:`app.intake.refusals`):
    every refusal of every route class built by :func:`error_route` passes here, the guard's
    429s and the bodies refused before any credential was checked included. The tenant is
    the one the path (or the connection found) named, unverified; never a body or secret."""
    services: Services | None = getattr(request.app.state, "services", None)
    if services is None:
        return
    path: str = request.scope["path"]
    context = structlog.contextvars.get_contextvars()
    tenant = context.get("tenant")
    services.refusals.note(
        services.engine,
        tenant=tenant if isinstance(tenant, str) else None,
        source="admin" if path.startswith("/v1/admin") else source,
        status=error.status,
        reason=error.code,
        address=client_address(request),
    )


def render(request: Request, error: AppError, renderer: ErrorRenderer) -> Response:
    """Count, log and render one refusal."""
    source = source_in(request.scope)
    REFUSED.labels(source, str(error.status), error.code).inc()
    note_refusal(request, error, source)
    if error.status == 401:
        AUTH_FAILURES.labels(source).inc()
    if error.status >= 500:
        # The route's template, not the path: a path may carry a token (KeldairHR's token URL).
        route = getattr(request.scope.get("route"), "path", None)
        log.warning("request.failed", route=route, status=error.status, detail=error.debug_message)
    return renderer(request, error)


def direct_handler(route: APIRoute) -> Handler | None:
    """A handler calling ``route``'s endpoint straight from the request, or None when the
    endpoint asks for more than FastAPI can be skipped for.

    The event routes take nearly all the traffic and ask for only their path's text
    parameters, the request and the services, and answer a Response: solving that through
    FastAPI's dependency machinery per request (body reading, telemetry, validation of
    values that are already text) cost about a tenth of an event's CPU in the API. Anything
    else (a body, query or header parameters, other dependencies, overrides set by a test)
    goes through FastAPI as before.
    """
    dependant = route.dependant
    call = dependant.call
    if (
        call is None
        or not inspect.iscoroutinefunction(call)
        or route.body_field is not None
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.request_param_name is None
        or dependant.websocket_param_name
        or dependant.http_connection_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or any(not _plain_text(field) for field in dependant.path_params)
        or any(d.call is not get_services or d.dependencies for d in dependant.dependencies)
        or not _answers_response(call)
    ):
        return None
    endpoint: Callable[..., Coroutine[Any, Any, Any]] = call
    full = APIRoute.get_route_handler(route)
    request_name = dependant.request_param_name
    path_names = [(field.name, field.alias) for field in dependant.path_params]
    services_names = [d.name for d in dependant.dependencies if d.name is not None]
    if len(services_names) != len(dependant.dependencies):
        return None

    async def handle(request: Request) -> Response:
        if request.app.dependency_overrides:
            return await full(request)
        params = request.path_params
        values: dict[str, Any] = {name: params[alias] for name, alias in path_names}
        values[request_name] = request
        if services_names:
            services = await get_services(request)
            for name in services_names:
                values[name] = services
        response: Response = await endpoint(**values)
        return response

    return handle


def _answers_response(call: Callable[..., Any]) -> bool:
    """Whether ``call`` is declared to return a Response, which FastAPI passes on untouched."""
    try:
        returned = typing.get_type_hints(call).get("return")
    except (NameError, TypeError):
        return False
    return isinstance(returned, type) and issubclass(returned, Response)


def _plain_text(field: Any) -> bool:
    """A path parameter FastAPI would hand over as it is: plain ``str``, no constraints."""
    info = field.field_info
    return info.annotation is str and not info.metadata


class ErrorRoute(APIRoute):
    """The routes :func:`error_route` builds.

    ``direct_handle``: the whole of the route's answer to a request, every refusal rendered,
    for a route :func:`direct_handler` calls; None for one whose endpoint FastAPI must solve.
    It needs nothing Starlette's and FastAPI's layers between the request context and the
    route put in the scope (exception handlers, exit stacks), so the event routes are called
    with it straight from there (:mod:`app.routers.dispatch`).
    """

    direct_handle: Handler | None = None


def error_route(
    renderer: ErrorRenderer,
    *,
    admit: Callable[[Request], Awaitable[None]] | None = None,
    finish: Callable[[Response], Response] | None = None,
) -> type[ErrorRoute]:
    """A route class whose every refusal, early or late, is rendered by ``renderer``.

    Used as ``APIRouter(route_class=error_route(...))``: the sender of those routes always gets
    its own error shape, whether the body was too large, a credential wrong or the database
    down, and no handler has to remember to install it. ``admit`` runs before FastAPI reads
    or parses anything of the request (a credential checked before the body is read);
    ``finish`` sees every answer, refusals included.
    """

    class _Route(ErrorRoute):
        def get_route_handler(self) -> Handler:
            direct = direct_handler(self)
            handler = direct or super().get_route_handler()

            async def handle(request: Request) -> Response:
                try:
                    # Every route's body is capped, whether or not it is read ahead.
                    request = capped(request)
                    if admit is not None:
                        await admit(request)
                    response = await handler(request)
                except AppError as exc:
                    response = render(request, exc, renderer)
                except RequestValidationError as exc:
                    response = render(request, request_invalid(exc), renderer)
                except HTTPException as exc:
                    response = render(request, http_refusal(exc), renderer)
                return response if finish is None else finish(response)

            # Built again for each app including the route, and the last one built serves every
            # app: right for a direct route only, which reads all it needs (its app included)
            # from the request; FastAPI's handler for the app (dependency overrides) is left to
            # the stack.
            self.direct_handle = handle if direct is not None else None
            return handle

    return _Route


DefaultRoute = error_route(render_default)
