"""The one backoff policy: how long to wait after a failed attempt, for every retry in the house
(record jobs, deliveries, the poller's pages and its cron, the worker's Redis reconnects, the
dev supervisor's restarts).

A wait doubles from ``base_s`` with each failed attempt up to ``cap_s`` (or follows an explicit
schedule), is spread by a random factor so that retries of many failures at once do not arrive
together, and is never shorter than the other side asked for (``Retry-After``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

# Spreads retries; protects nothing, so no cryptographic source.
_random = random.Random()  # noqa: S311
# 2 ** 64 times any base passes every cap; more doublings would only overflow the float.
_MAX_DOUBLINGS = 64

# The spreads in use, as (low, high) factors of the step: none, "equal jitter" (half the step
# fixed, half random: never less than half, never more than the step), and +-20%.
NO_JITTER = (1.0, 1.0)
EQUAL_JITTER = (0.5, 1.0)
PLUS_MINUS_20 = (0.8, 1.2)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with a jitter; or, with ``steps``, a schedule of waits whose
    last step repeats."""

    base_s: float = 1.0
    cap_s: float = math.inf
    # The wait is the step times a uniform draw from [low, high].
    jitter: tuple[float, float] = NO_JITTER
    steps: tuple[float, ...] = ()

    @classmethod
    def schedule(cls, steps: Sequence[float], jitter: tuple[float, float] = NO_JITTER) -> Backoff:
        """Waits that follow ``steps`` (the n-th failure waits the n-th step), then its last."""
        if not steps:
            raise ValueError("a backoff schedule needs at least one step")
        return cls(jitter=jitter, steps=tuple(steps))

    def step(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1 for the first), before jitter."""
        if self.steps:
            return self.steps[min(max(attempt, 1), len(self.steps)) - 1]
        doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
        return min(self.cap_s, self.base_s * 2.0**doublings)

    def delay(self, attempt: int, *, retry_after_s: float | None = None) -> float:
        """The wait after failed attempt ``attempt``, jittered, never below ``retry_after_s``."""
        step = self.step(attempt)
        low, high = self.jitter
        wait = step if low == high == 1.0 else step * _random.uniform(low, high)
        return max(wait, retry_after_s or 0.0)
