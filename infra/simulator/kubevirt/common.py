"""Names, timings and small helpers the simulated KubeVirt shares.

Names are KubeVirt's (`staging/src/kubevirt.io/api/core/v1/types.go` at v1.3.1 and v1.4.0, the two
releases Harvester v1.4.x and v1.5.x ship) and Harvester's (`pkg/util/constants.go`). Durations are
simulated seconds (`SimClock`); those marked ILLUSTRATIVE are not taken from any source.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from ..apiserver.clock import rfc3339

Obj = dict[str, Any]

GROUP, VERSION = "kubevirt.io", "v1"
API_VERSION = f"{GROUP}/{VERSION}"

# --- labels and annotations (types.go) ------------------------------------------------------------
APP_LABEL = "kubevirt.io"                                  # AppLabel: "virt-launcher" on launcher pods
CREATED_BY_LABEL = "kubevirt.io/created-by"                # CreatedByLabel: the VMI's uid
VM_NAME_LABEL = "vm.kubevirt.io/name"                      # VirtualMachineNameLabel: the pod's hostname
NODE_NAME_LABEL = "kubevirt.io/nodeName"                   # NodeNameLabel on the VMI
MIGRATION_JOB_LABEL = "kubevirt.io/migrationJobUID"        # MigrationJobLabel on a target pod
MIGRATION_TARGET_NODE_LABEL = "kubevirt.io/migrationTargetNodeName"
MIGRATION_SELECTOR_LABEL = "kubevirt.io/vmi-name"          # MigrationSelectorLabel on a VMIM
MIGRATION_JOB_NAME_ANNOTATION = "kubevirt.io/migrationJobName"
EVACUATION_ANNOTATION = "kubevirt.io/evacuationMigration"  # EvacuationMigrationAnnotation: the source node
ALLOW_POD_BRIDGE_MIGRATION = "kubevirt.io/allow-pod-bridge-network-live-migration"
VMI_FINALIZER = "foregroundDeleteVirtualMachine"           # VirtualMachineInstanceFinalizer
VM_CONTROLLER_FINALIZER = "kubevirt.io/virtualMachineControllerFinalize"
MIGRATION_FINALIZER = "kubevirt.io/migrationJobFinalize"   # VirtualMachineInstanceMigrationFinalizer
DRAIN_TAINT_KEY = "kubevirt.io/drain"                      # MigrationConfiguration.NodeDrainTaintKey default

# Harvester pkg/util/constants.go: set on the VMI by its migration controller (pkg/controller/master/migration)
HARVESTER_MIGRATION_UID = "harvesterhci.io/migrationUID"
HARVESTER_MIGRATION_STATE = "harvesterhci.io/migrationState"
HARVESTER_UPGRADE_LABEL = "harvesterhci.io/upgrade"

# The simulator's own record of a migration's switch-over pause (no upstream field has sub-second precision).
SWITCHOVER_ANNOTATION = "kubevirt.simulator.harvesterhci.io/last-switchover"

# --- phases -----------------------------------------------------------------------------------------
VMI_FINAL_PHASES = ("Succeeded", "Failed")
MIGRATION_PHASES = ("Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running",
                    "Succeeded", "Failed")           # MigrationPhase, in the order a migration passes them
MIGRATION_FINAL_PHASES = ("Succeeded", "Failed")

# --- KubeVirt defaults (pkg/virt-config/configuration.go, v1.3.1 = v1.4.0; Harvester's KubeVirt CR sets none
# of these: deploy/charts/harvester/values.yaml `kubevirt.spec.configuration`) -------------------------------
CLUSTER_EVICTION_STRATEGY = "None"                 # defaultEvictionStrategy
PARALLEL_MIGRATIONS_PER_CLUSTER = 5                # ParallelMigrationsPerCluster
PARALLEL_OUTBOUND_MIGRATIONS_PER_NODE = 2          # ParallelOutboundMigrationsPerNode
FINALIZED_MIGRATIONS_KEPT = 5                      # defaultFinalizedMigrationGarbageCollectionBuffer (migration.go)
UNSCHEDULABLE_TARGET_TIMEOUT = 300.0               # defaultUnschedulablePendingTimeoutSeconds (migration.go)
EVACUATION_RETRY_SECONDS = 5.0                     # evacuation.go: AddAfter(node, 5s) with no free spot
NOT_MIGRATABLE_WARNING_SECONDS = 60.0              # evacuation.go: AddAfter(node, 1min) for the warnings

# --- durations (ILLUSTRATIVE) -----------------------------------------------------------------------
POD_CREATE_SECONDS = 1.0          # virt-controller renders and creates the virt-launcher pod
SCHEDULE_SECONDS = 2.0            # the scheduler binds the pod and its containers start
BOOT_SECONDS = 6.0                # virt-handler defines and starts the domain
SHUTDOWN_SECONDS = 4.0            # the guest's ACPI shutdown before the launcher pod goes
TARGET_POD_SECONDS = 2.0          # a migration's target pod is bound and Ready
PREPARE_TARGET_SECONDS = 1.0      # the target virt-handler prepares the domain (TargetNodeAddress)
MIGRATION_BASE_SECONDS = 4.0      # pre-copy of a small guest
MIGRATION_SECONDS_PER_GIB = 2.0   # more memory, more pre-copy
MIGRATION_MAX_SECONDS = 20.0
PAUSE_BASE_SECONDS = 0.1          # the switch-over: the source is paused, the target resumes
PAUSE_SECONDS_PER_GIB = 0.05
PAUSE_MAX_SECONDS = 0.5

LAUNCHER_IMAGE = "registry.suse.com/suse/sles/15.6/virt-launcher"
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"      # what Kubernetes uses for generated name suffixes


def generated_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(NAME_ALPHABET) for _ in range(length))


def precise_now() -> str:
    """A wall-clock timestamp with microseconds (metav1.MicroTime's format)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def controller_ref(owner: Obj) -> Obj:
    """metav1.NewControllerRef."""
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def controller_uid(obj: Obj) -> str:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid", ""))
    return ""


def condition(obj: Obj | None, ctype: str) -> Obj | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c.get("type") == ctype),
                None)


def condition_is(obj: Obj | None, ctype: str, status: str) -> bool:
    found = condition(obj, ctype)
    return found is not None and found.get("status") == status


def set_condition(status: Obj, ctype: str, value: str, reason: str = "", message: str = "",
                  *, probe_time: bool = False) -> None:
    """Put one condition in `status.conditions`; its transition time moves only when its status does."""
    conditions = status.setdefault("conditions", [])
    current = next((c for c in conditions if c.get("type") == ctype), None)
    if current is not None and (current.get("status"), current.get("reason", ""), current.get("message", "")) == \
            (value, reason, message):
        return                                        # unchanged: no write, no new timestamps
    now = rfc3339()
    entry: Obj = {"type": ctype, "status": value, "lastProbeTime": now if probe_time else None,
                  "lastTransitionTime": current.get("lastTransitionTime") if current is not None
                  and current.get("status") == value else now}
    if reason:
        entry["reason"] = reason
    if message:
        entry["message"] = message
    if current is None:
        conditions.append(entry)
    else:
        conditions[conditions.index(current)] = entry


def remove_condition(status: Obj, ctype: str) -> None:
    status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") != ctype]


def stamp_phase(status: Obj, phase: str) -> None:
    """`phase` and, when it changes, a `phaseTransitionTimestamps` entry (VMI and VMIM alike)."""
    if status.get("phase") == phase:
        return
    status["phase"] = phase
    status.setdefault("phaseTransitionTimestamps", []).append({"phase": phase, "phaseTransitionTimestamp": rfc3339()})


def memory_gib(vmi: Obj) -> float:
    """The guest's memory in GiB: domain.memory.guest, else resources.requests/limits.memory (1 GiB if none)."""
    domain = (vmi.get("spec") or {}).get("domain") or {}
    resources = domain.get("resources") or {}
    text = ((domain.get("memory") or {}).get("guest") or (resources.get("requests") or {}).get("memory")
            or (resources.get("limits") or {}).get("memory") or "1Gi")
    return parse_quantity(str(text)) / 2**30


def parse_quantity(text: str) -> float:
    """A Kubernetes resource quantity in base units (enough of resource.Quantity for memory sizes)."""
    suffixes = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if text.endswith(suffix):
            try:
                return float(text[: -len(suffix)]) * suffixes[suffix]
            except ValueError:
                return 2**30
    try:
        return float(text)
    except ValueError:
        return 2**30


def stable_mac(*parts: str) -> str:
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


def stable_host(*parts: str, low: int = 2, high: int = 254) -> int:
    return low + int(hashlib.sha256("/".join(parts).encode()).hexdigest(), 16) % (high - low + 1)
