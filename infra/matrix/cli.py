"""``harvester-e2e matrix MATRIX.yaml``: expand a matrix, run its cells side by side, merge one report.

    harvester-e2e matrix ci/matrix/nightly.yaml [--out DIR] [--parallel N] [--backend B] [--config FILE]
                         [--cells c01,c03] [--markers EXPR] [--timeout-min M] [--list]
                         [--report DIR | --no-report] [-- pytest args...]

Writes into ``--out`` (default ``artifacts/matrix/<name>``): ``cells/<id>/`` per cell (its own Allure
results, ``junit.xml``, ``run.log``, artifacts), ``allure-results/`` (all cells merged, every result
keeping its cell's parameters), ``junit.xml`` (merged), ``matrix.json`` (what ran, how long, how each cell
ended) and, unless ``--no-report``, the HTML report (``--report``, default ``<out>/allure-report``; keep
that directory between runs and its ``history/`` carries the trends forward).

Exit status: 0 when every cell ran and passed, 1 otherwise, 2 for a wrong matrix or configuration,
130 when interrupted. Whether that may ship is the release gate's call (``harvester-e2e gate``).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from infra.config import ConfigError, load_config
from infra.matrix.cell import MatrixCell
from infra.matrix.merge import merge_junit, merge_results, synthesize_cell_failure, write_summary
from infra.matrix.runner import CellOutcome, CellRunner, RunSettings, run_cell_subprocess, run_cells
from infra.matrix.spec import MatrixError, MatrixSpec, expand, load_matrix
from infra.report.run_files import write_categories_json, write_environment_properties, write_executor_json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harvester-e2e matrix", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("matrix", type=Path, help="matrix file, e.g. ci/matrix/nightly.yaml")
    parser.add_argument("--out", type=Path, help="output directory (default: artifacts/matrix/<name>)")
    parser.add_argument("--parallel", type=int, help="cells at a time (default: the file's `parallel`)")
    parser.add_argument("--backend", help="override every cell's backend: simulated | libvirt | existing")
    parser.add_argument("--config", type=Path, help="base run configuration for every cell (lab settings)")
    parser.add_argument("--cells", help="run only these cell ids, comma-separated (see --list)")
    parser.add_argument("--markers", help="override the file's pytest -m expression")
    parser.add_argument("--timeout-min", type=float, help="override the file's cell_timeout_min")
    parser.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument("--report", type=Path, help="HTML report directory (default: <out>/allure-report)")
    parser.add_argument("--no-report", action="store_true", help="merge results but do not build HTML")
    return parser


def main(argv: list[str] | None = None, *, runner: CellRunner = run_cell_subprocess,
         console: Console | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = argv[argv.index("--") + 1:] if "--" in argv else []
    args = _parser().parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    console = console or _console()
    try:
        spec = load_matrix(args.matrix)
        cells = select_cells(spec, args)
    except MatrixError as error:
        console.print(f"[red]matrix error:[/] {error}", markup=True, highlight=False)
        return 2
    if args.list:
        _print_cells(cells, Console())
        return 0
    if args.parallel is not None and args.parallel < 1:
        console.print("[red]--parallel must be at least 1[/]")
        return 2
    backends = {cell.backend for cell in cells}
    for backend in sorted(b for b in backends if b):
        try:  # a wrong base configuration would fail every cell: say so once, before starting any
            load_config(args.config, cli={"backend": backend})
        except ConfigError as error:
            console.print(f"[red]config error[/] (backend {backend}): {error}", highlight=False)
            return 2

    out = (args.out or Path("artifacts") / "matrix" / spec.name).resolve()
    for cell in cells:
        shutil.rmtree(out / "cells" / cell.id, ignore_errors=True)
    width = args.parallel or spec.parallel
    settings = RunSettings(
        run_id_prefix=f"{spec.name}-{time.strftime('%m%d%H%M%S')}",
        base_config=args.config.resolve() if args.config else None,
        config_overrides=spec.config,
        timeout_s=(args.timeout_min or spec.cell_timeout_min) * 60.0,
        pytest_args=pytest_args,
    )
    console.print(f"matrix [bold]{spec.name}[/]: {len(cells)} cells, {width} at a time -> {out}", highlight=False)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt) if _in_main_thread() else None
    began, wall_start = time.monotonic(), dt.datetime.now(dt.timezone.utc)
    try:
        outcomes, interrupted = run_cells(cells, out, settings, width=width, runner=runner, console=console)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    wall = time.monotonic() - began
    merged = finish(spec, args.matrix, outcomes, out, wall_seconds=wall, started=wall_start, width=width)
    _print_summary(outcomes, wall, console)
    console.print(f"merged Allure results: {merged}", highlight=False)
    console.print(f"merged JUnit: {out / 'junit.xml'}", highlight=False)
    if not args.no_report:
        _build_report(merged, (args.report or out / "allure-report").resolve(), spec, console)
    if interrupted:
        return 130
    return 0 if all(o.state == "passed" for o in outcomes) else 1


def select_cells(spec: MatrixSpec, args: argparse.Namespace) -> list[MatrixCell]:
    cells = expand(spec)
    if args.backend or args.markers:
        cells = [dataclasses.replace(c, markers=args.markers or c.markers,
                                     parameters={**c.parameters, **({"backend": args.backend} if args.backend else {})})
                 for c in cells]
    if args.cells:
        wanted = [name.strip() for name in args.cells.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {c.id for c in cells})
        if unknown:
            raise MatrixError(f"--cells: no cell {', '.join(unknown)} in {args.matrix} (see --list)")
        cells = [c for c in cells if c.id in wanted]
    if not cells:
        raise MatrixError(f"{args.matrix}: the matrix has no cells (every combination excluded?)")
    return cells


def finish(spec: MatrixSpec, matrix_file: Path, outcomes: list[CellOutcome], out: Path, *, wall_seconds: float,
           started: dt.datetime, width: int) -> Path:
    """Merge the cells into ``<out>/allure-results`` and ``<out>/junit.xml``; write ``<out>/matrix.json``."""
    merged = out / "allure-results"
    shutil.rmtree(merged, ignore_errors=True)
    merge_results([out / "cells" / o.cell.id / "allure-results" for o in outcomes], merged)
    for outcome in outcomes:
        if outcome.synthetic_message:
            synthesize_cell_failure(outcome.cell, merged, message=outcome.synthetic_message,
                                    log_tail=outcome.log_tail, started=outcome.started_at,
                                    stopped=outcome.stopped_at)
    facts: dict[str, Any] = {"matrix": spec.name, "matrix.file": str(matrix_file), "matrix.cells": len(outcomes),
                             "matrix.parallel": width, "matrix.wall_seconds": f"{wall_seconds:.1f}"}
    facts.update({f"cell.{o.cell.id}": f"{o.cell.title} [{o.cell.backend}]: {o.state}" for o in outcomes})
    write_environment_properties(merged, {k: str(v) for k, v in facts.items()})
    write_executor_json(merged)
    write_categories_json(merged)
    merge_junit([(o.cell, out / "cells" / o.cell.id / "junit.xml", o.synthetic_message) for o in outcomes],
                out / "junit.xml", spec.name)
    write_summary(out / "matrix.json", {
        "matrix": spec.name, "file": str(matrix_file), "started": started.isoformat(timespec="seconds"),
        "wall_seconds": round(wall_seconds, 1), "parallel": width,
        "cells": [{"id": o.cell.id, "title": o.cell.title, "parameters": o.cell.parameters, "state": o.state,
                   "exit_code": o.exit_code, "seconds": round(o.seconds, 1), "counts": o.counts, "reason": o.reason}
                  for o in outcomes],
    })
    return merged


def _build_report(merged: Path, report_dir: Path, spec: MatrixSpec, console: Console) -> None:
    from infra.report.html import ReportGenerationFailed, ReportToolMissing, generate_report

    try:
        index = generate_report(merged, report_dir, report_name=f"Harvester e2e matrix: {spec.name}")
    except (ReportToolMissing, ReportGenerationFailed, ValueError) as error:
        console.print(f"[yellow]HTML report not built:[/] {error}", highlight=False)
        return
    console.print(f"Allure report: {index}", highlight=False)


def _print_cells(cells: list[MatrixCell], console: Console) -> None:
    names = sorted({name for cell in cells for name in cell.parameters})
    table = Table("cell", *names, box=None, pad_edge=False, header_style="bold")
    for cell in cells:
        table.add_row(cell.id, *(cell.parameters.get(name, "") for name in names))
    console.print(table)
    for markers in sorted({cell.markers or "(every scenario)" for cell in cells}):
        console.print(f"markers: {markers}", highlight=False)
    console.print(f"{len(cells)} cells")


def _print_summary(outcomes: list[CellOutcome], wall: float, console: Console) -> None:
    states: dict[str, int] = {}
    for outcome in outcomes:
        states[outcome.state] = states.get(outcome.state, 0) + 1
    results: dict[str, int] = {}
    for outcome in outcomes:
        for status, n in outcome.counts.items():
            results[status] = results.get(status, 0) + n
    console.print(
        f"matrix finished in {wall:.1f}s: cells " + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        + "; results " + (", ".join(f"{n} {s}" for s, n in sorted(results.items())) or "none"), highlight=False)


def _console() -> Console:
    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=160)  # CI logs: no wrapping at 80


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


if __name__ == "__main__":
    sys.exit(main())
