"""The simulator's nodes as machines: each answers SSH on 127.0.0.1 and can be rebooted or powered off.

`start_nodes(simulator, login)` gives every Node of the simulator a `NodeSystem` (OS and RKE2 versions, boot
id, journal), an sshd with its own port and host key, and power control; it serves Rancher's chart
repository for the nodes' helm (harvester.chart_repo) and registers the simulator
routes `GET /simulator/v1/nodes`, `POST /simulator/v1/nodes/{name}/power` and `POST /simulator/v1/nodes/{name}/disconnect`.
The fleet is `simulator.nodes`; the upgrade controller changes versions through it.

With `--this-machine` the one Node is the real machine (`this_machine.py`): the fleet has no simulated node
for it, lists none, and anything that would need one (power, SSH, staging an OS) gets `NodeNotSimulated`.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver.errors import ApiError
from ..harvester.chart_repo import REPO_NAME, ChartRepository, index_yaml
from ..kubeconfig import kubeconfig_dict
from .binaries import node_helm, node_kubectl
from .bridge import LoopBridge
from .commands import NodeServices, node_shell
from .files import RANCHER_UID, NodeFiles
from .kube_vip import KubeVip
from .power import NodePower
from .sftp import NodeSftp, SftpView
from .sshd import NodeLogin, NodeSshd, new_host_key
from .system import NodeSystem, Power

if TYPE_CHECKING:
    from collections.abc import Callable

    import paramiko
    from aiohttp import web

    from ..harvester.versions import HarvesterVersion
    from ..simulator import Simulator

__all__ = ["NodeFleet", "NodeLogin", "NodeNotSimulated", "NodeSystem", "Power", "SimulatedNode", "start_nodes"]
log = logging.getLogger(__name__)
SEEDED_UPTIME = dt.timedelta(hours=2)     # how long the nodes have been up when the simulator starts


class NodeNotSimulated(ApiError):
    """The node is the machine the simulator runs on (--this-machine): no simulated power, SSH or OS for it."""

    def __init__(self, name: str) -> None:
        super().__init__(501, "NotImplemented",
                         f'node "{name}" is this machine (--this-machine), not a simulated one: the simulator cannot '
                         "power it, serve its SSH or change its OS or RKE2 (its own sshd serves SSH; `reboot` on it "
                         "reboots it)")
        self.node = name


@dataclass
class SimulatedNode:
    system: NodeSystem
    sshd: NodeSshd
    power: NodePower

    def describe(self) -> dict[str, Any]:
        return {"name": self.system.name, "sshHost": self.sshd.host, "sshPort": self.sshd.port,
                "sshUser": "rancher", "hostKey": self.sshd.public_key,
                "hostKeyFingerprint": self.sshd.host_key.fingerprint, "power": self.system.power.value,
                "osPrettyName": self.system.os.os_pretty_name, "rke2Version": self.system.rke2_version,
                "bootID": self.system.boot_id}


class NodeFleet:
    def __init__(self, simulator: "Simulator", login: NodeLogin) -> None:
        self.simulator = simulator
        self.login = login
        self.bridge = LoopBridge(asyncio.get_running_loop())
        self.workdir = Path(tempfile.mkdtemp(prefix="harvester-simulator-nodes-"))
        kubeconfig = yaml.safe_dump(kubeconfig_dict(simulator.url, simulator.tls.ca_cert_pem, simulator.token, name="default"),
                                    sort_keys=False)
        self.kubeconfig_file = self.workdir / "rke2.yaml"
        fd = os.open(self.kubeconfig_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(kubeconfig)
        (self.workdir / "home").mkdir()
        self.files = NodeFiles(kubeconfig)
        self.charts = ChartRepository(simulator.tls.server_cert_pem, simulator.tls.server_key_pem)
        self.helm_env = self._helm_configuration(self.charts.listen(), simulator.tls.ca_cert_pem)
        self.nodes: dict[str, SimulatedNode] = {}
        self.this_machine = ""             # --this-machine: the real machine's Node name (never in `nodes`)

    def add(self, node_object: dict[str, Any]) -> SimulatedNode:
        name = node_object["metadata"]["name"]
        boot_id = (node_object.get("status", {}).get("nodeInfo") or {}).get("bootID", "")
        system = NodeSystem.installed(name, self.simulator.version, boot_id, SEEDED_UPTIME)
        services = NodeServices(self.simulator.api, self.bridge, self.files, self.kubeconfig_file, self.workdir / "home",
                                request_power=lambda node, action: self.bridge.soon(self._power_quietly, node,
                                                                                    action, delay=0.1),
                                sudo_password=self.login.password,
                                find_kubectl=lambda: node_kubectl(system.rke2_version), find_helm=node_helm,
                                helm_env=self.helm_env)
        shell = node_shell(system, services)
        sshd = NodeSshd(name, self.login, new_host_key(),
                        run_command=lambda line, stdin, hung_up: shell.run(line, stdin, RANCHER_UID,
                                                                           hung_up=hung_up),
                        sftp_interface=NodeSftp, sftp_view=SftpView(system, self.files),
                        drop_mid_command=self.simulator.server.faults.take_ssh_drop, forward=self._forward)
        sshd.listen()
        node = SimulatedNode(system, sshd, NodePower(self.simulator, system, sshd))
        self.nodes[name] = node
        return node

    def _forward(self, host: str, port: int) -> "Callable[[paramiko.Channel], None] | None":
        """A node's direct-tcpip channel: every node reaches every VM guest (the pod network, the VLANs)."""
        guests = getattr(getattr(self.simulator, "kubevirt", None), "guests", None)
        return guests.route(host, port) if guests is not None else None

    def _helm_configuration(self, charts_url: str, ca_pem: bytes) -> dict[str, str]:
        """The nodes' helm has `rancher-charts` added and its index fetched (as `helm repo add` and
        `helm repo update` leave them), trusting the simulator's CA; returns helm's environment."""
        home = self.workdir / "helm"
        config, cache, data = home / "config", home / "cache", home / "data"
        for directory in (config, cache / "repository", data):
            directory.mkdir(parents=True)
        ca_file = home / "ca.crt"
        ca_file.write_bytes(ca_pem)
        repositories = {"apiVersion": "", "generated": "0001-01-01T00:00:00Z", "repositories": [
            {"name": REPO_NAME, "url": charts_url, "caFile": str(ca_file), "certFile": "", "keyFile": "",
             "insecure_skip_tls_verify": False, "pass_credentials_all": False, "username": "", "password": ""}]}
        (config / "repositories.yaml").write_text(yaml.safe_dump(repositories, sort_keys=False))
        (cache / "repository" / f"{REPO_NAME}-index.yaml").write_bytes(index_yaml(charts_url))
        return {"HELM_CONFIG_HOME": str(config), "HELM_CACHE_HOME": str(cache), "HELM_DATA_HOME": str(data)}

    def get(self, name: str) -> SimulatedNode:
        if name and name == self.this_machine:
            raise NodeNotSimulated(name)
        try:
            return self.nodes[name]
        except KeyError:
            raise ApiError(404, "NotFound", f'node "{name}" not found') from None

    def describe(self) -> list[dict[str, Any]]:
        return [node.describe() for node in self.nodes.values()]

    # --- what the upgrade controller uses --------------------------------------------------------------
    def stage_os(self, name: str, version: "HarvesterVersion") -> None:
        """The node's next boot runs this Harvester OS image (and reports it in /etc/os-release)."""
        self.get(name).system.stage_os(version)

    def set_rke2_version(self, name: str, version: str) -> None:
        self.get(name).system.set_rke2_version(version)

    def power(self, name: str, action: str) -> dict[str, Any]:
        return self.get(name).power.request(action)

    def _power_quietly(self, name: str, action: str) -> None:
        try:
            self.power(name, action)
        except ApiError as exc:
            log.warning("node %s: %s refused: %s", name, action, exc.message)

    def stop(self) -> None:
        for node in self.nodes.values():
            node.sshd.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # --- simulator routes ------------------------------------------------------------------------------------
    def install_routes(self) -> None:
        server = self.simulator.server
        server.add_simulator_route("GET", "/simulator/v1/nodes", self._list_route)
        server.add_simulator_route("POST", "/simulator/v1/nodes/{name}/power", self._power_route)
        server.add_simulator_route("POST", "/simulator/v1/nodes/{name}/disconnect", self._disconnect_route)

    async def _list_route(self, request: "web.Request", _: str) -> dict[str, Any]:
        return {"items": self.describe()}

    async def _power_route(self, request: "web.Request", name: str) -> dict[str, Any]:
        body = await _json_body(request)
        result = self.power(name, str(body.get("action", "")))
        return {**result, "node": self.get(name).describe()}

    async def _disconnect_route(self, request: "web.Request", name: str) -> dict[str, Any]:
        """Fault injection: drop the node's SSH sessions (a network blip); the node stays up."""
        return {"node": name, "droppedSessions": self.get(name).sshd.drop_sessions()}


async def _json_body(request: "web.Request") -> dict[str, Any]:
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise ApiError(400, "BadRequest", "the body must be JSON, e.g. {\"action\": \"reboot\"}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object, e.g. {\"action\": \"reboot\"}")
    return body


def start_nodes(simulator: "Simulator", login: NodeLogin | None = None, *, this_machine: str = "") -> NodeFleet:
    """Give every Node in the simulator's store a machine with an sshd (call on the simulator's loop);
    `this_machine` names the Node that is the real machine, which gets none."""
    fleet = NodeFleet(simulator, login or NodeLogin())
    fleet.this_machine = this_machine
    simulator.spawn(fleet.charts.serve, "rancher-charts repository")
    nodes = simulator.api.lookup("", "v1", "nodes")
    for node_object in simulator.api.list(nodes).items:
        if node_object["metadata"]["name"] != this_machine:
            fleet.add(node_object)
    fleet.install_routes()
    if fleet.nodes:
        setattr(simulator, "kube_vip", KubeVip(simulator, fleet))     # the API at the VIP is one node's
        log.info("simulated nodes answer SSH on %s", ", ".join(f"{n.system.name}=127.0.0.1:{n.sshd.port}"
                                                             for n in fleet.nodes.values()))
    if this_machine:
        log.info("node %s is this machine: no simulated SSH or power for it", this_machine)
    return fleet
