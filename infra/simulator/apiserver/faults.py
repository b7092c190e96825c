"""Explicit fault injection for reliability tests: never a side effect of a simulated version.

`POST /simulator/v1/faults` arms them (see `ApiServer._simulator`); `GET /simulator/v1/faults` says what is armed and
what has fired so far (`fired`), so a chaos run can tell a fault that hit the harness from one that was
armed while nothing used that path (an SSH drop in a story that never opens SSH).

- errorBurst: the next N API requests fail with a 5xx or 429 (429 with Retry-After, as kube-apiserver's
  max-in-flight filter answers);
- unavailableSeconds: every API request gets 503 until then (an apiserver up but not ready);
- refuseConnectionsSeconds: the listener is closed (connection refused), as during an RKE2 restart;
- dropWatches / compact: every open watch is closed; the store forgets old revisions (410 Gone);
- sshDrop: the next N SSH commands on any node lose their connection mid-command: the command runs,
  part of its output is sent, then the transport is closed before the exit status (the client cannot
  tell whether it completed);
- slowPhases: for a while every simulated duration (upgrade phases, jobs, node boots, support bundles)
  takes `factor` times as long. Progress still happens, only later: a slow phase, not a hang.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class Faults:
    unavailable_until: float = 0.0      # monotonic deadline: every API request gets 503 before it
    error_burst_left: int = 0           # the next N API requests fail with `error_burst_code`
    error_burst_code: int = 503
    refuse_connections_until: float = 0.0   # the listener is closed (connection refused) before it
    ssh_drop_left: int = 0              # the next N SSH commands lose their connection mid-command
    slow_until: float = 0.0             # monotonic deadline: simulated durations started before it are slower
    slow_factor: float = 1.0
    fired: dict[str, int] = field(default_factory=dict)     # what each fault did so far, by name
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)   # SSH commands run in threads

    def _count(self, name: str) -> None:
        self.fired[name] = self.fired.get(name, 0) + 1

    def api_unavailable(self) -> bool:
        if time.monotonic() < self.unavailable_until:
            self._count("unavailable")
            return True
        return False

    def take_burst(self) -> int | None:
        if self.error_burst_left > 0:
            self.error_burst_left -= 1
            self._count(f"errorBurst{self.error_burst_code}")
            return self.error_burst_code
        return None

    def take_ssh_drop(self) -> bool:
        """Whether the SSH command starting now is to lose its connection mid-command (counted once)."""
        with self._lock:
            if self.ssh_drop_left <= 0:
                return False
            self.ssh_drop_left -= 1
            self._count("sshDrop")
            return True

    def slow_phases(self, factor: float, seconds: float) -> None:
        if factor < 1.0:
            raise ValueError("slowPhases.factor must be at least 1 (it slows, it never speeds up)")
        self.slow_factor, self.slow_until = float(factor), time.monotonic() + float(seconds)

    def slowdown(self) -> float:
        """The factor a simulated duration starting now is stretched by (1.0 when no slow phase is armed)."""
        if time.monotonic() < self.slow_until:
            with self._lock:
                self._count("slowedSteps")
            return self.slow_factor
        return 1.0

    def describe(self) -> dict[str, object]:
        now = time.monotonic()
        return {"armed": {"errorBurst": {"count": self.error_burst_left, "code": self.error_burst_code},
                          "unavailableSeconds": round(max(self.unavailable_until - now, 0.0), 3),
                          "sshDrop": self.ssh_drop_left,
                          "slowPhases": {"factor": self.slow_factor,
                                         "seconds": round(max(self.slow_until - now, 0.0), 3)}},
                "fired": dict(self.fired)}
