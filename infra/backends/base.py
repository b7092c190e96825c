"""What a backend is: something that hands steps a `Cluster` (infra/cluster.py) at a Harvester version."""
from __future__ import annotations

import abc

from infra.cluster import Capability, CapabilityMissing, Cluster
from infra.config import RunConfig


class BackendError(RuntimeError):
    """The backend could not provide a cluster (an infrastructure problem, not a product defect)."""


class Backend(abc.ABC):
    name: str

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    @property
    def default_version(self) -> str:
        """The version of the cluster a story gets when it names none."""
        assert self.config.harvester_version is not None
        return self.config.harvester_version

    @abc.abstractmethod
    def acquire(self, harvester_version: str | None = None) -> Cluster:
        """A cluster at that version (default: the run's), started, provisioned or checked, depending on
        the backend; `CapabilityMissing` when this backend cannot offer that version."""

    def preflight(self) -> None:
        """Check, before any scenario runs, that the backend can work at all (raises BackendError)."""

    def retire(self, cluster: Cluster) -> None:
        """This cluster was changed for good (e.g. upgraded): do not hand it to another scenario.
        Backends that cannot make a new one (an existing lab) keep it; the next scenario sees it as is."""

    def keep(self, cluster: Cluster) -> None:
        """--keep-on-failure: keep this failed scenario's cluster for a person to look at. A lab or libvirt
        cluster outlives the run anyway; the simulated backend keeps the simulator's process running."""

    def kept_summary(self) -> list[str]:
        """How to reach what `keep` kept, and how to stop it (printed at the end of the run)."""
        return []

    @abc.abstractmethod
    def release_all(self) -> None:
        """Tear down what this backend created in this run, and nothing else."""

    def other_version(self, wanted: str, have: str) -> CapabilityMissing:
        return CapabilityMissing(f"needs a cluster at {wanted}; this {self.name} cluster runs {have}",
                                 Capability.OTHER_VERSIONS)


def backend_for(config: RunConfig) -> Backend:
    if config.backend == "simulated":
        from .simulated import SimulatedBackend
        return SimulatedBackend(config)
    if config.backend == "existing":
        from .existing import ExistingBackend
        return ExistingBackend(config)
    if config.backend == "libvirt":
        from .libvirt import LibvirtBackend
        return LibvirtBackend(config)
    raise BackendError(f"unknown backend {config.backend!r}; use simulated, libvirt or existing")
