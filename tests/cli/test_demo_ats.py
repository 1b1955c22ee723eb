"""The stand-in ATS APIs `make dev` serves (app/dev/demo_ats.py): `hirehook smartrecruiters
subscribe demo` runs against them end to end, handshake included, and the stand-in's signed
notification is recorded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from app.admin.tenants_file import apply_tenants, read_tenants_file
from app.dev import demo_ats
from app.main import create_app
from app.platform.settings import Settings
from app.services import Services
from tests.support.app import demo_tenants
from tests.support.fake_smartrecruiters import serve_asgi
from tests.support.smartrecruiters import cli
from tests.support.workers import rows, worker_env


async def test_subscribe_demo_against_the_stand_in_activates_and_records_its_event(
    services: Services, settings: Settings, tmp_path: Path
) -> None:
    with serve_asgi(demo_ats.create_app()) as ats:
        tenants = tmp_path / "tenants.toml"
        tenants.write_text(demo_tenants(ats))
        await apply_tenants(
            read_tenants_file(tenants), engine=services.engine, cipher=services.cipher
        )
        with serve_asgi(create_app(settings), lifespan="on") as api:
            callback = f"{api}/v1/smartrecruiters/demo/events"
            code, out, err = await cli(
                "smartrecruiters", "subscribe", "demo", "--callback-url", callback,
                env=worker_env(settings),
            )  # fmt: skip
            assert code == 0, err
            async with httpx.AsyncClient(
                base_url=f"{ats}/sr", headers={"x-smarttoken": demo_ats.SR_TOKEN}, timeout=10
            ) as http:
                listed = (await http.get("/webhooks-api/v201907/subscriptions")).json()
                [sub] = listed["content"]
                assert (sub["status"], sub["callbackUrl"]) == ("active", callback)
                assert f"subscription {sub['id']} active" in out

                # The stand-in signs one notification with the key it generated; the first
                # try may beat the key's storage, so it retries as SmartRecruiters does.
                for _ in range(240):
                    found = await rows(
                        services,
                        "SELECT dedupe_key, event_type FROM record "
                        "WHERE source = 'smartrecruiters' AND dedupe_key LIKE 'demo-ats-%'",
                    )
                    if found:
                        break
                    await asyncio.sleep(0.25)
                [record] = found
                assert record.event_type == "candidate.created"

                [row] = await rows(services, "SELECT status FROM webhook_subscription")
                assert row.status == "active"
                deleted = await http.delete(f"/webhooks-api/v201907/subscriptions/{sub['id']}")
                assert deleted.status_code == 204
                gone = await http.get("/webhooks-api/v201907/subscriptions")
                assert gone.json()["content"] == []
