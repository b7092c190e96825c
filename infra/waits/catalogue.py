"""Every kind of wait the harness makes, named once: its budget's configuration key, default and reason.

A step asks for `budget(Wait.NODES_READY, run_config)` instead of naming a budget on the spot, so a
reader finds every wait here, and a lab with slow nodes changes one key. Budgets are real minutes on
every backend (the simulated cluster is faster, never given more time).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from .budget import Budget


@dataclass(frozen=True)
class WaitKind:
    name: str            # what the budget is called in a WaitTimeout
    config_key: str      # dotted path in the run configuration, in minutes
    default_min: float
    reason: str


class Wait(Enum):
    OBJECT_STATE = WaitKind("object reaches a state", "timeouts.api_wait_min", 5,
                            "a controller acts on an object within minutes on a healthy cluster")
    OBJECT_GONE = WaitKind("object deleted", "timeouts.api_wait_min", 5,
                           "deletion waits for finalizers (a load balancer releases its address first)")
    NODES_READY = WaitKind("nodes Ready", "timeouts.node_ready_min", 15,
                           "kubelets report Ready within minutes of a boot")
    NODE_BACK = WaitKind("node back after a reboot", "timeouts.node_ready_min", 15,
                         "a Harvester node boots, starts RKE2 and reports Ready in 5-15 minutes")
    CHARTS_READY = WaitKind("ManagedCharts Ready", "timeouts.api_wait_min", 5,
                            "fleet reconciles the local cluster's ManagedCharts within minutes")
    GUEST_OPERATION = WaitKind("guest cluster operation", "timeouts.api_wait_min", 5,
                               "a chart install, a rollout, a volume attach in an RKE2 guest")
    GUEST_PROVISIONED = WaitKind("guest cluster provisioned", "timeouts.guest_provision_min", 30,
                                 "Rancher creates the VMs, they boot and RKE2 forms a cluster")
    UPGRADE_CLEANUP = WaitKind("upgrade cleanup", "timeouts.api_wait_min", 5,
                               "the controller removes the repo VM, its image and the prepare plan")
    SUPPORT_BUNDLE = WaitKind("support bundle ready", "timeouts.support_bundle_min", 10,
                              "support-bundle-kit collects every node's logs")
    GUEST_SSH = WaitKind("guest answers SSH", "timeouts.guest_ssh_min", 5,
                         "a VM's cloud-init and sshd come up a minute or two after the VM runs")
    VM_BACKUP = WaitKind("VM backup or restore", "timeouts.vm_backup_min", 30,
                         "Longhorn snapshots in seconds, but uploads a backup to the target and restores from it "
                         "at disk speed (minutes per GiB)")
    API_UNAVAILABLE = WaitKind("API server unavailable", "timeouts.api_unavailable_min", 5,
                               "an RKE2 server restart during an upgrade takes the API away for minutes")


def budget(wait: Wait, config: Any) -> Budget:
    """The budget of `wait` as `config` (a RunConfig) sets it."""
    value: Any = config
    for part in wait.value.config_key.split("."):
        value = getattr(value, part)
    return Budget.minutes(wait.value.name, float(value))


def catalogue() -> str:
    """The table of waits (for `harvester-e2e waits` and the docs)."""
    rows = [("wait", "budget name", "config key", "default", "why")]
    rows += [(w.name, w.value.name, w.value.config_key, f"{w.value.default_min:g} min", w.value.reason) for w in Wait]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4] for r in rows)
