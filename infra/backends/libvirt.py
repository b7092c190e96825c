"""The `libvirt` backend: real VMs provisioned through libvirt-python, handed to steps as a `Cluster`.

A cluster per run: the network, pool, disks and domains are created from the `libvirt:` configuration
(restored from a golden image of the version when there is one, else installed, after which the disks
are kept as that version's golden image if `golden_image_dir` is set). Everything is registered on the
run's teardown stack before it is created; `release_all` unwinds it and audits for leaks. A failure or an
interrupt while provisioning unwinds at once.
"""
from __future__ import annotations

import logging
from typing import Any

from infra.cleanup import CleanupStack
from infra.config import RunConfig

from .base import Backend, BackendError, Cluster, NodeHandle

log = logging.getLogger("harvester_e2e.backends.libvirt")


class LibvirtNodePower:
    """`Cluster.power` for libvirt domains: node name -> the domain's power operations."""

    def __init__(self, provisioned: Any) -> None:
        self.provisioned = provisioned

    def power(self, node: str, action: str) -> None:
        try:
            control = self.provisioned.control(node)
        except KeyError as exc:
            raise BackendError(str(exc.args[0])) from None
        control.power(action)


class LibvirtBackend(Backend):
    name = "libvirt"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        if config.libvirt is None:
            raise BackendError("backend 'libvirt' needs a 'libvirt:' section (see README: libvirt backend)")
        self.settings = config.libvirt
        self.workdir = (config.artifacts_dir / config.run_id / "libvirt").resolve()
        self.stack = CleanupStack()
        self._conn: Any = None
        self._cluster: Cluster | None = None
        self._provisioned: Any = None

    @property
    def conn(self) -> Any:
        if self._conn is None:
            from infra.provision import LibvirtUnavailable, open_connection

            try:
                self._conn = open_connection(self.settings.uri)
            except LibvirtUnavailable as exc:
                raise BackendError(str(exc)) from None
        return self._conn

    def provisioned(self) -> Any:
        """The provisioned cluster (domains, their controls and the plan), for snapshots and consoles."""
        if self._provisioned is None:
            raise BackendError("no cluster has been provisioned in this run yet")
        return self._provisioned

    def acquire(self, harvester_version: str) -> Cluster:
        if self._cluster is not None:
            if self._cluster.harvester_version != harvester_version:
                raise BackendError(f"this run already provisioned a {self._cluster.harvester_version} cluster; the "
                                   f"libvirt backend keeps one cluster per run (asked for {harvester_version})")
            return self._cluster
        from infra.provision import ClusterProvisioner, GoldenStore, plan_cluster

        golden = GoldenStore(self.conn, self.settings.golden_image_dir) if self.settings.golden_image_dir else None
        image = golden.find(harvester_version, self.settings) if golden and self.settings.install != "none" else None
        plan = plan_cluster(self.settings, self.config.run_id, harvester_version, self.workdir,
                            layout=image.layout if image else None,
                            golden_backing=golden.backing_files(image) if golden and image else None)
        provisioner = ClusterProvisioner(self.conn, plan, self.stack, golden=golden, restore=image)
        try:
            provisioned = provisioner.run()
            if golden is not None and image is None and plan.installs_harvester:
                provisioner.save_golden()
        except BaseException:
            log.error("provisioning %s failed; tearing down what it created", self.config.run_id)
            self._teardown()
            raise
        self._provisioned = provisioned
        kubeconfig = provisioned.kubeconfig
        if kubeconfig is None:          # install: none boots plain guests: there is no Kubernetes API
            kubeconfig = self.workdir / "kubeconfig"
            kubeconfig.write_text("# install: none - plain guests, no Kubernetes API\n")
        self._cluster = Cluster(
            name=f"libvirt-{self.config.run_id}", backend=self.name, kubeconfig=kubeconfig,
            harvester_version=harvester_version, run_id=self.config.run_id,
            nodes=[NodeHandle(n.plan.hostname, n.plan.ssh_host, n.plan.ssh_port) for n in provisioned.nodes],
            power_control=LibvirtNodePower(provisioned))
        log.info("libvirt cluster %s ready: %d nodes (%s%s)", self._cluster.name, len(provisioned.nodes),
                 provisioned.domain_type, f", restored from golden image {image.key}" if image else "")
        return self._cluster

    def _teardown(self) -> list[str]:
        failures = self.stack.run()
        if self._conn is not None:
            from infra.provision import leak_audit

            left = leak_audit(self._conn, self.config.run_id)
            if left:
                failures.append("leak audit: left " + ", ".join(str(o) for o in left))
                log.error("leak audit for run %s: %s", self.config.run_id, ", ".join(str(o) for o in left))
        self._cluster, self._provisioned = None, None
        return failures

    def release_all(self) -> None:
        failures = self._teardown()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if failures:
            raise BackendError("libvirt teardown incomplete: " + "; ".join(failures) +
                               f"; run `harvester-e2e cleanup --run-id {self.config.run_id}`")
