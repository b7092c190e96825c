"""`ProbeSet`: every probe on its own thread from before the upgrade to after it, each sample recorded.

Bounded everywhere: a probe thread ends at `stop()` or when the set's hard `Budget` runs out, whichever
comes first (it never runs forever, even if nobody calls `stop()`); `stop()` joins the threads within a
budget of its own; the only waits are `threading.Event.wait` calls (the interval, stoppable at once, and an
attempt's timeout).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from infra.waits.budget import Budget, Deadline

from .outages import PhaseLike
from .probe import Probe
from .report import ProbeReport

log = logging.getLogger("harvester_e2e.probes")

_ERROR_CHARS = 300


@dataclass(frozen=True)
class Sample:
    """One attempt of one probe: when it started (time.monotonic()), whether it answered in time, how long it took."""

    probe: str
    started_monotonic: float
    ok: bool
    latency_s: float
    error: str | None = None


class ProbeSet:
    """Run `probes` concurrently until `stop()` or until `budget` ends; then `report(phases)`.

    ``with ProbeSet(probes, budget=Budget("probes while upgrading", 3 * 3600)) as running:`` ... the upgrade
    ... ``report = running.report(phases)`` (the set is stopped on leaving the block, also on an exception).
    """

    def __init__(self, probes: Sequence[Probe], *, budget: Budget, join_budget: Budget | None = None) -> None:
        names = [p.name for p in probes]
        if not probes:
            raise ValueError("a ProbeSet needs at least one probe")
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique (they key the report): {names}")
        self.probes = list(probes)
        self.budget = budget
        # A probe thread is at most one attempt's timeout away from noticing the stop; one second of slack.
        self.join_budget = join_budget or Budget("probe threads stop",
                                                 max(p.timeout_s for p in self.probes) + 1.0)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._samples: list[Sample] = []
        self._threads: list[threading.Thread] = []
        self._deadline: Deadline | None = None
        self._stopped_at: float | None = None
        self.unjoined: list[str] = []        # probe threads still alive when the join budget ran out

    # --- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> "ProbeSet":
        if self._deadline is not None:
            raise RuntimeError("this ProbeSet was already started (make a new one for another window)")
        self._deadline = self.budget.start()
        for probe in self.probes:
            thread = threading.Thread(target=self._run, args=(probe, self._deadline), name=f"probe {probe.name}",
                                      daemon=True)    # bounded by the budget anyway; never holds up exit
            self._threads.append(thread)
            thread.start()
        log.info("probes started (%s, budget %s): %s", len(self.probes), self.budget,
                 ", ".join(p.name for p in self.probes))
        return self

    def stop(self) -> None:
        """Stop every probe and join the threads within `join_budget`; safe to call twice."""
        if self._deadline is None:
            raise RuntimeError("stop() before start()")
        if self._stopped_at is None:
            self._stopped_at = time.monotonic()
        self._stop.set()
        joining = self.join_budget.start()
        for thread in self._threads:
            thread.join(joining.remaining)
        self.unjoined = [t.name for t in self._threads if t.is_alive()]
        if self.unjoined:
            log.warning("probe threads still running after %s: %s", self.join_budget, ", ".join(self.unjoined))

    def __enter__(self) -> "ProbeSet":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- what was seen ----------------------------------------------------------------------------------
    @property
    def is_running(self) -> bool:
        """Some probe thread is still sampling (False after stop(), and once the budget has ended)."""
        return any(t.is_alive() for t in self._threads)

    @property
    def started_monotonic(self) -> float:
        if self._deadline is None:
            raise RuntimeError("the ProbeSet has not started")
        return self._deadline.started

    @property
    def budget_ended_monotonic(self) -> float:
        return self.started_monotonic + self.budget.seconds

    @property
    def ended_monotonic(self) -> float:
        """The end of the watched window: stop(), or the end of the budget if that came first (or now, if running)."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        return min(end, self.budget_ended_monotonic)

    @property
    def stopped_by_budget(self) -> bool:
        """The budget ended before stop(): the end of the upgrade may not have been watched."""
        end = self._stopped_at if self._stopped_at is not None else time.monotonic()
        return end > self.budget_ended_monotonic

    def samples(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    def report(self, phases: Sequence[PhaseLike] = ()) -> ProbeReport:
        """The report of what was seen (stop() first, or the window ends now)."""
        ended = self.ended_monotonic
        return ProbeReport.from_samples(
            [s for s in self.samples() if s.started_monotonic <= ended], probes=[p.name for p in self.probes],
            started=self.started_monotonic, ended=ended, phases=phases, stopped_by_budget=self.stopped_by_budget)

    # --- the probe threads ------------------------------------------------------------------------------
    def _run(self, probe: Probe, deadline: Deadline) -> None:
        outstanding: threading.Thread | None = None
        while not self._stop.is_set() and not deadline.expired():
            started = time.monotonic()
            sample, outstanding = self._attempt(probe, started, outstanding)
            with self._lock:
                self._samples.append(sample)
            # Next attempt one interval after this one started (at once if the attempt took longer); the wait
            # ends early on stop() and never outlasts the budget.
            self._stop.wait(max(0.0, min(started + probe.interval_s - time.monotonic(), deadline.remaining)))

    @staticmethod
    def _attempt(probe: Probe, started: float,
                 outstanding: threading.Thread | None) -> tuple[Sample, threading.Thread | None]:
        """One attempt on a helper thread, waited for at most the probe's timeout.

        Why a helper thread: a callable may not honour its timeout (an SSH connect, a TLS handshake to a
        half-dead peer), and the outage must still be sampled about once a second. At most one attempt per
        probe is outstanding: while a timed-out one still hangs, the next samples fail at once instead of
        piling up threads.
        """
        if outstanding is not None and outstanding.is_alive():
            return Sample(probe.name, started, False, 0.0,
                          f"the previous attempt has still not returned (timeout {probe.timeout_s:g} s)"), outstanding
        done = threading.Event()
        errors: list[BaseException] = []

        def call() -> None:
            try:
                probe.attempt(probe.timeout_s)
            except BaseException as exc:  # noqa: BLE001 - any failure of the target is a failed sample
                errors.append(exc)
            finally:
                done.set()

        worker = threading.Thread(target=call, name=f"probe attempt {probe.name}", daemon=True)
        worker.start()
        answered = done.wait(probe.timeout_s)
        latency = time.monotonic() - started
        if not answered:
            return Sample(probe.name, started, False, latency, f"no answer within {probe.timeout_s:g} s"), worker
        if errors:
            error = errors[0]
            return Sample(probe.name, started, False, latency, _short(f"{type(error).__name__}: {error}")), None
        return Sample(probe.name, started, True, latency), None


def _short(text: str) -> str:
    """Head and tail of a long error: a transport error's cause (``Connection refused``) is at its end."""
    if len(text) <= _ERROR_CHARS:
        return text
    half = (_ERROR_CHARS - 5) // 2
    return f"{text[:half]} ... {text[-half:]}"
