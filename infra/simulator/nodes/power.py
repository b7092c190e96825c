"""Power operations on a simulated node, and what the cluster sees of them.

reboot = graceful shutdown then boot; shutdown = graceful, stays off; destroy = power cut, stays
off; start = boot. While a node is down its sshd refuses connections; after the node-monitor grace
period the node lifecycle controller marks the Node's conditions Unknown (`NodeStatusUnknown`) and
taints it unreachable; when it boots, the kubelet posts Ready=False (`KubeletNotReady`), then Ready=True
(`KubeletReady`) with the new boot id. Durations are simulated seconds (compressed by the time scale).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..apiserver.clock import rfc3339
from ..apiserver.errors import ApiError
from .sshd import NodeSshd
from .system import NodeSystem, Power

if TYPE_CHECKING:
    from ..simulator import Simulator

log = logging.getLogger(__name__)

SHUTDOWN_SECONDS = 5.0              # systemd stopping units
NODE_MONITOR_GRACE_SECONDS = 40.0   # kube-controller-manager --node-monitor-grace-period (40 s default)
BOOT_SECONDS = 120.0                # firmware, kernel and systemd up to sshd (ILLUSTRATIVE for a server)
KUBELET_READY_SECONDS = 30.0        # rke2-server start until the kubelet reports Ready (ILLUSTRATIVE)

ACTIONS = ("reboot", "shutdown", "start", "destroy")
_PRESSURE = {"MemoryPressure": ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
             "DiskPressure": ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
             "PIDPressure": ("KubeletHasSufficientPID", "kubelet has sufficient PID available")}
_UNREACHABLE, _NOT_READY = "node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"


class NodePower:
    def __init__(self, simulator: "Simulator", node: NodeSystem, sshd: NodeSshd) -> None:
        self.simulator = simulator
        self.node = node
        self.sshd = sshd
        self._transition: asyncio.Task[Any] | None = None
        self._grace: asyncio.Task[Any] | None = None

    def request(self, action: str) -> dict[str, Any]:
        """Start a power operation (on the loop); refuse one that makes no sense in the current state."""
        if action not in ACTIONS:
            raise ApiError(400, "BadRequest", f"unknown power action {action!r}; one of {', '.join(ACTIONS)}")
        state = self.node.power
        busy = self._transition is not None and not self._transition.done()
        if action == "start" and state != Power.OFF:
            raise ApiError(409, "Conflict", f"node {self.node.name} is {state.value}: it is not off")
        if action in ("reboot", "shutdown") and (state != Power.RUNNING or busy):
            raise ApiError(409, "Conflict", f"node {self.node.name} is {state.value}: it is not running")
        if action == "destroy" and state == Power.OFF:
            raise ApiError(409, "Conflict", f"node {self.node.name} is already off")
        if busy:
            self._transition.cancel()           # a power cut interrupts a shutdown or a boot
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "reboot": self._reboot, "shutdown": lambda: self._go_down(graceful=True), "start": self._boot,
            "destroy": lambda: self._go_down(graceful=False)}
        self._transition = asyncio.get_running_loop().create_task(steps[action](), name=f"{self.node.name}-{action}")
        self.simulator.track(self._transition)
        log.info("node %s: %s requested (was %s)", self.node.name, action, state.value)
        return {"node": self.node.name, "action": action, "previousPower": state.value}

    async def _reboot(self) -> None:
        await self._go_down(graceful=True)
        await self._boot()

    async def _go_down(self, *, graceful: bool) -> None:
        node = self.node
        if node.power == Power.RUNNING:
            vip = getattr(self.simulator, "kube_vip", None)       # the API at the VIP may be this node's
            if vip is not None:
                vip.node_going_down(node.name, graceful=graceful)
        node.rke2_active = False
        self.sshd.go_dark()
        if graceful:
            node.power = Power.SHUTTING_DOWN
            node.journal.services_stopping(node.boot_id)
        if self._grace is None or self._grace.done():
            self._grace = asyncio.get_running_loop().create_task(self._node_stops_posting(),
                                                                  name=f"{node.name}-grace")
            self.simulator.track(self._grace)
        if graceful:
            await self.simulator.clock.sleep(SHUTDOWN_SECONDS)
        node.power = Power.OFF

    async def _node_stops_posting(self) -> None:
        await self.simulator.clock.sleep(NODE_MONITOR_GRACE_SECONDS)
        if self.node.power != Power.RUNNING:
            self._update_node(ready=("Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status."),
                              taint=_UNREACHABLE)

    async def _boot(self) -> None:
        node = self.node
        node.power = Power.BOOTING
        node.new_boot()
        await self.simulator.clock.sleep(BOOT_SECONDS)
        node.journal.services_starting(node.boot_id, node.rke2_version)
        self.sshd.listen()
        node.power = Power.RUNNING
        if self._grace is not None:
            self._grace.cancel()
        self._update_node(ready=("False", "KubeletNotReady", "container runtime status check may not have "
                                 "completed yet"), taint=_NOT_READY, report_info=True)
        await self.simulator.clock.sleep(KUBELET_READY_SECONDS)
        node.rke2_active = True
        node.journal.services_ready(node.boot_id)
        self._update_node(ready=("True", "KubeletReady", "kubelet is posting ready status"), taint=None)

    # --- the Node object ------------------------------------------------------------------------------
    def _update_node(self, *, ready: tuple[str, str, str], taint: str | None, report_info: bool = False) -> None:
        status, reason, message = ready
        node = self.node
        now = rfc3339()

        def change(obj: dict[str, Any]) -> None:
            conditions = obj.setdefault("status", {}).setdefault("conditions", [])
            wanted = {"Ready": (status, reason, message)}
            for ctype, (kubelet_reason, kubelet_message) in _PRESSURE.items():
                wanted[ctype] = (status, reason, message) if status == "Unknown" else \
                    ("False", kubelet_reason, kubelet_message)
            for ctype, (cstatus, creason, cmessage) in wanted.items():
                current = next((c for c in conditions if c.get("type") == ctype), None)
                if current is None:
                    current = {"type": ctype}
                    conditions.append(current)
                if current.get("status") != cstatus:
                    current["lastTransitionTime"] = now
                current.update(status=cstatus, reason=creason, message=cmessage, lastHeartbeatTime=now)
            taints = [t for t in obj.setdefault("spec", {}).get("taints", []) if t.get("key") not in
                      (_UNREACHABLE, _NOT_READY)]
            if taint is not None:
                taints += [{"key": taint, "effect": "NoSchedule", "timeAdded": now},
                           {"key": taint, "effect": "NoExecute", "timeAdded": now}]
            if taints:
                obj["spec"]["taints"] = taints
            else:
                obj["spec"].pop("taints", None)
            if report_info:
                info = obj["status"].setdefault("nodeInfo", {})
                info.update(bootID=node.boot_id, osImage=node.os.os_pretty_name, kubeletVersion=node.rke2_version,
                            kubeProxyVersion=node.rke2_version, kernelVersion=node.kernel_version)

        nodes = self.simulator.api.lookup("", "v1", "nodes")
        self.simulator.api.mutate(nodes, None, node.name, change)
        log.info("node %s: Ready=%s (%s)", node.name, status, reason)
