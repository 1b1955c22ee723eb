"""A small HTTP/1.1 load generator over keep-alive connections, run in its own process.

KeldairHR events (Standard Webhooks, ~2 KB), the same events signed with a plain hex
HMAC-SHA256 header (``--scheme hmac-sha256``, for a generic webhook receiver such as
hookspool), or iCIMS Status Flow Updates (gzip'd, HMAC). Requests are built and signed before
the clock starts so the generator spends its time sending, not hashing. Connections are spread
round-robin over every ``--port`` given, as a load balancer would. With ``--duplicates`` each
event is sent a second time on the same connection once its first copy is answered (a
sender's redelivery), and both answers are compared. Prints one JSON object with counts,
latency percentiles and the generator's own CPU time for the timed events.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
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


def hmac_requests(
    n: int, host: str, path: str, secret: str, pad: int, header: str, prefix: str
) -> list[bytes]:
    """The same KeldairHR bodies signed with the hex HMAC-SHA256 of the raw body in
    ``header`` (behind ``prefix``), the delivery id in ``X-Delivery-Id``."""
    out = []
    for _ in range(n):
        payload: dict[str, Any] = keldair_sample("applicant.hired", str(uuid.uuid4()))
        payload["data"]["notes"] = "x" * pad
        body = orjson.dumps(payload)
        signature = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            header: prefix + signature,
            "X-Delivery-Id": payload["id"],
        }
        out.append(_raw(path, host, headers, body))
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


class _Tally:
    """What the senders saw; shared by every connection of one run."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.same_answer = 0
        self.different_answer = 0
        self.connection_errors = 0
        self.retried = 0
        self.acknowledged: list[bytes] = []


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes, tally: _Tally
) -> tuple[int, bytes]:
    started = time.perf_counter()
    writer.write(request)
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length)
    tally.latencies.append(time.perf_counter() - started)
    status = int(status_line.split()[1])
    tally.statuses[status] = tally.statuses.get(status, 0) + 1
    return status, body


async def _connect(
    host: str, port: int, retry: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    deadline = time.monotonic() + 120
    while True:
        try:
            return await asyncio.open_connection(host, port)
        except OSError:
            if not retry or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _sender(
    host: str, port: int, queue: list[bytes], tally: _Tally, duplicates: bool, retry: bool
) -> None:
    reader, writer = await _connect(host, port, retry)
    try:
        while queue:
            request = queue.pop()
            while True:
                try:
                    first = await _exchange(reader, writer, request, tally)
                except (OSError, asyncio.IncompleteReadError, IndexError, ValueError):
                    # The server went away mid-request: a sender retries on a new connection,
                    # since an unanswered delivery was never acknowledged.
                    if not retry:
                        raise
                    tally.connection_errors += 1
                    writer.close()
                    reader, writer = await _connect(host, port, retry)
                    continue
                if retry and not 200 <= first[0] < 300:
                    tally.retried += 1
                    await asyncio.sleep(0.05)
                    continue
                break
            if retry:
                tally.acknowledged.append(request)
            if duplicates:
                # A redelivery: the same bytes again once the first copy was answered.
                second = await _exchange(reader, writer, request, tally)
                if second == first:
                    tally.same_answer += 1
                else:
                    tally.different_answer += 1
    finally:
        writer.close()


async def run(
    host: str,
    ports: list[int],
    requests: list[bytes],
    concurrency: int,
    duplicates: bool = False,
    retry: bool = False,
) -> dict[str, Any]:
    """Send every request over ``concurrency`` connections spread over ``ports``; summarize."""
    tally = _Tally()
    queue = list(reversed(requests))
    started = time.perf_counter()
    cpu_started = time.process_time()
    await asyncio.gather(
        *(
            _sender(host, ports[i % len(ports)], queue, tally, duplicates, retry)
            for i in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    latencies = sorted(tally.latencies)
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    deliveries = len(latencies)
    result: dict[str, Any] = {
        "sent": deliveries,
        "events": len(requests),
        "acknowledged": sum(c for s, c in tally.statuses.items() if 200 <= s < 300),
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "elapsed_s": round(elapsed, 3),
        "events_per_s": round(deliveries / elapsed, 1),
        "p50_ms": round(q[49] * 1000, 2),
        "p99_ms": round(q[98] * 1000, 2),
        "loadgen_cpu_s": round(cpu, 4),
    }
    if duplicates:
        result["same_answer"] = tally.same_answer
        result["different_answer"] = tally.different_answer
    if retry:
        result["connection_errors"] = tally.connection_errors
        result["retried"] = tally.retried
        result["acknowledged_ids"] = [_event_id(r) for r in tally.acknowledged]
    return result


def _event_id(request: bytes) -> str:
    body = orjson.loads(request.split(b"\r\n\r\n", 1)[1])
    return str(body["id"])


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--port", type=int, action="append", required=True, help="repeat to spread connections"
    )
    parser.add_argument("--source", choices=["keldair", "icims"], default="keldair")
    parser.add_argument(
        "--scheme",
        choices=["standard-webhooks", "hmac-sha256"],
        default="standard-webhooks",
        help="KeldairHR bodies: Standard Webhooks, or a hex HMAC-SHA256 of the body in --header",
    )
    parser.add_argument("--header", default="X-Signature", help="hmac-sha256: signature header")
    parser.add_argument("--prefix", default="sha256=", help="hmac-sha256: text before the hex")
    parser.add_argument("--path", default="/hooks/bench", help="hmac-sha256: request path")
    parser.add_argument("--account", default="bench", help="tenant slug or iCIMS customerId")
    parser.add_argument("--user", default="bench", help="iCIMS HMAC user")
    parser.add_argument("--secret", required=True)
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--pad", type=int, default=1500, help="bytes of padding: ~2 KB bodies")
    parser.add_argument("--duplicates", action="store_true", help="send every event twice")
    parser.add_argument(
        "--retry",
        action="store_true",
        help="KeldairHR: resend on a lost connection or a non-2xx answer until acknowledged, "
        "and list the acknowledged event ids",
    )
    parser.add_argument(
        "--sync",
        action="store_true",
        help="after the warm-up print a 'ready' line and wait for one line on stdin",
    )
    args = parser.parse_args()
    host = f"127.0.0.1:{args.port[0]}"

    def build(n: int) -> list[bytes]:
        if args.source == "icims":
            return icims_requests(n, host, args.account, args.user, args.secret)
        if args.scheme == "hmac-sha256":
            return hmac_requests(
                n, host, args.path, args.secret, args.pad, args.header, args.prefix
            )
        return keldair_requests(n, host, args.account, args.secret, args.pad)

    warmup: dict[str, Any] = {"sent": 0, "acknowledged": 0}
    if args.warmup:
        warmup = asyncio.run(
            run("127.0.0.1", args.port, build(args.warmup), args.concurrency, args.duplicates)
        )
    timed = build(args.events)
    if args.sync:
        sys.stdout.write('{"ready": true}\n')
        sys.stdout.flush()
        sys.stdin.readline()
    result = asyncio.run(
        run("127.0.0.1", args.port, timed, args.concurrency, args.duplicates, args.retry)
    )
    result["warmup"] = args.warmup
    result["warmup_sent"] = warmup["sent"]
    result["warmup_acknowledged"] = warmup["acknowledged"]
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
