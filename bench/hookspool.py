"""hookspool 0.2.0, the peer reference: installed into its own virtual environment.

hookspool (PyPI) is a durable webhook intake that commits every request to SQLite before it
answers 2xx. The bench runs its intake only (no dispatcher), with its generic template source
(the ``hookspool.webhook`` bobbin) checking a hex HMAC-SHA256 of the raw body in
``X-Signature: sha256=...`` and recognising redeliveries by ``X-Delivery-Id``; the load
generator signs the same KeldairHR bodies that way (``--scheme hmac-sha256``).
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

VERSION = "0.2.0"
VENV = Path(__file__).resolve().parent / ".venvs" / "hookspool"
SECRET = "bench-hookspool-hmac-secret-5d1c7e9a2b4f"
PATH = "/hooks/bench"
HEADER = "X-Signature"
PREFIX = "sha256="


class UnavailableError(Exception):
    """hookspool cannot be installed or run here; the message says why."""


def _run(argv: list[str], env: dict[str, str] | None = None, timeout: float = 600) -> None:
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, env=env, timeout=timeout
    )
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise UnavailableError(f"{' '.join(argv[:3])} failed: {' / '.join(tail)}")


def install() -> Path:
    """The ``hookspool`` executable, installing hookspool==0.2.0 into bench/.venvs/ if needed."""
    exe = VENV / "bin" / "hookspool"
    python = VENV / "bin" / "python"
    if exe.exists():
        version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('hookspool'))"],
            check=False,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if version == VERSION:
            return exe
    try:
        _run([sys.executable, "-m", "venv", "--clear", str(VENV)])
        _run([str(python), "-m", "pip", "install", "--quiet", f"hookspool=={VERSION}"])
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnavailableError(f"installing hookspool=={VERSION}: {exc}") from exc
    return exe


@dataclass
class Hookspool:
    """One configured hookspool home directory (config, secret, spool)."""

    exe: Path
    home: Path
    port: int

    @property
    def env(self) -> dict[str, str]:
        """Environment for the hookspool commands."""
        return {"HOOKSPOOL_HOME": str(self.home), "PATH": "/usr/bin:/bin"}

    def configure(self, threads: int) -> None:
        """Write the config and secret and create the spool (``hookspool migrate``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        secret = self.home / "secret"
        secret.write_text(SECRET)
        secret.chmod(0o600)
        # One thread per sender: its intake serves a keep-alive connection per thread, and the
        # default of 16 would leave half of 32 senders waiting for a connection slot.
        (self.home / "config.toml").write_text(
            f"""
[intake]
listen = "127.0.0.1:{self.port}"
threads = {threads}

[alerts]
dry = true

[destinations.sink]
type = "script"
argv = ["true"]

[bobbins.bench]
bobbin = "hookspool.webhook"
secrets.secret = {{ file = "{secret}" }}
outputs = {{ "*" = "sink" }}

[bobbins.bench.settings]
scheme = "hmac-sha256-hex"
header = "{HEADER}"
prefix = "{PREFIX}"
key = ["id"]
dedup = "header:X-Delivery-Id"
event_type = "type"
sender_retries = true
"""
        )
        _run([str(self.exe), "check"], env=self.env, timeout=120)
        _run([str(self.exe), "migrate"], env=self.env, timeout=120)

    def start(self) -> subprocess.Popen[bytes]:
        """Run the intake (only: the dispatcher is not part of what a sender waits for)."""
        log = (self.home / "intake.log").open("ab")
        proc = subprocess.Popen([str(self.exe), "intake"], env=self.env, stdout=log, stderr=log)
        log.close()
        return proc

    def events(self) -> int:
        """Events committed to the spool: hookspool's ledger."""
        with sqlite3.connect(self.home / "spool.db") as db:
            return int(db.execute("SELECT count(*) FROM events").fetchone()[0])
