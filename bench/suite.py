"""The benchmark set behind ``make bench``: every run, then one table of issue 9's targets.

    .venv/bin/python -m bench.suite [--events 10000] [--rounds 3] [--slow-rounds 1]
                                    [--prefill 1000000] [--rss-events 100000] [--results DIR]

Runs, each its own process with its own PostgreSQL and Redis (see bench/README.md):

1. new events, API + worker: bare FastAPI, Hirehook and hookspool 0.2.0 in alternating rounds
1b. API alone: the same with no worker on the machine (issue 22's first target)
2. duplicates: the same, every event sent twice
3. prefilled: ``--prefill`` records in the table first (compared with run 1, each as a ratio
   to its own same-run baseline)
4. RSS: ``--rss-events`` events, API RSS after a tenth of them and after all
5. scale-out: 2 API processes (connections spread over both) + 2 workers
6. crash: ``kill -9`` of the API ``--kill-after`` seconds into a load whose senders resend
   until acknowledged; every acknowledged event must be in PostgreSQL
7. enrichment: ``bench.enrichment`` (1 and 2 worker processes against a 50 ms fake API; worker
   CPU per job against the yardstick it measures in the same run)
8. pipeline: ``bench.pipeline``, events recorded, processed and delivered to a destination,
   end to end (a burst with the worker running, and a backlog drained by one worker; worker
   CPU per event against the same-run yardstick)

Writes each run's JSON and ``summary.json`` (with the table) under ``--results``. Exits
non-zero if a ledger does not balance or a run could not finish; a missed target is reported,
not fatal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

RESULTS = Path(__file__).resolve().parent / "results"


def _run(name: str, argv: list[str], out: Path) -> dict[str, Any] | str:
    """Run one benchmark; its JSON, or why there is none."""
    print(f"\n=== {name}: {' '.join(argv)}", flush=True)
    started = time.monotonic()
    # A file left by an earlier run must not stand in for a run that failed.
    out.unlink(missing_ok=True)
    done = subprocess.run([sys.executable, "-m", *argv, "--json", str(out)], check=False)
    print(
        f"=== {name}: exit {done.returncode} after {time.monotonic() - started:.0f} s", flush=True
    )
    if not out.exists():
        return f"failed (exit {done.returncode}, no results)"
    result: dict[str, Any] = orjson.loads(out.read_bytes())
    if done.returncode != 0 and not result.get("ledger_failures"):
        return f"failed (exit {done.returncode})"
    return result


def _rate(side: dict[str, Any]) -> str:
    return f"{side['events_per_s']:,.0f}/s (p50 {side['p50_ms']:.0f} / p99 {side['p99_ms']:.0f} ms)"


def _cpu(side: dict[str, Any]) -> str:
    cpu = side["cpu_ms_per_event"]
    parts = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if k != "total")
    return f"**{cpu['total']:.2f}** ({parts})"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


Row = tuple[str, str, str, str, str]


def _intake_rows(main: dict[str, Any] | str, dup: dict[str, Any] | str) -> list[Row]:
    rows: list[Row] = []
    if isinstance(main, str):
        rows.append(
            ("new events ≥ 0.4x bare FastAPI, p99 ≤ 50 ms, ≥ 3x hookspool", main, "", "", "—")
        )
    else:
        base, hh = main["baseline"], main["hirehook"]
        ratio = main["ratio_events_per_s"]
        rows.append(
            (
                "new events, API + worker: ≥ 0.4x bare FastAPI",
                f"{ratio:.3f}x — Hirehook {_rate(hh)}",
                f"bare {_rate(base)}; CPU {_cpu(base)}",
                _cpu(hh),
                _met(ratio >= 0.4),
            )
        )
        p99 = hh["p99_ms"]
        rows.append(
            (
                "p99 ack ≤ 50 ms at 32 senders (stretch ≤ 30)",
                f"{p99:.1f} ms",
                "",
                "",
                _met(p99 <= 50) + (" (stretch met)" if p99 <= 30 else ""),
            )
        )
        peer = main["hookspool"]
        if isinstance(peer, str):
            rows.append(("≥ 3x hookspool 0.2.0", peer, "", "", "—"))
        else:
            times = hh["events_per_s"] / peer["events_per_s"]
            rows.append(
                (
                    "≥ 3x hookspool 0.2.0 (same run)",
                    f"{times:.2f}x",
                    f"hookspool {_rate(peer)} = {peer['ratio_events_per_s']:.3f}x bare; "
                    f"CPU {_cpu(peer)}",
                    "",
                    _met(times >= 3),
                )
            )
    if isinstance(dup, str):
        rows.append(("duplicates ≥ 0.6x bare FastAPI", dup, "", "", "—"))
    else:
        ratio = dup["ratio_events_per_s"]
        peer = dup["hookspool"]
        reference = f"bare {_rate(dup['baseline'])}"
        if not isinstance(peer, str):
            reference += f"; hookspool {_rate(peer)}"
        ledger = dup["ledger"]
        answered = ledger["same_answer"] + ledger["different_answer"]
        same = f"{ledger['same_answer']:,} of {answered:,} redeliveries answered alike"
        rows.append(
            (
                "duplicates (every event twice): ≥ 0.6x bare FastAPI",
                f"{ratio:.3f}x — Hirehook {_rate(dup['hirehook'])}; {same}",
                reference,
                _cpu(dup["hirehook"]),
                _met(ratio >= 0.6),
            )
        )
    return rows


def _api_alone_rows(alone: dict[str, Any] | str) -> list[Row]:
    """Issue 22's first target: the API alone (no worker on the machine) against the bare
    endpoint and hookspool of the same run, and its CPU per event against the bare server's
    CPU per request (the same-run yardstick)."""
    name = "API alone (no worker): ≥ 0.4x bare FastAPI"
    if isinstance(alone, str):
        return [(name + ", ≥ 5x hookspool, p99 ≤ 20 ms, CPU ≤ 2.5x bare", alone, "", "", "—")]
    base, hh = alone["baseline"], alone["hirehook"]
    ratio = alone["ratio_events_per_s"]
    api_ms, bare_ms = hh["cpu_ms_per_event"]["api"], base["cpu_ms_per_event"]["server"]
    rows: list[Row] = [
        (
            name,
            f"{ratio:.3f}x — Hirehook {_rate(hh)}",
            f"bare {_rate(base)}; CPU {_cpu(base)}",
            _cpu(hh),
            _met(ratio >= 0.4),
        )
    ]
    peer = alone["hookspool"]
    if isinstance(peer, str):
        rows.append(("API alone: ≥ 5x hookspool 0.2.0", peer, "", "", "—"))
    else:
        times = hh["events_per_s"] / peer["events_per_s"]
        rows.append(
            (
                "API alone: ≥ 5x hookspool 0.2.0 (same run)",
                f"{times:.2f}x",
                f"hookspool {_rate(peer)} = {peer['ratio_events_per_s']:.3f}x bare",
                "",
                _met(times >= 5),
            )
        )
    p99 = hh["p99_ms"]
    rows.append(
        ("API alone: p99 ack ≤ 20 ms at 32 senders", f"{p99:.1f} ms", "", "", _met(p99 <= 20))
    )
    times_bare = api_ms / bare_ms if bare_ms else float("inf")
    rows.append(
        (
            "API alone: API CPU per event ≤ 2.5x the bare server's per request",
            f"{times_bare:.2f}x — API {api_ms:.3f} ms per event",
            f"bare server {bare_ms:.3f} ms per request",
            "",
            _met(times_bare <= 2.5),
        )
    )
    return rows


def _growth_rows(
    main: dict[str, Any] | str, prefill: dict[str, Any] | str, rss: dict[str, Any] | str
) -> list[Row]:
    rows: list[Row] = []
    if isinstance(prefill, str) or isinstance(main, str):
        rows.append(("1 M records in the table: ≥ 0.8x empty", str(prefill), "", "", "—"))
    else:
        # Each run is a ratio to its own same-run baseline, so machine drift between the runs
        # cancels out.
        ratio = prefill["ratio_events_per_s"] / main["ratio_events_per_s"]
        rows.append(
            (
                f"{prefill['prefill']:,} records in the table: ≥ 0.8x empty",
                f"{ratio:.2f}x — {prefill['ratio_events_per_s']:.3f}x bare prefilled vs "
                f"{main['ratio_events_per_s']:.3f}x empty",
                f"prefilled Hirehook {_rate(prefill['hirehook'])}",
                _cpu(prefill["hirehook"]),
                _met(ratio >= 0.8),
            )
        )
    if isinstance(rss, str):
        rows.append(("API RSS flat (±10 %) from 10 k to 100 k events", rss, "", "", "—"))
    else:
        points = rss["rss"]["rss_mb_at"]
        growth = rss["rss"]["growth"]
        rows.append(
            (
                "API RSS flat (±10 %) over the run",
                f"{growth * 100:+.1f} % ("
                + " → ".join(f"{v} MB at {int(k):,}" for k, v in points.items())
                + ")",
                "",
                "",
                _met(abs(growth) <= 0.10),
            )
        )
    return rows


def _scale_row(scale: dict[str, Any] | str, main: dict[str, Any] | str) -> list[Row]:
    if isinstance(scale, str):
        return [("scale-out: 2 API processes + 2 workers (documented)", scale, "", "", "—")]
    versus = ""
    if not isinstance(main, str):
        versus = (
            f"; {scale['hirehook']['events_per_s'] / main['hirehook']['events_per_s']:.2f}x "
            "1 API + 1 worker"
        )
    return [
        (
            "scale-out: 2 API processes + 2 workers (documented)",
            f"Hirehook {_rate(scale['hirehook'])} = "
            f"{scale['ratio_events_per_s']:.3f}x bare{versus}",
            f"bare, 2 uvicorn workers {_rate(scale['baseline'])}",
            _cpu(scale["hirehook"]),
            "—",
        )
    ]


def _crash_row(crash: dict[str, Any] | str) -> list[Row]:
    name = "kill -9 of the API mid-load loses no acknowledged event"
    if isinstance(crash, str):
        return [(name, crash, "", "", "—")]
    c = crash["crash"]
    hit = c["connection_errors"] > 0
    return [
        (
            name,
            f"{c['lost']} lost of {c['acknowledged']:,} acknowledged "
            f"({c['acknowledged_and_recorded']:,} found recorded)",
            f"killed {c['killed_after_s']} s in, API back after {c['api_back_after_s']} s; "
            f"{c['connection_errors']} requests cut off and resent"
            + ("" if hit else " (the kill hit nothing in flight)"),
            "",
            _met(c["lost"] == 0 and hit),
        )
    ]


def _yardstick(result: dict[str, Any]) -> tuple[float | None, str]:
    """The run's yardstick (ms) and the reference cell that names it."""
    stick = result.get("yardstick_ms")
    if not stick:
        return None, "no yardstick in this run"
    return float(stick), (
        f"yardstick {stick:.3f} ms (bare endpoint's server CPU per request, same run)"
    )


def _times(cpu: float, stick: float | None) -> str:
    return f"{cpu:.2f} ms" + ("" if stick is None else f" = {cpu / stick:.1f}x the yardstick")


def _enrichment_rows(enrich: dict[str, Any] | str) -> list[Row]:
    if isinstance(enrich, str):
        return [("enrichment: worker CPU per fetched job ≤ 8x the yardstick", enrich, "", "", "—")]
    by = {s["scenario"]: s for s in enrich["scenarios"]}
    one, two = by["throughput, 1 process"], by["throughput, 2 processes"]
    stick, reference = _yardstick(enrich)
    busy, cores = one.get("machine_cores"), enrich.get("cores")
    cap = (
        f"1 process kept {busy:.2f} of {cores} cores busy: 2 can go at most {cores / busy:.2f}x"
        if busy and cores
        else ""
    )
    cpu = one["cpu_ms_per_job"]
    return [
        (
            "enrichment: worker CPU per fetched job ≤ 8x the yardstick (50 ms fake API)",
            _times(cpu, stick),
            reference,
            f"{cpu:.2f} ms/job (worker)",
            "—" if stick is None else _met(cpu <= 8 * stick),
        ),
        (
            "enrichment throughput (documented)",
            f"1 process {one['jobs_per_s']:,.0f} jobs/s; 2 processes "
            f"{two['jobs_per_s']:,.0f} jobs/s ({two['jobs_per_s_ratio']:.2f}x)",
            cap,
            f"{two['cpu_ms_per_job']:.2f} ms/job (2 processes)",
            "—",
        ),
    ]


def _pipeline_row(pipeline: dict[str, Any] | str) -> list[Row]:
    name = "end to end: worker CPU per event processed and delivered ≤ 4x the yardstick"
    if isinstance(pipeline, str):
        return [(name, pipeline, "", "", "—")]
    burst, drain = pipeline["burst"], pipeline["drain"]
    stick, reference = _yardstick(pipeline)
    cpu = drain["worker_cpu_ms_per_event"]
    return [
        (
            name,
            _times(cpu, stick) + f" (backlog drained by one worker: "
            f"{drain['delivered_per_s']:,.0f} events/s)",
            reference,
            f"worker {cpu:.2f} ms per event processed and delivered",
            "—" if stick is None else _met(cpu <= 4 * stick),
        ),
        (
            "end to end, burst with the worker running (documented)",
            f"{burst['delivered_per_s']:,.0f} events/s delivered "
            f"({burst['acknowledged_per_s']:,.0f}/s acknowledged)",
            "",
            "",
            "—",
        ),
    ]


def _ledger_row(runs: dict[str, dict[str, Any] | str]) -> tuple[Row, bool]:
    bad = []
    for name, result in runs.items():
        if isinstance(result, str):
            bad.append(f"{name}: {result}")
        else:
            bad += [f"{name}: {f}" for f in result.get("ledger_failures", [])]
    measured = "; ".join(bad) if bad else "every run: sent = acknowledged = recorded = processed"
    main = runs.get("new events")
    if isinstance(main, dict):
        ledger = main["ledger"]
        measured += (
            f" (new events: {ledger['sent']:,} / {ledger['acknowledged']:,} / "
            f"{ledger['recorded']:,} / {ledger['processed']:,})"
        )
    return ("ledgers balance", measured, "", "", _met(not bad)), not bad


def table(runs: dict[str, dict[str, Any] | str]) -> tuple[str, bool]:
    """The markdown table of targets, and whether every ledger balanced."""
    main, dup = runs.get("new events", "not run"), runs.get("duplicates", "not run")
    rows = _intake_rows(main, dup)
    rows += _api_alone_rows(runs.get("api alone", "not run"))
    rows += _growth_rows(main, runs.get("prefilled", "not run"), runs.get("rss", "not run"))
    rows += _enrichment_rows(runs.get("enrichment", "not run"))
    rows += _scale_row(runs.get("scale-out", "not run"), main)
    rows += _crash_row(runs.get("crash", "not run"))
    rows += _pipeline_row(runs.get("pipeline", "not run"))
    intake_runs = {k: v for k, v in runs.items() if k != "enrichment"}
    ledger, balanced = _ledger_row(intake_runs)
    rows.append(ledger)
    lines = [
        "| target (issue 9) | measured | reference, same run | Hirehook CPU ms per delivery "
        "(per job for enrichment) | |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines), balanced


def budget(runs: dict[str, dict[str, Any] | str], cores: int) -> str:
    """For each throughput target, the CPU per event it leaves on ``cores`` cores against what
    this run measured: the arithmetic behind "cannot be had on this design on this machine".

    Every process of a run (API, worker, PostgreSQL, Redis, the load generator) shares the
    cores, so a rate of R events/s allows ``cores * 1000 / R`` ms of CPU per event in all. What
    the API may spend is that less what the rest of the pipeline measured; no endpoint that
    does more than the bare one can spend less than the bare endpoint's own server CPU.
    """
    lines = [
        f"| target | events/s it needs | CPU ms/event it allows on {cores} cores | "
        "measured (all processes) | of which not the API | API would need ≤ | "
        "bare endpoint's server CPU |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def line(label: str, rate: float, hh: dict[str, Any], bare: dict[str, Any]) -> None:
        allowed = cores * 1000 / rate
        cpu = hh["cpu_ms_per_event"]
        rest = cpu["total"] - cpu["api"]
        lines.append(
            f"| {label} | {rate:,.0f} | {allowed:.2f} | {cpu['total']:.2f} | {rest:.2f} | "
            f"{allowed - rest:.2f} | {bare['cpu_ms_per_event']['server']:.2f} |"
        )

    main, dup = runs.get("new events"), runs.get("duplicates")
    if isinstance(main, dict):
        bare = main["baseline"]
        line("new events ≥ 0.4x bare", 0.4 * bare["events_per_s"], main["hirehook"], bare)
        peer = main["hookspool"]
        if isinstance(peer, dict):
            line("≥ 3x hookspool", 3 * peer["events_per_s"], main["hirehook"], bare)
    alone = runs.get("api alone")
    if isinstance(alone, dict):
        bare = alone["baseline"]
        line("API alone ≥ 0.4x bare", 0.4 * bare["events_per_s"], alone["hirehook"], bare)
        peer = alone["hookspool"]
        if isinstance(peer, dict):
            line("API alone ≥ 5x hookspool", 5 * peer["events_per_s"], alone["hirehook"], bare)
    if isinstance(dup, dict):
        bare = dup["baseline"]
        line("duplicates ≥ 0.6x bare", 0.6 * bare["events_per_s"], dup["hirehook"], bare)
    if len(lines) == 2:
        return ""
    if isinstance(main, dict):
        senders, rate = main["concurrency"], main["hirehook"]["events_per_s"]
        lines.append(
            f"\n{senders} senders that each wait for their answer keep {senders} requests in "
            f"flight, so the mean answer time is {senders} / throughput (Little's law): "
            f"{1000 * senders / rate:.0f} ms at the measured {rate:,.0f} events/s. A p99 of "
            f"50 ms needs at least {senders / 0.05:,.0f} events/s for the mean alone."
        )
    return "\n".join(lines)


def main() -> None:
    """Run the set and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10000, help="timed events per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the main comparison")
    parser.add_argument("--slow-rounds", type=int, default=1, help="rounds of the other runs")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--prefill", type=int, default=1_000_000)
    parser.add_argument("--rss-events", type=int, default=100_000)
    parser.add_argument(
        "--kill-after", type=float, default=3, help="seconds into the crash run's load"
    )
    parser.add_argument("--enrich-events", type=int, default=600)
    parser.add_argument("--enrich-storm", type=int, default=500)
    parser.add_argument("--enrich-repeats", type=int, default=3)
    parser.add_argument("--pipeline-seconds", type=float, default=15)
    parser.add_argument("--pipeline-backlog", type=int, default=4000)
    parser.add_argument("--pipeline-repeats", type=int, default=2)
    parser.add_argument(
        "--only", action="append", help="run only these (new-events, duplicates, ...)"
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    args.results.mkdir(parents=True, exist_ok=True)

    common = ["--events", str(args.events), "--warmup", str(args.warmup)]
    slow = [*common, "--rounds", str(args.slow_rounds)]
    plan: list[tuple[str, list[str]]] = [
        ("new events", ["bench.intake", *common, "--rounds", str(args.rounds)]),
        ("api alone", ["bench.intake", *common, "--rounds", str(args.rounds), "--no-worker"]),
        ("duplicates", ["bench.intake", *slow, "--duplicates"]),
        ("prefilled", ["bench.intake", *slow, "--prefill", str(args.prefill), "--no-hookspool"]),
        (
            "rss",
            [
                "bench.intake",
                *common,
                "--rounds",
                "0",
                "--rss",
                "--rss-events",
                str(args.rss_events),
                "--no-hookspool",
            ],
        ),
        (
            "scale-out",
            ["bench.intake", *slow, "--api-processes", "2", "--workers", "2", "--no-hookspool"],
        ),
        (
            "crash",
            [
                "bench.intake",
                *common,
                "--rounds",
                "0",
                "--kill-api-after",
                str(args.kill_after),
                "--no-hookspool",
            ],
        ),
        (
            "enrichment",
            [
                "bench.enrichment",
                "--events",
                str(args.enrich_events),
                "--storm",
                str(args.enrich_storm),
                "--repeats",
                str(args.enrich_repeats),
            ],
        ),
        (
            "pipeline",
            [
                "bench.pipeline",
                "--seconds",
                str(args.pipeline_seconds),
                "--backlog",
                str(args.pipeline_backlog),
                "--repeats",
                str(args.pipeline_repeats),
            ],
        ),
    ]
    wanted: Callable[[str], bool] = lambda name: (  # noqa: E731
        not args.only or name.replace(" ", "-") in args.only
    )
    runs: dict[str, dict[str, Any] | str] = {}
    for name, argv in plan:
        if wanted(name):
            runs[name] = _run(name, argv, args.results / f"{name.replace(' ', '-')}.json")
    rendered, balanced = table(runs)
    print("\n" + rendered)
    cpu_budget = budget(runs, os.cpu_count() or 1)
    if cpu_budget:
        print("\nCPU budget of the throughput targets (bench/README.md):\n\n" + cpu_budget)
    summary = {
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "table": rendered,
        "cpu_budget": cpu_budget,
    }
    summary["runs"] = runs
    (args.results / "summary.json").write_text(
        orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode()
    )
    if not balanced:
        raise SystemExit("a ledger does not balance or a run did not finish: see the table")


if __name__ == "__main__":
    main()
