"""The node stages: image preloading (the prepare Plan) and the per-node upgrade (drain hooks or one Job).

harvester/harvester `pkg/controller/master/upgrade` (identical at every simulated tag and ce188325):

* `preparePlan` (common.go): Plan `<upgrade>-prepare` in cattle-system, image
  `rancher/harvester-upgrade:<status.previousVersion>`, `do_upgrade_node.sh prepare`, version = the
  Upgrade's name, concurrency from the `upgrade-config` setting, jobActiveDeadlineSecs 3600. The
  system-upgrade-controller runs one Job per node (`apply-<plan>-on-<node>-with-<hash>`, `concurrency` at a
  time); `syncPlanJob` marks the node "Images preloading" while its Job is active and "Images preloaded"
  when it completes; `planHandler` sets NodesPrepared when every selected node carries the plan's hash.
* multi-node (`upgradeKubernetes`): Rancher upgrades RKE2 one control-plane node at a time and calls the
  drain hooks through the machine-plan Secret: `rke.cattle.io/pre-drain` -> the pre-drain Job ("Pre-draining",
  then "Pre-drained" and `harvesterhci.io/pre-hook`) -> Rancher drains the node and upgrades RKE2 ->
  `rke.cattle.io/post-drain` -> the post-drain Job ("Post-draining"; it upgrades the OS and, once it has
  succeeded, reboots the host) -> "Waiting Reboot" with the node annotation `harvesterhci.io/pendingOSImage`
  -> the node reports the new OS: "Succeeded" and `harvesterhci.io/post-hook` (secret_controller.go,
  job_controller.go, node_controller.go; Rancher pkg/capr/planner/drain.go, machinedrain).
* single node (`status.singleNode`): one `single-node-upgrade` Job upgrades RKE2 and the OS, no drain hooks.
* VMs (`kubevirt.harvester_upgrade`, from upgrade_node.sh): the pre-drain Job stops the VMs Harvester cannot
  migrate, taints the node `kubevirt.io/drain` (KubeVirt live-migrates the rest away) and ends only when no VM is
  left there; the post-drain Job lifts the taint before the OS upgrade and reboot; the single-node Job stops
  every VM first. The Job's pod log has the script's lines.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from ..harvester.versions import HarvesterVersion
from .upgrade_common import (COMPONENT, IMAGES_PRELOADED, IMAGES_PRELOADING, JOB_TTL_SECONDS, JOB_TYPE, NAMESPACE,
                             NODE_LABEL, NODE_TOLERATIONS, PENDING_OS_IMAGE, PLAN_LABEL, PLAN_NODE_LABEL,
                             POST_DRAINING, PRE_DRAINED, PRE_DRAINING, SUCCEEDED, SUC_NAMESPACE, UPGRADE_IMAGE,
                             UPGRADE_LABEL, WAITING_REBOOT, Obj, UpgradeObjects, owner_reference, safe_concat_name)


PRELOAD_SECONDS = 40            # ILLUSTRATIVE: one node's image preload
HOOK_JOB_SECONDS = 30           # ILLUSTRATIVE: a pre-drain or post-drain Job
RKE2_UPGRADE_SECONDS = 30       # ILLUSTRATIVE: Rancher drains the node and restarts RKE2 on it
NODE_POLL_SECONDS = 5
PREPARE_DEADLINE_SECONDS = 3600  # defaultPrepareDeadlineSeconds
PLAN_SECRET_TYPE = "rke.cattle.io/machine-plan"
RKE_PRE_DRAIN, RKE_POST_DRAIN = "rke.cattle.io/pre-drain", "rke.cattle.io/post-drain"
HARVESTER_PRE_HOOK, HARVESTER_POST_HOOK = "harvesterhci.io/pre-hook", "harvesterhci.io/post-hook"
DEFAULT_UPGRADE_CONFIG = '{"imagePreloadOption":{"strategy":{"type":"sequential"}}, "restoreVM": false}'

SUC_TOLERATIONS: list[Obj] = [t for t in NODE_TOLERATIONS if t["key"] not in
                              ("node.kubernetes.io/unschedulable", "node.kubernetes.io/unreachable")]


class InvalidUpgradeConfig(Exception):
    """prepareNodesForUpgrade returns this error; the handler is requeued and the stage does not start."""


def preload_concurrency(setting_value: str, node_count: int) -> int | None:
    """The Plan's concurrency for the upgrade-config setting; None for the `skip` strategy."""
    try:
        config = json.loads(setting_value or DEFAULT_UPGRADE_CONFIG)
    except ValueError as exc:
        raise InvalidUpgradeConfig(str(exc)) from None
    strategy = ((config.get("imagePreloadOption") or {}).get("strategy") or {})
    kind = strategy.get("type", "")
    if kind == "skip":
        return None
    if kind == "sequential":
        return 1
    if kind == "parallel":
        concurrency = int(strategy.get("concurrency", 0) or 0)
        if concurrency < 0:
            raise InvalidUpgradeConfig(f"invalid image preload strategy concurrency: {concurrency}")
        return node_count if concurrency == 0 or concurrency > node_count else concurrency
    raise InvalidUpgradeConfig(f"invalid image preload strategy type: {kind}")


def plan_hash(plan: Obj) -> str:
    """SUC's plan `latestHash` (a digest of the plan's version and secrets; the input here is ILLUSTRATIVE)."""
    return hashlib.sha224(json.dumps(plan["spec"], sort_keys=True).encode()).hexdigest()


class NodeStages:
    def __init__(self, objects: UpgradeObjects) -> None:
        self.objects = objects
        self.api = objects.api
        self.clock = objects.simulator.clock
        self.nodes = self.api.lookup("", "v1", "nodes")

    def node_names(self) -> list[str]:
        return sorted(n["metadata"]["name"] for n in self.api.list(self.nodes).items)

    # --- image preloading -----------------------------------------------------------------------------
    def prepare_plan(self, upgrade: Obj, concurrency: int) -> Obj:
        name = upgrade["metadata"]["name"]
        return self.objects.create("upgrade.cattle.io", "v1", "plans", {
            "metadata": {"name": f"{name}-prepare", "namespace": SUC_NAMESPACE,
                         "labels": {UPGRADE_LABEL: name, COMPONENT: "node"}},
            "spec": {"concurrency": concurrency, "jobActiveDeadlineSecs": PREPARE_DEADLINE_SECONDS,
                     "version": name, "nodeSelector": {"matchLabels": {"harvesterhci.io/managed": "true"}},
                     "serviceAccountName": "system-upgrade-controller", "tolerations": SUC_TOLERATIONS,
                     "upgrade": {"image": f"{UPGRADE_IMAGE}:{upgrade['status'].get('previousVersion', '')}",
                                 "command": ["do_upgrade_node.sh"], "args": ["prepare"],
                                 "envs": [{"name": "HARVESTER_UPGRADE_NAME", "value": name}]}}})

    async def run_plan(self, upgrade_name: str, plan: Obj, *, track_nodes: bool, job_seconds: float) -> None:
        """The system-upgrade-controller applying `plan`: Jobs per node, `concurrency` at a time."""
        plans = self.objects.rtype("upgrade.cattle.io", "v1", "plans")
        digest = plan_hash(plan)
        plan_name = plan["metadata"]["name"]
        self.api.mutate(plans, SUC_NAMESPACE, plan_name,
                        lambda o: o.setdefault("status", {}).update(latestVersion=plan["spec"]["version"],
                                                                     latestHash=digest))
        nodes = self.node_names()
        concurrency = max(1, int(plan["spec"].get("concurrency", 1)))
        for start in range(0, len(nodes), concurrency):
            batch = nodes[start:start + concurrency]
            await asyncio.gather(*(self._plan_job(upgrade_name, plan, node, digest, track_nodes, job_seconds)
                                   for node in batch))

    async def _plan_job(self, upgrade_name: str, plan: Obj, node: str, digest: str, track_nodes: bool,
                        job_seconds: float) -> None:
        plan_name = plan["metadata"]["name"]
        job_name = safe_concat_name("apply", plan_name, "on", node, "with", digest)
        upgrade = plan["spec"]["upgrade"]
        job, pod = self.objects.start_job({
            "metadata": {"name": job_name, "namespace": SUC_NAMESPACE,
                         "labels": {PLAN_LABEL: plan_name, PLAN_NODE_LABEL: node,
                                    "upgrade.cattle.io/version": plan["spec"]["version"]},
                         "ownerReferences": [owner_reference(plan, controller=True)]},
            "spec": {"backoffLimit": 2, "activeDeadlineSeconds": plan["spec"].get("jobActiveDeadlineSecs"),
                     "template": {"metadata": {"labels": {PLAN_LABEL: plan_name, PLAN_NODE_LABEL: node}},
                                  "spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "upgrade", "image": upgrade["image"],
                                                           "command": upgrade.get("command", []),
                                                           "args": upgrade.get("args", []),
                                                           "env": upgrade.get("envs", [])}]}}}}, node)
        if track_nodes and self._upgrade_state(upgrade_name) == "PreparingNodes":
            self.objects.set_node_status(upgrade_name, node, IMAGES_PRELOADING)
        await self.clock.sleep(job_seconds)
        self.objects.end_pod(SUC_NAMESPACE, pod, 0)
        self.objects.end_job(SUC_NAMESPACE, job_name, True)
        if track_nodes and self._upgrade_state(upgrade_name) == "PreparingNodes":
            self.objects.set_node_status(upgrade_name, node, IMAGES_PRELOADED)
        self.api.mutate(self.nodes, None, node,
                        lambda o: o["metadata"].setdefault("labels", {}).update({f"plan.upgrade.cattle.io/{plan_name}":
                                                                                  digest}))
        del job

    def _upgrade_state(self, upgrade_name: str) -> str:
        return (self.objects.upgrade(upgrade_name)["metadata"].get("labels") or {}).get("harvesterhci.io/upgradeState", "")

    # --- node Jobs ----------------------------------------------------------------------------------
    def node_job(self, upgrade: Obj, release_harvester: str, node: str, job_type: str) -> Obj:
        """`applyNodeJob`."""
        name = upgrade["metadata"]["name"]
        return {
            "metadata": {"name": safe_concat_name(name, job_type, node), "namespace": NAMESPACE,
                         "labels": {UPGRADE_LABEL: name, COMPONENT: "node", NODE_LABEL: node, JOB_TYPE: job_type},
                         "ownerReferences": [owner_reference(upgrade)]},
            "spec": {"ttlSecondsAfterFinished": JOB_TTL_SECONDS, "template": {
                "metadata": {"labels": {UPGRADE_LABEL: name, COMPONENT: "node", JOB_TYPE: job_type}},
                "spec": {"hostIPC": True, "hostPID": True, "hostNetwork": True,
                         "dnsPolicy": "ClusterFirstWithHostNet", "restartPolicy": "Never",
                         "serviceAccountName": "harvester", "tolerations": NODE_TOLERATIONS,
                         "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                             "nodeSelectorTerms": [{"matchExpressions": [
                                 {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
                         "containers": [{"name": "apply", "image": f"{UPGRADE_IMAGE}:{release_harvester}",
                                         "command": ["do_upgrade_node.sh"], "args": [job_type],
                                         "env": [{"name": "HARVESTER_UPGRADE_NAME", "value": name},
                                                 {"name": "HARVESTER_UPGRADE_NODE_NAME", "value": node},
                                                 {"name": "HARVESTER_UPGRADE_POD_NAME",
                                                  "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                                         "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                                         "securityContext": {"privileged": True,
                                                             "capabilities": {"add": ["CAP_SYS_BOOT"]}}}],
                         "volumes": [{"name": "host-root", "hostPath": {"path": "/", "type": "Directory"}}]}}}}

    async def run_node_job(self, upgrade: Obj, info: Obj, node: str, job_type: str,
                           target: HarvesterVersion) -> None:
        """A node Job runs to completion (do_upgrade_node.sh retries forever; it does not fail on its own)."""
        job, pod = self.objects.start_job(self.node_job(upgrade, str(info.get("harvester", "")), node, job_type), node)
        fleet = self.objects.simulator.nodes
        await self._vms(job_type, node, pod)
        if job_type == "single-node-upgrade" and fleet is not None:
            await self.clock.sleep(RKE2_UPGRADE_SECONDS)
            self._upgrade_rke2(node, str(info.get("kubernetes", "")))
        await self.clock.sleep(HOOK_JOB_SECONDS)
        if job_type in ("post-drain", "single-node-upgrade") and fleet is not None and \
                info.get("os") != self._os_image(node):
            fleet.stage_os(node, target)                 # upgrade_os: elemental upgrade, active on next boot
        self.objects.end_pod(NAMESPACE, pod, 0)
        self.objects.end_job(NAMESPACE, job["metadata"]["name"], True)

    async def _vms(self, job_type: str, node: str, pod: str) -> None:
        """The Job's VM steps (`kubevirt.harvester_upgrade`): pre-drain empties the node of VMs (waiting as long as
        that takes), post-drain lifts KubeVirt's drain taint, the single-node Job stops every VM."""
        from .. import kubevirt

        def say(line: str) -> None:
            self.api.logs.append(NAMESPACE, pod, "apply", line)
        simulator = self.objects.simulator
        if job_type == "pre-drain":
            await kubevirt.pre_drain(simulator, node, say)
        elif job_type == "post-drain":
            kubevirt.post_drain(simulator, node, say)
        elif job_type == "single-node-upgrade":
            await kubevirt.single_node_shutdown(simulator, node, say)

    def _os_image(self, node: str) -> str:
        return str(((self.api.get(self.nodes, None, node).get("status") or {}).get("nodeInfo") or {})
                   .get("osImage", ""))

    def _upgrade_rke2(self, node: str, version: str) -> None:
        fleet = self.objects.simulator.nodes
        if fleet is not None and version:
            fleet.set_rke2_version(node, version)
            self.api.mutate(self.nodes, None, node, lambda o: o.setdefault("status", {}).setdefault(
                "nodeInfo", {}).update(kubeletVersion=version, kubeProxyVersion=version))

    async def after_job(self, upgrade_name: str, info: Obj, node: str) -> None:
        """syncNodeJob for a finished post-drain / single-node Job, then the reboot and nodeHandler."""
        if info.get("os") == self._os_image(node):
            self.objects.set_node_status(upgrade_name, node, SUCCEEDED)
            return
        self.objects.set_node_status(upgrade_name, node, WAITING_REBOOT)
        self.api.mutate(self.nodes, None, node,
                        lambda o: o["metadata"].setdefault("annotations", {}).update({PENDING_OS_IMAGE: info.get("os")}))
        fleet = self.objects.simulator.nodes
        if fleet is not None:
            fleet.power(node, "reboot")                  # reboot_if_job_succeed: a host service reboots
        while self._os_image(node) != info.get("os"):   # nodeHandler: no timeout
            await self.clock.sleep(NODE_POLL_SECONDS)
        self.objects.set_node_status(upgrade_name, node, SUCCEEDED)

        def clear(obj: Obj) -> None:
            (obj["metadata"].get("annotations") or {}).pop(PENDING_OS_IMAGE, None)
        self.api.mutate(self.nodes, None, node, clear)

    # --- multi-node: Rancher's RKE2 upgrade with Harvester's drain hooks ------------------------------
    async def multi_node(self, upgrade: Obj, info: Obj, target: HarvesterVersion) -> None:
        name = upgrade["metadata"]["name"]
        drain = _drain_options()
        for node in self.node_names():          # ControlPlaneConcurrency "1": one node at a time
            secret = self._plan_secret(node)
            if secret is None:                  # secretHandler finds no machine: Rancher's drain waits forever
                await asyncio.Event().wait()
            self._annotate_secret(secret, {RKE_PRE_DRAIN: drain})
            self.objects.set_node_status(name, node, PRE_DRAINING)
            await self.run_node_job(upgrade, info, node, "pre-drain", target)
            self.objects.set_node_status(name, node, PRE_DRAINED)
            self._annotate_secret(secret, {HARVESTER_PRE_HOOK: drain})
            self._cordon(node, True)
            await self.clock.sleep(RKE2_UPGRADE_SECONDS)
            self._upgrade_rke2(node, str(info.get("kubernetes", "")))
            self._annotate_secret(secret, {RKE_POST_DRAIN: drain})
            self.objects.set_node_status(name, node, POST_DRAINING)
            await self.run_node_job(upgrade, info, node, "post-drain", target)
            await self.after_job(name, info, node)
            self._annotate_secret(secret, {HARVESTER_POST_HOOK: drain})
            self._cordon(node, False)
            self._annotate_secret(secret, {RKE_PRE_DRAIN: None, RKE_POST_DRAIN: None})

    async def single_node(self, upgrade: Obj, info: Obj, node: str, target: HarvesterVersion) -> None:
        await self.run_node_job(upgrade, info, node, "single-node-upgrade", target)
        await self.after_job(upgrade["metadata"]["name"], info, node)

    def _plan_secret(self, node: str) -> Obj | None:
        annotations = self.api.get(self.nodes, None, node)["metadata"].get("annotations") or {}
        machine = annotations.get("cluster.x-k8s.io/machine", "")
        secrets = self.api.lookup("", "v1", "secrets")
        found = [s for s in self.api.list(secrets, "fleet-local", label_selector=f"rke.cattle.io/machine-name={machine}")
                 .items if s.get("type") == PLAN_SECRET_TYPE]
        return found[0] if len(found) == 1 else None

    def _annotate_secret(self, secret: Obj, changes: dict[str, Any]) -> None:
        secrets = self.api.lookup("", "v1", "secrets")

        def change(obj: Obj) -> None:
            annotations = obj["metadata"].setdefault("annotations", {})
            for key, value in changes.items():
                if value is None:
                    annotations.pop(key, None)
                else:
                    annotations[key] = value
        self.api.mutate(secrets, "fleet-local", secret["metadata"]["name"], change)

    def _cordon(self, node: str, cordoned: bool) -> None:
        def change(obj: Obj) -> None:
            if cordoned:
                obj.setdefault("spec", {})["unschedulable"] = True
            else:
                obj.setdefault("spec", {}).pop("unschedulable", None)
        self.api.mutate(self.nodes, None, node, change)


def _drain_options() -> str:
    """Rancher's drain annotation value: the DrainOptions upgradeKubernetes sets, as sorted JSON (drain.go)."""
    return json.dumps({"deleteEmptyDirData": True, "disableEviction": False, "enabled": True, "force": True,
                       "gracePeriod": 0, "ignoreDaemonSets": True, "ignoreErrors": False,
                       "postDrainHooks": [{"annotation": HARVESTER_POST_HOOK}],
                       "preDrainHooks": [{"annotation": HARVESTER_PRE_HOOK}],
                       "skipWaitForDeleteTimeoutSeconds": 0, "timeout": 0}, separators=(",", ":"))
