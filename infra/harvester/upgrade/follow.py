"""Follow an upgrade with the run's settings and keep what happened, for Then steps to judge."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.config import RunConfig
from infra.waits.budget import Budget

from ..helm import HelmRevision, history_from_api
from ..probes import Probe, ProbeReport, ProbeSet, phase_windows_from_records
from .diagnosis import diagnose
from .progress import LiveProgress
from .run import UpgradeRun
from .tracker import PhaseTracker, UpgradeOutcome, UpgradeProblem, default_phase_budgets


@dataclass
class UpgradeAttempt:
    run: UpgradeRun
    tracker: PhaseTracker
    outcome: UpgradeOutcome | None = None
    problem: UpgradeProblem | None = None
    release_file: dict[str, Any] = field(default_factory=dict)   # the target's harvester-release.yaml
    probes: ProbeReport | None = None        # what the probes saw while the upgrade ran (outages per phase)

    def raise_problem(self) -> None:
        if self.problem is not None:
            raise self.problem


def follow(run: UpgradeRun, config: RunConfig, release_file: dict[str, Any] | None = None,
           helm_history: Callable[[str, str], list[HelmRevision]] | None = None,
           probes: list[Probe] | None = None) -> UpgradeAttempt:
    """Track the upgrade to its end (completed, failed, stalled or over budget); never raises for those.
    `probes` sample what users feel (the API, VMs, LoadBalancers) from the start of following to its end."""
    history = helm_history or (lambda namespace, release: history_from_api(run.kube, namespace, release))
    stall = config.stall_window_seconds()
    budgets = default_phase_budgets(config.upgrade.phase_budgets_min)
    # Probing stops with the upgrade; this bound only matters if following never returns.
    probing = ProbeSet(probes, budget=Budget("probes while the upgrade runs",
                                             sum(b.seconds for b in budgets.values()) + stall)) if probes else None
    with LiveProgress(run.name, config.upgrade.progress) as progress, probing or contextlib.nullcontext():
        tracker = PhaseTracker(run, budgets=budgets, stall_window=stall, tick=min(5.0, max(0.5, stall / 10)),
                               diagnose=lambda phase, lines: diagnose(phase, lines, history),
                               on_change=progress.update)
        attempt = UpgradeAttempt(run, tracker, release_file=dict(release_file or {}))
        try:
            attempt.outcome = tracker.follow()
        except UpgradeProblem as problem:
            attempt.problem = problem
    if probing is not None:
        attempt.probes = probing.report(phase_windows_from_records(tracker.phases))
    return attempt
