"""Harvester's upgrade controller, as far as a harness can observe it.

It walks the real sequence with the real names (facts §1.2, §1.5): conditions Completed (Unknown at
start), LogReady, ImageReady, RepoReady, NodesPrepared, SystemServicesUpgraded, NodesUpgraded; the
`harvesterhci.io/upgradeState` label; per-node states; the `<upgrade>-apply-manifests` Job whose pod
logs what `upgrade_manifests.sh` prints; node jobs; nodes rebooted one by one into the target OS.

The system-services stage reproduces the two behaviours that make an RC -> master upgrade hang:
Rancher installs its dependency charts only when the wanted version has higher semver precedence
than the installed one (build metadata after `+` is ignored), and `wait_helm_release` then waits,
with no timeout, for the exact chart string. Durations are simulated seconds (see SimClock).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver.clock import rfc3339
from ..apiserver.errors import ApiError
from ..apiserver.store import StoredEvent
from ..harvester.helm_releases import HelmReleases
from ..harvester.versions import HarvesterVersion, UnknownVersionError, compare_semver, get_version, is_semver
from .base import Controller

if TYPE_CHECKING:
    from ..twin import Twin

log = logging.getLogger(__name__)

NAMESPACE = "harvester-system"
STATE = "harvesterhci.io/upgradeState"
LATEST = "harvesterhci.io/latestUpgrade"
CLEANUP = "harvesterhci.io/upgradeCleanup"
UPGRADE_LABEL = "harvesterhci.io/upgrade"
COMPONENT = "harvesterhci.io/upgradeComponent"
JOB_TYPE = "harvesterhci.io/upgradeJobType"

# Simulated seconds each step takes (ILLUSTRATIVE: of the order a small lab cluster shows).
LOGGING_SECONDS = 20
IMAGE_SECONDS = 120
REPO_SECONDS = 90
PRELOAD_SECONDS_PER_NODE = 40
SCRIPT_STEP_SECONDS = 8
RANCHER_UPGRADE_SECONDS = 60
HELM_WAIT_INTERVAL = 5              # wait_helm_release sleeps 5 s between tries
DRAIN_SECONDS = 30
REBOOT_BUDGET_SECONDS = 1800        # the node job's patience for a node to come back
CLEANUP_SECONDS = 30

DEPENDENCIES = (("fleet", "cattle-fleet-system"), ("fleet-crd", "cattle-fleet-system"),
                ("rancher-webhook", "cattle-system"))


class UpgradeFailure(Exception):
    def __init__(self, condition: str, reason: str, message: str = ""):
        super().__init__(f"{condition}: {reason} {message}")
        self.condition, self.reason, self.message = condition, reason, message


class UpgradeController(Controller):
    watches = (("harvesterhci.io", "upgrades"),)

    def __init__(self, twin: "Twin") -> None:
        super().__init__(twin.api)
        self.twin = twin
        self.upgrades = twin.api.lookup("harvesterhci.io", "v1beta1", "upgrades")
        self.helm = HelmReleases(twin.api)
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._boot_ids: dict[str, str] = {}          # node -> boot id before its upgrade reboot

    async def handle(self, event: StoredEvent) -> None:
        name = event.object["metadata"]["name"]
        if event.type == "ADDED" and name not in self._running:
            task = asyncio.get_running_loop().create_task(self._run(name), name=f"upgrade-{name}")
            self._running[name] = task
            self.twin.track(task)
        elif event.type == "DELETED" and name in self._running:
            self._running.pop(name).cancel()

    # --- object helpers -----------------------------------------------------------------------
    def _mutate(self, name: str, change: Any) -> dict[str, Any]:
        return self.api.mutate(self.upgrades, NAMESPACE, name, change)

    def _condition(self, name: str, ctype: str, status: str, reason: str = "", message: str = "") -> None:
        def change(obj: dict[str, Any]) -> None:
            conditions = obj.setdefault("status", {}).setdefault("conditions", [])
            now = rfc3339()
            for cond in conditions:
                if cond["type"] == ctype:
                    if cond.get("status") != status:
                        cond["lastTransitionTime"] = now
                    cond.update(status=status, reason=reason, message=message, lastUpdateTime=now)
                    return
            conditions.append({"type": ctype, "status": status, "reason": reason, "message": message,
                               "lastTransitionTime": now, "lastUpdateTime": now})
        self._mutate(name, change)

    def _state(self, name: str, state: str, **labels: str) -> None:
        def change(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("labels", {}).update({STATE: state, **labels})
        self._mutate(name, change)

    def _node_state(self, name: str, node: str, state: str, reason: str = "", message: str = "") -> None:
        def change(obj: dict[str, Any]) -> None:
            entry = {"state": state}
            if reason:
                entry["reason"] = reason
            if message:
                entry["message"] = message
            obj.setdefault("status", {}).setdefault("nodeStatuses", {})[node] = entry
        self._mutate(name, change)

    def _current_version(self) -> str:
        settings = self.api.lookup("harvesterhci.io", "v1beta1", "settings")
        setting = self.api.find(settings, None, "server-version")
        return str((setting or {}).get("value") or self.twin.version.name)

    def _node_names(self) -> list[str]:
        nodes = self.api.lookup("", "v1", "nodes")
        return [n["metadata"]["name"] for n in self.api.list(nodes).items]

    def _create(self, group: str, version: str, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        rtype = self.api.lookup(group, version, plural)
        return self.api.create(rtype, obj, keep_status=True)

    # --- the sequence -------------------------------------------------------------------------
    async def _run(self, name: str) -> None:
        sleep = self.twin.clock.sleep
        try:
            upgrade = self.api.get(self.upgrades, NAMESPACE, name)
            target = self._target(upgrade)
            await self._initialise(name, upgrade)
            await self._logging(name, upgrade)
            self._state(name, "CreatingUpgradeImage")
            self._create_image(name, upgrade)
            await sleep(IMAGE_SECONDS)
            self._condition(name, "ImageReady", "True")
            self._condition(name, "RepoReady", "Unknown")
            self._state(name, "PreparingRepo")
            self._create_repo(name)
            await sleep(REPO_SECONDS)
            if target is None:
                raise UpgradeFailure("RepoReady", "RepoProvisionFailed",
                                     f"fail to get harvester-release.yaml from the upgrade repo of "
                                     f"{upgrade['spec'].get('version')}")
            self._record_repo_info(name, target)
            self._condition(name, "RepoReady", "True")
            self._state(name, "RepoPrepared")
            self._check_eligibility(name, upgrade, target)
            await self._prepare_nodes(name)
            await self._system_services(name, target)
            await self._upgrade_nodes(name, target)
            self._condition(name, "Completed", "True")
            self._state(name, "Succeeded", **{CLEANUP: "Pending"})
            await sleep(CLEANUP_SECONDS)
            self._cleanup(name)
            self._state(name, "Succeeded", **{CLEANUP: "Succeeded"})
        except UpgradeFailure as failure:
            self._condition(name, failure.condition, "False", failure.reason, failure.message)
            self._condition(name, "Completed", "False", failure.reason, failure.message)
            self._state(name, "Failed", **{CLEANUP: "Pending"})
        except ApiError as exc:
            if exc.code != 404:        # a deleted Upgrade simply stops; anything else is a twin bug
                log.exception("upgrade %s: API error", name)
        except asyncio.CancelledError:
            raise
        finally:
            self._running.pop(name, None)

    def _target(self, upgrade: dict[str, Any]) -> HarvesterVersion | None:
        try:
            return get_version(upgrade["spec"].get("version", ""))
        except UnknownVersionError:
            return None

    async def _initialise(self, name: str, upgrade: dict[str, Any]) -> None:
        for other in self.api.list(self.upgrades, NAMESPACE).items:
            if other["metadata"]["name"] != name and (other["metadata"].get("labels") or {}).get(LATEST) == "true":
                self.api.mutate(self.upgrades, NAMESPACE, other["metadata"]["name"],
                                lambda o: o["metadata"]["labels"].update({LATEST: "false"}))
        previous = self._current_version()

        def init(obj: dict[str, Any]) -> None:
            obj["metadata"].setdefault("labels", {}).update({STATE: "PreparingLoggingInfra", LATEST: "true"})
            obj.setdefault("status", {})["previousVersion"] = previous
        self._mutate(name, init)
        self._condition(name, "Completed", "Unknown")

    async def _logging(self, name: str, upgrade: dict[str, Any]) -> None:
        if upgrade["spec"].get("logEnabled", True) is False:
            self._condition(name, "LogReady", "False", "Disabled", "Upgrade observability is administratively disabled")
        else:
            self._condition(name, "LogReady", "Unknown")
            self._create("harvesterhci.io", "v1beta1", "upgradelogs", {
                "metadata": {"name": f"{name}-upgradelog", "namespace": NAMESPACE, "labels": {UPGRADE_LABEL: name}},
                "spec": {"upgradeName": name}})
            await self.twin.clock.sleep(LOGGING_SECONDS)
            self._condition(name, "LogReady", "True")
            self._mutate(name, lambda o: o.setdefault("status", {}).update(upgradeLog=f"{name}-upgradelog"))
        self._state(name, "LoggingInfraPrepared")
        self._condition(name, "ImageReady", "Unknown")

    def _create_image(self, name: str, upgrade: dict[str, Any]) -> None:
        self._create("harvesterhci.io", "v1beta1", "virtualmachineimages", {
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": {UPGRADE_LABEL: name}},
            "spec": {"displayName": f"harvester-{upgrade['spec'].get('version')}.iso", "sourceType": "download",
                     "url": f"upgrade-iso-of-{upgrade['spec'].get('version')}"}})
        self._mutate(name, lambda o: o.setdefault("status", {}).update(imageID=f"{NAMESPACE}/{name}"))

    def _create_repo(self, name: str) -> None:
        self._create("kubevirt.io", "v1", "virtualmachines", {
            "metadata": {"name": f"upgrade-repo-{name}", "namespace": NAMESPACE,
                         "labels": {UPGRADE_LABEL: name, COMPONENT: "repo"}},
            "spec": {"running": True, "template": {
                "metadata": {"labels": {UPGRADE_LABEL: name, COMPONENT: "repo"}},
                "spec": {"domain": {"cpu": {"cores": 1}, "resources": {"requests": {"memory": "1Gi"}},
                                    "devices": {"disks": [{"name": "iso", "cdrom": {"bus": "sata"}}]}},
                         "volumes": [{"name": "iso", "persistentVolumeClaim": {"claimName": name}}]}}}})

    def _record_repo_info(self, name: str, target: HarvesterVersion) -> None:
        release = target.release_file()
        repo_info = yaml.safe_dump({"release": release}, sort_keys=False)
        self._mutate(name, lambda o: o.setdefault("status", {}).update(repoInfo=repo_info))

    def _check_eligibility(self, name: str, upgrade: dict[str, Any], target: HarvesterVersion) -> None:
        """Harvester's version guard (facts §1.2), skipped with harvesterhci.io/skip-version-check."""
        annotations = upgrade["metadata"].get("annotations") or {}
        if annotations.get("harvesterhci.io/skip-version-check") == "true" or target.is_dev:
            return
        current = self._current_version()
        if not is_semver(current):
            return
        if compare_semver(current, target.name) > 0:
            raise UpgradeFailure("RepoReady", "downgrading is prohibited")
        minimum = target.min_upgradable_version
        if minimum and compare_semver(current, minimum) < 0:
            raise UpgradeFailure("RepoReady", "current version does not meet minimum upgrade requirement")
        core = lambda v: v.split("-")[0].rsplit(".", 1)[0]  # noqa: E731 - "v1.5" of "v1.5.0-rc2"
        if ("-" in current or "-" in target.name) and core(current) != core(target.name):
            raise UpgradeFailure("RepoReady", "cross-version upgrades from/to any prerelease version are prohibited")

    async def _prepare_nodes(self, name: str) -> None:
        self._state(name, "PreparingNodes")
        self._condition(name, "NodesPrepared", "Unknown")
        self._create("upgrade.cattle.io", "v1", "plans", {
            "metadata": {"name": f"{name}-prepare", "namespace": "cattle-system", "labels": {UPGRADE_LABEL: name}},
            "spec": {"concurrency": 1, "nodeSelector": {"matchLabels": {"harvesterhci.io/managed": "true"}},
                     "upgrade": {"image": f"rancher/harvester-upgrade:{name}",
                                 "command": ["do_upgrade_node.sh"], "args": ["prepare"]}}})
        for node in self._node_names():
            self._node_state(name, node, "Images preloading")
        for node in self._node_names():
            await self.twin.clock.sleep(PRELOAD_SECONDS_PER_NODE)
            self._node_state(name, node, "Images preloaded")
        self._condition(name, "NodesPrepared", "True")

    # --- system services: upgrade_manifests.sh -------------------------------------------------
    def _job_with_pod(self, name: str, job: str, container: str, labels: dict[str, str],
                      node: str | None = None) -> str:
        job_labels = {UPGRADE_LABEL: name, **labels}
        self._create("batch", "v1", "jobs", {
            "metadata": {"name": job, "namespace": NAMESPACE, "labels": job_labels},
            "spec": {"backoffLimit": 3, "template": {"metadata": {"labels": {**job_labels, "job-name": job}},
                                                     "spec": {"restartPolicy": "Never",
                                                              "containers": [{"name": container,
                                                                              "image": "rancher/harvester-upgrade"}]}}},
            "status": {"active": 1, "startTime": rfc3339()}})
        pod = f"{job}-{uuid.uuid4().hex[:5]}"
        spec: dict[str, Any] = {"restartPolicy": "Never",
                                "containers": [{"name": container, "image": "rancher/harvester-upgrade"}]}
        if node:
            spec["nodeName"] = node
        self._create("", "v1", "pods", {
            "metadata": {"name": pod, "namespace": NAMESPACE, "labels": {**job_labels, "job-name": job}},
            "spec": spec,
            "status": {"phase": "Running", "startTime": rfc3339(),
                       "containerStatuses": [{"name": container, "ready": True, "restartCount": 0,
                                              "image": "rancher/harvester-upgrade",
                                              "state": {"running": {"startedAt": rfc3339()}}}]}})
        return pod

    def _finish_job(self, job: str, pod: str, succeeded: bool = True) -> None:
        jobs, pods = self.api.lookup("batch", "v1", "jobs"), self.api.lookup("", "v1", "pods")
        phase = "Succeeded" if succeeded else "Failed"

        def finish_job(obj: dict[str, Any]) -> None:
            obj["status"] = {"succeeded" if succeeded else "failed": 1, "startTime": obj["status"].get("startTime"),
                             "completionTime": rfc3339(),
                             "conditions": [{"type": "Complete" if succeeded else "Failed", "status": "True",
                                             "lastTransitionTime": rfc3339()}]}

        def finish_pod(obj: dict[str, Any]) -> None:
            obj["status"]["phase"] = phase
            for status in obj["status"].get("containerStatuses", []):
                status["ready"] = False
                status["state"] = {"terminated": {"exitCode": 0 if succeeded else 1,
                                                  "reason": "Completed" if succeeded else "Error"}}

        self.api.mutate(jobs, NAMESPACE, job, finish_job)
        self.api.mutate(pods, NAMESPACE, pod, finish_pod)

    async def _system_services(self, name: str, target: HarvesterVersion) -> None:
        self._state(name, "UpgradingSystemServices")
        self._condition(name, "SystemServicesUpgraded", "Unknown")
        job = f"{name}-apply-manifests"
        pod = self._job_with_pod(name, job, "apply", {COMPONENT: "manifest"})
        say = lambda line: self.api.logs.append(NAMESPACE, pod, "apply", line)  # noqa: E731
        sleep = self.twin.clock.sleep
        release = target.release_file()
        say(f"Waiting for the upgrade repo upgrade-repo-{name} to serve harvester-release.yaml...")
        await sleep(SCRIPT_STEP_SECONDS)
        say(f"Upgrade repo ready: harvester {release['harvester']}, os {release['os']}, "
            f"kubernetes {release['kubernetes']}, rancher {release['rancher']}")
        for step in ("detect_upgrade", "pre_upgrade_manifest", "pause_all_charts", "skip_restart_rancher_system_agent"):
            say(f"Running {step}")
            await sleep(SCRIPT_STEP_SECONDS)
        await self._upgrade_rancher(name, target, say)
        for step in ("patch_local_cluster_details", "update_local_rke_state_secret", "upgrade_harvester_cluster_repo",
                     "upgrade_network", "apply_extra_nonversion_manifests"):
            say(f"Running {step}")
            await sleep(SCRIPT_STEP_SECONDS)
        say(f"Upgrading Harvester chart to {release['harvesterChart']}")
        self._upgrade_harvester(target)
        await sleep(RANCHER_UPGRADE_SECONDS)
        for step in ("wait_longhorn_upgrade", "upgrade_monitoring", "upgrade_logging_event_audit",
                     "apply_extra_manifests", "upgrade_addons", "upgrade_harvester_csi_rbac", "wait_for_fleet_bundles"):
            say(f"Running {step}")
            await sleep(SCRIPT_STEP_SECONDS)
        say("All system services are upgraded")
        self._finish_job(job, pod)
        self._condition(name, "SystemServicesUpgraded", "True")

    async def _upgrade_rancher(self, name: str, target: HarvesterVersion, say: Any) -> None:
        sleep = self.twin.clock.sleep
        rancher = target.rancher_version
        say(f"Upgrading Rancher to {rancher}")
        await sleep(RANCHER_UPGRADE_SECONDS)
        say(f"Wait for Rancher to be upgraded to {rancher}...")
        self._set_rancher_version(rancher)
        await sleep(SCRIPT_STEP_SECONDS)
        # Rancher itself installs its dependency charts, comparing by semver precedence.
        for release, namespace in DEPENDENCIES:
            wanted = target.rancher_dependencies[release]
            installed = self.helm.latest(namespace, release)
            have = installed["chart"]["metadata"]["version"] if installed else None
            if have is None or compare_semver(have, wanted.chart_version) < 0:
                self.helm.upgrade(namespace, release, wanted.chart_version, wanted.app_version,
                                  chart_name=release, description="Upgrade complete")
        say("Wait for Rancher dependencies helm releases...")
        for release, namespace in DEPENDENCIES:
            wanted = target.rancher_dependencies[release]
            await self._wait_helm_release(namespace, release, f"{release}-{wanted.chart_version}",
                                          wanted.app_version, say, target)

    async def _wait_helm_release(self, namespace: str, release: str, chart: str, app: str, say: Any,
                                 target: HarvesterVersion) -> None:
        """upgrade_manifests.sh's wait_helm_release: exact string equality, no timeout."""
        say(f"wait helm release {namespace} {release} {chart} {app} deployed")
        while True:
            latest = self.helm.latest(namespace, release)
            if latest is not None and HelmReleases.chart_string(latest) == chart and \
                    latest["chart"]["metadata"].get("appVersion") == app and latest["info"]["status"] == "deployed":
                break
            await self.twin.clock.sleep(HELM_WAIT_INTERVAL)
        if target.helm_wait_rolls_back_pending:
            say(f"completed helm release {namespace} {release} {chart} {app} deployed")

    def _set_rancher_version(self, rancher: str) -> None:
        settings = self.api.registry.get("management.cattle.io", "settings")
        if settings is not None and self.api.find(settings, None, "server-version") is not None:
            self.api.mutate(settings, None, "server-version", lambda o: o.update(value=rancher))

    def _upgrade_harvester(self, target: HarvesterVersion) -> None:
        settings = self.api.lookup("harvesterhci.io", "v1beta1", "settings")
        self.api.mutate(settings, None, "server-version", lambda o: o.update(value=target.name))
        charts = self.api.registry.get("management.cattle.io", "managedcharts")
        if charts is not None and self.api.find(charts, "fleet-local", "harvester") is not None:
            self.api.mutate(charts, "fleet-local", "harvester",
                            lambda o: o.setdefault("spec", {}).update(version=target.harvester_chart_version))

    # --- nodes -----------------------------------------------------------------------------------
    async def _upgrade_nodes(self, name: str, target: HarvesterVersion) -> None:
        self._state(name, "UpgradingNodes")
        self._condition(name, "NodesUpgraded", "Unknown")
        for node in self._node_names():
            await self._upgrade_node(name, node, target)
        self._condition(name, "NodesUpgraded", "True")

    async def _upgrade_node(self, name: str, node: str, target: HarvesterVersion) -> None:
        sleep = self.twin.clock.sleep
        self._node_state(name, node, "Pre-draining")
        job = f"{name}-pre-drain-{node}"
        pod = self._job_with_pod(name, job, "apply", {COMPONENT: "node", JOB_TYPE: "pre-drain",
                                                      "harvesterhci.io/node": node}, node)
        await sleep(DRAIN_SECONDS)
        self._finish_job(job, pod)
        self._node_state(name, node, "Pre-drained")
        await self._reboot_into(node, target)
        self._node_state(name, node, "Waiting Reboot")
        await self._until_ready_after_reboot(name, node)
        job = f"{name}-post-drain-{node}"
        pod = self._job_with_pod(name, job, "apply", {COMPONENT: "node", JOB_TYPE: "post-drain",
                                                      "harvesterhci.io/node": node}, node)
        self._node_state(name, node, "Post-draining")
        await sleep(DRAIN_SECONDS)
        self._finish_job(job, pod)
        self._node_state(name, node, "Succeeded")

    async def _reboot_into(self, node: str, target: HarvesterVersion) -> None:
        fleet = getattr(self.twin, "nodes", None)
        self._boot_ids[node] = self._boot_id(node)
        if fleet is not None:
            fleet.stage_os(node, target)
            fleet.set_rke2_version(node, target.rke2_version)
            fleet.power(node, "reboot")
        else:
            raise UpgradeFailure("NodesUpgraded", "NodeUpgradeFailed", f"node {node} cannot be rebooted by the twin")

    def _boot_id(self, node: str) -> str:
        nodes = self.api.lookup("", "v1", "nodes")
        obj = self.api.get(nodes, None, node)
        return str(((obj.get("status") or {}).get("nodeInfo") or {}).get("bootID", ""))

    async def _until_ready_after_reboot(self, name: str, node: str) -> None:
        nodes = self.api.lookup("", "v1", "nodes")
        waited = 0.0
        while waited < REBOOT_BUDGET_SECONDS:
            obj = self.api.get(nodes, None, node)
            ready = next((c.get("status") for c in (obj.get("status") or {}).get("conditions", [])
                          if c.get("type") == "Ready"), None)
            if ready == "True" and self._boot_id(node) != self._boot_ids.get(node):
                return
            await self.twin.clock.sleep(5)
            waited += 5
        self._node_state(name, node, "Failed", "NodeNotReady", f"node {node} did not come back after the reboot")
        raise UpgradeFailure("NodesUpgraded", "NodeNotReady", f"node {node} did not come back after the reboot")

    def _cleanup(self, name: str) -> None:
        """The cleanup job removes the upgrade's temporary objects (repo VM, image, plan)."""
        for group, version, plural, namespace, obj_name in (
                ("kubevirt.io", "v1", "virtualmachines", NAMESPACE, f"upgrade-repo-{name}"),
                ("harvesterhci.io", "v1beta1", "virtualmachineimages", NAMESPACE, name),
                ("upgrade.cattle.io", "v1", "plans", "cattle-system", f"{name}-prepare")):
            rtype = self.api.lookup(group, version, plural)
            if self.api.find(rtype, namespace, obj_name) is not None:
                self.api.delete(rtype, namespace, obj_name)


async def _release_file_route(request: Any, version: str) -> dict[str, Any]:
    """The upgrade repo's harvester-release.yaml of a version (what a mounted ISO would show)."""
    try:
        return get_version(version).release_file()
    except UnknownVersionError as exc:
        raise ApiError(404, "NotFound", str(exc)) from None


def install(twin: "Twin") -> None:
    controller = UpgradeController(twin)
    twin.spawn(controller.run, "upgrade-controller")
    twin.server.add_twin_route("GET", "/twin/v1/releases/{version}", _release_file_route)
