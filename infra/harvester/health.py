"""Is the cluster healthy enough to upgrade? The checks Harvester's own pre-upgrade webhook makes,
read from outside: nodes Ready, Machines Running and matched, ManagedCharts Ready, server-version."""
from __future__ import annotations

from typing import Any

from infra.failures import ProductFailure
from infra.kube import Kube
from infra.kube.predicates import condition_status
from infra.waits.budget import Budget

from . import machines as capi
from .names import CAPI, FLEET_LOCAL, HARVESTER, MANAGEMENT

Obj = dict[str, Any]


class HealthProblem(ProductFailure):
    """A health check failed; `evidence` holds the objects it looked at, for the report."""


def _not_ready_nodes(nodes: list[Obj]) -> list[str]:
    return [n["metadata"]["name"] for n in nodes if condition_status(n, "Ready") != "True"]


def wait_nodes_ready(kube: Kube, budget: Budget) -> list[Obj]:
    return kube.wait_for_all("v1", "Node", lambda nodes: bool(nodes) and not _not_ready_nodes(nodes),
                             budget=budget, awaited="every node to be Ready",
                             describe=lambda nodes: f"not Ready: {', '.join(_not_ready_nodes(nodes)) or 'none'}")


def machines_and_nodes(kube: Kube) -> tuple[list[Obj], list[Obj]]:
    return kube.list("v1", "Node"), kube.list(CAPI, "Machine", FLEET_LOCAL)


def assert_machines_consistent(kube: Kube) -> str:
    nodes, machines = machines_and_nodes(kube)
    problems = capi.consistency_problems(nodes, machines)
    text = capi.table(nodes, machines)
    if problems:
        raise HealthProblem("machines and nodes are not consistent: " + "; ".join(problems),
                            evidence={"machines and nodes": text, "machines": machines})
    return text


def not_ready_managed_charts(kube: Kube) -> list[str]:
    charts = kube.list(MANAGEMENT, "ManagedChart", FLEET_LOCAL)
    return [c["metadata"]["name"] for c in charts if condition_status(c, "Ready") != "True"]


def wait_managed_charts_ready(kube: Kube, budget: Budget) -> list[Obj]:
    def not_ready(charts: list[Obj]) -> list[str]:
        return [c["metadata"]["name"] for c in charts if condition_status(c, "Ready") != "True"]

    return kube.wait_for_all(MANAGEMENT, "ManagedChart", lambda charts: bool(charts) and not not_ready(charts),
                             budget=budget, namespace=FLEET_LOCAL, awaited="every ManagedChart to be Ready",
                             describe=lambda charts: f"not Ready: {', '.join(not_ready(charts)) or 'none'}")


def server_version(kube: Kube) -> str:
    setting = kube.get(HARVESTER, "Setting", "server-version")
    return str(setting.get("value") or setting.get("default") or "")
