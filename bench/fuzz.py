"""Schemathesis against the running app's own /openapi.json.

    .venv/bin/python -m bench.fuzz [--quick] [--max-examples 100] [--seed 1]

Starts its own PostgreSQL, Redis and `hirehook api` on loopback (bench.stack), runs
``st run`` over every documented operation with examples, coverage and fuzzing phases, and
checks: no 5xx, every status code documented, every response body valid against its
documented schema, content types and headers as documented. Prints the result, writes
``bench/results/fuzz.json`` and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.stack import Check, Stack, print_table, write_result

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)


def _summary(report: Path) -> dict[str, Any]:
    """Counts from schemathesis's NDJSON event stream."""
    failures: dict[str, int] = {}
    cases = 0
    operations: set[str] = set()
    for line in report.read_bytes().splitlines():
        event = orjson.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished.get("recorder") or {}
        label = recorder.get("label")
        if label:
            operations.add(label)
        cases += len(recorder.get("cases") or {})
        for checks in (recorder.get("checks") or {}).values():
            for check in checks:
                if str(check.get("status", "")).lower() == "failure":
                    name = f"{check.get('name')}: {label}"
                    failures[name] = failures.get(name, 0) + 1
    return {"operations": sorted(operations), "cases": cases, "failures": failures}


async def run(args: argparse.Namespace) -> tuple[list[Check], dict[str, Any]]:
    """Start the stack, fuzz it, stop it."""
    # The brute-force guard would soon answer every generated request 429, and hold every
    # refusal a second (documented, but it hides the handlers behind it and slows the run to a
    # crawl): off for this run, so each case reaches its route.
    stack = Stack(
        env={
            "HIREHOOK_AUTH_FAILURE_LIMIT_PER_ADDRESS": "0",
            "HIREHOOK_AUTH_FAILURE_LIMIT_PER_CLIENT": "1000000",
            "HIREHOOK_AUTH_FAILURE_DELAY_S": "0",
        }
    )
    report = Path(tempfile.mkdtemp(prefix="hirehook-fuzz-")) / "schemathesis.ndjson"
    try:
        await stack.start(worker=False)
        started = time.monotonic()
        command = [
            str(Path(sys.executable).with_name("st")),
            "run",
            f"http://127.0.0.1:{stack.api_port}/openapi.json",
            "--checks",
            ",".join(CHECKS),
            "--phases",
            "examples,fuzzing",
            "--max-examples",
            str(args.max_examples),
            "--seed",
            str(args.seed),
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--suppress-health-check",
            "all",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
            "--no-color",
        ]
        # Run where its cache (.schemathesis/) is thrown away with the report.
        done = await asyncio.to_thread(
            subprocess.run,
            command,
            capture_output=True,
            text=True,
            check=False,
            cwd=report.parent,
        )
        elapsed = round(time.monotonic() - started, 1)
    finally:
        await stack.close()
    print(done.stdout)
    tail = done.stdout.strip().splitlines()[-40:]
    summary: dict[str, Any] = (
        _summary(report) if report.exists() else {"operations": [], "cases": 0, "failures": {}}
    )
    shutil.rmtree(report.parent, ignore_errors=True)
    summary |= {"exit_code": done.returncode, "seconds": elapsed, "output_tail": tail}
    failures = summary["failures"]
    checks = [
        Check(
            "fuzz",
            "schemathesis ran every operation",
            bool(summary["operations"]),
            f"{len(summary['operations'])} operations, {summary['cases']} cases, {elapsed} s",
        ),
        Check(
            "fuzz",
            "no failed check (5xx, undocumented status/schema/type/header)",
            not failures and done.returncode == 0,
            "none" if not failures else "; ".join(f"{k} x{v}" for k, v in failures.items()),
        ),
    ]
    return checks, summary


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="10 examples per operation")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.quick:
        args.max_examples = 10
    checks, summary = asyncio.run(run(args))
    print_table("fuzz", checks)
    path = write_result(
        "fuzz-quick" if args.quick else "fuzz",
        {"max_examples": args.max_examples, "seed": args.seed, **summary},
    )
    print(f"\nwrote {path}")
    sys.exit(0 if all(c.ok for c in checks) else 1)


if __name__ == "__main__":
    main()
