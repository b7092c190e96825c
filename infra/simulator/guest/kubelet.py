"""kube-scheduler's binding loop and the kubelets of the guest's nodes.

`Scheduling` binds pending pods with `scheduler.schedule` and, when nothing fits, records what
kube-scheduler records: `PodScheduled=False`, reason `Unschedulable`, its message, and a
`FailedScheduling` warning event. A `Kubelet` starts a bound pod once its volumes are attached
and mounted (see `storage.GuestStorage.volumes_ready`): `ContainerCreating` until then, Running
and Ready a few simulated seconds later. What runs in a Running container (exec, attach, served
ports) is the pod process model of `infra/simulator/pods`.
"""
from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from . import scheduler
from .objects import (
    Obj,
    condition,
    is_active,
    kind,
    mutate_if_changed,
    status_of,
    with_condition,
)

if TYPE_CHECKING:
    from .cluster import SimulatedGuestCluster

CONTAINER_START_SECONDS = 4.0       # simulated: image present, process up, readiness passed


class Scheduling:
    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.pods = kind(self.api, "v1", "pods")
        self.nodes = kind(self.api, "v1", "nodes")

    def reconcile(self) -> None:
        pods = self.api.list(self.pods).items
        nodes = [n for n in self.api.list(self.nodes).items
                 if (condition(n, "Ready") or {}).get("status") == "True"]
        placed = [p for p in pods if (p.get("spec") or {}).get("nodeName") and is_active(p)]
        pending = sorted((p for p in pods if not (p.get("spec") or {}).get("nodeName") and is_active(p)),
                         key=lambda p: (p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))
        for pod in pending:
            decision = scheduler.schedule(pod, nodes, placed)
            if decision.node is not None:
                bound = self._bind(pod, decision.node)
                placed.append(bound)
            else:
                self._unschedulable(pod, decision.message)

    def _bind(self, pod: Obj, node: str) -> Obj:
        def bind(obj: Obj) -> None:
            obj["spec"]["nodeName"] = node
            status = status_of(obj)
            status["conditions"] = with_condition(status.get("conditions"), "PodScheduled", "True", probe=True)
        bound = mutate_if_changed(self.api, self.pods, pod, bind)
        meta = pod["metadata"]
        self.guest.event(pod, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} "
                         f"to {node}", "default-scheduler")
        return bound

    def _unschedulable(self, pod: Obj, message: str) -> None:
        current = condition(pod, "PodScheduled") or {}
        if current.get("status") == "False" and current.get("message") == message:
            return

        def mark(obj: Obj) -> None:
            status = status_of(obj)
            status["phase"] = "Pending"
            status["conditions"] = with_condition(status.get("conditions"), "PodScheduled", "False",
                                                  "Unschedulable", message, probe=True)
        mutate_if_changed(self.api, self.pods, pod, mark)
        self.guest.event(pod, "Warning", "FailedScheduling", message, "default-scheduler")


class Kubelet:
    """All the guest's kubelets: each starts the pods bound to its node."""

    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.pods = kind(self.api, "v1", "pods")
        self._start_at: dict[str, float] = {}
        self._next_ip: dict[str, int] = {}

    def reconcile(self) -> None:
        nodes = {n["metadata"]["name"]: n for n in self.api.list(kind(self.api, "v1", "nodes")).items}
        live = set()
        for pod in self.api.list(self.pods).items:
            uid = pod["metadata"]["uid"]
            live.add(uid)
            node = nodes.get((pod.get("spec") or {}).get("nodeName") or "")
            if node is None or not is_active(pod) or (pod.get("status") or {}).get("phase") == "Running":
                continue
            ready, why = self.guest.storage.volumes_ready(pod)
            if not ready:
                self._waiting(pod, node, why)
                continue
            start_at = self._start_at.setdefault(uid, time.monotonic() + CONTAINER_START_SECONDS / self.guest.clock.scale)
            if time.monotonic() < start_at:
                self._waiting(pod, node, "")
                self.guest.runtime.after_real(start_at - time.monotonic())
                continue
            self._run(pod, node)
        for uid in list(self._start_at):
            if uid not in live:
                del self._start_at[uid]

    def _addresses(self, node: Obj) -> str:
        return next((a["address"] for a in (node.get("status") or {}).get("addresses") or []
                     if a.get("type") == "InternalIP"), "")

    def _waiting(self, pod: Obj, node: Obj, volume_problem: str) -> None:
        containers = (pod.get("spec") or {}).get("containers") or []

        def mark(obj: Obj) -> None:
            status = status_of(obj)
            status["hostIP"] = self._addresses(node)
            status.setdefault("startTime", rfc3339())
            status["conditions"] = with_condition(status.get("conditions"), "PodScheduled", "True", probe=True)
            status["conditions"] = with_condition(status["conditions"], "Ready", "False", "ContainersNotReady",
                                                  "containers with unready status: [" +
                                                  " ".join(c["name"] for c in containers) + "]", probe=True)
            status["containerStatuses"] = [
                {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": False, "started": False,
                 "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}} for c in containers]
        mutate_if_changed(self.api, self.pods, pod, mark)
        if volume_problem:
            self.guest.event_once(pod, "Warning", "FailedAttachVolume" if "attach" in volume_problem else "FailedMount",
                                  volume_problem, "kubelet")

    def _pod_ip(self, pod: Obj, node: Obj) -> str:
        if (pod.get("spec") or {}).get("hostNetwork"):
            return self._addresses(node)
        cidr = (node.get("spec") or {}).get("podCIDR", "10.42.0.0/24")
        prefix = cidr.rsplit(".", 1)[0]
        name = node["metadata"]["name"]
        host = self._next_ip.get(name, 2)
        self._next_ip[name] = host + 1 if host < 250 else 2
        return f"{prefix}.{host}"

    def _run(self, pod: Obj, node: Obj) -> None:
        containers = (pod.get("spec") or {}).get("containers") or []
        pod_ip = self._pod_ip(pod, node)
        now = rfc3339()

        def run(obj: Obj) -> None:
            status = status_of(obj)
            status.update(phase="Running", hostIP=self._addresses(node), podIP=pod_ip, podIPs=[{"ip": pod_ip}],
                          hostIPs=[{"ip": self._addresses(node)}])
            status.setdefault("startTime", now)
            conditions = status.get("conditions")
            for ctype in ("PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"):
                conditions = with_condition(conditions, ctype, "True", probe=True)
            status["conditions"] = conditions
            status["containerStatuses"] = [
                {"name": c["name"], "image": c.get("image", ""),
                 "imageID": f"docker.io/{c.get('image', '').split(':')[0]}@sha256:{uuid.uuid5(uuid.NAMESPACE_URL, c.get('image', '')).hex}",
                 "containerID": f"containerd://{uuid.uuid4().hex}", "ready": True, "started": True,
                 "restartCount": 0, "state": {"running": {"startedAt": now}}} for c in containers]
        try:
            mutate_if_changed(self.api, self.pods, pod, run)
        except errors.ApiError:
            return
        self.guest.event(pod, "Normal", "Started", "Started container " +
                         ", ".join(c["name"] for c in containers), "kubelet")
