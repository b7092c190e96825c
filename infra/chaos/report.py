"""The chaos and interrupt figures: rich tables on the terminal, `summary.json` beside the runs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .campaign import StoryResult
from .faults import FAULT_CLASSES, FaultClass
from .interrupts import InterruptResult


def summary(results: list[StoryResult], interrupts: list[InterruptResult], *, seed: int, runs: int,
            faults: list[FaultClass], version: str, keyword: str | None, wall_s: dict[str, float]) -> dict[str, Any]:
    per_class: dict[str, dict[str, Any]] = {}
    for fault in FAULT_CLASSES:                       # every class named, also one this campaign did not use
        of_class = [r for result in results for r in result.runs if r.fault == fault.name]
        per_class[fault.name] = {
            "title": fault.title, "selected": fault in faults, "runs": len(of_class),
            "injections": sum(1 for r in of_class for i in r.injections if i.done_at_s is not None and not i.error),
            "injection_errors": sum(1 for r in of_class for i in r.injections if i.error),
            "fired": sum(r.fired for r in of_class),
            "runs_with_false_failures": sum(1 for r in of_class if r.differs),
            "false_failures": sum(len(r.differs) for r in of_class),
            "flakes": sum(len(result.flakes().get(fault.name, {})) for result in results),
            "leftovers": sum(r.outcome.leftovers.count for r in of_class)}
    stories: dict[str, dict[str, Any]] = {}
    for result in results:
        base = result.baseline
        stories[result.story] = {
            "fault_free": base.as_dict(), "runs": len(result.runs),
            "runs_with_false_failures": sum(1 for r in result.runs if r.differs),
            "false_failures": sum(len(r.differs) for r in result.runs),
            "runs_ended_before_a_fault_with_other_verdicts": sum(1 for r in result.runs if r.unfaulted),
            "flakes": result.flakes(),
            "leftovers": base.outcome.leftovers.count + sum(r.outcome.leftovers.count for r in result.runs),
            "fault_runs": [r.as_dict() for r in result.runs]}
    totals = {
        "runs": sum(len(r.runs) for r in results), "fault_free_runs": len(results),
        "injections": sum(c["injections"] for c in per_class.values()),
        "false_failures": sum(s["false_failures"] for s in stories.values()),
        "runs_with_false_failures": sum(s["runs_with_false_failures"] for s in stories.values()),
        "runs_ended_before_a_fault_with_other_verdicts": sum(
            s["runs_ended_before_a_fault_with_other_verdicts"] for s in stories.values()),
        "flakes": sum(c["flakes"] for c in per_class.values()),
        "leftovers": sum(s["leftovers"] for s in stories.values()),
        "interrupts": len(interrupts), "interrupts_signalled": sum(1 for i in interrupts if i.signalled),
        "interrupt_leftovers": sum(i.leftovers.count for i in interrupts)}
    return {"seed": seed, "runs_per_story": runs, "version": version, "keyword": keyword,
            "fault_classes": [f.name for f in faults], "wall_s": {k: round(v, 1) for k, v in wall_s.items()},
            "totals": totals, "per_fault_class": per_class, "stories": stories,
            "interrupts": [i.as_dict() for i in interrupts]}


def write(data: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "summary.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def _ok(count: int) -> str:
    return f"[green]{count}[/green]" if count == 0 else f"[bold red]{count}[/bold red]"


def render(data: dict[str, Any], console: Console | None = None) -> None:
    console = console or Console(width=160)
    totals = data["totals"]
    if data["stories"]:
        table = Table(title=f"Chaos runs (seed {data['seed']}, {data['runs_per_story']} fault runs per story, "
                            f"lab at {data['version']})")
        for column in ("story", "fault-free verdicts", "fault runs", "false failures (runs)", "flakes", "leftovers",
                       "other verdicts before any fault (runs)", "wall"):
            table.add_column(column, justify="left" if column in ("story", "fault-free verdicts") else "right")
        for name, story in data["stories"].items():
            base = story["fault_free"]
            verdicts = ", ".join(f"{n} {v}" for v, n in base["verdict_counts"].items())
            table.add_row(name, verdicts, str(story["runs"]),
                          f"{_ok(story['false_failures'])} ({story['runs_with_false_failures']})",
                          _ok(sum(len(v) for v in story["flakes"].values())), _ok(story["leftovers"]),
                          _ok(story["runs_ended_before_a_fault_with_other_verdicts"]),
                          f"{data['wall_s'].get(name, 0):.0f}s")
        console.print(table)
        classes = Table(title="Faults by class (injected: calls the simulator accepted; fired: requests answered with "
                              "the fault, watches closed, SSH commands cut off, simulated steps slowed)")
        for column in ("fault class", "what", "runs", "injected", "fired", "false failures", "flakes", "leftovers"):
            classes.add_column(column, justify="left" if column in ("fault class", "what") else "right")
        for name, row in data["per_fault_class"].items():
            fired = str(row["fired"])
            classes.add_row(name, row["title"] + ("" if row["selected"] else " (not selected)"), str(row["runs"]),
                            str(row["injections"]) + (f" ({row['injection_errors']} refused)"
                                                      if row["injection_errors"] else ""),
                            fired, _ok(row["false_failures"]), _ok(row["flakes"]), _ok(row["leftovers"]))
        console.print(classes)
        for name, story in data["stories"].items():
            for run in story["fault_runs"]:
                for scenario, verdicts in run["false_failures"].items():
                    console.print(f"[red]false failure[/red] {name} #{run['index']} ({run['fault']}): "
                                  f"{escape(scenario)}: fault-free {verdicts['fault_free']}, here "
                                  f"{verdicts['this_run']} ({escape(run['directory'])}/output.log)")
                if run["differences_without_a_fault"]:
                    console.print(f"[red]other verdicts before any fault[/red] {name} #{run['index']}: "
                                  f"{len(run['differences_without_a_fault'])} scenarios; the run ended first "
                                  f"({escape(run['directory'])}/output.log)")
                if run["leftovers"]["count"]:
                    console.print(f"[red]leftovers[/red] {name} #{run['index']}: {escape(str(run['leftovers']))}")
    if data["interrupts"]:
        table = Table(title="Interrupts")
        for column in ("#", "story", "signal", "backend", "aimed at", "landed in", "exit", "leftovers", "wall"):
            table.add_column(column, justify="right" if column in ("#", "exit", "leftovers", "wall") else "left")
        for row in data["interrupts"]:
            aimed = row["moment"] + (f" ({row['upgrade_phase']})" if row["upgrade_phase"] else "")
            landed = row["moment_seen"] + (f" at {row['signal_at_s']:.1f}s" if row["signal_at_s"] is not None else "")
            table.add_row(str(row["index"]), row["story"], row["signal"], row["backend"], aimed, landed,
                          str(row["exit_code"]), _ok(row["leftovers"]["count"]), f"{row['wall_s']:.0f}s")
        console.print(table)
        for row in data["interrupts"]:
            if row["leftovers"]["count"]:
                console.print(f"[red]leftovers[/red] interrupt #{row['index']}: {escape(str(row['leftovers']))}")
    console.print(
        f"runs {totals['runs']} (+{totals['fault_free_runs']} fault-free), faults injected {totals['injections']}, "
        f"false failures {totals['false_failures']} in {totals['runs_with_false_failures']} runs (other verdicts "
        f"in runs that ended before any fault: {totals['runs_ended_before_a_fault_with_other_verdicts']}), flakes "
        f"{totals['flakes']}, leftovers {totals['leftovers']}; interrupts {totals['interrupts_signalled']}/"
        f"{totals['interrupts']} signalled, leftovers {totals['interrupt_leftovers']}; wall "
        + ", ".join(f"{k} {v:.0f}s" for k, v in data["wall_s"].items()))
