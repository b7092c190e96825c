"""Real helm against the simulator: the harness's helm (3 and the newest) reads the simulator's releases, the nodes'
helm 3 installs from the simulated rancher-charts repository, and the operator's remedy for the
RC -> master hang (harvester/harvester#8001) is a real `helm upgrade` that lets the upgrade complete."""
from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.cleanup import CleanupStack
from infra.cluster import Cluster
from infra.harvester.helm import history_from_api
from infra.harvester.upgrade import (
    UpgradeRun,
    UpgradeStalled,
    default_phase_budgets,
    diagnose,
)
from infra.harvester.upgrade.remedy import upgrade_dependencies_as_repo_asks
from infra.harvester.upgrade.tracker import PhaseTracker
from infra.kube import Kube
from infra.kube.kubectl import helm_binary
from infra.simulator.harvester import chart_repo
from infra.simulator.harvester.versions import VERSIONS, get_version
from infra.ssh import KeyPair, generate_keypair
from infra.waits.budget import Budget

from ..conftest import cluster_of

RC, TARGET = "v1.5.0-rc2", "master-ce188325-head"
HELM_TIMEOUT_S = 60


def run_helm(binary: Path, kubeconfig: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "KUBECONFIG": str(kubeconfig),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_DATA_HOME": str(home / "data")}
    return subprocess.run([str(binary), *args], capture_output=True, text=True, env=env, timeout=HELM_TIMEOUT_S,
                          check=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return generate_keypair(tmp_path_factory.mktemp("helm-ssh-keys"))


def start_with_ssh(version: str, workdir: Path, keys: KeyPair, time_scale: float = 60) -> SimulatorProcess:
    return start_simulator_process(version, time_scale=time_scale, nodes=3, workdir=workdir,
                              budget=Budget("simulator start in tests", 60), ssh_authorized_key=keys.public_key_file)


def ssh_cluster_of(simulator: SimulatorProcess, keys: KeyPair) -> Cluster:
    return cluster_of(simulator, "helm-tests", keys.private_key_file)


@pytest.fixture(scope="module")
def rc_cluster(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Iterator[Cluster]:
    """A v1.5.0-rc2 simulator left as it starts (tests here only read it, or write what they check)."""
    workdir = tmp_path_factory.mktemp("helm-rc")
    simulator = start_with_ssh(RC, workdir, keys)
    cluster = ssh_cluster_of(simulator, keys)
    try:
        yield cluster
    finally:
        cluster.close_sessions()
        simulator.stop()


# ---- the chart repository --------------------------------------------------------------------------------

@pytest.mark.parametrize("chart", chart_repo.released_chart_versions(), ids=lambda c: f"{c.name}-{c.version}")
def test_a_packaged_chart_is_what_helm_renders_and_what_the_seed_records(chart: chart_repo.ChartVersion,
                                                                          tmp_path: Path) -> None:
    package = tmp_path / chart.file_name
    package.write_bytes(chart_repo.package(chart))
    with tarfile.open(package) as tar:
        assert min(tar.getnames()) == f"{chart.name}/Chart.yaml"
    helm = helm_binary("3")
    shown = run_helm(helm, tmp_path / "none", tmp_path, "show", "chart", str(package))
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout) == chart_repo.chart_metadata(chart)
    namespace = {"fleet": "cattle-fleet-system", "fleet-crd": "cattle-fleet-system"}.get(chart.name, "cattle-system")
    rendered = run_helm(helm, tmp_path / "none", tmp_path, "template", chart.name, str(package), "-n", namespace)
    assert rendered.returncode == 0, rendered.stderr
    assert [d for d in yaml.safe_load_all(rendered.stdout) if d] == [obj for _, obj in chart_repo.render(chart, namespace)]


def test_every_chart_version_a_simulated_rancher_ships_is_in_the_repository(rc_cluster: Cluster) -> None:
    session = rc_cluster.ssh("harvester-node-0")
    found = json.loads(session.sudo("helm search repo rancher-charts/ --versions -o json", check=True).stdout)
    served = {(entry["name"], entry["version"], entry["app_version"]) for entry in found}
    shipped = {(f"rancher-charts/{name}", dep.chart_version, dep.app_version)
               for version in VERSIONS.values() for name, dep in version.rancher_dependencies.items()}
    assert served == shipped


# ---- the harness's helm reads the simulator's releases -----------------------------------------------------------

@pytest.mark.parametrize("major", ["3", None], ids=["helm-3", "helm-newest"])
def test_real_helm_lists_and_reads_the_simulators_releases(rc_cluster: Cluster, major: str | None, tmp_path: Path) -> None:
    helm, kubeconfig = helm_binary(major), rc_cluster.kubeconfig
    deps = get_version(RC).rancher_dependencies
    listed = run_helm(helm, kubeconfig, tmp_path, "list", "-A", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    releases = {(r["namespace"], r["name"]): r for r in json.loads(listed.stdout)}
    assert releases[("cattle-fleet-system", "fleet")]["chart"] == f"fleet-{deps['fleet'].chart_version}"
    assert releases[("cattle-fleet-system", "fleet")]["status"] == "deployed"
    assert releases[("cattle-system", "rancher-webhook")]["app_version"] == deps["rancher-webhook"].app_version
    assert releases[("cattle-system", "rancher")]["chart"] == f"rancher-{get_version(RC).rancher_version.lstrip('v')}"

    history = run_helm(helm, kubeconfig, tmp_path, "history", "fleet", "-n", "cattle-fleet-system", "-o", "json")
    assert history.returncode == 0, history.stderr
    assert [(h["revision"], h["status"]) for h in json.loads(history.stdout)] == [(1, "superseded"), (2, "deployed")]

    values = run_helm(helm, kubeconfig, tmp_path, "get", "values", "rancher", "-n", "cattle-system", "-o", "json")
    assert values.returncode == 0, values.stderr
    assert json.loads(values.stdout)["rancherImageTag"] == get_version(RC).rancher_version
    computed = run_helm(helm, kubeconfig, tmp_path, "get", "values", "fleet", "-n", "cattle-fleet-system", "--all",
                        "-o", "json")
    assert json.loads(computed.stdout)["image"]["tag"] == f"v{deps['fleet'].app_version}"


def test_a_chart_version_the_repository_lacks_fails_with_helms_message(rc_cluster: Cluster) -> None:
    session = rc_cluster.ssh("harvester-node-0")
    before = session.sudo("helm history fleet -n cattle-fleet-system -o json", check=True).stdout
    missing = session.sudo("helm upgrade fleet rancher-charts/fleet -n cattle-fleet-system "
                           "--version 106.9.9+up0.19.9 --reuse-values")
    assert missing.exit_status == 1
    assert missing.stderr.startswith('Error: chart "fleet" matching 106.9.9+up0.19.9 not found in rancher-charts index.')
    assert session.sudo("helm history fleet -n cattle-fleet-system -o json", check=True).stdout == before
    unknown = session.sudo("helm upgrade no-such rancher-charts/no-such -n cattle-system --install=false")
    assert unknown.exit_status == 1 and unknown.stderr.startswith("Error:")


# ---- the operator's remedy, end to end ------------------------------------------------------------------------

def test_the_remedy_is_a_real_helm_upgrade_and_the_stalled_upgrade_completes(keys: KeyPair, tmp_path: Path) -> None:
    simulator = start_with_ssh(RC, tmp_path, keys, time_scale=600)
    cluster = ssh_cluster_of(simulator, keys)
    try:
        kube = Kube(simulator.kubeconfig, unavailable_budget=30)
        run = UpgradeRun.start(kube, cluster.release(TARGET), run_id="t-remedy", cleanup=CleanupStack(),
                               budget=Budget("Version gone", 10))

        with pytest.raises(UpgradeStalled) as stalled:
            PhaseTracker(run, budgets=default_phase_budgets({}), stall_window=4.0, tick=0.5,
                         diagnose=lambda phase, lines: diagnose(phase, lines,
                                                                lambda ns, r: history_from_api(kube, ns, r))).follow()
        assert stalled.value.phase == "SystemServicesUpgraded"

        transcript = upgrade_dependencies_as_repo_asks(cluster, run)
        wanted = get_version(TARGET).rancher_dependencies["fleet"].chart_version
        assert f"helm upgrade fleet rancher-charts/fleet -n cattle-fleet-system --version {wanted}" in transcript
        assert 'Release "fleet" has been upgraded. Happy Helming!' in transcript

        history = json.loads(cluster.ssh("harvester-node-0").sudo(
            "helm history fleet -n cattle-fleet-system -o json", check=True).stdout)
        assert [(h["revision"], h["status"]) for h in history][-2:] == [(2, "superseded"), (3, "deployed")]
        assert history[-1]["chart"] == f"fleet-{wanted}" and history[-1]["description"] == "Upgrade complete"
        secret = kube.get("v1", "Secret", "sh.helm.release.v1.fleet.v3", "cattle-fleet-system")
        assert secret["type"] == "helm.sh/release.v1" and secret["metadata"]["labels"]["status"] == "deployed"

        outcome = PhaseTracker(UpgradeRun.attach(kube, run_id="t-remedy"), budgets=default_phase_budgets({}),
                               stall_window=60.0, tick=0.5).follow()
        assert outcome.final.status_of("Completed") == "True"
        setting = kube.get("harvesterhci.io/v1beta1", "Setting", "server-version")
        assert setting["value"] == TARGET
    finally:
        cluster.close_sessions()
        simulator.stop()
