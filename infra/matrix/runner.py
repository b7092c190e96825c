"""Run matrix cells side by side, each as its own ``harvester-e2e run`` on its own cluster.

Each cell gets a directory (``<out>/cells/<id>/``: ``allure-results/``, ``junit.xml``, ``run.log``,
``artifacts/``), its own run id, and ``HARVESTER_MATRIX_CELL``; the cell's Harvester version and the
matrix's configuration overrides travel as ``harvester-e2e run`` options and ``HARVESTER_E2E_*``
variables, so no configuration holding secrets is ever written to disk. At most ``width`` cells run at
once; a cell that cannot run is recorded with the reason and the others go on.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from infra.config import ENV_PREFIX
from infra.matrix.cell import MatrixCell
from infra.matrix.merge import count_statuses
from infra.report.categories import classify_result, is_infrastructure
from infra.report.matrix_cell import CELL_ENV_VAR

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PYTEST_NO_TESTS = 5  # pytest's exit status when every test was deselected


@dataclass(frozen=True)
class CellPaths:
    root: Path

    @property
    def results(self) -> Path:
        return self.root / "allure-results"

    @property
    def junit(self) -> Path:
        return self.root / "junit.xml"

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"


@dataclass(frozen=True)
class RunSettings:
    """What every cell's ``harvester-e2e run`` gets besides the cell itself."""

    run_id_prefix: str
    base_config: Path | None = None
    config_overrides: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 3600.0
    pytest_args: Sequence[str] = ()
    terminate_grace_s: float = 30.0


@dataclass
class CellOutcome:
    """How a cell ended. ``state``: passed | failed | infrastructure | harness | interrupted.

    ``synthetic_message`` is set when the cell produced no usable results of its own: the matrix then
    writes one broken result with that message (worded for the categories file) in its place.
    """

    cell: MatrixCell
    state: str
    exit_code: int | None = None
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    reason: str = ""
    synthetic_message: str | None = None
    log_tail: str = ""
    started_at: float | None = None
    stopped_at: float | None = None


CellRunner = Callable[[MatrixCell, CellPaths, RunSettings, threading.Event], CellOutcome]


def cell_command(cell: MatrixCell, paths: CellPaths, settings: RunSettings) -> list[str]:
    command = [sys.executable, "-m", "infra.cli", "run", "--alluredir", str(paths.results)]
    if cell.backend:
        command += ["--backend", cell.backend]
    if cell.harvester_from:
        command += ["--harvester-version", cell.harvester_from]
    if settings.base_config is not None:
        command += ["--config", str(settings.base_config)]
    command += ["-p", "infra.matrix.selection", f"--junitxml={paths.junit}"]
    if cell.markers:
        command += ["-m", cell.markers]
    return command + list(settings.pytest_args)


def cell_environment(cell: MatrixCell, paths: CellPaths, settings: RunSettings,
                     base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env.update(config_override_variables(settings.config_overrides))
    env[f"{ENV_PREFIX}RUN_ID"] = f"{settings.run_id_prefix}-{cell.id}"
    env[f"{ENV_PREFIX}ARTIFACTS_DIR"] = str(paths.artifacts)
    if cell.harvester_to:            # the cell's upgrade target: the release its upgrade stories go to
        env[f"{ENV_PREFIX}UPGRADE__TARGET"] = cell.harvester_to
    env[CELL_ENV_VAR] = cell.to_json()
    env["PYTHONUNBUFFERED"] = "1"
    return env


def config_override_variables(overrides: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{simulated: {time_scale: 120}}`` -> ``{"HARVESTER_E2E_SIMULATED__TIME_SCALE": "120"}`` (the run
    configuration's own environment layer; values as JSON, which its YAML reader takes verbatim)."""
    variables: dict[str, str] = {}
    for key, value in overrides.items():
        name = f"{prefix}__{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            variables.update(config_override_variables(value, name))
        else:
            variables[f"{ENV_PREFIX}{name.upper()}"] = json.dumps(value)
    return variables


def run_cell_subprocess(cell: MatrixCell, paths: CellPaths, settings: RunSettings,
                        stop: threading.Event) -> CellOutcome:
    """The default cell runner: ``harvester-e2e run`` in its own process group, bounded by the cell budget."""
    if stop.is_set():
        return _not_started(cell)
    paths.root.mkdir(parents=True, exist_ok=True)
    started_wall, started = time.time(), time.monotonic()
    timed_out = interrupted = False
    with open(paths.log, "wb") as log:
        try:
            process = subprocess.Popen(cell_command(cell, paths, settings), cwd=PROJECT_ROOT,
                                       env=cell_environment(cell, paths, settings), stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as error:
            return CellOutcome(cell, "infrastructure", reason=f"cannot start harvester-e2e run: {error}",
                               synthetic_message=f"infrastructure: cell {cell.id} ({cell.title}) did not run: "
                                                 f"cannot start harvester-e2e run: {error}")
        deadline = started + settings.timeout_s
        while True:
            try:
                exit_code = process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stop.is_set() or time.monotonic() > deadline:
                    interrupted, timed_out = stop.is_set(), not stop.is_set()
                    exit_code = _terminate(process, settings.terminate_grace_s)
                    break
    outcome = judge_cell(cell, paths, exit_code, timed_out=timed_out, interrupted=interrupted,
                         timeout_s=settings.timeout_s)
    outcome.seconds, outcome.started_at, outcome.stopped_at = time.monotonic() - started, started_wall, time.time()
    return outcome


def _terminate(process: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM to the cell's process group (its pytest runs cleanup on it), SIGKILL after the grace period."""
    for sig, allowance in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            return process.wait(timeout=allowance)
        except subprocess.TimeoutExpired:
            continue
    return process.returncode if process.returncode is not None else -signal.SIGKILL


def judge_cell(cell: MatrixCell, paths: CellPaths, exit_code: int | None, *, timed_out: bool = False,
               interrupted: bool = False, timeout_s: float = 0.0) -> CellOutcome:
    """Turn a finished cell's exit status, results and log into a CellOutcome."""
    counts = count_statuses(paths.results)
    tail = log_tail(paths.log)
    who = f"cell {cell.id} ({cell.title})"
    outcome = CellOutcome(cell, "failed", exit_code=exit_code, counts=counts, log_tail=tail)
    if interrupted:
        outcome.state, outcome.reason = "interrupted", "the matrix run was interrupted"
        outcome.synthetic_message = (f"infrastructure: {who} was stopped before it finished: "
                                     "the matrix run was interrupted")
    elif timed_out:
        outcome.state = "infrastructure"
        outcome.reason = f"did not finish within {timeout_s / 60:g} min"
        outcome.synthetic_message = (f"infrastructure: {who} did not finish within its budget of "
                                     f"{timeout_s / 60:g} min (cell_timeout_min) and was stopped")
    elif exit_code == PYTEST_NO_TESTS:
        outcome.state = "harness"
        outcome.reason = "selected no scenarios"
        outcome.synthetic_message = (f"harness: {who} selected no scenarios (markers {cell.markers!r}, Examples "
                                     f"columns {cell.columns}): no story has an Examples row for this cell")
    elif exit_code not in (0, 1) or not counts:
        outcome.state = "infrastructure"
        outcome.reason = failure_reason(tail) or f"exit status {exit_code}"
        what = "produced no results" if exit_code in (0, 1) else f"did not run (exit status {exit_code})"
        outcome.synthetic_message = f"infrastructure: {who} {what}: {outcome.reason}"
    elif exit_code == 0:
        outcome.state = "passed"
    else:
        failures = [classify_result(r) for r in _results(paths.results) if r.get("status") in ("failed", "broken")]
        if failures and all(is_infrastructure(category) for category in failures):
            outcome.state, outcome.reason = "infrastructure", "every failure is an infrastructure problem"
    return outcome


def _results(results_dir: Path) -> list[dict[str, Any]]:
    results = []
    for path in results_dir.glob("*-result.json"):
        try:
            results.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return results


def _not_started(cell: MatrixCell) -> CellOutcome:
    return CellOutcome(cell, "interrupted", reason="not started: the matrix run was interrupted",
                       synthetic_message=f"infrastructure: cell {cell.id} ({cell.title}) was not started: "
                                         "the matrix run was interrupted")


def log_tail(path: Path, lines: int = 40, max_bytes: int = 64 * 1024) -> str:
    try:
        with open(path, "rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - max_bytes))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def failure_reason(tail: str) -> str:
    """The line of a cell's log that says why it could not run (config error, backend error), else its
    last line."""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    for marker in ("config error:", "BackendError", "error:", "Error:"):
        for line in reversed(lines):
            if marker in line:
                return line[:500]
    return lines[-1][:500] if lines else ""


# --- running many ----------------------------------------------------------------------------------

@dataclass
class _Board:
    """What the progress display shows (workers only add start times; the main thread does the rest)."""

    cells: list[MatrixCell]
    paths: dict[str, CellPaths]
    started: dict[str, float] = field(default_factory=dict)
    outcomes: dict[str, CellOutcome] = field(default_factory=dict)
    began: float = field(default_factory=time.monotonic)


def run_cells(cells: Sequence[MatrixCell], out: Path, settings: RunSettings, *, width: int,
              runner: CellRunner = run_cell_subprocess,
              console: Console | None = None) -> tuple[list[CellOutcome], bool]:
    """Run every cell, ``width`` at a time; returns the outcomes (in cell order) and whether it was interrupted.

    Ctrl-C (or SIGTERM, which the CLI turns into it) stops the running cells through their cleanup and
    starts no more; the cells that ran keep their results.
    """
    console = console or Console(stderr=True)
    board = _Board(list(cells), {cell.id: CellPaths(out / "cells" / cell.id) for cell in cells})
    stop = threading.Event()
    interrupted = False

    def guarded(cell: MatrixCell) -> CellOutcome:
        board.started.setdefault(cell.id, time.monotonic())
        try:
            return runner(cell, board.paths[cell.id], settings, stop)
        except Exception as error:  # one cell's crash must not take the others down
            return CellOutcome(cell, "harness", reason=f"{type(error).__name__}: {error}",
                               synthetic_message=f"harness: the matrix runner failed on cell {cell.id} "
                                                 f"({cell.title}): {type(error).__name__}: {error}")

    pool = ThreadPoolExecutor(max_workers=max(1, width), thread_name_prefix="matrix-cell")
    futures: dict[Future, MatrixCell] = {pool.submit(guarded, cell): cell for cell in cells}
    pending = set(futures)
    with Live(_render(board), console=console, refresh_per_second=2, transient=False) as live:
        while pending:
            try:
                done, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            except KeyboardInterrupt:
                interrupted = True
                stop.set()
                console.print("[yellow]interrupted: stopping running cells (their cleanup runs first)[/]")
                continue
            for future in done:
                outcome = future.result()
                board.outcomes[outcome.cell.id] = outcome
                live.console.print(_finished_line(outcome))
            live.update(_render(board))
        live.update(_render(board))
    console.print()
    pool.shutdown(wait=True)
    return [board.outcomes[cell.id] for cell in cells], interrupted


_STATE_STYLES = {"passed": "green", "failed": "red", "infrastructure": "magenta", "harness": "yellow",
                 "interrupted": "yellow", "running": "cyan", "queued": "dim"}


def _finished_line(outcome: CellOutcome) -> Text:
    style = _STATE_STYLES.get(outcome.state, "")
    counts = ", ".join(f"{n} {status}" for status, n in sorted(outcome.counts.items())) or "no results"
    line = Text.assemble((f"{outcome.cell.id} ", "bold"), (f"{outcome.state:<14}", style),
                         f" {outcome.seconds:6.1f}s  {outcome.cell.title}  [{counts}]")
    if outcome.reason and outcome.state != "passed":
        line.append(f"\n    {outcome.reason}", style="dim")
    return line


def _render(board: _Board) -> Group:
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    for column in ("cell", "state", "time", "results", "title"):
        table.add_column(column, no_wrap=column != "title")
    running = 0
    for cell in board.cells:
        outcome = board.outcomes.get(cell.id)
        if outcome is not None:
            state, seconds, counts = outcome.state, outcome.seconds, outcome.counts
        elif cell.id in board.started:
            running += 1
            state, seconds = "running", time.monotonic() - board.started[cell.id]
            counts = count_statuses(board.paths[cell.id].results)
        else:
            state, seconds, counts = "queued", 0.0, {}
        shown = " ".join(f"{n}{status[0]}" for status, n in sorted(counts.items())) or "-"
        table.add_row(cell.id, Text(state, style=_STATE_STYLES.get(state, "")),
                      f"{seconds:5.0f}s" if seconds else "", shown, cell.title)
    finished = len(board.outcomes)
    header = Text(f"matrix: {finished}/{len(board.cells)} cells finished, {running} running, "
                  f"{time.monotonic() - board.began:.0f}s", style="bold")
    return Group(header, table)
