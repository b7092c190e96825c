"""Budgets: every wait has a name, a limit in real time, and a diagnosis when the limit is reached."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def format_seconds(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s"


@dataclass(frozen=True)
class Budget:
    """A named allowance of wall-clock time for one kind of wait, e.g. Budget("nodes Ready", 15 * 60)."""

    name: str
    seconds: float

    @classmethod
    def minutes(cls, name: str, minutes: float) -> "Budget":
        return cls(name, minutes * 60.0)

    def start(self) -> "Deadline":
        return Deadline(self, time.monotonic())

    def __str__(self) -> str:
        return f"{self.name} ({format_seconds(self.seconds)})"


@dataclass
class Deadline:
    budget: Budget
    started: float

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def remaining(self) -> float:
        return max(0.0, self.budget.seconds - self.elapsed)

    def expired(self) -> bool:
        return self.remaining <= 0


@dataclass
class WaitTimeout(Exception):
    """A wait ran out of budget. `evidence` holds what was last seen; the report attaches it."""

    budget: Budget
    awaited: str
    elapsed: float
    last_seen: str = "nothing"
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return (f"budget '{self.budget.name}' ({format_seconds(self.budget.seconds)}) ran out after "
                f"{format_seconds(self.elapsed)} waiting for {self.awaited}; last seen: {self.last_seen}")
