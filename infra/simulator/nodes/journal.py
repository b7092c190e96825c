"""A node's systemd journal: what `journalctl -u <unit>` shows, recorded as the simulator runs.

Start-up and shutdown lines follow systemd's and RKE2's wording; the RKE2 and rancher-system-agent
messages are ILLUSTRATIVE (their shape, not a copy of a real node's log).
"""
from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import dataclass

RKE2_SERVER = "rke2-server"
SYSTEM_AGENT = "rancher-system-agent"
UNIT_DESCRIPTIONS = {RKE2_SERVER: "Rancher Kubernetes Engine v2 (server)", SYSTEM_AGENT: "Rancher System Agent"}
SYSTEM_AGENT_VERSION = "v0.3.11 (b1b3b2e)"       # ILLUSTRATIVE
_pids = itertools.count(1517, 211)


@dataclass(frozen=True)
class JournalEntry:
    at: dt.datetime
    unit: str
    ident: str          # SYSLOG_IDENTIFIER: "systemd", "rke2", "rancher-system-agent"
    pid: int
    message: str
    boot_id: str


class Journal:
    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        self._entries: list[JournalEntry] = []
        self._lock = threading.Lock()       # written on the loop, read by SSH threads

    def append(self, unit: str, ident: str, pid: int, message: str, boot_id: str,
               at: dt.datetime | None = None) -> None:
        with self._lock:
            self._entries.append(JournalEntry(at or dt.datetime.now(dt.timezone.utc), unit, ident, pid, message,
                                              boot_id))

    def entries(self, units: list[str]) -> list[JournalEntry]:
        with self._lock:
            return [e for e in self._entries if not units or e.unit in units]

    def render(self, units: list[str], lines: int | None = None, boot_id: str | None = None,
               output: str = "short") -> str:
        """journalctl's `short` (or `cat`) output; "-- Boot <id> --" between boots; "-- No entries --"."""
        entries = [e for e in self.entries(units) if boot_id is None or e.boot_id == boot_id]
        if lines is not None:
            entries = entries[-lines:] if lines > 0 else []
        if not entries:
            return "-- No entries --\n"
        out: list[str] = []
        previous_boot = entries[0].boot_id
        for entry in entries:
            if entry.boot_id != previous_boot:
                out.append(f"-- Boot {entry.boot_id.replace('-', '')} --")
                previous_boot = entry.boot_id
            if output == "cat":
                out.append(entry.message)
            else:
                stamp = entry.at.astimezone(dt.timezone.utc).strftime("%b %d %H:%M:%S")
                out.append(f"{stamp} {self.hostname} {entry.ident}[{entry.pid}]: {entry.message}")
        return "\n".join(out) + "\n"

    # --- what the services write ------------------------------------------------------------------
    def _rke2(self, at: dt.datetime, pid: int, boot_id: str, level: str, msg: str) -> None:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.append(RKE2_SERVER, "rke2", pid, f'time="{stamp}" level={level} msg="{msg}"', boot_id, at)

    def _agent(self, at: dt.datetime, pid: int, boot_id: str, msg: str) -> None:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.append(SYSTEM_AGENT, SYSTEM_AGENT, pid, f'time="{stamp}" level=info msg="{msg}"', boot_id, at)

    def services_starting(self, boot_id: str, rke2_version: str, at: dt.datetime | None = None) -> None:
        """What systemd, RKE2 and the system agent log while the node boots, up to the kubelet starting."""
        at = at or dt.datetime.now(dt.timezone.utc)
        tick = dt.timedelta(seconds=1)
        rke2, agent = next(_pids), next(_pids)
        self.append(RKE2_SERVER, "systemd", 1, f"Starting {UNIT_DESCRIPTIONS[RKE2_SERVER]}...", boot_id, at)
        self._rke2(at, rke2, boot_id, "info", f"Starting rke2 {rke2_version}")
        self._rke2(at + tick, rke2, boot_id, "info", "Managed etcd cluster bootstrap already complete and initialized")
        self._rke2(at + tick, rke2, boot_id, "info", "Reconciling bootstrap data between datastore and disk")
        self._rke2(at + 2 * tick, rke2, boot_id, "info", "Running kube-apiserver --advertise-port=6443 "
                   "--allow-privileged=true --anonymous-auth=false --authorization-mode=Node,RBAC ...")
        self._rke2(at + 3 * tick, rke2, boot_id, "info", "Waiting for API server to become available")
        self._rke2(at + 4 * tick, rke2, boot_id, "info", f"Running kubelet --hostname-override={self.hostname} "
                   "--node-labels=harvesterhci.io/managed=true ...")
        self.append(SYSTEM_AGENT, "systemd", 1, f"Started {UNIT_DESCRIPTIONS[SYSTEM_AGENT]}.", boot_id, at)
        self._agent(at + tick, agent, boot_id, f"Rancher System Agent version {SYSTEM_AGENT_VERSION} is starting")
        self._agent(at + tick, agent, boot_id, "Using directory /var/lib/rancher/agent/work for work")
        self._agent(at + 2 * tick, agent, boot_id, "Starting remote watch of plans")
        self._agent(at + 3 * tick, agent, boot_id, "Starting /v1, Kind=Secret controller")

    def services_ready(self, boot_id: str, at: dt.datetime | None = None) -> None:
        at = at or dt.datetime.now(dt.timezone.utc)
        pid = self._last_pid(RKE2_SERVER, "rke2")
        self._rke2(at, pid, boot_id, "info", "rke2 is up and running")
        self.append(RKE2_SERVER, "systemd", 1, f"Started {UNIT_DESCRIPTIONS[RKE2_SERVER]}.", boot_id, at)
        self._rke2(at, pid, boot_id, "info", f"Labels and annotations have been set successfully on node: "
                   f"{self.hostname}")
        self._agent(at, self._last_pid(SYSTEM_AGENT, SYSTEM_AGENT), boot_id,
                    "[K8s] updated plan secret fleet-local/custom-plan with feedback")

    def services_stopping(self, boot_id: str, at: dt.datetime | None = None) -> None:
        at = at or dt.datetime.now(dt.timezone.utc)
        for unit in (SYSTEM_AGENT, RKE2_SERVER):
            description = UNIT_DESCRIPTIONS[unit]
            self.append(unit, "systemd", 1, f"Stopping {description}...", boot_id, at)
            self.append(unit, "systemd", 1, f"{unit}.service: Deactivated successfully.", boot_id, at)
            self.append(unit, "systemd", 1, f"Stopped {description}.", boot_id, at)

    def _last_pid(self, unit: str, ident: str) -> int:
        with self._lock:
            return next((e.pid for e in reversed(self._entries) if e.unit == unit and e.ident == ident), 1)
