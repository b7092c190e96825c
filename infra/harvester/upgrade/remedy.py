"""The operator's remedy for a stuck system-services stage: bring every Rancher dependency release to
the exact chart the upgrade repo asks for, with helm on a node (what Harvester's workaround says).

Which releases and where: the upgrade recorded the repo's release file in `status.repoInfo`;
upgrade_manifests.sh waits for fleet and fleet-crd in cattle-fleet-system and rancher-webhook in
cattle-system.
"""
from __future__ import annotations

from typing import Any

from ..helm import parse_history_yaml
from .checks import release_of

DEPENDENCY_NAMESPACES = {"fleet": "cattle-fleet-system", "fleet-crd": "cattle-fleet-system",
                         "rancher-webhook": "cattle-system"}


def upgrade_dependencies_as_repo_asks(cluster: Any, upgrade: dict[str, Any]) -> str:
    """Upgrade each dependency whose installed chart is not the wanted string; return the transcript."""
    wanted = release_of((upgrade.get("status") or {}).get("repoInfo")).get("rancherDependencies") or {}
    if not wanted:
        raise AssertionError("the Upgrade has no repoInfo with rancherDependencies: the repo was never read")
    session = cluster.ssh(cluster.nodes[0].name)
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
