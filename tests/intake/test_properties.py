"""Property tests: hostile bytes and headers reach only the service's own errors.

Every pure input-handling function (body decoding, JSON, the verifiers, the per-ATS parsers,
the polling templates and dates, the OAuth token checks) is fed random and adversarial input:
random bytes, truncated gzip, gzip of noise, deep brackets, huge numbers, invalid UTF-8, NUL
bytes raw and escaped, duplicate keys, wrong JSON types in every field and random header maps.
The only exceptions allowed out are the ones the service means to raise (AppError,
VerificationError, pydantic's ValidationError, and ValueError where a function documents it);
anything else (KeyError, TypeError, RecursionError, OverflowError, zlib.error, ...) would be a
500 for the sender. Signers and verifiers round-trip, and one changed byte breaks a signature.

Runs are derandomized and bounded so the suite is deterministic and fast on a loaded machine.
"""

from __future__ import annotations

import base64
import gzip
import string
import zlib
from collections.abc import Iterator
from contextlib import AbstractContextManager, suppress
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from authlib.oauth2.rfc6749 import InvalidRequestError
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.intake.payload import decode_content, parse_json, require_object
from app.platform.errors import AppError
from app.routers.icims.token import _parse_form
from app.schemas import cloudelements as ce_schema
from app.schemas import hrmanager as hrm_schema
from app.schemas import icims as icims_schema
from app.schemas import keldair, polling
from app.schemas import smartrecruiters as sr_schema
from app.schemas.cloudelements_config import CloudElementsOptions
from app.schemas.java_date import JavaDateFormat
from app.verifiers import VerificationError
from app.verifiers import cloudelements as ce_verify
from app.verifiers import hrmanager as hrm_verify
from app.verifiers import icims as icims_verify
from app.verifiers import icims_oauth as oauth_server
from app.verifiers import smartrecruiters as sr_verify
from app.verifiers import standard_webhooks as sw

# Deterministic (same examples every run) and bounded; no deadline, as a loaded CI machine
# makes single examples slow without anything being wrong.
FAST = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FAST, max_examples=40)

NOW = 1_700_000_000.0


def only(*allowed: type[BaseException]) -> AbstractContextManager[None]:
    """Let ``allowed`` exceptions pass silently; any other propagates and fails the test."""
    return suppress(*allowed)


# --- hostile input ---------------------------------------------------------------------------


def _truncated_gzip(data: bytes, cut: int) -> bytes:
    packed = gzip.compress(data)
    return packed[: cut % max(1, len(packed))]


def _nested(opening: str, depth: int) -> bytes:
    closing = opening.translate(str.maketrans("[{", "]}"))
    inner = '"a":' if opening == "{" else ""
    return ((opening + inner) * depth + "1" + closing * depth).encode()


JSON_SNIPPETS = [
    b"1e400",
    b"-1e400",
    b"1" * 10_000,
    b'{"a": ' + b"9" * 10_000 + b"}",
    b'{"id": "x\\u0000y", "\\u0000": "\\u0000"}',
    b'{"id": "x\x00y"}',
    b'{"a": 1, "a": 2, "type": "applicant.hired", "type": [1]}',
    b'{"id": "\xff\xfe", "type": "\xc3\x28"}',
    b'"\\ud800"',
    b"\xef\xbb\xbf{}",
    b"[" * 100_000,
    b"{" * 50_000,
    b"",
    b"   ",
    b"null",
    b"NaN",
]

hostile_bytes = st.one_of(
    st.binary(max_size=512),
    st.sampled_from(JSON_SNIPPETS),
    st.builds(_truncated_gzip, st.binary(max_size=2048), st.integers(0, 10_000)),
    st.binary(max_size=1024).map(gzip.compress),
    st.binary(max_size=1024).map(zlib.compress),
    st.builds(_nested, st.sampled_from(["[", "{"]), st.integers(1, 5000)),
    st.builds(
        lambda raw, nul: raw.replace(b"a", b"\x00" if nul else b"\\u0000"),
        st.sampled_from([b'{"a": "aaa", "aa": ["a", {"a": "a"}]}', b'["a"]']),
        st.booleans(),
    ),
)

# Header values as a server hands them over: any text (ASGI decodes latin-1, other servers
# UTF-8), empty, or huge; surrogates cannot come out of either decoding.
header_text = st.one_of(
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.text(st.characters(codec="latin-1"), max_size=40),
    st.sampled_from(["", " ", "\x00", "v1,", "v1=", "sha256=", "Basic", "Basic ", "Basic \xff"]),
    st.builds(
        lambda c, n: c * n,
        st.sampled_from(["a", "9", " ", ";", ",", "é", "="]),
        st.integers(1000, 70_000),
    ),
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


def payloads(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose known fields hold any JSON type (or are absent), plus random keys."""
    known = st.fixed_dictionaries({}, optional=dict.fromkeys(fields, json_values))
    extra = st.dictionaries(st.text(max_size=10), json_values, max_size=3)
    return st.builds(lambda a, b: {**b, **a}, known, extra)


def headers_with(names: list[str]) -> st.SearchStrategy[dict[str, str]]:
    """Header maps where each relevant header is missing, empty, odd or huge."""
    return st.fixed_dictionaries({}, optional=dict.fromkeys(names, header_text))


def _walk(value: Any) -> Iterator[tuple[Any, int]]:
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        yield node, depth
        if isinstance(node, dict):
            stack.extend((k, depth + 1) for k in node)
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


# --- body decoding and JSON ------------------------------------------------------------------


@FAST
@given(
    raw=hostile_bytes,
    encoding=st.one_of(
        st.none(),
        st.sampled_from(["gzip", "x-gzip", "deflate", "identity", " GZIP ", "br", "", "\xff"]),
    ),
    max_bytes=st.integers(0, 4096),
    max_ratio=st.one_of(st.none(), st.integers(1, 100)),
)
def test_decode_content_raises_only_app_errors_and_respects_its_cap(
    raw: bytes, encoding: str | None, max_bytes: int, max_ratio: int | None
) -> None:
    compressed = encoding not in (None, "", "identity") or raw.startswith(b"\x1f\x8b")
    with only(AppError):
        out = decode_content(raw, encoding, max_bytes, max_ratio)
        if compressed:
            assert len(out) <= max_bytes
        else:
            assert out is raw  # plain bodies are capped by the reader, not here


@FAST
@given(data=st.binary(max_size=4096), how=st.sampled_from(["gzip", "zlib", "raw"]))
def test_compressed_bodies_round_trip_within_the_cap(data: bytes, how: str) -> None:
    if how == "gzip":
        packed, encoding = gzip.compress(data), "gzip"
    elif how == "zlib":
        packed, encoding = zlib.compress(data), "deflate"
    else:
        squeeze = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed, encoding = squeeze.compress(data) + squeeze.flush(), "deflate"
    assert decode_content(packed, encoding, len(data)) == data
    if data:
        with pytest.raises(AppError) as caught:
            decode_content(packed, encoding, len(data) - 1)
        assert caught.value.status == 413


@FAST
@given(raw=hostile_bytes, max_depth=st.integers(1, 100))
def test_parse_json_raises_only_app_errors_and_strips_nul_and_depth(
    raw: bytes, max_depth: int
) -> None:
    with only(AppError):
        value = parse_json(raw, max_depth)
        for node, depth in _walk(value):
            assert depth <= max_depth + 1  # the leaves of the deepest allowed container
            assert not (isinstance(node, str) and "\x00" in node)
        with only(AppError):
            assert isinstance(require_object(value), dict)


# --- verifiers -------------------------------------------------------------------------------

SW_HEADERS = ["webhook-id", "webhook-timestamp", "webhook-signature"]


@FAST
@given(
    headers=headers_with(SW_HEADERS),
    body=hostile_bytes,
    timestamp=st.one_of(st.integers(-(10**30), 10**30), st.just(int(NOW))),
)
def test_standard_webhooks_verify_raises_only_verification_errors(
    headers: dict[str, str], body: bytes, timestamp: int
) -> None:
    if "webhook-timestamp" not in headers:
        headers["webhook-timestamp"] = str(timestamp)
    with only(VerificationError):
        sw.verify(headers, [body], [b"k" * 32], now=NOW)
        pytest.fail("a random signature verified")


@FAST
@given(secret=header_text)
def test_standard_webhooks_secret_decoding_raises_only_value_error(secret: str) -> None:
    with only(ValueError):
        sw.decode_secret(secret)


def _flip_text(text: str, index: int, alphabet: str) -> str:
    at = index % len(text)
    other = (
        alphabet[(alphabet.index(text[at]) + 1) % len(alphabet)]
        if text[at] in alphabet
        else alphabet[0]
    )
    return text[:at] + other + text[at + 1 :]


def _flip_byte(body: bytes, index: int) -> bytes:
    at = index % len(body)
    return body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]


B64 = string.ascii_letters + string.digits + "+/"
HEX = "0123456789abcdef"


@FAST
@given(
    msg_id=st.text(
        st.characters(codec="latin-1", exclude_characters=" \t\n\r\x0b\x0c"),
        min_size=1,
        max_size=20,
    ),
    body=st.binary(min_size=1, max_size=256),
    key=st.binary(min_size=24, max_size=64),
    index=st.integers(0, 10_000),
)
def test_standard_webhooks_round_trip_and_tamper(
    msg_id: str, body: bytes, key: bytes, index: int
) -> None:
    secret = "whsec_" + base64.b64encode(key).decode()
    headers = sw.signed_headers(msg_id, body, secret, NOW)
    assert sw.verify(headers, [body], [key], now=NOW) == msg_id
    with pytest.raises(VerificationError):
        sw.verify(headers, [_flip_byte(body, index)], [key], now=NOW)
    sig = headers["webhook-signature"]
    digest = sig.removeprefix("v1,").rstrip("=")
    tampered = {**headers, "webhook-signature": "v1," + _flip_text(digest, index, B64) + "="}
    with pytest.raises(VerificationError):
        sw.verify(tampered, [body], [key], now=NOW)


ICIMS_HEADERS = ["authorization", "x-icims-date", "x-icims-content-sha256", "content-type", "host"]


@FAST
@given(
    authorization=st.one_of(
        st.none(),
        header_text,
        st.builds(lambda b: "Basic " + base64.b64encode(b).decode(), st.binary(max_size=64)),
    ),
)
@example(authorization=" ").via("regression: only whitespace raised IndexError")
@example(authorization="\x85").via("regression: latin-1 NEL is whitespace to str.split")
def test_icims_basic_raises_only_verification_errors(authorization: str | None) -> None:
    with only(VerificationError):
        icims_verify.verify_basic(authorization, "user", "correct horse battery staple")
        pytest.fail("random Basic credentials verified")


@FAST
@given(
    user=st.text(st.characters(codec="utf-8", exclude_characters=":"), max_size=20),
    password=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    index=st.integers(0, 10_000),
)
def test_icims_basic_round_trip_and_tamper(user: str, password: str, index: int) -> None:
    header = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    icims_verify.verify_basic(header, user, password)
    wrong = password[: index % len(password)] + "\x01" + password[index % len(password) + 1 :]
    assume(wrong != password)
    with pytest.raises(VerificationError):
        icims_verify.verify_basic(header, user, wrong)


@FAST
@given(
    headers=headers_with(ICIMS_HEADERS),
    auth=st.one_of(
        header_text,
        st.builds(
            lambda u, h, s: f"x-icims-v1-hmac-sha256 user={u},signedheaders={h},signature={s}",
            header_text,
            header_text,
            header_text,
        ),
    ),
    date=st.one_of(
        header_text,
        st.sampled_from(
            [
                "0001-01-01T00:00:00+0100",
                "9999-12-31T23:59:59-2359",
                "2023-11-14T22:13:20Z",
                "2023-11-14T22:13:20",
                "2023-11-14T22:13:20+9999",
            ]
        ),
    ),
    body=hostile_bytes,
)
def test_icims_hmac_raises_only_verification_errors(
    headers: dict[str, str], auth: str, date: str, body: bytes
) -> None:
    headers.setdefault("authorization", auth)
    headers.setdefault("x-icims-date", date)
    with only(VerificationError):
        icims_verify.verify_hmac(
            method="POST",
            path="/icims/events",
            query="",
            headers=headers,
            bodies=[body],
            secrets=["s" * 32],
            now=NOW,
            tolerance_s=300,
        )
        pytest.fail("a random HMAC request verified")


def _icims_signed(body: bytes, secret: str, user: str) -> dict[str, str]:
    signed = ";".join(icims_verify.SIGNED_HEADERS)
    headers = {
        "content-type": "application/json",
        "host": "hooks.example.com",
        "x-icims-content-sha256": __import__("hashlib").sha256(body).hexdigest(),
        "x-icims-date": datetime.fromtimestamp(NOW, UTC).strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    text = icims_verify.string_to_sign(
        method="POST", path="/icims/events", query="", headers=headers, signed_headers=signed
    )
    sig = icims_verify.sign(secret, text)
    headers["authorization"] = (
        f"x-icims-v1-hmac-sha256 user={user},signedheaders={signed},signature={sig}"
    )
    return headers


@FAST
@given(
    body=st.binary(min_size=1, max_size=256),
    secret=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    index=st.integers(0, 10_000),
)
def test_icims_hmac_round_trip_and_tamper(body: bytes, secret: str, index: int) -> None:
    headers = _icims_signed(body, secret, "acme")
    kwargs: dict[str, Any] = {
        "method": "POST",
        "path": "/icims/events",
        "query": "",
        "secrets": [secret],
        "now": NOW,
        "tolerance_s": 300,
    }
    assert icims_verify.verify_hmac(headers=headers, bodies=[body], **kwargs) == "acme"
    with pytest.raises(VerificationError):
        icims_verify.verify_hmac(headers=headers, bodies=[_flip_byte(body, index)], **kwargs)
    auth = headers["authorization"]
    sig = auth.rsplit("signature=", 1)[1]
    tampered = {**headers, "authorization": auth[: -len(sig)] + _flip_text(sig, index, HEX)}
    with pytest.raises(VerificationError):
        icims_verify.verify_hmac(headers=tampered, bodies=[body], **kwargs)


@FAST
@given(presented=st.one_of(st.none(), header_text), body=hostile_bytes, user_data=json_values)
def test_hrmanager_verifiers_raise_only_verification_errors(
    presented: str | None, body: bytes, user_data: Any
) -> None:
    with only(VerificationError):
        hrm_verify.verify_signature(presented, [body], [b"k" * 32])
        pytest.fail("a random HR Manager signature verified")
    with only(VerificationError):
        hrm_verify.verify_user_data(user_data, "the-user-data-key")
        pytest.fail("a random User Data key verified")


@FAST
@given(secret=header_text, encoding=st.sampled_from(["hex", "utf-8"]))
def test_hrmanager_secret_decoding_raises_only_value_error(secret: str, encoding: Any) -> None:
    with only(ValueError):
        hrm_verify.decode_secret(secret, encoding)


@FAST
@given(
    body=st.binary(min_size=1, max_size=256),
    key=st.binary(min_size=1, max_size=64),
    index=st.integers(0, 10_000),
)
def test_hrmanager_round_trip_and_tamper(body: bytes, key: bytes, index: int) -> None:
    header = hrm_verify.sign(body, key)
    hrm_verify.verify_signature(header, [body], [key])
    with pytest.raises(VerificationError):
        hrm_verify.verify_signature(header, [_flip_byte(body, index)], [key])
    with pytest.raises(VerificationError):
        # The last character before "=" carries padding bits the decoder ignores: not flipped.
        hrm_verify.verify_signature(
            _flip_text(header[:-2], index, B64) + header[-2:], [body], [key]
        )


SR_HEADERS = [sr_verify.SIGNATURE_HEADER, sr_verify.TIMESTAMP_HEADER, *sr_verify.SIGNED_HEADERS]


@FAST
@given(headers=headers_with(SR_HEADERS), body=hostile_bytes)
def test_smartrecruiters_verify_raises_only_verification_errors(
    headers: dict[str, str], body: bytes
) -> None:
    headers.setdefault(sr_verify.TIMESTAMP_HEADER, str(int(NOW)))
    keys = [sr_verify.SigningKey(b"k" * 32), sr_verify.SigningKey(b"o" * 32, expires_at=0)]
    with only(VerificationError):
        sr_verify.verify(headers, [body], keys, now=NOW)
        pytest.fail("a random SmartRecruiters signature verified")


@FAST
@given(
    body=st.binary(min_size=1, max_size=256),
    keys=st.lists(st.binary(min_size=1, max_size=64), min_size=1, max_size=3),
    extra=headers_with(list(sr_verify.SIGNED_HEADERS)),
    index=st.integers(0, 10_000),
)
def test_smartrecruiters_round_trip_and_tamper(
    body: bytes, keys: list[bytes], extra: dict[str, str], index: int
) -> None:
    ts = str(int(NOW))
    headers = {
        **extra,
        sr_verify.TIMESTAMP_HEADER: ts,
        sr_verify.SIGNATURE_HEADER: sr_verify.signature_header(keys, ts, body, extra),
    }
    live = [sr_verify.SigningKey(key) for key in keys]
    sr_verify.verify(headers, [body], live, now=NOW)
    with pytest.raises(VerificationError):
        sr_verify.verify(headers, [_flip_byte(body, index)], live, now=NOW)
    one = f"v1={sr_verify.sign(keys[0], ts, body, extra)}"
    tampered = {**headers, sr_verify.SIGNATURE_HEADER: "v1=" + _flip_text(one[3:], index, HEX)}
    with pytest.raises(VerificationError):
        sr_verify.verify(tampered, [body], live[:1], now=NOW)


@FAST
@given(
    presented=st.one_of(st.none(), header_text),
    body=hostile_bytes,
    prefix=st.sampled_from(["sha256=", "", "é"]),
    encoding=st.sampled_from(["base64", "hex"]),
)
def test_cloudelements_verify_raises_only_verification_errors(
    presented: str | None, body: bytes, prefix: str, encoding: Any
) -> None:
    with only(VerificationError):
        ce_verify.verify(presented, [body], [b"k" * 32], prefix=prefix, encoding=encoding)
        pytest.fail("a random Cloud Elements signature verified")


@FAST
@given(
    body=st.binary(min_size=1, max_size=256),
    key=st.binary(min_size=1, max_size=64),
    encoding=st.sampled_from(["base64", "hex"]),
    index=st.integers(0, 10_000),
)
def test_cloudelements_round_trip_and_tamper(
    body: bytes, key: bytes, encoding: Any, index: int
) -> None:
    header = ce_verify.signature(body, key, encoding=encoding)
    ce_verify.verify(header, [body], [key], encoding=encoding)
    with pytest.raises(VerificationError):
        ce_verify.verify(header, [_flip_byte(body, index)], [key], encoding=encoding)
    value = header.removeprefix("sha256=").rstrip("=")
    flipped = _flip_text(value, index, B64 if encoding == "base64" else HEX)
    with pytest.raises(VerificationError):
        ce_verify.verify(
            "sha256=" + flipped + "=" * (len(header) - 7 - len(value)),
            [body],
            [key],
            encoding=encoding,
        )


# --- OAuth -----------------------------------------------------------------------------------

KEYS = oauth_server.SigningKeys([b"k" * 32, b"o" * 32], "https://hooks.example.com", "hirehook")


@FAST
@given(
    token=st.one_of(
        header_text,
        st.builds(".".join, st.lists(header_text, min_size=3, max_size=3)),
        st.builds(
            lambda head, claims: (
                ".".join(
                    base64.urlsafe_b64encode(orjson.dumps(p)).decode().rstrip("=")
                    for p in (head, claims)
                )
                + ".c2ln"
            ),
            st.one_of(json_values, st.just({"alg": "HS256"}), st.just({"alg": "none"})),
            json_values,
        ),
    )
)
def test_verify_access_token_raises_only_verification_errors(token: str) -> None:
    with only(VerificationError):
        oauth_server.verify_access_token(token, KEYS)
        pytest.fail("a random token verified")


@FAST
@given(headers=headers_with(["authorization"]), basic=st.binary(max_size=64))
def test_basic_client_id_raises_only_value_error(headers: dict[str, str], basic: bytes) -> None:
    with only(ValueError):
        oauth_server.basic_client_id(headers)
    with only(ValueError):
        oauth_server.basic_client_id({"authorization": "Basic " + base64.b64encode(basic).decode()})


@FEW
@given(
    secret=st.text(st.characters(codec="utf-8"), min_size=1, max_size=40),
    index=st.integers(0, 10_000),
)
def test_access_tokens_round_trip_and_tamper(secret: str, index: int) -> None:
    client = oauth_server.OAuthClient(
        connection_id=7, client_id="acme", secrets=[secret], expires_s=3600
    )
    basic = base64.b64encode(f"acme:{secret}".encode()).decode()
    status, body, _ = oauth_server.token_reply(
        uri="https://hooks.example.com/icims/oauth/token",
        headers={"Authorization": f"Basic {basic}"},
        form={"grant_type": "client_credentials"},
        client=client,
        keys=KEYS,
    )
    assert status == 200, body
    token = body["access_token"]
    claims = oauth_server.verify_access_token(token, KEYS)
    assert (claims.connection_id, claims.client_id) == (7, "acme")
    assert oauth_server.secret_still_valid(claims, [secret], KEYS)
    signature = token.rsplit(".", 1)[1]
    # The last base64url character carries padding bits a decoder may ignore; flip another.
    flipped = _flip_text(signature[:-1], index, B64.replace("+/", "-_")) + signature[-1]
    with pytest.raises(VerificationError):
        oauth_server.verify_access_token(token[: -len(signature)] + flipped, KEYS)


@FAST
@given(
    raw=st.one_of(
        hostile_bytes,
        st.builds(
            lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode(),
            st.lists(
                st.tuples(
                    st.sampled_from(["grant_type", "client_id", "x", "%ff", "a%00"]), header_text
                ),
                max_size=30,
            ),
        ),
    )
)
def test_token_form_parsing_raises_only_invalid_request(raw: bytes) -> None:
    with only(InvalidRequestError):
        form = _parse_form(raw)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in form.items())


# --- parsers ---------------------------------------------------------------------------------

KELDAIR_FIELDS = ["id", "type", "version", "dateOccurred", "data"]


@FAST
@given(
    payload=payloads(KELDAIR_FIELDS),
    data=payloads(["id", "firstName", "jobId", "hiredAt", "applicantId", "completedAt"]),
    type_=st.sampled_from([keldair.APPLICANT_HIRED, keldair.ONBOARDING_FILE_COMPLETED, "x"]),
    use_data=st.booleans(),
)
@example(payload={"id": "x", "type": [1]}, data={}, type_="x", use_data=False).via(
    "regression: an unhashable type raised TypeError"
)
def test_keldair_parse_never_raises(
    payload: dict[str, Any], data: dict[str, Any], type_: str, use_data: bool
) -> None:
    if use_data:
        payload = {**payload, "type": type_, "data": data}
    parsed = keldair.parse(
        payload, type_aliases={"hired": keldair.APPLICANT_HIRED}, data_aliases={"id": "applicantId"}
    )
    assert isinstance(parsed.event_type, str)
    keldair.dedupe_key(payload, {"webhook-id": "msg"})


ICIMS_FIELDS = [
    "customerId",
    "userId",
    "systemId",
    "links",
    "eventType",
    "returnUrl",
    "personId",
    "jobId",
    "newStatus",
    "oldStatus",
    "portalUrl",
    "incompleteUrl",
]


@FAST
@given(payload=payloads(ICIMS_FIELDS), event_type=st.sampled_from(sorted(icims_schema.EVENT_TYPES)))
def test_icims_parse_event_raises_only_validation_errors(
    payload: dict[str, Any], event_type: str
) -> None:
    for candidate in (payload, {**payload, "eventType": event_type}):
        with only(ValidationError):
            event = icims_schema.parse_event(candidate)
            icims_schema.dedupe_content(event)
            icims_schema.thread(event)
            icims_schema.subjects(event)


@FAST
@given(
    value=st.one_of(st.none(), header_text, st.text(alphabet='<>;,="rel title ab:/', max_size=80))
)
def test_icims_link_header_never_raises(value: str | None) -> None:
    for link in icims_schema.parse_link_header(value):
        assert link.url


def test_icims_link_header_is_linear_in_its_length() -> None:
    # A quadratic parser spends seconds here; a linear one milliseconds.
    for hostile in ("a" * 64_000, " " * 64_000, ';a="' * 16_000, "a" + " " * 64_000):
        start = datetime.now(UTC)
        icims_schema.parse_link_header("http://x;" + hostile)
        assert datetime.now(UTC) - start < timedelta(seconds=2)


@FAST
@given(
    payload=st.one_of(
        json_values, payloads(["id", "job_id", "candidate_id", "jobId", "candidateId"])
    ),
    name=st.one_of(header_text, st.sampled_from(sorted(sr_schema.KNOWN_EVENTS))),
    headers=headers_with(["event-id", "event-name", "event-version", "link"]),
    body=hostile_bytes,
)
def test_smartrecruiters_parse_never_raises(
    payload: Any, name: str, headers: dict[str, str], body: bytes
) -> None:
    parsed = sr_schema.parse(payload, name)
    assert isinstance(parsed.event_type, str)
    assert sr_schema.dedupe_key(headers, body)


HRM_FIELDS = [
    *hrm_schema.WIRE_NAMES["event"][:4],
    "CandidateId",
    "candidateId",
    "PositionId",
    "ProjectId",
    "Data",
    "UserData",
]


@FAST
@given(
    payload=payloads(HRM_FIELDS),
    url_event=st.one_of(st.none(), header_text, st.sampled_from(hrm_schema.EVENT_NAMES)),
    nested=st.sampled_from(['{"CandidateId": 5}', '{"CandidateId": ', "{" * 2000, "{}"]),
)
def test_hrmanager_parse_never_raises(
    payload: dict[str, Any], url_event: str | None, nested: str
) -> None:
    payload = {**payload, "UserData": nested}
    fields = {"candidate_id": ["UserData.CandidateId", "Data.CandidateId", "CandidateId"]}
    parsed = hrm_schema.parse(
        payload, url_event=url_event, fields=fields, aliases={"5": "CandidateHired"}
    )
    assert isinstance(parsed.event_type, str)
    assert hrm_schema.dedupe_key(parsed.event_type, payload, ignore=["Data.Stamp", "Event"])


@FAST
@given(
    body=st.one_of(
        hostile_bytes,
        st.builds(
            orjson.dumps,
            st.one_of(
                json_values,
                st.builds(
                    lambda events, nest: (
                        {"message": {"eventId": 1, "events": events}}
                        if nest
                        else {"events": events}
                    ),
                    st.lists(
                        st.one_of(
                            json_values,
                            payloads(
                                ["objectType", "objectId", "eventType", "elementKey", "updatedDate"]
                            ),
                        ),
                        max_size=5,
                    ),
                    st.booleans(),
                ),
            ),
        ),
    ),
    headers=headers_with(["elements-webhook-id"]),
)
def test_cloudelements_parse_notification_never_raises(
    body: bytes, headers: dict[str, str]
) -> None:
    events = ce_schema.parse_notification(body, headers, CloudElementsOptions())
    assert events
    for event in events:
        assert ce_schema.reparse(event.payload, CloudElementsOptions()).event_type


# --- polling: URL templates, Java date patterns, dates ---------------------------------------

pattern_text = st.one_of(
    st.text(max_size=30),
    st.lists(
        st.sampled_from(
            [
                "yyyy",
                "yy",
                "MM",
                "M",
                "dd",
                "HH",
                "mm",
                "ss",
                "SSS",
                "S",
                "SSSSSSSSS",
                "X",
                "XXX",
                "Z",
                "'T'",
                "''",
                "-",
                ":",
                ".",
                " ",
                "'",
                "EEE",
                "yyy",
                "MMMM",
            ]
        ),
        max_size=10,
    ).map("".join),
)


@FAST
@given(
    url=st.one_of(
        st.text(max_size=60),
        st.builds(
            lambda a, p, b: f"/c?{a}=${{{p}}}{b}",
            st.text(max_size=5),
            st.one_of(
                st.sampled_from(
                    [
                        "epoch",
                        "epoch:s",
                        "epoch:ms",
                        "isoDate",
                        "isoDate:x",
                        "gmtDate",
                        "epoch:",
                        "gmtDate:",
                    ]
                ),
                pattern_text.map(lambda p: f"gmtDate:{p}"),
            ),
            st.text(max_size=5),
        ),
    ),
    since=st.datetimes(timezones=st.just(UTC)),
)
def test_url_templates_raise_only_value_error(url: str, since: datetime) -> None:
    with only(ValueError):
        polling.check_template(url)
        polling.render_template(url, since)


@FAST
@given(
    pattern=pattern_text,
    value=st.one_of(
        st.text(max_size=40),
        st.sampled_from(
            [
                "0001-01-01T00:00:00+01:00",
                "9999-12-31T23:59:59-01:00",
                "0001-01-01",
                "2024-02-30",
                "9999-12-31T23:59:59.999Z",
            ]
        ),
    ),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "Pacific/Kiritimati", "Nowhere"]),
)
@example(pattern="yyyy-yyyy", value="", zone="UTC").via("regression: re.error escaped")
@example(pattern="yyyy-MM-dd", value="0001-01-01T00:00:00+01:00", zone="UTC").via(
    "regression: OverflowError moving year 1 to UTC"
)
def test_java_date_patterns_raise_only_value_error(pattern: str, value: str, zone: str) -> None:
    with only(ValueError):
        reader = polling.DateReader(pattern, zone)
        assert reader.read(value).tzinfo is not None


@FAST
@given(
    value=st.one_of(
        json_values, st.sampled_from([10**400, "1e400", "nan", "inf", 2**63, "-1e20", 1e308])
    ),
    fmt=st.sampled_from(["epoch", "epoch:ms", "epoch:s"]),
)
def test_epoch_dates_raise_only_value_error(value: Any, fmt: str) -> None:
    with only(ValueError):
        polling.DateReader(fmt, "UTC").read(value)


@FAST
@given(
    # hypothesis takes naive bounds and attaches the zone itself.
    moment=st.datetimes(
        min_value=datetime(1000, 1, 1),  # noqa: DTZ001
        max_value=datetime(9998, 12, 31),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    pattern=st.sampled_from(
        [
            polling.DEFAULT_DATE_FORMAT,
            "yyyy-MM-dd'T'HH:mm:ss.SSSXXX",
            "yyyy-MM-dd HH:mm:ss.SSSSSSZ",
            "yyyyMMddHHmmssSSSSSSX",
        ]
    ),
)
def test_java_date_patterns_round_trip(moment: datetime, pattern: str) -> None:
    java = JavaDateFormat(pattern)
    # Fractions are truncated to the pattern's digits, never rounded.
    digits = min(pattern.count("S"), 6)
    fraction = moment.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits)
    assert java.parse(java.format(moment), UTC) == moment.replace(microsecond=fraction)


@FAST
@given(
    options=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "polling": st.one_of(
                    json_values,
                    st.fixed_dictionaries(
                        {
                            "resources": st.dictionaries(
                                st.text(max_size=10),
                                st.one_of(
                                    json_values,
                                    st.fixed_dictionaries(
                                        {"url": st.text(max_size=30)},
                                        optional={
                                            "datesConfiguration": payloads(
                                                ["updatedDateFormat", "updatedDateTimezone"]
                                            )
                                        },
                                    ),
                                ),
                                max_size=2,
                            )
                        },
                        optional={"base_url": header_text},
                    ),
                )
            },
            optional={"base_url": header_text},
        ),
    ),
    secrets=st.dictionaries(st.sampled_from(["api_key", "x"]), json_values, max_size=2),
)
def test_polling_options_raise_only_value_error(options: Any, secrets: dict[str, Any]) -> None:
    if not isinstance(options, dict):
        options = {"polling": options}
    with only(ValueError):
        polling.parse(options, secrets)
