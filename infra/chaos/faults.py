"""The fault classes a chaos run injects, their seeded plans, and the thread that injects a plan.

Every class is something a real Harvester does to a test run, bounded so that a correct harness rides
through it with the same verdicts (so a different verdict is a false failure, never a legitimate one):

- bursts of 5xx or 429 answers: fewer than the retries a read makes at the transport, and the harness's
  own policy retries the rest;
- the API server restarting: the port closed for 1-4 s, then 503 for 1-4 s more, far inside the
  `api_unavailable` budget (5 min);
- watches dropped; 410 compaction (watches dropped and old revisions forgotten): waits re-list;
- SSH connections dropped mid-command (the command ran, half its output came, no exit status);
- slow phases: every simulated duration x2-x4 for 5-15 s. The longest single simulated step of any story
  is a node boot (120 s); x4 that is 8 simulated minutes, far inside the upgrade's 30-minute stall window
  and every phase budget, so a stall report under this fault would be a false one.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import tenacity

from infra.waits.budget import Budget

log = logging.getLogger("harvester_e2e.chaos")
ENDPOINT_BACK = Budget("the fault endpoint answers again after an injected restart", 20)
Spec = dict[str, Any]


class FaultEndpoint(Protocol):
    """The simulator's fault endpoint (`infra.backends.simulator_client.SimulatorClient`)."""

    def inject(self, **spec: Any) -> dict[str, Any]: ...

    def fault_state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class FaultClass:
    name: str                                  # short, for tables and --faults
    title: str                                 # what a reader of the report understands
    make: Callable[[random.Random], Spec]      # one injection's `POST /simulator/v1/faults` body
    fired_keys: tuple[str, ...]                # the simulator's `fired` counters this class moves (prefixes)


def _burst(codes: tuple[int, ...]) -> Callable[[random.Random], Spec]:
    return lambda rng: {"errorBurst": {"count": rng.randint(3, 7), "code": rng.choice(codes)}}


def _restart(rng: random.Random) -> Spec:
    refused = round(rng.uniform(1.0, 4.0), 2)
    return {"refuseConnectionsSeconds": refused, "unavailableSeconds": round(refused + rng.uniform(1.0, 4.0), 2)}


FAULT_CLASSES: tuple[FaultClass, ...] = (
    FaultClass("api-5xx", "API 5xx bursts (500/502/503/504)", _burst((500, 502, 503, 504)), ("errorBurst5",)),
    FaultClass("api-429", "API 429 bursts (TooManyRequests, Retry-After)", _burst((429,)), ("errorBurst429",)),
    FaultClass("api-restart", "API server restarting (connection refused, then 503)", _restart,
               ("refusedConnections", "unavailable")),
    FaultClass("watch-drop", "watches dropped", lambda rng: {"dropWatches": True}, ()),
    FaultClass("compaction-410", "410 Gone after compaction (watches dropped, history forgotten)",
               lambda rng: {"compact": True, "dropWatches": True}, ()),
    FaultClass("ssh-drop", "SSH connections dropped mid-command",
               lambda rng: {"sshDrop": {"count": rng.randint(1, 3)}}, ("sshDrop",)),
    FaultClass("slow-phases", "slow phases (simulated durations x2-x4 for 5-15 s)",
               lambda rng: {"slowPhases": {"factor": round(rng.uniform(2.0, 4.0), 2),
                                           "seconds": round(rng.uniform(5.0, 15.0), 2)}}, ("slowedSteps",)),
)
BY_NAME = {fault.name: fault for fault in FAULT_CLASSES}


@dataclass
class Injection:
    at_s: float                                # planned: seconds after the run started
    spec: Spec
    done_at_s: float | None = None             # when it was injected (None: the run ended first)
    applied: dict[str, Any] | None = None      # what the simulator said it armed
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"at_s": round(self.at_s, 2), "spec": self.spec, "done_at_s": self.done_at_s,
                "applied": self.applied, "error": self.error}


def plan(fault: FaultClass, rng: random.Random, window_s: float) -> list[Injection]:
    """1-3 injections of `fault` at seeded moments within `window_s` (the fault-free run's duration)."""
    count = rng.randint(1, 3)
    latest = max(window_s * 0.95, 1.0)
    return sorted((Injection(round(rng.uniform(0.3, latest), 2), fault.make(rng)) for _ in range(count)),
                  key=lambda i: i.at_s)


def schedule(rng: random.Random, faults: list[FaultClass], runs: int) -> list[FaultClass]:
    """`runs` fault classes, each as often as the others (within one), in a seeded order."""
    chosen = [faults[i % len(faults)] for i in range(runs)]
    rng.shuffle(chosen)
    return chosen


def fired_count(fault: FaultClass, before: dict[str, int], after: dict[str, int]) -> int:
    """How often the simulator says this class's faults acted during the run (0 for classes it does not count)."""
    return sum(after.get(key, 0) - before.get(key, 0) for key in after
               if any(key.startswith(prefix) for prefix in fault.fired_keys))


@dataclass
class Injector:
    """Injects a plan into the fault endpoint at its moments, from a thread, until the plan or the run ends."""

    endpoint: FaultEndpoint
    injections: list[Injection]
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _started: float = 0.0

    def start(self, started: float) -> None:
        self._started = started
        self._thread = threading.Thread(target=self._run, name="chaos-injector", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for injection in self.injections:
            # Wait for the planned moment; a stop (the run ended) ends the wait and the plan.
            if self._stop.wait(max(0.0, self._started + injection.at_s - time.monotonic())):
                return
            self._inject(injection)

    def _inject(self, injection: Injection) -> None:
        """The fault endpoint is on the API server's listener: while an earlier injected restart keeps it
        closed, the call is refused. Try again until it is back (bounded), as a person at the console would."""
        deadline = ENDPOINT_BACK.start()
        while True:
            injection.done_at_s = round(time.monotonic() - self._started, 2)
            try:
                injection.applied = self.endpoint.inject(**injection.spec).get("applied")
                injection.error = None
                log.info("chaos: injected %s at %.1fs", injection.spec, injection.done_at_s)
                return
            except Exception as exc:  # noqa: BLE001 - a refused injection is reported, never fatal
                injection.error = f"{type(exc).__name__}: {exc}"
            if deadline.expired() or self._stop.wait(0.5):     # the run ended, or the endpoint stays away
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(15.0)       # an injection in flight is one HTTPS call (10 s timeout)


def fault_state_once_back(endpoint: FaultEndpoint) -> dict[str, Any]:
    """The lab's fault state, read once its listener answers again: a run can end inside an injected restart
    (the port closed, then 503), and the count of what fired must not fail the campaign (bounded; the last
    refusal is raised when the endpoint stays away)."""
    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(Exception),
                                 wait=tenacity.wait_fixed(0.5), stop=tenacity.stop_after_delay(ENDPOINT_BACK.seconds),
                                 reraise=True)
    return retrying(endpoint.fault_state)
