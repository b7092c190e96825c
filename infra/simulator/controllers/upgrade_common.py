"""What the upgrade controller's parts share: names, labels, conditions, Jobs and their pods.

Names and labels are those of harvester/harvester `pkg/controller/master/upgrade` (`common.go`,
`job_controller.go`, `upgrade_controller.go`), identical at every simulated tag and at ce188325.
"""
from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Any, Callable

from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi

if TYPE_CHECKING:
    from ..simulator import Simulator

Obj = dict[str, Any]

NAMESPACE = "harvester-system"          # upgradeNamespace
SUC_NAMESPACE = "cattle-system"         # system-upgrade-controller's Plans and their Jobs
STATE = "harvesterhci.io/upgradeState"
LATEST = "harvesterhci.io/latestUpgrade"
CLEANUP = "harvesterhci.io/upgradeCleanup"
UPGRADE_LABEL = "harvesterhci.io/upgrade"
COMPONENT = "harvesterhci.io/upgradeComponent"
JOB_TYPE = "harvesterhci.io/upgradeJobType"
NODE_LABEL = "harvesterhci.io/node"
CREATOR = "harvesterhci.io/creator"
PENDING_OS_IMAGE = "harvesterhci.io/pendingOSImage"
IMAGE_CLEANUP_DONE = "harvesterhci.io/image-cleanup-plan-completed"
PLAN_LABEL = "upgrade.cattle.io/plan"
PLAN_NODE_LABEL = "upgrade.cattle.io/node"
UPGRADE_IMAGE = "rancher/harvester-upgrade"
JOB_TTL_SECONDS = 604800                # defaultTTLSecondsAfterFinished: keep jobs for 7 days
JOB_BACKOFF_LIMIT = 6                   # the Job API's default: Harvester sets none

# upgradeState values the controller assigns (StateCreatingUpgradeImage is defined but never assigned)
PREPARING_LOGGING_INFRA, LOGGING_INFRA_PREPARED = "PreparingLoggingInfra", "LoggingInfraPrepared"
PREPARING_REPO, REPO_PREPARED, PREPARING_NODES = "PreparingRepo", "RepoPrepared", "PreparingNodes"
UPGRADING_SYSTEM_SERVICES, UPGRADING_NODES = "UpgradingSystemServices", "UpgradingNodes"
SUCCEEDED, FAILED = "Succeeded", "Failed"

# per-node states (job_controller.go)
IMAGES_PRELOADING, IMAGES_PRELOADED = "Images preloading", "Images preloaded"
PRE_DRAINING, PRE_DRAINED, POST_DRAINING = "Pre-draining", "Pre-drained", "Post-draining"
WAITING_REBOOT = "Waiting Reboot"

NODE_TOLERATIONS: list[Obj] = [      # getDefaultTolerations()
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node-role.kubernetes.io/etcd", "operator": "Exists", "effect": "NoExecute"},
    {"key": "kubevirt.io/drain", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "CriticalAddonsOnly", "operator": "Exists"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "kubernetes.io/arch", "operator": "Equal", "effect": "NoSchedule", "value": "amd64"},
    {"key": "kubernetes.io/arch", "operator": "Equal", "effect": "NoSchedule", "value": "arm64"},
    {"key": "kubernetes.io/arch", "operator": "Equal", "effect": "NoSchedule", "value": "arm"},
]


def safe_concat_name(*parts: str) -> str:
    """wrangler `name.SafeConcatName`: join with "-"; past 63 characters cut and add a hash suffix."""
    full = "-".join(parts)
    if len(full) < 64:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()
    if full[56].isalnum() and not full[56].isupper():
        return full[:57] + "-" + digest[:5]
    return full[:56] + "-" + digest[:6]


def owner_reference(obj: Obj, *, controller: bool = False) -> Obj:
    """`upgradeReference` and its kin: apiVersion, kind, name and uid of the owner."""
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": obj["metadata"]["name"],
           "uid": obj["metadata"]["uid"]}
    if controller:
        ref.update(controller=True, blockOwnerDeletion=True)
    return ref


def pod_suffix() -> str:
    return uuid.uuid4().hex[:5]


class UpgradeObjects:
    """Reads and writes of the Upgrade and the objects it makes, on the simulator's store."""

    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator
        self.api: ObjectApi = simulator.api
        self.upgrades = self.api.lookup("harvesterhci.io", "v1beta1", "upgrades")

    def rtype(self, group: str, version: str, plural: str) -> Any:
        return self.api.lookup(group, version, plural)

    def upgrade(self, name: str) -> Obj:
        return self.api.get(self.upgrades, NAMESPACE, name)

    def mutate(self, name: str, change: Callable[[Obj], None]) -> Obj:
        return self.api.mutate(self.upgrades, NAMESPACE, name, change)

    def create(self, group: str, version: str, plural: str, obj: Obj) -> Obj:
        return self.api.create(self.rtype(group, version, plural), obj, keep_status=True)

    def delete_if_present(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> bool:
        rtype = self.rtype(group, version, plural)
        if self.api.find(rtype, namespace, name) is None:
            return False
        self.api.delete(rtype, namespace, name)
        return True

    # --- conditions (wrangler condition.Cond on the Upgrade) ------------------------------------
    def set_condition(self, name: str, ctype: str, status: str, reason: str | None = "",
                      message: str | None = "") -> None:
        """`set<Type>Condition`: SetStatus, Reason and Message, then `markComplete` (None leaves a field as it is)."""
        def change(obj: Obj) -> None:
            set_condition(obj, ctype, status, reason, message)
            if ctype != "Completed":
                mark_complete(obj)
        self.mutate(name, change)

    def create_unknown_if_not_exists(self, name: str, ctype: str) -> None:
        def change(obj: Obj) -> None:
            if condition_of(obj, ctype) is None:
                set_condition(obj, ctype, "Unknown", "", "")
        self.mutate(name, change)

    def state(self, name: str, state: str) -> None:
        self.mutate(name, lambda o: o["metadata"].setdefault("labels", {}).update({STATE: state}))

    def set_node_status(self, name: str, node: str, state: str, reason: str = "", message: str = "") -> None:
        """`setNodeUpgradeStatus`: a Failed node fails NodesUpgraded; all Succeeded while UpgradingNodes passes it."""
        def change(obj: Obj) -> None:
            statuses = obj.setdefault("status", {}).setdefault("nodeStatuses", {})
            entry: Obj = {"state": state}
            if reason:
                entry["reason"] = reason
            if message:
                entry["message"] = message
            statuses[node] = entry
            if state == FAILED:
                set_condition(obj, "NodesUpgraded", "False", reason, message)
            elif (obj["metadata"].get("labels") or {}).get(STATE) == UPGRADING_NODES and \
                    all(s.get("state") == SUCCEEDED for s in statuses.values()):
                set_condition(obj, "NodesUpgraded", "True", "", "")
            mark_complete(obj)
        self.mutate(name, change)

    # --- Jobs and their pods (the Job controller's visible effect) ------------------------------
    def start_job(self, job: Obj, node: str | None = None) -> tuple[Obj, str]:
        """Create a Job and its first pod (Running, on `node` if given); returns the Job and the pod name."""
        spec = {"backoffLimit": JOB_BACKOFF_LIMIT, "completions": 1, "parallelism": 1, **job["spec"]}
        created = self.create("batch", "v1", "jobs", {**job, "spec": spec,       # kube-apiserver's Job defaults
                                                      "status": {"active": 1, "startTime": rfc3339()}})
        return created, self.start_job_pod(created, node)

    def start_job_pod(self, job: Obj, node: str | None = None) -> str:
        """The Job controller's next pod of `job` (restartPolicy Never: a new pod per try)."""
        meta, template = job["metadata"], job["spec"]["template"]
        pod = f"{meta['name']}-{pod_suffix()}"
        spec = {**template["spec"]}
        if node:
            spec["nodeName"] = node
        containers = spec["containers"]
        now = rfc3339()
        self.create("", "v1", "pods", {
            "metadata": {"name": pod, "namespace": meta["namespace"],
                         "labels": {**(template.get("metadata") or {}).get("labels", {}), "job-name": meta["name"],
                                    "batch.kubernetes.io/job-name": meta["name"],
                                    "controller-uid": meta["uid"]},
                         "ownerReferences": [owner_reference(job, controller=True)]},
            "spec": spec,
            "status": {"phase": "Running", "startTime": now,
                       "containerStatuses": [{"name": c["name"], "image": c["image"], "ready": True,
                                              "restartCount": 0, "started": True,
                                              "state": {"running": {"startedAt": now}}} for c in containers]}})
        return pod

    def end_pod(self, namespace: str, pod: str, exit_code: int) -> None:
        pods = self.rtype("", "v1", "pods")

        def finish(obj: Obj) -> None:
            obj["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            for status in obj["status"].get("containerStatuses", []):
                status.update(ready=False, started=False, state={"terminated": {
                    "exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error",
                    "finishedAt": rfc3339()}})
        if self.api.find(pods, namespace, pod) is not None:
            self.api.mutate(pods, namespace, pod, finish)

    def end_job(self, namespace: str, job: str, succeeded: bool, failed_pods: int = 0) -> None:
        """The Job's terminal status as the Job controller writes it (Complete, or Failed with backoff)."""
        jobs = self.rtype("batch", "v1", "jobs")
        now = rfc3339()

        def finish(obj: Obj) -> None:
            status: Obj = {"startTime": obj.get("status", {}).get("startTime", now)}
            if succeeded:
                status.update(succeeded=1, completionTime=now, conditions=[
                    {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now}])
            else:
                status.update(failed=failed_pods, conditions=[
                    {"type": "Failed", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                     "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}])
            if failed_pods and succeeded:
                status["failed"] = failed_pods
            obj["status"] = status
        if self.api.find(jobs, namespace, job) is not None:
            self.api.mutate(jobs, namespace, job, finish)


# --- condition helpers on a plain Upgrade object ------------------------------------------------

def condition_of(obj: Obj, ctype: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == ctype), None)


def condition_status(obj: Obj, ctype: str) -> str:
    cond = condition_of(obj, ctype)
    return str(cond.get("status", "")) if cond else ""


def set_condition(obj: Obj, ctype: str, status: str, reason: str | None, message: str | None) -> None:
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    now = rfc3339()
    cond = condition_of(obj, ctype)
    if cond is None:
        cond = {"type": ctype}
        conditions.append(cond)
    if cond.get("status") != status:
        cond["lastTransitionTime"] = now
    cond["status"] = status
    if reason is not None:
        cond["reason"] = reason
    if message is not None:
        cond["message"] = message
    cond["lastUpdateTime"] = now


def mark_complete(obj: Obj) -> None:
    """`markComplete` (common.go): the status of Completed and the state label, never its reason or message."""
    labels = obj["metadata"].setdefault("labels", {})
    if condition_status(obj, "SystemServicesUpgraded") == "True" and condition_status(obj, "NodesUpgraded") == "True":
        set_condition(obj, "Completed", "True", None, None)
        labels[STATE] = SUCCEEDED
    if any(condition_status(obj, c) == "False"
           for c in ("ImageReady", "RepoReady", "SystemServicesUpgraded", "NodesUpgraded")):
        set_condition(obj, "Completed", "False", None, None)
        labels[STATE] = FAILED


def set_completed(obj: Obj, state: str, status: str, reason: str, message: str) -> None:
    """`setUpgradeCompletedCondition`: the label, and Completed with that reason and message."""
    obj["metadata"].setdefault("labels", {})[STATE] = state
    set_condition(obj, "Completed", status, reason, message)
