"""Steps about guest RKE2 clusters on Harvester: the CSI driver and cloud provider charts in them.

Thin: the work is in infra/harvester/guest/. State a scenario builds up (the guest, its data
workload, its load balancers) lives in one `GuestStory` per scenario.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import allure
import pytest
from pytest_bdd import given, parsers, then, when

from infra.backends import Cluster
from infra.cleanup import CleanupStack
from infra.config import RunConfig
from infra.harvester.guest import audit, charts, csi, rollout, volumes, workload
from infra.harvester.guest import cluster as guests
from infra.harvester.guest import loadbalancers as lbs
from infra.harvester.names import RUN_ID_LABEL
from infra.report.attach import attach_json, attach_text
from infra.waits.budget import Budget

CLOUD_PROVIDER = "harvester-cloud-provider"


def pytest_configure(config: pytest.Config) -> None:
    for marker, text in (("csi", "the Harvester CSI driver chart in a guest cluster"),
                         ("cloud_provider", "the Harvester cloud provider chart in a guest cluster"),
                         ("full_matrix", "rows of the full Rancher x RKE2 matrix (nightly)")):
        config.addinivalue_line("markers", f"{marker}: {text}")


@dataclass
class GuestStory:
    host: Cluster
    guest: guests.GuestCluster
    run_id: str
    budget: Budget
    installer: charts.HelmChartInstaller
    namespace: str = ""
    data_workload: workload.DataWorkload | None = None
    chain: volumes.VolumeChain | None = None
    data: workload.DataRecord | None = None
    pool: str = ""
    services: list[str] = field(default_factory=list)             # namespace/name
    served: dict[str, lbs.ServedAddress] = field(default_factory=dict)
    address_changes: list[lbs.AddressChange] = field(default_factory=list)

    @property
    def kube(self) -> Any:
        return self.guest.kube()

    def files(self) -> workload.PodFiles:
        return workload.SimulatedPodFiles(self.kube) if self.guest.simulated else workload.ExecPodFiles(self.kube)

    def workload_namespace(self, cleanup: CleanupStack) -> str:
        if not self.namespace:
            name = f"e2e-{secrets.token_hex(3)}"
            cleanup.defer(f"delete guest namespace {name}", lambda: (
                self.kube.delete("v1", "Namespace", name),
                self.kube.wait_for_gone("v1", "Namespace", name, budget=self.budget)))
            self.kube.create({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": name, "labels": {RUN_ID_LABEL: self.run_id}}})
            self.namespace = name
        return self.namespace


def _chart(story: GuestStory, name: str, version: str) -> charts.Chart:
    values: dict[str, Any] = {}
    if name == CLOUD_PROVIDER:      # Rancher passes the cluster name; it names the host LoadBalancers
        values = {"global": {"cattle": {"clusterName": story.guest.name}}}
    return charts.Chart(name, version, values=values)


# ---- the guest ------------------------------------------------------------------------------------

@given(parsers.parse("a guest RKE2 {rke2} cluster managed by Rancher {rancher}"), target_fixture="guest_story")
def a_guest_cluster(rke2: str, rancher: str, cluster: Cluster, run_config: RunConfig,
                    cleanup: CleanupStack) -> GuestStory:
    budget = Budget.minutes("guest cluster operation", run_config.timeouts.api_wait_min)
    host = cluster.kube()
    if cluster.simulated:
        name = guests.guest_name("g")
        cleanup.defer(f"remove guest cluster {name}", lambda: guests.remove_simulated_guest(host, name))
        guest = guests.provision_simulated_guest(host, name, rke2, rancher, run_config.run_id)
        cleanup.defer(f"forget the kubeconfig of guest {name}", lambda: guests.forget_kubeconfig(guest))
    else:
        guest = _given_guest(run_config, host)
        cleanup.defer(f"forget the kubeconfig of guest {guest.name}", lambda: guests.forget_kubeconfig(guest))
        try:
            guests.check_matrix_row(guest, rke2, rancher)
        except guests.GuestMismatch as mismatch:
            pytest.skip(f"the given guest cluster is not this row's: {mismatch}")
    story = GuestStory(cluster, guest, run_config.run_id, budget,
                       charts.HelmChartInstaller(guest.kube(), run_config.run_id, budget))
    allure.dynamic.parameter("host Harvester", cluster.harvester_version)
    attach_text("guest nodes", guests.check_matrix_row(guest, rke2, rancher))
    return story


def _given_guest(run_config: RunConfig, host: Any) -> guests.GuestCluster:
    """A real backend's guest: `existing.guest` {name, host_namespace, kubeconfig?} in the configuration."""
    given = getattr(run_config.existing, "guest", None) if run_config.existing is not None else None
    if given is None:
        pytest.skip("no guest cluster configured: set existing.guest {name, host_namespace, kubeconfig} "
                    "(the kubeconfig is read from the host Secret <name>-kubeconfig when not given)")
    namespace = getattr(given, "host_namespace", None) or "default"
    if getattr(given, "kubeconfig", None):
        return guests.guest_from_kubeconfig(host, given.name, given.kubeconfig, namespace)
    return guests.guest_from_host_secret(host, given.name, namespace)


@given("no node of the guest is labelled as a control-plane node")
def no_control_plane_label(guest_story: GuestStory, cleanup: CleanupStack) -> None:
    removed = guests.strip_control_plane_labels(guest_story.kube, cleanup.defer)
    attach_json("control-plane labels removed (restored at cleanup)", removed)
    left = [n.name for n in guest_story.guest.nodes() if n.control_plane]
    assert not left, f"nodes still labelled as control plane: {left}"


# ---- charts -------------------------------------------------------------------------------------------

@when(parsers.re(r"the (?P<name>[\w-]+) chart (?P<version>\d+\.\d+\.\d+) is installed in the guest"))
def install_chart(name: str, version: str, guest_story: GuestStory, cleanup: CleanupStack) -> None:
    cleanup.defer(f"uninstall {name} from guest {guest_story.guest.name}",
                  lambda: guest_story.installer.uninstall(name))
    guest_story.installer.install(_chart(guest_story, name, version))
    attach_text("helm history", _history(guest_story, name))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is upgraded to (?P<version>\d+\.\d+\.\d+)$"))
def upgrade_chart(name: str, version: str, guest_story: GuestStory) -> None:
    guest_story.installer.upgrade(_chart(guest_story, name, version))
    attach_text("helm history", _history(guest_story, name))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is upgraded to (?P<version>\d+\.\d+\.\d+) "
                 r"while the load balancers are watched"))
def upgrade_chart_watched(name: str, version: str, guest_story: GuestStory) -> None:
    initial = {svc.split("/")[1]: served.address for svc, served in guest_story.served.items()}
    with lbs.AddressWatch(guest_story.kube, guest_story.namespace, initial) as watch:
        guest_story.installer.upgrade(_chart(guest_story, name, version))
        rollout.wait_deployment_rolled_out(guest_story.kube, name, "kube-system", guest_story.budget)
    guest_story.address_changes = watch.changes
    attach_text("helm history", _history(guest_story, name))
    if watch.errors:
        attach_text("address watch reconnects", "\n".join(watch.errors))


@when(parsers.re(r"the (?P<name>[\w-]+) chart is uninstalled"))
def uninstall_chart(name: str, guest_story: GuestStory) -> None:
    guest_story.installer.uninstall(name)


def _history(story: GuestStory, release: str) -> str:
    return charts.history_table(charts.release_history(story.kube, release))


@then(parsers.parse("the {name} Deployment is rolled out"))
def deployment_rolled_out(name: str, guest_story: GuestStory) -> None:
    deployment = rollout.wait_deployment_rolled_out(guest_story.kube, name, "kube-system", guest_story.budget)
    attach_text(f"{name} pods", rollout.placement_table(
        rollout.placements(guest_story.kube, "kube-system", rollout.selector_of(deployment))))


@then(parsers.parse("nothing of the {name} chart remains in the guest"))
def chart_gone(name: str, guest_story: GuestStory) -> None:
    audit.assert_chart_gone(guest_story.kube, name, guest_story.budget)


# ---- the CSI controllers' placement ---------------------------------------------------------------------

@then("where the CSI controller pods run is recorded")
def record_controller_placement(guest_story: GuestStory) -> None:
    rows = csi.controller_placements(guest_story.kube)
    attach_text("CSI controller pods before the upgrade", rollout.placement_table(rows))
    assert rows and all(r.phase == "Running" for r in rows), rollout.placement_table(rows)


@then("every CSI controller pod runs on a control-plane node")
def controllers_on_control_plane(guest_story: GuestStory) -> None:
    attach_text("CSI controller pods after the upgrade",
                rollout.placement_table(csi.assert_controllers_on_control_plane(guest_story.kube)))


@then("every CSI controller pod stays Pending because no node matches its required control-plane affinity")
def controllers_pending(guest_story: GuestStory) -> None:
    pending = csi.wait_controllers_pending_for_affinity(guest_story.kube, guest_story.budget)
    attach_text("why the CSI controllers are Pending", pending.report())


@then("the CSI node plugin runs on every node")
def node_plugin_everywhere(guest_story: GuestStory) -> None:
    rows = csi.assert_node_plugin_everywhere(guest_story.kube, {n.name for n in guest_story.guest.nodes()},
                                             guest_story.budget)
    attach_text("CSI node plugin pods", rollout.placement_table(rows))


# ---- volumes and data -------------------------------------------------------------------------------------

@when("a workload writes data to a PVC on the harvester StorageClass")
def workload_writes_data(guest_story: GuestStory, cleanup: CleanupStack) -> None:
    story = guest_story
    story.data_workload, pod = workload.deploy(story.kube, story.workload_namespace(cleanup), story.run_id,
                                               cleanup.defer, story.budget)
    story.data = workload.write_data(story.files(), story.data_workload, pod["metadata"]["name"])
    attach_json("data written", {"pod": pod["metadata"]["name"], "node": pod["spec"]["nodeName"],
                                 "bytes": story.data.size, "sha256": story.data.sha256})


@then("the guest PVC is backed by a host PVC and a Longhorn volume")
def volume_chain(guest_story: GuestStory) -> None:
    assert guest_story.data_workload is not None
    guest_story.chain = volumes.volume_chain(guest_story.guest, guest_story.namespace,
                                             guest_story.data_workload.claim, guest_story.budget)
    attach_json("volume chain", guest_story.chain.as_rows())


@then("the Longhorn volume is attached to the host node of the workload's guest node")
def attached_to_workload_node(guest_story: GuestStory) -> None:
    assert guest_story.data_workload is not None and guest_story.chain is not None
    pod = workload.the_pod(guest_story.kube, guest_story.data_workload)
    attachment = volumes.wait_attached(guest_story.guest, guest_story.chain, pod["spec"]["nodeName"],
                                       guest_story.budget)
    attach_json("attachment", attachment.__dict__)


@when(parsers.parse("the workload is scaled to {replicas:d}"))
def scale_workload(replicas: int, guest_story: GuestStory) -> None:
    assert guest_story.data_workload is not None
    workload.scale(guest_story.kube, guest_story.data_workload, replicas, guest_story.budget)


@then("the Longhorn volume is detached")
def detached(guest_story: GuestStory) -> None:
    assert guest_story.chain is not None
    volumes.wait_detached(guest_story.guest, guest_story.chain, guest_story.budget)


@then("the data and its checksum are intact")
def data_intact(guest_story: GuestStory) -> None:
    assert guest_story.data_workload is not None and guest_story.data is not None
    pod = workload.the_pod(guest_story.kube, guest_story.data_workload)
    read = workload.verify_data(guest_story.files(), guest_story.data_workload, pod["metadata"]["name"],
                                guest_story.data)
    attach_json("data read back", {"pod": pod["metadata"]["name"], "node": pod["spec"]["nodeName"], "sha256": read})


@when("the workload and its PVC are deleted")
def delete_workload_and_claim(guest_story: GuestStory) -> None:
    assert guest_story.data_workload is not None and guest_story.chain is not None
    kube, data = guest_story.kube, guest_story.data_workload
    kube.delete("apps/v1", "Deployment", data.name, data.namespace)
    kube.delete("v1", "PersistentVolumeClaim", data.claim, data.namespace)
    kube.wait_for_gone("v1", "PersistentVolume", guest_story.chain.guest_pv, budget=guest_story.budget)
    volumes.wait_host_side_gone(guest_story.guest, guest_story.chain, guest_story.budget)


# ---- load balancers ----------------------------------------------------------------------------------------

@given("an IPPool on the host for the guest cluster")
def an_ippool(guest_story: GuestStory, cleanup: CleanupStack) -> None:
    host = guest_story.guest.host
    name = f"{guest_story.guest.name}-pool"
    cleanup.defer(f"delete IPPool {name}", lambda: host.delete(lbs.LB_API, "IPPool", name))
    host.create(lbs.ippool_manifest(name, guest_story.guest.name, guest_story.guest.host_namespace,
                                    guest_story.run_id, 240, 249))
    guest_story.pool = name


@when(parsers.parse('a LoadBalancer Service "{name}" with IPAM {ipam} is created in the guest'))
def create_lb_service(name: str, ipam: str, guest_story: GuestStory, cleanup: CleanupStack) -> None:
    kube = guest_story.kube
    namespace = guest_story.workload_namespace(cleanup)
    cleanup.defer(f"delete guest Service {namespace}/{name}", lambda: (
        kube.delete("v1", "Service", name, namespace),
        kube.wait_for_gone("v1", "Service", name, namespace=namespace, budget=guest_story.budget)))
    kube.create(lbs.service_manifest(namespace, name, ipam, guest_story.run_id))
    guest_story.services.append(f"{namespace}/{name}")


@then("every LoadBalancer Service gets an address and the host shows where it came from")
def every_service_served(guest_story: GuestStory) -> None:
    story = guest_story
    story.served = lbs.serve_all(story.guest, story.guest.name, list(story.services), story.budget)
    attach_text("addresses and their source", "\n".join(s.row() for s in story.served.values()))
    if story.guest.simulated:
        attach_json("VM network DHCP leases", lbs.dhcp_leases(story.guest.host))


@then("no LoadBalancer Service lost or changed its address during the upgrade")
def no_interruption(guest_story: GuestStory) -> None:
    changes = guest_story.address_changes
    attach_text("address changes seen during the upgrade", lbs.describe_changes(changes) or "none")
    assert not changes, "load balancer addresses changed during the upgrade: " + lbs.describe_changes(changes)


@then("every LoadBalancer Service still serves its address")
def still_served(guest_story: GuestStory) -> None:
    story = guest_story
    story.served = lbs.still_served(story.guest, story.guest.name, story.served, story.budget)
    attach_text("addresses after the upgrade", "\n".join(s.row() for s in story.served.values()))


@when("every LoadBalancer Service is deleted")
def delete_every_service(guest_story: GuestStory) -> None:
    for key in guest_story.services:
        namespace, name = key.split("/")
        guest_story.kube.delete("v1", "Service", name, namespace)
    for key in guest_story.services:
        namespace, name = key.split("/")
        guest_story.kube.wait_for_gone("v1", "Service", name, namespace=namespace, budget=guest_story.budget)


@then("the pool has its addresses back and no host LoadBalancer of the guest remains")
def pool_released(guest_story: GuestStory) -> None:
    story = guest_story
    lbs.wait_no_host_lbs(story.guest, story.guest.name, story.budget)
    lent = [s.address for s in story.served.values() if s.ipam == "pool"]
    pool = lbs.wait_pool_released(story.guest.host, story.pool, lent, story.budget)
    attach_json(f"IPPool {story.pool} status", pool.get("status") or {})
    if story.guest.simulated:
        lbs.assert_leases_released(story.guest.host, story.served)
