"""Polling until a condition holds, within a named budget, with what was seen last on timeout."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from .budget import Budget, WaitTimeout

T = TypeVar("T")


class _NotYet(Exception):
    """The awaited condition does not hold yet (never escapes this module)."""


def poll_until(check: Callable[[], T | None], budget: Budget, awaited: str, *,
               evidence: Callable[[], dict[str, Any]] | None = None, interval_s: float = 0.5) -> T:
    """Call `check` until it returns something other than None (or False), within `budget`.

    `check` may raise `OSError` for a transient "not reachable yet"; anything else propagates at once.
    """
    last_seen = ["nothing yet"]
    deadline = budget.start()

    def attempt() -> T:
        try:
            result = check()
        except OSError as exc:
            last_seen[0] = f"{type(exc).__name__}: {exc}"
            raise _NotYet() from exc
        if result is None or result is False:
            last_seen[0] = "condition not met"
            raise _NotYet()
        return result

    try:
        return tenacity.Retrying(retry=tenacity.retry_if_exception_type(_NotYet),
                                 wait=tenacity.wait_exponential(multiplier=0.1, max=interval_s * 4),
                                 stop=tenacity.stop_after_delay(budget.seconds), reraise=True)(attempt)
    except _NotYet:
        raise WaitTimeout(budget, awaited, deadline.elapsed, last_seen[0],
                          evidence=evidence() if evidence else {}) from None
