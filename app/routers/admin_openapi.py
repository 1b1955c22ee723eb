"""What ``/openapi.json`` shows of the admin API beyond its models: an example of every
request body, and of every refusal in the shape :func:`app.routers.common.default_body` gives
it (the service's own errors where it has a helper for them).

The request examples are checked by ``tests/api/test_openapi_examples.py`` against the route's
body model and, for the connection and destination, the same checks ``tenants load`` runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

from app.admin import common, keys
from app.admin import schemas as s
from app.platform.errors import AppError
from app.routers.common import too_many_failures

# The admin refusals, one or two per status (the 413, which names the cap, is added by
# app.routers.admin, which owns it).
ERRORS: dict[int, Sequence[AppError]] = {
    400: (
        AppError(
            400,
            "The request is not valid: query.tenant contains a NUL character (U+0000), "
            "which cannot be stored.",
            code="bad_request",
        ),
        common.invalid("The cursor is not one this API returned."),
    ),
    401: (keys.unauthorized(),),
    404: (common.not_found("The tenant"),),
    409: (
        AppError(409, "Tenant 'acme' exists.", code="conflict"),
        AppError(
            409,
            "Tenant 'acme' has a keldair connection named 'default' already; give this one "
            "another name, or change that one.",
            "UniqueViolationError",
            code="conflict",
        ),
    ),
    429: (too_many_failures(30),),
    503: (
        AppError(
            503,
            "Redis did not answer; nothing was erased. Please retry.",
            "TimeoutError",
        ),
    ),
}

# An example `whsec_` secret (32 bytes): the shape a signing secret has, not one in use.
_WHSEC = "whsec_ZXhhbXBsZS1zaWduaW5nLXNlY3JldC0zMi1ieXRlcyE="

# Named examples of each admin request body, by its model.
BODIES: dict[type[BaseModel], dict[str, Any]] = {
    s.TenantCreate: {"tenant": {"slug": "acme", "name": "Acme Corporation"}},
    s.TenantUpdate: {"rename": {"name": "Acme Corporation (EU)"}},
    s.DestinationSet: {
        "destination": {
            "url": "https://hooks.vendor.example/hirehook",
            "secret": _WHSEC,
            "enabled": True,
        }
    },
    s.ConnectionCreate: {
        "keldair": {
            "tenant": "acme",
            "source": "keldair",
            "name": "default",
            "options": {"tolerance_s": 300},
            "secrets": {"signing_secrets": [_WHSEC]},
        },
    },
    s.ConnectionUpdate: {
        "disable": {"enabled": False},
        "rename": {"name": "eu", "account": None},
    },
    s.PayloadFieldsSet: {
        "payload_fields": {"payload_fields": {"event": ["Event"], "position_id": ["Id"]}}
    },
    s.SecretsRotate: {
        "add_a_secret": {"secrets": {"signing_secrets": [_WHSEC]}, "merge": True},
    },
    s.ReplayRequest: {
        "by_id": {"record_ids": ["0193a5b0-7c1e-7d2a-9f00-2b1c3d4e5f60"]},
        "count_first": {
            "filters": {"tenant": "acme", "source": "keldair", "state": "dead_letter"},
            "dry_run": True,
        },
        "confirmed": {
            "filters": {"tenant": "acme", "received_from": "2026-12-01T00:00:00Z"},
            "confirm": 1200,
        },
    },
    s.DeadLetterAction: {
        "a_group": {
            "kind": "configuration",
            "reason": "destination_refused",
            "stage": "delivery",
            "tenant": "acme",
            "note": "The vendor's endpoint is back.",
        },
        "by_id": {"ids": [42, 43], "note": "Candidate withdrew; nothing to deliver."},
    },
    s.ErasureRequest: {
        "candidate": {"tenant": "acme", "source": "keldair", "candidate_id": "app_42"},
        "with_email": {
            "tenant": "acme",
            "source": "icims",
            "candidate_id": "12345",
            "email": "jane.doe@example.com",
        },
    },
}


def body_examples(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` adding ``model``'s named examples to the route's request body."""
    examples = {
        name: {"summary": name.replace("_", " "), "value": value}
        for name, value in BODIES[model].items()
    }
    return {"requestBody": {"content": {"application/json": {"examples": examples}}}}
