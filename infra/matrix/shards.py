"""A matrix over several machines: plan the cells into shards, run one shard, merge the shards.

* plan: each cell's expected duration (the previous run's `matrix.json` where it has the cell, else the
  file's `expected_minutes`) and what it needs (nodes x vCPU x memory, against one runner's capacity:
  that many cells run side by side on a runner); cells are given to shards longest first, each to the
  shard that would finish earliest with it (LPT list scheduling), so shards end at about the same time.
* run: a shard is a list of cell ids (`--shard i/N` computes it the same way, or `--cells` takes the
  plan job's list), run like any matrix into its own directory.
* merge: every shard's cells, results, JUnit and summary become one; a cell the plan expected that no
  shard reported becomes a broken result naming it, so the release gate fails on the gap.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.matrix.cell import MatrixCell
from infra.matrix.spec import MatrixError, MatrixSpec

_SHARD = re.compile(r"^(?P<index>\d+)/(?P<total>\d+)$")


def history_key(parameters: dict[str, str]) -> str:
    """Cells are matched across runs by what they test, not by their id (ids move when axes change)."""
    return json.dumps(sorted((k, v) for k, v in parameters.items() if k != "backend"))


def load_history(path: Path | None) -> dict[str, float]:
    """Seconds per cell (by `history_key`) from a previous run's `matrix.json`; {} when there is none."""
    if path is None or not path.is_file():
        return {}
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MatrixError(f"--history {path}: not a matrix summary ({exc})") from None
    seconds: dict[str, float] = {}
    for cell in summary.get("cells") or []:
        if cell.get("state") in ("passed", "failed") and cell.get("seconds"):   # a cell that really ran
            seconds[history_key(cell.get("parameters") or {})] = float(cell["seconds"])
    return seconds


@dataclass(frozen=True)
class PlannedCell:
    cell: MatrixCell
    minutes: float
    from_history: bool


@dataclass
class Shard:
    index: int
    total: int
    slots: int                                  # cells side by side on one runner
    cells: list[PlannedCell] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.index}/{self.total}"

    def expected_minutes(self, extra: PlannedCell | None = None) -> float:
        """The shard's makespan: its cells, longest first, each on the slot that frees first."""
        durations = sorted((c.minutes for c in [*self.cells, *([extra] if extra else [])]), reverse=True)
        ends = [0.0] * self.slots
        for minutes in durations:
            slot = ends.index(min(ends))
            ends[slot] += minutes
        return max(ends)


def slots_per_runner(spec: MatrixSpec) -> int:
    """How many cells one runner holds at once: its capacity over a cell's needs, at most `parallel`."""
    needs, runner = spec.needs, spec.runner
    fits = [math.floor(runner.vcpus / (needs.nodes * needs.vcpus)) if needs.nodes * needs.vcpus else spec.parallel,
            math.floor(runner.memory_gib / (needs.nodes * needs.memory_gib)) if needs.nodes * needs.memory_gib
            else spec.parallel]
    slots = min(spec.parallel, *fits)
    if runner.max_cells:
        slots = min(slots, runner.max_cells)
    if slots < 1:
        raise MatrixError(f"a cell needs {needs.nodes} nodes x {needs.vcpus} vCPU x {needs.memory_gib:g} GiB, more "
                          f"than a runner has ({runner.vcpus} vCPU, {runner.memory_gib:g} GiB): raise "
                          "`runner` or lower `needs` in the matrix file")
    return slots


def plan(spec: MatrixSpec, cells: Sequence[MatrixCell], shards: int, history: dict[str, float]) -> list[Shard]:
    if shards < 1:
        raise MatrixError("--shards must be at least 1")
    slots = slots_per_runner(spec)
    planned = [PlannedCell(c, history[k] / 60.0 if (k := history_key(c.parameters)) in history else
                           c.expected_minutes or spec.expected_minutes, k in history) for c in cells]
    result = [Shard(i + 1, shards, slots) for i in range(shards)]
    # Longest first; ties by id so the same inputs always give the same plan (the run job may recompute it).
    for item in sorted(planned, key=lambda p: (-p.minutes, p.cell.id)):
        best = min(result, key=lambda s: (s.expected_minutes(item), s.expected_minutes(), s.index))
        best.cells.append(item)
    for shard in result:
        shard.cells.sort(key=lambda p: p.cell.id)
    return result


def parse_shard(text: str) -> tuple[int, int]:
    match = _SHARD.match(text.strip())
    if match is None or not 1 <= int(match["index"]) <= int(match["total"]):
        raise MatrixError(f"--shard {text!r}: write it as i/N with 1 <= i <= N, e.g. 2/3")
    return int(match["index"]), int(match["total"])


def plan_as_json(spec: MatrixSpec, shards: list[Shard]) -> dict[str, Any]:
    return {"matrix": spec.name, "shards": [{"shard": s.name, "index": s.index, "total": s.total,
                                             "cells": [p.cell.id for p in s.cells], "slots": s.slots,
                                             "expected_minutes": round(s.expected_minutes(), 1)} for s in shards],
            "cells": {p.cell.id: {"title": p.cell.title, "parameters": p.cell.parameters,
                                  "expected_minutes": round(p.minutes, 1), "from_history": p.from_history}
                      for s in shards for p in s.cells}}


def plan_as_github(shards: list[Shard]) -> str:
    """`matrix=...` for $GITHUB_OUTPUT: a strategy.matrix include list, one entry per non-empty shard."""
    include = [{"shard": s.name, "index": s.index, "cells": ",".join(p.cell.id for p in s.cells),
                "expected_minutes": round(s.expected_minutes(), 1)} for s in shards if s.cells]
    return "matrix=" + json.dumps({"include": include}, separators=(",", ":"))


def plan_as_text(spec: MatrixSpec, shards: list[Shard]) -> str:
    lines = [f"matrix {spec.name}: {sum(len(s.cells) for s in shards)} cells on {len(shards)} shard(s), "
             f"{shards[0].slots if shards else 0} cell(s) at a time per runner "
             f"({spec.runner.vcpus} vCPU, {spec.runner.memory_gib:g} GiB; a cell needs {spec.needs.nodes} x "
             f"{spec.needs.vcpus} vCPU x {spec.needs.memory_gib:g} GiB)"]
    for shard in shards:
        lines.append(f"shard {shard.name}: {len(shard.cells)} cells, expected {shard.expected_minutes():.0f} min")
        for item in shard.cells:
            source = "history" if item.from_history else "estimate"
            lines.append(f"  {item.cell.id}  {item.minutes:6.1f} min ({source})  {item.cell.title}")
    loads = [s.expected_minutes() for s in shards]
    if loads:
        lines.append(f"balance: longest shard {max(loads):.0f} min, shortest {min(loads):.0f} min")
    return "\n".join(lines)


def missing_cells(expected: Iterable[MatrixCell], shard_dirs: Iterable[Path]) -> list[MatrixCell]:
    """The planned cells no shard's `matrix.json` reports."""
    reported: set[str] = set()
    for directory in shard_dirs:
        summary = directory / "matrix.json"
        if not summary.is_file():
            continue
        try:
            reported |= {str(c["id"]) for c in json.loads(summary.read_text(encoding="utf-8")).get("cells") or []}
        except (OSError, ValueError):
            continue
    return [cell for cell in expected if cell.id not in reported]
