"""A simulated Rancher Manager beside the Harvester simulator: its own HTTPS listener, CA, API key and store.

Its local cluster (what `/k8s/clusters/local` reaches) holds Rancher's objects: provisioning
Clusters, HarvesterConfigs, management Clusters and Settings, Secrets and Namespaces (`fleet-default`,
`fleet-local`, `cattle-system`, `cattle-global-data`). The provisioning controller
(`provisioning.py`) turns a Cluster with Harvester machine pools into a guest RKE2 cluster on the
simulator's VMs, in the same process.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi
from ..apiserver.server import KUBE_VERSION, ApiServer
from ..apiserver.tls import make_tls_material
from ..harvester import CRD_DIR as HARVESTER_CRDS
from .front import ApiKey, RancherFront
from .releases import RancherRelease

if TYPE_CHECKING:
    from ..simulator import Simulator

log = logging.getLogger(__name__)

CRD_DIR = Path(__file__).with_name("crds")
SHARED_CRDS = ("provisioning.cattle.io_clusters.yaml", "management.cattle.io_settings.yaml")
NAMESPACES = ("fleet-default", "fleet-local", "cattle-system", "cattle-global-data", "local")
# The Kubernetes of Rancher's own (local) cluster, per Rancher line (ILLUSTRATIVE: a K3s each line supports).
LOCAL_KUBERNETES = {8: "v1.28.15+k3s1", 9: "v1.30.8+k3s1", 10: "v1.31.4+k3s1", 11: "v1.32.2+k3s1"}


def _load(paths: list[Path]) -> list[dict[str, Any]]:
    crds = []
    for path in paths:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                crds.append(json.loads(json.dumps(doc)))
    return crds


class SimulatedRancher:
    def __init__(self, simulator: "Simulator", release: RancherRelease) -> None:
        self.simulator = simulator
        self.release = release
        self.api = ObjectApi()
        # Rancher's own self-signed CA (dynamiclistener's names), unrelated to the RKE2 CA of the simulator.
        self.tls = make_tls_material(ca_name="dynamiclistener-ca", server_name="dynamic")
        self.admin_key = ApiKey.new()
        kube_version = dict(KUBE_VERSION)
        local_version = LOCAL_KUBERNETES[release.minor]
        kube_version.update(gitVersion=local_version, minor=local_version.split(".")[1])
        # The local cluster's API is served only through the front's /k8s/clusters/local.
        self.local = ApiServer(self.api, token=secrets.token_urlsafe(32), tls=self.tls, kube_version=kube_version)
        self.front = RancherFront(self.tls, [self.admin_key])
        self.front.add_cluster("local", self.local)
        self.front.add_route("/v3/settings/", self._setting)

    @property
    def url(self) -> str:
        return self.front.url

    @property
    def local_cluster_server(self) -> str:
        return f"{self.url}/k8s/clusters/local"

    async def start(self) -> None:
        await self.front.start()
        self.local.host, self.local.port = self.front.host, self.front.port
        self._seed()
        from .provisioning import ProvisioningController

        self.provisioning = ProvisioningController(self)
        self.simulator.spawn(self.provisioning.run, f"rancher-{self.release.version}-provisioning")
        log.info("simulated Rancher %s serving on %s", self.release.version, self.url)

    async def stop(self) -> None:
        self.api.store.close_all_watches()
        await self.front.stop()

    def _seed(self) -> None:
        crds = self.api.lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        for crd in _load([HARVESTER_CRDS / name for name in SHARED_CRDS] + sorted(CRD_DIR.glob("*.yaml"))):
            self.api.create(crds, crd)
        namespaces = self.api.lookup("", "v1", "namespaces")
        for name in NAMESPACES:
            if self.api.find(namespaces, None, name) is None:
                self.api.create(namespaces, {"metadata": {"name": name}})
        settings = self.api.lookup("management.cattle.io", "v3", "settings")
        for name, value in (("server-version", self.release.version), ("server-url", self.url),
                            ("cacerts", self.tls.ca_cert_pem.decode().strip()),
                            ("agent-image", self.release.agent_image),
                            ("rke2-default-version", self.release.rke2_versions()[-1])):
            self.api.create(settings, {"apiVersion": "management.cattle.io/v3", "kind": "Setting",
                                       "metadata": {"name": name}, "value": value, "default": value,
                                       "source": "", "customized": False})
        clusters = self.api.lookup("management.cattle.io", "v3", "clusters")
        now = rfc3339(dt.datetime.now(dt.timezone.utc))
        self.api.create(clusters, {
            "apiVersion": "management.cattle.io/v3", "kind": "Cluster",
            "metadata": {"name": "local"},
            "spec": {"displayName": "local", "internal": True, "fleetWorkspaceName": "fleet-local"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "lastUpdateTime": now}],
                       "driver": "k3s", "version": {"gitVersion": self.local.kube_version["gitVersion"]}}},
            keep_status=True)

    async def _setting(self, request: Any, name: str) -> Any:
        """Norman's `/v3/settings/<name>` (e.g. server-version), as the dashboard and CLI read it."""
        from aiohttp import web

        from .front import rancher_error

        settings = self.api.lookup("management.cattle.io", "v3", "settings")
        found = self.api.find(settings, None, name.strip("/"))
        if found is None:
            return rancher_error(404, "NotFound", f'settings.management.cattle.io "{name}" not found')
        return web.json_response({"type": "setting", "id": found["metadata"]["name"], "name": found["metadata"]["name"],
                                  "value": found.get("value", ""), "default": found.get("default", ""),
                                  "source": found.get("source", ""), "customized": found.get("customized", False)})

    def kubeconfig(self) -> dict[str, Any]:
        """A Rancher kubeconfig for its local cluster, as Rancher's "Download KubeConfig" writes it."""
        return {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": {
                "server": self.local_cluster_server,
                "certificate-authority-data": base64.b64encode(self.tls.ca_cert_pem).decode()}}],
            "users": [{"name": "local", "user": {"token": self.admin_key.bearer}}],
            "contexts": [{"name": "local", "context": {"user": "local", "cluster": "local"}}],
            "current-context": "local",
        }

    def describe(self, kubeconfig_path: Path | None) -> dict[str, Any]:
        return {"version": self.release.version, "url": self.url, "caPem": self.tls.ca_cert_pem.decode(),
                "apiKey": self.admin_key.bearer, "localClusterServer": self.local_cluster_server,
                "kubeconfig": str(kubeconfig_path) if kubeconfig_path else "",
                "rke2Versions": self.release.rke2_versions()}


async def start_rancher(simulator: "Simulator", version: str) -> SimulatedRancher:
    rancher = SimulatedRancher(simulator, RancherRelease.get(version))
    await rancher.start()
    return rancher
