"""Creating libvirt objects, each with its removal registered on a cleanup stack BEFORE it is created.

The stack is the run's `CleanupStack`: it unwinds in reverse order on success, failure and interrupt, so
domains go before the volumes they use, volumes before their pool, and the pool before the network.
"""
from __future__ import annotations

import logging
from typing import Any

from infra.cleanup import CleanupStack

from . import audit, xmlgen
from .connection import libvirt_module
from .ownership import is_owned_name
from .spec import DomainSpec, NetworkSpec, PoolSpec, VolumeSpec

log = logging.getLogger("harvester_e2e.provision")


class Provisioner:
    def __init__(self, conn: Any, run_id: str, stack: CleanupStack) -> None:
        self.conn = conn
        self.run_id = run_id
        self.stack = stack

    def _check_owned(self, name: str) -> None:
        if not is_owned_name(name, self.run_id):
            raise ValueError(f"{name!r} does not carry the run id {self.run_id!r}; refusing to create it")

    def create_network(self, spec: NetworkSpec) -> Any:
        self._check_owned(spec.name)
        self.stack.defer(f"remove libvirt network {spec.name}", lambda: audit.remove_network(self.conn, spec.name))
        network = self.conn.networkDefineXML(xmlgen.network_xml(spec))
        network.create()
        network.setAutostart(False)
        log.info("created network %s (%s %s)", spec.name, spec.mode, spec.cidr)
        return network

    def create_pool(self, spec: PoolSpec) -> Any:
        self._check_owned(spec.name)
        self.stack.defer(f"remove storage pool {spec.name}",
                         lambda: audit.remove_pool(self.conn, spec.name, remove_directory=spec.remove_directory))
        pool = self.conn.storagePoolDefineXML(xmlgen.pool_xml(spec), 0)
        if spec.remove_directory:
            pool.build(0)
        pool.create(0)
        log.info("created storage pool %s at %s", spec.name, spec.path)
        return pool

    def create_volume(self, spec: VolumeSpec) -> Any:
        self._check_owned(spec.name)
        self.stack.defer(f"delete volume {spec.name}", lambda: audit.remove_volume(self.conn, spec.pool, spec.name))
        pool = self.conn.storagePoolLookupByName(spec.pool)
        volume = pool.createXML(xmlgen.volume_xml(spec), 0)
        log.info("created volume %s%s", spec.name, f" over {spec.backing}" if spec.backing else "")
        return volume

    def copy_volume(self, spec: VolumeSpec, source: Any, *, owned: bool = True) -> Any:
        """A full, flattened copy of `source` (libvirt runs qemu-img convert). `owned=False` keeps it past
        the run (a golden image): no removal is registered for it."""
        if owned:
            self._check_owned(spec.name)
            self.stack.defer(f"delete volume {spec.name}",
                             lambda: audit.remove_volume(self.conn, spec.pool, spec.name))
        pool = self.conn.storagePoolLookupByName(spec.pool)
        return pool.createXMLFrom(xmlgen.volume_xml(spec), source, 0)

    def define_domain(self, spec: DomainSpec) -> Any:
        """Define (not start) a domain; redefining an existing one replaces its XML (same removal)."""
        self._check_owned(spec.name)
        libvirt = libvirt_module()
        try:
            uuid: str | None = self.conn.lookupByName(spec.name).UUIDString()
        except libvirt.libvirtError:
            uuid = None
            self.stack.defer(f"remove domain {spec.name}", lambda: audit.remove_domain(self.conn, spec.name))
        domain = self.conn.defineXML(xmlgen.domain_xml(spec, uuid))
        log.info("defined domain %s (%s, %d vCPU, %d MiB)", spec.name, spec.domain_type, spec.vcpus,
                 spec.memory_mib)
        return domain
