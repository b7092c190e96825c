"""A per-scenario cleanup stack: undo actions run last-in-first-out on success, failure and interrupt.

Register the undo before making the change (so an interrupt between the two cannot leak), as the
Kubernetes e2e framework's DeferCleanup does. A failing undo does not stop the others.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable

log = logging.getLogger("harvester_e2e.cleanup")


@dataclass
class CleanupStack:
    keep: bool = False                       # --keep-on-failure: leave things for a person to look at
    _actions: list[tuple[str, Callable[[], Any]]] = field(default_factory=list)

    def defer(self, description: str, action: Callable[[], Any]) -> None:
        self._actions.append((description, action))

    def run(self) -> list[str]:
        """Run every undo, newest first; return the descriptions of the ones that failed."""
        failures: list[str] = []
        if self.keep:
            for description, _ in reversed(self._actions):
                log.warning("kept for inspection (--keep-on-failure): %s", description)
            self._actions.clear()
            return failures
        while self._actions:
            description, action = self._actions.pop()
            try:
                action()
                log.info("cleaned up: %s", description)
            except Exception as exc:  # noqa: BLE001 - one failed undo must not stop the rest
                log.error("cleanup failed: %s: %s", description, exc)
                failures.append(f"{description}: {exc}")
        return failures

    def __len__(self) -> int:
        return len(self._actions)
