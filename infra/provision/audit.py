"""Finding and removing what a run left in libvirt: the leak audit and `harvester-e2e cleanup --run-id`.

An object belongs to a run when its name starts with `<run id>-` or its `<metadata>` carries the run's
mark (see `ownership`). Removal goes in the reverse order of creation: domains (stopped first, with their
snapshot metadata and NVRAM), then volumes, then pools, then networks. Each remover treats "already
gone" as done, so the same functions serve the per-run teardown stack and a later cleanup.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from .connection import is_missing, libvirt_module
from .ownership import is_owned_name, run_id_of

log = logging.getLogger("harvester_e2e.provision")

Kind = Literal["domain", "volume", "pool", "network"]
REMOVAL_ORDER: tuple[Kind, ...] = ("domain", "volume", "pool", "network")


@dataclass(frozen=True)
class OwnedObject:
    kind: Kind
    name: str
    run_id: str
    pool: str | None = None          # the pool a volume is in

    def __str__(self) -> str:
        where = f" in pool {self.pool}" if self.pool else ""
        return f"{self.kind} {self.name}{where} (run {self.run_id})"


def _owner(name: str, xml_text: str | None, run_id: str | None) -> str | None:
    """The run an object belongs to: its metadata mark, else its name prefix (for a known run id)."""
    marked = run_id_of(xml_text) if xml_text else None
    if marked is not None:
        return marked if run_id is None or marked == run_id else None
    if run_id is not None and is_owned_name(name, run_id):
        return run_id
    return None


def owned_objects(conn: Any, run_id: str | None = None) -> list[OwnedObject]:
    """Everything in libvirt that carries `run_id` (or, with None, any run's mark), in removal order."""
    found: list[OwnedObject] = []
    for domain in conn.listAllDomains():
        owner = _owner(domain.name(), domain.XMLDesc(0), run_id)
        if owner:
            found.append(OwnedObject("domain", domain.name(), owner))
    marked_runs = {o.run_id for o in found}
    networks: list[OwnedObject] = []
    for network in conn.listAllNetworks():
        owner = _owner(network.name(), network.XMLDesc(0), run_id)
        if owner:
            networks.append(OwnedObject("network", network.name(), owner))
    marked_runs |= {o.run_id for o in networks}
    runs = [run_id] if run_id is not None else sorted(marked_runs)
    pools: list[OwnedObject] = []
    for pool in conn.listAllStoragePools():
        pool_owner = next((r for r in runs if is_owned_name(pool.name(), r)), None)
        if pool_owner:
            pools.append(OwnedObject("pool", pool.name(), pool_owner))
        if not pool.isActive():
            continue
        for volume in pool.listAllVolumes():
            volume_owner = next((r for r in runs if is_owned_name(volume.name(), r)), None)
            if volume_owner:
                found.append(OwnedObject("volume", volume.name(), volume_owner, pool=pool.name()))
    found += pools + networks
    return sorted(found, key=lambda o: (REMOVAL_ORDER.index(o.kind), o.run_id, o.name))


def leak_audit(conn: Any, run_id: str) -> list[OwnedObject]:
    """What is left of a run. Empty after a clean teardown."""
    return owned_objects(conn, run_id)


def remove_domain(conn: Any, name: str) -> None:
    libvirt = libvirt_module()
    try:
        domain = conn.lookupByName(name)
        if domain.isActive():
            domain.destroy()
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                 | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        try:
            domain.undefineFlags(flags)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
            for snapshot in domain.listAllSnapshots():     # a driver without those flags (the test driver)
                snapshot.delete()
            domain.undefine()
    except libvirt.libvirtError as exc:
        if not is_missing(exc):
            raise


def remove_volume(conn: Any, pool_name: str, name: str) -> None:
    libvirt = libvirt_module()
    try:
        pool = conn.storagePoolLookupByName(pool_name)
        if not pool.isActive():
            pool.create()
        pool.refresh(0)
        pool.storageVolLookupByName(name).delete(0)
    except libvirt.libvirtError as exc:
        if not is_missing(exc):
            raise


def remove_pool(conn: Any, name: str, remove_directory: bool = True) -> None:
    libvirt = libvirt_module()
    try:
        pool = conn.storagePoolLookupByName(name)
        if pool.isActive():
            pool.destroy()
        if remove_directory:
            pool.delete(0)          # the run's own directory, empty by now
        pool.undefine()
    except libvirt.libvirtError as exc:
        if not is_missing(exc):
            raise


def remove_network(conn: Any, name: str) -> None:
    libvirt = libvirt_module()
    try:
        network = conn.networkLookupByName(name)
        if network.isActive():
            network.destroy()
        network.undefine()
    except libvirt.libvirtError as exc:
        if not is_missing(exc):
            raise


def remove(conn: Any, owned: OwnedObject) -> None:
    if owned.kind == "domain":
        remove_domain(conn, owned.name)
    elif owned.kind == "volume":
        assert owned.pool is not None
        remove_volume(conn, owned.pool, owned.name)
    elif owned.kind == "pool":
        remove_pool(conn, owned.name, remove_directory=_pool_directory_is_owned(conn, owned))
    else:
        remove_network(conn, owned.name)


def _pool_directory_is_owned(conn: Any, owned: OwnedObject) -> bool:
    """A run's pool over its own directory is deleted with it; a pool over the golden images is not."""
    import xml.etree.ElementTree as ET

    try:
        path = ET.fromstring(conn.storagePoolLookupByName(owned.name).XMLDesc(0)).findtext("target/path") or ""
    except Exception:
        return False
    return path.rstrip("/").endswith("/" + owned.run_id)


@dataclass
class RemovalReport:
    removed: list[OwnedObject]
    failed: list[tuple[OwnedObject, str]]
    left: list[OwnedObject]


def remove_run(conn: Any, run_id: str) -> RemovalReport:
    """Remove every object of `run_id`, domains first; then audit again and say what is left."""
    removed: list[OwnedObject] = []
    failed: list[tuple[OwnedObject, str]] = []
    for owned in owned_objects(conn, run_id):
        try:
            remove(conn, owned)
            removed.append(owned)
            log.info("removed %s", owned)
        except Exception as exc:
            failed.append((owned, str(exc)))
            log.error("could not remove %s: %s", owned, exc)
    return RemovalReport(removed, failed, leak_audit(conn, run_id))
