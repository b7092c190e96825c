"""Runs interrupted with SIGINT or SIGTERM at a seeded moment of a named phase, then audited.

Each interrupt picks (seeded) a target moment, a story that has it, a signal and a delay into it:

- provisioning: the run's start-up and its first set-up; on the simulated backend (half of these, seeded)
  that is where the run starts its own simulated clusters, so their processes must not survive it;
- injection: the precheck story right after it injected its fake Machine;
- mid-upgrade: the upgrade story in one of its phases (LogReady .. NodesUpgraded);
- cleanup: any story as the first scenario that ran gets its verdict, when its cleanup stack starts undoing.

The signal goes where a person's or a CI's would: SIGINT to the CLI's process group (Ctrl-C in a terminal),
SIGTERM to the CLI alone (a CI cancel). The moment it landed in is named from the run's live log (the
phase markers below), with the line just before it. Afterwards: the leak audit for the run id against the
lab (on the simulated backend the cluster was the run's own process: its processes are what is checked),
processes that carry the run id, and files left in the run's TMPDIR. `harvester-e2e cleanup --run-id` is
not run: neither a lab nor the simulated backend makes libvirt objects outside the run's own process.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from infra.lab import Lab
from infra.lab import running as running_lab
from infra.waits.budget import Budget

from .runs import (DEFAULT_VERSION, LAB_START, LAB_TIME_SCALE, STORIES, Leftovers, RunningStory, Story, Workspace, check_leftovers,
                   kill_run, new_run_id, read_verdicts, run_command, run_environment, start_run)

MOMENTS = ("provisioning", "injection", "mid-upgrade", "cleanup")
STORIES_WITH = {"provisioning": ("precheck", "ippool", "upgrade"), "injection": ("precheck",),
                "mid-upgrade": ("upgrade",), "cleanup": ("precheck", "ippool", "upgrade")}
UPGRADE_PHASES = ("LogReady", "ImageReady", "RepoReady", "NodesPrepared", "SystemServicesUpgraded", "NodesUpgraded")
TARGET_BUDGET = Budget("an interrupted run reaches the moment to interrupt", 300)
EXIT_BUDGET = Budget("an interrupted run exits (its cleanup included)", 180)

RESULT = re.compile(r"(PASSED|FAILED|XFAIL|XPASS|ERROR)\s+\[\s*\d+%\]\s*$")
# (pattern, phase) in the run's output: the latest match names the phase the run is in.
PHASE_MARKERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^steps/\S+::\S+"), "set-up (provisioning)"),
    (re.compile(r"live log setup"), "set-up (provisioning)"),
    (re.compile(r"live log call"), "scenario steps"),
    (re.compile(r"injected fake Machine|now names missing Machine"), "injection"),
    (re.compile(r"upgrade \S+: phase (\w+)"), "mid-upgrade ({0})"),
    (re.compile(r"live log teardown|cleaned up: |collected: |cleanup failed: "), "cleanup"),
    (RESULT, "cleanup"),                     # a scenario that ran has its verdict: its teardown runs now
    (re.compile(r"SKIPPED\s+\[\s*\d+%\]\s*$"), "between scenarios"),
    (re.compile(r"short test summary|generated xml file|^=+ .*(passed|failed|error|skipped)"), "after the scenarios"),
)


@dataclass(frozen=True)
class InterruptPlan:
    index: int
    moment: str                     # one of MOMENTS
    story: str
    signal: str                     # SIGINT | SIGTERM
    backend: str                    # lab | simulated
    delay_s: float                  # after the moment's marker (provisioning: after the start)
    phase: str | None = None        # mid-upgrade: the upgrade phase to interrupt


def plan_interrupts(rng: random.Random, count: int, stories: list[str]) -> list[InterruptPlan]:
    moments = [m for m in MOMENTS if any(s in stories for s in STORIES_WITH[m])]
    if not moments:
        return []
    chosen = [moments[i % len(moments)] for i in range(count)]
    rng.shuffle(chosen)
    plans = []
    for index, moment in enumerate(chosen, start=1):
        story = rng.choice([s for s in STORIES_WITH[moment] if s in stories])
        sig = rng.choice(("SIGINT", "SIGTERM"))
        backend = rng.choice(("lab", "simulated")) if moment == "provisioning" else "lab"
        phase = rng.choice(UPGRADE_PHASES) if moment == "mid-upgrade" else None
        delay = {"provisioning": rng.uniform(0.5, 5.0), "injection": rng.uniform(0.0, 0.03),
                 "mid-upgrade": rng.uniform(0.0, 0.5), "cleanup": rng.uniform(0.0, 0.05)}[moment]
        plans.append(InterruptPlan(index, moment, story, sig, backend, round(delay, 3), phase))
    return plans


class PhaseTracker:
    """The phase a run is in, from its output as it comes; `reached` is set once the target marker showed."""

    def __init__(self, target: Callable[[str], bool]) -> None:
        self.phase = "startup"
        self.last_line = ""
        self.target = target
        self.reached = threading.Event()
        self._lock = threading.Lock()

    def feed(self, text: str, complete: bool) -> None:
        with self._lock:
            for pattern, phase in PHASE_MARKERS:
                match = pattern.search(text)
                if match:
                    self.phase = phase.format(*match.groups())
            if complete and text.strip():
                self.last_line = text.strip()[:240]
            if complete and self.target(text):
                self.reached.set()

    def snapshot(self) -> tuple[str, str]:
        with self._lock:
            return self.phase, self.last_line


def _target(plan: InterruptPlan) -> Callable[[str], bool]:
    if plan.moment == "provisioning":
        return lambda line: False                        # timed from the start instead
    if plan.moment == "injection":
        return lambda line: bool(re.search(r"injected fake Machine|now names missing Machine", line))
    if plan.moment == "mid-upgrade":
        return lambda line: bool(re.search(rf"upgrade \S+: phase {plan.phase}\b", line))
    return lambda line: bool(RESULT.search(line))     # the verdict of a scenario that ran: its cleanup starts


@dataclass
class InterruptResult:
    plan: InterruptPlan
    run_id: str
    signalled: bool
    moment_seen: str                 # the phase the run was in when the signal landed
    line_before: str
    signal_at_s: float | None
    exit_code: int | None
    wall_s: float
    leftovers: Leftovers
    verdicts: dict[str, int] = field(default_factory=dict)
    directory: Path = Path(".")

    def as_dict(self) -> dict[str, Any]:
        p = self.plan
        return {"index": p.index, "moment": p.moment, "story": p.story, "signal": p.signal, "backend": p.backend,
                "upgrade_phase": p.phase, "delay_s": p.delay_s, "run_id": self.run_id, "signalled": self.signalled,
                "moment_seen": self.moment_seen, "line_before": self.line_before, "signal_at_s": self.signal_at_s,
                "exit_code": self.exit_code, "wall_s": round(self.wall_s, 1), "verdict_counts": self.verdicts,
                "leftovers": self.leftovers.as_dict(), "directory": str(self.directory)}


def _signal(running: RunningStory, name: str) -> None:
    if name == "SIGINT":
        os.killpg(running.process.pid, signal.SIGINT)     # Ctrl-C: the terminal signals the foreground group
    else:
        running.process.send_signal(signal.SIGTERM)       # a CI cancel: the CLI process alone


MISSED = ("(the run ended before the moment)", "")


def _interrupt(plan: InterruptPlan, running: RunningStory,
               tracker: PhaseTracker) -> tuple[float | None, tuple[str, str]]:
    """Wait for the plan's moment (bounded), then its delay, then signal: (seconds after the start, or None if
    the run ended first; the phase and the last line seen as the signal went)."""
    if plan.moment != "provisioning":
        deadline = TARGET_BUDGET.start()
        while not tracker.reached.wait(0.2):              # bounded by the budget and by the run's end
            if running.process.poll() is not None or deadline.expired():
                return None, MISSED
    # The delay into the moment (provisioning: from the start); an exit meanwhile means it was missed.
    start = running.started if plan.moment == "provisioning" else time.monotonic()
    if _exited_before(running, start + plan.delay_s):
        return None, MISSED
    seen = tracker.snapshot()
    _signal(running, plan.signal)
    return round(time.monotonic() - running.started, 2), seen


def _exited_before(running: RunningStory, until: float) -> bool:
    try:
        running.process.wait(max(0.0, until - time.monotonic()))
        return True
    except subprocess.TimeoutExpired:                   # still running at the moment: interrupt it
        return False


def run_interrupt(plan: InterruptPlan, out: Path, *, version: str = DEFAULT_VERSION,
                  keyword: str | None = None, time_scale: float = LAB_TIME_SCALE) -> InterruptResult:
    story: Story = STORIES[plan.story]
    run_id = new_run_id(f"int-{plan.story}", plan.index)
    directory = out / "interrupts" / f"{plan.index:02d}-{plan.moment}-{plan.story}-{plan.signal}"
    workspace = Workspace.make(directory)
    tracker = PhaseTracker(_target(plan))
    try:
        if plan.backend == "simulated":
            return _run(plan, run_id, directory, workspace, tracker, None, story, version, keyword)
        with running_lab(workspace.lab_dir, version, budget=LAB_START, time_scale=time_scale) as lab:
            return _run(plan, run_id, directory, workspace, tracker, lab, story, version, keyword)
    except BaseException:
        kill_run(run_id)          # the driver was interrupted (or failed): the run must not outlive its lab
        raise
    finally:
        workspace.remove_temporary()


def _run(plan: InterruptPlan, run_id: str, directory: Path, workspace: Workspace, tracker: PhaseTracker,
         lab: Lab | None, story: Story, version: str, keyword: str | None) -> InterruptResult:
    if lab is None:
        command = run_command(None, story, directory, keyword=keyword,
                              backend_args=("--backend", "simulated", "--harvester-version", version))
    else:
        command = run_command(lab.config, story, directory, keyword=keyword)
    running = start_run(command, run_environment(run_id, directory, workspace.tmpdir), directory, tracker.feed)
    at, (seen, line) = _interrupt(plan, running, tracker)
    code = running.wait(EXIT_BUDGET)
    wall = time.monotonic() - running.started
    left = check_leftovers(run_id, workspace.tmpdir, lab)
    counts: dict[str, int] = {}
    for verdict in read_verdicts(directory / "junit.xml").values():
        counts[verdict] = counts.get(verdict, 0) + 1
    if code is None:
        left.processes.insert(0, f"the run did not exit within {EXIT_BUDGET.seconds:.0f}s of the signal (killed)")
    return InterruptResult(plan, run_id, at is not None, seen, line, at, code, wall, left, counts, directory)
