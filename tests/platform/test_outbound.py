"""The outbound-URL policy (app/platform/outbound.py): destinations, polling and ATS API base
URLs are refused at load (tenants file) and at update (admin API) naming the field, and the
shared HTTP client refuses, at send time, a URL or a resolved address the policy forbids."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from app.admin import keys
from app.admin.tenants_file import ConnectionSpec, DestinationSpec, check_connection
from app.clients.http import PolicyResolver, PolicyTransport, send_once
from app.platform import outbound
from app.platform.outbound import OutboundPolicy, OutboundRefusedError
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import make_settings
from tests.support.fake_ats import SR_TOKEN
from tests.support.workers import VENDOR_SECRET

TESTS = OutboundPolicy.of(loopback_http=True)
PRODUCTION = OutboundPolicy.of(loopback_http=False)

REFUSED_EVERYWHERE = [
    "file:///etc/passwd",
    "gopher://127.0.0.1:6379/_INFO",
    "not a url",
    "",
    "https://",
    "http://169.254.169.254/latest/meta-data/",
    "https://169.254.169.254/",
    "https://169.254.1.1/",
    "http://2852039166/",  # 169.254.169.254 as one number
    "http://0xa9.0xfe.0xa9.0xfe/",
    "https://[::ffff:169.254.169.254]/",
    "https://[fe80::1]/",
    "https://[fd00:ec2::254]/",
    "https://100.100.100.200/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://METADATA.google.internal./",
    "https://0.0.0.0/",
    "http://api.example.com/",
    "http://10.0.0.5/",
    "https://user:pass@api.example.com/",
    "https://api.example.com:99999/",
]


@pytest.mark.parametrize("url", REFUSED_EVERYWHERE)
def test_refused_in_every_environment(url: str) -> None:
    for policy in (TESTS, PRODUCTION):
        with pytest.raises(OutboundRefusedError) as refused:
            policy.check(url, what="options.base_url")
        assert str(refused.value).startswith("options.base_url: ")
        # The reason, never the URL (it may carry a token in its path).
        assert "passwd" not in str(refused.value) and "pass@" not in str(refused.value)


def test_https_is_accepted_and_http_only_to_loopback_in_development_and_tests() -> None:
    for url in ("https://api.smartrecruiters.com", "https://10.0.0.5/x", "https://127.0.0.1"):
        assert TESTS.check(url) == PRODUCTION.check(url) == url
    for url in ("http://127.0.0.1:8099/sr", "http://localhost:1/", "http://[::1]:8/"):
        assert TESTS.check(url) == url
        with pytest.raises(OutboundRefusedError, match="only accepted in development"):
            PRODUCTION.check(url)


def test_the_allow_list_exempts_named_hosts_and_networks() -> None:
    allowing = OutboundPolicy.of(
        loopback_http=False, allow=["127.0.0.1", "Hooks.Internal.", "169.254.170.0/24"]
    )
    assert allowing.check("http://127.0.0.1:9000/in")
    assert allowing.check("http://hooks.internal/in")
    assert allowing.check("http://169.254.170.2/creds")
    with pytest.raises(OutboundRefusedError):
        allowing.check("http://169.254.169.254/")
    with pytest.raises(OutboundRefusedError):
        allowing.check("file://hooks.internal/etc/passwd")
    settings = Settings(
        _env_file=None,
        environment="production",
        secret_key=SecretStr("k" * 40),
        outbound_allow=" 127.0.0.1, hooks.internal ,",
    )
    assert settings.outbound_allow_list == ["127.0.0.1", "hooks.internal"]
    assert OutboundPolicy.from_settings(settings).check("http://hooks.internal/")
    with pytest.raises(OutboundRefusedError):
        OutboundPolicy.from_settings(settings).check("http://localhost/")
    development = Settings(_env_file=None, environment="development")
    assert OutboundPolicy.from_settings(development).check("http://localhost:8099/")


# --- at load: the tenants file -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "options", "secrets", "field"),
    [
        ("smartrecruiters", {"base_url": "gopher://x/"}, {"api_key": "k"}, "base_url"),
        (
            "hrmanager",
            {"base_url": "http://api.example.com/v2", "customer_alias": "acme"},
            {"signing_secrets": ["00" * 32], "api_key": "k"},
            "base_url",
        ),
        (
            "icims",
            {
                "customer_id": "1234",
                "auth": "basic",
                "api": {"client_id": "c", "token_url": "http://169.254.169.254/token"},
            },
            {"basic_username": "u" * 32, "basic_password": "p" * 32, "api_client_secret": "s"},
            "token_url",
        ),
        (
            "smartrecruiters",
            {
                "polling": {
                    "base_url": "https://169.254.169.254/",
                    "resources": {"candidates": {"url": "/candidates"}},
                }
            },
            {"api_key": "k"},
            "options.polling.base_url",
        ),
    ],
)
def test_a_connection_with_a_forbidden_url_is_refused_when_loaded(
    source: str, options: dict[str, Any], secrets: dict[str, Any], field: str
) -> None:
    spec = ConnectionSpec(source=source, options=options, secrets=secrets)
    with pytest.raises(ValueError, match=field) as refused:
        check_connection("acme", spec, secrets)
    assert "169.254" not in str(refused.value) and "api.example" not in str(refused.value)


def test_a_destination_with_a_forbidden_url_is_refused_when_loaded() -> None:
    with pytest.raises(ValidationError) as refused:
        DestinationSpec(url="http://169.254.169.254/", secret=VENDOR_SECRET)
    assert refused.value.errors()[0]["loc"] == ("url",)
    assert "metadata" in str(refused.value)


# --- at update: the admin API ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "gopher://10.0.0.1/", "not a url", "http://169.254.169.254"],
)
async def test_the_admin_api_refuses_a_forbidden_base_url_naming_the_field(
    client: httpx.AsyncClient, services: Services, url: str
) -> None:
    key = (await keys.create(services.engine, "ops")).key
    auth = {"authorization": f"Bearer {key}"}
    await client.post("/v1/admin/tenants", json={"slug": "acme", "name": "Acme"}, headers=auth)
    spec = {"tenant": "acme", "source": "smartrecruiters", "secrets": {"api_key": SR_TOKEN}}
    made = await client.post(
        "/v1/admin/connections", json={**spec, "options": {"base_url": url}}, headers=auth
    )
    assert made.status_code == 400 and "base_url" in made.json()["error"]["message"]
    ok = await client.post(
        "/v1/admin/connections",
        json={**spec, "options": {"base_url": "https://api.smartrecruiters.com"}},
        headers=auth,
    )
    assert ok.status_code == 201, ok.text
    patched = await client.patch(
        f"/v1/admin/connections/{ok.json()['id']}",
        json={"options": {"base_url": url}},
        headers=auth,
    )
    assert patched.status_code == 400 and "base_url" in patched.json()["error"]["message"]
    hrm = await client.post(
        "/v1/admin/connections",
        json={
            "tenant": "acme",
            "source": "hrmanager",
            "secrets": {"signing_secrets": ["00" * 32], "api_key": "k"},
            "options": {"base_url": "http://internal.example/v2", "customer_alias": "acme"},
        },
        headers=auth,
    )
    assert hrm.status_code == 400 and "base_url" in hrm.json()["error"]["message"]
    hook = await client.put(
        "/v1/admin/tenants/acme/destination",
        json={"url": url, "secret": VENDOR_SECRET},
        headers=auth,
    )
    assert hook.status_code == 400 and "url" in hook.json()["error"]["message"]
    assert VENDOR_SECRET[6:] not in hook.text


# --- at send time ------------------------------------------------------------------------------


async def test_the_client_refuses_a_forbidden_url_at_send_time() -> None:
    """A URL stored before the policy, or one an ATS's answer names, is never called."""
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(
        mounts={"all://": PolicyTransport(limits=limits, policy=PRODUCTION)}
    ) as http:
        for url in ("http://169.254.169.254/latest/", "http://127.0.0.1:1/", "http://x.example"):
            with pytest.raises(httpx.ConnectError, match="outbound policy"):
                await http.get(url)


async def test_a_delivery_to_a_forbidden_url_is_refused_at_send_time() -> None:
    """Deliveries go to the transport past httpx's client (send_once): the same check."""
    async with httpx.AsyncClient(
        mounts={"all://": PolicyTransport(limits=httpx.Limits(), policy=PRODUCTION)}
    ) as http:
        for url in ("http://169.254.169.254/latest/", "http://127.0.0.1:1/", "http://x.example"):
            with pytest.raises(httpx.ConnectError, match="outbound policy"):
                await send_once(
                    http,
                    "POST",
                    httpx.URL(url),
                    content=b"{}",
                    headers={},
                    timeouts=httpx.Timeout(1.0),
                )


async def test_a_name_resolving_to_a_metadata_address_is_not_connected_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the address checked is the one connected to."""
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    connected: list[Any] = []

    async def rebinding(host: str, port: int, **kw: Any) -> list[Any]:
        if host == "rebind.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        return await real(host, port, **kw)

    async def never(*args: Any, **kw: Any) -> Any:
        connected.append(args)
        raise AssertionError("connected")

    monkeypatch.setattr(loop, "getaddrinfo", rebinding)
    monkeypatch.setattr(loop, "create_connection", never)
    # The connector connects only to the addresses the resolver hands it.
    with pytest.raises(OutboundRefusedError, match=r"rebind\.example resolves to a link-local"):
        await PolicyResolver(PRODUCTION).resolve("rebind.example", 443)
    allowed = OutboundPolicy.of(loopback_http=False, allow=["rebind.example"])
    [address] = await PolicyResolver(allowed).resolve("rebind.example", 443)
    assert address["host"] == "169.254.169.254"
    # Through the client, the refusal is a connection error, before any connection is made.
    async with httpx.AsyncClient(
        mounts={"all://": PolicyTransport(limits=httpx.Limits(), policy=PRODUCTION)}
    ) as http:
        with pytest.raises(httpx.ConnectError, match="outbound policy"):
            await http.get("https://rebind.example/")
    assert connected == []


def test_services_take_the_policy_of_their_settings(settings: Settings) -> None:
    production = make_settings(
        str(settings.database_url), str(settings.redis_url), environment="production"
    )
    try:
        Services.create(production)
        assert outbound.policy() == OutboundPolicy.of(loopback_http=False)
        Services.create(settings)
        assert outbound.policy() == TESTS
    finally:
        outbound.configure(TESTS)


def test_the_send_time_check_judges_each_url_as_the_full_check_does() -> None:
    """The transport's check keeps a verdict per origin: every URL gets the full check's
    verdict, the first time and from the kept one, whatever its path."""
    urls = [
        *REFUSED_EVERYWHERE,
        "https://api.smartrecruiters.com/candidates/1",
        "https://api.smartrecruiters.com/candidates/2?fields=a%2Cb#x",
        "http://127.0.0.1:8099/sr/1",
        "http://127.0.0.1:8099/sr/2",
        "http://localhost:1",
        "https://user:pass@api.example.com/x",
        "HTTPS://api.example.com/x",
        " https://api.example.com/x",
        "https://api.example.com\\@169.254.169.254/",
        "https://api.example.com\t/x",
        "https://[::1/x",
    ]
    for policy in (TESTS, PRODUCTION):
        for _ in range(2):
            for url in urls:
                try:
                    policy.check(url)
                    expected = None
                except OutboundRefusedError as exc:
                    expected = str(exc)
                if expected is None:
                    policy.check_send(url)
                else:
                    with pytest.raises(OutboundRefusedError) as refused:
                        policy.check_send(url)
                    assert str(refused.value) == expected, url
