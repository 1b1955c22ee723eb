"""A broken connection tells nobody but its own sender that it exists.

``hirehook tenants load`` refuses a connection its source cannot use, names the setting and
writes nothing at all. A connection broken behind the loader's back (edited in SQL) answers a
sender that cannot authenticate exactly as an unknown customer or tenant is answered: the
difference would tell a stranger which customers are configured and which are broken.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import text

from app.cli.tenants import load_tenants
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import add_connection
from tests.support.icims import (
    CUSTOMER,
    HMAC_SECRET,
    add_icims,
    basic_header,
    icims_hmac_headers,
    icims_options,
    icims_secrets,
    payload,
)
from tests.support.keldair import SECRET, event, signed
from tests.support.workers import worker_env

BAD_KELDAIR_SECRET = "not-a-standard-webhooks-secret"


def toml_value(value: Any) -> str:
    """A TOML value: JSON's strings, numbers and lists are TOML too; objects become inline
    tables."""
    if isinstance(value, dict):
        pairs = (f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)


def tenants_toml(*tenants: tuple[str, dict[str, Any]]) -> str:
    """A tenants file: (slug, connection table) per tenant."""
    parts = []
    for slug, connection in tenants:
        parts.append(f'[[tenant]]\nslug = "{slug}"\nname = "{slug.title()}"\n')
        lines = [f"{k} = {toml_value(v)}" for k, v in connection.items()]
        parts.append("[[tenant.connection]]\n" + "\n".join(lines) + "\n")
    return "\n".join(parts)


def keldair_connection(secret: str = SECRET) -> dict[str, Any]:
    return {"source": "keldair", "secrets": {"signing_secrets": [secret]}}


def icims_connection(**option_overrides: Any) -> dict[str, Any]:
    return {
        "source": "icims",
        "account": CUSTOMER,
        "options": icims_options(**option_overrides),
        "secrets": icims_secrets(),
    }


async def load_file(settings: Settings, path: Path) -> subprocess.CompletedProcess[str]:
    """``hirehook tenants load`` in its own process, as an operator runs it."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "app.cli", "tenants", "load", str(path)],
        env=worker_env(settings, log_format="console"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def tenants_and_connections(services: Services) -> list[tuple[str, str, str | None]]:
    async with services.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT t.slug, t.name, c.source FROM tenant t "
                "LEFT JOIN connection c ON c.tenant_id = t.id ORDER BY t.slug, c.source"
            )
        )
        return [(r.slug, r.name, r.source) for r in rows]


# A link event without the template of its link cannot be answered; a KeldairHR secret that
# is not whsec_ + base64 cannot verify anything.
BROKEN = {
    "icims-link-template": (
        ("acme", icims_connection(events={"AssessmentEvent": {}})),
        "tenant 'acme', icims connection 'default'",
        "link_template",
    ),
    "keldair-secret": (
        ("acme", keldair_connection(BAD_KELDAIR_SECRET)),
        "tenant 'acme', keldair connection 'default'",
        "whsec_",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
async def test_tenants_load_refuses_a_broken_connection_and_writes_nothing(
    services: Services, settings: Settings, tmp_path: Path, case: str
) -> None:
    broken, where, field = BROKEN[case]
    await add_connection(
        services, tenant="existing", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    before = await tenants_and_connections(services)
    # A good tenant before the broken one, and a change to an existing one: all or nothing.
    path = tmp_path / "tenants.toml"
    path.write_text(
        tenants_toml(
            ("first", keldair_connection()),
            ("existing", icims_connection()),
            broken,
        )
    )
    result = await load_file(settings, path)
    assert result.returncode != 0
    assert where in result.stderr and field in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert BAD_KELDAIR_SECRET not in result.stdout + result.stderr
    assert await tenants_and_connections(services) == before


async def test_tenants_load_writes_the_same_file_without_its_broken_tenant(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    # What the refusals above refused was the broken tenant, not the rest of the file. The
    # command's own function, in process: the refusals already ran the command itself.
    await add_connection(
        services, tenant="existing", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    path = tmp_path / "tenants.toml"
    path.write_text(tenants_toml(("first", keldair_connection()), ("existing", icims_connection())))
    assert await load_tenants(settings, path) == 2
    assert await tenants_and_connections(services) == [
        ("existing", "Existing", "icims"),
        ("existing", "Existing", "keldair"),
        ("first", "First", "keldair"),
    ]


async def set_options(services: Services, options: dict[str, Any]) -> None:
    async with services.engine.begin() as conn:
        await conn.execute(
            text("UPDATE connection SET options = CAST(:o AS jsonb)"),
            {"o": orjson.dumps(options).decode()},
        )


def answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()


async def icims_post(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    content = orjson.dumps(body)
    return await client.post(
        "/v1/icims/events", content=content, headers={"content-type": "application/json"} | headers
    )


@pytest.mark.parametrize("scheme", ["basic", "hmac"])
async def test_broken_icims_connection_answers_strangers_like_an_unknown_customer(
    client: httpx.AsyncClient, services: Services, scheme: str
) -> None:
    await add_icims(services)
    body = payload("JobPostToWebEvent")
    stranger = payload("JobPostToWebEvent", customer="9999")
    if scheme == "basic":
        wrong = basic_header(password="wrong-password")
        unknown = basic_header(user="someone-else", password="wrong-password")
    else:
        wrong = icims_hmac_headers(orjson.dumps(body), secret="wrong-hmac-secret")
        unknown = icims_hmac_headers(
            orjson.dumps(stranger), user="someone-else", secret=HMAC_SECRET
        )
    healthy = await icims_post(client, body, wrong)

    options = icims_options()
    del options["events"]["JobPostToWebEvent"]["link_template"]
    await set_options(services, options)
    broken = await icims_post(client, body, wrong)
    nobody = await icims_post(client, stranger, unknown)

    assert broken.status_code == 401
    assert answer(broken) == answer(nobody) == answer(healthy)
    # Its own sender, once authenticated, is told the vendor's side is at fault.
    right = basic_header() if scheme == "basic" else icims_hmac_headers(orjson.dumps(body))
    assert (await icims_post(client, body, right)).status_code == 500


async def test_keldair_tenant_with_a_corrupted_secret_answers_like_an_unknown_tenant(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    async with services.engine.begin() as conn:
        await conn.execute(
            text("UPDATE connection SET secrets = :s"),
            {"s": services.cipher.encrypt_json({"signing_secrets": [BAD_KELDAIR_SECRET]})},
        )
    body = orjson.dumps(event("evt_oracle"))
    headers = signed(body)
    broken = await client.post("/v1/keldair/acme/events", content=body, headers=headers)
    unknown = await client.post("/v1/keldair/nobody/events", content=body, headers=headers)
    assert broken.status_code == 401
    assert answer(broken) == answer(unknown)
    assert BAD_KELDAIR_SECRET not in broken.text


async def test_keldair_tenant_with_broken_options_answers_like_an_unknown_tenant(
    client: httpx.AsyncClient, services: Services
) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    await set_options(services, {"tolerance_s": "not a number"})
    body = orjson.dumps(event("evt_oracle"))
    headers = signed(body)
    broken = await client.post("/v1/keldair/acme/events", content=body, headers=headers)
    unknown = await client.post("/v1/keldair/nobody/events", content=body, headers=headers)
    assert broken.status_code == 401
    assert answer(broken) == answer(unknown)


async def test_secrets_nobody_can_decrypt_answer_like_an_unknown_connection(
    client: httpx.AsyncClient, services: Services
) -> None:
    # As after a key is dropped from HIREHOOK_SECRET_KEY before its secrets were re-encrypted.
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    await add_icims(services, tenant="globex")
    async with services.engine.begin() as conn:
        await conn.execute(text("UPDATE connection SET secrets = :s"), {"s": b"not-a-fernet-token"})
    body = orjson.dumps(event("evt_oracle"))
    headers = signed(body)
    broken = await client.post("/v1/keldair/acme/events", content=body, headers=headers)
    unknown = await client.post("/v1/keldair/nobody/events", content=body, headers=headers)
    assert broken.status_code == 401
    assert answer(broken) == answer(unknown)

    wrong = basic_header(password="wrong-password")
    icims_broken = await icims_post(client, payload("JobPostToWebEvent"), wrong)
    icims_unknown = await icims_post(
        client, payload("JobPostToWebEvent", customer="9999"), basic_header(user="someone-else")
    )
    assert icims_broken.status_code == 401
    assert answer(icims_broken) == answer(icims_unknown)
