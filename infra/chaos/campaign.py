"""The chaos runs: per story, a fault-free run, then N runs each under one fault class at seeded moments.

A false failure is a scenario whose verdict differs from the fault-free run's; a flake is a scenario whose
verdict differs between runs under the same fault class; leftovers are what `runs.check_leftovers` finds.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from infra.backends.simulator_client import SimulatorClient
from infra.lab import Lab

from .faults import FaultClass, Injection, Injector, fault_state_once_back, fired_count, plan, schedule
from .runs import (DEFAULT_VERSION, LAB_TIME_SCALE, RunningStory, RunOutcome, Story, differences, new_run_id,
                   run_story)

Progress = Callable[[str], None]


@dataclass
class ChaosRun:
    story: str
    index: int                          # 0: the fault-free run
    fault: str | None                   # None: the fault-free run
    outcome: RunOutcome
    injections: list[Injection] = field(default_factory=list)
    fired: int = 0                      # how often the simulator says the injected faults acted
    differs: dict[str, tuple[str, str]] = field(default_factory=dict)   # scenario -> (fault-free, this run)
    # Differences of a run that ended before any of its faults was injected: not false failures (there was
    # no fault), but the fault-free verdicts did not hold either; reported on their own.
    unfaulted: dict[str, tuple[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        outcome = self.outcome
        return {"story": self.story, "index": self.index, "fault": self.fault, "run_id": outcome.run_id,
                "exit_code": outcome.exit_code, "wall_s": round(outcome.wall_s, 1),
                "verdict_counts": _counts(outcome.verdicts), "false_failures": {
                    name: {"fault_free": want, "this_run": got} for name, (want, got) in self.differs.items()},
                "differences_without_a_fault": {
                    name: {"fault_free": want, "this_run": got} for name, (want, got) in self.unfaulted.items()},
                "injections": [i.as_dict() for i in self.injections], "fired": self.fired,
                "leftovers": outcome.leftovers.as_dict(), "directory": str(outcome.directory),
                **({"output_tail": outcome.output_tail}
                   if self.differs or self.unfaulted or outcome.leftovers.count else {})}


def _counts(verdicts: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    return dict(sorted(counts.items()))


@dataclass
class StoryResult:
    story: str
    baseline: ChaosRun
    runs: list[ChaosRun] = field(default_factory=list)

    def flakes(self) -> dict[str, dict[str, list[str]]]:
        """Fault class -> scenario -> the distinct verdicts it had under that class, where there were several."""
        found: dict[str, dict[str, list[str]]] = {}
        for fault in sorted({r.fault for r in self.runs if r.fault}):
            of_class = [r for r in self.runs if r.fault == fault and not r.unfaulted]
            for name in self.baseline.outcome.verdicts:
                seen = sorted({r.outcome.verdicts.get(name, "missing") for r in of_class})
                if len(seen) > 1:
                    found.setdefault(fault, {})[name] = seen
        return found


def _during(injections: list[Injection], record: dict[str, Any]) -> Callable[[Lab, RunningStory], Callable[[], dict]]:
    """Start injecting once the run has started (through the lab's simulator token, never the run's credentials);
    the returned function stops the injector and reads what fired."""
    def start(lab: Lab, running: RunningStory) -> Callable[[], dict]:
        endpoint = SimulatorClient(lab.simulator.kubeconfig)
        before = endpoint.fault_state()["fired"]
        injector = Injector(endpoint, injections)
        injector.start(running.started)

        def finish() -> dict:
            injector.stop()
            record["fired_before"], record["fired_after"] = before, fault_state_once_back(endpoint)["fired"]
            return record
        return finish
    return start


def run_campaign(stories: list[Story], runs: int, faults: list[FaultClass], *, seed: int, out: Path,
                 version: str = DEFAULT_VERSION, keyword: str | None = None, time_scale: float = LAB_TIME_SCALE,
                 progress: Progress = lambda line: None) -> list[StoryResult]:
    rng = random.Random(seed)
    results = []
    for story in stories:
        started = time.monotonic()
        base = run_story(story, new_run_id(f"{story.name}-base", 0), out / "runs" / f"{story.name}-00-fault-free",
                         version=version, keyword=keyword, time_scale=time_scale)
        baseline = ChaosRun(story.name, 0, None, base)
        progress(f"{story.name}: fault-free run: {_counts(base.verdicts)} in {base.wall_s:.0f}s; "
                 f"leftovers {base.leftovers.count}")
        result = StoryResult(story.name, baseline)
        for index, fault in enumerate(schedule(rng, faults, runs), start=1):
            injections = plan(fault, rng, base.wall_s)
            record: dict[str, Any] = {}
            outcome = run_story(story, new_run_id(story.name, index),
                                out / "runs" / f"{story.name}-{index:02d}-{fault.name}", version=version,
                                keyword=keyword, time_scale=time_scale, during=_during(injections, record))
            fired = fired_count(fault, record.get("fired_before", {}), record.get("fired_after", {})) + \
                sum(int((i.applied or {}).get("droppedWatches", 0)) for i in injections)     # watches it closed
            changed = differences(base.verdicts, outcome.verdicts)
            done = sum(1 for i in injections if i.done_at_s is not None and i.error is None)
            run = ChaosRun(story.name, index, fault.name, outcome, injections, fired,
                           changed if done else {}, {} if done else changed)
            result.runs.append(run)
            verdicts = (f"false failures {len(run.differs)}" if run.differs else
                        f"ended before any fault, {len(run.unfaulted)} verdicts differ" if run.unfaulted else
                        "same verdicts")
            progress(f"{story.name} #{index} {fault.name}: {done}/{len(injections)} injected, fired {fired}; "
                     f"{verdicts}; leftovers {outcome.leftovers.count}; {outcome.wall_s:.0f}s")
        progress(f"{story.name}: {runs} fault runs in {time.monotonic() - started:.0f}s")
        results.append(result)
    return results
