"""The operator's remedy for a stuck system-services stage: upgrade the awaited Rancher dependency
release to the exact chart and app version the upgrade repo asks for, with helm on a node."""
from __future__ import annotations

from typing import Any


def upgrade_release_as_repo_asks(cluster: Any, namespace: str, release: str, chart: str, app_version: str) -> str:
    version = chart[len(release) + 1:] if chart.startswith(release + "-") else chart
    node = cluster.nodes[0].name
    command = (f"helm upgrade {release} rancher-charts/{release} -n {namespace} --version {version} "
               f"--reuse-values")
    with cluster.ssh(node) as session:
        result = session.sudo(command, check=True)
        history = session.sudo(f"helm history {release} -n {namespace}", check=True)
    return f"$ sudo {command}\n{result.stdout}\n$ sudo helm history {release} -n {namespace}\n{history.stdout}"
