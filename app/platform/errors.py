"""One error type for everything the service refuses; the routers render it per sender."""

from __future__ import annotations


class AppError(Exception):
    """A refusal with a status, a message for the person who can act, and detail for logs."""

    def __init__(
        self,
        status: int,
        user_message: str,
        debug_message: str | None = None,
        *,
        code: str = "error",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(debug_message or user_message)
        self.status = status
        self.user_message = user_message
        self.debug_message = debug_message or user_message
        self.code = code
        self.headers = headers or {}


def unauthorized() -> AppError:
    """The one answer for a bad, missing or stale credential and for an unknown tenant."""
    return AppError(
        401,
        "The request could not be authenticated. Check the endpoint URL, the credentials or "
        "signing secret configured for it, and that the sender's clock is correct.",
        code="unauthorized",
    )


def unavailable(debug: str) -> AppError:
    """A temporary failure: the sender should retry and will not lose the event."""
    return AppError(
        503,
        "The event could not be recorded right now. It was not accepted; please retry.",
        debug,
        code="temporarily_unavailable",
        headers={"Retry-After": "5"},
    )
