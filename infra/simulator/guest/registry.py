"""The twin's guest-cluster endpoints: start, describe and remove guest RKE2 clusters on demand.

  POST   /twin/v1/guests          {name, rke2Version, rancherLine, hostNamespace?, runId?}
  GET    /twin/v1/guests          the guests of this twin (no credentials)
  GET    /twin/v1/guests/{name}   one guest, with its kubeconfig
  DELETE /twin/v1/guests/{name}   stop its API server, remove its VMs from the host
  GET    /twin/v1/dhcp/leases     the VM network's DHCP leases (which address went to which MAC)

The kubeconfig is also where a Harvester/Rancher user finds it: the Secret
`<hostNamespace>/<name>-kubeconfig`, key `value` (Rancher's `<cluster>-kubeconfig` convention),
so a harness reaching only the host's API can read it.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..apiserver import errors
from .cluster import GuestCluster, GuestSpec
from .hostside import HostSide
from .rke2 import BadGuestRequest, Rke2Line, rancher_agent_version

if TYPE_CHECKING:
    from ..twin import Twin

_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$")


class GuestRegistry:
    def __init__(self, twin: "Twin") -> None:
        self.twin = twin
        self.hostside = HostSide(twin)
        self.guests: dict[str, GuestCluster] = {}

    def install(self) -> None:
        server = self.twin.server
        server.add_twin_route("POST", "/twin/v1/guests", self._create)
        server.add_twin_route("GET", "/twin/v1/guests", self._list)
        server.add_twin_route("GET", "/twin/v1/guests/{name}", self._get)
        server.add_twin_route("DELETE", "/twin/v1/guests/{name}", self._delete)
        server.add_twin_route("GET", "/twin/v1/dhcp/leases", self._leases)
        self.twin.spawn(self._stop_guests_with_the_twin, "guest-registry")
        # A Harvester cluster has its default StorageClass and the VM network from the start.
        self.hostside.ensure_infrastructure()

    async def _stop_guests_with_the_twin(self) -> None:
        import asyncio

        try:
            await asyncio.Event().wait()
        finally:
            for guest in list(self.guests.values()):
                await guest.stop()
            self.guests.clear()

    async def _create(self, request: web.Request, _: str) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise errors.bad_request("the body must be JSON: {name, rke2Version, rancherLine}") from None
        name = str(body.get("name", ""))
        if not _NAME.match(name):
            raise errors.bad_request(f"name {name!r} must be a DNS-1035 label of at most 30 characters")
        if name in self.guests:
            raise errors.already_exists("guests", name)
        try:
            spec = GuestSpec(name=name, rke2=Rke2Line.parse(str(body.get("rke2Version", ""))),
                             rancher_line=str(body.get("rancherLine", "")),
                             host_namespace=str(body.get("hostNamespace") or "default"),
                             run_id=str(body.get("runId", "")))
            rancher_agent_version(spec.rancher_line)
        except BadGuestRequest as exc:
            raise errors.bad_request(str(exc)) from None
        guest = GuestCluster(self.twin, self.hostside, spec)
        await guest.start()
        self.guests[name] = guest
        return self._describe(guest, with_kubeconfig=True)

    async def _list(self, request: web.Request, _: str) -> dict[str, Any]:
        return {"guests": [self._describe(g, with_kubeconfig=False) for g in self.guests.values()]}

    async def _get(self, request: web.Request, name: str) -> dict[str, Any]:
        guest = self.guests.get(name)
        if guest is None:
            raise errors.not_found("guests", name)
        return self._describe(guest, with_kubeconfig=True)

    async def _delete(self, request: web.Request, name: str) -> dict[str, Any]:
        guest = self.guests.pop(name, None)
        if guest is None:
            raise errors.not_found("guests", name)
        await guest.stop()
        return {"deleted": name}

    async def _leases(self, request: web.Request, _: str) -> dict[str, Any]:
        return {"network": "default/vm-network", "leases": [lease.as_dict() for lease in self.hostside.dhcp.leases()]}

    @staticmethod
    def _describe(guest: GuestCluster, *, with_kubeconfig: bool) -> dict[str, Any]:
        described = guest.info()
        if with_kubeconfig:
            described["kubeconfig"] = guest.kubeconfig()
        return described


def install(twin: "Twin") -> None:
    GuestRegistry(twin).install()
