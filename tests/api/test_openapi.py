"""What /openapi.json and /docs tell ATS admins: bodies, examples, answers, security, offline.

No database is needed: the document and the docs pages are served without the lifespan.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from app.main import create_app
from app.schemas import hmac, hmac_config, icims, keldair, smartrecruiters
from app.schemas import hrmanager as hrm
from app.schemas.cloudelements import parse_notification
from app.schemas.cloudelements_config import CloudElementsOptions
from app.sources.icims import ICIMS_EVENT_TYPES
from tests.support.app import make_settings

# The answers each route can really send, read from its code (statuses of the AppErrors it and
# app.routers.common raise, after its error renderer). iCIMS's renderer folds 408/413/415 into
# 400; SmartRecruiters and Cloud Elements quarantine malformed JSON, so their 400 is only a
# corrupt compressed body. Change a route's answers, change this table and its `responses`.
ANSWERS: dict[tuple[str, str], set[str]] = {
    ("post", "/v1/keldair/{tenant}/events"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/keldair/{tenant}/events/{token}"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/hrmanager/{tenant}/events"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/smartrecruiters/{tenant}/events"): {
        "200", "202", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/cloud-elements/{tenant}/events"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/cloud-elements/{tenant}/events/{token}"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/hmac/{tenant}/events"): {
        "200", "400", "401", "408", "413", "415", "429", "503",
    },
    ("post", "/v1/icims/events"): {"200", "303", "400", "401", "429", "500", "503"},
    ("post", "/oauth/token"): {"200", "400", "401", "408", "413", "429", "500", "503"},
    ("get", "/health/live"): {"200"},
    ("get", "/health/ready"): {"200", "503"},
    ("get", "/health/intake"): {"200", "503"},
    # Admin routes: 401 and 429 from the key check on each; 400 on each (any parameter can hold
    # a NUL); 413 where a body is read; 404 where something is named; 409 where a unique name
    # can collide.
    ("get", "/v1/admin/tenants"): {"200", "400", "401", "429"},
    ("post", "/v1/admin/tenants"): {"201", "400", "401", "409", "413", "429"},
    ("get", "/v1/admin/tenants/{slug}"): {"200", "400", "401", "404", "429"},
    ("patch", "/v1/admin/tenants/{slug}"): {"200", "400", "401", "404", "413", "429"},
    ("post", "/v1/admin/tenants/{slug}/enable"): {"200", "400", "401", "404", "413", "429"},
    ("post", "/v1/admin/tenants/{slug}/disable"): {"200", "400", "401", "404", "413", "429"},
    ("put", "/v1/admin/tenants/{slug}/destination"): {"200", "400", "401", "404", "413", "429"},
    ("get", "/v1/admin/connections"): {"200", "400", "401", "429"},
    ("post", "/v1/admin/connections"): {"201", "400", "401", "404", "409", "413", "429"},
    ("get", "/v1/admin/connections/{connection_id}"): {"200", "400", "401", "404", "429"},
    ("patch", "/v1/admin/connections/{connection_id}"): {
        "200", "400", "401", "404", "409", "413", "429",
    },
    ("post", "/v1/admin/connections/{connection_id}/enable"): {
        "200", "400", "401", "404", "413", "429",
    },
    ("post", "/v1/admin/connections/{connection_id}/disable"): {
        "200", "400", "401", "404", "413", "429",
    },
    ("put", "/v1/admin/connections/{connection_id}/secrets"): {
        "200", "400", "401", "404", "413", "429",
    },
    ("post", "/v1/admin/connections/{connection_id}/payload-fields"): {
        "200", "400", "401", "404", "413", "429",
    },
    ("get", "/v1/admin/records"): {"200", "400", "401", "404", "429"},
    ("get", "/v1/admin/records/{record_id}"): {"200", "400", "401", "404", "429"},
    ("post", "/v1/admin/records/{record_id}/replay"): {
        "200", "400", "401", "404", "409", "413", "429"
    },
    ("post", "/v1/admin/replays"): {"200", "400", "401", "404", "409", "413", "429"},
    ("get", "/v1/admin/dead-letters"): {"200", "400", "401", "429"},
    ("get", "/v1/admin/dead-letters/groups"): {"200", "400", "401", "429"},
    ("get", "/v1/admin/refusals"): {"200", "400", "401", "429"},
    ("post", "/v1/admin/dead-letters/retry"): {"200", "400", "401", "409", "413", "429"},
    ("post", "/v1/admin/dead-letters/discard"): {"200", "400", "401", "409", "413", "429"},
    ("post", "/v1/admin/erasures"): {"201", "400", "401", "404", "413", "429", "503"},
    ("get", "/v1/admin/stats"): {"200", "400", "401", "404", "429"},
    ("get", "/v1/admin/tenants/{slug}/smartrecruiters/subscriptions"): {
        "200", "400", "401", "404", "429",
    },
}  # fmt: skip


def _accepts_keldair(example: Any, name: str) -> bool:
    return keldair.known_event_adapter.validate_python(example).type == name


def _accepts_icims(example: Any, name: str) -> bool:
    return icims.parse_event(example).event_type == name


def _accepts_hrmanager(example: Any, name: str) -> bool:
    parsed = hrm.parse(example)
    return parsed.event_type == name and parsed.known and not parsed.problems


def _accepts_smartrecruiters(example: Any, name: str) -> bool:
    parsed = smartrecruiters.parse(example, name)
    return parsed.known and not parsed.problems


def _accepts_cloudelements(example: Any, name: str) -> bool:
    events = parse_notification(orjson.dumps(example), {}, CloudElementsOptions())
    return all(e.parsed.known and e.parsed.event_type.endswith(name.lower()) for e in events)


def _accepts_hmac(example: Any, preset: str) -> bool:
    scheme = hmac_config.parse_options({"preset": preset})[1]
    parsed = hmac.parse(example, {}, scheme)
    return parsed.known and not parsed.problems


# Event route -> (its event types, as the sources' sample lists name them; a check that the
# route's parser takes each example as that type).
EVENT_ROUTES: dict[str, tuple[frozenset[str], Callable[[Any, str], bool]]] = {
    "/v1/keldair/{tenant}/events": (keldair.KNOWN_TYPES, _accepts_keldair),
    "/v1/keldair/{tenant}/events/{token}": (keldair.KNOWN_TYPES, _accepts_keldair),
    "/v1/icims/events": (frozenset(ICIMS_EVENT_TYPES), _accepts_icims),
    "/v1/hrmanager/{tenant}/events": (frozenset(hrm.EVENT_NAMES), _accepts_hrmanager),
    "/v1/smartrecruiters/{tenant}/events": (
        smartrecruiters.KNOWN_EVENTS,
        _accepts_smartrecruiters,
    ),
    "/v1/cloud-elements/{tenant}/events": (
        frozenset({"CREATED", "UPDATED", "DELETED"}),
        _accepts_cloudelements,
    ),
    "/v1/cloud-elements/{tenant}/events/{token}": (
        frozenset({"CREATED", "UPDATED", "DELETED"}),
        _accepts_cloudelements,
    ),
    # One example per preset (ATS), each named as its ATS names the event.
    "/v1/hmac/{tenant}/events": (frozenset(hmac_config.PRESETS), _accepts_hmac),
}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Never connected to: the lifespan does not run under ASGITransport.
    return create_app(make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", "redis://127.0.0.1:1"))


@pytest.fixture(scope="module")
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hirehook") as c:
        yield c


def _operations(doc: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method, path): operation
        for path, operations in doc["paths"].items()
        for method, operation in operations.items()
    }


def test_the_document_is_valid_openapi(doc: dict[str, Any]) -> None:
    validate(doc)


def test_every_route_documents_exactly_the_answers_it_sends(doc: dict[str, Any]) -> None:
    documented = {key: set(op["responses"]) for key, op in _operations(doc).items()}
    assert documented == ANSWERS
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_every_answer_has_its_body_shape(doc: dict[str, Any]) -> None:
    operations = _operations(doc)
    for key, operation in operations.items():
        for status, response in operation["responses"].items():
            schema = response["content"]["application/json"]["schema"]
            assert "$ref" in schema or "type" in schema, (key, status)
    icims_events = operations["post", "/v1/icims/events"]["responses"]
    assert icims_events["303"]["headers"]["Location"]
    for status in ("400", "401", "429", "500", "503"):
        ref = icims_events[status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/IcimsError")
    token = operations["post", "/oauth/token"]["responses"]
    assert token["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/OAuthError")
    assert token["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenAnswer")
    keldair_answers = operations["post", "/v1/keldair/{tenant}/events"]["responses"]
    assert keldair_answers["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/DefaultError"
    )
    assert "Retry-After" in keldair_answers["429"]["headers"]
    sr = operations["post", "/v1/smartrecruiters/{tenant}/events"]["responses"]
    assert "X-Hook-Secret" in sr["200"]["headers"]


def test_every_event_route_has_a_body_and_an_example_per_event_type(
    doc: dict[str, Any],
) -> None:
    for path, (types, accepts) in EVENT_ROUTES.items():
        body = doc["paths"][path]["post"]["requestBody"]
        # SmartRecruiters's activation handshake may have no body; every event has one.
        assert body["required"] == (path != "/v1/smartrecruiters/{tenant}/events"), path
        content = body["content"]["application/json"]
        # Refs resolve against the document's components, as a client's would.
        validator = Draft202012Validator({**content["schema"], "components": doc["components"]})
        examples = content["examples"]
        assert set(examples) == set(types), path
        for name, example in examples.items():
            value = example["value"]
            assert not list(validator.iter_errors(value)), (path, name)
            assert accepts(value, name), (path, name)


def test_security_schemes(doc: dict[str, Any]) -> None:
    schemes = doc["components"]["securitySchemes"]
    headers = {s["name"].lower() for s in schemes.values() if s["type"] == "apiKey"}
    assert {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "authorization",
        "x-icims-date",
        "x-icims-content-sha256",
        "x-signature-base64hmacsha256",
        "smartrecruiters-signature",
        "elements-webhook-signature",
    } <= headers
    assert any(s["type"] == "http" and s["scheme"] == "basic" for s in schemes.values())
    oauth = [s for s in schemes.values() if s["type"] == "oauth2"]
    assert oauth[0]["flows"]["clientCredentials"]["tokenUrl"] == "/oauth/token"
    for key, operation in _operations(doc).items():
        for requirement in operation.get("security", []):
            assert set(requirement) <= set(schemes), key
    operations = _operations(doc)
    for path in EVENT_ROUTES:
        if not path.endswith("/{token}"):  # the token in the URL is the secret
            assert operations["post", path]["security"], path


def test_operations_routes_are_tagged_apart(doc: dict[str, Any]) -> None:
    for (_, path), operation in _operations(doc).items():
        is_ops = path.startswith("/health/")
        assert (operation["tags"] == ["Operations"]) == is_ops, path


def test_admin_routes_are_tagged_apart_and_need_an_admin_key(doc: dict[str, Any]) -> None:
    scheme = doc["components"]["securitySchemes"]["adminKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    admin = {k: op for k, op in _operations(doc).items() if k[1].startswith("/v1/admin/")}
    assert len(admin) == 27
    for key, operation in _operations(doc).items():
        assert (operation["tags"] == ["Admin"]) == (key in admin), key
    for key, operation in admin.items():
        assert operation["security"] == [{"adminKey": []}], key
        ok = "201" if "201" in operation["responses"] else "200"
        schema = operation["responses"][ok]["content"]["application/json"]["schema"]
        assert "$ref" in schema or schema.get("type") == "array", key
        error = operation["responses"]["401"]["content"]["application/json"]["schema"]
        assert error["$ref"].endswith("/DefaultError"), key
    # Secrets go in, never out: no admin answer's schema has a field for their values.
    connection = doc["components"]["schemas"]["ConnectionView"]["properties"]
    assert connection["secrets"]["$ref"].endswith("/SecretsView")
    assert set(doc["components"]["schemas"]["SecretsView"]["properties"]) == {
        "names",
        "fingerprint",
    }


_ASSET = re.compile(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_need_no_internet(client: httpx.AsyncClient, page: str) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert "cdn" not in html.text.lower()
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html.text, re.IGNORECASE)
    urls = _ASSET.findall(html.text)
    assert any(u.endswith(".js") for u in urls), urls
    for url in urls:
        assert url.startswith("/"), url
        assert (await client.get(url)).status_code == 200, url
