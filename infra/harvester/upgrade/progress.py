"""A terminal display of an upgrade under way: the phase, its budget, and each node's state.

Shown live (rich) when stdout is a terminal; otherwise phase changes go to the log only.
"""
from __future__ import annotations

import sys
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from infra.waits.budget import format_seconds

from .tracker import Observation, PhaseRecord


class LiveProgress:
    def __init__(self, upgrade_name: str, mode: str = "auto") -> None:
        self.enabled = mode == "on" or (mode == "auto" and sys.stdout.isatty())
        self.upgrade_name = upgrade_name
        self._live: Live | None = None

    def __enter__(self) -> "LiveProgress":
        if self.enabled:
            self._live = Live(Table(), console=Console(), refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)

    def update(self, observation: Observation, phases: list[PhaseRecord]) -> None:
        if self._live is None:
            return
        table = Table(title=f"upgrade {self.upgrade_name}: {observation.state or 'starting'}")
        table.add_column("phase")
        table.add_column("elapsed / budget")
        table.add_column("outcome")
        for record in phases:
            table.add_row(record.name, f"{format_seconds(record.seconds)} / {format_seconds(record.budget.seconds)}",
                          record.outcome)
        for node, state in observation.node_states.items():
            table.add_row(f"  {node}", observation.nodes_ready.get(node, "?"), state)
        self._live.update(table)
