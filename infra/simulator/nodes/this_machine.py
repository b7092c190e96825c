"""`--this-machine`: the cluster's one node is the machine the simulator runs on (a Harvester appliance VM).

The Node is named after this machine's hostname and reports its real facts: the kernel's boot id, the
systemd machine id and the address given as `--node-ip`. The simulator posts the Node's status as a
kubelet does (every HEARTBEAT_SECONDS of real time), and a boot id other than the stored one means the
machine rebooted: the conditions transition afresh. The CAPI Machine copies the Node's nodeInfo and
addresses, as CAPI's machine controller does. There is no simulated sshd or power for this node: the
machine's own OpenSSH answers SSH, and `reboot` reboots the machine (see `NodeFleet.this_machine`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import socket
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..apiserver.clock import rfc3339
from ..apiserver.errors import ApiError
from ..apiserver.objects import ObjectApi
from ..harvester.seed import node_object

if TYPE_CHECKING:
    from ..harvester.versions import HarvesterVersion

log = logging.getLogger(__name__)

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
MACHINE_ID_FILE = Path("/etc/machine-id")
HEARTBEAT_SECONDS = 10.0          # kubelet's nodeStatusUpdateFrequency
INTERNAL_IP_ANNOTATION = "rke2.io/internal-ip"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"
_SIOCGIFADDR = 0x8915             # Linux ioctl: an interface's IPv4 address

# What kubelet's setters write when the node is healthy (pkg/kubelet/nodestatus/setters.go).
_HEALTHY = {
    "MemoryPressure": ("False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    "DiskPressure": ("False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    "PIDPressure": ("False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    "Ready": ("True", "KubeletReady", "kubelet is posting ready status"),
}


@dataclass(frozen=True)
class MachineFacts:
    hostname: str
    boot_id: str
    machine_id: str            # empty: the machine has no /etc/machine-id (the stored one stays)
    node_ip: str

    @classmethod
    def read(cls, node_ip: str | None = None) -> "MachineFacts":
        return cls(hostname(), read_boot_id(), read_machine_id(), node_ip or first_ipv4())

    def describe(self) -> dict[str, str]:
        return {"name": self.hostname, "bootID": self.boot_id, "machineID": self.machine_id, "nodeIP": self.node_ip}


def hostname() -> str:
    """The Node name kubelet registers: the hostname, lower-cased (component-helpers GetHostname)."""
    return socket.gethostname().strip().lower()


def read_boot_id() -> str:
    return BOOT_ID_FILE.read_text().strip()


def read_machine_id() -> str:
    try:
        return MACHINE_ID_FILE.read_text().strip()
    except OSError:
        return ""


def first_ipv4() -> str:
    """The first non-loopback IPv4 address, by interface index (what a VM's one NIC has); else 127.0.0.1."""
    try:
        import fcntl

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            for _, name in sorted(socket.if_nameindex()):
                try:
                    answer = fcntl.ioctl(probe.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
                except OSError:
                    continue                      # no IPv4 address on this interface
                address = ipaddress.ip_address(socket.inet_ntoa(answer[20:24]))
                if not (address.is_loopback or address.is_link_local or address.is_unspecified):
                    return str(address)
    except (ImportError, OSError):
        pass
    return "127.0.0.1"


def _post_status(node: dict[str, Any], facts: MachineFacts, now: str, *, rebooted: bool) -> None:
    """kubelet's status update: healthy conditions with a fresh heartbeat; a change (or a reboot) transitions."""
    status = node.setdefault("status", {})
    conditions = status.setdefault("conditions", [])
    by_type = {c.get("type"): c for c in conditions}
    for ctype, (value, reason, message) in _HEALTHY.items():
        condition = by_type.get(ctype)
        if condition is None:
            condition = {"type": ctype}
            conditions.append(condition)
        if rebooted or condition.get("status") != value or "lastTransitionTime" not in condition:
            condition["lastTransitionTime"] = now
        condition.update(status=value, reason=reason, message=message, lastHeartbeatTime=now)


def adopt(api: ObjectApi, facts: MachineFacts, version: "HarvesterVersion") -> bool:
    """At start: make the Node (and its Machine) this machine's. True when the machine rebooted since the
    stored state (its boot id changed), which transitions the Node's conditions now."""
    nodes = api.lookup("", "v1", "nodes")
    node = api.find(nodes, None, facts.hostname)
    if node is None:              # deleted while the machine ran: kubelet registers it again when it starts
        now = dt.datetime.now(dt.timezone.utc)
        node = api.create(nodes, node_object(version, 0, facts.hostname, now, now), keep_status=True)
    rebooted = ((node.get("status") or {}).get("nodeInfo") or {}).get("bootID") != facts.boot_id
    now = rfc3339()

    def change(obj: dict[str, Any]) -> None:
        status = obj.setdefault("status", {})
        info = status.setdefault("nodeInfo", {})
        info["bootID"] = facts.boot_id
        if facts.machine_id:
            info["machineID"] = facts.machine_id
        status["addresses"] = [{"type": "InternalIP", "address": facts.node_ip},
                               {"type": "Hostname", "address": facts.hostname}]
        obj["metadata"].setdefault("annotations", {})[INTERNAL_IP_ANNOTATION] = facts.node_ip
        _post_status(obj, facts, now, rebooted=rebooted)
    node = api.mutate(nodes, None, facts.hostname, change)
    _copy_to_machine(api, node)
    if rebooted:
        log.info("node %s: boot id %s (the machine booted since the stored state)", facts.hostname, facts.boot_id)
    return rebooted


def _copy_to_machine(api: ObjectApi, node: dict[str, Any]) -> None:
    """CAPI's machine controller copies the Node's nodeInfo and addresses into its Machine's status."""
    machines = api.registry.get("cluster.x-k8s.io", "machines")
    if machines is None:
        return
    name = node["metadata"]["name"]
    for machine in api.list(machines, "fleet-local").items:
        if ((machine.get("status") or {}).get("nodeRef") or {}).get("name") != name:
            continue

        def change(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            status["nodeInfo"] = dict(node["status"].get("nodeInfo") or {})
            status["addresses"] = [dict(a) for a in node["status"].get("addresses") or []]
        api.mutate(machines, "fleet-local", machine["metadata"]["name"], change, subresource="status")


async def post_status_forever(api: ObjectApi, facts: MachineFacts, interval: float = HEARTBEAT_SECONDS) -> None:
    """The kubelet's status loop: every `interval` seconds of real time, a fresh heartbeat."""
    nodes = api.lookup("", "v1", "nodes")
    while True:
        await asyncio.sleep(interval)
        try:
            api.mutate(nodes, None, facts.hostname,
                       lambda obj: _post_status(obj, facts, rfc3339(), rebooted=False))
        except ApiError as exc:      # someone deleted the Node: a kubelet would re-register, not modelled
            log.warning("node %s: status not posted: %s", facts.hostname, exc.message)
