"""The guest RKE2 clusters running on this simulator's VMs, started and removed by a simulated Rancher.

There is no endpoint for them: a guest exists because a Rancher provisioned it (a provisioning
Cluster whose machine pools name HarvesterConfigs), exactly as on a real lab; its kubeconfig is the
one that Rancher publishes. Guests are keyed by their VM namespace and cluster name, because their
VMs are named after the cluster's machines there.
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .cluster import SimulatedGuestCluster, GuestSpec
from .hostside import HostSide

if TYPE_CHECKING:
    from ..simulator import Simulator


class GuestConflict(Exception):
    """The VMs that guest would make already exist (the driver's 'machine ... already exists')."""


class GuestRegistry:
    def __init__(self, simulator: "Simulator") -> None:
        self.simulator = simulator
        self.hostside = HostSide(simulator)
        self.guests: dict[tuple[str, str], SimulatedGuestCluster] = {}

    def install(self) -> None:
        self.simulator.spawn(self._stop_guests_with_the_simulator, "guest-registry")
        # A Harvester cluster has its default StorageClass, the VM network and Longhorn (its provisioner
        # binds the claims of Longhorn classes: VM disks) from the start.
        self.hostside.start()

    async def _stop_guests_with_the_simulator(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            for guest in list(self.guests.values()):
                await guest.stop()
            self.guests.clear()

    async def provision(self, spec: GuestSpec) -> SimulatedGuestCluster:
        key = (spec.host_namespace, spec.name)
        if key in self.guests:
            raise GuestConflict(f"machines of cluster {spec.name} already exist in namespace {spec.host_namespace}")
        guest = SimulatedGuestCluster(self.simulator, self.hostside, spec)
        self.guests[key] = guest
        try:
            await guest.start()
        except BaseException:
            self.guests.pop(key, None)
            raise
        return guest

    async def remove(self, host_namespace: str, name: str) -> bool:
        """Stop the guest's API server and remove its VMs (False: there was no such guest)."""
        guest = self.guests.pop((host_namespace, name), None)
        if guest is None:
            return False
        await guest.stop()
        return True


def install(simulator: "Simulator") -> None:
    simulator.guests = GuestRegistry(simulator)
    simulator.guests.install()
