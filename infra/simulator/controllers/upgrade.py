"""Harvester's upgrade controller: one Upgrade from its creation to the end of its cleanup.

harvester/harvester `pkg/controller/master/upgrade/upgrade_controller.go` `OnChanged` (the same flow at
every simulated tag and at ce188325; see the other `upgrade_*` modules for each stage):

1. init: `latestUpgrade` removed from the other Upgrades (`resetLatestUpgradeLabel` deletes the label),
   labels PreparingLoggingInfra and `latestUpgrade=true`, `status.previousVersion` = server-version,
   Completed Unknown; the UpgradeLog (or LogReady False/Disabled); LoggingInfraPrepared.
2. ImageReady: the VirtualMachineImage from the Version's isoURL and isoChecksum (`upgrade_repo`).
3. RepoReady: the repo VM and Service, label PreparingRepo; the repo pod turns Ready: RepoPrepared.
4. `status.singleNode`, `status.repoInfo` (yaml.v2 of the seven HarvesterRelease keys), the version guard
   (`harvester.version_guard`), then NodesPrepared through the prepare Plan (`upgrade_nodes`).
5. SystemServicesUpgraded: Job `<upgrade>-apply-manifests` (`upgrade_manifests`).
6. NodesUpgraded: the RKE2 upgrade with drain hooks, or the `single-node-upgrade` Job.
7. Completed through `markComplete`; then, for the latest Upgrade, image cleanup and `cleanup()`.

Failures: an error of the controller itself sets Completed False with the error as reason
(`setUpgradeCompletedCondition(StateFailed, False, err, "")`) and leaves RepoReady as it is; a failed
image, Job or node fails its own condition and `markComplete` sets Completed False with an empty reason.
A failed Upgrade is cleaned up too (repo VM and image, Plans). `harvesterhci.io/upgradeCleanup` is set only
by versions that have it (v1.7.0 on: none of the simulated ones). There is no timeout anywhere: a stuck
step stays stuck. Durations are simulated seconds (see SimClock).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver.errors import ApiError
from ..apiserver.store import StoredEvent
from ..harvester import version_guard
from ..harvester.release_iso import ReleaseServer
from ..harvester.versions import HarvesterVersion, UnknownVersionError, get_version, version_of_release
from ..nodes import NodeNotSimulated
from .base import Controller
from .upgrade_common import (CLEANUP, COMPONENT, FAILED, IMAGE_CLEANUP_DONE, JOB_BACKOFF_LIMIT, JOB_TTL_SECONDS,
                             LATEST, LOGGING_INFRA_PREPARED, NAMESPACE, NODE_TOLERATIONS, PLAN_LABEL,
                             PREPARING_LOGGING_INFRA, PREPARING_NODES, PREPARING_REPO, REPO_PREPARED, STATE,
                             SUC_NAMESPACE, SUCCEEDED, UPGRADE_IMAGE, UPGRADE_LABEL, UPGRADING_NODES,
                             UPGRADING_SYSTEM_SERVICES, IMAGES_PRELOADED, Obj, UpgradeObjects, condition_status,
                             mark_complete, owner_reference, set_completed)
from .upgrade_manifests import ManifestScript
from .upgrade_nodes import InvalidUpgradeConfig, NodeStages, preload_concurrency
from .upgrade_repo import IsoDownloader, RepoInfoError, UpgradeImage, UpgradeRepo

if TYPE_CHECKING:
    from ..simulator import Simulator

log = logging.getLogger(__name__)

LOGGING_SECONDS = 20            # ILLUSTRATIVE: the upgrade log infrastructure comes up
CLEANUP_SECONDS = 30            # ILLUSTRATIVE: the image cleanup Plan's Jobs
JOB_RETRY_SECONDS = 10          # the Job controller's first pod back-off (doubling, capped at 6 min)
RELEASE_KEYS = ("harvester", "harvesterChart", "os", "kubernetes", "rancher", "monitoringChart",
                "minUpgradableVersion")    # repoinfo.HarvesterRelease, in field order


class StopUpgrade(Exception):
    """The Upgrade reached Completed=False; the failed-upgrade cleanup runs."""


def repo_info_text(release: Obj) -> str:
    """`RepoInfo.Marshall`: yaml.v2 of {Release: HarvesterRelease}; the field is `release`, empty keys omitted."""
    lines = ["release:"]
    for key in RELEASE_KEYS:
        value = release.get(key)
        if value in (None, ""):
            continue
        text = str(value)
        try:
            plain = yaml.safe_load(text) == text
        except yaml.YAMLError:
            plain = False
        lines.append(f"  {key}: {text}" if plain else f'  {key}: "{text}"')
    return "\n".join(lines) + "\n"


class UpgradeController(Controller):
    watches = (("harvesterhci.io", "upgrades"),)

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.simulator = simulator
        self.objects = UpgradeObjects(simulator)
        self.image = UpgradeImage(self.objects, IsoDownloader(simulator))
        self.nodes = NodeStages(self.objects)
        self._running: dict[str, asyncio.Task[Any]] = {}
        self._repos: dict[str, UpgradeRepo] = {}
        self.releases: ReleaseServer | None = None

    async def handle(self, event: StoredEvent) -> None:
        name = event.object["metadata"]["name"]
        if event.type == "ADDED" and name not in self._running:
            task = asyncio.get_running_loop().create_task(self._run(name), name=f"upgrade-{name}")
            self._running[name] = task
            self.simulator.track(task)
        elif event.type == "DELETED":
            task = self._running.pop(name, None)
            if task is not None:
                task.cancel()
            self._cleanup(event.object, clean_jobs=True)        # OnRemove

    # --- the sequence -------------------------------------------------------------------------------
    async def _run(self, name: str) -> None:
        try:
            await self._upgrade(name)
        except StopUpgrade:
            self._cleanup(self.objects.upgrade(name), clean_jobs=False)
        except NodeNotSimulated as exc:
            # --this-machine: the node stage needs a simulated machine; the Upgrade fails saying why
            log.warning("upgrade %s: %s", name, exc.message)
            self.objects.mutate(name, lambda o: set_completed(o, FAILED, "False", exc.message, ""))
            self._cleanup(self.objects.upgrade(name), clean_jobs=False)
        except ApiError as exc:
            if exc.code != 404:        # a deleted Upgrade simply stops; anything else is a simulator bug
                log.exception("upgrade %s: API error", name)
        finally:
            self._running.pop(name, None)

    def _fail(self, name: str, reason: str) -> None:
        """setUpgradeCompletedCondition(StateFailed, False, reason, "")."""
        self.objects.mutate(name, lambda o: set_completed(o, FAILED, "False", reason, ""))
        raise StopUpgrade(reason)

    def _stop_if_failed(self, name: str) -> None:
        if condition_status(self.objects.upgrade(name), "Completed") == "False":
            raise StopUpgrade(name)

    async def _upgrade(self, name: str) -> None:
        self._initialise(name)
        await self._logging(name)
        upgrade = self.objects.upgrade(name)
        image_obj = self._create_image(name, upgrade)
        iso = await self.image.import_iso(image_obj["metadata"]["name"]) if image_obj is not None else None
        self._stop_if_failed(name)
        if iso is None:
            return
        repo = UpgradeRepo(self.objects, upgrade)
        self._repos[name] = repo
        repo.bootstrap(self.objects.upgrade(name), self.api.get(self.image.images, NAMESPACE, name),
                       self.simulator.version.behaviour_tag)
        self.objects.state(name, PREPARING_REPO)
        self.objects.create_unknown_if_not_exists(name, "RepoReady")
        if not await repo.boot(iso):
            await asyncio.Event().wait()                   # the repo pod never turns Ready: RepoReady stays Unknown
        self.objects.state(name, REPO_PREPARED)            # podHandler
        self.objects.set_condition(name, "RepoReady", "True")
        info = self._repo_info_and_eligibility(name, repo)
        await self._prepare_nodes(name)
        target = version_of_release(str(info.get("harvester", "")))
        await self._system_services(name, repo, info, target)
        self._stop_if_failed(name)
        assert target is not None
        await self._upgrade_nodes(name, info, target)
        self._stop_if_failed(name)
        if condition_status(self.objects.upgrade(name), "Completed") == "True":
            await self._after_success(name, repo)

    def _initialise(self, name: str) -> None:
        for other in self.api.list(self.objects.upgrades, NAMESPACE, label_selector=f"{LATEST}=true").items:
            if other["metadata"]["name"] != name:
                self.api.mutate(self.objects.upgrades, NAMESPACE, other["metadata"]["name"],
                                lambda o: o["metadata"]["labels"].pop(LATEST, None))
        previous = self._server_version()

        def init(obj: Obj) -> None:
            obj["metadata"].setdefault("labels", {}).update({STATE: PREPARING_LOGGING_INFRA, LATEST: "true"})
            obj.setdefault("status", {})["previousVersion"] = previous
        self.objects.mutate(name, init)
        self.objects.create_unknown_if_not_exists(name, "Completed")

    def _server_version(self) -> str:
        settings = self.api.lookup("harvesterhci.io", "v1beta1", "settings")
        setting = self.api.find(settings, None, "server-version")
        return str((setting or {}).get("value") or (setting or {}).get("default") or "")

    async def _logging(self, name: str) -> None:
        upgrade = self.objects.upgrade(name)
        if upgrade["spec"].get("logEnabled", True) is False:
            self.objects.set_condition(name, "LogReady", "False", "Disabled",
                                       "Upgrade observability is administratively disabled")
        else:
            self.objects.create("harvesterhci.io", "v1beta1", "upgradelogs", {
                "metadata": {"name": f"{name}-upgradelog", "namespace": NAMESPACE, "labels": {UPGRADE_LABEL: name},
                             "ownerReferences": [owner_reference(upgrade)]},
                "spec": {"upgradeName": name}})
            self.objects.mutate(name, lambda o: o.setdefault("status", {}).update(upgradeLog=f"{name}-upgradelog"))
            self.objects.create_unknown_if_not_exists(name, "LogReady")
            await self.simulator.clock.sleep(LOGGING_SECONDS)
            self.objects.set_condition(name, "LogReady", "True")        # the upgradelog controller
        self.objects.state(name, LOGGING_INFRA_PREPARED)

    def _create_image(self, name: str, upgrade: Obj) -> Obj | None:
        spec = upgrade.get("spec") or {}
        if spec.get("image"):
            namespace, _, image_name = str(spec["image"]).partition("/")
            if not image_name:
                self._fail(name, f"Invalid image format {spec['image']}")
            found = self.api.find(self.image.images, namespace, image_name)
            if found is None:
                self._fail(name, f'virtualmachineimages.harvesterhci.io "{image_name}" not found')
            assert found is not None
            self.api.mutate(self.image.images, namespace, image_name,
                            lambda o: o["metadata"].setdefault("labels", {}).update({UPGRADE_LABEL: name}))
            self.objects.mutate(name, lambda o: o.setdefault("status", {}).update(imageID=f"{namespace}/{image_name}"))
            self.objects.create_unknown_if_not_exists(name, "ImageReady")
            return found
        versions = self.api.lookup("harvesterhci.io", "v1beta1", "versions")
        version = self.api.find(versions, NAMESPACE, str(spec.get("version", "")))
        if version is None:
            self._fail(name, f'versions.harvesterhci.io "{spec.get("version", "")}" not found')
        assert version is not None
        image = self.image.create(upgrade, version)
        self.objects.mutate(name, lambda o: o.setdefault("status", {}).update(imageID=f"{NAMESPACE}/{name}"))
        self.objects.create_unknown_if_not_exists(name, "ImageReady")
        return image

    def _repo_info_and_eligibility(self, name: str, repo: UpgradeRepo) -> Obj:
        nodes = self.nodes.node_names()
        single = nodes[0] if len(nodes) == 1 else ""
        self.objects.mutate(name, lambda o: o.setdefault("status", {}).update(singleNode=single))
        try:
            info = repo.info()
        except RepoInfoError as exc:
            self._fail(name, str(exc))
        text = repo_info_text(info)
        self.objects.mutate(name, lambda o: o["status"].update(repoInfo=text))
        upgrade = self.objects.upgrade(name)
        if not version_guard.skips_version_check(upgrade["metadata"].get("annotations") or {}):
            try:
                version_guard.check(str(upgrade["status"].get("previousVersion", "")),
                                    str(info.get("harvester", "") or ""),
                                    str(info.get("minUpgradableVersion", "") or ""))
            except version_guard.EligibilityError as exc:
                self._fail(name, str(exc))
        return info

    async def _prepare_nodes(self, name: str) -> None:
        settings = self.api.lookup("harvesterhci.io", "v1beta1", "settings")
        setting = self.api.find(settings, None, "upgrade-config") or {}
        value = str(setting.get("value") or setting.get("default") or "")
        nodes = self.nodes.node_names()
        try:
            concurrency = preload_concurrency(value, len(nodes))
        except InvalidUpgradeConfig:
            await asyncio.Event().wait()         # the handler errors and is requeued, forever
            return
        if concurrency is None:                   # the skip strategy
            for node in nodes:
                self.objects.set_node_status(name, node, IMAGES_PRELOADED)
            self.objects.state(name, PREPARING_NODES)
            self.objects.set_condition(name, "NodesPrepared", "True")
            return
        plan = self.nodes.prepare_plan(self.objects.upgrade(name), concurrency)
        self.objects.state(name, PREPARING_NODES)
        self.objects.create_unknown_if_not_exists(name, "NodesPrepared")
        from .upgrade_nodes import PRELOAD_SECONDS
        await self.nodes.run_plan(name, plan, track_nodes=True, job_seconds=PRELOAD_SECONDS)
        self.objects.set_condition(name, "NodesPrepared", "True")       # planHandler

    # --- system services ------------------------------------------------------------------------------
    def _manifest_job(self, upgrade: Obj, release_harvester: str) -> Obj:
        """`applyManifestsJob`: no backoffLimit of its own (kube-apiserver defaults it to 6)."""
        name = upgrade["metadata"]["name"]
        labels = {UPGRADE_LABEL: name, COMPONENT: "manifest"}
        return {"metadata": {"name": f"{name}-apply-manifests", "namespace": NAMESPACE, "labels": labels,
                             "ownerReferences": [owner_reference(upgrade)]},
                "spec": {"ttlSecondsAfterFinished": JOB_TTL_SECONDS,
                         "template": {"metadata": {"labels": labels}, "spec": {
                             "restartPolicy": "Never", "serviceAccountName": "harvester",
                             "tolerations": NODE_TOLERATIONS,
                             "containers": [{"name": "apply", "image": f"{UPGRADE_IMAGE}:{release_harvester}",
                                             "command": ["upgrade_manifests.sh"],
                                             "env": [{"name": "HARVESTER_UPGRADE_NAME", "value": name}]}]}}}}

    async def _system_services(self, name: str, repo: UpgradeRepo, info: Obj,
                               target: HarvesterVersion | None) -> None:
        upgrade = self.objects.upgrade(name)
        job, pod = self.objects.start_job(self._manifest_job(upgrade, str(info.get("harvester", ""))))
        self.objects.state(name, UPGRADING_SYSTEM_SERVICES)
        self.objects.set_condition(name, "SystemServicesUpgraded", "Unknown")
        if target is None:
            # no such image for the simulator to run: the pod stays in ErrImagePull / ImagePullBackOff
            self._image_pull_backoff(pod, f"{UPGRADE_IMAGE}:{info.get('harvester', '')}")
            await asyncio.Event().wait()
        failures, delay = 0, JOB_RETRY_SECONDS
        while True:
            script = ManifestScript(self.objects, name, repo, target,
                                    lambda line, p=pod: self.api.logs.append(NAMESPACE, p, "apply", line))
            code = await script.run()
            self.objects.end_pod(NAMESPACE, pod, code)
            if code == 0:
                self.objects.end_job(NAMESPACE, job["metadata"]["name"], True, failures)
                self.objects.set_condition(name, "SystemServicesUpgraded", "True")      # syncManifestJob
                return
            failures += 1
            if failures > JOB_BACKOFF_LIMIT:
                self.objects.end_job(NAMESPACE, job["metadata"]["name"], False, failures)
                self.objects.set_condition(name, "SystemServicesUpgraded", "False", "BackoffLimitExceeded",
                                           "Job has reached the specified backoff limit")
                return
            await self.simulator.clock.sleep(delay)
            delay = min(delay * 2, 360)
            pod = self.objects.start_job_pod(self.api.get(self.api.lookup("batch", "v1", "jobs"), NAMESPACE,
                                                          job["metadata"]["name"]))

    def _image_pull_backoff(self, pod: str, image: str) -> None:
        pods = self.api.lookup("", "v1", "pods")

        def waiting(obj: Obj) -> None:
            obj["status"]["phase"] = "Pending"
            for status in obj["status"].get("containerStatuses", []):
                status.update(ready=False, started=False, state={"waiting": {
                    "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}})
        self.api.mutate(pods, NAMESPACE, pod, waiting)

    # --- nodes ----------------------------------------------------------------------------------------
    async def _upgrade_nodes(self, name: str, info: Obj, target: HarvesterVersion) -> None:
        upgrade = self.objects.upgrade(name)
        single = str((upgrade.get("status") or {}).get("singleNode") or "")
        if not single:
            self._upgrade_kubernetes(str(info.get("kubernetes", "")))
        self.objects.state(name, UPGRADING_NODES)
        self.objects.create_unknown_if_not_exists(name, "NodesUpgraded")
        if single:
            await self.nodes.single_node(upgrade, info, single, target)
        else:
            await self.nodes.multi_node(upgrade, info, target)

    def _upgrade_kubernetes(self, version: str) -> None:
        """`upgradeKubernetes`: the provisioning cluster's kubernetesVersion and the drain hooks in rkeConfig."""
        clusters = self.api.registry.get("provisioning.cattle.io", "clusters")
        if clusters is None or self.api.find(clusters, "fleet-local", "local") is None:
            return
        hooks = {"preDrainHooks": [{"annotation": "harvesterhci.io/pre-hook"}],
                 "postDrainHooks": [{"annotation": "harvesterhci.io/post-hook"}]}
        drain = {"deleteEmptyDirData": True, "enabled": True, "force": True, "ignoreDaemonSets": True, **hooks}

        def change(obj: Obj) -> None:
            spec = obj.setdefault("spec", {})
            spec["kubernetesVersion"] = version
            rke = spec.setdefault("rkeConfig", {})
            rke["provisionGeneration"] = int(rke.get("provisionGeneration", 0)) + 1
            rke["upgradeStrategy"] = {"controlPlaneConcurrency": "1", "workerConcurrency": "1",
                                      "controlPlaneDrainOptions": dict(drain), "workerDrainOptions": dict(drain)}
        self.api.mutate(clusters, "fleet-local", "local", change)

    # --- the end --------------------------------------------------------------------------------------
    async def _after_success(self, name: str, repo: UpgradeRepo) -> None:
        """Image pruning through `<upgrade>-cleanup`, then `cleanup(upgrade, true)` (latest Upgrade only)."""
        upgrade = self.objects.upgrade(name)
        if (upgrade["metadata"].get("labels") or {}).get(LATEST) != "true":
            return
        images = self._images_to_purge(upgrade, repo)
        if images:
            plan = self.objects.create("upgrade.cattle.io", "v1", "plans", {
                "metadata": {"name": f"{name}-cleanup", "namespace": SUC_NAMESPACE,
                             "labels": {UPGRADE_LABEL: name, COMPONENT: "cleanup"}},
                "spec": {"concurrency": len((upgrade.get("status") or {}).get("nodeStatuses") or {}),
                         "version": name, "nodeSelector": {"matchLabels": {"harvesterhci.io/managed": "true"}},
                         "serviceAccountName": "system-upgrade-controller",
                         "upgrade": {"image": f"{UPGRADE_IMAGE}:{upgrade['status'].get('previousVersion', '')}",
                                     "command": ["sh", "-c", "<imageCleanupScript>"],
                                     "envs": [{"name": "IMAGES", "value": " ".join(images)}]}}})
            await self.nodes.run_plan(name, plan, track_nodes=False, job_seconds=CLEANUP_SECONDS)
        self.objects.mutate(name, lambda o: o["metadata"].setdefault("annotations", {})
                            .update({IMAGE_CLEANUP_DONE: "true"}))
        self._cleanup(self.objects.upgrade(name), clean_jobs=True)

    @staticmethod
    def _images_to_purge(upgrade: Obj, repo: UpgradeRepo) -> list[str]:
        """getImagesDiffList: previous version's list minus the current one, less the retain list."""
        previous = repo.read(f"harvester-iso/bundle/harvester/images-lists-archive/"
                             f"{upgrade['status'].get('previousVersion', '')}/image_list_all.txt")
        current = repo.read("harvester-iso/bundle/harvester/images-lists-archive/current/image_list_all.txt")
        if previous is None or current is None:
            return []                  # "unexpected status: 404 Not Found": marked done, cleanup goes on
        keep = set(current.decode().split())
        diff = [i for i in previous.decode().split() if i not in keep]
        for retained in ("rancher/harvester-upgrade", "longhornio/longhorn-engine",
                         "longhornio/longhorn-instance-manager", "rancher/mirrored-banzaicloud-fluentd",
                         "rancher/mirrored-fluent-fluent-bit"):
            for index, image in enumerate(diff):
                if retained in image:
                    diff.pop(index)
                    break
        return diff

    def _cleanup(self, upgrade: Obj, *, clean_jobs: bool) -> None:
        """`cleanup()`: repo VM and image, rkeConfig reset, Plans (and their Jobs), UpgradeEnded."""
        name = upgrade["metadata"]["name"]
        repo = self._repos.pop(name, None) or UpgradeRepo(self.objects, upgrade)
        repo.delete_vm(str((upgrade.get("status") or {}).get("imageID") or ""))
        clusters = self.api.registry.get("provisioning.cattle.io", "clusters")
        if clusters is not None and self.api.find(clusters, "fleet-local", "local") is not None:
            def reset(obj: Obj) -> None:
                rke = obj.setdefault("spec", {}).get("rkeConfig") or {}
                obj["spec"]["rkeConfig"] = {k: v for k, v in {"provisionGeneration": rke.get("provisionGeneration"),
                                                                "registries": rke.get("registries")}.items()
                                            if v is not None}
            self.api.mutate(clusters, "fleet-local", "local", reset)
        plans = self.api.lookup("upgrade.cattle.io", "v1", "plans")
        jobs = self.api.lookup("batch", "v1", "jobs")
        for plan in self.api.list(plans, SUC_NAMESPACE, label_selector=f"{UPGRADE_LABEL}={name}").items:
            if clean_jobs:
                for job in self.api.list(jobs, SUC_NAMESPACE,
                                         label_selector=f"{PLAN_LABEL}={plan['metadata']['name']}").items:
                    self.api.delete(jobs, SUC_NAMESPACE, job["metadata"]["name"])
            self.api.delete(plans, SUC_NAMESPACE, plan["metadata"]["name"])
        if self._controller_version().at_least("v1.5.1"):
            self._resume_managed_charts()
        self._end_upgrade_log(upgrade)
        if self._controller_version().sets_upgrade_cleanup_label:
            self.objects.mutate(name, lambda o: o["metadata"]["labels"].update({CLEANUP: SUCCEEDED}))

    def _controller_version(self) -> HarvesterVersion:
        """The Harvester whose controller runs now: server-version's release (it changes mid-upgrade)."""
        current = self._server_version()
        try:
            return get_version(current)
        except UnknownVersionError:
            return self.simulator.version

    def _resume_managed_charts(self) -> None:
        """v1.5.1/v1.5.2 `resumeManagedCharts`: un-pause the four charts the script may have left paused."""
        charts = self.api.registry.get("management.cattle.io", "managedcharts")
        if charts is None:
            return
        for chart in self.api.list(charts, "fleet-local").items:
            if chart["metadata"]["name"] in ("harvester", "harvester-crd", "rancher-logging-crd",
                                             "rancher-monitoring-crd") and (chart.get("spec") or {}).get("paused"):
                self.api.mutate(charts, "fleet-local", chart["metadata"]["name"],
                                lambda o: o["spec"].update(paused=False))

    def _end_upgrade_log(self, upgrade: Obj) -> None:
        log_name = str((upgrade.get("status") or {}).get("upgradeLog") or "")
        if condition_status(upgrade, "LogReady") != "True" or not log_name:
            return
        logs = self.api.lookup("harvesterhci.io", "v1beta1", "upgradelogs")
        if self.api.find(logs, NAMESPACE, log_name) is None:
            return

        def ended(obj: Obj) -> None:
            from .upgrade_common import set_condition
            set_condition(obj, "UpgradeEnded", "True", "", "")
        self.api.mutate(logs, NAMESPACE, log_name, ended)


def install(simulator: "Simulator") -> None:
    releases = ReleaseServer(simulator.server)     # the ISOs a Version can name, on the simulator's own listener
    releases.install()
    simulator.releases = releases
    controller = UpgradeController(simulator)
    controller.releases = releases
    simulator.spawn(controller.run, "upgrade-controller")


__all__ = ["UpgradeController", "install", "mark_complete", "repo_info_text"]
