"""A per-scenario cleanup stack: undo actions run last-in-first-out on success, failure and interrupt.

Register the undo before making the change (so an interrupt between the two cannot leak), as the
Kubernetes e2e framework's DeferCleanup does. A failing undo does not stop the others.

Two kinds of entries:
* undos: `delete_later(...)` for the common one (delete, then wait until it is gone; already gone is
  fine), `defer(...)` for anything else (put an annotation back, restore labels);
* evidence collectors, `on_failure(...)`: they run only when the scenario failed, before any undo, so
  what a person needs to see is collected while it still exists (chainsaw's `catch`, the Kubernetes
  framework's namespace dump).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from infra.kube import Kube
    from infra.waits.budget import Budget

log = logging.getLogger("harvester_e2e.cleanup")
Action = Callable[[], Any]


@dataclass
class CleanupStack:
    keep: bool = False                       # --keep-on-failure: leave things for a person to look at
    _actions: list[tuple[str, Action]] = field(default_factory=list)
    _collectors: list[tuple[str, Action]] = field(default_factory=list)

    def defer(self, description: str, action: Action) -> None:
        self._actions.append((description, action))

    def delete_later(self, kube: "Kube", api_version: str, kind: str, name: str, namespace: str | None = None, *,
                     budget: "Budget", only_with_label: tuple[str, str] | None = None,
                     only_with_annotation: tuple[str, str] | None = None) -> None:
        """Undo by deleting the object and waiting until it is gone (finalizers done); NotFound is fine.
        `only_with_label=(key, value)`: leave it alone unless it carries that label (one this run made);
        `only_with_annotation`: the same with an annotation (what a controller made for this run's object,
        e.g. the VM a restore of this run made, which carries no labels)."""
        where = f"{namespace}/{name}" if namespace else name

        def delete_and_wait() -> None:
            for field_name, wanted in (("labels", only_with_label), ("annotations", only_with_annotation)):
                if wanted is None:
                    continue
                current = kube.find(api_version, kind, name, namespace)
                if current is None or (current["metadata"].get(field_name) or {}).get(wanted[0]) != wanted[1]:
                    return
            if kube.delete(api_version, kind, name, namespace):
                kube.wait_for_gone(api_version, kind, name, namespace=namespace, budget=budget)

        self.defer(f"delete {kind} {where}", delete_and_wait)

    def on_failure(self, description: str, collect: Action) -> None:
        """Collect evidence if the scenario fails, before the undos run."""
        self._collectors.append((description, collect))

    def run(self, *, failed: bool = False) -> list[str]:
        """Evidence first (only after a failure), then every undo, newest first; returns what failed.

        An interrupt (Ctrl-C, SIGTERM) arriving meanwhile does not cut the undos short: evidence collection
        stops, the undo it hit runs once more (it may not have finished), the others run, and the interrupt is
        raised again at the end."""
        failures: list[str] = []
        interrupt: KeyboardInterrupt | None = None
        collectors, self._collectors = list(self._collectors), []
        for description, collect in collectors if failed else ():
            try:
                collect()
                log.info("collected: %s", description)
            except KeyboardInterrupt as exc:
                interrupt = exc
                log.warning("interrupted while collecting %s: no more evidence; the cleanup still runs", description)
                break
            except Exception as exc:  # noqa: BLE001 - evidence must never replace the real failure
                log.error("collecting %s failed: %s", description, exc)
        if self.keep:
            for description, _ in reversed(self._actions):
                log.warning("kept for inspection (--keep-on-failure): %s", description)
            self._actions.clear()
        while self._actions:
            description, action = self._actions.pop()
            for attempt in (1, 2):
                try:
                    action()
                    log.info("cleaned up: %s", description)
                except KeyboardInterrupt as exc:
                    interrupt = interrupt or exc
                    if attempt == 1:
                        log.warning("interrupted during the cleanup (%s): running that undo again and the rest "
                                    "before stopping", description)
                        continue
                    log.error("cleanup failed: %s: interrupted twice", description)
                    failures.append(f"{description}: interrupted twice")
                except Exception as exc:  # noqa: BLE001 - one failed undo must not stop the rest
                    log.error("cleanup failed: %s: %s", description, exc)
                    failures.append(f"{description}: {exc}")
                break
        if interrupt is not None:
            raise interrupt
        return failures

    def __len__(self) -> int:
        return len(self._actions)
