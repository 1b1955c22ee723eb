"""How strong a configured secret must be; a module of its own so the connection schemas and
the verifiers can import it without the brute-force guard (Redis, request handling)."""

from __future__ import annotations

GENERATE_CMD = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'


def require_strong_secret(
    value: str, *, what: str, min_length: int = 32, make: str = GENERATE_CMD
) -> None:
    """Refuse a secret too short to withstand guessing; the message never contains it.

    ``make`` is the command the message suggests for generating one.
    """
    # Surrounding whitespace is often an accident of files and environment variables and
    # adds no strength, so it does not count.
    if len(value.strip()) < min_length:
        raise ValueError(
            f"{what} must be at least {min_length} characters long; generate one with `{make}`"
        )
