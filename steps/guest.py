"""Steps about guest RKE2 clusters on Harvester: the CSI driver and cloud provider charts in them.

Thin: the work is in infra/harvester/guest/. State passes between steps as fixtures the steps produce
(`target_fixture`): the `guest`, the `guest_data` a workload wrote, the `volume_chain` behind it, and the
`load_balancers` of the scenario.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import allure
from pytest_bdd import given, parsers, then, when

from infra.cleanup import CleanupStack
from infra.cluster import Capability, Cluster
from infra.config import RunConfig
from infra.harvester import ippool
from infra.harvester.guest import audit, charts, csi, rollout, volumes, volume_data
from infra.harvester.guest.volume_data import DataRecord, DataWorkload
from infra.harvester.guest import cluster as guests
from infra.harvester.guest import loadbalancers as lbs
from infra.harvester.names import RUN_ID_LABEL
from infra.report.attach import attach_json, attach_text
from infra.report.facts import ScenarioFacts
from infra.waits.budget import Budget
from infra.waits.catalogue import Wait, budget

CLOUD_PROVIDER = "harvester-cloud-provider"
GUEST_POOL_SIZE = 10


@dataclass
class GuestData:
    """A workload's data on a guest PVC: where it is and what was written."""

    workload: DataWorkload
    record: DataRecord


@dataclass
class LoadBalancerScene:
    """The scenario's guest LoadBalancer Services, where their addresses came from, and what changed."""

    namespace: str = ""
    pool: str = ""
    services: list[str] = field(default_factory=list)             # namespace/name
    served: dict[str, lbs.ServedAddress] = field(default_factory=dict)
    changes: list[lbs.AddressChange] = field(default_factory=list)


def _budget(run_config: RunConfig) -> Budget:
    return budget(Wait.GUEST_OPERATION, run_config)


def _files(guest: guests.GuestCluster) -> volume_data.ExecPodFiles:
    return volume_data.ExecPodFiles(guest.kube())


def _namespace(guest: guests.GuestCluster, run_id: str, cleanup: CleanupStack, gone: Budget) -> str:
    name = f"e2e-{secrets.token_hex(3)}"
    kube = guest.kube()
    cleanup.delete_later(kube, "v1", "Namespace", name, budget=gone)
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {RUN_ID_LABEL: run_id}}})
    return name


def _chart(guest: guests.GuestCluster, name: str, version: str) -> charts.Chart:
    values: dict[str, Any] = {}
    if name == CLOUD_PROVIDER:      # Rancher passes the cluster name; it names the host LoadBalancers
        values = {"global": {"cattle": {"clusterName": guest.name}}}
    return charts.Chart(name, version, values=values)


def _installer(guest: guests.GuestCluster, run_config: RunConfig) -> charts.HelmChartInstaller:
    return charts.HelmChartInstaller(guest.kube(), run_config.run_id, _budget(run_config))


# ---- the guest ------------------------------------------------------------------------------------

@given(parsers.parse("a guest RKE2 {rke2} cluster managed by Rancher {rancher}"), target_fixture="guest")
def a_guest_cluster(rke2: str, rancher: str, cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack,
                    facts: ScenarioFacts) -> guests.GuestCluster:
    facts.record("rke2", rke2)
    facts.record("rancher", rancher)
    guest = guests.obtain_guest(cluster, rke2, rancher, run_config.run_id, cleanup, _budget(run_config),
                                budget(Wait.GUEST_PROVISIONED, run_config))
    allure.dynamic.parameter("host Harvester", cluster.harvester_version)
    attach_text("guest nodes", guests.check_matrix_row(guest, rke2, rancher) +
                (f"\n\nprovisioned by Rancher {guest.provisioned_by}" if guest.provisioned_by else ""))
    return guest


@given("no node of the guest is labelled as a control-plane node")
def no_control_plane_label(guest: guests.GuestCluster, cleanup: CleanupStack) -> None:
    removed = guests.strip_control_plane_labels(guest.kube(), cleanup.defer)
    attach_json("control-plane labels removed (restored at cleanup)", removed)
    left = [n.name for n in guest.nodes() if n.control_plane]
    assert not left, f"nodes still labelled as control plane: {left}"


# ---- charts -------------------------------------------------------------------------------------------

@when(parsers.re(r"the (?P<name>[\w-]+) chart (?P<version>\d+\.\d+\.\d+) is installed in the guest"))
def install_chart(name: str, version: str, guest: guests.GuestCluster, run_config: RunConfig,
                  cleanup: CleanupStack) -> None:
    installer = _installer(guest, run_config)
    cleanup.defer(f"uninstall {name} from guest {guest.name}", lambda: installer.uninstall(name))
    installer.install(_chart(guest, name, version))
    attach_text("helm history", _history(guest, name))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is upgraded to (?P<version>\d+\.\d+\.\d+)$"))
def upgrade_chart(name: str, version: str, guest: guests.GuestCluster, run_config: RunConfig) -> None:
    _installer(guest, run_config).upgrade(_chart(guest, name, version))
    attach_text("helm history", _history(guest, name))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is upgraded to (?P<version>\d+\.\d+\.\d+) "
                 r"while the load balancers are watched"))
def upgrade_chart_watched(name: str, version: str, guest: guests.GuestCluster, run_config: RunConfig,
                          load_balancers: LoadBalancerScene) -> None:
    initial = {svc.split("/")[1]: served.address for svc, served in load_balancers.served.items()}
    with lbs.AddressWatch(guest.kube(), load_balancers.namespace, initial) as watch:
        _installer(guest, run_config).upgrade(_chart(guest, name, version))
        rollout.wait_deployment_rolled_out(guest.kube(), name, "kube-system", _budget(run_config))
    load_balancers.changes = watch.changes
    attach_text("helm history", _history(guest, name))
    if watch.errors:
        attach_text("address watch reconnects", "\n".join(watch.errors))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is uninstalled"))
def uninstall_chart(name: str, guest: guests.GuestCluster, run_config: RunConfig) -> None:
    _installer(guest, run_config).uninstall(name)


def _history(guest: guests.GuestCluster, release: str) -> str:
    return charts.history_table(charts.release_history(guest.kube(), release))


@then(parsers.parse("the {name} Deployment is rolled out"))
def deployment_rolled_out(name: str, guest: guests.GuestCluster, run_config: RunConfig) -> None:
    deployment = rollout.wait_deployment_rolled_out(guest.kube(), name, "kube-system", _budget(run_config))
    attach_text(f"{name} pods", rollout.placement_table(
        rollout.placements(guest.kube(), "kube-system", rollout.selector_of(deployment))))


@then(parsers.parse("nothing of the {name} chart remains in the guest"))
def chart_gone(name: str, guest: guests.GuestCluster, run_config: RunConfig) -> None:
    audit.assert_chart_gone(guest.kube(), name, _budget(run_config))


# ---- the CSI controllers' placement ---------------------------------------------------------------------

@then("where the CSI controller pods run is recorded")
def record_controller_placement(guest: guests.GuestCluster) -> None:
    rows = csi.controller_placements(guest.kube())
    attach_text("CSI controller pods before the upgrade", rollout.placement_table(rows))
    assert rows and all(r.phase == "Running" for r in rows), rollout.placement_table(rows)


@then("every CSI controller pod runs on a control-plane node")
def controllers_on_control_plane(guest: guests.GuestCluster) -> None:
    attach_text("CSI controller pods after the upgrade",
                rollout.placement_table(csi.assert_controllers_on_control_plane(guest.kube())))


@then("every CSI controller pod stays Pending because no node matches its required control-plane affinity")
def controllers_pending(guest: guests.GuestCluster, run_config: RunConfig) -> None:
    pending = csi.wait_controllers_pending_for_affinity(guest.kube(), _budget(run_config))
    attach_text("why the CSI controllers are Pending", pending.report())


@then("the CSI node plugin runs on every node")
def node_plugin_everywhere(guest: guests.GuestCluster, run_config: RunConfig) -> None:
    rows = csi.assert_node_plugin_everywhere(guest.kube(), {n.name for n in guest.nodes()}, _budget(run_config))
    attach_text("CSI node plugin pods", rollout.placement_table(rows))


# ---- volumes and data -------------------------------------------------------------------------------------

@when("a workload writes data to a PVC on the harvester StorageClass", target_fixture="guest_data")
def workload_writes_data(guest: guests.GuestCluster, run_config: RunConfig, cleanup: CleanupStack) -> GuestData:
    data_workload, pod = volume_data.deploy(
        guest.kube(), _namespace(guest, run_config.run_id, cleanup, budget(Wait.OBJECT_GONE, run_config)),
        run_config.run_id, cleanup, _budget(run_config), budget(Wait.OBJECT_GONE, run_config))
    record = volume_data.write_data(_files(guest), data_workload, pod["metadata"]["name"])
    attach_json("data written", {"pod": pod["metadata"]["name"], "node": pod["spec"]["nodeName"],
                                 "bytes": record.size, "sha256": record.sha256})
    return GuestData(data_workload, record)


@then("the guest PVC is backed by a host PVC and a Longhorn volume", target_fixture="volume_chain")
def volume_chain(guest: guests.GuestCluster, guest_data: GuestData, run_config: RunConfig) -> volumes.VolumeChain:
    chain = volumes.volume_chain(guest, guest_data.workload.namespace, guest_data.workload.claim, _budget(run_config))
    attach_json("volume chain", chain.as_rows())
    return chain


@then("the Longhorn volume is attached to the host node of the workload's guest node")
def attached_to_workload_node(guest: guests.GuestCluster, guest_data: GuestData, volume_chain: volumes.VolumeChain,
                              run_config: RunConfig) -> None:
    pod = volume_data.the_pod(guest.kube(), guest_data.workload)
    attachment = volumes.wait_attached(guest, volume_chain, pod["spec"]["nodeName"], _budget(run_config))
    attach_json("attachment", attachment.__dict__)


@when(parsers.parse("the workload is scaled to {replicas:d}"))
def scale_workload(replicas: int, guest: guests.GuestCluster, guest_data: GuestData, run_config: RunConfig) -> None:
    volume_data.scale(guest.kube(), guest_data.workload, replicas, _budget(run_config))


@then("the Longhorn volume is detached")
def detached(guest: guests.GuestCluster, volume_chain: volumes.VolumeChain, run_config: RunConfig) -> None:
    volumes.wait_detached(guest, volume_chain, _budget(run_config))


@then("the data and its checksum are intact")
def data_intact(guest: guests.GuestCluster, guest_data: GuestData) -> None:
    pod = volume_data.the_pod(guest.kube(), guest_data.workload)
    read = volume_data.verify_data(_files(guest), guest_data.workload, pod["metadata"]["name"], guest_data.record)
    attach_json("data read back", {"pod": pod["metadata"]["name"], "node": pod["spec"]["nodeName"], "sha256": read})


@when("the workload and its PVC are deleted")
def delete_workload_and_claim(guest: guests.GuestCluster, guest_data: GuestData, volume_chain: volumes.VolumeChain,
                              run_config: RunConfig) -> None:
    kube, data, gone = guest.kube(), guest_data.workload, budget(Wait.OBJECT_GONE, run_config)
    kube.delete("apps/v1", "Deployment", data.name, data.namespace)
    kube.delete("v1", "PersistentVolumeClaim", data.claim, data.namespace)
    kube.wait_for_gone("v1", "PersistentVolume", volume_chain.guest_pv, budget=gone)
    volumes.wait_host_side_gone(guest, volume_chain, gone)


# ---- load balancers ----------------------------------------------------------------------------------------

@given("an IPPool on the host for the guest cluster", target_fixture="load_balancers")
def an_ippool(guest: guests.GuestCluster, cluster: Cluster, run_config: RunConfig,
              cleanup: CleanupStack) -> LoadBalancerScene:
    cluster.require(Capability.LB_ADDRESSES, "an IPPool for the guest's load balancers")
    assert cluster.lb_addresses is not None
    host, name = guest.host, f"{guest.name}-pool"
    block = ippool.free_block(host, cluster.lb_addresses, GUEST_POOL_SIZE)
    cleanup.delete_later(host, lbs.LB_API, "IPPool", name, budget=budget(Wait.OBJECT_GONE, run_config))
    host.create(lbs.ippool_manifest(name, guest.name, guest.host_namespace, run_config.run_id, block))
    return LoadBalancerScene(pool=name)


@when(parsers.parse('a LoadBalancer Service "{name}" with IPAM {ipam} is created in the guest'))
def create_lb_service(name: str, ipam: str, guest: guests.GuestCluster, load_balancers: LoadBalancerScene,
                      run_config: RunConfig, cleanup: CleanupStack) -> None:
    kube, gone = guest.kube(), budget(Wait.OBJECT_GONE, run_config)
    if not load_balancers.namespace:
        load_balancers.namespace = _namespace(guest, run_config.run_id, cleanup, gone)
    namespace = load_balancers.namespace
    cleanup.delete_later(kube, "v1", "Service", name, namespace, budget=gone)
    kube.create(lbs.service_manifest(namespace, name, ipam, run_config.run_id))
    load_balancers.services.append(f"{namespace}/{name}")


@then("every LoadBalancer Service gets an address and the host shows where it came from")
def every_service_served(guest: guests.GuestCluster, load_balancers: LoadBalancerScene, run_config: RunConfig) -> None:
    load_balancers.served = lbs.serve_all(guest, guest.name, list(load_balancers.services), _budget(run_config))
    attach_text("addresses and their source", "\n".join(s.row() for s in load_balancers.served.values()))


@then("no LoadBalancer Service lost or changed its address during the upgrade")
def no_interruption(load_balancers: LoadBalancerScene) -> None:
    changes = load_balancers.changes
    attach_text("address changes seen during the upgrade", lbs.describe_changes(changes) or "none")
    assert not changes, "load balancer addresses changed during the upgrade: " + lbs.describe_changes(changes)


@then("every LoadBalancer Service still serves its address")
def still_served(guest: guests.GuestCluster, load_balancers: LoadBalancerScene, run_config: RunConfig) -> None:
    load_balancers.served = lbs.still_served(guest, guest.name, load_balancers.served, _budget(run_config))
    attach_text("addresses after the upgrade", "\n".join(s.row() for s in load_balancers.served.values()))


@when("every LoadBalancer Service is deleted")
def delete_every_service(guest: guests.GuestCluster, load_balancers: LoadBalancerScene,
                         run_config: RunConfig) -> None:
    kube = guest.kube()
    for key in load_balancers.services:
        namespace, name = key.split("/")
        kube.delete("v1", "Service", name, namespace)
    for key in load_balancers.services:
        namespace, name = key.split("/")
        kube.wait_for_gone("v1", "Service", name, namespace=namespace, budget=budget(Wait.OBJECT_GONE, run_config))


@then("the pool has its addresses back and no host LoadBalancer of the guest remains")
def pool_released(guest: guests.GuestCluster, load_balancers: LoadBalancerScene, run_config: RunConfig) -> None:
    gone = budget(Wait.OBJECT_GONE, run_config)
    lbs.wait_no_host_lbs(guest, guest.name, gone)
    lent = [s.address for s in load_balancers.served.values() if s.ipam == "pool"]
    pool = lbs.wait_pool_released(guest.host, load_balancers.pool, lent, gone)
    attach_json(f"IPPool {load_balancers.pool} status", pool.get("status") or {})
