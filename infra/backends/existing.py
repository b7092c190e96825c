"""A cluster someone already has: a kubeconfig and an SSH inventory. The harness creates nothing here."""
from __future__ import annotations

from infra.config import RunConfig

from .base import Backend, BackendError, Cluster, NodeHandle


class ExistingBackend(Backend):
    name = "existing"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        if config.existing is None:
            raise BackendError("backend 'existing' needs an 'existing:' section with 'kubeconfig: PATH'")
        self._cluster: Cluster | None = None

    def acquire(self, harvester_version: str) -> Cluster:
        assert self.config.existing is not None
        if self._cluster is None:
            self._cluster = Cluster(
                name="existing", backend=self.name, kubeconfig=self.config.existing.kubeconfig,
                harvester_version=self.config.harvester_version, run_id=self.config.run_id,
                nodes=[NodeHandle(n.name, n.host, n.port, ssh_user=n.user, ssh_key_file=n.key_file,
                                  ssh_password=n.password, ssh_host_key=n.host_key)
                       for n in self.config.existing.nodes],
                known_hosts=(self.config.artifacts_dir / self.config.run_id / "known_hosts").resolve(),
                harvester_url=self.config.existing.harvester_url)
        return self._cluster

    def release_all(self) -> None:
        if self._cluster is not None:
            self._cluster.close_sessions()
        self._cluster = None   # never delete anything of a cluster the harness did not create
