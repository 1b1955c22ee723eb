"""A worker process loads no web framework, no router and no token server."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys
import app.cli, app.sources, app.workers.settings
loaded = sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("fastapi", "starlette", "uvicorn")
    or m.startswith("app.routers") or m in ("app.main", "app.verifiers.icims_oauth")
)
print(",".join(loaded))
"""


def test_the_worker_side_imports_no_web_framework() -> None:
    # A fresh interpreter: the test session itself has FastAPI loaded already.
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
