"""Simulated nodes as libvirt domains: power operations in scenarios go through libvirt, as on a lab.

Each node of a simulated cluster is a domain in libvirt's in-process test driver (`test:///default`),
named and marked (metadata) with the run id. `Cluster.power(node, action)` performs the operation on the
domain through libvirt (which refuses what libvirt refuses, e.g. starting a running domain) and then
bridges it to the simulator over HTTPS: `POST /simulator/v1/nodes/{name}/power {"action": ...}`, where the node
really goes down and comes back (SSH, Node conditions, boot id). If the simulator refuses (its node is still
shutting down, say), the domain is put back into the state the simulator reports, and the refusal is raised.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

from infra.cluster import Cluster

from .base import BackendError
from .simulator_client import SimulatorClient, SimulatorRefused

log = logging.getLogger("harvester_e2e.backends.sim_power")
SIMULATED_NODES_URI = "test:///default"


def _domain_xml(name: str, run_id: str, node: str, cluster: str) -> str:
    from infra.provision.ownership import run_mark

    root = ET.Element("domain", type="test")
    ET.SubElement(root, "name").text = name
    ET.SubElement(root, "metadata").append(run_mark(run_id, node=node, cluster=cluster))
    ET.SubElement(root, "memory", unit="MiB").text = "64"
    ET.SubElement(ET.SubElement(root, "os"), "type").text = "hvm"
    return ET.tostring(root, encoding="unicode")


class SimulatedNodePower:
    def __init__(self, run_id: str, cluster: Cluster) -> None:
        from infra.provision import open_connection

        self.run_id = run_id
        self.cluster = cluster
        self.simulator = SimulatorClient(cluster.kubeconfig, cluster.context)
        self.conn = open_connection(SIMULATED_NODES_URI)
        self.domains: dict[str, str] = {}
        from infra.provision.audit import remove_domain

        try:
            for node in cluster.nodes:
                name = f"{run_id}-{cluster.name}-{node.name}"
                self.domains[node.name] = name
                remove_domain(self.conn, name)        # left by an earlier simulator of this run and version
                self.conn.defineXML(_domain_xml(name, run_id, node.name, cluster.name)).create()
        except BaseException:
            self.close()
            raise

    def domain(self, node: str) -> Any:
        if node not in self.domains:
            raise BackendError(f"no node {node!r} in {self.cluster.name}; nodes: {', '.join(self.domains)}")
        return self.conn.lookupByName(self.domains[node])

    def power(self, node: str, action: str) -> None:
        from infra.provision import PowerAction
        from infra.provision.connection import libvirt_module

        libvirt = libvirt_module()
        parsed = PowerAction.parse(action)
        domain = self.domain(node)
        operations = {PowerAction.START: domain.create, PowerAction.DESTROY: domain.destroy,
                      PowerAction.SHUTDOWN: domain.shutdown, PowerAction.REBOOT: lambda: domain.reboot(0)}
        try:
            operations[parsed]()
        except libvirt.libvirtError as exc:
            raise BackendError(f"libvirt refused to {parsed.value} {node}: {exc.get_error_message()}") from None
        log.info("node %s: %s through libvirt (domain %s), bridging it to the simulator", node, parsed.value,
                 self.domains[node])
        try:
            self.simulator.power(node, parsed.value)
        except SimulatorRefused as exc:
            message = exc.message
            self._follow_simulator(node)
            if exc.status == 404 and "no such" not in message.lower() and "not found" not in message.lower():
                message = "the simulator has no node power endpoint (POST /simulator/v1/nodes/{name}/power)"
            raise BackendError(f"the simulated cluster refused to {parsed.value} {node}: {message}") from None

    def _follow_simulator(self, node: str) -> None:
        """After a refusal, make the domain's state the simulator's (off, or anything else = running)."""
        try:
            power: str | None = self.simulator.node_power_states().get(node)
        except (SimulatorRefused, OSError, ValueError):
            return
        domain = self.domain(node)
        if power == "off" and domain.isActive():
            domain.destroy()
        elif power not in (None, "off") and not domain.isActive():
            domain.create()

    def close(self) -> None:
        from infra.provision.audit import remove_domain

        for name in self.domains.values():
            try:
                remove_domain(self.conn, name)
            except Exception as exc:
                log.warning("could not remove simulated node domain %s: %s", name, exc)
        self.domains.clear()
        self.conn.close()


def attach_node_power(run_id: str, cluster: Cluster) -> None:
    """Give a simulated cluster its libvirt-routed power control (left unset, with a warning, where
    libvirt-python is missing: `Cluster.power` then says power is not available)."""
    from infra.provision import LibvirtUnavailable

    try:
        cluster.power_control = SimulatedNodePower(run_id, cluster)
    except LibvirtUnavailable as exc:
        log.warning("simulated nodes have no power control: %s", exc)


def detach_node_power(cluster: Cluster) -> None:
    if isinstance(cluster.power_control, SimulatedNodePower):
        cluster.power_control.close()
        cluster.power_control = None
