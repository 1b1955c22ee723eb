"""bench/footprint.py's tracer: the files whose code ran in the block, in any thread, a module's
body apart; and which source a file is named after."""

from __future__ import annotations

import threading

from app.intake.payload import parse_json
from app.platform.ids import uuid7
from bench.footprint import Footprint, relative, repo_root, source_of

SOURCES = ["icims", "hrmanager", "smartrecruiters", "hmac"]


def test_the_files_that_ran_in_the_block_are_counted_in_any_thread() -> None:
    root = repo_root()
    trace = Footprint(root / "app")
    body = compile("ANSWER = 42", str(root / "app" / "not_a_module.py"), "exec")
    with trace.installed():
        uuid7()  # before the block: not counted
        with trace.recording() as step:
            parse_json(b"{}")
            thread = threading.Thread(target=uuid7)
            thread.start()
            thread.join()
            exec(body, {})  # noqa: S102 - a module body under app/, run as an import runs it
            [].sort()  # not Python code of ours: nothing
        parse_json(b"[]")  # after it: not counted
    assert relative(step.files, root) == ["app/intake/payload.py", "app/platform/ids.py"]
    assert relative(step.imported, root) == ["app/not_a_module.py"]


def test_a_file_belongs_to_the_source_it_is_named_after() -> None:
    assert source_of("app/routers/icims/events.py", SOURCES) == "icims"
    assert source_of("app/schemas/hrmanager_config.py", SOURCES) == "hrmanager"
    assert source_of("app/clients/smartrecruiters_webhooks.py", SOURCES) == "smartrecruiters"
    assert source_of("app/verifiers/hmac.py", SOURCES) == "hmac"
    assert source_of("app/intake/core.py", SOURCES) is None
    assert source_of("app/verifiers/standard_webhooks.py", SOURCES) is None
