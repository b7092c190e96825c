"""Explicit fault injection for reliability tests: never a side effect of a simulated version."""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class Faults:
    unavailable_until: float = 0.0      # monotonic deadline: every API request gets 503 before it
    error_burst_left: int = 0           # the next N API requests fail with `error_burst_code`
    error_burst_code: int = 503
    refuse_connections_until: float = 0.0   # the listener is closed (connection refused) before it

    def api_unavailable(self) -> bool:
        return time.monotonic() < self.unavailable_until

    def take_burst(self) -> int | None:
        if self.error_burst_left > 0:
            self.error_burst_left -= 1
            return self.error_burst_code
        return None
