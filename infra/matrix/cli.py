"""``harvester-e2e matrix``: expand a matrix, plan it into shards, run cells side by side, merge one report.

    harvester-e2e matrix [run] ci/matrix/nightly.yaml [--out DIR] [--parallel N] [--backend B] [--config FILE]
                         [--cells c01,c03 | --shard i/N [--history matrix.json]] [--markers EXPR]
                         [--timeout-min M] [--list] [--report DIR | --no-report] [-- pytest args...]
    harvester-e2e matrix plan ci/matrix/nightly.yaml --shards N [--format text|json|github] [--history FILE]
    harvester-e2e matrix merge SHARD_DIR... --matrix FILE [--plan plan.json] [--out DIR] [--report DIR]

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
    parser.add_argument("--shard", help="run only shard i of N (i/N), as `matrix plan` assigns it")
    parser.add_argument("--history", type=Path, help="a previous run's matrix.json: expected cell durations")
    parser.add_argument("--markers", help="override the file's pytest -m expression")
    parser.add_argument("--timeout-min", type=float, help="override the file's cell_timeout_min")
    parser.add_argument("--list", action="store_true", help="print the cells and exit")
    parser.add_argument("--report", type=Path, help="HTML report directory (default: <out>/allure-report)")
    parser.add_argument("--no-report", action="store_true", help="merge results but do not build HTML")
    return parser


def main(argv: list[str] | None = None, *, runner: CellRunner = run_cell_subprocess,
         console: Console | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["plan"]:
        return plan_main(argv[1:])
    if argv[:1] == ["merge"]:
        return merge_main(argv[1:], console=console)
    if argv[:1] == ["run"]:
        argv = argv[1:]
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
    if getattr(args, "shard", None):
        from infra.matrix.shards import load_history, parse_shard, plan

        index, total = parse_shard(args.shard)
        shard = plan(spec, cells, total, load_history(args.history))[index - 1]
        chosen = {p.cell.id for p in shard.cells}
        cells = [c for c in cells if c.id in chosen]
        if not cells:
            raise MatrixError(f"--shard {args.shard}: the plan gives this shard no cells")
    if args.cells:
        wanted = [name.strip() for name in args.cells.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {c.id for c in cells})
        if unknown:
            raise MatrixError(f"--cells: no cell {', '.join(unknown)} in {args.matrix} (see --list)")
        cells = [c for c in cells if c.id in wanted]
    if not cells:
        raise MatrixError(f"{args.matrix}: the matrix has no cells (every combination excluded?)")
    return cells


def plan_main(argv: list[str]) -> int:
    from infra.matrix.shards import load_history, plan, plan_as_github, plan_as_json, plan_as_text

    parser = argparse.ArgumentParser(prog="harvester-e2e matrix plan",
                                     description="Assign a matrix's cells to N shards, balanced by expected time.")
    parser.add_argument("matrix", type=Path)
    parser.add_argument("--shards", type=int, required=True)
    parser.add_argument("--format", choices=("text", "json", "github"), default="text")
    parser.add_argument("--history", type=Path, help="a previous run's matrix.json (default: none)")
    parser.add_argument("--markers", help="override the file's pytest -m expression")
    parser.add_argument("--backend", help="override every cell's backend")
    args = parser.parse_args(argv)
    try:
        spec = load_matrix(args.matrix)
        args.cells, args.shard = None, None
        shards = plan(spec, select_cells(spec, args), args.shards, load_history(args.history))
    except MatrixError as error:
        print(f"matrix error: {error}", file=sys.stderr)
        return 2
    if args.format == "json":
        import json

        print(json.dumps(plan_as_json(spec, shards), indent=2))
    elif args.format == "github":
        print(plan_as_github(shards))
    else:
        print(plan_as_text(spec, shards))
    return 0


def merge_main(argv: list[str], console: Console | None = None) -> int:
    """Merge shards' outputs into one: results, JUnit, matrix.json, the report; missing cells as failures."""
    import json

    from infra.matrix.shards import missing_cells

    parser = argparse.ArgumentParser(prog="harvester-e2e matrix merge",
                                     description="Merge matrix shards into one result, report and summary.")
    parser.add_argument("shards", type=Path, nargs="+", help="each shard's --out directory")
    parser.add_argument("--matrix", type=Path, required=True, help="the matrix file the shards ran")
    parser.add_argument("--plan", type=Path, help="the plan (matrix plan --format json): the cells expected")
    parser.add_argument("--out", type=Path, help="default: artifacts/matrix/<name>")
    parser.add_argument("--report", type=Path, help="HTML report directory (default: <out>/allure-report)")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    console = console or _console()
    try:
        spec = load_matrix(args.matrix)
        every = {c.id: c for c in expand(spec)}
        expected_ids = list(every)
        if args.plan is not None:
            planned = json.loads(args.plan.read_text(encoding="utf-8"))
            expected_ids = [cid for shard in planned["shards"] for cid in shard["cells"]]
        unknown = [cid for cid in expected_ids if cid not in every]
        if unknown:
            raise MatrixError(f"--plan: cells {', '.join(unknown)} are not in {args.matrix}")
    except (MatrixError, OSError, ValueError, KeyError) as error:
        console.print(f"[red]matrix error:[/] {error}", highlight=False)
        return 2
    out = (args.out or Path("artifacts") / "matrix" / spec.name).resolve()
    outcomes: list[dict[str, Any]] = []
    cell_dirs: dict[str, Path] = {}
    shard_of: dict[str, str] = {}
    for directory in args.shards:
        summary = directory / "matrix.json"
        if not summary.is_file():
            continue
        data = json.loads(summary.read_text(encoding="utf-8"))
        for cell in data.get("cells") or []:
            outcomes.append(cell)
            cell_dirs[cell["id"]] = directory / "cells" / cell["id"]
            shard_of[cell["id"]] = str(directory)
    merged = out / "allure-results"
    shutil.rmtree(merged, ignore_errors=True)
    merge_results([cell_dirs[o["id"]] / "allure-results" for o in outcomes], merged)
    missing = missing_cells([every[cid] for cid in expected_ids], args.shards)
    for cell in missing:
        synthesize_cell_failure(cell, merged, message=f"infrastructure: cell {cell.id} never reported: no shard "
                                f"produced its results (a shard killed or never started?); shards merged: "
                                f"{', '.join(str(d) for d in args.shards)}")
    for directory in args.shards:            # the report history of the previous run continues
        history = directory / "allure-results" / "history"
        if history.is_dir():
            shutil.copytree(history, merged / "history", dirs_exist_ok=True)
    write_environment_properties(merged, {"matrix": spec.name, "matrix.shards": str(len(args.shards)),
                                          "matrix.cells": str(len(expected_ids)),
                                          "matrix.missing": ",".join(c.id for c in missing) or "none"})
    write_executor_json(merged)
    write_categories_json(merged)
    merge_junit([(every[o["id"]], cell_dirs[o["id"]] / "junit.xml", None) for o in outcomes]
                + [(c, None, "the cell never reported: its shard produced no results") for c in missing],
                out / "junit.xml", spec.name)
    write_summary(out / "matrix.json", {"matrix": spec.name, "file": str(args.matrix), "shards": len(args.shards),
                                        "cells": sorted(outcomes, key=lambda o: o["id"]),
                                        "missing": [c.id for c in missing]})
    console.print(f"merged {len(outcomes)} cells from {len(args.shards)} shard(s) into {merged}"
                  + (f"; missing: {', '.join(c.id for c in missing)}" if missing else ""), highlight=False)
    if not args.no_report:
        _build_report(merged, (args.report or out / "allure-report").resolve(), spec, console)
    return 1 if missing or any(o.get("state") != "passed" for o in outcomes) else 0


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
