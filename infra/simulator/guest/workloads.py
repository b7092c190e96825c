"""The guest's kube-controller-manager, as far as workloads go: Deployments, ReplicaSets, DaemonSets.

A Deployment owns one ReplicaSet per pod template (`<name>-<pod-template-hash>`); a template change
rolls out with RollingUpdate (maxSurge 25% rounded up, maxUnavailable 25% rounded down) or Recreate.
ReplicaSets create and delete pods (ownerReferences, `pod-template-hash`). DaemonSets create one pod
per eligible node, pinned by node affinity on `metadata.name` as the real controller does, and
replace outdated pods one at a time. Statuses and conditions are the ones `kubectl rollout status`
and `kubectl get` read.
"""
from __future__ import annotations

import copy
import math
import time
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from . import scheduler
from .objects import (
    Obj,
    is_active,
    is_pod_ready,
    kind,
    mutate_if_changed,
    owned_by,
    owner_reference,
    random_suffix,
    status_of,
    template_hash,
    with_condition,
)

if TYPE_CHECKING:
    from .cluster import SimulatedGuestCluster

DEFAULT_PROGRESS_DEADLINE = 600
# Added to every pod by the DefaultTolerationSeconds admission plugin.
DEFAULT_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
]
# Added to DaemonSet pods by the DaemonSet controller.
DAEMONSET_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
]


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = int(value[:-1]) * total / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def new_pod(template: Obj, owner: Obj, name: str, extra_labels: dict[str, str]) -> Obj:
    """A pod from a template, with the defaults the API server and admission plugins add."""
    meta = copy.deepcopy(template.get("metadata") or {})
    spec = copy.deepcopy(template.get("spec") or {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("securityContext", {})
    tolerations = spec.setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] for t in tolerations):
            tolerations.append(dict(default))
    for container in spec.get("containers") or []:
        container.setdefault("imagePullPolicy", "IfNotPresent")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "generateName": name.rsplit("-", 1)[0] + "-", "namespace": owner["metadata"]["namespace"],
                     "labels": {**(meta.get("labels") or {}), **extra_labels},
                     "annotations": dict(meta.get("annotations") or {}),
                     "ownerReferences": [owner_reference(owner)]},
        "spec": spec,
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


class Workloads:
    """One reconcile pass over the guest's Deployments, ReplicaSets and DaemonSets."""

    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.pods = kind(self.api, "v1", "pods")
        self.replicasets = kind(self.api, "apps/v1", "replicasets")
        self.deployments = kind(self.api, "apps/v1", "deployments")
        self.daemonsets = kind(self.api, "apps/v1", "daemonsets")
        self._rollout_started: dict[str, float] = {}
        # A namespace's pods as last listed, with the store's resourceVersion then: a reconcile pass asks for
        # the pods of every owner, and until something is written the listing cannot have changed.
        self._pods_listed: dict[str, tuple[int, list[Obj]]] = {}

    def reconcile(self) -> None:
        for deployment in self.api.list(self.deployments).items:
            self._deployment(deployment)
        for replicaset in self.api.list(self.replicasets).items:
            self._replicaset(replicaset)
        nodes = self.api.list(kind(self.api, "v1", "nodes")).items
        for daemonset in self.api.list(self.daemonsets).items:
            self._daemonset(daemonset, nodes)
        for deployment in self.api.list(self.deployments).items:
            self._deployment_status(deployment)

    # ---- Deployments ------------------------------------------------------------------------------
    def _pods_of(self, owner: Obj) -> list[Obj]:
        """The owner's active pods (read-only: the controllers write through the API, never into these)."""
        namespace, written = owner["metadata"]["namespace"], self.api.store.resource_version
        listed = self._pods_listed.get(namespace)
        if listed is None or listed[0] != written:
            listed = self._pods_listed[namespace] = (written, self.api.list(self.pods, namespace).items)
        return [p for p in owned_by(listed[1], owner) if is_active(p)]

    def _replicasets_of(self, deployment: Obj) -> list[Obj]:
        rss = self.api.list(self.replicasets, deployment["metadata"]["namespace"]).items
        return owned_by(rss, deployment)

    def _deployment(self, deployment: Obj) -> None:
        if deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        pod_hash = template_hash(template)
        owned = self._replicasets_of(deployment)
        new_rs = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get("pod-template-hash") == pod_hash),
                      None)
        old_rss = sorted((rs for rs in owned if rs is not new_rs),
                         key=lambda rs: rs["metadata"].get("creationTimestamp", ""))
        if new_rs is None:
            new_rs = self._create_replicaset(deployment, template, pod_hash, owned, replicas, old_rss)
            self._rollout_started[deployment["metadata"]["uid"]] = time.monotonic()
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate":
            if any(self._replicas(rs) for rs in old_rss):
                for rs in old_rss:
                    self._scale(rs, 0)
            elif not any(self._pods_of(rs) for rs in old_rss):
                self._scale(new_rs, replicas)
            return
        rolling = strategy.get("rollingUpdate") or {}
        max_surge = _int_or_percent(rolling.get("maxSurge", "25%"), replicas, True)
        max_unavailable = _int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, False)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        # scale the new ReplicaSet up within the surge
        total = sum(self._replicas(rs) for rs in owned if rs is not new_rs) + self._replicas(new_rs)
        current_new = self._replicas(new_rs)
        if current_new > replicas:
            target = replicas
        else:
            target = min(replicas, current_new + max(0, replicas + max_surge - total))
        if target != current_new:
            self._scale(new_rs, target)
        # scale old ReplicaSets down while enough pods stay available
        min_available = replicas - max_unavailable
        new_pods = self._pods_of(new_rs)
        new_unavailable = max(target - sum(1 for p in new_pods if is_pod_ready(p)), 0)
        all_pods = sum(len(self._pods_of(rs)) for rs in owned if rs is not new_rs) + len(new_pods)
        budget = all_pods - min_available - new_unavailable
        for rs in old_rss:           # first the old pods that are not available anyway
            if budget <= 0:
                break
            unhealthy = self._replicas(rs) - sum(1 for p in self._pods_of(rs) if is_pod_ready(p))
            cut = min(max(unhealthy, 0), budget)
            if cut:
                self._scale(rs, self._replicas(rs) - cut)
                budget -= cut
        available = sum(1 for rs in [*old_rss, new_rs] for p in self._pods_of(rs) if is_pod_ready(p))
        spare = available - min_available
        for rs in old_rss:
            if spare <= 0:
                break
            current = self._replicas(self.api.get(self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"]))
            cut = min(current, spare)
            if cut:
                self._scale(rs, current - cut)
                spare -= cut

    @staticmethod
    def _replicas(rs: Obj) -> int:
        return int((rs.get("spec") or {}).get("replicas", 0))

    def _scale(self, rs: Obj, replicas: int) -> None:
        def set_replicas(obj: Obj) -> None:
            obj["spec"]["replicas"] = replicas
        mutate_if_changed(self.api, self.replicasets, rs, set_replicas)

    def _create_replicaset(self, deployment: Obj, template: Obj, pod_hash: str, owned: list[Obj], replicas: int,
                           old_rss: list[Obj]) -> Obj:
        meta = deployment["metadata"]
        revision = 1 + max((int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                            for rs in owned), default=0)
        rs_template = copy.deepcopy(template)
        rs_template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = pod_hash
        selector = copy.deepcopy((deployment.get("spec") or {}).get("selector") or {})
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pod_hash
        initial = replicas if not old_rss else 0
        rs = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                         "labels": dict(rs_template["metadata"]["labels"]),
                         "annotations": {"deployment.kubernetes.io/revision": str(revision),
                                         "deployment.kubernetes.io/desired-replicas": str(replicas),
                                         "deployment.kubernetes.io/max-replicas": str(replicas + 1)},
                         "ownerReferences": [owner_reference(deployment)]},
            "spec": {"replicas": initial, "selector": selector, "template": rs_template},
        }
        created = self.api.create(self.replicasets, rs)

        def set_revision(obj: Obj) -> None:
            obj["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
        mutate_if_changed(self.api, self.deployments, deployment, set_revision)
        return created

    def _deployment_status(self, deployment: Obj) -> None:
        if deployment["metadata"].get("deletionTimestamp"):
            return
        spec = deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        pod_hash = template_hash(spec.get("template") or {})
        owned = self._replicasets_of(deployment)
        new_rs = next((rs for rs in owned if (rs["metadata"].get("labels") or {}).get("pod-template-hash") == pod_hash),
                      None)
        all_pods = [p for rs in owned for p in self._pods_of(rs)]
        new_pods = self._pods_of(new_rs) if new_rs else []
        ready = sum(1 for p in all_pods if is_pod_ready(p))
        rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = 0 if (spec.get("strategy") or {}).get("type") == "Recreate" else \
            _int_or_percent(rolling.get("maxUnavailable", "25%"), replicas, False)
        rs_name = new_rs["metadata"]["name"] if new_rs else deployment["metadata"]["name"]
        complete = (len(new_pods) == replicas and len(all_pods) == replicas
                    and sum(1 for p in new_pods if is_pod_ready(p)) == replicas)
        uid = deployment["metadata"]["uid"]
        deadline = int(spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE))
        if complete:
            self._rollout_started.pop(uid, None)
            progressing = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs_name}" has successfully progressed.')
        else:
            started = self._rollout_started.setdefault(uid, time.monotonic())
            elapsed = (time.monotonic() - started) * self.guest.clock.scale
            if elapsed > deadline:
                progressing = ("False", "ProgressDeadlineExceeded", f'ReplicaSet "{rs_name}" has timed out progressing.')
            else:
                progressing = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs_name}" is progressing.')
                self.guest.runtime.after(deadline - elapsed + 1)
        available_ok = ready >= replicas - max_unavailable

        def set_status(obj: Obj) -> None:
            status = status_of(obj)
            status.update(observedGeneration=obj["metadata"].get("generation", 1), replicas=len(all_pods),
                          updatedReplicas=len(new_pods), readyReplicas=ready, availableReplicas=ready)
            unavailable = max(replicas - ready, 0)
            if unavailable:
                status["unavailableReplicas"] = unavailable
            else:
                status.pop("unavailableReplicas", None)
            conditions = with_condition(status.get("conditions"), "Available", "True" if available_ok else "False",
                                        "MinimumReplicasAvailable" if available_ok else "MinimumReplicasUnavailable",
                                        "Deployment has minimum availability." if available_ok
                                        else "Deployment does not have minimum availability.", update_time=True)
            status["conditions"] = with_condition(conditions, "Progressing", *progressing, update_time=True)
        mutate_if_changed(self.api, self.deployments, deployment, set_status)

    # ---- ReplicaSets --------------------------------------------------------------------------------
    def _replicaset(self, rs: Obj) -> None:
        if rs["metadata"].get("deletionTimestamp"):
            return
        pods = self._pods_of(rs)
        wanted = self._replicas(rs)
        template = (rs.get("spec") or {}).get("template") or {}
        for _ in range(wanted - len(pods)):
            name = f"{rs['metadata']['name']}-{random_suffix()}"
            try:
                self.api.create(self.pods, new_pod(template, rs, name, {}))
            except errors.ApiError:
                pass
        if len(pods) > wanted:
            def deletion_rank(pod: Obj) -> tuple[int, int, str]:
                scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
                return (scheduled, 1 if is_pod_ready(pod) else 0, "~" + pod["metadata"].get("creationTimestamp", ""))
            for pod in sorted(pods, key=deletion_rank)[:len(pods) - wanted]:
                self._delete_pod(pod)
        pods = self._pods_of(rs)
        ready = sum(1 for p in pods if is_pod_ready(p))

        def set_status(obj: Obj) -> None:
            obj["status"] = {"replicas": len(pods), "fullyLabeledReplicas": len(pods), "readyReplicas": ready,
                             "availableReplicas": ready, "observedGeneration": obj["metadata"].get("generation", 1)}
        mutate_if_changed(self.api, self.replicasets, rs, set_status)

    def _delete_pod(self, pod: Obj) -> None:
        try:
            self.api.delete(self.pods, pod["metadata"]["namespace"], pod["metadata"]["name"])
        except errors.ApiError:
            pass

    # ---- DaemonSets ---------------------------------------------------------------------------------
    def _daemonset(self, ds: Obj, nodes: list[Obj]) -> None:
        if ds["metadata"].get("deletionTimestamp"):
            return
        template = copy.deepcopy((ds.get("spec") or {}).get("template") or {})
        revision = template_hash(template)
        pods = self._pods_of(ds)
        by_node: dict[str, list[Obj]] = {}
        for pod in pods:
            by_node.setdefault(_pinned_node(pod) or "", []).append(pod)
        eligible = [n for n in nodes if self._daemon_fits(template, n)]
        eligible_names = {n["metadata"]["name"] for n in eligible}
        for node in eligible:
            name = node["metadata"]["name"]
            if not by_node.get(name):
                self._create_daemon_pod(ds, template, revision, name)
        for node_name, node_pods in by_node.items():
            if node_name not in eligible_names:
                for pod in node_pods:
                    self._delete_pod(pod)
        # rolling update, maxUnavailable 1: replace one outdated pod while all others are available
        pods = self._pods_of(ds)
        outdated = [p for p in pods if (p["metadata"].get("labels") or {}).get("controller-revision-hash") != revision]
        unavailable = [p for p in pods if not is_pod_ready(p)]
        if outdated and not unavailable:
            self._delete_pod(sorted(outdated, key=lambda p: p["metadata"]["name"])[0])
        pods = self._pods_of(ds)
        scheduled = [p for p in pods if (p.get("spec") or {}).get("nodeName")]
        ready = sum(1 for p in pods if is_pod_ready(p))
        updated = sum(1 for p in scheduled
                      if (p["metadata"].get("labels") or {}).get("controller-revision-hash") == revision)

        def set_status(obj: Obj) -> None:
            status = {"currentNumberScheduled": len(scheduled), "desiredNumberScheduled": len(eligible),
                      "numberMisscheduled": 0, "numberReady": ready, "numberAvailable": ready,
                      "updatedNumberScheduled": updated, "observedGeneration": obj["metadata"].get("generation", 1)}
            if len(eligible) - ready > 0:
                status["numberUnavailable"] = len(eligible) - ready
            obj["status"] = status
        mutate_if_changed(self.api, self.daemonsets, ds, set_status)

    @staticmethod
    def _daemon_fits(template: Obj, node: Obj) -> bool:
        probe = {"metadata": {"name": "probe", "namespace": "", "labels": {}},
                 "spec": {**(template.get("spec") or {}),
                          "tolerations": [*((template.get("spec") or {}).get("tolerations") or []),
                                          *DAEMONSET_TOLERATIONS]}}
        return scheduler.untolerated_taint(probe, node) is None and scheduler.matches_node_affinity(probe, node)

    def _create_daemon_pod(self, ds: Obj, template: Obj, revision: str, node: str) -> None:
        pod_template = copy.deepcopy(template)
        spec = pod_template.setdefault("spec", {})
        tolerations = spec.setdefault("tolerations", [])
        for default in DAEMONSET_TOLERATIONS:
            if not any(t.get("key") == default["key"] and t.get("effect") == default["effect"] for t in tolerations):
                tolerations.append(dict(default))
        pin = {"key": "metadata.name", "operator": "In", "values": [node]}
        affinity = spec.setdefault("affinity", {})
        node_affinity = affinity.setdefault("nodeAffinity", {})
        required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
        terms = required.get("nodeSelectorTerms") or [{}]
        required["nodeSelectorTerms"] = [{**t, "matchFields": [pin]} for t in terms]
        name = f"{ds['metadata']['name']}-{random_suffix()}"
        labels = {"controller-revision-hash": revision,
                  "pod-template-generation": str(ds["metadata"].get("generation", 1))}
        try:
            self.api.create(self.pods, new_pod(pod_template, ds, name, labels))
        except errors.ApiError:
            pass


def _pinned_node(pod: Obj) -> str | None:
    """The node a DaemonSet pod is pinned to (its matchFields term), else where it runs."""
    required = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    for term in required.get("nodeSelectorTerms") or []:
        for field in term.get("matchFields") or []:
            if field.get("key") == "metadata.name" and field.get("values"):
                return field["values"][0]
    return (pod.get("spec") or {}).get("nodeName")
