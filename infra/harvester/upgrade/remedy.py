"""The operator's remedy for a stuck system-services stage: bring every Rancher dependency release to
the exact chart the upgrade repo asks for, with helm on a node (what Harvester's workaround says).

Which releases and where: the upgrade repo's `harvester-release.yaml` (read as upgrade_manifests.sh reads
it) names `rancherDependencies`; upgrade_manifests.sh waits for fleet and fleet-crd in
cattle-fleet-system and rancher-webhook in cattle-system.
"""
from __future__ import annotations

from infra.cluster import Capability, Cluster

from ..helm import parse_history_yaml
from ..releases import release_file_from_repo
from .run import UpgradeRun

DEPENDENCY_NAMESPACES = {"fleet": "cattle-fleet-system", "fleet-crd": "cattle-fleet-system",
                         "rancher-webhook": "cattle-system"}


def upgrade_dependencies_as_repo_asks(cluster: Cluster, run: UpgradeRun) -> str:
    """Upgrade each dependency whose installed chart is not the wanted string; return the transcript."""
    cluster.require(Capability.SSH, "the operator's remedy (helm on a node)")
    wanted = release_file_from_repo(run.kube, run.name).get("rancherDependencies") or {}
    if not wanted:
        raise AssertionError(f"the upgrade repo of {run.name} names no rancherDependencies")
    session = cluster.ssh(cluster.node_names()[0])
    transcript = []
    for release, chart in sorted(wanted.items()):
        namespace = DEPENDENCY_NAMESPACES[release]
        history = parse_history_yaml(session.sudo(f"helm history {release} -n {namespace} -o yaml", check=True).stdout)
        installed = history[-1].chart if history else "(none)"
        if installed == f"{release}-{chart['chart']}":
            transcript.append(f"# {namespace}/{release} is already {installed}")
            continue
        command = (f"helm upgrade {release} rancher-charts/{release} -n {namespace} --version {chart['chart']} "
                   f"--reuse-values")
        result = session.sudo(command, check=True)
        transcript.append(f"# {namespace}/{release} was {installed}\n$ sudo {command}\n{result.stdout.strip()}")
    return "\n".join(transcript)
