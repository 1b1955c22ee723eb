"""iCIMS authentication: Basic, HMAC tampering, and Hirehook as the OAuth token server."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import TEST_SECRET_KEY, make_settings, run_app
from tests.support.icims import (
    BASIC_PASSWORD,
    BASIC_USER,
    CLIENT_ID,
    CLIENT_SECRET,
    HMAC_SECRET,
    URL,
    add_icims,
    basic_header,
    error_of,
    fetch_token,
    icims_hmac_headers,
    icims_options,
    icims_secrets,
    payload,
    records,
    send,
)

BODY = payload("WorkFlowStatusChangeEvent")
PLAIN = orjson.dumps(BODY)


@pytest.fixture
async def acme(services: Services) -> Services:
    await add_icims(services)
    return services


async def post(
    client: httpx.AsyncClient, headers: dict[str, str], content: bytes = PLAIN
) -> httpx.Response:
    return await client.post(URL, content=content, headers=headers)


def icims_date(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S+0000")


# --- Basic -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        basic_header(password="wrong"),
        basic_header(user="someone-else"),
        basic_header(password=BASIC_PASSWORD + "\x00"),
        {"authorization": "Basic not-base64!!"},
        {"authorization": "Basic " + base64.b64encode(BASIC_USER.encode()).decode()},
        {"authorization": "Basic"},
        {"authorization": "Digest username=x"},
        {},
    ],
    ids=["password", "username", "suffix", "not-b64", "no-colon", "empty", "digest", "none"],
)
async def test_bad_basic_credentials_are_401(
    client: httpx.AsyncClient, acme: Services, headers: dict[str, str]
) -> None:
    response = await post(client, {"content-type": "application/json"} | headers)
    assert response.status_code == 401
    assert await records(acme) == []


async def test_a_method_the_connection_did_not_set_up_is_refused(
    client: httpx.AsyncClient, services: Services
) -> None:
    only_hmac = icims_secrets(basic_username=None, basic_password=None, oauth_client_secrets=[])
    only_hmac = {k: v for k, v in only_hmac.items() if v not in (None, [])}
    options = icims_options()
    del options["oauth_client_id"]
    await add_icims(services, options=options, secrets=only_hmac)
    assert (await post(client, basic_header())).status_code == 401
    assert (await post(client, icims_hmac_headers(PLAIN))).status_code == 200
    token_reply = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert token_reply.status_code == 401


# --- HMAC ------------------------------------------------------------------------------------


async def test_hmac_over_plain_or_gzip_bytes_is_accepted(
    client: httpx.AsyncClient, acme: Services
) -> None:
    packed = gzip.compress(PLAIN)
    # Which bytes iCIMS hashes is not documented; both forms verify by default.
    over_plain = icims_hmac_headers(PLAIN) | {"content-encoding": "gzip"}
    assert (await post(client, over_plain, packed)).status_code == 200
    other = orjson.dumps(payload("JobUnpostToWebEvent"))
    packed_other = gzip.compress(other)
    over_wire = icims_hmac_headers(packed_other) | {"content-encoding": "gzip"}
    assert (await post(client, over_wire, packed_other)).status_code == 200
    assert len(await records(acme)) == 2


async def test_hmac_body_hash_can_be_pinned_to_one_form(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_icims(services, options=icims_options(hmac_body_hash="decoded"))
    packed = gzip.compress(PLAIN)
    over_wire = icims_hmac_headers(packed) | {"content-encoding": "gzip"}
    assert (await post(client, over_wire, packed)).status_code == 401
    over_plain = icims_hmac_headers(PLAIN) | {"content-encoding": "gzip"}
    assert (await post(client, over_plain, packed)).status_code == 200


def _tamper_body(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    return headers, PLAIN.replace(b"C51218", b"C99999")


def _tamper_body_and_hash(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    forged = PLAIN.replace(b"C51218", b"C99999")
    recomputed = icims_hmac_headers(forged)["x-icims-content-sha256"]
    return headers | {"x-icims-content-sha256": recomputed}, forged


def _tamper_date(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    at = datetime.strptime(headers["x-icims-date"], "%Y-%m-%dT%H:%M:%S%z")
    return headers | {"x-icims-date": icims_date(at + timedelta(seconds=1))}, PLAIN


def _tamper_signed_header(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    return headers | {"content-type": "application/json; charset=utf-8"}, PLAIN


def _tamper_signature(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    auth = headers["authorization"]
    flipped = auth[:-1] + ("0" if auth[-1] != "0" else "1")
    return headers | {"authorization": flipped}, PLAIN


def _tamper_user(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    # The user= part is not under the signature; the connection pins it.
    return headers | {"authorization": headers["authorization"].replace("user=", "user=x")}, PLAIN


def _drop_date(headers: dict[str, str]) -> tuple[dict[str, str], bytes]:
    return {k: v for k, v in headers.items() if k != "x-icims-date"}, PLAIN


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_body,
        _tamper_body_and_hash,
        _tamper_date,
        _tamper_signed_header,
        _tamper_signature,
        _tamper_user,
        _drop_date,
    ],
    ids=["body", "body+hash", "date", "header", "signature", "user", "no-date"],
)
async def test_hmac_tampering_is_401(
    client: httpx.AsyncClient, acme: Services, tamper: Any
) -> None:
    genuine = icims_hmac_headers(PLAIN)
    assert (await post(client, genuine)).status_code == 200
    headers, content = tamper(icims_hmac_headers(PLAIN))
    response = await post(client, headers, content)
    assert response.status_code == 401
    assert len(await records(acme)) == 1


async def test_hmac_must_sign_the_date_and_the_body_hash(
    client: httpx.AsyncClient, acme: Services
) -> None:
    unsigned_date = icims_hmac_headers(
        PLAIN, signed=("content-type", "host", "x-icims-content-sha256")
    )
    assert (await post(client, unsigned_date)).status_code == 401
    unsigned_hash = icims_hmac_headers(PLAIN, signed=("content-type", "host", "x-icims-date"))
    assert (await post(client, unsigned_hash)).status_code == 401


# Two seconds past the tolerance: x-icims-date carries whole seconds, so 301 s could truncate to
# just over 300 s and, by the time the server reads it, fall inside the tolerance.
@pytest.mark.parametrize(("skew", "status"), [(-302, 401), (302, 401), (-290, 200), (290, 200)])
async def test_hmac_dates_outside_the_tolerance_are_refused(
    client: httpx.AsyncClient, acme: Services, skew: int, status: int
) -> None:
    date = icims_date(datetime.now(UTC) + timedelta(seconds=skew))
    response = await post(client, icims_hmac_headers(PLAIN, date=date))
    assert response.status_code == status


async def test_hmac_secrets_rotate_without_dropping_events(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_icims(
        services,
        secrets=icims_secrets(hmac_secrets=["new-hmac-secret-Dy5tM1wH8pRc3sVq9a", HMAC_SECRET]),
    )
    assert (await post(client, icims_hmac_headers(PLAIN))).status_code == 200
    other = orjson.dumps(payload("JobUnpostToWebEvent"))
    assert (
        await post(
            client, icims_hmac_headers(other, secret="new-hmac-secret-Dy5tM1wH8pRc3sVq9a"), other
        )
    ).status_code == 200
    wrong = orjson.dumps(payload("JobUnpostToWebEvent", systemId="77"))
    assert (
        await post(client, icims_hmac_headers(wrong, secret="retired"), wrong)
    ).status_code == 401


# --- the token endpoint ------------------------------------------------------------------------


async def test_token_by_basic_or_form_client_authentication(
    client: httpx.AsyncClient, acme: Services
) -> None:
    by_basic = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    by_form = await client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
        },
    )
    for reply in (by_basic, by_form):
        assert reply.status_code == 200
        assert reply.headers["cache-control"] == "no-store"
        body = reply.json()
        assert set(body) == {"access_token", "token_type", "expires_in"}
        assert body["token_type"] == "Bearer" and body["expires_in"] == 86400
        assert body["access_token"].count(".") == 2  # a JWT: any replica can verify it
        response = await send(client, BODY, auth="oauth", token=body["access_token"])
        assert response.status_code == 200


def _form(**fields: str) -> dict[str, str]:
    return fields


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        (_form(grant_type="client_credentials"), (CLIENT_ID, "wrong"), 401, "invalid_client"),
        (
            _form(grant_type="client_credentials"),
            ("unknown-client", CLIENT_SECRET),
            401,
            "invalid_client",
        ),
        (
            _form(grant_type="client_credentials", client_id=CLIENT_ID, client_secret="wrong"),
            None,
            401,
            "invalid_client",
        ),
        (
            _form(grant_type="client_credentials", client_id="nobody", client_secret="x"),
            None,
            401,
            "invalid_client",
        ),
        (_form(grant_type="client_credentials"), None, 401, "invalid_client"),
        (
            _form(grant_type="password", username="u", password="p"),
            (CLIENT_ID, CLIENT_SECRET),
            400,
            "unsupported_grant_type",
        ),
        (
            _form(grant_type="authorization_code", code="x"),
            (CLIENT_ID, CLIENT_SECRET),
            400,
            "unsupported_grant_type",
        ),
        (_form(), (CLIENT_ID, CLIENT_SECRET), 400, "invalid_request"),
    ],
    ids=[
        "basic-wrong",
        "basic-unknown",
        "form-wrong",
        "form-unknown",
        "no-client",
        "password-grant",
        "code-grant",
        "no-grant",
    ],
)
async def test_token_endpoint_errors_follow_rfc_6749(
    client: httpx.AsyncClient,
    acme: Services,
    data: dict[str, str],
    auth: tuple[str, str] | None,
    status: int,
    error: str,
) -> None:
    if auth is None:
        reply = await client.post("/oauth/token", data=data)
    else:
        reply = await client.post("/oauth/token", data=data, auth=auth)
    assert reply.status_code == status
    assert reply.json()["error"] == error
    assert reply.headers["cache-control"] == "no-store"
    if status == 401:
        assert reply.headers["www-authenticate"].startswith("Basic")
    assert CLIENT_SECRET not in reply.text


async def test_undecodable_basic_client_credentials_are_invalid_client(
    client: httpx.AsyncClient, acme: Services
) -> None:
    for raw in (b"\xff\xfe:secret", b"acme-icims-client:\xff"):
        reply = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"authorization": "Basic " + base64.b64encode(raw).decode()},
        )
        assert reply.status_code == 401
        assert reply.json()["error"] == "invalid_client"


async def test_unknown_client_and_wrong_secret_look_the_same(
    client: httpx.AsyncClient, acme: Services
) -> None:
    form = {"grant_type": "client_credentials"}
    unknown = await client.post("/oauth/token", data=form, auth=("nobody", "x"))
    wrong = await client.post("/oauth/token", data=form, auth=(CLIENT_ID, "x"))
    assert (unknown.status_code, unknown.content) == (wrong.status_code, wrong.content)


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (
            b"grant_type=client_credentials&grant_type=client_credentials",
            "application/x-www-form-urlencoded",
        ),
        (b"grant_type=client_credentials&\xff=1", "application/x-www-form-urlencoded"),
    ],
    ids=["json", "repeated", "not-utf8"],
)
async def test_malformed_token_requests_are_invalid_request(
    client: httpx.AsyncClient, acme: Services, content: bytes, content_type: str
) -> None:
    reply = await client.post(
        "/oauth/token",
        content=content,
        headers={"content-type": content_type},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_request"


# --- access tokens -----------------------------------------------------------------------------


async def test_expired_token_is_401(client: httpx.AsyncClient, services: Services) -> None:
    await add_icims(services, options=icims_options(oauth_token_expires_s=1))
    reply = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, CLIENT_SECRET)
    )
    assert reply.json()["expires_in"] == 1
    token = reply.json()["access_token"]
    assert (await send(client, BODY, auth="oauth", token=token)).status_code == 200
    await asyncio.sleep(2.1)
    expired = await send(client, payload("JobUnpostToWebEvent"), auth="oauth", token=token)
    assert expired.status_code == 401
    assert len(await records(services)) == 1


async def test_rotating_the_client_secret_revokes_its_tokens(
    client: httpx.AsyncClient, acme: Services
) -> None:
    old_token = await fetch_token(client)
    assert (await send(client, BODY, auth="oauth", token=old_token)).status_code == 200
    # Rotation: the new secret is added beside the old one; both tokens work meanwhile.
    await add_icims(
        acme,
        secrets=icims_secrets(
            oauth_client_secrets=["rotated-oauth-secret-Xk2fB7nQ4jWe9uCz", CLIENT_SECRET]
        ),
    )
    new_token = await fetch_token(client, CLIENT_ID, "rotated-oauth-secret-Xk2fB7nQ4jWe9uCz")
    second = payload("JobUnpostToWebEvent")
    assert (await send(client, second, auth="oauth", token=old_token)).status_code == 200
    # Removing the old secret revokes every token issued with it, on every replica at once.
    await add_icims(
        acme, secrets=icims_secrets(oauth_client_secrets=["rotated-oauth-secret-Xk2fB7nQ4jWe9uCz"])
    )
    third = payload("JobUnpostToWebEvent", systemId="42")
    assert (await send(client, third, auth="oauth", token=old_token)).status_code == 401
    assert (await send(client, third, auth="oauth", token=new_token)).status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-3] + ("AAA" if not t.endswith("AAA") else "BBB"),
        lambda t: t.split(".")[0] + "." + t.split(".")[1] + ".",
        lambda t: "not-a-jwt",
        lambda t: "",
    ],
    ids=["signature", "unsigned", "garbage", "empty"],
)
async def test_forged_tokens_are_401(
    client: httpx.AsyncClient, acme: Services, mangle: Any
) -> None:
    token = await fetch_token(client)
    bearer = {"authorization": f"Bearer {mangle(token)}"}
    response = await send(client, BODY, auth="none", extra_headers=bearer)
    assert response.status_code == 401
    assert error_of(response)["userMessage"]


async def test_token_from_another_deployment_key_is_401(
    services: Services, settings: Settings
) -> None:
    await add_icims(services)
    assert settings.database_url is not None and settings.redis_url is not None
    other = make_settings(
        str(settings.database_url),
        str(settings.redis_url),
        # Still able to decrypt the connection's secrets, but signing tokens with a new key.
        secret_key=f"a-completely-different-key,{TEST_SECRET_KEY}",
    )
    async for client in run_app(create_app(settings)):
        token = await fetch_token(client)
    async for rotated in run_app(create_app(other)):
        # The previous key still verifies while it is listed: rotation does not drop iCIMS.
        assert (await send(rotated, BODY, auth="oauth", token=token)).status_code == 200
        fresh = await fetch_token(rotated)
    async for old in run_app(create_app(settings)):
        # A token signed with a key this replica does not know is refused.
        second = payload("JobUnpostToWebEvent")
        assert (await send(old, second, auth="oauth", token=fresh)).status_code == 401


async def test_disabling_oauth_on_a_connection_refuses_its_tokens(
    client: httpx.AsyncClient, acme: Services
) -> None:
    token = await fetch_token(client)
    async with acme.engine.begin() as conn:
        await conn.execute(text("UPDATE connection SET enabled = false"))
    assert (await send(client, BODY, auth="oauth", token=token)).status_code == 401


async def test_insecure_public_url_refuses_to_issue_tokens(
    services: Services, settings: Settings
) -> None:
    await add_icims(services)
    assert settings.database_url is not None and settings.redis_url is not None
    plain_http = make_settings(
        str(settings.database_url),
        str(settings.redis_url),
        public_base_url="http://hooks.example.com",
    )
    async for client in run_app(create_app(plain_http)):
        reply = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert reply.status_code == 500
    assert reply.json() == {
        "error": "server_error",
        "error_description": "HIREHOOK_PUBLIC_BASE_URL must be an https URL.",
    }


async def test_token_requests_while_the_database_is_down_are_503(
    services: Services, settings: Settings, closed_port: int
) -> None:
    assert settings.redis_url is not None
    # Nothing listens on that port: the connection lookup fails fast.
    down = make_settings(
        f"postgresql://hirehook@127.0.0.1:{closed_port}/hirehook", str(settings.redis_url)
    )
    started = time.monotonic()
    async for client in run_app(create_app(down)):
        reply = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert reply.status_code == 503
    assert reply.json()["error"] == "temporarily_unavailable"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "x-icims-v1-hmac-sha256"},
        {"authorization": "x-icims-v1-hmac-sha256 user=a,signedheaders=,signature=zz"},
        {
            "authorization": "x-icims-v1-hmac-sha256 user=é,signedheaders=x-icims-date;"
            "x-icims-content-sha256,signature=ü",
            "x-icims-date": "yesterday",
            "x-icims-content-sha256": "00",
        },
        {
            "authorization": "x-icims-v1-hmac-sha256 user=a,signedheaders=x-icims-date;"
            "x-icims-content-sha256,signature=00",
            "x-icims-date": "2017-10-18T14:53:40",
            "x-icims-content-sha256": "00",
        },
        {"authorization": "Bearer"},
        {"authorization": "Bearer a.b.c"},
        {"authorization": "Bearer " + "A" * 5000},
        {"authorization": "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode()},
    ],
    ids=[
        "hmac-bare",
        "hmac-empty",
        "hmac-garbage",
        "hmac-naive-date",
        "bearer-bare",
        "bearer-junk",
        "bearer-huge",
        "basic-binary",
    ],
)
async def test_garbage_credentials_are_401_never_500(
    client: httpx.AsyncClient, acme: Services, headers: dict[str, str]
) -> None:
    # Sent as latin-1 bytes: what arrives off the wire, not what a polite client would send.
    raw = {
        k.encode(): v.encode("latin-1")
        for k, v in ({"content-type": "application/json"} | headers).items()
    }
    response = await client.post(URL, content=PLAIN, headers=raw)
    assert response.status_code == 401
    assert error_of(response)["userMessage"]
