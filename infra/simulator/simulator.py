"""The Harvester simulator: an API server seeded as a Harvester cluster of one simulated version.

Behaviour depends on the version only (its admission checks, charts, UI save); fault injection
is separate (`ApiServer.faults`). With a state directory it keeps its objects and credentials across
restarts (`persistence.py`); with `this_machine` its one Node is the machine it runs on
(`nodes/this_machine.py`).
"""
from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from .apiserver.faults import Faults
from .apiserver.objects import ObjectApi
from .apiserver.server import KUBE_VERSION, ApiServer
from .apiserver.tls import TlsMaterial, make_tls_material, reissue_server_certificate, server_certificate_shortfalls
from .controllers import install_all
from .harvester import load_crds, steve
from .harvester.seed import DEFAULT_NODE_PREFIX, initial_objects
from .harvester.versions import HarvesterVersion, get_version
from .nodes import NodeFleet, NodeLogin, start_nodes
from .nodes.bridge import LoopBridge
from .nodes.this_machine import HEARTBEAT_SECONDS, MachineFacts, adopt, post_status_forever
from .persistence import Persister, SavedState
from .pods import PodRuntime
from .rancher.front import ApiKey, RancherFront

log = logging.getLogger(__name__)


@dataclass
class SimClock:
    """Simulated durations run `scale` times faster than wall time; budgets stay in real minutes.

    An injected slow phase (`Faults.slowdown`) stretches the durations that start while it is armed."""

    scale: float = 1.0
    faults: Faults | None = None

    async def sleep(self, simulated_seconds: float) -> None:
        factor = self.faults.slowdown() if self.faults is not None else 1.0
        await asyncio.sleep(max(simulated_seconds, 0.0) * factor / self.scale)


@dataclass
class Simulator:
    version: HarvesterVersion
    api: ObjectApi
    server: ApiServer
    tls: TlsMaterial
    token: str
    clock: SimClock
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    nodes: NodeFleet | None = None          # the nodes as machines: SSH, power, OS/RKE2 versions
    guests: Any = None                      # guest.registry.GuestRegistry: the guest clusters on its VMs
    vip: RancherFront | None = None         # Harvester's own API at the cluster VIP (the embedded Rancher)
    vip_key: ApiKey | None = None           # a Rancher API key of the embedded Rancher
    ranchers: list[Any] = field(default_factory=list)   # rancher.server.SimulatedRancher, one per --rancher
    releases: Any = None                    # harvester.release_iso.ReleaseServer: the lab's release mirror
    this_machine: MachineFacts | None = None   # --this-machine: the one Node is this machine
    persister: Persister | None = None      # --state-dir: keeps the state across restarts

    @property
    def url(self) -> str:
        return self.server.url

    def spawn(self, make: Callable[[], Awaitable[Any]], name: str) -> None:
        self.track(asyncio.get_running_loop().create_task(make(), name=name))

    def track(self, task: "asyncio.Task[Any]") -> None:
        """Keep a task for stop(), and log it if it dies: a simulator bug must show, not hang a scenario."""
        self.tasks.append(task)
        task.add_done_callback(_log_if_failed)

    def saved_state(self) -> dict[str, Any]:
        """What --state-dir keeps (JSON-ready; the store's objects are live: serialise at once)."""
        assert self.vip is not None and self.vip_key is not None
        return SavedState(self.version.name, self.token, self.tls, self.vip.tls, [self.vip_key], self.api.store.dump(),
                          self.this_machine.hostname if self.this_machine else "").to_json()

    async def stop(self) -> None:
        try:
            for task in self.tasks:
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)
            if self.nodes is not None:
                self.nodes.stop()
            for rancher in self.ranchers:
                await rancher.stop()
            if self.vip is not None:
                await self.vip.stop()
            if self.releases is not None:
                await self.releases.stop()
            await self.server.stop()
        finally:
            if self.persister is not None:          # last: nothing writes to the store any more
                await self.persister.close()


def _log_if_failed(task: "asyncio.Task[Any]") -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("simulator task %s failed", task.get_name(), exc_info=task.exception())


def seed(api: ObjectApi, version: HarvesterVersion, node_count: int, node_prefix: str = DEFAULT_NODE_PREFIX,
         node_names: tuple[str, ...] | None = None) -> None:
    crd_type = api.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
    assert crd_type is not None
    for crd in load_crds():
        api.create(crd_type, crd)
    objects = initial_objects(version, node_count=node_count, now=dt.datetime.now(dt.timezone.utc),
                              node_prefix=node_prefix, names=node_names)
    objects.sort(key=lambda o: 0 if o["kind"] == "Namespace" else 1)
    for obj in objects:
        rtype = api.resolve(obj["apiVersion"], obj["kind"])
        if rtype.plural == "namespaces" and api.find(rtype, None, obj["metadata"]["name"]):
            continue
        api.create(rtype, obj, keep_status=True)
    _point_node_refs_at_real_uids(api)


def _point_node_refs_at_real_uids(api: ObjectApi) -> None:
    """Machines' status.nodeRef.uid must be the uid the server gave each Node, as CAPI records it."""
    machines = api.registry.get("cluster.x-k8s.io", "machines")
    nodes = api.registry.get("", "nodes")
    assert machines is not None and nodes is not None
    for machine in api.list(machines).items:
        ref = (machine.get("status") or {}).get("nodeRef") or {}
        node = api.find(nodes, None, ref.get("name", ""))
        if node is not None and ref.get("uid") != node["metadata"]["uid"]:
            def set_uid(obj: dict[str, Any], uid: str = node["metadata"]["uid"]) -> None:
                obj["status"]["nodeRef"]["uid"] = uid
            api.mutate(machines, machine["metadata"]["namespace"], machine["metadata"]["name"], set_uid,
                       subresource="status")


# With --state-dir the certificates must outlive a week of uptime: RKE2's lifetimes (CA ten years, serving
# certificate one year, renewed at a restart within 90 days of its end).
PERSISTENT_CA_DAYS, PERSISTENT_CERT_DAYS, RENEW_WITHIN_DAYS = 3650, 365, 90


def _tls(saved: TlsMaterial | None, hosts: tuple[str, ...], persistent: bool, **names: str) -> TlsMaterial:
    """A fresh CA and certificate, or the saved ones (the certificate re-signed by the saved CA if it no
    longer covers `hosts` or nears its end: clients that trust the CA keep verifying)."""
    if saved is None:
        if not persistent:
            return make_tls_material(hosts, **names)
        return make_tls_material(hosts, PERSISTENT_CERT_DAYS, ca_days=PERSISTENT_CA_DAYS, **names)
    shortfalls = server_certificate_shortfalls(saved, hosts, RENEW_WITHIN_DAYS)
    if not shortfalls:
        return saved
    log.info("new serving certificate from the saved CA: the saved one %s", ", ".join(shortfalls))
    return reissue_server_certificate(saved, hosts, PERSISTENT_CERT_DAYS)


async def start_simulator(version_name: str, *, node_count: int = 3, time_scale: float = 1.0, port: int = 0,
                     bookmark_interval: float = 5.0, node_login: NodeLogin | None = None,
                     rancher_versions: tuple[str, ...] = (), node_prefix: str = DEFAULT_NODE_PREFIX,
                     host: str = "127.0.0.1", tls_sans: tuple[str, ...] = (),
                     this_machine: MachineFacts | None = None, state_dir: Path | None = None,
                     saved: SavedState | None = None, node_status_interval: float = HEARTBEAT_SECONDS) -> Simulator:
    """`this_machine`: one Node, the machine itself. `state_dir`: keep the state there (`saved`: what a
    previous run kept, loaded instead of seeding; the caller has checked it belongs to this cluster)."""
    version = get_version(version_name)
    api = ObjectApi()
    if saved is not None:
        api.restore(saved.store)
    elif this_machine is not None:
        seed(api, version, 1, node_names=(this_machine.hostname,))
    else:
        seed(api, version, node_count, node_prefix)
    if this_machine is not None:
        adopt(api, this_machine, version)
        _point_node_refs_at_real_uids(api)             # a re-registered Node has a new uid
    hosts = ("127.0.0.1", "localhost", *tls_sans)
    if host not in ("", "0.0.0.0", "::"):
        hosts += (host,)                                  # the address the kubeconfig names
    if this_machine is not None:                          # as RKE2's serving certificate names its node
        hosts += (this_machine.node_ip, this_machine.hostname)
    persistent = state_dir is not None
    # RKE2 keeps a client CA beside its server CA: certificates it signs log in (x509, CN/O).
    tls = _tls(saved.tls if saved else None, hosts, persistent, client_ca_name="rke2-client-ca")
    token = saved.token if saved else secrets.token_urlsafe(32)
    kube_version = dict(KUBE_VERSION)
    kube_version["gitVersion"] = version.kubernetes_version
    minor = version.kubernetes_version.lstrip("v").split(".")
    kube_version["major"], kube_version["minor"] = minor[0], minor[1]
    server = ApiServer(api, token=token, tls=tls, host=host, port=port, bookmark_interval=bookmark_interval,
                       kube_version=kube_version,
                       info=lambda: {"harvesterVersion": version.name, "timeScale": time_scale})
    await server.start()
    server.pod_streams.runtime = PodRuntime(api, LoopBridge(asyncio.get_running_loop()))
    simulator = Simulator(version=version, api=api, server=server, tls=tls, token=token, clock=SimClock(time_scale, server.faults),
                          this_machine=this_machine)
    simulator.nodes = start_nodes(simulator, node_login, this_machine=this_machine.hostname if this_machine else "")
    if this_machine is not None:
        simulator.spawn(lambda: post_status_forever(api, this_machine, node_status_interval),
                        "node status (this machine)")
    # The VIP serves the embedded Rancher's ingress: its own CA and Rancher API keys, never the kube token.
    simulator.vip_key = saved.vip_keys[0] if saved and saved.vip_keys else ApiKey.new()
    vip_tls = _tls(saved.vip_tls if saved else None, ("127.0.0.1", "localhost"), persistent,
                   ca_name="dynamiclistener-ca", server_name="dynamic")
    simulator.vip = RancherFront(vip_tls, [simulator.vip_key])
    simulator.vip.add_cluster("local", server)
    install_all(simulator)
    if simulator.releases is not None:           # the release mirror: a listener of its own, as a lab's mirror is
        await simulator.releases.start(tls)
    # Steve beside the Kubernetes API, where the dashboard reads and saves: the standalone UI at the VIP's
    # /v1/harvester/, a Rancher's at /k8s/clusters/<id>/v1/harvester/ (after support bundles' own route).
    steve.install(server)
    simulator.vip.add_route(steve.PREFIX, lambda request, tail: server.serve_authenticated(
        request.clone(rel_url=steve.PREFIX + tail), steve.PREFIX + tail))
    await simulator.vip.start()
    from .rancher.server import start_rancher

    for rancher_version in rancher_versions:
        simulator.ranchers.append(await start_rancher(simulator, rancher_version))
    if state_dir is not None:
        simulator.persister = Persister(state_dir, simulator.saved_state)
        simulator.persister.save_now()                 # a first start is saved before anyone is told it serves
        simulator.persister.start(api.store)
    log.info("simulator of Harvester %s serving on %s", version.name, server.url)
    return simulator
