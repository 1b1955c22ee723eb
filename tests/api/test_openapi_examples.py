"""The OpenAPI document as an integrator reads it: readable, stable operation ids, one tag
style, an example of every refusal and admin request body (each valid against its schema),
no error field the answers never carry, and the admin actions as operations of their own.

No database is needed: the document is built without the lifespan.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from jsonschema import Draft202012Validator

import app as app_package
from app.admin import schemas as s
from app.admin.tenants_file import ConnectionSpec, DestinationSpec, check_connection
from app.main import create_app
from app.routers import admin, admin_openapi
from app.verifiers.standard_webhooks import decode_secret, require_strong
from tests.support.app import make_settings

# Every operation's id: a client generated from the document names its methods by these, so
# a change here breaks integrators' code and must be deliberate.
OPERATION_IDS: dict[tuple[str, str], str] = {
    ("post", "/v1/keldair/{tenant}/events"): "keldairhr_receive_event",
    ("post", "/v1/keldair/{tenant}/events/{token}"): "keldairhr_receive_event_by_token",
    ("post", "/v1/icims/events"): "icims_receive_event",
    ("post", "/oauth/token"): "oauth_issue_token",
    ("post", "/v1/hrmanager/{tenant}/events"): "hr_manager_receive_event",
    ("post", "/v1/smartrecruiters/{tenant}/events"): "smartrecruiters_receive_event",
    ("post", "/v1/cloud-elements/{tenant}/events"): "cloud_elements_receive_notification",
    ("post", "/v1/cloud-elements/{tenant}/events/{token}"): (
        "cloud_elements_receive_notification_by_token"
    ),
    ("post", "/v1/hmac/{tenant}/events"): "hmac_receive_event",
    ("get", "/health/live"): "operations_check_liveness",
    ("get", "/health/ready"): "operations_check_readiness",
    ("get", "/health/intake"): "operations_check_intake",
    ("get", "/v1/admin/tenants"): "admin_list_tenants",
    ("post", "/v1/admin/tenants"): "admin_create_tenant",
    ("get", "/v1/admin/tenants/{slug}"): "admin_show_tenant",
    ("patch", "/v1/admin/tenants/{slug}"): "admin_update_tenant",
    ("post", "/v1/admin/tenants/{slug}/enable"): "admin_enable_tenant",
    ("post", "/v1/admin/tenants/{slug}/disable"): "admin_disable_tenant",
    ("put", "/v1/admin/tenants/{slug}/destination"): "admin_set_destination",
    ("get", "/v1/admin/connections"): "admin_list_connections",
    ("post", "/v1/admin/connections"): "admin_create_connection",
    ("get", "/v1/admin/connections/{connection_id}"): "admin_show_connection",
    ("patch", "/v1/admin/connections/{connection_id}"): "admin_update_connection",
    ("post", "/v1/admin/connections/{connection_id}/payload-fields"): "admin_set_payload_fields",
    ("post", "/v1/admin/connections/{connection_id}/enable"): "admin_enable_connection",
    ("post", "/v1/admin/connections/{connection_id}/disable"): "admin_disable_connection",
    ("put", "/v1/admin/connections/{connection_id}/secrets"): "admin_rotate_secrets",
    ("get", "/v1/admin/records"): "admin_list_records",
    ("get", "/v1/admin/records/{record_id}"): "admin_show_record",
    ("post", "/v1/admin/records/{record_id}/replay"): "admin_replay_record",
    ("post", "/v1/admin/replays"): "admin_replay_records",
    ("get", "/v1/admin/dead-letters"): "admin_list_dead_letters",
    ("get", "/v1/admin/dead-letters/groups"): "admin_list_dead_letter_groups",
    ("post", "/v1/admin/dead-letters/retry"): "admin_retry_dead_letters",
    ("post", "/v1/admin/dead-letters/discard"): "admin_discard_dead_letters",
    ("get", "/v1/admin/refusals"): "admin_list_refusals",
    ("get", "/v1/admin/tenants/{slug}/smartrecruiters/subscriptions"): "admin_list_subscriptions",
    ("post", "/v1/admin/erasures"): "admin_erase_candidate",
    ("get", "/v1/admin/stats"): "admin_show_stats",
}

# Title Case words; a brand keeps its own spelling (iCIMS, KeldairHR, SmartRecruiters).
_TAG = re.compile(r"(?:[A-Z][A-Za-z]*|iCIMS)(?: (?:[A-Z][A-Za-z]*|iCIMS))*")


@pytest.fixture(scope="module")
def app() -> FastAPI:
    # Never connected to: the lifespan does not run.
    return create_app(make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", "redis://127.0.0.1:1"))


@pytest.fixture(scope="module")
def doc(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            yield method, path, operation


def _validator(doc: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    # Refs resolve against the document's components, as a client's would.
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_operation_ids_are_readable_unique_and_stable(doc: dict[str, Any]) -> None:
    ids = {(method, path): op["operationId"] for method, path, op in _operations(doc)}
    assert ids == OPERATION_IDS
    assert len(set(ids.values())) == len(ids)
    for operation_id in ids.values():
        assert re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", operation_id), operation_id
        # Nothing of FastAPI's generated ids (path and method glued on).
        assert "_v1_" not in operation_id
        assert not operation_id.endswith(("_get", "_post", "_put", "_patch")), operation_id


def test_a_new_route_gets_a_readable_id_by_itself() -> None:
    # The rule lives on the app, not in a table: any route mounted gets <tag>_<name>.
    app = create_app(make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", "redis://127.0.0.1:1"))
    things = APIRouter(prefix="/v1/admin", tags=["Admin"])

    @things.get("/things/{thing_id}")
    async def show_thing(thing_id: int) -> dict[str, int]:
        return {"id": thing_id}

    app.include_router(things)
    operation = app.openapi()["paths"]["/v1/admin/things/{thing_id}"]["get"]
    assert operation["operationId"] == "admin_show_thing"


def test_two_operations_with_one_id_are_refused() -> None:
    app = create_app(make_settings("postgresql+asyncpg://u@127.0.0.1:1/x", "redis://127.0.0.1:1"))

    @app.get("/v1/admin/tenants/{slug}/twin", tags=["Admin"], name="show_tenant")
    async def twin(slug: str) -> dict[str, str]:
        return {}

    # FastAPI only warns; the document is not served with the twin.
    with (
        pytest.warns(UserWarning, match="Duplicate Operation ID"),
        pytest.raises(ValueError, match="one operationId"),
    ):
        app.openapi()


def test_one_tag_style_and_every_tag_declared(doc: dict[str, Any]) -> None:
    declared = [t["name"] for t in doc["tags"]]
    used = {tag for _, _, op in _operations(doc) for tag in op["tags"]}
    assert set(declared) == used
    assert len(declared) == len(set(declared))
    for name in declared:
        assert _TAG.fullmatch(name), name
    assert "Admin" in declared


def test_every_refusal_has_examples_that_fit_its_schema(doc: dict[str, Any]) -> None:
    checked = 0
    for method, path, operation in _operations(doc):
        for status, response in operation["responses"].items():
            if status.startswith(("2", "3")):
                continue
            media = response["content"]["application/json"]
            examples = (
                [e["value"] for e in media["examples"].values()]
                if "examples" in media
                else [media["example"]]
                if "example" in media
                else []
            )
            assert examples, (method, path, status)
            validator = _validator(doc, media["schema"])
            for example in examples:
                errors = [e.message for e in validator.iter_errors(example)]
                assert not errors, (method, path, status, example, errors)
                checked += 1
    assert checked > 200


def test_no_error_field_the_answers_never_carry(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)
    assert all("422" not in op["responses"] for _, _, op in _operations(doc))
    # The default shape has exactly code and message; only 409 and 503 answers may add the
    # cause (`detail`), and those are the only ones whose schema says so.
    assert set(schemas["ErrorDetail"]["properties"]) == {"code", "message"}
    assert schemas["ErrorDetail"]["additionalProperties"] is False
    assert set(schemas["ErrorDetailWithCause"]["properties"]) == {"code", "message", "detail"}
    for method, path, operation in _operations(doc):
        for status, response in operation["responses"].items():
            ref = response["content"]["application/json"]["schema"].get("$ref", "")
            if ref.endswith("/DetailedError"):
                assert status in ("409", "503"), (method, path, status)
            elif status in ("409", "503") and path.startswith("/v1/") and "icims" not in path:
                assert ref.endswith("/DetailedError"), (method, path, status)


def _debug_statuses() -> set[tuple[str, object]]:
    """Each AppError raised with a debug message (which the default shape sends as `detail`):
    its module and status, read from the source."""
    found: set[tuple[str, object]] = set()
    root = Path(app_package.__file__).parent
    for module in root.rglob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            if name == "unavailable":
                found.add((str(module.relative_to(root)), 503))
            elif name == "AppError" and (
                len(node.args) >= 3 or any(k.arg == "debug_message" for k in node.keywords)
            ):
                status = node.args[0]
                value = status.value if isinstance(status, ast.Constant) else None
                found.add((str(module.relative_to(root)), value))
    return found


def test_only_the_statuses_documented_with_detail_carry_it() -> None:
    # iCIMS renders its own shape (no `detail`); everywhere else a debug message is sent.
    default_shape = {(m, status) for m, status in _debug_statuses() if "icims" not in m}
    assert default_shape
    assert {status for _, status in default_shape} <= {409, 503}, default_shape


def _body_model(method: str, path: str) -> type[Any]:
    for route in admin.router.routes:
        if (
            isinstance(route, APIRoute)
            and route.path == path
            and method.upper() in (route.methods or ())
        ):
            assert route.body_field is not None, (method, path)
            model: type[Any] = route.body_field.field_info.annotation  # type: ignore[assignment]
            return model
    raise AssertionError((method, path))


def test_every_admin_request_body_has_examples_the_route_accepts(doc: dict[str, Any]) -> None:
    with_body = 0
    for method, path, operation in _operations(doc):
        if not path.startswith("/v1/admin/") or "requestBody" not in operation:
            continue
        with_body += 1
        media = operation["requestBody"]["content"]["application/json"]
        assert media.get("examples"), (method, path)
        validator = _validator(doc, media["schema"])
        model = _body_model(method, path)
        for name, example in media["examples"].items():
            value = example["value"]
            assert not list(validator.iter_errors(value)), (method, path, name)
            model.model_validate(value)
    assert with_body == 11


def test_the_connection_and_destination_examples_pass_the_sources_checks() -> None:
    # What the service runs before storing them: an example an operator copies works.
    for example in admin_openapi.BODIES[s.ConnectionCreate].values():
        spec = s.ConnectionCreate.model_validate(example)
        check_connection(
            spec.tenant,
            ConnectionSpec(
                source=spec.source, name=spec.name, account=spec.account, options=spec.options
            ),
            spec.secrets,
        )
    for example in admin_openapi.BODIES[s.DestinationSet].values():
        checked = DestinationSpec.model_validate(example)
        decode_secret(checked.secret)
        require_strong(checked.secret, what="secret")


def test_the_enable_and_disable_actions_are_operations_of_their_own(
    doc: dict[str, Any],
) -> None:
    paths = doc["paths"]
    assert not [p for p in paths if "{action}" in p]
    for base in ("/v1/admin/tenants/{slug}", "/v1/admin/connections/{connection_id}"):
        enable = paths[base + "/enable"]["post"]
        disable = paths[base + "/disable"]["post"]
        assert "requestBody" not in enable
        assert "requestBody" not in disable
        assert "enable" in enable["description"].lower()
        assert "401" in disable["description"]
        assert enable["description"] != disable["description"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nosuch", 404),
        ("POST", "/v1/admin/tenants/acme/bogus", 404),
        ("DELETE", "/v1/admin/tenants", 405),
        ("GET", "/v1/keldair/acme/events", 405),
    ],
)
async def test_a_path_or_method_no_route_serves_is_refused_in_the_error_shape(
    app: FastAPI, doc: dict[str, Any], method: str, path: str, status: int
) -> None:
    # Not FastAPI's {"detail": "Not Found"}: no answer carries a shape the document lacks.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hirehook") as client:
        response = await client.request(method, path)
    assert response.status_code == status
    body = response.json()
    assert not list(
        _validator(doc, {"$ref": "#/components/schemas/DefaultError"}).iter_errors(body)
    )
    assert body["error"]["code"] == {404: "not_found", 405: "method_not_allowed"}[status]
    if status == 405:
        assert response.headers["allow"]
