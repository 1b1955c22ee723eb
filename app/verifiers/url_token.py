"""A secret token in the callback URL, for senders that cannot sign (KeldairHR, Cloud Elements
instances without a signature key): the checks of a configured token and of a presented one."""

from __future__ import annotations

import hmac
import re
import secrets
from collections.abc import Sequence

from app.platform.secret_strength import require_strong_secret

_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")
# Compared against when a tenant has no token, so an unknown tenant costs what a known one does.
_DECOY = secrets.token_urlsafe(32)


def check(tokens: Sequence[str], *, what: str) -> None:
    """Refuse a token too short to withstand guessing, or not usable as a path segment; the
    message names ``what[index]``, never the token."""
    for index, token in enumerate(tokens):
        # Random URL-safe characters: a token is only as good as its length.
        require_strong_secret(token, what=f"{what}[{index}]")
        if not _URL_SAFE.fullmatch(token):
            raise ValueError(f"{what}[{index}]: use only A-Z a-z 0-9 - _")


def matches(accepted: Sequence[str], presented: str) -> bool:
    """Whether ``presented`` is one of ``accepted`` (several while one is rotated). Every token
    is compared, in constant time, so the answer's timing tells nothing."""
    matched = False
    for candidate in accepted or [_DECOY]:
        matched |= hmac.compare_digest(candidate.encode(), presented.encode())
    return matched and bool(accepted)
