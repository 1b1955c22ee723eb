"""Validate before commit (iCIMS "implementing transactions", steps 3-6).

Within what is left of the request's time budget, fetch the person, job and workflow an event
names from the customer's iCIMS API, check the connection's rules (package selection, required
fields), and refuse with a message the actor can act on, or, where the connection (or
Application Complete's failsafe default) says so, record the event anyway with a note.
Fetched documents land in the document cache, where the worker enriching the record finds them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import Any

import structlog

from app.clients.base import ApiError
from app.clients.icims import IcimsClient
from app.intake.core import Deadline
from app.platform.errors import AppError, unavailable
from app.schemas.icims import (
    ACTORS,
    Actor,
    AssessmentEvent,
    IcimsEvent,
    WorkFlowStatusChangeEvent,
)
from app.schemas.icims_config import (
    PROFILE_KINDS,
    WORKFLOW_JOB_FIELD,
    IcimsConfig,
    ProfileKind,
    ValidationRules,
)

log = structlog.get_logger(__name__)

Documents = dict[ProfileKind, dict[str, Any]]
# The subjects an event names (app/schemas/icims.py ``subjects``, the Link header included)
# and the API profiles they are.
SUBJECT_PROFILES: dict[str, ProfileKind] = {
    "person": "people",
    "job": "jobs",
    "application": "applicantworkflows",
}


def user_error(user_message: str, debug_message: str) -> AppError:
    """400: the person who triggered the event can fix it."""
    return AppError(400, user_message, debug_message, code="icims.user")


def vendor_error(debug_message: str) -> AppError:
    """500: only the vendor (or the customer's iCIMS administrator) can fix it."""
    return AppError(
        500, "The integration is not set up correctly.", debug_message, code="icims.vendor"
    )


async def check(
    *,
    client: IcimsClient,
    config: IcimsConfig,
    rules: ValidationRules,
    event: IcimsEvent,
    named: Mapping[str, str],
    deadline: Deadline,
    reserve_s: float,
    call_timeout_s: float,
) -> dict[str, Any] | None:
    """Validate, answering as the event's actor should hear it (docs/icims.md).

    None when the event passed; a note to keep beside the payload when it failed (or could
    not be checked) and the connection accepts it anyway; raises :class:`AppError` to refuse.
    """
    try:
        await validate(
            client=client,
            config=config,
            rules=rules,
            event=event,
            named=named,
            deadline=deadline,
            reserve_s=reserve_s,
            call_timeout_s=call_timeout_s,
        )
    except AppError as exc:
        api_error = exc.status != 400
        if rules.on_failure(event.event_type, api_error=api_error) == "accept":
            log.warning(
                "icims.validation_failed_accepted",
                status=exc.status,
                code=exc.code,
                debug=exc.debug_message,
            )
            note: dict[str, Any] = {
                "outcome": "unchecked" if api_error else "invalid",
                "status": exc.status,
                "debugErrorMessage": exc.debug_message,
            }
            if not api_error:
                # What a recruiter would have read: the vendor can show it where they can act.
                note["userMessage"] = exc.user_message
            return note
        if exc.status == 400 and ACTORS.get(event.event_type) is Actor.NEW_HIRE:
            # A new hire can neither fill in a profile field nor pick a package: the
            # employer's support has to act, and iCIMS's standard calls that a 500.
            raise vendor_error(exc.debug_message) from exc
        raise
    return None


async def validate(
    *,
    client: IcimsClient,
    config: IcimsConfig,
    rules: ValidationRules,
    event: IcimsEvent,
    named: Mapping[str, str],
    deadline: Deadline,
    reserve_s: float,
    call_timeout_s: float,
) -> Documents:
    """Fetch what ``rules`` need and check it; raises :class:`AppError` (400, 500 or 503)."""
    package = _package_from_status(rules, event)
    # The connection's cap, and never beyond the time the commit and the answer still need.
    budget_s = min(rules.timeout_s, deadline.remaining() - reserve_s)
    if budget_s <= 0:
        raise unavailable("no time left in the request's budget to ask the iCIMS API")
    try:
        async with asyncio.timeout(budget_s):
            documents = await _fetch(
                client, config, rules, event, named, min(budget_s, call_timeout_s)
            )
    except TimeoutError as exc:
        raise unavailable(
            f"the iCIMS API did not answer within the validation budget ({budget_s:.1f} s)"
        ) from exc
    except ApiError as exc:
        if exc.transient:
            raise unavailable(f"iCIMS API: {exc}") from exc
        # Refused credentials, a profile the integration user may not see, a missing
        # profile: nobody in front of the screen can fix these.
        raise vendor_error(f"iCIMS API: {exc}") from exc
    if rules.package_field is not None:
        package = _package_from_field(rules, config, event.event_type, documents)
    _check_required(rules, config, package, documents)
    return documents


def _package_from_status(rules: ValidationRules, event: IcimsEvent) -> str | None:
    if rules.status_packages is None or not isinstance(event, WorkFlowStatusChangeEvent):
        return None
    package = rules.status_packages.get(event.new_status)
    if package is None:
        raise user_error(
            "The status you selected is not set up to start this integration. Select one of "
            "the statuses set up for it, or ask your iCIMS administrator to map this status.",
            f"newStatus {event.new_status!r} is not in the connection's status_packages "
            f"({', '.join(sorted(rules.status_packages)) or 'none mapped'}).",
        )
    return package


async def _fetch(
    client: IcimsClient,
    config: IcimsConfig,
    rules: ValidationRules,
    event: IcimsEvent,
    named: Mapping[str, str],
    budget_s: float,
) -> Documents:
    # The rules decide which profiles are fetched; the connection's field lists decide with
    # which fields, so the worker's enrichment finds these very documents in the cache.
    needed = rules.fields(event.event_type)
    fields = config.fields_for(event.event_type)
    customer = event.customer_id
    ids = {
        SUBJECT_PROFILES[name]: value for name, value in named.items() if name in SUBJECT_PROFILES
    }
    if isinstance(event, AssessmentEvent) and "jobs" in needed:
        # Application Complete names the candidate and the workflow; the job is the workflow's.
        needed.setdefault("applicantworkflows", [])
    wanted = [kind for kind in PROFILE_KINDS if kind in needed and kind in ids]
    calls: list[Awaitable[dict[str, Any]]] = [
        client.get_profile(customer, kind, ids[kind], fields=fields[kind], timeout_s=budget_s)
        for kind in wanted
    ]
    documents: Documents = dict(zip(wanted, await _all_or_nothing(calls), strict=True))
    if "jobs" in needed and "jobs" not in documents:
        job_id = _id_of(documents["applicantworkflows"].get(WORKFLOW_JOB_FIELD))
        if job_id is None:
            raise vendor_error(
                f"applicantworkflows {event.system_id} has no {WORKFLOW_JOB_FIELD}; "
                "cannot check the job's required fields"
            )
        documents["jobs"] = await client.get_profile(
            customer, "jobs", job_id, fields=fields["jobs"], timeout_s=budget_s
        )
    log.info("icims.validation_fetched", profiles=sorted(documents))
    return documents


async def _all_or_nothing(calls: list[Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    # Unlike a bare gather, one failure (or the budget running out) cancels the other calls
    # instead of leaving them running after the request has been answered.
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def _package_from_field(
    rules: ValidationRules, config: IcimsConfig, event_type: str, docs: Documents
) -> str:
    assert rules.package_field is not None
    profile = rules.package_profile_for(event_type)
    where = config.placeholder(profile, rules.package_field)
    raw = docs.get(profile, {}).get(rules.package_field)
    offered = ", ".join(sorted(rules.packages))
    candidates = _texts(raw)
    if not candidates:
        raise user_error(
            f"Select a package in {where}, then try again.",
            f"{profile}.{rules.package_field} is empty (or hidden from the integration user); "
            f"packages offered: {offered}.",
        )
    for text in candidates:
        if text in rules.packages:
            return text
    raise user_error(
        f"The package selected in {where} is not offered by this integration. Select one of: "
        f"{offered}.",
        f"{profile}.{rules.package_field} is {candidates!r}; packages offered: {offered}.",
    )


def _check_required(
    rules: ValidationRules, config: IcimsConfig, package: str | None, docs: Documents
) -> None:
    missing: list[tuple[ProfileKind, str]] = []
    for kind, names in rules.required_for(package).items():
        document = docs.get(kind, {})
        missing.extend((kind, name) for name in names if not _texts(document.get(name)))
    if not missing:
        return
    placeholders = [config.placeholder(kind, name) for kind, name in missing]
    listed = ", ".join(placeholders)
    raise user_error(
        f"Fill in {listed}, then try again.",
        "Required fields are empty or hidden from the integration user"
        + (f" for package {package!r}" if package else "")
        + ": "
        + ", ".join(f"{kind}.{name}" for kind, name in missing)
        + ".",
    )


def _texts(value: Any) -> list[str]:
    """The non-empty text forms of a field: a string, a number, a list node ``{id, value}``."""
    if isinstance(value, dict):
        return [t for key in ("value", "id", "formattedvalue") for t in _texts(value.get(key))]
    if isinstance(value, list):
        return [t for item in value for t in _texts(item)]
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, str | int | float):
        text = str(value).strip()
        return [text] if text else []
    return []


def _id_of(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("id")
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        return str(value).strip()
    return None
