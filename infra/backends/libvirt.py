"""The `libvirt` backend: real VMs provisioned through libvirt-python, handed to steps as a `Cluster`.

A cluster per run: the network, pool, disks and domains are created from the `libvirt:` configuration
(restored from a golden image of the version when there is one, else installed, after which the disks
are kept as that version's golden image if `golden_image_dir` is set). Everything is registered on the
run's teardown stack before it is created; `release_all` unwinds it and audits for leaks. A failure or an
interrupt while provisioning unwinds at once.
"""
from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import SecretStr

from infra.cleanup import CleanupStack
from infra.cluster import AddressRange, Cluster, NodeHandle
from infra.config import RunConfig
from infra.https import Endpoint

from .base import Backend, BackendError
from .existing import default_target, rancher_of, releases_of

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
        self._retired: Cluster | None = None

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

    def acquire(self, harvester_version: str | None = None) -> Cluster:
        harvester_version = harvester_version or self.default_version
        if self._retired is not None:           # an upgraded cluster: a new one (a golden restore, usually)
            log.info("tearing down the retired cluster %s before provisioning again", self._retired.name)
            self._retired.close_sessions()
            failures = self._teardown()
            self._retired = None
            if failures:
                raise BackendError("libvirt teardown of the retired cluster incomplete: " + "; ".join(failures))
        if self._cluster is not None:
            if self._cluster.harvester_version != harvester_version:
                raise self.other_version(harvester_version, self._cluster.harvester_version)
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
        self._record(provisioned, harvester_version, image.key if image else None)
        kubeconfig = provisioned.kubeconfig
        if kubeconfig is None:          # install: none boots plain guests: there is no Kubernetes API
            kubeconfig = self.workdir / "kubeconfig"
            kubeconfig.write_text("# install: none - plain guests, no Kubernetes API\n")
        self._cluster = self._cluster_of(provisioned, harvester_version, kubeconfig)
        log.info("libvirt cluster %s ready: %d nodes (%s%s)", self._cluster.name, len(provisioned.nodes),
                 provisioned.domain_type, f", restored from golden image {image.key}" if image else "")
        return self._cluster

    def _record(self, provisioned: Any, harvester_version: str, golden_key: str | None) -> None:
        """What provisioning did and how long each phase took, in the run's workdir (provisioning.json)."""
        record = {"run_id": self.config.run_id, "harvester_version": harvester_version,
                  "how": f"restored from golden image {golden_key}" if golden_key else
                         ("installed" if self.settings.install != "none" else "booted (install: none)"),
                  "domain_type": provisioned.domain_type, "kvm_probe_s": provisioned.kvm_probe_seconds,
                  "nodes": [n.plan.hostname for n in provisioned.nodes], "timings_s": provisioned.timings}
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "provisioning.json").write_text(json.dumps(record, indent=2) + "\n")

    def _cluster_of(self, provisioned: Any, harvester_version: str, kubeconfig: Any) -> Cluster:
        """The provisioned VMs as a `Cluster`: logins from the install config, host keys the run installed."""
        settings = self.settings
        password = SecretStr(provisioned.password) if provisioned.password else settings.ssh_password
        nodes = [NodeHandle(n.plan.hostname, n.plan.ssh_host, n.plan.ssh_port, ssh_user=settings.ssh_user,
                            ssh_key_file=settings.ssh_key_file, ssh_password=password,
                            ssh_host_key=provisioned.host_keys.get(n.plan.hostname))
                 for n in provisioned.nodes]
        cluster = Cluster(name=f"libvirt-{self.config.run_id}", backend=self.name, kubeconfig=kubeconfig,
                          harvester_version=harvester_version, run_id=self.config.run_id, nodes=nodes,
                          known_hosts=self.workdir / "known_hosts", power_control=LibvirtNodePower(provisioned),
                          ranchers=rancher_of(self.config), releases=releases_of(self.config),
                          target=default_target(self.config))
        vip = provisioned.plan.vip
        if vip is not None and settings.harvester_api_token is not None:
            cluster.harvester_api = Endpoint(f"https://{vip}", token=settings.harvester_api_token,
                                             ca_file=settings.harvester_api_ca_file)
        if settings.lb_address_range:
            cluster.lb_addresses = AddressRange.parse(settings.lb_address_range)
        return cluster

    def retire(self, cluster: Cluster) -> None:
        """An upgraded cluster is not handed to another scenario: it is torn down at the next acquire
        (after this scenario's cleanup ran), and a new one provisioned (from the golden image if kept)."""
        if cluster is self._cluster:
            self._retired, self._cluster = cluster, None

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
        for cluster in (self._cluster, self._retired):
            if cluster is not None:
                cluster.close_sessions()
        failures = self._teardown()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if failures:
            raise BackendError("libvirt teardown incomplete: " + "; ".join(failures) +
                               f"; run `harvester-e2e cleanup --run-id {self.config.run_id}`")
