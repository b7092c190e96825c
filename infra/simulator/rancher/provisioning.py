"""Rancher's v2 provisioning of RKE2 clusters on Harvester, as a simulated Rancher does it.

Modelled on rancher/rancher v2.10.3:
* `pkg/controllers/provisioningv2/cluster/controller.go`: a provisioning Cluster gets a management
  Cluster named `c-m-` + 8 random characters (`status.clusterName`), the `Created` condition,
  `status.fleetWorkspaceName` (its namespace) and `observedGeneration`; once ready, `status.ready`
  and `status.clientSecretName`. Its removal handler is the finalizer
  `wrangler.cattle.io/provisioning-cluster-remove`.
* `pkg/controllers/provisioningv2/provisioningcluster/{controller,template}.go`: the generating
  handler whose condition is `RKECluster` checks `kubernetesVersion` and every machine pool (name,
  machineConfigRef, a role, unique names), reads each pool's HarvesterConfig and takes ownership of
  it (a controller ownerReference to the Cluster); its removal handler is
  `wrangler.cattle.io/rke-cluster-remove`. `Updated`, `Provisioned` and `Ready` are copied from the
  RKEControlPlane's `Ready`.
* `pkg/capr/planner/planner.go` + `pkg/controllers/capr/planner/controller.go`: a Kubernetes version
  missing from this Rancher's KDM data leaves `Ready` Unknown, reason `Waiting`, message
  `<ns>/<name>: KDM release data is empty for <version>`; the cluster never becomes ready.
* `pkg/provisioningv2/kubeconfig/manager.go`: the Secret `<cluster>-kubeconfig` (owned by the Cluster,
  label `cluster.x-k8s.io/cluster-name`) holds `value`, a kubeconfig whose server is
  `<server-url>/k8s/clusters/<c-m-id>` with Rancher's CA, and `token`, the token of the user
  `u-<base32(sha256("system://provisioning/<ns>/<name>"))[:10]>`.
The machines are created as docker-machine-driver-harvester creates them after its PreCreateCheck
(`harvester/precreate.go`: the VM namespace, the images and the networks must exist on Harvester).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.store import StoredEvent
from ..controllers.base import Controller
from ..guest.cluster import RUN_ID_LABEL, MachinePool, SimulatedGuestCluster, GuestSpec
from ..guest.hostside import VM_NETWORK
from ..guest.registry import GuestConflict
from ..guest.rke2 import BadGuestRequest, Rke2Line
from .front import ApiKey, random_token

if TYPE_CHECKING:
    from .server import SimulatedRancher

log = logging.getLogger(__name__)

PROVISIONING = ("provisioning.cattle.io", "clusters")
MACHINE_CONFIGS = ("rke-machine-config.cattle.io", "harvesterconfigs")
FINALIZERS = ("wrangler.cattle.io/provisioning-cluster-remove", "wrangler.cattle.io/rke-cluster-remove")
CAPI_CLUSTER_LABEL = "cluster.x-k8s.io/cluster-name"
MACHINE_CONFIG_API = "rke-machine-config.cattle.io/v1"
PROVISION_SECONDS = 240        # simulated: VMs boot, RKE2 installs, the agent connects (ILLUSTRATIVE)
# The conditions a ready downstream cluster shows (copied from its management cluster, plus Rancher's own).
READY_CONDITIONS = ("BackingNamespaceCreated", "DefaultProjectCreated", "SystemProjectCreated",
                    "InitialRolesPopulated", "CreatorMadeOwner", "NoDiskPressure", "NoMemoryPressure",
                    "Pending", "Waiting", "Connected", "AgentDeployed", "Provisioned", "Updated", "Ready")

Obj = dict[str, Any]


class ProvisioningFailed(Exception):
    """What Rancher reports on the RKECluster condition (the generating handler's error)."""


class MachineCreateFailed(Exception):
    """The node driver's PreCreateCheck or create failed; Rancher keeps retrying and shows why."""


def provisioning_user(namespace: str, name: str) -> str:
    digest = hashlib.sha256(f"system://provisioning/{namespace}/{name}".encode()).digest()
    return "u-" + base64.b32encode(digest).decode().rstrip("=")[:10].lower()


class ProvisioningController(Controller):
    watches = (PROVISIONING, MACHINE_CONFIGS)

    def __init__(self, rancher: "SimulatedRancher") -> None:
        super().__init__(rancher.api)
        self.rancher = rancher
        self.simulator = rancher.simulator
        self.clusters = self.api.lookup("provisioning.cattle.io", "v1", "clusters")
        self.configs = self.api.lookup("rke-machine-config.cattle.io", "v1", "harvesterconfigs")
        self.mgmt = self.api.lookup("management.cattle.io", "v3", "clusters")
        self.secrets = self.api.lookup("", "v1", "secrets")
        self.guests: dict[tuple[str, str], SimulatedGuestCluster] = {}        # (namespace, name) -> its guest
        self._provisioning: dict[tuple[str, str], asyncio.Task[Any]] = {}

    async def handle(self, event: StoredEvent) -> None:
        if event.type_key == MACHINE_CONFIGS:
            # A HarvesterConfig appearing may unblock a Cluster waiting for it (Rancher's infraWatch).
            namespace = event.object["metadata"].get("namespace", "")
            for cluster in self.api.list(self.clusters, namespace).items:
                await self.reconcile(namespace, cluster["metadata"]["name"])
            return
        meta = event.object["metadata"]
        if event.type != "DELETED":
            await self.reconcile(meta.get("namespace", ""), meta["name"])

    # ---- status helpers --------------------------------------------------------------------------
    def _set_status(self, namespace: str, name: str, **fields: Any) -> None:
        conditions: dict[str, tuple[str, str, str]] = fields.pop("conditions", {})

        def change(obj: Obj) -> None:
            status = obj.get("status") if isinstance(obj.get("status"), dict) else {}
            obj["status"] = status
            status.update(fields)
            status["observedGeneration"] = obj["metadata"].get("generation", 1)
            current = {c["type"]: c for c in status.get("conditions") or []}
            now = rfc3339()
            for ctype, (cstatus, reason, message) in conditions.items():
                old = current.get(ctype)
                if old and (old.get("status"), old.get("reason", ""), old.get("message", "")) == (cstatus, reason, message):
                    continue
                new = {"type": ctype, "status": cstatus, "lastUpdateTime": now,
                       "lastTransitionTime": now if not old or old.get("status") != cstatus
                       else old.get("lastTransitionTime", now)}
                if reason:
                    new["reason"] = reason
                if message:
                    new["message"] = message
                current[ctype] = new
            status["conditions"] = list(current.values())
        try:
            self.api.mutate(self.clusters, namespace, name, change, subresource="status")
        except errors.ApiError:
            pass      # deleted meanwhile

    def _waiting(self, namespace: str, name: str, message: str, reason: str = "Waiting") -> None:
        """The RKEControlPlane's Ready, copied to Updated, Provisioned and Ready (not ready)."""
        state = ("Unknown", reason, message)
        self._set_status(namespace, name, ready=False,
                         conditions={"Updated": state, "Provisioned": state, "Ready": state})

    # ---- the reconcile ---------------------------------------------------------------------------
    async def reconcile(self, namespace: str, name: str) -> None:
        cluster = self.api.find(self.clusters, namespace, name)
        if cluster is None:
            return
        key = (namespace, name)
        meta = cluster["metadata"]
        if meta.get("deletionTimestamp"):
            await self._remove(cluster)
            return
        if namespace == "fleet-local":
            return            # Rancher's own local cluster is not provisioned
        if any(f not in (meta.get("finalizers") or []) for f in FINALIZERS):
            def add_finalizers(obj: Obj) -> None:
                present = obj["metadata"].setdefault("finalizers", [])
                present.extend(f for f in FINALIZERS if f not in present)
            self.api.mutate(self.clusters, namespace, name, add_finalizers)
            cluster = self.api.get(self.clusters, namespace, name)
        status = cluster.get("status") or {}
        mgmt_id = status.get("clusterName") or self._create_management_cluster(cluster)
        if not status.get("clusterName"):
            self._set_status(namespace, name, clusterName=mgmt_id, fleetWorkspaceName=namespace, ready=False,
                             conditions={"Created": ("True", "", "")})
        spec = cluster.get("spec") or {}
        if spec.get("rkeConfig") is None:
            return            # an imported cluster: nothing to provision
        if key in self.guests or key in self._provisioning:
            return
        try:
            pools = self._machine_pools(cluster)
        except ProvisioningFailed as exc:
            self._set_status(namespace, name, conditions={"RKECluster": ("False", "Error", str(exc))})
            return
        self._set_status(namespace, name, conditions={"RKECluster": ("True", "", "")})
        version = str(spec.get("kubernetesVersion"))
        if not self.rancher.release.offers(version):
            self._waiting(namespace, name, f"{namespace}/{name}: KDM release data is empty for {version}")
            return
        if not any(pool.server for pool, _ in pools):
            self._waiting(namespace, name, "waiting for at least one control plane, etcd, and worker node to be "
                                           "registered")
            return
        try:
            self._pre_create_check(cluster, pools)
        except MachineCreateFailed as exc:
            self._waiting(namespace, name, str(exc))
            return
        self._waiting(namespace, name, "configuring bootstrap node(s): waiting for plan to be applied")
        self._provisioning[key] = asyncio.get_running_loop().create_task(
            self._provision(cluster, mgmt_id, [pool for pool, _ in pools]), name=f"provision-{namespace}-{name}")

    def _create_management_cluster(self, cluster: Obj) -> str:
        mgmt_id = f"c-m-{random_token(8)}"
        meta = cluster["metadata"]
        self.api.create(self.mgmt, {
            "apiVersion": "management.cattle.io/v3", "kind": "Cluster",
            "metadata": {"name": mgmt_id, "labels": {"provisioning.cattle.io/management-cluster-name": mgmt_id},
                         "annotations": {"objectset.rio.cattle.io/owner-name": meta["name"],
                                         "objectset.rio.cattle.io/owner-namespace": meta["namespace"]}},
            "spec": {"displayName": meta["name"], "fleetWorkspaceName": meta["namespace"],
                     "desiredAgentImage": self.rancher.release.agent_image},
            "status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}, keep_status=True)
        return mgmt_id

    def _machine_pools(self, cluster: Obj) -> list[tuple[MachinePool, Obj]]:
        """Each pool with its HarvesterConfig, checked as Rancher's template.go checks them."""
        meta, spec = cluster["metadata"], cluster.get("spec") or {}
        if not spec.get("kubernetesVersion"):
            raise ProvisioningFailed(f"kubernetesVersion not set on {meta['namespace']}/{meta['name']}")
        found: list[tuple[MachinePool, Obj]] = []
        names: set[str] = set()
        for pool in (spec.get("rkeConfig") or {}).get("machinePools") or []:
            quantity = pool.get("quantity", 1)
            if quantity == 0:
                continue
            ref = pool.get("machineConfigRef") or {}
            pool_name = pool.get("name", "")
            if not pool_name or not ref.get("name") or not ref.get("kind"):
                raise ProvisioningFailed(f"invalid machinePool [{pool_name}] missing name or valid config")
            if not (pool.get("etcdRole") or pool.get("controlPlaneRole") or pool.get("workerRole")):
                raise ProvisioningFailed(f"at least one role of etcd, control-plane or worker must be assigned to "
                                         f"machinePool [{pool_name}]")
            if pool_name in names:
                raise ProvisioningFailed(f"duplicate machinePool name [{pool_name}] used")
            names.add(pool_name)
            if (ref.get("apiVersion") or MACHINE_CONFIG_API) != MACHINE_CONFIG_API or ref["kind"] != "HarvesterConfig":
                raise ProvisioningFailed(f"no such kind {ref['kind']} in {ref.get('apiVersion') or MACHINE_CONFIG_API}"
                                         " (the simulated Rancher has the Harvester node driver only)")
            config = self.api.find(self.configs, meta["namespace"], ref["name"])
            if config is None:
                raise ProvisioningFailed(f'harvesterconfigs.rke-machine-config.cattle.io "{ref["name"]}" not found')
            self._take_ownership(cluster, config)
            found.append((self._pool_of(pool, int(quantity), config), config))
        return found

    def _take_ownership(self, cluster: Obj, config: Obj) -> None:
        meta = cluster["metadata"]
        for owner in config["metadata"].get("ownerReferences") or []:
            if owner.get("kind") == "Cluster" and owner.get("apiVersion") == "provisioning.cattle.io/v1":
                if owner.get("name") != meta["name"]:
                    raise ProvisioningFailed(
                        f"can not use {config['metadata']['namespace']}/{config['metadata']['name']} "
                        f"[rke-machine-config.cattle.io/v1, Kind=HarvesterConfig] because it is already owned by "
                        f"cluster {owner.get('name')}")
                return
        ref = {"apiVersion": "provisioning.cattle.io/v1", "kind": "Cluster", "name": meta["name"],
               "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}
        self.api.mutate(self.configs, config["metadata"]["namespace"], config["metadata"]["name"],
                        lambda obj: obj["metadata"].setdefault("ownerReferences", []).append(ref))

    @staticmethod
    def _pool_of(pool: Obj, quantity: int, config: Obj) -> MachinePool:
        def number(field: str, flag: str, default: int) -> int:
            text = str(config.get(field) or default)
            try:
                return int(text)
            except ValueError:
                raise ProvisioningFailed(f'invalid value "{text}" for flag -{flag}: parse error') from None

        disks = _json_field(config, "diskInfo").get("disks") or []
        interfaces = _json_field(config, "networkInfo").get("interfaces") or []
        first_disk = disks[0] if disks else {}
        network = (interfaces[0].get("networkName") if interfaces else config.get("networkName")) or ""
        return MachinePool(
            name=str(pool["name"]), quantity=quantity,
            server=bool(pool.get("etcdRole") or pool.get("controlPlaneRole")),
            cpu_count=number("cpuCount", "harvester-cpu-count", 2),
            memory_gi=number("memorySize", "harvester-memory-size", 4),
            disk_gi=int(first_disk.get("size") or number("diskSize", "harvester-disk-size", 40)),
            disk_bus=str(first_disk.get("bus") or config.get("diskBus") or "virtio"),
            image=str(first_disk.get("imageName") or config.get("imageName") or ""),
            network=network or "/".join(VM_NETWORK),
            network_model=str((interfaces[0].get("model") if interfaces else "") or config.get("networkModel")
                              or "virtio"))

    def _pre_create_check(self, cluster: Obj, pools: list[tuple[MachinePool, Obj]]) -> None:
        """docker-machine-driver-harvester's PreCreateCheck, against the Harvester simulator."""
        host = self.simulator.api
        for pool, config in pools:
            namespace = str(config.get("vmNamespace") or "")
            problem = ""
            if not namespace or host.find(host.lookup("", "v1", "namespaces"), None, namespace) is None:
                problem = f'namespaces "{namespace}" not found'
            images = host.lookup("harvesterhci.io", "v1beta1", "virtualmachineimages")
            if not problem and pool.image:
                image_ns, _, image = pool.image.rpartition("/")
                if host.find(images, image_ns or namespace, image) is None:
                    problem = f'virtualmachineimages.harvesterhci.io "{image}" not found'
            nads = host.lookup("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
            if not problem:
                net_ns, _, net = pool.network.rpartition("/")
                if host.find(nads, net_ns or namespace, net) is None:
                    problem = f'network-attachment-definitions.k8s.cni.cncf.io "{net}" not found'
            if problem:
                meta = cluster["metadata"]
                machine = f"{meta['name']}-{pool.name}"
                raise MachineCreateFailed(
                    f"failed creating server [{meta['namespace']}/{machine}] of kind (HarvesterMachine) for machine "
                    f"{machine} in infrastructure provider: CreateError: Failure detected from referenced resource "
                    f"rke-machine.cattle.io/v1, Kind=HarvesterMachine with name \"{machine}\": Error creating machine: "
                    f"Error with pre-create check: \"{problem}\"")

    async def _provision(self, cluster: Obj, mgmt_id: str, pools: list[MachinePool]) -> None:
        meta = cluster["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        key = (namespace, name)
        try:
            await self.simulator.clock.sleep(PROVISION_SECONDS)
            current = self.api.find(self.clusters, namespace, name)
            if current is None or current["metadata"].get("deletionTimestamp"):
                return
            configs = [(c.get("machineConfigRef") or {}).get("name") for c in
                       (current["spec"].get("rkeConfig") or {}).get("machinePools") or []]
            vm_namespace = str((self.api.find(self.configs, namespace, configs[0]) or {}).get("vmNamespace", "default"))
            spec = GuestSpec(name=name, rke2=Rke2Line.parse(str(current["spec"]["kubernetesVersion"])),
                             agent_image=self.rancher.release.agent_image, host_namespace=vm_namespace,
                             run_id=(meta.get("labels") or {}).get(RUN_ID_LABEL, ""), pools=tuple(pools))
            guest = await self.simulator.guests.provision(spec)
        except (GuestConflict, BadGuestRequest, errors.ApiError) as exc:
            self._waiting(namespace, name, f"failed creating server [{namespace}/{name}] of kind (HarvesterMachine): "
                                           f"{exc}")
            return
        finally:
            self._provisioning.pop(key, None)
        self.guests[key] = guest
        user_key = ApiKey(provisioning_user(namespace, name), random_token())
        self.rancher.front.add_cluster(mgmt_id, guest.server, [user_key])
        current = self.api.find(self.clusters, namespace, name)
        if current is None:
            await self._forget(namespace, name, mgmt_id)
            return
        secret = self._kubeconfig_secret(current, mgmt_id, user_key)
        self.api.mutate(self.mgmt, None, mgmt_id, lambda obj: obj.__setitem__("status", {
            "conditions": [{"type": c, "status": "True", "lastUpdateTime": rfc3339()} for c in READY_CONDITIONS],
            "driver": "rke2", "agentImage": self.rancher.release.agent_image,
            "version": guest.spec.rke2.version_info()}))
        self._set_status(namespace, name, ready=True, agentDeployed=True, clientSecretName=secret,
                         conditions={c: ("True", "", "") for c in READY_CONDITIONS})
        log.info("Rancher %s: cluster %s/%s (%s) is ready", self.rancher.release.version, namespace, name, mgmt_id)

    def _kubeconfig_secret(self, cluster: Obj, mgmt_id: str, user_key: ApiKey) -> str:
        meta = cluster["metadata"]
        name = f"{meta['name']}-kubeconfig"
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": {
                "server": f"{self.rancher.url}/k8s/clusters/{mgmt_id}",
                "certificate-authority-data": base64.b64encode(self.rancher.tls.ca_cert_pem.strip()).decode()}}],
            "users": [{"name": "user", "user": {"token": user_key.bearer}}],
            "contexts": [{"name": "default", "context": {"cluster": "cluster", "user": "user"}}],
            "current-context": "default",
        }
        existing = self.api.find(self.secrets, meta["namespace"], name)
        if existing is not None:
            self.api.delete(self.secrets, meta["namespace"], name)
        self.api.create(self.secrets, {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": meta["namespace"], "labels": {CAPI_CLUSTER_LABEL: meta["name"]},
                         "ownerReferences": [{"apiVersion": "provisioning.cattle.io/v1", "kind": "Cluster",
                                              "name": meta["name"], "uid": meta["uid"]}]},
            "data": {"value": base64.b64encode(yaml.safe_dump(config, sort_keys=False).encode()).decode(),
                     "token": base64.b64encode(user_key.bearer.encode()).decode()}})
        return name

    async def _remove(self, cluster: Obj) -> None:
        """The removal handlers: the guest's machines go, then the management cluster, then the finalizers."""
        meta = cluster["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        task = self._provisioning.pop((namespace, name), None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        mgmt_id = (cluster.get("status") or {}).get("clusterName", "")
        state = ("Unknown", "Waiting", "removing cluster")
        if (namespace, name) in self.guests:
            self._set_status(namespace, name, conditions={"Removed": state})
        await self._forget(namespace, name, mgmt_id)

        def drop_finalizers(obj: Obj) -> None:
            obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f not in FINALIZERS]
        try:
            self.api.mutate(self.clusters, namespace, name, drop_finalizers)
        except errors.ApiError:
            pass

    async def _forget(self, namespace: str, name: str, mgmt_id: str) -> None:
        guest = self.guests.pop((namespace, name), None)
        if mgmt_id:
            self.rancher.front.remove_cluster(mgmt_id)
        if guest is not None:
            await self.simulator.guests.remove(guest.host_namespace, guest.name)
        if mgmt_id and self.api.find(self.mgmt, None, mgmt_id) is not None:
            self.api.delete(self.mgmt, None, mgmt_id)


def _json_field(config: Obj, field: str) -> Obj:
    text = config.get(field) or ""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ProvisioningFailed(f"{field} of HarvesterConfig {config['metadata']['name']} is not JSON") from None
    return value if isinstance(value, dict) else {}
