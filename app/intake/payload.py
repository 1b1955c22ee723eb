"""Turning request bytes into a JSON object safely: content decoding, JSON, NUL, nesting.

Pure functions of bytes; the routers read the bytes, the poller and the tests call these too.
Nothing here recurses over input: a body nested thousands deep is a 400, never a crash.
"""

from __future__ import annotations

import zlib
from typing import Any

import orjson

from app.platform.errors import AppError

_GZIP_MAGIC = b"\x1f\x8b"
# Events are a few levels deep; nothing an ATS sends comes near this.
MAX_DEPTH = 64
# A ratio is only judged past this size: tiny bodies compress badly or well at random.
_RATIO_FLOOR = 64 * 1024


class TooDeepError(ValueError):
    """A value nested deeper than allowed."""


def too_large(limit: int, what: str) -> AppError:
    """413 for a body (or its inflated form) past ``limit``."""
    return AppError(
        413,
        f"The {what} is larger than this endpoint accepts ({limit} bytes).",
        code="payload_too_large",
    )


def is_compressed(raw: bytes, encoding: str | None) -> bool:
    """Whether :func:`decode_content` would inflate ``raw``."""
    enc = (encoding or "").strip().lower()
    return enc not in ("", "identity") or raw.startswith(_GZIP_MAGIC)


def decode_content(
    raw: bytes, encoding: str | None, max_bytes: int, max_ratio: int | None = None
) -> bytes:
    """Undo ``Content-Encoding``, never inflating past ``max_bytes`` nor ``max_ratio`` times
    the wire size (gzip bombs)."""
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
    limit = max_bytes
    if max_ratio is not None:
        limit = min(limit, max(_RATIO_FLOOR, len(raw) * max_ratio))
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(raw, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise too_large(limit, "decompressed request body")
        out += inflater.flush()
    except zlib.error as exc:
        raise AppError(
            400, f"The body is not valid {enc} data: {exc}.", code="bad_encoding"
        ) from exc
    if len(out) > limit:
        raise too_large(limit, "decompressed request body")
    if not inflater.eof:
        raise AppError(400, f"The {enc} body is truncated.", code="bad_encoding")
    return out


def parse_json(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON, with a message that says where it is broken; strips NUL characters and
    refuses values nested deeper than ``max_depth``."""
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
    # JSON can only carry U+0000 escaped, and nesting needs brackets: most bodies need no walk.
    if b"\\u0000" not in body and body.count(b"[") + body.count(b"{") <= max_depth:
        return value
    try:
        return strip_nul(value, max_depth=max_depth)
    except TooDeepError as exc:
        raise AppError(
            400, f"The request body is nested deeper than {max_depth} levels.", code="bad_json"
        ) from exc


def strip_nul(value: Any, *, max_depth: int = 1000) -> Any:
    """Remove U+0000 from every string (PostgreSQL's JSONB cannot store it), in place for
    containers; raises :class:`TooDeepError` past ``max_depth``. Iterative, never recursive."""
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if not isinstance(value, dict | list):
        return value
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise TooDeepError(f"nested deeper than {max_depth} levels")
        if isinstance(node, dict):
            for key in [k for k in node if "\x00" in k]:
                node[key.replace("\x00", "")] = node.pop(key)
            entries: Any = node.items()
        else:
            entries = enumerate(node)
        for slot, item in list(entries):
            if isinstance(item, str):
                if "\x00" in item:
                    node[slot] = item.replace("\x00", "")
            elif isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return value


def require_object(value: Any) -> dict[str, Any]:
    """The top level of every event is a JSON object."""
    if not isinstance(value, dict):
        raise AppError(
            400, "The request body must be a JSON object, not a list or a scalar.", code="bad_json"
        )
    return value
