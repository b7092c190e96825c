"""Steps about nodes as machines: SSH, reboots, what a node reports about itself."""
from __future__ import annotations

import pytest
from pytest_bdd import parsers, then, when

from infra.backends import Cluster
from infra.config import RunConfig
from infra.kube.predicates import condition_status
from infra.report.attach import attach_text
from infra.waits.budget import Budget


@when(parsers.parse("node {node} is rebooted"), target_fixture="reboot_of")
def node_rebooted(cluster: Cluster, run_config: RunConfig, node: str) -> dict[str, str]:
    session = cluster.ssh(node)
    before = session.boot_id()
    after = session.reboot(Budget.minutes("node back over SSH after a reboot", run_config.timeouts.node_ready_min))
    attach_text(f"{node} boot ids", f"before: {before}\nafter:  {after}\nSSH reconnects: {session.reconnects}")
    return {"node": node, "before": before, "after": after}


@when(parsers.parse("node {node} is power-cycled through libvirt"), target_fixture="reboot_of")
def node_power_cycled(cluster: Cluster, run_config: RunConfig, node: str) -> dict[str, str]:
    if cluster.power_control is None:
        pytest.skip(f"node power through libvirt is not available on {cluster.name}: libvirt-python is missing "
                    "(see README: system packages)")
    session = cluster.ssh(node)
    before = session.boot_id()
    cluster.power(node, "reboot")

    def rebooted(obj: dict | None) -> bool:
        info = ((obj or {}).get("status") or {}).get("nodeInfo") or {}
        return condition_status(obj or {}, "Ready") == "True" and info.get("bootID") not in (None, "", before)

    cluster.kube().wait_for("v1", "Node", node, rebooted, awaited=f"Node {node} Ready after a new boot",
                            budget=Budget.minutes("node back after a power cycle", run_config.timeouts.node_ready_min))
    after = session.boot_id()
    attach_text(f"{node} boot ids", f"before: {before}\nafter:  {after}\nthrough: libvirt domain reboot")
    assert after != before, f"node {node} answers with the same boot id {before}: it did not restart"
    return {"node": node, "before": before, "after": after}


@then(parsers.parse("node {node} reports Harvester OS {version} over SSH"))
def reports_os(cluster: Cluster, node: str, version: str) -> None:
    release = cluster.ssh(node).os_release()
    attach_text(f"{node} /etc/os-release", "\n".join(f"{k}={v}" for k, v in release.items()))
    expected = f"Harvester {version}"
    assert release.get("PRETTY_NAME") == expected, \
        f"node {node} reports PRETTY_NAME={release.get('PRETTY_NAME')!r} over SSH, expected {expected!r}"


@then(parsers.parse("node {node} is Ready with the boot id it reports over SSH"))
def ready_with_ssh_boot_id(cluster: Cluster, run_config: RunConfig, node: str) -> None:
    boot_id = cluster.ssh(node).boot_id()

    def ready_after_boot(obj: dict | None) -> bool:
        info = ((obj or {}).get("status") or {}).get("nodeInfo") or {}
        return condition_status(obj or {}, "Ready") == "True" and info.get("bootID") == boot_id

    cluster.kube().wait_for("v1", "Node", node, ready_after_boot,
                            budget=Budget.minutes("node Ready after a reboot", run_config.timeouts.node_ready_min),
                            awaited=f"Node {node} Ready with bootID {boot_id}")
