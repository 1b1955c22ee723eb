"""``hirehook send <source> --json``: the answers as one JSON list, as every other command."""

from __future__ import annotations

import asyncio

import orjson
from typer.testing import CliRunner

from app.cli import cli
from app.services import Services
from tests.support.app import add_connection

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WRONG = "whsec_" + "A" * 32


async def send(*args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["send", *args])
    return result.exit_code, result.stdout


async def test_send_prints_its_answers_as_one_json_list(services: Services, served: str) -> None:
    await add_connection(
        services, tenant="acme", source="keldair", secrets={"signing_secrets": [SECRET]}
    )
    args = ["keldair", "--url", served, "--tenant", "acme", "--event-id", "e-1", "--json"]

    code, out = await send(*args, "--secret", SECRET)
    assert code == 0, out
    printed = orjson.loads(out)
    assert printed["next_cursor"] is None
    [first] = printed["items"]
    assert (first["status"], first["duplicate"]) == (200, False)
    assert "record_id" in first["answer"]
    code, out = await send(*args, "--secret", SECRET)
    [again] = orjson.loads(out)["items"]
    assert code == 0 and again["duplicate"] is True and again["answer"] == first["answer"]

    # A refusal is in the list too, and the command exits 1.
    code, out = await send(*args, "--secret", WRONG)
    [refused] = orjson.loads(out)["items"]
    assert code == 1 and refused["status"] == 401 and "error" in refused["answer"]
    # Without --json: a line per answer, as before.
    code, out = await send(*args[:-1], "--secret", SECRET)
    assert code == 0 and out.startswith("200 ")
