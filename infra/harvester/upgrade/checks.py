"""Checks after an upgrade: node versions against the release, temporary objects removed."""
from __future__ import annotations

from typing import Any

from infra.cluster import Cluster
from infra.kube import Kube
from infra.waits.budget import Budget

from ..names import HARVESTER, SYSTEM_NAMESPACE
from .run import UpgradeRun


def node_versions_match_release(cluster: Cluster, release_file: dict[str, Any]) -> tuple[list[str], str]:
    """Each node's OS (read over SSH from /etc/os-release) and kubelet version against what the target's
    release file declares (`os`, `kubernetes`). Nothing to compare is a problem, never a pass."""
    want_os, want_kubernetes = str(release_file.get("os") or ""), str(release_file.get("kubernetes") or "")
    problems, rows = [], [("node", "os (ssh)", "kubelet (api)")]
    if not want_os or not want_kubernetes:
        problems.append(f"the target's release file declares os={want_os!r} kubernetes={want_kubernetes!r}: "
                        "nothing to compare the nodes with")
    nodes = cluster.kube().list("v1", "Node")
    if not nodes:
        problems.append("the API lists no nodes")
    for node in nodes:
        name = node["metadata"]["name"]
        pretty = cluster.ssh(name).os_release().get("PRETTY_NAME", "")
        kubelet = node["status"]["nodeInfo"].get("kubeletVersion", "")
        rows.append((name, pretty, kubelet))
        if want_os and pretty != want_os:
            problems.append(f"node {name} runs {pretty!r}, the release says {want_os!r}")
        if want_kubernetes and kubelet != want_kubernetes:
            problems.append(f"node {name} kubelet is {kubelet}, the release says {want_kubernetes}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)
    return problems, table


TEMPORARY_OBJECTS = (  # (api version, kind, namespace, name pattern) the upgrade creates and cleans up
    ("kubevirt.io/v1", "VirtualMachine", SYSTEM_NAMESPACE, "upgrade-repo-{name}"),
    (HARVESTER, "VirtualMachineImage", SYSTEM_NAMESPACE, "{name}"),
    ("upgrade.cattle.io/v1", "Plan", "cattle-system", "{name}-prepare"),
)


def wait_temporary_objects_removed(kube: Kube, run: UpgradeRun, budget: Budget) -> None:
    for api_version, kind, namespace, pattern in TEMPORARY_OBJECTS:
        kube.wait_for_gone(api_version, kind, pattern.format(name=run.name), namespace=namespace, budget=budget)
