"""A cluster someone already has: a kubeconfig context, an SSH inventory, and what else the lab offers
(Harvester's API at the VIP, a Rancher, a guest cluster, addresses for test IPPools, upgrade targets).
The harness creates nothing here but what its scenarios create (and clean up), and never deletes the rest."""
from __future__ import annotations

from infra.cluster import AddressRange, Cluster, GuestAccess, GuestTemplate, NodeHandle, RancherAccess, Release
from infra.config import GuestTemplateSettings, RunConfig
from infra.https import Endpoint

from .base import Backend, BackendError


def releases_of(config: RunConfig) -> dict[str, Release]:
    return {r.version: Release(r.version, r.iso_url, r.iso_checksum, dict(r.annotations), r.ca_file)
            for r in config.upgrade.releases}


def default_target(config: RunConfig) -> str | None:
    return config.upgrade.target or (config.upgrade.releases[-1].version if config.upgrade.releases else None)


def rancher_of(config: RunConfig) -> list[RancherAccess]:
    return [RancherAccess(r.url, r.token, r.ca_file, r.verify, r.cluster_id, guest_template=guest_template(r.guest))
            for r in config.rancher]


def guest_template(settings: GuestTemplateSettings | None) -> GuestTemplate | None:
    if settings is None:
        return None
    return GuestTemplate(cloud_credential=settings.cloud_credential, vm_namespace=settings.vm_namespace,
                         image=settings.image, network=settings.network, ssh_user=settings.ssh_user,
                         cpus=settings.cpus, memory_gib=settings.memory_gib, disk_gib=settings.disk_gib,
                         nodes=settings.nodes)


class ExistingBackend(Backend):
    name = "existing"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        if config.existing is None:
            raise BackendError("backend 'existing' needs an 'existing:' section with 'kubeconfig: PATH'")
        self._cluster: Cluster | None = None
        self._actual_version: str | None = None

    def _build(self) -> Cluster:
        settings = self.config.existing
        assert settings is not None
        cluster = Cluster(
            name=settings.context or "existing", backend=self.name, kubeconfig=settings.kubeconfig,
            context=settings.context, harvester_version=self._actual_version or self.config.harvester_version or "",
            run_id=self.config.run_id,
            nodes=[NodeHandle(n.name, n.host, n.port, ssh_user=n.user, ssh_key_file=n.key_file,
                              ssh_password=n.password, ssh_host_key=n.host_key) for n in settings.nodes],
            known_hosts=(self.config.artifacts_dir / self.config.run_id / "known_hosts").resolve(),
            ranchers=rancher_of(self.config), releases=releases_of(self.config), target=default_target(self.config))
        if settings.guest is not None:
            cluster.guests.append(GuestAccess(settings.guest.name, settings.guest.host_namespace,
                                              settings.guest.kubeconfig))
        if settings.harvester_api is not None:
            api = settings.harvester_api
            cluster.harvester_api = Endpoint(api.url, token=api.token, ca_file=api.ca_file)
        if settings.lb_address_range:
            cluster.lb_addresses = AddressRange.parse(settings.lb_address_range)
        return cluster

    def preflight(self) -> None:
        """The cluster answers, runs the configured version, and the inventory names its nodes."""
        from infra.kube import ApiFailure

        probe = self._build()
        try:
            kube = probe.kube()
            setting = kube.get("harvesterhci.io/v1beta1", "Setting", "server-version")   # what Harvester runs
            actual = str(setting.get("value") or setting.get("default") or "")
            node_names = sorted(n["metadata"]["name"] for n in kube.list("v1", "Node"))
        except (ApiFailure, OSError, ValueError) as exc:
            raise BackendError(f"existing cluster ({probe.kubeconfig}, context {probe.context or 'current'}) "
                               f"does not answer: {exc}") from None
        wanted = self.config.harvester_version
        if wanted and wanted != actual:
            raise BackendError(f"harvester_version: the configuration says {wanted}, but the cluster runs {actual} "
                               f"(its server-version setting); set harvester_version: {actual} or point "
                               "existing.kubeconfig/context at the intended cluster")
        unknown = [n.name for n in probe.nodes if n.name not in node_names]
        if unknown:
            raise BackendError(f"existing.nodes: {', '.join(unknown)} not among the cluster's Nodes "
                               f"({', '.join(node_names)}); name inventory entries as the Nodes are named")
        self._actual_version = actual

    def retire(self, cluster: Cluster) -> None:
        """An upgrade changes the lab for good: the next scenario reads its version afresh."""
        cluster.close_sessions()
        self._cluster, self._actual_version = None, None

    def acquire(self, harvester_version: str | None = None) -> Cluster:
        if self._cluster is None:
            if self._actual_version is None:
                self.preflight()
            self._cluster = self._build()
        if harvester_version is not None and harvester_version != self._cluster.harvester_version:
            raise self.other_version(harvester_version, self._cluster.harvester_version)
        return self._cluster

    @property
    def default_version(self) -> str:
        return self.acquire().harvester_version

    def release_all(self) -> None:
        if self._cluster is not None:
            self._cluster.close_sessions()
        self._cluster = None   # never delete anything of a cluster the harness did not create
