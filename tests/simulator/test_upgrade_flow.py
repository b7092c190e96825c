"""The simulator's upgrade, over the wire, against what harvester/harvester's upgrade controller and scripts do.

Every expectation is written from the upstream source at the simulated tags and at ce188325 (see
docs/fidelity.md for the file and tag of each), not from the simulator's code.
"""
from __future__ import annotations

import hashlib
import http.server as http_server
import threading
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.harvester.helm import history_from_api
from infra.kube import Kube
from infra.simulator.harvester.release_iso import build_iso, iso_files, read_iso
from infra.simulator.harvester.versions import get_version
from infra.waits.budget import Budget

from ..conftest import start_simulator
from .upgrade_support import (HARVESTER, NS, apply_manifests_log, condition, helm_upgrade_over_api, http, includes,
                              label_sequence, node_state_sequences, release_iso_path, start_upgrade, state, terminal,
                              version_object, wait_until, watch_upgrade)

FAST = 600


def simulator_of(version: str, tmp: Path, nodes: int = 3) -> SimulatorProcess:
    return start_simulator_process(version, time_scale=FAST, nodes=nodes, workdir=tmp / f"simulator-{version}-{nodes}",
                              budget=Budget("simulator start in tests", 60))


@pytest.fixture
def simulator_factory(tmp_path: Path) -> Iterator:  # noqa: ANN001
    started: list[SimulatorProcess] = []

    def make(version: str, nodes: int = 3) -> tuple[SimulatorProcess, Kube]:
        simulator = simulator_of(version, tmp_path, nodes)
        started.append(simulator)
        return simulator, Kube(simulator.kubeconfig, unavailable_budget=10)

    yield make
    for simulator in started:
        simulator.stop()


# ---- the release server ---------------------------------------------------------------------------------

def test_each_release_iso_is_served_publicly_as_a_real_iso_with_ranges_and_checksums(tmp_path: Path) -> None:
    simulator = start_simulator("v1.4.2", tmp_path, time_scale=FAST)
    try:
        status, headers, iso = http(simulator, release_iso_path("v1.5.1"))          # no token: a public server
        assert status == 200 and headers["Content-Type"] == "application/x-iso9660-image"
        assert iso[32769:32774] == b"CD001", "an ISO9660 primary volume descriptor at sector 16"
        files = read_iso(iso)
        assert files["harvester-release.yaml"].decode() == get_version("v1.5.1").release_file_text()
        assert "bundle/metadata.yaml" in files
        status, headers, part = http(simulator, release_iso_path("v1.5.1"), headers={"Range": "bytes=32769-32773"})
        assert (status, part, headers["Content-Range"]) == (206, b"CD001", f"bytes 32769-32773/{len(iso)}")
        status, headers, body = http(simulator, release_iso_path("v1.5.1"), method="HEAD")
        assert (status, int(headers["Content-Length"]), body) == (200, len(iso), b"")
        status, _, checksum = http(simulator, "/harvester-releases/v1.5.1/harvester-v1.5.1-amd64.sha512")
        assert checksum.decode() == f"{hashlib.sha512(iso).hexdigest()}  harvester-v1.5.1-amd64.iso\n"
        status, _, version_yaml = http(simulator, "/harvester-releases/v1.5.1/version.yaml")
        version = yaml.safe_load(version_yaml)
        assert version["metadata"] == {"name": "v1.5.1", "namespace": NS}
        assert version["spec"]["isoChecksum"] == hashlib.sha512(iso).hexdigest()
        assert version["spec"]["isoURL"].endswith("/harvester-releases/v1.5.1/harvester-v1.5.1-amd64.iso")
        assert version["spec"]["releaseDate"] == "20250627"
        assert http(simulator, "/harvester-releases/master/harvester-master-amd64.iso")[0] == 200
        assert http(simulator, "/harvester-releases/master/version.yaml")[0] == 404, "a dev build has no version.yaml"
        assert http(simulator, "/harvester-releases/v9.9.9/harvester-v9.9.9-amd64.iso")[0] == 404
        assert http(simulator, "/simulator/v1/releases/v1.5.1", token=True)[0] == 404, "no simulator-only release data"
    finally:
        simulator.stop()


# ---- a whole upgrade --------------------------------------------------------------------------------------

def test_v142_to_master_runs_every_stage_as_upstream(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.4.2")
    name = start_upgrade(kube, simulator, "master-ce188325-head")
    captured: dict[str, object] = {}

    def capture(obj: dict) -> bool:
        if state(obj) == "PreparingNodes" and "plan" not in captured:
            captured["plan"] = kube.find("upgrade.cattle.io/v1", "Plan", f"{name}-prepare", "cattle-system")
        if condition(obj, "RepoReady").get("status") == "True" and "repo" not in captured:
            captured["repo"] = http(simulator, f"/api/v1/namespaces/{NS}/services/upgrade-repo-{name}:80/proxy/"
                                          f"harvester-iso/harvester-release.yaml", token=True)
            captured["service"] = kube.find("v1", "Service", f"upgrade-repo-{name}", NS)
            captured["image"] = kube.find(HARVESTER, "VirtualMachineImage", name, NS)
        if state(obj) == "UpgradingSystemServices" and "job" not in captured:
            captured["job"] = kube.find("batch/v1", "Job", f"{name}-apply-manifests", NS)
        return terminal(obj)

    seen = watch_upgrade(kube, name, capture)
    final = seen[-1]
    assert state(final) == "Succeeded"
    assert label_sequence(seen) == ["PreparingLoggingInfra", "LoggingInfraPrepared", "PreparingRepo", "RepoPrepared",
                                    "PreparingNodes", "UpgradingSystemServices", "UpgradingNodes", "Succeeded"]
    assert "harvesterhci.io/upgradeCleanup" not in final["metadata"]["labels"], "v1.7.0 on only"
    assert [c["type"] for c in final["status"]["conditions"]] == [
        "Completed", "LogReady", "ImageReady", "RepoReady", "NodesPrepared", "SystemServicesUpgraded", "NodesUpgraded"]
    assert final["status"]["singleNode"] == ""
    assert final["status"]["repoInfo"] == ("release:\n  harvester: ce188325\n  harvesterChart: 0.0.0-master-ce188325\n"
                                           "  os: Harvester master\n  kubernetes: v1.32.3+rke2r1\n  rancher: v2.11.0\n"
                                           "  monitoringChart: 105.1.2+up61.3.2\n")
    for node, states in node_state_sequences(seen).items():
        assert states == ["Images preloading", "Images preloaded", "Pre-draining", "Pre-drained", "Post-draining",
                          "Waiting Reboot", "Succeeded"], node

    plan = captured["plan"]
    assert plan["metadata"]["labels"] == {"harvesterhci.io/upgrade": name, "harvesterhci.io/upgradeComponent": "node"}
    assert plan["spec"]["upgrade"]["image"] == "rancher/harvester-upgrade:v1.4.2"     # status.previousVersion
    assert plan["spec"]["upgrade"]["envs"] == [{"name": "HARVESTER_UPGRADE_NAME", "value": name}]
    assert (plan["spec"]["version"], plan["spec"]["jobActiveDeadlineSecs"], plan["spec"]["concurrency"]) == \
        (name, 3600, 1)
    image = captured["image"]
    assert image["spec"]["displayName"] == f"{name}-master-ce188325-head"
    assert image["spec"]["url"].endswith("/harvester-releases/master/harvester-master-amd64.iso")
    assert image["spec"]["retry"] == 3
    status, _, body = captured["repo"]
    assert status == 200 and body.decode() == get_version("master-ce188325-head").release_file_text()
    service = captured["service"]
    assert service["spec"]["selector"] == {"harvesterhci.io/upgrade": name, "harvesterhci.io/upgradeComponent": "repo"}
    assert [(p["port"], p["targetPort"], p["protocol"]) for p in service["spec"]["ports"]] == [(80, 80, "TCP")]
    job = captured["job"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert (container["name"], container["image"], container["command"]) == \
        ("apply", "rancher/harvester-upgrade:ce188325", ["upgrade_manifests.sh"])
    assert job["spec"]["backoffLimit"] == 6, "none of Harvester's own: the Job default"

    # the cleanup: repo VM, image and Plans go; the Service stays with its Upgrade, with nothing behind it
    wait_until(lambda: kube.find("kubevirt.io/v1", "VirtualMachine", f"upgrade-repo-{name}", NS) is None, 30,
               "the repo VM is deleted")
    assert kube.find(HARVESTER, "VirtualMachineImage", name, NS) is None
    assert kube.list("upgrade.cattle.io/v1", "Plan", "cattle-system", label_selector=f"harvesterhci.io/upgrade={name}") == []
    assert kube.find("v1", "Service", f"upgrade-repo-{name}", NS) is not None
    status, _, body = http(simulator, f"/api/v1/namespaces/{NS}/services/upgrade-repo-{name}:80/proxy/harvester-iso/"
                                 "harvester-release.yaml", token=True)
    assert status == 503 and b"no endpoints available" in body
    assert kube.get(HARVESTER, "Setting", "server-version")["value"] == "master-ce188325-head"
    assert {n["status"]["nodeInfo"]["osImage"] for n in kube.list("v1", "Node")} == {"Harvester master"}

    # Rancher v2.11.0 found fleet below its minimum and installed the release file's version
    assert history_from_api(kube, "cattle-fleet-system", "fleet")[-1].chart == "fleet-106.0.0+up0.12.0"
    log = apply_manifests_log(kube, name)
    expected_in_order = [
        "harvester: ce188325",                                                     # wait_repo's curl of the file
        f'Downloading the file from "http://upgrade-repo-{name}.harvester-system/harvester-iso/harvester-release.yaml"',
        "Executing v1.4.2 pre-hook...",
        "managedchart.management.cattle.io/harvester patched",
        f"Creating plan {name}-skip-restart-rancher-system-agent to make rancher-system-agent temporarily skip "
        "restarting RKE2 server...",
        f"Plan {name}-skip-restart-rancher-system-agent completes.",
        "Upgrading Rancher",
        f'Downloading the file from "http://upgrade-repo-{name}.harvester-system/harvester-iso/bundle//rancherd/'
        'images/rancherd-bootstrap-images-master.txt"',
        "Wait for Rancher to be upgraded to v2.11.0...",
        "Wait for Rancher dependencies helm releases...",
        "wait helm release cattle-fleet-system fleet fleet-106.0.0+up0.12.0 0.12.0 deployed",
        "wait helm release cattle-fleet-system fleet-crd fleet-crd-106.0.0+up0.12.0 0.12.0 deployed",
        "wait helm release cattle-system rancher-webhook rancher-webhook-106.0.0+up0.7.0 0.7.0 deployed",
        "Wait for Rancher dependencies rollout...",
        'deployment "fleet-controller" successfully rolled out',
        "Upgrading Harvester Cluster Repo",
        "Upgrading Harvester",
        "managedchart.management.cattle.io/harvester configured",
        "all bundles are ready",
    ]
    position = 0
    for wanted in expected_in_order:
        found = next((i for i in range(position, len(log)) if log[i].startswith(wanted)), None)
        assert found is not None, f"{wanted!r} not found after line {position}:\n" + "\n".join(log)
        position = found + 1
    assert not any(line.startswith("completed helm release") for line in log), "c50975695 (v1.8.0) only"
    assert not any(line.startswith(("Running ", "Upgrade repo ready", "All system services")) for line in log)

    # a newer Upgrade takes `latestUpgrade` away: the label is deleted, not set to "false"
    second = start_upgrade(kube, simulator, "master-ce188325-head", name="hvst-upgrade-t0002")
    watch_upgrade(kube, second, lambda o: state(o) == "LoggingInfraPrepared", seconds=30)
    assert "harvesterhci.io/latestUpgrade" not in kube.get(HARVESTER, "Upgrade", name, NS)["metadata"]["labels"]


@pytest.mark.parametrize("source, target, reason", [
    ("v1.5.0-rc2", "v1.5.1", "cross-version upgrades from/to any prerelease version are prohibited"),
    ("master-ce188325-head", "v1.5.1", "upgrading from dev versions to non-dev versions is prohibited"),
    ("v1.5.1", "v1.4.2", "downgrading is prohibited"),
])
def test_the_version_guard_fails_completed_only(simulator_factory, source: str, target: str, reason: str) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory(source, nodes=1)
    name = start_upgrade(kube, simulator, target)
    final = watch_upgrade(kube, name, terminal)[-1]
    assert state(final) == "Failed"
    assert includes(condition(final, "Completed"), {"status": "False", "reason": reason, "message": ""}), \
        condition(final, "Completed")
    assert condition(final, "RepoReady")["status"] == "True", "the guard's failure leaves RepoReady alone"
    assert condition(final, "NodesPrepared") == {}
    assert final["status"]["repoInfo"].startswith("release:\n")
    wait_until(lambda: kube.find("kubevirt.io/v1", "VirtualMachine", f"upgrade-repo-{name}", NS) is None, 30,
               "a failed upgrade is cleaned up too")


def test_a_prerelease_target_is_allowed_from_a_release_and_skip_version_check_is_a_go_bool(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.5.0-rc2", nodes=1)
    name = start_upgrade(kube, simulator, "v1.5.1", annotations={"harvesterhci.io/skip-version-check": "1"})
    watch_upgrade(kube, name, lambda o: state(o) in ("PreparingNodes", "Failed"))
    assert state(kube.get(HARVESTER, "Upgrade", name, NS)) == "PreparingNodes", "ParseBool(\"1\") is true"


def test_a_literal_yes_does_not_skip_the_version_check(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.5.0-rc2", nodes=1)
    name = start_upgrade(kube, simulator, "v1.5.1", annotations={"harvesterhci.io/skip-version-check": "yes"})
    final = watch_upgrade(kube, name, terminal)[-1]
    assert condition(final, "Completed")["reason"] == \
        "cross-version upgrades from/to any prerelease version are prohibited"


# ---- the image download ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["missing", "checksum", "offline"])
def test_image_download_failures_are_reported_as_the_image_controller_does(simulator_factory, case: str) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.4.2", nodes=1)
    good = version_object(simulator, "v1.4.3")
    url = {"missing": good["spec"]["isoURL"].replace("v1.4.3-amd64.iso", "v1.4.3-amd64.img"),
           "checksum": good["spec"]["isoURL"],
           "offline": "https://releases.rancher.com/harvester/v1.4.3/harvester-v1.4.3-amd64.iso"}[case]
    checksum = "a" * 128 if case == "checksum" else ""
    name = start_upgrade(kube, simulator, "v1.4.3", version=version_object(simulator, "v1.4.3", checksum=checksum, iso_url=url))
    seen = watch_upgrade(kube, name, terminal)
    final = seen[-1]
    if case == "missing":
        error = f"expected status code 200 from {url}, got 404 Not Found"
    elif case == "checksum":
        _, _, iso = http(simulator, release_iso_path("v1.4.3"))
        error = f"the expected checksum {'a' * 128} doesn't match the file actual checksum {hashlib.sha512(iso).hexdigest()}"
    else:
        error = f'Head "{url}": dial tcp: lookup releases.rancher.com on 10.53.0.10:53: no such host'
    detail = f"failed to process sync file: {error}"
    retries = [condition(o, "ImageReady") for o in seen if condition(o, "ImageReady").get("status") == "Unknown"]
    assert {r.get("message") for r in retries} >= {f"failed due to error: {detail}",
                                                  f"retry attempted 1/3 failed due to error: {detail}",
                                                  f"retry attempted 2/3 failed due to error: {detail}"}
    assert includes(condition(final, "ImageReady"), {"status": "False", "reason": "Importing",
                                                   "message": f"retry attempted 3/3 failed due to error: {detail}"}), \
        condition(final, "ImageReady")
    assert includes(condition(final, "Completed"), {"status": "False", "reason": "", "message": ""}), \
        "markComplete sets the status only"
    assert state(final) == "Failed" and condition(final, "RepoReady") == {}


# ---- what the ISO says decides the upgrade --------------------------------------------------------------------

def test_a_version_naming_another_iso_upgrades_to_that_iso_on_a_single_node(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.5.1", nodes=1)
    name = start_upgrade(kube, simulator, "v1.5.1", version=version_object(simulator, "v1.5.1", iso_of="v1.5.2"))
    seen = watch_upgrade(kube, name, terminal)
    final = seen[-1]
    assert state(final) == "Succeeded"
    assert "harvester: v1.5.2" in final["status"]["repoInfo"]
    assert final["status"]["singleNode"] == "harvester-node-0"
    assert node_state_sequences(seen) == {"harvester-node-0": ["Images preloading", "Images preloaded",
                                                               "Waiting Reboot", "Succeeded"]}
    jobs = {j["metadata"]["name"]: j["metadata"]["labels"].get("harvesterhci.io/upgradeJobType")
            for j in kube.list("batch/v1", "Job", NS, label_selector="harvesterhci.io/upgradeComponent=node")}
    assert jobs == {f"{name}-single-node-upgrade-harvester-node-0": "single-node-upgrade"}
    secret = kube.list("v1", "Secret", "fleet-local", field_selector="type=rke.cattle.io/machine-plan")[0]
    assert not {"harvesterhci.io/pre-hook", "harvesterhci.io/post-hook"} & set(secret["metadata"].get("annotations")
                                                                                or {})
    assert kube.get(HARVESTER, "Setting", "server-version")["value"] == "v1.5.2"
    node = kube.get("v1", "Node", "harvester-node-0")
    assert (node["status"]["nodeInfo"]["osImage"], node["status"]["nodeInfo"]["kubeletVersion"]) == \
        ("Harvester v1.5.2", "v1.32.7+rke2r1")
    assert "harvesterhci.io/pendingOSImage" not in node["metadata"]["annotations"]


class _IsoHandler(http_server.BaseHTTPRequestHandler):
    iso = b""

    def do_HEAD(self) -> None:  # noqa: N802 - http.server's naming
        self._answer(False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(True)

    def _answer(self, body: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.iso)))
        self.end_headers()
        if body:
            self.wfile.write(self.iso)

    def log_message(self, *args: object) -> None:
        pass


def test_a_release_file_without_rancher_dependencies_fails_the_job_and_completed_has_no_reason(simulator_factory) -> None:  # noqa: ANN001
    files = iso_files(get_version("v1.5.0"))
    release = yaml.safe_load(files["harvester-release.yaml"])
    del release["rancherDependencies"]
    files["harvester-release.yaml"] = yaml.safe_dump(release, sort_keys=False).encode()
    _IsoHandler.iso = build_iso(files)
    server = http_server.ThreadingHTTPServer(("127.0.0.1", 0), _IsoHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        simulator, kube = simulator_factory("v1.4.2", nodes=1)
        url = f"http://127.0.0.1:{server.server_address[1]}/custom.iso"
        name = start_upgrade(kube, simulator, "custom", version=version_object(simulator, "custom", iso_of="v1.5.0",
                                                                          checksum="", iso_url=url))
        final = watch_upgrade(kube, name, terminal, seconds=180)[-1]
    finally:
        server.shutdown()
    assert includes(condition(final, "SystemServicesUpgraded"), {
        "status": "False", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"})
    assert includes(condition(final, "Completed"), {"status": "False", "reason": "", "message": ""})
    assert state(final) == "Failed"
    job = kube.get("batch/v1", "Job", f"{name}-apply-manifests", NS)
    assert job["status"]["failed"] == 7 and job["status"]["conditions"][0]["type"] == "Failed"
    log = apply_manifests_log(kube, name)
    assert log.count("Error: no matches found") == 7, "bash -e stops at the yq -e of the missing key, 7 pods"
    assert not any("Upgrading Rancher" in line for line in log)


def test_rancher_already_at_the_target_is_skipped_without_dependency_waits(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.5.0", nodes=1)
    name = start_upgrade(kube, simulator, "master-ce188325-head")
    assert state(watch_upgrade(kube, name, terminal)[-1]) == "Succeeded"
    log = apply_manifests_log(kube, name)
    assert "Skip update Rancher. The version is already v2.11.0" in log
    assert not any(line.startswith(("Wait for Rancher", "wait helm release")) for line in log)


# ---- harvester/harvester#8001: v1.5.0-rc2 -> the master build of 2025-04-03 ------------------------------------

def test_rc2_to_master_waits_on_each_rc_dependency_in_turn(simulator_factory) -> None:  # noqa: ANN001
    simulator, kube = simulator_factory("v1.5.0-rc2", nodes=1)
    name = start_upgrade(kube, simulator, "master-ce188325-head")
    waits = [("cattle-fleet-system", "fleet", "106.0.0+up0.12.0", "0.12.0"),
             ("cattle-fleet-system", "fleet-crd", "106.0.0+up0.12.0", "0.12.0"),
             ("cattle-system", "rancher-webhook", "106.0.0+up0.7.0", "0.7.0")]
    installed = {"fleet": "fleet-106.0.0+up0.12.0-rc.3", "fleet-crd": "fleet-crd-106.0.0+up0.12.0-rc.3",
                 "rancher-webhook": "rancher-webhook-106.0.0+up0.7.0-rc.9"}
    for namespace, release, chart, app in waits:
        line = f"wait helm release {namespace} {release} {release}-{chart} {app} deployed"
        wait_until(lambda: apply_manifests_log(kube, name)[-1:] == [line], 60, f"the script waits: {line}")
        # Rancher v2.11.0 left it alone (metadata ignored), so the wait cannot end
        assert history_from_api(kube, namespace, release)[-1].chart == installed[release]
        assert condition(kube.get(HARVESTER, "Upgrade", name, NS), "SystemServicesUpgraded")["status"] == "Unknown"
        helm_upgrade_over_api(kube, namespace, release, chart, app)          # the operator's remedy
    assert state(watch_upgrade(kube, name, terminal)[-1]) == "Succeeded"
