"""Signature and credential checks: pure functions of (headers, raw body, secret, now)."""


class VerificationError(Exception):
    """Why a request was not authentic. Logged, never shown to the sender."""
