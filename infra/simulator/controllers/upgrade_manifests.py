"""The `<upgrade>-apply-manifests` pod: harvester/harvester `package/upgrade/upgrade_manifests.sh` and `lib.sh`.

The pod runs the *target's* script (image `rancher/harvester-upgrade:<repoInfo.release.harvester>`). The
simulator prints what that script prints, step by step in its order, and does to the simulator's objects what the
step does (pause and upgrade the ManagedCharts, `helm upgrade rancher`, Rancher's own chart decisions,
the Harvester charts, `server-version`). Script versions (`md5sum` of the files at the tags):

* lib.sh: v1.4.2 = v1.4.3; v1.5.0-rc2 = v1.5.0 = ce188325; v1.5.1 = v1.5.2.
* upgrade_manifests.sh: v1.5.0 = ce188325, v1.5.1 = v1.5.2; v1.4.2, v1.4.3, v1.5.0-rc2 each differ.

What is printed comes from the script's `echo` lines and from the one-line outputs of the commands it
runs (`kubectl patch/create/delete/label`, `kubectl rollout status`, `helm upgrade`, `curl -sfL` of the
release file in `wait_repo`). Multi-line command output whose content the simulator does not model (kubectl
tables, `helm get values` of charts other than rancher, the rancher chart's NOTES body, wharfie's and
kubectl apply's object lists, the pre-hook scripts' inner output) is left out. Steps acting on objects
the simulator does not serve (KubeVirt, Longhorn instance managers, add-ons, fleet clusters, the cluster-repo
Deployment) print the healthy cluster's lines and change nothing. The two waits that matter for the
stories are real: `Wait for Rancher to be upgraded` on settings.management.cattle.io `server-version`,
and `wait_helm_release` on the Helm release records (exact strings, 5 s, no timeout).
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import yaml

from ..harvester.helm_releases import HelmReleases
from ..harvester.rancher_system_charts import decide
from ..harvester.versions import HarvesterVersion, compare_semver, rancher_dependencies_of
from .upgrade_common import NAMESPACE, SUC_NAMESPACE, Obj, UpgradeObjects

if TYPE_CHECKING:
    from .upgrade_repo import UpgradeRepo

Say = Callable[[str], None]

STEP_SECONDS = 8                 # ILLUSTRATIVE: a script step's simulated duration
RANCHER_HELM_SECONDS = 60        # ILLUSTRATIVE: `helm upgrade rancher --wait`
RANCHER_SETTLE_SECONDS = 15      # ILLUSTRATIVE: new Rancher pods report server-version after --wait returns
CHART_SECONDS = 40               # ILLUSTRATIVE: fleet rolls out a ManagedChart
HELM_WAIT_INTERVAL = 5           # wait_helm_release sleeps 5 s between tries
RANCHER_WAIT_INTERVAL = 5        # `until ... server-version ...; do echo ...; sleep 5`
PLAN_POLL_SECONDS = 10           # skip_restart_rancher_system_agent polls the plan every 10 s
MANAGED_CHARTS = ("harvester", "harvester-crd", "rancher-monitoring-crd", "rancher-logging-crd")
PRE_HOOK_VERSIONS = ("v1.0.0", "v1.0.3", "v1.4.0", "v1.4.2")  # migrations/upgrade_manifests/<v>/pre-hook.sh
FEATURES = "multi-cluster-management=false,multi-cluster-management-agent=false,managed-system-upgrade-controller=false"
DEPENDENCY_WAITS = (("cattle-fleet-system", "fleet"), ("cattle-fleet-system", "fleet-crd"),
                    ("cattle-system", "rancher-webhook"))


class ScriptExit(Exception):
    """The script stops with this exit code (bash -e, or an explicit exit)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class ScriptVariant:
    """What differs between the target tags' scripts (git diff of package/upgrade between the tags)."""

    tag: str

    def at_least(self, tag: str) -> bool:
        return compare_semver(self.tag, tag) >= 0

    @property
    def fleet_agent_kind(self) -> str:
        """fleet-agent is a StatefulSet for fleet 0.10/0.11 (v1.4.x scripts), a Deployment again from v1.5.0-rc2."""
        return "deployment" if self.at_least("v1.5.0-rc2") else "statefulset"

    @property
    def applies_nonversion_manifests(self) -> bool:
        return self.at_least("v1.5.0-rc2")

    @property
    def applies_whereabouts(self) -> bool:
        return self.at_least("v1.5.0-rc2") and not self.at_least("v1.5.1")

    @property
    def instance_manager_engine_suffix(self) -> bool:
        """check_instance_manager with "(aio)(v1)" texts: v1.4.3, v1.5.0, ce188325 and later; not v1.5.0-rc2."""
        return self.tag != "v1.5.0-rc2" and self.at_least("v1.4.3")

    @property
    def addon_echo_uses_dash(self) -> bool:
        return self.at_least("v1.5.0-rc2")


def _tmp_name(suffix: str = ".yaml") -> str:
    """mktemp's /tmp/tmp.XXXXXXXXXX<suffix>."""
    return "/tmp/tmp." + "".join(random.choices(string.ascii_letters + string.digits, k=10)) + suffix


class ManifestScript:
    """One run of upgrade_manifests.sh in the pod; `run()` returns the exit code."""

    def __init__(self, objects: UpgradeObjects, upgrade_name: str, repo: "UpgradeRepo", target: HarvesterVersion,
                 say: Say) -> None:
        self.objects = objects
        self.api = objects.api
        self.clock = objects.simulator.clock
        self.name = upgrade_name
        self.repo = repo
        self.target = target
        self.variant = ScriptVariant(target.behaviour_tag)
        self.say = say
        self.helm = HelmReleases(self.api)
        self.repo_url = f"http://upgrade-repo-{upgrade_name}.{NAMESPACE}/harvester-iso"
        self.release: dict[str, Any] = {}
        self.previous = ""

    async def run(self) -> int:
        try:
            for step in (self.wait_repo, self.detect_repo, self.detect_upgrade, self.pre_upgrade_manifest,
                         self.pause_all_charts, self.skip_restart_rancher_system_agent, self.upgrade_rancher,
                         self.patch_local_cluster_details, self.update_local_rke_state_secret,
                         self.upgrade_harvester_cluster_repo, self.ensure_ingress_class_name,
                         self.apply_extra_nonversion_manifests, self.upgrade_harvester,
                         self.sync_containerd_registry_to_rancher, self.wait_longhorn_upgrade,
                         self.upgrade_monitoring, self.upgrade_logging_event_audit, self.apply_extra_manifests,
                         self.upgrade_addons, self.upgrade_harvester_csi_rbac, self.wait_for_fleet_bundles):
                await step()
        except ScriptExit as stop:
            return stop.code
        return 0

    async def step(self, seconds: float = STEP_SECONDS) -> None:
        await self.clock.sleep(seconds)

    # --- lib.sh: the repo ---------------------------------------------------------------------------
    async def wait_repo(self) -> None:
        """`until curl -sfL $UPGRADE_REPO_RELEASE_FILE`: curl prints the file to the log."""
        data = self.repo.read("harvester-iso/harvester-release.yaml") or b""
        for line in data.decode(errors="replace").splitlines():
            self.say(line)

    def download_file(self, path: str, output: str) -> bytes | None:
        self.say(f'Downloading the file from "{self.repo_url}/{path}" to "{output}"...')
        return self.repo.read(f"harvester-iso/{path}")

    async def detect_repo(self) -> None:
        data = self.download_file("harvester-release.yaml", _tmp_name())
        try:
            release = yaml.safe_load(data or b"") or {}
        except yaml.YAMLError:
            release = {}
        self.release = release if isinstance(release, dict) else {}
        keys = [("harvester", "Harvester version"), ("harvesterChart", "Harvester chart version"),
                ("os", "OS version"), ("kubernetes", "RKE2 version"), ("rancher", "Rancher version"),
                ("monitoringChart", "monitoring chart version"), ("loggingChart", "logging chart version"),
                ("rancherDependencies.fleet.chart", "fleet chart version"),
                ("rancherDependencies.fleet.app", "fleet app version"),
                ("rancherDependencies.fleet-crd.chart", "fleet-crd chart version"),
                ("rancherDependencies.fleet-crd.app", "fleet-crd app version"),
                ("rancherDependencies.rancher-webhook.chart", "rancher-webhook chart version"),
                ("rancherDependencies.rancher-webhook.app", "rancher-webhook app version"),
                ("kubevirt", "kubevirt version")]
        values = {}
        for key, _ in keys:      # `VAR=$(yq -e e '.key' file)` under bash -e: a missing key stops the script
            value = self._yq(key)
            if value is None:
                self.say("Error: no matches found")
                raise ScriptExit(1)
            values[key] = value
        for key, what in keys:
            value = values[key] if key != "os" else str(values[key]).removeprefix("Harvester ")
            if str(value) == "":
                self.say(f"[ERROR] Fail to get {what} from upgrade repo.")
                raise ScriptExit(1)
        self.download_file("bundle/metadata.yaml", _tmp_name())

    def _yq(self, key: str) -> Any:
        node: Any = self.release
        for part in key.split("."):
            if not isinstance(node, dict) or node.get(part) is None:
                return None
            node = node[part]
        return node

    def rel(self, key: str) -> str:
        return str(self._yq(key) or "")

    async def detect_upgrade(self) -> None:
        self.previous = str((self.objects.upgrade(self.name).get("status") or {}).get("previousVersion", ""))

    async def pre_upgrade_manifest(self) -> None:
        if self.previous in PRE_HOOK_VERSIONS:
            self.say(f"Executing {self.previous} pre-hook...")
            await self.step()

    # --- managed charts ----------------------------------------------------------------------------
    def _charts(self) -> Any:
        return self.api.registry.get("management.cattle.io", "managedcharts")

    def pause_managed_chart(self, chart: str, paused: bool) -> None:
        charts = self._charts()
        if charts is not None and self.api.find(charts, "fleet-local", chart) is not None:
            self.api.mutate(charts, "fleet-local", chart, lambda o: o.setdefault("spec", {}).update(paused=paused))
            self.say(f"managedchart.management.cattle.io/{chart} patched")

    async def pause_all_charts(self) -> None:
        for chart in MANAGED_CHARTS:
            self.pause_managed_chart(chart, True)

    async def skip_restart_rancher_system_agent(self) -> None:
        plan = f"{self.name}-skip-restart-rancher-system-agent"
        version = "%08x" % random.getrandbits(32)          # openssl rand -hex 4
        plans = self.objects.rtype("upgrade.cattle.io", "v1", "plans")
        self.say(f"Creating plan {plan} to make rancher-system-agent temporarily skip restarting RKE2 server...")
        self.objects.create("upgrade.cattle.io", "v1", "plans", {
            "metadata": {"name": plan, "namespace": SUC_NAMESPACE},
            "spec": {"concurrency": 10, "nodeSelector": {"matchLabels": {"harvesterhci.io/managed": "true"}},
                     "serviceAccountName": "system-upgrade-controller", "tolerations": [{"operator": "Exists"}],
                     "upgrade": {"image": "registry.suse.com/bci/bci-base:15.6", "command": ["chroot", "/host"],
                                 "args": ["sh", "-c", "set -x && mkdir -p /run/systemd/system/"
                                          "rancher-system-agent.service.d && ..."]},
                     "version": version}})
        self.say(f"plan.upgrade.cattle.io/{plan} created")
        self.say(f"Waiting for plan {plan} to complete...")
        await self.step(PLAN_POLL_SECONDS)
        self.api.mutate(plans, SUC_NAMESPACE, plan,
                        lambda o: o.setdefault("status", {}).update(latestVersion=version, latestHash=version))
        self.say(f"Plan {plan} completes.")
        self.say(f"Deleting plan {plan}...")
        self.api.delete(plans, SUC_NAMESPACE, plan)
        self.say(f'plan.upgrade.cattle.io "{plan}" deleted')

    # --- Rancher ------------------------------------------------------------------------------------
    def _rancher_setting(self) -> str:
        settings = self.api.registry.get("management.cattle.io", "settings")
        found = self.api.find(settings, None, "server-version") if settings is not None else None
        return str((found or {}).get("value", ""))

    async def upgrade_rancher(self) -> None:
        self.say("Upgrading Rancher")
        target = self.rel("rancher")
        metadata = yaml.safe_load(self.repo.read("harvester-iso/bundle/metadata.yaml") or b"") or {}
        for entry in ((metadata.get("images") or {}).get("agent") or []):
            for path in (entry.get("list", ""), entry.get("archive", "")):
                self.download_file(f"bundle/{path}", f"/tmp/upgrade/images/{path.rsplit('/', 1)[-1]}")
        await self.step()
        record = self.helm.latest("cattle-system", "rancher")
        values = dict((record or {}).get("config") or {})
        values.pop("extraEnv", None)
        self.say("Rancher values:")
        self._say_yaml(values)
        current = str(values.get("rancherImageTag") or "")
        if not current:
            self.say("[ERROR] Fail to get current Rancher version.")
            raise ScriptExit(1)
        self.say("rancher shell-image is , patch is not needed")
        if current == target:
            self.say(f"Skip update Rancher. The version is already {current}")
            return
        self._say_capi_provisioned()
        pre_generation = self._capi_generation()
        for repo in ("rancher-charts", "rancher-rke2-charts", "rancher-partner-charts"):
            self.say(f'clusterrepo.catalog.cattle.io "{repo}" deleted')
        self.say('setting.management.cattle.io "chart-default-branch" deleted')
        self.say("config field on configmap fleet-controller -n cattle-fleet-system is empty, skip saving")
        values.update(features=FEATURES, rancherImageTag=target)
        self.say("Rancher patch file to be run via helm upgrade")
        self._say_yaml(values)
        await self.step(RANCHER_HELM_SECONDS)
        upgraded = self.helm.upgrade("cattle-system", "rancher", target.lstrip("v"), target, chart_name="rancher",
                                     values=values)
        self.say('Release "rancher" has been upgraded. Happy Helming!')
        for line in ("NAME: rancher", f"LAST DEPLOYED: {_go_date()}", "NAMESPACE: cattle-system",
                     "STATUS: deployed", f"REVISION: {upgraded['version']}", "TEST SUITE: None", "NOTES:",
                     "Happy Containering!"):
            self.say(line)
        settle = RANCHER_SETTLE_SECONDS
        while self._rancher_setting() != target:
            self.say(f"Wait for Rancher to be upgraded to {target}...")
            await self.clock.sleep(RANCHER_WAIT_INTERVAL)
            settle -= RANCHER_WAIT_INTERVAL
            if settle <= 0:
                self._start_new_rancher(target)
        self.say("Wait for Rancher dependencies helm releases...")
        for namespace, release in DEPENDENCY_WAITS:
            await self.wait_helm_release(namespace, release, f"{release}-{self.rel(f'rancherDependencies.{release}.chart')}",
                                         self.rel(f"rancherDependencies.{release}.app"), "deployed")
        self.say("Wait for Rancher deployment rollout...")
        self.rollout("cattle-system", "deployment", "rancher")
        self.say("Rancher deployment and pods")
        self.say("Wait for Rancher dependencies rollout...")
        self.rollout("cattle-fleet-system", "deployment", "fleet-controller")
        self.rollout("cattle-system", "deployment", "rancher-webhook")
        if self.variant.at_least("v1.5.0-rc2"):
            self.say("Create cattle-system/stv-aggregation secret")
            self.say("secret/stv-aggregation created")
        kind = self.variant.fleet_agent_kind
        self.rollout("cattle-fleet-local-system", kind, "fleet-agent")
        self.say("Wait for cluster settling down...")
        await self.step()
        self._say_capi_provisioned(pre_generation)
        if kind == "deployment":
            self.rollout("cattle-fleet-local-system", kind, "fleet-agent")
        generation = 2
        self.say(f"patch cluster.fleet local to new generation {generation}")
        self.say("cluster.fleet.cattle.io/local patched")
        self.rollout("cattle-fleet-local-system", kind, "fleet-agent")
        self.say("new field agentTLSMode is found in clusters.fleet.cattle.io crd")
        self.say("new field agentTLSMode is found in cattle-fleet-system/fleet-controller configmap")
        self.say("both apiServerURL and apiServerCA saved values are empty, skip restoring")
        self.say("wait until cluster.fleet local is Imported after fleet-controller is upgraded")
        self.say("cluster.fleet local is Imported")
        self.say("wait until fleet-agent is redeployed after fleet-controller is upgraded")
        self.say("fleet-agent is redeployed")
        self.say("wait until cluster.fleet local is Ready after fleet-controller is upgraded")
        self.say("cluster.fleet -n fleet-local local condition Ready is true")

    def _say_yaml(self, values: dict[str, Any]) -> None:
        for line in yaml.safe_dump(values, sort_keys=True, default_flow_style=False).splitlines():
            self.say(line)

    def _start_new_rancher(self, target: str) -> None:
        """The new Rancher's pods come up: server-version changes, then its system-chart controllers act."""
        settings = self.api.registry.get("management.cattle.io", "settings")
        if settings is not None and self.api.find(settings, None, "server-version") is not None:
            self.api.mutate(settings, None, "server-version", lambda o: o.update(value=target))
        # its controllers resync the local CAPI cluster (wait_capi_cluster needs a newer observedGeneration)
        clusters = self.api.registry.get("cluster.x-k8s.io", "clusters")
        if clusters is not None and self.api.find(clusters, "fleet-local", "local") is not None:
            def bump(obj: Obj) -> None:
                generation = int(obj["metadata"].get("generation", 1)) + 1
                obj["metadata"]["generation"] = generation
                obj.setdefault("status", {})["observedGeneration"] = generation
            self.api.mutate(clusters, "fleet-local", "local", bump)
        for namespace, release in DEPENDENCY_WAITS:
            wanted = rancher_dependencies_of(target).get(release)
            if wanted is None:
                continue
            deployed = self.helm.latest(namespace, release)
            have = deployed["chart"]["metadata"]["version"] if deployed else None
            decision = decide(target, release, wanted, have)
            if decision.install is not None:
                self.helm.upgrade(namespace, release, decision.install, wanted.app_version, chart_name=release,
                                  description="Upgrade complete")

    def _capi_generation(self) -> int:
        clusters = self.api.registry.get("cluster.x-k8s.io", "clusters")
        cluster = self.api.find(clusters, "fleet-local", "local") if clusters is not None else None
        return int(((cluster or {}).get("status") or {}).get("observedGeneration", 0))

    def _say_capi_provisioned(self, after: int = 0) -> None:
        generation = self._capi_generation()
        if generation > after:
            self.say(f"CAPI cluster fleet-local/local is provisioned (current generation: {generation}).")

    def rollout(self, namespace: str, kind: str, name: str) -> None:
        self.say(f"wait rollout -n {namespace} {kind} {name}")
        if kind == "statefulset":
            self.say("partitioned roll out complete: 1 new pods have been updated...")
        else:
            self.say(f'{kind} "{name}" successfully rolled out')

    async def wait_helm_release(self, namespace: str, release: str, chart: str, app: str, status: str) -> None:
        """Exact string equality of `.chart`, `.app_version` and `.status` of the last revision; no timeout."""
        self.say(f"wait helm release {namespace} {release} {chart} {app} {status}")
        while True:
            latest = self.helm.latest(namespace, release)
            if latest is not None and HelmReleases.chart_string(latest) == chart and \
                    latest["chart"]["metadata"].get("appVersion") == app and latest["info"]["status"] == status:
                return
            await self.clock.sleep(HELM_WAIT_INTERVAL)

    # --- the rest of the main sequence ----------------------------------------------------------------
    async def patch_local_cluster_details(self) -> None:
        clusters = self.api.registry.get("provisioning.cattle.io", "clusters")
        if clusters is not None and self.api.find(clusters, "fleet-local", "local") is not None:
            def patch(obj: Obj) -> None:
                obj["metadata"].setdefault("labels", {})["provisioning.cattle.io/management-cluster-name"] = "local"
                obj.setdefault("status", {})["fleetWorkspaceName"] = "fleet-local"
            self.api.mutate(clusters, "fleet-local", "local", patch)
        self.say("cluster.provisioning.cattle.io/local labeled")
        self.say("cluster.provisioning.cattle.io/local patched")

    async def update_local_rke_state_secret(self) -> None:
        self.say("Check current local-rke-state secret type...")
        self.say("Current secret type is: rke.cattle.io/cluster-state, skip update")

    async def upgrade_harvester_cluster_repo(self) -> None:
        self.say("Upgrading Harvester Cluster Repo")
        self.say("deployment.apps/harvester-cluster-repo patched")
        self.say('deployment "harvester-cluster-repo" successfully rolled out')
        await self.step()
        self.say("clusterrepo.catalog.cattle.io/harvester-charts patched")

    async def ensure_ingress_class_name(self) -> None:
        self.say("Ensuring existing rancher-expose Ingress has ingress class name specified")
        self.say("The ingress class name of the rancher-expose Ingress has been set: nginx")

    async def apply_extra_nonversion_manifests(self) -> None:
        if not self.variant.applies_nonversion_manifests:
            return
        if self.variant.applies_whereabouts:
            self.say("Applying whereabouts manifests")
            for name in ("whereabouts.cni.cncf.io_ippools.yaml", "whereabouts.cni.cncf.io_overlappingrangeipreservations.yaml"):
                self.say(f"Applying /usr/local/share/extra_manifests/whereabouts/{name}")
        self.say("Applying cdi manifests")
        self.say("Applying /usr/local/share/extra_manifests/cdi/cdi.yaml")
        await self.step()

    async def upgrade_harvester(self) -> None:
        self.say("Upgrading Harvester")
        self.say("kubevirt additionalGuestMemoryOverheadRatio is not found, skip")
        chart = self.rel("harvesterChart")
        charts = self._charts()
        generations: dict[str, int] = {}
        for name in ("harvester-crd", "harvester"):
            if charts is None or self.api.find(charts, "fleet-local", name) is None:
                continue
            generations[name] = int((self.api.get(charts, "fleet-local", name).get("status") or {})
                                    .get("observedGeneration", 0))
            self.api.mutate(charts, "fleet-local", name,
                            lambda o: o.setdefault("spec", {}).update(version=chart, timeoutSeconds=600))
            self.say(f"managedchart.management.cattle.io/{name} {'patched' if name == 'harvester-crd' else 'configured'}")
        self.pause_managed_chart("harvester", False)
        self.pause_managed_chart("harvester-crd", False)
        await self.step(CHART_SECONDS)
        for name in ("harvester", "harvester-crd"):
            if name not in generations:
                continue
            self.helm.upgrade(NAMESPACE, name, chart, self.rel("harvester"), chart_name=name)
            self._chart_rolled_out(name)
            self.say(f"Waiting for ManagedChart fleet-local/{name} from generation {generations[name]}")
            self.say(f"Target version: {chart}, Target state: ready")
            current = self.api.get(charts, "fleet-local", name)
            self.say(f"Current version: {chart}, Current state: , Current generation: "
                     f"{current['status'].get('observedGeneration')}")
        self._set_harvester_server_version()
        self.say(f"Waiting for KubeVirt to upgraded to {self.rel('kubevirt')}...")

    def _chart_rolled_out(self, name: str) -> None:
        charts = self._charts()

        def ready(obj: Obj) -> None:
            generation = int(obj["metadata"].get("generation", 1))
            obj.setdefault("status", {}).update(observedGeneration=generation)
            obj["status"].setdefault("summary", {}).update(desiredReady=1, ready=1)
        self.api.mutate(charts, "fleet-local", name, ready)

    def _set_harvester_server_version(self) -> None:
        """The new harvester pods run: `server-version` is the binary's VERSION (a dev build's is its -head name)."""
        from ..harvester.versions import version_of_release
        version = version_of_release(self.rel("harvester"))
        value = version.name if version is not None else self.rel("harvester")
        settings = self.objects.rtype("harvesterhci.io", "v1beta1", "settings")
        if self.api.find(settings, None, "server-version") is not None:
            self.api.mutate(settings, None, "server-version", lambda o: o.update(value=value))

    async def sync_containerd_registry_to_rancher(self) -> None:
        self.say("Sync containerd-registry setting to Rancher")
        self.say("setting.harvesterhci.io/containerd-registry annotated")

    async def wait_longhorn_upgrade(self) -> None:
        self.say("Waiting for LH settling down...")
        self.say("Waiting for longhorn-manager to be upgraded...")
        nodes = [n["metadata"]["name"] for n in self.api.list(self.api.lookup("", "v1", "nodes")).items]
        if len(nodes) < 2:
            self.say(f"Skip waiting instance-manager (aio), node count: {len(nodes)}")
            return
        for node in nodes:
            self.say(f"Checking instance-manager (aio) pod on node {node}...")
            engine = "(v1)" if self.variant.instance_manager_engine_suffix else ""
            self.say(f"Checking instance-manager (aio){engine} (image=longhornio/longhorn-instance-manager:"
                     f"v{self.target.longhorn_version}) on node {node} OK.")
        await self.step()

    async def _upgrade_crd_chart(self, name: str, version: str) -> None:
        self.say(f"Upgrading Managedchart {name} to {version}")
        charts = self._charts()
        if charts is None or self.api.find(charts, "fleet-local", name) is None:
            return
        current = self.api.get(charts, "fleet-local", name)
        if (current.get("spec") or {}).get("version") == version:
            self.say(f"the {name} has already been target version {version}, nothing to upgrade")
            self.pause_managed_chart(name, False)
            return
        generation = int((current.get("status") or {}).get("observedGeneration", 0))
        self.api.mutate(charts, "fleet-local", name, lambda o: o["spec"].update(version=version, timeoutSeconds=600))
        self.say(f"managedchart.management.cattle.io/{name} patched")
        self.pause_managed_chart(name, False)
        self.say(f"Waiting for ManagedChart fleet-local/{name} from generation {generation}")
        self.say(f"Target version: {version}, Target state: ready")
        await self.step(CHART_SECONDS)
        self._chart_rolled_out(name)

    async def upgrade_monitoring(self) -> None:
        await self._upgrade_crd_chart("rancher-monitoring-crd", self.rel("monitoringChart"))

    async def upgrade_logging_event_audit(self) -> None:
        await self._upgrade_crd_chart("rancher-logging-crd", self.rel("loggingChart"))

    async def apply_extra_manifests(self) -> None:
        self.say("Applying extra manifests")
        self.say(f"No extra manifests in /usr/local/share/extra_manifests/{self.previous} to apply")

    async def upgrade_addons(self) -> None:
        dash = self.variant.addon_echo_uses_dash
        for addon in ("vm-import-controller", "pcidevices-controller", "harvester-seeder"):
            self.say(f"addon.harvesterhci.io/{addon} patched")
        self.say("upgrade addon rancher-monitoring" if dash else "upgrade addon rancher_monitoring")
        self.say(f"try to patch addon rancher-monitoring in cattle-monitoring-system to {self.rel('monitoringChart')}")
        if dash:
            self.say("upgrade harvester upgradelog loggingref")
        self.say("upgrade addon rancher-logging" if dash else "upgrade addon rancher_logging")
        if dash:
            self.say("upgrade harvester upgradelog logging fluend fluentbit")
        await self.step()

    async def upgrade_harvester_csi_rbac(self) -> None:
        self.say("Only versions before v1.4.0 need this patch.")

    async def wait_for_fleet_bundles(self) -> None:
        await self.step(10)
        self.say("")
        self.say(_go_date())
        self.say("all bundles are ready")


def _go_date() -> str:
    """`date`'s default format in the pod (C locale, UTC)."""
    import datetime as dt
    return dt.datetime.now(dt.timezone.utc).strftime("%a %b %e %H:%M:%S UTC %Y")

