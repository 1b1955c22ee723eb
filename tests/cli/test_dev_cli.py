"""The dev loop as ``make dev`` prints it: ``hirehook dev`` leaves the variables the CLI needs in
``.hirehook/env`` and an admin key on its output, so the operator commands in another terminal
and the console work without exporting anything; the real environment always wins."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from app.cli.common import remove_dev_env, use_dev_env, write_dev_env
from app.platform.embedded import free_port


def clean_env() -> dict[str, str]:
    """This process's environment without a single ``HIREHOOK_`` variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HIREHOOK_")}


def test_the_file_is_private_and_holds_the_hirehook_variables(tmp_path: Path) -> None:
    path = tmp_path / ".hirehook" / "env"
    odd = "postgresql://dev:it's a $pass@127.0.0.1:5432/db"
    write_dev_env({"HIREHOOK_DATABASE_URL": odd, "HOME": "/root"}, path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert "HOME" not in path.read_text()
    read: dict[str, str] = {}
    use_dev_env(read, path)
    assert read == {"HIREHOOK_DATABASE_URL": odd}
    # A shell can source it as well.
    sourced = subprocess.run(
        ["sh", "-c", f'. "{path}"; printf %s "$HIREHOOK_DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == odd


def test_the_environment_wins_and_only_development_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "env"
    write_dev_env(
        {
            "HIREHOOK_ENVIRONMENT": "development",
            "HIREHOOK_DATABASE_URL": "postgresql://dev@127.0.0.1:1/dev",
            "HIREHOOK_REDIS_URL": "redis://127.0.0.1:2/0",
        },
        path,
    )
    mine = {"HIREHOOK_REDIS_URL": "redis://mine:6379/0"}
    use_dev_env(mine, path)
    assert mine == {
        "HIREHOOK_ENVIRONMENT": "development",
        "HIREHOOK_DATABASE_URL": "postgresql://dev@127.0.0.1:1/dev",
        "HIREHOOK_REDIS_URL": "redis://mine:6379/0",
    }
    for other in ("production", "test"):
        environ = {"HIREHOOK_ENVIRONMENT": other}
        use_dev_env(environ, path)
        assert environ == {"HIREHOOK_ENVIRONMENT": other}


def test_a_file_left_by_a_dead_dev_is_ignored_and_only_its_writer_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "env"
    write_dev_env({"HIREHOOK_DATABASE_URL": "postgresql://dev@127.0.0.1:1/dev"}, path)
    gone = subprocess.Popen(["true"])
    gone.wait()
    stale = path.read_text().replace(f"pid: {os.getpid()}", f"pid: {gone.pid}")
    path.write_text(stale)
    environ: dict[str, str] = {}
    use_dev_env(environ, path)
    assert environ == {}
    assert f"pid {gone.pid}" in capsys.readouterr().err
    # Not ours: a later `hirehook dev` owns it.
    remove_dev_env(path)
    assert path.exists()
    write_dev_env({}, path)
    remove_dev_env(path)
    assert not path.exists()


def wait_for(output: Path, text: str, process: subprocess.Popen[bytes], timeout_s: float) -> str:
    """``output`` once it contains ``text``; fails if the process exits first."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        printed = output.read_text(errors="replace")
        if text in printed:
            return printed
        assert process.poll() is None, printed
        time.sleep(0.5)
    raise AssertionError(f"{text!r} not printed within {timeout_s} s:\n{printed}")


def login(base: str, key: str) -> httpx.Response:
    """Post the console's login form with ``key``, as a browser would."""
    with httpx.Client(base_url=base, timeout=30) as browser:
        form = browser.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf is not None, form.text
        return browser.post("/console/login", data={"key": key, "csrf": csrf.group(1)})


@pytest.mark.timeout(400)
def test_commands_and_console_work_beside_a_running_dev(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "dev.log"
    env_file = tmp_path / ".hirehook" / "env"
    cli = [sys.executable, "-m", "app.cli"]
    with output.open("wb") as out:
        # Embedded PostgreSQL and Redis in tmp_path/.hirehook, as `make dev` in a checkout.
        dev = subprocess.Popen(
            [*cli, "dev", "--port", str(port), "--ats-port", "0"],
            cwd=tmp_path,
            env=clean_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        printed = wait_for(output, "Ctrl-C stops everything", dev, 300)
        assert env_file.stat().st_mode & 0o777 == 0o600
        # A first start says its servers started, not initdb's and pg_ctl's whole output.
        assert "embedded.postgres_started" in printed
        assert "Running commandline" not in printed and "initdb" not in printed, printed
        [key] = re.findall(r"^  (hh_admin_\S+)$", printed, re.MULTILINE)

        def hirehook(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*cli, *args],
                cwd=tmp_path,
                env=clean_env(),
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )

        # The commands beside it go through its API, with a key of their own.
        written = dict(
            line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
        assert written["HIREHOOK_URL"] == f"http://127.0.0.1:{port}"
        assert written["HIREHOOK_ADMIN_KEY"].startswith("hh_admin_")
        listed = hirehook("records", "list")
        assert listed.returncode == 0, listed.stderr
        keys = orjson.loads(hirehook("admin-keys", "list", "--json").stdout)["items"]
        [used] = [k for k in keys if k["name"].startswith("dev cli ")]
        assert used["last_used_at"] is not None
        created = hirehook("admin-keys", "create", "ops")
        assert created.returncode == 0, created.stderr
        assert created.stdout.strip().startswith("hh_admin_")

        base = f"http://127.0.0.1:{port}"
        # The login page points at that key.
        assert "make dev</code> printed" in httpx.get(f"{base}/console/login", timeout=30).text
        answer = login(base, key)
        assert answer.status_code == 303, answer.text
        assert answer.headers["location"] == "/console/records"
        assert login(base, key + "x").status_code == 401
        # The key is printed once: it is nowhere in what dev left on disk.
        assert key not in env_file.read_text()
    finally:
        dev.send_signal(signal.SIGINT)
        try:
            dev.wait(120)
        except subprocess.TimeoutExpired:
            dev.kill()
            raise
    assert not env_file.exists()
