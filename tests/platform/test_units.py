"""Pure pieces: body decoding, Standard Webhooks, encryption, settings, ids, tenants file."""

from __future__ import annotations

import gzip
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import Webhook

from app.admin.tenants_file import _resolve, read_tenants_file
from app.cli.dev import mask_password
from app.intake.payload import decode_content, strip_nul
from app.platform.crypto import Cipher, generate_key
from app.platform.errors import AppError
from app.platform.ids import uuid7
from app.platform.settings import DEVELOPMENT_SECRET_KEY, Settings
from app.verifiers import VerificationError
from app.verifiers import standard_webhooks as swh
from tests.support.paths import REPO

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_reference_library_signatures_verify() -> None:
    now = time.time()
    ts = datetime.fromtimestamp(int(now), tz=UTC)
    signature = Webhook(SECRET).sign("msg_x", ts, '{"a":1}')
    headers = {
        "webhook-id": "msg_x",
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    key = swh.decode_secret(SECRET)
    assert swh.verify(headers, [b'{"a":1}'], [key], now=now) == "msg_x"
    # And the reference library accepts what we sign.
    ours = swh.sign("msg_x", int(now), b'{"a":1}', key)
    Webhook(SECRET).verify(b'{"a":1}', headers | {"webhook-signature": ours})
    with pytest.raises(VerificationError):
        swh.verify(headers, [b'{"a":2}'], [key], now=now)


def test_secret_must_be_base64() -> None:
    with pytest.raises(ValueError, match="whsec_"):
        swh.decode_secret("whsec_not base64!")


def test_decode_gzip_deflate_and_limits() -> None:
    body = b'{"hello": "world"}'
    assert decode_content(gzip.compress(body), "gzip", 1024) == body
    assert decode_content(gzip.compress(body), None, 1024) == body
    assert decode_content(zlib.compress(body), "deflate", 1024) == body
    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decode_content(raw.compress(body) + raw.flush(), "deflate", 1024) == body
    with pytest.raises(AppError) as too_big:
        decode_content(gzip.compress(b"0" * 5000), "gzip", 1024)
    assert too_big.value.status == 413
    with pytest.raises(AppError) as truncated:
        decode_content(gzip.compress(body)[:-8], "gzip", 1024)
    assert truncated.value.status == 400
    with pytest.raises(AppError) as garbage:
        decode_content(b"\x1f\x8bnot gzip at all", "gzip", 1024)
    assert garbage.value.status == 400


def test_strip_nul_everywhere() -> None:
    assert strip_nul({"a\x00": ["b\x00", {"c": "\x00d"}], "n": 1}) == {
        "a": ["b", {"c": "d"}],
        "n": 1,
    }


def test_cipher_round_trip_and_rotation() -> None:
    old, new = generate_key(), "a passphrase that is not a fernet key"
    # Long enough that base64 ciphertext cannot contain it by chance (a 2-letter one could).
    plain = "s3cret-value-that-must-not-appear"
    token = Cipher([old]).encrypt_json({"secret": plain})
    rotated = Cipher([new, old])
    assert rotated.decrypt_json(token) == {"secret": plain}
    assert plain.encode() not in token
    with pytest.raises(ValueError, match="not configured"):
        Cipher([new]).decrypt_json(token)


def test_production_refuses_missing_or_published_key() -> None:
    with pytest.raises(ValidationError, match="HIREHOOK_SECRET_KEY must be set"):
        Settings(_env_file=None, environment="production")
    with pytest.raises(ValidationError, match="published development key"):
        Settings(
            _env_file=None, environment="production", secret_key=SecretStr(DEVELOPMENT_SECRET_KEY)
        )
    dev = Settings(_env_file=None, environment="development")
    assert dev.secret_keys == [DEVELOPMENT_SECRET_KEY]


def test_uuid7_is_time_ordered_version_7() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert [i.int >> 80 for i in ids] == sorted(i.int >> 80 for i in ids)
    assert abs((ids[0].int >> 80) - time.time() * 1000) < 5000


def test_tenants_file_resolves_env_secrets(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ACME_SECRET", "whsec_abc")
    assert _resolve({"signing_secrets": ["env:ACME_SECRET", "plain"]}) == {
        "signing_secrets": ["whsec_abc", "plain"]
    }
    with pytest.raises(ValueError, match="MISSING_VAR"):
        _resolve("env:MISSING_VAR")
    path = tmp_path / "t.toml"
    path.write_text('[[tenant]]\nslug = "Bad Slug"\nname = "x"\n')
    with pytest.raises(ValidationError):
        read_tenants_file(path)


def test_demo_tenants_file_is_valid() -> None:
    spec = read_tenants_file(REPO / "demo" / "tenants.toml")
    assert any(c.source == "keldair" for t in spec.tenant for c in t.connection)


def test_printed_urls_hide_passwords() -> None:
    assert mask_password("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert mask_password("redis://:s3cret@cache:6379/0") == "redis://:***@cache:6379/0"
    assert mask_password("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_arq_job_lines_are_kept_for_debug_only() -> None:
    import logging

    from app.platform.logs import configure

    arq_log = logging.getLogger("arq.worker")
    before = arq_log.level
    try:
        configure("INFO", "console")
        assert not arq_log.isEnabledFor(logging.INFO)
        assert arq_log.isEnabledFor(logging.WARNING)
        configure("DEBUG", "console")
        assert arq_log.isEnabledFor(logging.INFO)
    finally:
        arq_log.setLevel(before)
