"""VMs in the simulated Harvester, over the wire with the `kubernetes` client, as KubeVirt and Harvester run them.

Expectations are written from upstream (the file of each is named in `infra/simulator/kubevirt/*`):
kubevirt/kubevirt v1.3.1 / v1.4.0 (virt-controller's VM, VMI, migration and evacuation controllers, virt-handler's
LiveMigratable condition, virt-api's migration webhooks) and harvester/harvester v1.4.2 .. v1.5.2 and ce188325
(`package/upgrade/upgrade_node.sh` pre-drain and post-drain, `upgrade-helper vm-live-migrate-detector`,
`pkg/util/virtualmachineinstance`, the upgrade webhook's `checkNonLiveMigratableVMs`).
"""
from __future__ import annotations

import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.kube import ApiFailure, Kube
from infra.waits.budget import Budget

from .upgrade_support import NS, condition, node_state_sequences, start_upgrade, state, terminal, watch_upgrade

Obj = dict[str, Any]
KV = ("kubevirt.io", "v1")
SCALE = 100          # simulated seconds per wall second for the VM tests
UPGRADE_SCALE = 600  # and for whole upgrades
MIGRATION_PHASES = ["Pending", "Scheduling", "Scheduled", "PreparingTarget", "TargetReady", "Running", "Succeeded"]
PVC_NOT_SHARED = ("cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be "
                  "shared (using ReadWriteMany access mode)")
POD_BRIDGE = ("cannot migrate VMI which does not use masquerade, bridge with "
              "kubevirt.io/allow-pod-bridge-network-live-migration VM annotation or a migratable plugin to connect to "
              "the pod network")
MIGRATION_WEBHOOK = 'admission webhook "migration-create-validator.kubevirt.io" denied the request: '
UPGRADE_WEBHOOK = 'admission webhook "validator.harvesterhci.io" denied the request: '


# ---- clients and fixtures ---------------------------------------------------------------------------------

class Clients:
    def __init__(self, simulator: SimulatorProcess) -> None:
        self.simulator = simulator
        self.api_client = kubernetes.config.new_client_from_config(str(simulator.kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.kube = Kube(simulator.kubeconfig, unavailable_budget=10)

    # custom objects of kubevirt.io/v1
    def create(self, namespace: str, plural: str, body: Obj) -> Obj:
        return self.custom.create_namespaced_custom_object(*KV, namespace, plural, body)

    def get(self, namespace: str, plural: str, name: str) -> Obj | None:
        try:
            return self.custom.get_namespaced_custom_object(*KV, namespace, plural, name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def objects(self, namespace: str, plural: str, label_selector: str = "") -> list[Obj]:
        return self.custom.list_namespaced_custom_object(*KV, namespace, plural,
                                                         label_selector=label_selector)["items"]

    def patch(self, namespace: str, plural: str, name: str, body: Obj) -> Obj:
        return self.custom.patch_namespaced_custom_object(*KV, namespace, plural, name, body)

    def delete(self, namespace: str, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(*KV, namespace, plural, name)

    def pods(self, namespace: str, label_selector: str = "kubevirt.io=virt-launcher") -> list[Any]:
        return self.core.list_namespaced_pod(namespace, label_selector=label_selector).items

    def pvc(self, namespace: str, name: str, mode: str = "ReadWriteMany") -> None:
        self.core.create_namespaced_persistent_volume_claim(namespace, {
            "metadata": {"name": name},
            "spec": {"accessModes": [mode], "volumeMode": "Block", "storageClassName": "harvester-longhorn",
                     "resources": {"requests": {"storage": "10Gi"}}}})

    def namespace(self) -> str:
        name = f"vms-{uuid.uuid4().hex[:8]}"
        self.core.create_namespace({"metadata": {"name": name}})
        return name

    def drop_namespace(self, name: str) -> None:
        self.core.delete_namespace(name)
        wait_until(lambda: not any(n.metadata.name == name for n in self.core.list_namespace().items), 30,
                   f"namespace {name} is gone")

    def node_names(self) -> list[str]:
        return sorted(n.metadata.name for n in self.core.list_node().items)


def wait_until(predicate: Callable[[], Any], seconds: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:       # bounded by the deadline
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"not within {seconds} s: {what}")


def start(version: str, tmp: Path, *, scale: float, nodes: int = 3) -> SimulatorProcess:
    return start_simulator_process(version, time_scale=scale, nodes=nodes, workdir=tmp / f"simulator-{version}",
                                   budget=Budget("simulator start in tests", 60))


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    simulator = start("v1.4.2", tmp_path_factory.mktemp("kubevirt"), scale=SCALE)
    try:
        yield Clients(simulator)
    finally:
        simulator.stop()


@pytest.fixture
def ns(clients: Clients) -> Iterator[str]:
    """A namespace of the test's own; its VMs are gone (VMIs, pods) before the next test places any."""
    name = clients.namespace()
    yield name
    clients.drop_namespace(name)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., Clients]]:
    started: list[SimulatorProcess] = []

    def make(version: str, nodes: int = 3, scale: float = UPGRADE_SCALE) -> Clients:
        started.append(start(version, tmp_path / str(len(started)), scale=scale, nodes=nodes))
        return Clients(started[-1])

    yield make
    for simulator in started:
        simulator.stop()


# ---- VM bodies --------------------------------------------------------------------------------------------

def vm_body(name: str, *, claim: str | None = None, run: Obj | None = None, network: str = "masquerade",
            eviction: str | None = "LiveMigrateIfPossible", node_selector: dict[str, str] | None = None,
            memory: str = "2Gi") -> Obj:
    """A VM as Harvester's UI makes one: a Longhorn disk, a NIC, LiveMigrateIfPossible (pkg/data/template.go)."""
    spec: Obj = {"domain": {"cpu": {"cores": 1}, "resources": {"requests": {"memory": memory}},
                            "devices": {"disks": [{"name": "disk-0", "disk": {"bus": "virtio"}, "bootOrder": 1}]}},
                 "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": claim or f"{name}-disk-0"}}]}
    if eviction:
        spec["evictionStrategy"] = eviction
    if network == "masquerade":
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}, "model": "virtio"}]
        spec["networks"] = [{"name": "default", "pod": {}}]
    elif network == "multus":
        spec["domain"]["devices"]["interfaces"] = [{"name": "nic-0", "bridge": {}, "model": "virtio"}]
        spec["networks"] = [{"name": "nic-0", "multus": {"networkName": "default/vlan1"}}]
    if node_selector:
        spec["nodeSelector"] = node_selector
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
            "metadata": {"name": name, "labels": {"harvesterhci.io/creator": "harvester"}},
            "spec": {**(run if run is not None else {"runStrategy": "RerunOnFailure"}),
                     "template": {"metadata": {"labels": {"harvesterhci.io/vmName": name}}, "spec": spec}}}


def make_vm(c: Clients, namespace: str, name: str, *, pvc_mode: str = "ReadWriteMany", **options: Any) -> Obj:
    if options.get("claim") is None:
        c.pvc(namespace, f"{name}-disk-0", pvc_mode)
    return c.create(namespace, "virtualmachines", vm_body(name, **options))


def running_vmi(c: Clients, namespace: str, name: str, seconds: float = 20) -> Obj:
    def ready() -> Obj | None:
        vmi = c.get(namespace, "virtualmachineinstances", name)
        if vmi and (vmi.get("status") or {}).get("phase") == "Running" and \
                condition(vmi, "Ready").get("status") == "True":
            return vmi
        return None
    return wait_until(ready, seconds, f"VMI {namespace}/{name} Running and Ready")


def migrate(c: Clients, namespace: str, vmi: str, name: str | None = None) -> Obj:
    return c.create(namespace, "virtualmachineinstancemigrations", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": {"name": name or f"migrate-{vmi}-{uuid.uuid4().hex[:5]}"}, "spec": {"vmiName": vmi}})


def finished_migration(c: Clients, namespace: str, name: str, seconds: float = 20) -> Obj:
    return wait_until(lambda: (lambda m: m if (m.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                               else None)(c.get(namespace, "virtualmachineinstancemigrations", name) or {}),
                      seconds, f"migration {name} finished")


def phases(obj: Obj) -> list[str]:
    return [p["phase"] for p in (obj.get("status") or {}).get("phaseTransitionTimestamps") or []]


# ---- VM -> VMI -> virt-launcher pod -----------------------------------------------------------------------

def test_a_running_vm_gets_a_vmi_on_a_ready_node_and_a_virt_launcher_pod(clients: Clients, ns: str) -> None:
    c = clients
    vm = make_vm(c, ns, "web", run={"running": True})
    vmi = running_vmi(c, ns, "web")
    assert phases(vmi) == ["Pending", "Scheduling", "Scheduled", "Running"]
    assert vmi["metadata"]["ownerReferences"] == [{"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine",
                                                   "name": "web", "uid": vm["metadata"]["uid"], "controller": True,
                                                   "blockOwnerDeletion": True}]
    node = vmi["status"]["nodeName"]
    assert node in c.node_names()
    assert vmi["metadata"]["labels"] == {"harvesterhci.io/vmName": "web", "kubevirt.io/nodeName": node}
    assert set(vmi["metadata"]["finalizers"]) == {"foregroundDeleteVirtualMachine",
                                                  "kubevirt.io/virtualMachineControllerFinalize"}
    assert condition(vmi, "LiveMigratable") == {"type": "LiveMigratable", "status": "True", "lastProbeTime": None,
                                                "lastTransitionTime": None}
    assert condition(vmi, "StorageLiveMigratable") == {}, "KubeVirt v1.3.1 (Harvester v1.4.x) has no such condition"
    assert vmi["status"]["migrationMethod"] == "LiveMigration"
    interface = vmi["status"]["interfaces"][0]
    assert interface["name"] == "default" and re.fullmatch(r"10\.52\.\d+\.\d+", interface["ipAddress"])
    assert vmi["status"]["volumeStatus"][0]["persistentVolumeClaimInfo"]["accessModes"] == ["ReadWriteMany"]

    [pod] = c.pods(ns)
    assert re.fullmatch(r"virt-launcher-web-[a-z0-9]{5}", pod.metadata.name)
    assert pod.metadata.labels == {"harvesterhci.io/vmName": "web", "kubevirt.io": "virt-launcher",
                                   "kubevirt.io/created-by": vmi["metadata"]["uid"], "vm.kubevirt.io/name": "web"}
    assert [(r.kind, r.name, r.uid, r.controller) for r in pod.metadata.owner_references] == \
        [("VirtualMachineInstance", "web", vmi["metadata"]["uid"], True)]
    assert (pod.spec.node_name, pod.status.phase, pod.status.pod_ip) == (node, "Running", interface["ipAddress"])
    assert vmi["status"]["activePods"] == {pod.metadata.uid: node}

    vm = wait_until(lambda: (lambda v: v if v["status"].get("printableStatus") == "Running" else None)(
        c.get(ns, "virtualmachines", "web")), 10, "VM Running")
    assert (vm["status"]["ready"], vm["status"]["created"], vm["status"]["runStrategy"]) == (True, True, "Always")
    assert condition(vm, "Ready")["status"] == "True"


def test_running_false_stops_the_vm_and_true_starts_a_new_instance(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "db", run={"running": True})
    first = running_vmi(c, ns, "db")
    c.patch(ns, "virtualmachines", "db", {"spec": {"running": False}})
    wait_until(lambda: c.get(ns, "virtualmachineinstances", "db") is None and not c.pods(ns), 20,
               "the VMI and its pod are gone")
    vm = wait_until(lambda: (lambda v: v if v["status"].get("printableStatus") == "Stopped" else None)(
        c.get(ns, "virtualmachines", "db")), 10, "VM Stopped")
    assert "ready" not in vm["status"] and "created" not in vm["status"]
    assert condition(vm, "Ready") | {"lastProbeTime": None, "lastTransitionTime": None} == \
        {"type": "Ready", "status": "False", "reason": "VMINotExists", "message": "VMI does not exist",
         "lastProbeTime": None, "lastTransitionTime": None}

    c.patch(ns, "virtualmachines", "db", {"spec": {"running": True}})
    second = running_vmi(c, ns, "db")
    assert second["metadata"]["uid"] != first["metadata"]["uid"]


def test_run_strategy_halted_stops_it_and_a_deleted_vm_takes_its_vmi_and_pod(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "cache", run={"runStrategy": "Always"})
    running_vmi(c, ns, "cache")
    c.patch(ns, "virtualmachines", "cache", {"spec": {"runStrategy": "Halted"}})
    wait_until(lambda: c.get(ns, "virtualmachineinstances", "cache") is None and not c.pods(ns), 20, "stopped")

    make_vm(c, ns, "queue")
    running_vmi(c, ns, "queue")
    c.delete(ns, "virtualmachines", "queue")
    wait_until(lambda: c.get(ns, "virtualmachineinstances", "queue") is None and not c.pods(ns), 20,
               "the deleted VM's VMI and pod are gone")


def test_vms_spread_over_nodes_and_a_hostname_selector_pins_one(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "a")
    first = running_vmi(c, ns, "a")["status"]["nodeName"]
    make_vm(c, ns, "b")
    second = running_vmi(c, ns, "b")["status"]["nodeName"]
    assert first != second, "the least loaded node is chosen"
    pinned = c.node_names()[-1]
    make_vm(c, ns, "pinned", node_selector={"kubernetes.io/hostname": pinned})
    assert running_vmi(c, ns, "pinned")["status"]["nodeName"] == pinned


def test_a_vm_no_node_fits_waits_unschedulable(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "lost", node_selector={"kubernetes.io/hostname": "no-such-node"})
    wait_until(lambda: (c.get(ns, "virtualmachines", "lost") or {}).get("status", {}).get("printableStatus")
               == "ErrorUnschedulable", 10, "ErrorUnschedulable")
    vmi = c.get(ns, "virtualmachineinstances", "lost")
    assert vmi["status"]["phase"] == "Scheduling" and "nodeName" not in vmi["status"]
    scheduled = condition(vmi, "PodScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert scheduled["message"].startswith("0/3 nodes are available: 3 node(s) didn't match Pod's node "
                                           "affinity/selector.")
    [pod] = c.pods(ns)
    assert (pod.status.phase, pod.spec.node_name) == ("Pending", None)


def test_a_missing_pvc_holds_the_vm_until_it_appears(clients: Clients, ns: str) -> None:
    c = clients
    c.create(ns, "virtualmachines", vm_body("late", claim="late-disk"))
    vm = wait_until(lambda: (lambda v: v if v["status"].get("printableStatus") == "ErrorPvcNotFound" else None)(
        c.get(ns, "virtualmachines", "late")), 10, "ErrorPvcNotFound")
    vmi = c.get(ns, "virtualmachineinstances", "late")
    assert condition(vmi, "Synchronized")["message"] == f"PVC {ns}/late-disk does not exist, waiting for it to appear"
    assert vm and not c.pods(ns)
    c.pvc(ns, "late-disk")
    running_vmi(c, ns, "late")


# ---- live migration ---------------------------------------------------------------------------------------

def test_a_migration_moves_the_vmi_to_another_node_through_every_phase(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "mover", network="multus")
    before = running_vmi(c, ns, "mover")
    source = before["status"]["nodeName"]
    [source_pod] = c.pods(ns)
    vm_rv = c.custom.list_namespaced_custom_object(*KV, ns, "virtualmachines")["metadata"]["resourceVersion"]
    created = migrate(c, ns, "mover", "mover-1")
    assert created["metadata"]["labels"] == {"kubevirt.io/vmi-name": "mover"}
    assert created["metadata"]["finalizers"] == ["kubevirt.io/migrationJobFinalize"]
    done = finished_migration(c, ns, "mover-1")
    assert phases(done) == MIGRATION_PHASES
    assert not done["metadata"].get("finalizers"), "a finished migration loses its finalizer"

    after = c.get(ns, "virtualmachineinstances", "mover")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    target = after["status"]["nodeName"]
    assert target != source and after["metadata"]["labels"]["kubevirt.io/nodeName"] == target
    state_ = after["status"]["migrationState"]
    assert (state_["sourceNode"], state_["targetNode"], state_["completed"], state_["mode"]) == \
        (source, target, True, "PreCopy")
    assert state_["migrationUid"] == done["metadata"]["uid"] and state_["startTimestamp"] <= state_["endTimestamp"]
    assert state_["sourcePod"] == source_pod.metadata.name
    assert done["status"]["migrationState"] == state_, "the migration keeps a copy of the VMI's migration state"
    assert "kubevirt.io/migrationTargetNodeName" not in after["metadata"]["labels"]
    assert after["status"]["interfaces"][0]["ipAddress"] == before["status"]["interfaces"][0]["ipAddress"], \
        "the guest keeps its VLAN address"
    annotations = after["metadata"]["annotations"]
    assert "harvesterhci.io/migrationUID" not in annotations, "Harvester resets its migration annotations"

    pods = {p.metadata.name: p for p in c.pods(ns)}
    old = pods[source_pod.metadata.name]
    assert (old.status.phase, old.spec.node_name) == ("Succeeded", source), "the source launcher exits (Completed)"
    [new] = [p for p in pods.values() if p.metadata.name != source_pod.metadata.name]
    assert (new.spec.node_name, new.status.phase) == (target, "Running")
    assert new.metadata.labels["kubevirt.io/migrationJobUID"] == done["metadata"]["uid"]
    assert after["status"]["activePods"] == {new.metadata.uid: target}

    pause = json.loads(annotations["kubevirt.simulator.harvesterhci.io/last-switchover"])
    assert pause["migrationUID"] == done["metadata"]["uid"]
    assert (pause["sourceNode"], pause["targetNode"]) == (source, target)
    assert 0.1 <= pause["pauseSimulatedSeconds"] <= 0.5 and pause["pausedAt"] <= pause["resumedAt"]

    statuses: list[str] = []
    for event in kubernetes.watch.Watch().stream(c.custom.list_namespaced_custom_object, *KV, ns, "virtualmachines",
                                                 resource_version=vm_rv, timeout_seconds=2):
        statuses.append(event["object"]["status"].get("printableStatus"))
        if statuses[-1] == "Running" and "Migrating" in statuses:
            break
    assert "Migrating" in statuses, statuses


def test_a_second_migration_while_one_runs_is_refused(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "busy", memory="8Gi")
    running_vmi(c, ns, "busy")
    first = migrate(c, ns, "busy", "busy-1")
    with pytest.raises(ApiException) as refused:
        migrate(c, ns, "busy", "busy-2")
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["message"] == (
        f"{MIGRATION_WEBHOOK}in-flight migration detected. Active migration job ({first['metadata']['uid']}) is "
        "currently already in progress for VMI busy.")
    assert finished_migration(c, ns, "busy-1")["status"]["phase"] == "Succeeded"


def test_a_migration_deleted_before_it_ends_is_cancelled_and_the_vm_stays(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "stay", memory="8Gi")
    before = running_vmi(c, ns, "stay")
    migrate(c, ns, "stay", "stay-1")
    c.delete(ns, "virtualmachineinstancemigrations", "stay-1")
    wait_until(lambda: c.get(ns, "virtualmachineinstancemigrations", "stay-1") is None, 20,
               "the cancelled migration releases its finalizer and goes")
    wait_until(lambda: len(c.pods(ns)) == 1, 10, "the target pod is gone")
    after = c.get(ns, "virtualmachineinstances", "stay")
    assert (after["status"]["phase"], after["status"]["nodeName"]) == ("Running", before["status"]["nodeName"])
    [pod] = c.pods(ns)
    assert pod.status.phase == "Running" and pod.spec.node_name == before["status"]["nodeName"]
    assert "harvesterhci.io/migrationUID" not in (after["metadata"].get("annotations") or {})


def test_finished_migrations_beyond_five_per_vmi_are_collected(clients: Clients, ns: str) -> None:
    c = clients
    make_vm(c, ns, "nomad")
    running_vmi(c, ns, "nomad")
    for number in range(7):
        migrate(c, ns, "nomad", f"nomad-{number}")
        assert finished_migration(c, ns, f"nomad-{number}")["status"]["phase"] == "Succeeded"
    kept = sorted(m["metadata"]["name"] for m in c.objects(ns, "virtualmachineinstancemigrations"))
    assert kept == [f"nomad-{n}" for n in range(2, 7)]


def test_the_drain_taint_evacuates_a_node_two_migrations_at_a_time(clients: Clients, ns: str) -> None:
    """`kubectl taint node <node> kubevirt.io/drain=draining:NoSchedule`, as Harvester's pre-drain does."""
    c = clients
    first, *others = c.node_names()
    try:
        for node in others:
            c.core.patch_node(node, {"spec": {"unschedulable": True}})
        for number in range(4):
            make_vm(c, ns, f"crowd-{number}")
        assert {running_vmi(c, ns, f"crowd-{n}")["status"]["nodeName"] for n in range(4)} == {first}
        for node in others:
            c.core.patch_node(node, {"spec": {"unschedulable": None}})
        rv = c.custom.list_namespaced_custom_object(*KV, ns, "virtualmachineinstancemigrations")["metadata"][
            "resourceVersion"]
        c.core.patch_node(first, {"spec": {"taints": [{"key": "kubevirt.io/drain", "value": "draining",
                                                       "effect": "NoSchedule"}]}})
        phase_of: dict[str, str] = {}
        most = 0
        for event in kubernetes.watch.Watch().stream(c.custom.list_namespaced_custom_object, *KV, ns,
                                                     "virtualmachineinstancemigrations", resource_version=rv,
                                                     timeout_seconds=10):
            migration = event["object"]
            phase_of[migration["metadata"]["name"]] = (migration.get("status") or {}).get("phase", "")
            most = max(most, sum(1 for p in phase_of.values() if p not in ("", "Pending", "Succeeded", "Failed")))
            if len(phase_of) == 4 and set(phase_of.values()) == {"Succeeded"}:
                break
        assert set(phase_of.values()) == {"Succeeded"} and len(phase_of) == 4, phase_of
        assert all(name.startswith("kubevirt-evacuation-") for name in phase_of)
        assert most <= 2, "ParallelOutboundMigrationsPerNode"
        assert all(running_vmi(c, ns, f"crowd-{n}")["status"]["nodeName"] in others for n in range(4))
        make_vm(c, ns, "newcomer")
        assert running_vmi(c, ns, "newcomer")["status"]["nodeName"] != first, "the taint keeps new VMs off"
    finally:
        for node in c.node_names():
            c.core.patch_node(node, {"spec": {"unschedulable": None, "taints": None}})


@pytest.mark.parametrize("case", ["rwo-disk", "pod-bridge"])
def test_a_non_migratable_vmi_says_why_and_its_migration_is_refused(clients: Clients, ns: str, case: str) -> None:
    c = clients
    if case == "rwo-disk":
        make_vm(c, ns, "pinned-disk", pvc_mode="ReadWriteOnce")
        name, reason, message = "pinned-disk", "DisksNotLiveMigratable", PVC_NOT_SHARED.format(claim="pinned-disk-disk-0")
    else:
        make_vm(c, ns, "bridged", network="none")          # no networks: KubeVirt adds the pod network, bridge-bound
        name, reason, message = "bridged", "InterfaceNotLiveMigratable", POD_BRIDGE
    vmi = running_vmi(c, ns, name)
    if case == "pod-bridge":
        assert vmi["spec"]["networks"] == [{"name": "default", "pod": {}}]
        assert vmi["spec"]["domain"]["devices"]["interfaces"] == [{"name": "default", "bridge": {}}]
    migratable = condition(vmi, "LiveMigratable")
    assert (migratable["status"], migratable["reason"], migratable["message"]) == ("False", reason, message)
    vm = wait_until(lambda: (lambda v: v if condition(v, "LiveMigratable") else None)(
        c.get(ns, "virtualmachines", name)), 10, "the VM shows the VMI's LiveMigratable")
    assert condition(vm, "LiveMigratable")["reason"] == reason
    with pytest.raises(ApiException) as refused:
        migrate(c, ns, name, f"{name}-1")
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["message"] == \
        f"{MIGRATION_WEBHOOK}Cannot migrate VMI, Reason: {reason}, Message: {message}"
    assert c.objects(ns, "virtualmachineinstancemigrations") == []
    assert c.get(ns, "virtualmachineinstances", name)["status"]["nodeName"] == vmi["status"]["nodeName"]


def test_migrating_a_missing_vmi_is_refused(clients: Clients, ns: str) -> None:
    with pytest.raises(ApiException) as refused:
        migrate(clients, ns, "ghost")
    assert json.loads(refused.value.body)["message"] == f'{MIGRATION_WEBHOOK}the VMI "{ns}/ghost" does not exist'


# ---- the upgrade's NodesUpgraded --------------------------------------------------------------------------

def vmi_history(c: Clients, namespace: str, stop: threading.Event) -> tuple[list[Obj], threading.Thread]:
    """Every VMI watch event in the namespace until `stop` (as the client sees them)."""
    events: list[Obj] = []

    def follow() -> None:
        rv = c.custom.list_namespaced_custom_object(*KV, namespace, "virtualmachineinstances")["metadata"][
            "resourceVersion"]
        while not stop.is_set():
            for event in kubernetes.watch.Watch().stream(c.custom.list_namespaced_custom_object, *KV, namespace,
                                                         "virtualmachineinstances", resource_version=rv,
                                                         timeout_seconds=1):
                events.append({"type": event["type"], "name": event["object"]["metadata"]["name"],
                               "uid": event["object"]["metadata"]["uid"]})
                rv = event["object"]["metadata"]["resourceVersion"]
                if stop.is_set():
                    break
    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    return events, thread


def pre_drain_log(c: Clients, upgrade: str, node: str) -> str:
    """The pre-drain Job's pod log (read with the harness's client: the typed client rejects the simulator's
    Job pods, which report no imageID)."""
    pods = c.kube.list("v1", "Pod", NS, label_selector=f"job-name={upgrade}-pre-drain-{node}")
    return "".join(c.kube.pod_log(p["metadata"]["name"], NS, container="apply") + "\n" for p in pods)


def test_an_upgrade_live_migrates_every_vm_off_each_node_and_keeps_them_running(fresh) -> None:  # noqa: ANN001
    c: Clients = fresh("v1.4.2")
    namespace = c.namespace()
    make_vm(c, namespace, "app-1")
    make_vm(c, namespace, "app-2", network="multus")
    uids = {n: running_vmi(c, namespace, n)["metadata"]["uid"] for n in ("app-1", "app-2")}
    assert len({running_vmi(c, namespace, n)["status"]["nodeName"] for n in uids}) == 2, "on different nodes"
    stop = threading.Event()
    events, follower = vmi_history(c, namespace, stop)
    name = start_upgrade(c.kube, c.simulator, "master-ce188325-head")
    seen = watch_upgrade(c.kube, name, terminal, seconds=120)
    stop.set()
    follower.join(5)
    assert state(seen[-1]) == "Succeeded"
    for node, states in node_state_sequences(seen).items():
        assert states[2:] == ["Pre-draining", "Pre-drained", "Post-draining", "Waiting Reboot", "Succeeded"], node

    nodes = c.node_names()
    for vm, uid in uids.items():
        vmi = c.get(namespace, "virtualmachineinstances", vm)
        assert vmi["metadata"]["uid"] == uid, f"{vm}: the same instance throughout"
        assert vmi["status"]["phase"] == "Running" and vmi["status"]["nodeName"] in nodes
        assert vmi["status"]["nodeName"] != nodes[-1], "drained last, it sent its VMs back to upgraded nodes"
        assert vmi["status"]["migrationState"]["completed"] is True
        assert c.get(namespace, "virtualmachines", vm)["status"]["printableStatus"] == "Running"
        migrations = c.objects(namespace, "virtualmachineinstancemigrations", f"kubevirt.io/vmi-name={vm}")
        assert migrations and all(m["status"]["phase"] == "Succeeded" for m in migrations), vm
        assert all(m["metadata"]["name"].startswith("kubevirt-evacuation-") and
                   m["metadata"]["annotations"]["kubevirt.io/evacuationMigration"] in nodes for m in migrations)
        running = [p for p in c.pods(namespace, f"kubevirt.io/created-by={uid}") if p.status.phase == "Running"]
        assert [p.spec.node_name for p in running] == [vmi["status"]["nodeName"]]
    assert not [e for e in events if e["type"] == "DELETED"], "no VMI was deleted"
    assert {e["uid"] for e in events} == set(uids.values())
    assert all(not (n.spec.taints or []) for n in c.core.list_node().items), "the drain taint is lifted"
    log = pre_drain_log(c, name, nodes[0])
    assert "Non-migratable VM(s): []" in log
    assert f"all VMs on node {nodes[0]} have been live-migrated or shutdown" in log


@pytest.mark.parametrize("source,target", [("v1.4.2", "v1.4.3"), ("v1.5.0", "master-ce188325-head")])
def test_a_vm_harvester_cannot_migrate_refuses_the_upgrade_and_is_shut_down_if_it_is_forced(
        fresh, source: str, target: str) -> None:  # noqa: ANN001
    """Every simulated release runs the same precheck and pre-drain (harvester_upgrade.py's table)."""
    c: Clients = fresh(source)
    namespace = c.namespace()
    pinned = c.node_names()[0]
    make_vm(c, namespace, "pinned", run={"runStrategy": "Always"}, node_selector={"kubernetes.io/hostname": pinned})
    make_vm(c, namespace, "free")
    running_vmi(c, namespace, "pinned")
    free = running_vmi(c, namespace, "free")
    free_uid = free["metadata"]["uid"]
    storage = condition(free, "StorageLiveMigratable")
    assert storage.get("status") == ("True" if source.startswith("v1.5") else None), "KubeVirt v1.4.0 on"
    with pytest.raises(ApiFailure) as refused:
        start_upgrade(c.kube, c.simulator, target)
    assert refused.value.status == 422
    assert f"{UPGRADE_WEBHOOK}There are non-live migratable VMs that need to be shut off before initiating the " \
           f"upgrade: {namespace}/pinned" in str(refused.value)
    assert not c.kube.list("harvesterhci.io/v1beta1", "Upgrade", NS)

    name = start_upgrade(c.kube, c.simulator, target, annotations={"harvesterhci.io/skipWebhook": "true"})
    seen = watch_upgrade(c.kube, name, terminal, seconds=120)
    assert state(seen[-1]) == "Succeeded", condition(seen[-1], "Completed")
    vm = c.get(namespace, "virtualmachines", "pinned")
    assert vm["spec"]["runStrategy"] == "Halted", "virtctl stop of an Always VM"
    assert vm["status"]["printableStatus"] == "Stopped", "no restore on a multi-node cluster"
    assert c.get(namespace, "virtualmachineinstances", "pinned") is None
    assert f"vm {namespace}/pinned was administratively stopped" in pre_drain_log(c, name, pinned)
    free = c.get(namespace, "virtualmachineinstances", "free")
    assert (free["metadata"]["uid"], free["status"]["phase"]) == (free_uid, "Running")


def test_a_vm_kubevirt_cannot_migrate_holds_its_nodes_pre_drain_until_it_is_stopped(fresh) -> None:  # noqa: ANN001
    """An RWO disk: Harvester's detector passes it, KubeVirt's evacuation skips it, the pre-drain waits."""
    c: Clients = fresh("v1.4.2")
    namespace = c.namespace()
    make_vm(c, namespace, "rwo", pvc_mode="ReadWriteOnce")
    vmi = running_vmi(c, namespace, "rwo")
    node = vmi["status"]["nodeName"]
    name = start_upgrade(c.kube, c.simulator, "v1.4.3")          # the precheck lets it through
    watch_upgrade(c.kube, name, lambda u: ((u.get("status") or {}).get("nodeStatuses") or {}).get(node, {}).get(
        "state") == "Pre-draining", seconds=120)
    wait_until(lambda: "Waiting for VM live-migration or shutdown...(count: 1)" in pre_drain_log(c, name, node), 20,
               "the pre-drain Job waits for the VM")
    time.sleep(1.0)                                              # 600 simulated seconds more: still waiting
    upgrade = c.kube.get("harvesterhci.io/v1beta1", "Upgrade", name, NS)
    assert upgrade["status"]["nodeStatuses"][node]["state"] == "Pre-draining"
    assert c.get(namespace, "virtualmachineinstances", "rwo")["status"]["nodeName"] == node
    assert c.objects(namespace, "virtualmachineinstancemigrations") == [], "evacuation skips a non-migratable VMI"
    assert (c.kube.get("v1", "Node", node)["spec"]["taints"] ==
            [{"key": "kubevirt.io/drain", "value": "draining", "effect": "NoSchedule"}])

    c.patch(namespace, "virtualmachines", "rwo", {"spec": {"runStrategy": "Halted"}})     # the admin stops it
    seen = watch_upgrade(c.kube, name, terminal, seconds=120)
    assert state(seen[-1]) == "Succeeded"
    assert f"all VMs on node {node} have been live-migrated or shutdown" in pre_drain_log(c, name, node)


def test_a_single_node_upgrade_stops_every_vm_and_leaves_them_stopped(fresh) -> None:  # noqa: ANN001
    """`command_single_node_upgrade`: shutdown_all_vms, wait_vms_out; restoreVM is off by default (upgrade-config)."""
    c: Clients = fresh("v1.4.2", nodes=1)
    namespace = c.namespace()
    [node] = c.node_names()
    make_vm(c, namespace, "solo")                                   # RerunOnFailure
    make_vm(c, namespace, "pinned", run={"running": True}, node_selector={"kubernetes.io/hostname": node})
    running_vmi(c, namespace, "solo")
    running_vmi(c, namespace, "pinned")
    name = start_upgrade(c.kube, c.simulator, "v1.4.3")          # one node: nothing is "non-live-migratable"
    seen = watch_upgrade(c.kube, name, terminal, seconds=120)
    assert state(seen[-1]) == "Succeeded"
    assert c.objects(namespace, "virtualmachineinstances") == []
    solo, pinned = (c.get(namespace, "virtualmachines", n) for n in ("solo", "pinned"))
    assert (solo["spec"]["runStrategy"], solo["status"]["printableStatus"]) == ("RerunOnFailure", "Stopped"), \
        "a Stop request, the strategy kept"
    assert (pinned["spec"]["running"], pinned["status"]["printableStatus"]) == (False, "Stopped")
    log = "".join(c.kube.pod_log(p["metadata"]["name"], NS, container="apply")
                  for p in c.kube.list("v1", "Pod", NS, label_selector=f"job-name={name}-single-node-upgrade-{node}"))
    assert f"Stop {namespace}/pinned" in log and "all VMs are down" in log
