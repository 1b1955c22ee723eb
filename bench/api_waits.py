"""Where the API alone spends its wall-clock time under the intake bench's load.

    .venv/bin/python -m bench.api_waits [--events 8000] [--rounds 2]

Runs ``bench.intake --no-worker --no-hookspool`` and, while it runs, samples twice a second:

* the scheduler's account of the API process and of the bare endpoint it is compared with
  (``/proc/<pid>/task/*/schedstat``: time on a core, time runnable but waiting for one); the
  rest of the wall-clock time the process had nothing to run, its requests waiting on
  PostgreSQL, Redis or their senders;
* the API's own ``hirehook_intake_seconds`` histogram (``/metrics``): the mean time a request
  spends in the intake's commit (its batch's statement, and its publish when that starts at
  once), and by Little's law how many of the 32 senders' requests are there at a time.

Prints the medians of the loaded samples (intervals where the process was on a core more
than half the time). Linux only.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path


def _find(marker: str) -> tuple[int, str] | None:
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = path.read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in command and "bench.api_waits" not in command:
            return int(path.parent.name), command
    return None


def _schedstat(pid: int) -> tuple[int, int]:
    """Nanoseconds on a core and runnable waiting for one, over the process's threads."""
    on_cpu = waiting = 0
    for path in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            ran, waited, _ = path.read_text().split()
        except (OSError, ValueError):
            continue
        on_cpu += int(ran)
        waiting += int(waited)
    return on_cpu, waiting


def _intake_seconds(port: str) -> tuple[float, float] | None:
    """Sum and count of the API's hirehook_intake_seconds, over every source."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return None
    total = sum(
        float(v) for v in re.findall(r"^hirehook_intake_seconds_sum\{[^}]*\} (\S+)", text, re.M)
    )
    count = sum(
        float(v) for v in re.findall(r"^hirehook_intake_seconds_count\{[^}]*\} (\S+)", text, re.M)
    )
    return total, count


@dataclass
class Process:
    samples: list[tuple[float, int, int]] = field(default_factory=list)

    def loaded(self) -> list[tuple[float, float]]:
        """(on a core, waiting for one) as shares of each loaded interval."""
        shares = []
        for (t0, r0, w0), (t1, r1, w1) in zip(self.samples, self.samples[1:], strict=False):
            span_ns = (t1 - t0) * 1e9
            if span_ns > 0 and (r1 - r0) / span_ns > 0.5:
                shares.append(((r1 - r0) / span_ns, (w1 - w0) / span_ns))
        return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=8000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="api-waits-")) / "intake.json"
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.intake",
            "--events",
            str(args.events),
            "--rounds",
            str(args.rounds),
            "--no-worker",
            "--no-hookspool",
            "--json",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    processes = {"api": Process(), "bare": Process()}
    intake: list[tuple[float, float, float]] = []  # requests/s, mean s in the intake, in it
    last: tuple[float, float, float] | None = None
    while bench.poll() is None:
        for name, marker in (("api", "app.cli api --port"), ("bare", "bench.baseline:app")):
            found = _find(marker)
            if found is None:
                continue
            pid, command = found
            processes[name].samples.append((time.monotonic(), *_schedstat(pid)))
            if name == "api" and (port := re.search(r"--port (\d+)", command)):
                now = time.monotonic()
                read = _intake_seconds(port.group(1))
                if read is not None:
                    if last is not None and read[1] - last[2] > 200:
                        span, done = now - last[0], read[1] - last[2]
                        spent = read[0] - last[1]
                        intake.append((done / span, spent / done, spent / span))
                    last = (now, *read)
        time.sleep(0.5)
    result = json.loads(out.read_text())
    shutil.rmtree(out.parent)
    print(
        f"events/s: Hirehook {result['hirehook']['events_per_s']}, "
        f"bare {result['baseline']['events_per_s']}; API CPU "
        f"{result['hirehook']['cpu_ms_per_event']['api']} ms per event"
    )
    print("| process | on a core | runnable, waiting for a core | nothing to run |")
    print("|---|---:|---:|---:|")
    for name, process in processes.items():
        shares = process.loaded()
        if not shares:
            continue
        on_cpu = statistics.median(s[0] for s in shares)
        waiting = statistics.median(s[1] for s in shares)
        idle = max(0.0, 1 - on_cpu - waiting)
        print(f"| {name} | {on_cpu:.0%} | {waiting:.0%} | {idle:.0%} |")
    busy = [row for row in intake if row[0] > 500]
    if busy:
        mean_ms = 1000 * statistics.median(row[1] for row in busy)
        inside = statistics.median(row[2] for row in busy)
        print(
            f"a request's mean time in the intake's commit (and its publish when that starts at "
            f"once): {mean_ms:.1f} ms; requests there at a time: {inside:.1f} of 32"
        )


if __name__ == "__main__":
    main()
