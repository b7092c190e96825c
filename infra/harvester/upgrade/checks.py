"""Checks after an upgrade: node versions against the release, temporary objects removed."""
from __future__ import annotations

from typing import Any

import yaml

from infra.kube import Kube
from infra.waits.budget import Budget

from ..names import HARVESTER, SYSTEM_NAMESPACE
from .run import UpgradeRun


def release_of(repo_info: str | None) -> dict[str, Any]:
    """The release facts the upgrade recorded in status.repoInfo (os, kubernetes, ...)."""
    info = yaml.safe_load(repo_info or "") or {}
    return info.get("release", info)


def node_versions_match_release(cluster: Any, repo_info: str | None) -> tuple[list[str], str]:
    """Each node's OS (read over SSH from /etc/os-release) and kubelet version against the release."""
    release = release_of(repo_info)
    want_os, want_kubernetes = release.get("os", ""), release.get("kubernetes", "")
    problems, rows = [], [("node", "os (ssh)", "kubelet (api)")]
    for node in cluster.kube().list("v1", "Node"):
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
