"""Chart versions render what they contain, and the guest's helm-controller installs, upgrades and
uninstalls them; the harness reports helm's errors and what an uninstall left behind."""
from __future__ import annotations

from typing import Any, Iterator

import pytest
import yaml

from infra.harvester.guest import audit, charts, rollout
from infra.harvester.guest import cluster as guests
from infra.kube import Kube
from infra.simulator.guest import catalog
from infra.waits.budget import Budget, WaitTimeout

from .guest_support import host_kube, BUDGET, RUN_ID, LabHost, a_guest, installer

Obj = dict[str, Any]
CSI = "harvester-csi-driver"
CONTROLLERS = "app.kubernetes.io/name=harvester-csi-driver,component=csi-controllers"


def render(chart: str, version: str, values: Obj | None = None) -> dict[tuple[str, str], Obj]:
    version_ = catalog.resolve(catalog.HARVESTER_REPO, chart, version, chart)
    return {(r.object["kind"], r.object["metadata"]["name"]): r.object
            for r in version_.render(catalog.Release(chart, "kube-system"), values or {})}


# ---- what the chart versions contain -------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.1.21", "0.1.22", "0.1.23"])
def test_csi_chart_renders_its_objects(version: str) -> None:
    objects = render(CSI, version)
    assert set(objects) == {("ServiceAccount", CSI), ("ClusterRole", CSI), ("ClusterRoleBinding", CSI),
                            ("CSIDriver", "driver.harvesterhci.io"), ("StorageClass", "harvester"),
                            ("DaemonSet", CSI), ("Deployment", f"{CSI}-controllers")}
    deployment = objects[("Deployment", f"{CSI}-controllers")]
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 3
    assert [c["name"] for c in spec["containers"]] == ["csi-resizer", "csi-provisioner", "csi-attacher"]
    assert "--default-fstype=ext4" in spec["containers"][1]["args"]
    assert spec["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert {t["key"] for t in spec["tolerations"]} == {"kubevirt.io/drain", "node-role.kubernetes.io/control-plane",
                                                       "node-role.kubernetes.io/etcd", "cattle.io/os"}
    storage_class = objects[("StorageClass", "harvester")]
    assert storage_class["provisioner"] == "driver.harvesterhci.io" and storage_class["volumeBindingMode"] == "Immediate"
    assert storage_class["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert objects[("CSIDriver", "driver.harvesterhci.io")]["spec"]["attachRequired"] is True
    assert objects[("ClusterRoleBinding", CSI)]["subjects"] == [{"kind": "ServiceAccount", "name": CSI,
                                                                 "namespace": "kube-system"}]
    assert deployment["metadata"]["labels"]["helm.sh/chart"] == f"{CSI}-{version}"


def test_only_0_1_23_pins_the_controllers_to_control_plane_nodes() -> None:
    for version in ("0.1.21", "0.1.22"):
        assert "affinity" not in render(CSI, version)[("Deployment", f"{CSI}-controllers")]["spec"]["template"]["spec"]
    affinity = render(CSI, "0.1.23")[("Deployment", f"{CSI}-controllers")]["spec"]["template"]["spec"]["affinity"]
    terms = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert [t["matchExpressions"][0]["key"] for t in terms] == ["node-role.kubernetes.io/controlplane",
                                                                "node-role.kubernetes.io/control-plane"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity["podAntiAffinity"]
    assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100


def test_cloud_provider_0_2_9_prefixes_only_kube_vip_with_the_system_registry() -> None:
    registry = {"global": {"cattle": {"systemDefaultRegistry": "registry.example.com", "clusterName": "g1"}}}
    image = lambda objects: objects[("DaemonSet", "kube-vip")]["spec"]["template"]["spec"]["containers"][0]["image"]  # noqa: E731
    assert image(render("harvester-cloud-provider", "0.2.8", registry)) == \
        "rancher/mirrored-kube-vip-kube-vip-iptables:v0.8.7"
    assert image(render("harvester-cloud-provider", "0.2.9", registry)) == \
        "registry.example.com/rancher/mirrored-kube-vip-kube-vip-iptables:v0.8.7"
    ccm = render("harvester-cloud-provider", "0.2.9", registry)[("Deployment", "harvester-cloud-provider")]
    assert "--cluster-name=g1" in ccm["spec"]["template"]["spec"]["containers"][0]["args"]
    # without a registry the pods of both versions are the same: the upgrade rolls nothing
    for kind, name in (("DaemonSet", "kube-vip"), ("Deployment", "harvester-cloud-provider")):
        assert render("harvester-cloud-provider", "0.2.8")[(kind, name)]["spec"]["template"] == \
            render("harvester-cloud-provider", "0.2.9")[(kind, name)]["spec"]["template"]


def test_kube_vip_serves_only_on_control_plane_nodes() -> None:
    kube_vip = render("harvester-cloud-provider", "0.2.8")[("DaemonSet", "kube-vip")]["spec"]["template"]["spec"]
    terms = kube_vip["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert {t["matchExpressions"][0]["key"] for t in terms} == {"node-role.kubernetes.io/controlplane",
                                                               "node-role.kubernetes.io/control-plane"}


def test_an_unknown_version_or_repository_fails_as_helm_says() -> None:
    with pytest.raises(catalog.ChartError, match=r'chart "harvester-csi-driver" matching 0\.1\.99 not found in csi '
                                                 r"index\. \(try 'helm repo update'\): no chart version found for "
                                                 r"harvester-csi-driver-0\.1\.99"):
        catalog.resolve(catalog.HARVESTER_REPO, CSI, "0.1.99", "csi")
    with pytest.raises(catalog.ChartError, match="is not a valid chart repository"):
        catalog.resolve("https://charts.example.com", CSI, "0.1.21", "csi")


# ---- the helm-controller in a guest, through the harness ---------------------------------------------------

@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    with host_kube(tmp_path_factory.mktemp("guest-charts-simulator")) as kube:
        yield kube


def test_install_then_upgrade_keeps_helm_history_and_moves_the_controllers(host: Kube) -> None:
    with a_guest(host, "v1.29.14+rke2r1", "2.9") as guest:
        kube = guest.kube()
        assert guest.server_version() == "v1.29.14+rke2r1"
        helm = installer(guest)
        helm.install(charts.Chart(CSI, "0.1.21"))
        rollout.wait_deployment_rolled_out(kube, f"{CSI}-controllers", "kube-system", BUDGET)
        before = rollout.placements(kube, "kube-system", CONTROLLERS)
        assert len({p.node for p in before}) == 3, rollout.placement_table(before)
        assert [(r.revision, r.status, r.chart) for r in charts.release_history(kube, CSI)] == \
            [(1, "deployed", f"{CSI}-0.1.21")]
        helm.upgrade(charts.Chart(CSI, "0.1.23"))
        rollout.wait_deployment_rolled_out(kube, f"{CSI}-controllers", "kube-system", BUDGET)
        after = rollout.placements(kube, "kube-system", CONTROLLERS)
        assert len(after) == 3 and all(p.on_control_plane for p in after), rollout.placement_table(after)
        assert [(r.revision, r.status, r.chart, r.description) for r in charts.release_history(kube, CSI)] == \
            [(1, "superseded", f"{CSI}-0.1.21", "Install complete"), (2, "deployed", f"{CSI}-0.1.23", "Upgrade complete")]
        helm.uninstall(CSI)
        audit.assert_chart_gone(kube, CSI, Budget("chart gone", 20))
        assert charts.release_history(kube, CSI) == []


def test_an_unknown_chart_version_fails_with_helms_message(host: Kube) -> None:
    with a_guest(host) as guest:
        helm = installer(guest, backoff_limit=0)
        with pytest.raises(charts.ChartJobFailed) as caught:
            helm.install(charts.Chart(CSI, "0.1.99"))
        assert caught.value.helm_error == ('chart "harvester-csi-driver" matching 0.1.99 not found in '
                                           "harvester-csi-driver index. (try 'helm repo update'): no chart version "
                                           "found for harvester-csi-driver-0.1.99")
        assert "+ helm_v3 install" in caught.value.evidence["helm-install-harvester-csi-driver log"]
        # the HelmChart itself says so once the Job gave up (backOffLimit 0)
        chart = guest.kube().wait_for(charts.HELM_CHART_API, "HelmChart", CSI, lambda c: any(
            x["type"] == "Failed" and x["status"] == "True" for x in ((c or {}).get("status") or {}).get("conditions", [])),
            budget=BUDGET, namespace="kube-system", awaited="HelmChart Failed=True")
        failed = next(c for c in chart["status"]["conditions"] if c["type"] == "Failed")
        assert (failed["reason"], failed["message"]) == ("Job failed", "Job has reached configured number of "
                                                                       "retries without succeeding")
        helm.uninstall(CSI)


def test_the_audit_lists_what_a_keep_policy_left_behind(host: Kube) -> None:
    with a_guest(host) as guest:
        kube, helm = guest.kube(), installer(guest)
        helm.install(charts.Chart(CSI, "0.1.21"))
        kube.patch("storage.k8s.io/v1", "StorageClass", "harvester",
                   {"metadata": {"annotations": {"helm.sh/resource-policy": "keep"}}})
        helm.uninstall(CSI)
        with pytest.raises(audit.ChartLeftovers) as caught:
            audit.assert_chart_gone(kube, CSI, Budget("chart gone", 2))
        assert [str(x) for x in caught.value.leftovers] == [
            "StorageClass harvester (Helm release object, helm.sh/resource-policy: keep)"]
        assert "left 1 object(s) behind" in str(caught.value)
        # installing again adopts the kept object (same release), and an uninstall without keep clears it
        kube.patch("storage.k8s.io/v1", "StorageClass", "harvester",
                   {"metadata": {"annotations": {"helm.sh/resource-policy": None}}})
        helm.install(charts.Chart(CSI, "0.1.23"))
        helm.uninstall(CSI)
        audit.assert_chart_gone(kube, CSI, Budget("chart gone", 20))


def test_the_audit_finds_an_object_known_to_be_the_charts_without_helm_marks(host: Kube) -> None:
    with a_guest(host) as guest:
        kube = guest.kube()
        kube.create({"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                     "metadata": {"name": "driver.harvesterhci.io"}, "spec": {"attachRequired": True}})
        leftovers = audit.chart_leftovers(kube, CSI)
        assert [str(x) for x in leftovers] == ["CSIDriver driver.harvesterhci.io (created by the harvester-csi-driver "
                                               "chart)"]
        # and helm refuses to install over it: it is not the release's
        with pytest.raises(charts.ChartJobFailed, match="invalid ownership metadata"):
            installer(guest, backoff_limit=0).install(charts.Chart(CSI, "0.1.21"))


def test_without_a_control_plane_label_the_0_1_23_controllers_stay_pending_and_say_why(host: Kube) -> None:
    with a_guest(host) as guest:
        kube = guest.kube()
        undo: list[Any] = []
        removed = guests.strip_control_plane_labels(kube, lambda _, action: undo.append(action))
        assert list(removed.values()) == [{"node-role.kubernetes.io/control-plane": "true"}]
        installer(guest).install(charts.Chart(CSI, "0.1.23"))
        pending = rollout.wait_unschedulable(kube, "kube-system", CONTROLLERS, 3, BUDGET)
        assert {p.message for p in pending} == {
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes "
            "are available: 3 Preemption is not helpful for scheduling."}
        events = kube.list("v1", "Event", "kube-system", field_selector=f"involvedObject.name={pending[0].pod}")
        assert any(e["reason"] == "FailedScheduling" for e in events)
        with pytest.raises(WaitTimeout, match="Deployment kube-system/harvester-csi-driver-controllers to roll out"):
            rollout.wait_deployment_rolled_out(kube, f"{CSI}-controllers", "kube-system", Budget("short", 1.5))
        undo[0]()       # the labels come back: the pending pods are scheduled (IgnoredDuringExecution)
        rollout.wait_deployment_rolled_out(kube, f"{CSI}-controllers", "kube-system", BUDGET)
        installer(guest).uninstall(CSI)


def test_the_guests_kubeconfig_is_rancher_s_and_reaches_it_through_rancher(host: LabHost) -> None:
    with a_guest(host, "v1.32.2+rke2r1", "2.11") as guest:
        config = yaml.safe_load(guest.kubeconfig.read_text())
        rancher = host.lab.rancher_info("2.11")
        cluster = host.lab.rancher("2.11").get("provisioning.cattle.io/v1", "Cluster", guest.name, "fleet-default")
        assert config["clusters"][0]["cluster"]["server"] == f"{rancher['url']}/k8s/clusters/{cluster['status']['clusterName']}"
        assert guest.server_version() == "v1.32.2+rke2r1"
        assert [n.control_plane for n in guest.nodes()].count(True) == 1
        assert all(n.host_node.startswith("harvester-node-") for n in guest.nodes())
        assert host.find("v1", "Secret", f"{guest.name}-kubeconfig", guest.host_namespace) is None, \
            "Harvester keeps no kubeconfig of a Rancher-provisioned guest"
