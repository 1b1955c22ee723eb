"""Reading request bodies safely: size caps, content decoding, JSON, NUL bytes."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from fastapi import Request

from app.errors import AppError

_GZIP_MAGIC = b"\x1f\x8b"


def _too_large(limit: int, what: str) -> AppError:
    return AppError(
        413,
        f"The {what} is larger than this endpoint accepts ({limit} bytes).",
        code="payload_too_large",
    )


async def read_raw(request: Request, max_bytes: int, timeout_s: float | None = None) -> bytes:
    """The body as sent, refused as soon as it passes ``max_bytes`` or takes ``timeout_s``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise _too_large(max_bytes, "request body")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_bytes:
                    raise _too_large(max_bytes, "request body")
                chunks.append(chunk)
    except TimeoutError as exc:
        # A body trickling in must not hold the request past the sender's own budget.
        raise AppError(
            408, f"The request body did not arrive within {timeout_s:.0f} s.", code="timeout"
        ) from exc
    return b"".join(chunks)


def decode_content(raw: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """Undo ``Content-Encoding``, never inflating past ``max_bytes`` (gzip bombs)."""
    enc = (encoding or "").strip().lower()
    if enc in ("", "identity"):
        # iCIMS documents "GZIP'd JSON" without promising the header; JSON never starts
        # with the gzip magic, so sniffing cannot misread a plain body.
        if not raw.startswith(_GZIP_MAGIC):
            return raw
        enc = "gzip"
    if enc in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif enc == "deflate":
        # RFC 9110 says zlib-wrapped, but many senders send raw deflate; accept both.
        wbits = zlib.MAX_WBITS if raw[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        raise AppError(
            415,
            f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or identity.",
            code="unsupported_encoding",
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(raw, max_bytes + 1)
        if len(out) > max_bytes or inflater.unconsumed_tail:
            raise _too_large(max_bytes, "decompressed request body")
        out += inflater.flush()
    except zlib.error as exc:
        raise AppError(
            400, f"The body is not valid {enc} data: {exc}.", code="bad_encoding"
        ) from exc
    if len(out) > max_bytes:
        raise _too_large(max_bytes, "decompressed request body")
    if not inflater.eof:
        raise AppError(400, f"The {enc} body is truncated.", code="bad_encoding")
    return out


def parse_json(body: bytes) -> Any:
    """Parse JSON, with a message that says where it is broken; strips NUL characters."""
    if not body.strip():
        raise AppError(
            400, "The request body is empty; a JSON object was expected.", code="bad_json"
        )
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise AppError(
            400, f"The request body is not valid UTF-8 JSON: {exc}.", code="bad_json"
        ) from exc
    return strip_nul(value)


def strip_nul(value: Any) -> Any:
    """Remove U+0000 from every string: PostgreSQL's JSONB cannot store it."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {strip_nul(k): strip_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [strip_nul(v) for v in value]
    return value


def require_object(value: Any) -> dict[str, Any]:
    """The top level of every event is a JSON object."""
    if not isinstance(value, dict):
        raise AppError(
            400, "The request body must be a JSON object, not a list or a scalar.", code="bad_json"
        )
    return value
