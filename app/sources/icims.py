"""iCIMS Integration Events: the source descriptor and its sample sender, which gzips and
authenticates events the way iCIMS does (Basic, HMAC, or a token from ``/oauth/token``)."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
import orjson
import typer

from app.clients.icims import DEFAULT_LIMITS
from app.dev.demo import DEMO_TENANTS, demo_connection
from app.schemas import icims_config
from app.schemas.icims import SOURCE
from app.sources import sent
from app.sources.base import Source
from app.verifiers import icims as icims_auth
from app.workers import icims as worker

ICIMS_EVENT_TYPES = (
    "AssessmentEvent",
    "WorkFlowStatusChangeEvent",
    "JobPostToWebEvent",
    "ViewJobWebPostEvent",
    "JobUnpostToWebEvent",
    "OnboardPortalTaskEvent",
)
IcimsAuth = Literal["basic", "hmac", "oauth"]


@dataclass(frozen=True, slots=True)
class IcimsCredentials:
    """What an iCIMS admin enters on the Event Notifications page, for each auth method."""

    basic_username: str | None = None
    basic_password: str | None = field(default=None, repr=False)
    hmac_user: str | None = None
    hmac_secret: str | None = field(default=None, repr=False)
    oauth_client_id: str | None = None
    oauth_client_secret: str | None = field(default=None, repr=False)


def icims_sample(
    event_type: str,
    customer_id: str = "1234",
    *,
    system_id: str | None = None,
    api_base: str = "https://api.icims.com",
) -> dict[str, Any]:
    """An iCIMS event as the developer pages show it (ids are strings)."""
    cust = f"{api_base}/customers/{customer_id}"
    person, job, workflow, recruiter = "2468", "1209", system_id or "13", "121"
    base: dict[str, Any] = {"customerId": customer_id, "eventType": event_type}
    if event_type == "AssessmentEvent":
        return base | {
            "userId": person,
            "systemId": workflow,
            "returnUrl": f"https://careers-demo.icims.com/jobs/{job}/candidate/return",
            "links": [
                {
                    "rel": "applicantWorkflow",
                    "title": "Recruiting Workflow",
                    "url": f"{cust}/applicantworkflows/{workflow}",
                },
                {"rel": "person", "title": "Candidate", "url": f"{cust}/people/{person}"},
            ],
        }
    if event_type == "WorkFlowStatusChangeEvent":
        return base | {
            "userId": recruiter,
            "personId": person,
            "jobId": job,
            "systemId": workflow,
            "newStatus": "C51218",
            "oldStatus": "C51216",
            "links": [
                {
                    "rel": "applicantWorkflow",
                    "title": "Recruiting Workflow",
                    "url": f"{cust}/applicantworkflows/{workflow}",
                },
                {"rel": "person", "title": "Candidate", "url": f"{cust}/people/{person}"},
                {"rel": "job", "title": "Job Profile", "url": f"{cust}/jobs/{job}"},
                {"rel": "user", "title": "Recruiter", "url": f"{cust}/people/{recruiter}"},
            ],
        }
    if event_type == "OnboardPortalTaskEvent":
        return base | {
            "userId": person,
            "systemId": person,
            "returnUrl": "https://onboard-demo.icims.com/portal/tasks/complete?task=77",
            "incompleteUrl": "https://onboard-demo.icims.com/portal/tasks",
            # [I] The job of the hire, as a rel="job" link (docs/icims.md, "Enrichment").
            "links": [
                {"rel": "person", "title": "New Hire", "url": f"{cust}/people/{person}"},
                {"rel": "job", "title": "Job Profile", "url": f"{cust}/jobs/{job}"},
            ],
        }
    body = base | {"userId": recruiter, "systemId": system_id or job}
    if event_type == "JobPostToWebEvent":
        body["portalUrl"] = f"https://careers-demo.icims.com/jobs/{body['systemId']}/job"
    return body


def icims_link_header(payload: dict[str, Any], api_base: str = "https://api.icims.com") -> str:
    """The ``Link`` request header iCIMS sends (its own bracket-less form, trailing comma)."""
    cust = f"{api_base}/customers/{payload['customerId']}"
    parts = [f'{cust}/people/{payload["userId"]};rel="user";title="Posting User"']
    if payload["eventType"].startswith(("Job", "ViewJob")):
        parts.insert(0, f'{cust}/jobs/{payload["systemId"]};rel="job";title="Job Profile"')
    return ",".join(parts) + ","


def icims_hmac_headers(
    *, url: str, body: bytes, user: str, secret: str, now: datetime | None = None
) -> dict[str, str]:
    """The ``x-icims-*`` headers and Authorization of an HMAC-signed POST of ``body``."""
    parts = urlsplit(url)
    headers = {
        "content-type": "application/json",
        "host": parts.netloc,
        icims_auth.CONTENT_HASH_HEADER: hashlib.sha256(body).hexdigest(),
        icims_auth.DATE_HEADER: (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    signed = ";".join(icims_auth.SIGNED_HEADERS)
    text = icims_auth.string_to_sign(
        method="POST", path=parts.path, query=parts.query, headers=headers, signed_headers=signed
    )
    headers["authorization"] = (
        f"{icims_auth.HMAC_ALGORITHM} user={user},signedheaders={signed},"
        f"signature={icims_auth.sign(secret, text)}"
    )
    return headers


def fetch_icims_token(base_url: str, client_id: str, client_secret: str) -> str:
    """A token from Hirehook's own ``/oauth/token``, the way iCIMS fetches one."""
    response = sent.post(
        f"{base_url.rstrip('/')}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, client_secret),
        timeout=30,
    )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


def icims_request(
    base_url: str,
    payload: dict[str, Any],
    *,
    auth: IcimsAuth,
    credentials: IcimsCredentials,
    gzip_body: bool = True,
    token: str | None = None,
) -> tuple[str, dict[str, str], bytes]:
    """URL, headers and body of one iCIMS event POST, gzip'd and authenticated as iCIMS does."""
    url = f"{base_url.rstrip('/')}/v1/icims/events"
    body = orjson.dumps(payload)
    headers: dict[str, str] = {"content-type": "application/json"}
    if auth == "basic":
        if credentials.basic_username is None or credentials.basic_password is None:
            raise ValueError("Basic needs a username and a password")
        pair = f"{credentials.basic_username}:{credentials.basic_password}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif auth == "hmac":
        if credentials.hmac_user is None or credentials.hmac_secret is None:
            raise ValueError("HMAC needs a user and a secret")
        # [I] The hash covers the JSON before compression; Hirehook accepts either form.
        headers = icims_hmac_headers(
            url=url, body=body, user=credentials.hmac_user, secret=credentials.hmac_secret
        )
    else:
        if token is None:
            if credentials.oauth_client_id is None or credentials.oauth_client_secret is None:
                raise ValueError("OAuth needs a client id and a client secret")
            token = fetch_icims_token(
                base_url, credentials.oauth_client_id, credentials.oauth_client_secret
            )
        headers["authorization"] = f"Bearer {token}"
    headers["link"] = icims_link_header(payload)
    content = body
    if gzip_body:
        content = gzip.compress(body)
        headers["content-encoding"] = "gzip"
    return url, headers, content


def send_icims(
    base_url: str,
    payload: dict[str, Any],
    *,
    auth: IcimsAuth,
    credentials: IcimsCredentials,
    gzip_body: bool = True,
    token: str | None = None,
) -> httpx.Response:
    """POST one iCIMS event to ``{base_url}/v1/icims/events``, gzip'd and authenticated."""
    url, headers, content = icims_request(
        base_url, payload, auth=auth, credentials=credentials, gzip_body=gzip_body, token=token
    )
    # iCIMS follows none of our redirects: the 303 is the answer, its Location the link.
    return sent.post(url, content=content, headers=headers, timeout=30, follow_redirects=False)


def _demo_credentials(customer: str) -> IcimsCredentials:
    found = demo_connection(SOURCE, lambda _t, c: c.get("account") == customer)
    if found is not None:
        secrets, options = found[1].get("secrets", {}), found[1].get("options", {})
        return IcimsCredentials(
            basic_username=secrets.get("basic_username"),
            basic_password=secrets.get("basic_password"),
            hmac_user=options.get("hmac_user", "hirehook-demo"),
            hmac_secret=next(iter(secrets.get("hmac_secrets", [])), None),
            oauth_client_id=options.get("oauth_client_id"),
            oauth_client_secret=next(iter(secrets.get("oauth_client_secrets", [])), None),
        )
    raise typer.BadParameter(f"no iCIMS connection for customerId {customer!r} in {DEMO_TENANTS}")


def send(
    url: Annotated[
        str, typer.Option(help="Base URL of the Hirehook API.")
    ] = "http://127.0.0.1:8000",
    auth: Annotated[
        str, typer.Option(help="basic, hmac or oauth (token fetched from /oauth/token first).")
    ] = "hmac",
    event_type: Annotated[
        str, typer.Option("--type", help="An iCIMS eventType, or 'all' for the six samples.")
    ] = "all",
    customer: Annotated[str, typer.Option(help="customerId.")] = "1234",
    system_id: Annotated[
        str | None, typer.Option(help="systemId (change it to see a new record, not a repeat).")
    ] = None,
    gzip_body: Annotated[bool, typer.Option("--gzip/--plain", help="Send gzip'd JSON.")] = True,
    username: Annotated[str | None, typer.Option(help="Basic username.")] = None,
    password: Annotated[str | None, typer.Option(help="Basic password.")] = None,
    hmac_user: Annotated[str | None, typer.Option(help="HMAC user=.")] = None,
    hmac_secret: Annotated[str | None, typer.Option(help="HMAC secret.")] = None,
    client_id: Annotated[str | None, typer.Option(help="OAuth client id.")] = None,
    client_secret: Annotated[str | None, typer.Option(help="OAuth client secret.")] = None,
) -> None:
    """Send iCIMS sample events, gzip'd and authenticated as iCIMS does (default: demo secrets)."""
    if auth not in ("basic", "hmac", "oauth"):
        raise typer.BadParameter("--auth is basic, hmac or oauth")
    types = list(ICIMS_EVENT_TYPES) if event_type == "all" else [event_type]
    given = {
        "basic_username": username,
        "basic_password": password,
        "hmac_user": hmac_user,
        "hmac_secret": hmac_secret,
        "oauth_client_id": client_id,
        "oauth_client_secret": client_secret,
    }
    if all(v is None for v in given.values()):
        credentials = _demo_credentials(customer)
    else:
        credentials = dataclasses.replace(
            IcimsCredentials(), **{k: v for k, v in given.items() if v is not None}
        )
    token = None
    try:
        if auth == "oauth":
            if credentials.oauth_client_id is None or credentials.oauth_client_secret is None:
                raise typer.BadParameter("OAuth needs --client-id and --client-secret")
            token = fetch_icims_token(
                url, credentials.oauth_client_id, credentials.oauth_client_secret
            )
            typer.echo("token: fetched from /oauth/token", err=True)
        failed = 0
        for name in types:
            payload = icims_sample(name, customer, system_id=system_id)
            response = send_icims(
                url,
                payload,
                auth=auth,  # type: ignore[arg-type]
                credentials=credentials,
                gzip_body=gzip_body,
                token=token,
            )
            where = response.headers.get("location")
            repeat = (
                " (repeat: first answer replayed)"
                if "hirehook-duplicate" in response.headers
                else ""
            )
            detail = f"Location: {where}" if where else response.text
            sent.answered(
                response, event=name, line=f"{response.status_code} {name}: {detail}{repeat}"
            )
            failed += response.status_code not in (200, 303)
    except (httpx.HTTPError, ValueError) as exc:
        typer.echo(f"failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    if failed:
        raise typer.Exit(1)


ICIMS = Source(
    name=SOURCE,
    title="iCIMS Integration Events",
    check=icims_config.check,
    credential_ids=icims_config.credential_ids,
    handler=worker.handle,
    limits=DEFAULT_LIMITS,
    send=send,
    stored_headers=frozenset({"x-icims-date", "link"}),
    router="app.routers.icims.routes",
    paths={"/v1/icims/": SOURCE, "/oauth/token": "oauth"},
    openapi_tags=(
        ("iCIMS", "iCIMS Integration Events, one URL for every customer."),
        ("OAuth", "Tokens for iCIMS connections that use OAuth 2.0."),
    ),
)
