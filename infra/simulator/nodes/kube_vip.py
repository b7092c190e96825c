"""The management VIP as kube-vip holds it: the Kubernetes API at the VIP is one node's kube-apiserver.

Read from harvester/harvester and harvester/charts at v1.4.2 and v1.5.1 (the kube-vip dependency chart 0.6.1,
image kube-vip-iptables v0.8.1) and harvester-installer's rancherd config:

* kube-vip runs as a DaemonSet in `harvester-system` on the control-plane nodes, host network, ARP mode,
  `svc_enable: "true"`, `cp_enable: "false"`: the VIP is the `kube-system/ingress-expose` LoadBalancer Service's
  address, put as a /32 on the interface of the node that holds the lease `harvester-system/plndr-svcs-lock`.
  Port 6443 at the VIP is not a port of that Service: it is delivered to the holder's own kube-apiserver. So the
  API at the VIP is up while the holder's RKE2 server is, whatever the other nodes do.
* Leader election with kube-vip v0.8.1's defaults (Harvester sets none): lease 5 s, renew deadline 3 s, retry
  1 s, the lease released on a clean stop (`ReleaseOnCancel`).
* The upgrade does nothing about the VIP (`package/upgrade/upgrade_node.sh` `reboot_if_job_succeed`: sleep,
  remove the static pod manifests, `reboot`; the drain ignores DaemonSets): when the holder reboots, its
  apiserver and kube-vip stop together.

Modelled (times in simulated seconds): when the holder goes down, the API at the VIP answers nothing (requests
are dropped, watches end; the simulator's own endpoints, which are not behind the VIP, go on) until another
running node takes the lease: a retry period (`RETRY_SECONDS`) after a clean shutdown (the lease was
released), the lease's expiry plus a retry (`LEASE_SECONDS + RETRY_SECONDS`) after a power cut. With no other
node running, the API stays away until the holder's RKE2 is up again. A node that is not the holder comes and
goes without the API noticing.

The same leader announces every LoadBalancer Service's address (`svc_enable`, no per-service election), so those
are unreachable during a failover too (`controllers/lb_datapath.py` asks `failing_over`).

Not modelled: the Lease object itself (its renewals would be a write a second), an RKE2 restart on the holder
without a reboot (the simulated RKE2 upgrade swaps the version in place), the ingress (VIP:443) path, and
kube-vip's known faults (the VIP on two nodes, harvester/harvester#7293).
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from .system import Power

if TYPE_CHECKING:
    from ..simulator import Simulator
    from . import NodeFleet

log = logging.getLogger(__name__)

LEASE_SECONDS = 5.0      # kube-vip v0.8.1 vip_leaseduration default
RETRY_SECONDS = 1.0      # vip_retryperiod default: how soon a follower tries to take a free lease
BACK_POLL_SECONDS = 1.0  # with no follower: how often the holder's RKE2 is checked (it holds the lease again)


class KubeVip:
    def __init__(self, simulator: "Simulator", fleet: "NodeFleet") -> None:
        self.simulator = simulator
        self.fleet = fleet
        running = sorted(name for name, node in fleet.nodes.items() if node.system.power == Power.RUNNING)
        self.holder = running[0] if running else ""
        self.transitions = 0
        self._failovers = 0

    @property
    def failing_over(self) -> bool:
        """The VIP (and every LoadBalancer address kube-vip announces) is on no node now."""
        return self._failovers > 0

    def node_going_down(self, name: str, *, graceful: bool) -> None:
        """Called as a node starts to shut down or loses power (on the loop)."""
        if name != self.holder:
            return
        wait = RETRY_SECONDS if graceful else LEASE_SECONDS + RETRY_SECONDS
        task = asyncio.get_running_loop().create_task(self._failover(name, wait), name=f"kube-vip failover {name}")
        self.simulator.track(task)

    def _follower(self, leaving: str) -> str:
        return next((n for n, node in sorted(self.fleet.nodes.items())
                     if n != leaving and node.system.power == Power.RUNNING and node.system.rke2_active), "")

    async def _failover(self, leaving: str, wait: float) -> None:
        server = self.simulator.server
        clock = self.simulator.clock
        server.vip_away(True)
        self._failovers += 1
        log.info("kube-vip: VIP holder %s going down; the API at the VIP does not answer", leaving)
        try:
            await clock.sleep(wait)
            while not self._follower(leaving):           # bounded by the holder's reboot (it comes back)
                node = self.fleet.nodes.get(leaving)
                if node is not None and node.system.power == Power.RUNNING and node.system.rke2_active:
                    break
                await clock.sleep(BACK_POLL_SECONDS)
            self.holder = self._follower(leaving) or leaving
            self.transitions += self.holder != leaving
            log.info("kube-vip: %s holds the VIP (transition %d)", self.holder, self.transitions)
        finally:
            self._failovers -= 1
            server.vip_away(False)
