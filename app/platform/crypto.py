"""Encryption at rest for ATS credentials (Fernet: AES-128-CBC + HMAC-SHA256)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _fernet(key: str) -> Fernet:
    # Accept a real Fernet key as is; any other passphrase is stretched into one so operators
    # can use the secret manager's own format.
    try:
        return Fernet(key.encode())
    except ValueError:
        return Fernet(base64.urlsafe_b64encode(hashlib.sha256(key.encode()).digest()))


class Cipher:
    """Encrypts with the first key, decrypts with any (so keys can be rotated)."""

    def __init__(self, keys: list[str]) -> None:
        if not keys:
            raise ValueError("at least one secret key is required")
        self._multi = MultiFernet([_fernet(k) for k in keys])

    def encrypt_json(self, value: dict[str, Any]) -> bytes:
        """Encrypt a JSON object."""
        return self._multi.encrypt(orjson.dumps(value))

    def decrypt_json(self, token: bytes) -> dict[str, Any]:
        """Decrypt what :meth:`encrypt_json` made; raises ValueError for a foreign key."""
        try:
            value = orjson.loads(self._multi.decrypt(token))
        except InvalidToken as exc:
            raise ValueError(
                "credentials were encrypted with a key that is not configured"
            ) from exc
        if not isinstance(value, dict):
            raise ValueError("stored credentials are not a JSON object")
        return value


def generate_key() -> str:
    """A fresh random key for HIREHOOK_SECRET_KEY."""
    return Fernet.generate_key().decode()


def derive_keys(secret_keys: list[str], purpose: str) -> list[bytes]:
    """One 32-byte key per configured secret key, separated by ``purpose`` (HKDF-SHA256).

    The first key signs, every key verifies: rotating HIREHOOK_SECRET_KEY keeps what was signed
    with the previous key valid while it is still listed.
    """
    return [
        HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=f"hirehook:{purpose}".encode()
        ).derive(key.encode())
        for key in secret_keys
    ]
