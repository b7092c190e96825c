"""Follow an Upgrade phase by phase, each with its own budget, and stop early when it stalls.

Phases are the Upgrade's conditions in the order Harvester's controller reaches them. A phase's
clock starts when the previous condition turns True. `Completed=False` fails at once. The stall
detector watches everything that moves during a healthy upgrade (conditions, the state label,
per-node states, upgrade job pods, the apply-manifests log); when none of it changes for the
configured window it fails with the phase, the last log lines and a diagnosis.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from infra.failures import ProductFailure
from infra.kube import Kube, NotFound
from infra.kube.predicates import summary
from infra.waits.budget import Budget, WaitTimeout, format_seconds

from ..names import HARVESTER, SYSTEM_NAMESPACE
from .diagnosis import Diagnosis
from .run import STATE_LABEL, UpgradeRun

log = logging.getLogger("harvester_e2e.upgrade")

PHASES = ("LogReady", "ImageReady", "RepoReady", "NodesPrepared", "SystemServicesUpgraded", "NodesUpgraded",
          "Completed")
# harvester-smoke's budgets, in real minutes.
DEFAULT_BUDGETS_MIN = {"LogReady": 5, "ImageReady": 5, "RepoReady": 10, "NodesPrepared": 30,
                       "SystemServicesUpgraded": 30, "NodesUpgraded": 45, "Completed": 3}


def default_phase_budgets(overrides_min: dict[str, float] | None = None) -> dict[str, Budget]:
    minutes = {**DEFAULT_BUDGETS_MIN, **(overrides_min or {})}
    return {phase: Budget.minutes(f"upgrade phase {phase}", minutes[phase]) for phase in PHASES}


@dataclass(frozen=True)
class Observation:
    """What the tracker sees of an upgrade at one moment."""

    upgrade: dict[str, Any]
    nodes_ready: dict[str, str]
    job_pods: tuple[tuple[str, str], ...]
    manifests_log: tuple[str, ...]

    @property
    def conditions(self) -> dict[str, dict[str, Any]]:
        return {c["type"]: c for c in (self.upgrade.get("status") or {}).get("conditions") or []}

    def status_of(self, condition: str) -> str:
        return str(self.conditions.get(condition, {}).get("status", ""))

    @property
    def state(self) -> str:
        return (self.upgrade["metadata"].get("labels") or {}).get(STATE_LABEL, "")

    @property
    def node_states(self) -> dict[str, str]:
        statuses = (self.upgrade.get("status") or {}).get("nodeStatuses") or {}
        return {node: str(info.get("state", "")) for node, info in sorted(statuses.items())}

    @property
    def phase(self) -> str:
        for name in PHASES[:-1]:
            if self.status_of(name) != "True":
                return name
        return "Completed"

    def activity(self) -> tuple[Any, ...]:
        conditions = tuple(sorted((k, v.get("status"), v.get("reason", "")) for k, v in self.conditions.items()))
        return (conditions, self.state, tuple(self.node_states.items()), tuple(sorted(self.nodes_ready.items())),
                self.job_pods, len(self.manifests_log), self.manifests_log[-1:] if self.manifests_log else ())


@dataclass
class PhaseRecord:
    name: str
    started: dt.datetime
    budget: Budget
    ended: dt.datetime | None = None
    outcome: str = "running"           # passed | failed | stalled | over-budget | running

    @property
    def seconds(self) -> float:
        return ((self.ended or dt.datetime.now(dt.timezone.utc)) - self.started).total_seconds()


@dataclass
class NodeStateRecord:
    node: str
    state: str
    started: dt.datetime
    ended: dt.datetime | None = None


class UpgradeProblem(ProductFailure):
    """Base of the ways an upgrade goes wrong; `evidence` is attached to the report."""

    def __init__(self, message: str, *, phase: str, evidence: dict[str, Any]):
        super().__init__(message, evidence)
        self.phase = phase


class UpgradeFailed(UpgradeProblem):
    pass


class PhaseBudgetExceeded(UpgradeProblem):
    pass


class UpgradeStalled(UpgradeProblem):
    def __init__(self, message: str, *, phase: str, evidence: dict[str, Any], diagnosis: Diagnosis,
                 stalled_after: float):
        super().__init__(message, phase=phase, evidence=evidence)
        self.diagnosis = diagnosis
        self.stalled_after = stalled_after


@dataclass
class UpgradeOutcome:
    phases: list[PhaseRecord]
    node_states: list[NodeStateRecord]
    final: Observation
    seconds: float


@dataclass
class PhaseTracker:
    run: UpgradeRun
    budgets: dict[str, Budget] = field(default_factory=default_phase_budgets)
    stall_window: float = 600.0                       # real seconds without any change
    tick: float = 2.0                                 # how often logs and nodes are looked at
    diagnose: Callable[[str, list[str]], Diagnosis] | None = None
    on_change: Callable[[Observation, list[PhaseRecord]], None] | None = None
    phases: list[PhaseRecord] = field(default_factory=list)
    node_states: list[NodeStateRecord] = field(default_factory=list)

    @property
    def kube(self) -> Kube:
        return self.run.kube

    def observe(self) -> Observation:
        kube, name = self.kube, self.run.name
        upgrade = self.run.get()
        nodes = {n["metadata"]["name"]: next((c.get("status", "") for c in (n.get("status") or {}).get("conditions", [])
                                              if c.get("type") == "Ready"), "")
                 for n in kube.list("v1", "Node")}
        pods = kube.list("v1", "Pod", SYSTEM_NAMESPACE, label_selector=f"harvesterhci.io/upgrade={name}")
        job_pods = tuple(sorted((p["metadata"]["name"], (p.get("status") or {}).get("phase", "")) for p in pods))
        return Observation(upgrade, nodes, job_pods, tuple(self.manifests_log(pods)))

    def manifests_log(self, pods: list[dict[str, Any]], tail: int = 50) -> list[str]:
        job = f"{self.run.name}-apply-manifests"
        for pod in pods:
            if (pod["metadata"].get("labels") or {}).get("job-name") == job:
                try:
                    return self.kube.pod_log(pod["metadata"]["name"], SYSTEM_NAMESPACE, tail_lines=tail).splitlines()
                except NotFound:
                    return []
        return []

    def follow(self) -> UpgradeOutcome:
        started = time.monotonic()
        last_activity: tuple[Any, ...] | None = None
        last_change = time.monotonic()
        observation = self.observe()
        while True:
            self._record(observation)
            if self.on_change is not None:
                self.on_change(observation, self.phases)
            if observation.status_of("Completed") == "False":
                raise self._failed(observation)
            if observation.status_of("Completed") == "True":
                self._close_current("passed")
                return UpgradeOutcome(self.phases, self.node_states, observation, time.monotonic() - started)
            activity = observation.activity()
            if activity != last_activity:
                last_activity, last_change = activity, time.monotonic()
            current = self.phases[-1]
            if time.monotonic() - last_change > self.stall_window:
                raise self._stalled(observation, time.monotonic() - last_change)
            if current.seconds > current.budget.seconds:
                raise self._over_budget(observation)
            before = time.monotonic()
            # Never wait past the moment the stall window would run out: a stall is reported within
            # the window plus one look at the cluster, not up to a whole tick later.
            until_stall = self.stall_window - (before - last_change)
            observation = self._next(observation, max(0.05, min(self.tick, until_stall + 0.01)))
            took = time.monotonic() - before
            if took > self.tick + 10.0:
                # The API was unreachable for a while (retried within its own budget): that is not
                # evidence of a stall, so it does not count against the window.
                last_change += took

    def _next(self, previous: Observation, wait: float) -> Observation:
        """Wait (at most `wait`, never more than a tick) for the Upgrade to change, then look at everything."""
        seen = previous.upgrade["metadata"]["resourceVersion"]
        try:
            self.kube.wait_for(HARVESTER, "Upgrade", self.run.name,
                               lambda o: o is None or o["metadata"]["resourceVersion"] != seen,
                               budget=Budget("next upgrade change", wait), awaited="a change of the Upgrade",
                               namespace=SYSTEM_NAMESPACE)
        except WaitTimeout:
            pass   # no change within the tick: logs, pods and nodes are looked at anyway
        return self.observe()

    # --- records ------------------------------------------------------------------------------
    def _record(self, observation: Observation) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        if not self.phases or self.phases[-1].name != observation.phase:
            if self.phases:
                self._close_current("passed")
                # Phases that began and ended while the API was out of reach are still on the record.
                skipped = PHASES[PHASES.index(self.phases[-1].name) + 1:PHASES.index(observation.phase)]
                for name in skipped:
                    self.phases.append(PhaseRecord(name, now, self.budgets[name], now, "passed (unobserved)"))
            self.phases.append(PhaseRecord(observation.phase, now, self.budgets[observation.phase]))
            log.info("upgrade %s: phase %s (budget %s)", self.run.name, observation.phase,
                     format_seconds(self.budgets[observation.phase].seconds))
        open_states = {r.node: r for r in self.node_states if r.ended is None}
        for node, state in observation.node_states.items():
            current = open_states.get(node)
            if current is None or current.state != state:
                if current is not None:
                    current.ended = now
                self.node_states.append(NodeStateRecord(node, state, now))

    def _close_current(self, outcome: str) -> None:
        if self.phases and self.phases[-1].ended is None:
            self.phases[-1].ended = dt.datetime.now(dt.timezone.utc)
            self.phases[-1].outcome = outcome
        now = dt.datetime.now(dt.timezone.utc)
        for record in self.node_states:
            if record.ended is None and outcome != "passed":
                record.ended = now

    def _evidence(self, observation: Observation) -> dict[str, Any]:
        return {"Upgrade": observation.upgrade, "apply-manifests log (tail)": "\n".join(observation.manifests_log),
                "upgrade job pods": [f"{n} {p}" for n, p in observation.job_pods],
                "phase timings": [f"{r.name}: {format_seconds(r.seconds)} of {format_seconds(r.budget.seconds)} "
                                  f"({r.outcome})" for r in self.phases]}

    def _failed(self, observation: Observation) -> UpgradeFailed:
        self._close_current("failed")
        failed = [(k, v) for k, v in observation.conditions.items() if v.get("status") == "False"]
        why = "; ".join(f"{k}: {v.get('reason', '')} {v.get('message', '')}".strip() for k, v in failed)
        return UpgradeFailed(f"upgrade {self.run.name} failed in phase {observation.phase}: {why}",
                             phase=observation.phase, evidence=self._evidence(observation))

    def _over_budget(self, observation: Observation) -> PhaseBudgetExceeded:
        current = self.phases[-1]
        self._close_current("over-budget")
        return PhaseBudgetExceeded(
            f"upgrade {self.run.name}: phase {current.name} took longer than its budget "
            f"{format_seconds(current.budget.seconds)}; last seen: {summary(observation.upgrade)}",
            phase=current.name, evidence=self._evidence(observation))

    def _stalled(self, observation: Observation, quiet_for: float) -> UpgradeStalled:
        phase = observation.phase
        self._close_current("stalled")
        lines = list(observation.manifests_log)
        diagnosis = self.diagnose(phase, lines) if self.diagnose else Diagnosis(
            f"{phase} made no progress; last log line: {lines[-1] if lines else '(none)'}")
        message = (f"upgrade {self.run.name} stalled in phase {phase}: nothing changed for "
                   f"{format_seconds(quiet_for)} (stall window {format_seconds(self.stall_window)}). {diagnosis}")
        evidence = self._evidence(observation)
        evidence["diagnosis"] = {"sentence": diagnosis.sentence, **diagnosis.details}
        return UpgradeStalled(message, phase=phase, evidence=evidence, diagnosis=diagnosis, stalled_after=quiet_for)
