"""Prometheus counters. Per process: with several uvicorn workers, scrape each or aggregate."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

INTAKE = Counter(
    "hirehook_intake_total", "Events handed to the intake core, by outcome.", ["source", "outcome"]
)
REJECTED = Counter("hirehook_rejected_total", "Requests refused, by HTTP status.", ["status"])
INTAKE_SECONDS = Histogram(
    "hirehook_intake_seconds",
    "Time to record an event (one database statement).",
    ["source"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25),
)
