"""A small HTTP/1.1 load generator over keep-alive connections, run in its own process.

KeldairHR events (Standard Webhooks, ~2 KB) or iCIMS Status Flow Updates (gzip'd, HMAC).
Requests are built and signed before the clock starts so the generator spends its time
sending, not hashing. Prints one JSON object with counts and latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import orjson

from app.sources.icims import IcimsCredentials, icims_request, icims_sample
from app.sources.keldair import sample as keldair_sample
from app.verifiers import standard_webhooks as swh


def _raw(path: str, host: str, headers: dict[str, str], body: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def keldair_requests(n: int, host: str, tenant: str, secret: str, pad: int) -> list[bytes]:
    """``n`` distinct KeldairHR events signed with Standard Webhooks, as raw HTTP requests."""
    out = []
    for _ in range(n):
        payload: dict[str, Any] = keldair_sample("applicant.hired", str(uuid.uuid4()))
        payload["data"]["notes"] = "x" * pad
        body = orjson.dumps(payload)
        headers = swh.signed_headers(payload["id"], body, secret, time.time())
        out.append(_raw(f"/v1/keldair/{tenant}/events", host, headers, body))
    return out


def icims_requests(n: int, host: str, customer: str, user: str, secret: str) -> list[bytes]:
    """``n`` distinct iCIMS Status Flow Updates, gzip'd and HMAC-signed, as raw HTTP requests."""
    credentials = IcimsCredentials(hmac_user=user, hmac_secret=secret)
    out = []
    for i in range(n):
        payload = icims_sample(
            "WorkFlowStatusChangeEvent", customer, system_id=f"{uuid.uuid4().int % 10**9}{i}"
        )
        url, headers, body = icims_request(
            f"http://{host}", payload, auth="hmac", credentials=credentials
        )
        out.append(_raw(urlsplit(url).path, host, headers, body))
    return out


async def _sender(
    host: str, port: int, queue: list[bytes], latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while queue:
            request = queue.pop()
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            status = int(status_line.split()[1])
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def run(host: str, port: int, requests: list[bytes], concurrency: int) -> dict[str, Any]:
    """Send every request over ``concurrency`` connections; summarize."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    queue = list(reversed(requests))
    started = time.perf_counter()
    await asyncio.gather(
        *(_sender(host, port, queue, latencies, statuses) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "sent": len(requests),
        "acknowledged": sum(c for s, c in statuses.items() if 200 <= s < 300),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(len(requests) / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", choices=["keldair", "icims"], default="keldair")
    parser.add_argument("--account", default="bench", help="tenant slug or iCIMS customerId")
    parser.add_argument("--user", default="bench", help="iCIMS HMAC user")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pad", type=int, default=1500, help="bytes of padding: ~2 KB bodies")
    args = parser.parse_args()
    host = f"127.0.0.1:{args.port}"

    def build(n: int) -> list[bytes]:
        if args.source == "icims":
            return icims_requests(n, host, args.account, args.user, args.secret)
        return keldair_requests(n, host, args.account, args.secret, args.pad)

    asyncio.run(run("127.0.0.1", args.port, build(args.warmup), args.concurrency))
    result = asyncio.run(run("127.0.0.1", args.port, build(args.events), args.concurrency))
    result["warmup"] = args.warmup
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
