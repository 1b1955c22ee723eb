"""Bad requests flat out, from their own process and their own loopback addresses.

    python -m bench.flood --port P --seconds S [--connections 32] [--addresses 127.0.0.2,...]

Cycles through unknown tenants, wrong signatures on a real tenant, bodies over the size cap
and gzip bombs. Prints ``ready`` once its requests are built, then floods. With more addresses
than connections, each connection reconnects from its next address after every request, so
every address is in use (a distributed flood); otherwise each connection keeps one address.
At the end prints one JSON object: requests sent, per second, and statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import sys
import time
import uuid
from collections import Counter

import orjson

from bench.stack import TENANT, exchange

KINDS = ("unknown-tenant", "wrong-signature", "oversized", "gzip-bomb")
_WRONG = "whsec_d3JvbmctZmxvb2Qtc2lnbmluZy1zZWNyZXQtMDA="


def _raw(path: str, headers: dict[str, str], body: bytes, length: int | None = None) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {length or len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def requests(kinds: list[str]) -> list[bytes]:
    """One raw request of each kind: unknown tenant, wrong signature, oversized, gzip bomb."""
    from app.verifiers import standard_webhooks as swh

    body = orjson.dumps({"id": "evt_flood", "type": "applicant.hired", "data": {"id": "ap_1"}})
    # Built only when sent: compressing 64 MB takes this process a while.
    bomb = gzip.compress(b"0" * (64 * 2**20), compresslevel=9) if "gzip-bomb" in kinds else b""
    now = time.time()
    wrong = swh.signed_headers("evt_flood", body, _WRONG, now)
    made = {
        "unknown-tenant": _raw(f"/v1/keldair/nobody-{uuid.uuid4().hex[:8]}/events", wrong, body),
        "wrong-signature": _raw(f"/v1/keldair/{TENANT}/events", wrong, body),
        # Only the headers: the declared length alone must be refused, before any body is read.
        "oversized": _raw(
            f"/v1/keldair/{TENANT}/events", {"content-type": "application/json"}, b"", 2**21
        ),
        "gzip-bomb": _raw(
            f"/v1/keldair/{TENANT}/events",
            {**swh.signed_headers("evt_bomb", bomb, _WRONG, now), "content-encoding": "gzip"},
            bomb,
        ),
    }
    return [made[k] for k in kinds]


async def _one(
    port: int,
    addresses: list[str],
    end: float,
    raws: list[bytes],
    statuses: Counter[str],
    *,
    roam: bool,
) -> None:
    """One flood connection; with ``roam`` it reconnects from the next of ``addresses`` after
    every request, so the flood's addresses are all in use, not one per connection."""
    cycle = itertools.cycle(raws)
    sources = itertools.cycle(addresses)
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    while time.monotonic() < end:
        raw = next(cycle)
        try:
            if conn is None:
                conn = await asyncio.open_connection(
                    "127.0.0.1", port, local_addr=(next(sources), 0)
                )
            code, _, close = await exchange(*conn, raw)
            status = str(code)
            # The declared body of an oversized request was never sent: the connection cannot
            # carry another request.
            close = close or status == "413" or roam
            statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError) as exc:
            statuses[type(exc).__name__] += 1
            close = True
        if close and conn is not None:
            conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


async def run(
    port: int, seconds: float, connections: int, addresses: list[str], kinds: list[str]
) -> dict[str, object]:
    """Flood for ``seconds``; counts by status."""
    raws = requests(kinds)
    # The caller measures from here: this process's own start (imports, the bomb) is not
    # part of the flood.
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    statuses: Counter[str] = Counter()
    end = time.monotonic() + seconds
    started = time.monotonic()
    # Connection i uses addresses i, i + connections, ...: every address, none shared.
    await asyncio.gather(
        *(
            _one(
                port,
                addresses[i::connections] or [addresses[i % len(addresses)]],
                end,
                raws,
                statuses,
                roam=len(addresses) > connections,
            )
            for i in range(connections)
        )
    )
    total = sum(statuses.values())
    return {
        "requests": total,
        "per_s": round(total / (time.monotonic() - started), 1),
        "statuses": dict(sorted(statuses.items())),
    }


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--addresses", default="127.0.0.2", help="comma-separated source addresses")
    parser.add_argument(
        "--kinds", default=",".join(KINDS), help="comma-separated: " + ",".join(KINDS)
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.port,
            args.seconds,
            args.connections,
            args.addresses.split(","),
            args.kinds.split(","),
        )
    )
    sys.stdout.write(orjson.dumps(result).decode() + "\n")


if __name__ == "__main__":
    main()
