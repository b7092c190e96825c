"""Golden images: an installed cluster's disks, kept per Harvester version, to skip the next install.

After an install the nodes are shut down and each disk is copied (flattened, full) into a storage pool over
`golden_image_dir`, with a manifest holding what the install baked in: the network layout (subnet, VIP,
each node's MAC and address). A later run asking for the same version, node count, boot mode and network
mode creates its node disks as linked clones over those files and reuses that layout, so the restored
nodes come up where their configuration expects them.

The golden pool and its volumes are a cache shared by runs, not objects of one run: teardown, the leak
audit and `cleanup --run-id` never touch them.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from infra.config import LibvirtSettings

from .connection import is_test_driver, libvirt_module
from .objects import Provisioner
from .plan import ClusterPlan, NetworkLayout, NodeAddress
from .spec import GIB, PoolSpec, VolumeSpec
from .xmlgen import pool_xml, volume_xml

log = logging.getLogger("harvester_e2e.provision")
GOLDEN_POOL_PREFIX = "harvester-e2e-golden-"


def golden_key(harvester_version: str, settings: LibvirtSettings) -> str:
    raw = f"{harvester_version}-{settings.nodes}n-{settings.boot_mode}-{settings.network_mode}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", raw)


@dataclass(frozen=True)
class GoldenImage:
    key: str
    harvester_version: str
    layout: NetworkLayout
    disks: dict[str, str]           # node hostname -> volume name in the golden pool
    nvram: dict[str, str]           # node hostname -> NVRAM file name (UEFI only)
    created: str
    host_keys: dict[str, str] = field(default_factory=dict)   # hostname -> public host key installed with it

    def to_json(self) -> str:
        return json.dumps({
            "key": self.key, "harvester_version": self.harvester_version, "created": self.created,
            "layout": {"cidr": str(self.layout.cidr), "gateway": str(self.layout.gateway),
                       "vip": str(self.layout.vip),
                       "nodes": [{"mac": n.mac, "ip": str(n.ip) if n.ip else None} for n in self.layout.nodes]},
            "disks": self.disks, "nvram": self.nvram, "host_keys": self.host_keys}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> GoldenImage:
        data = json.loads(text)
        layout = data["layout"]
        return cls(key=data["key"], harvester_version=data["harvester_version"], created=data["created"],
                   layout=NetworkLayout(IPv4Network(layout["cidr"]), IPv4Address(layout["gateway"]),
                                        IPv4Address(layout["vip"]),
                                        tuple(NodeAddress(n["mac"], IPv4Address(n["ip"]) if n["ip"] else None)
                                              for n in layout["nodes"])),
                   disks=dict(data["disks"]), nvram=dict(data.get("nvram", {})),
                   host_keys=dict(data.get("host_keys", {})))


class GoldenStore:
    def __init__(self, conn: Any, directory: Path) -> None:
        self.conn = conn
        self.directory = directory.expanduser().resolve()
        self.pool_name = GOLDEN_POOL_PREFIX + hashlib.sha256(str(self.directory).encode()).hexdigest()[:8]

    def pool(self) -> Any:
        """The golden pool, defined (persistently, not per run) the first time it is needed."""
        libvirt = libvirt_module()
        try:
            pool = self.conn.storagePoolLookupByName(self.pool_name)
        except libvirt.libvirtError:
            spec = PoolSpec(self.pool_name, run_id="", path=self.directory, remove_directory=False)
            pool = self.conn.storagePoolDefineXML(pool_xml(spec), 0)
            pool.build(0)
        if not pool.isActive():
            pool.create(0)
        pool.refresh(0)
        return pool

    def manifest_path(self, key: str) -> Path:
        return self.directory / f"{key}.json"

    def find(self, harvester_version: str, settings: LibvirtSettings) -> GoldenImage | None:
        """The golden image for this version and shape, if its manifest and every disk are there."""
        path = self.manifest_path(golden_key(harvester_version, settings))
        if not path.is_file():
            return None
        image = GoldenImage.from_json(path.read_text())
        present = {v.name() for v in self.pool().listAllVolumes()}
        missing = [d for d in image.disks.values() if d not in present]
        if missing:
            log.warning("golden image %s is incomplete (missing %s): installing instead", image.key, missing)
            return None
        return image

    def backing_files(self, image: GoldenImage) -> dict[str, Path]:
        pool = self.pool()
        return {host: Path(pool.storageVolLookupByName(volume).path()) for host, volume in image.disks.items()}

    def nvram_templates(self, image: GoldenImage) -> dict[str, Path]:
        return {host: self.directory / name for host, name in image.nvram.items()
                if (self.directory / name).is_file()}

    def save(self, provisioner: Provisioner, plan: ClusterPlan, host_keys: dict[str, str] | None = None) -> GoldenImage:
        """Copy every (shut off) node's disk into the golden pool and write the manifest last, so a
        half-written golden image is never found."""
        assert plan.layout is not None, "golden images are for Harvester clusters on nat or bridge networks"
        key = golden_key(plan.harvester_version, plan.settings)
        pool = self.pool()
        disks, nvram = {}, {}
        for node in plan.nodes:
            domain = provisioner.conn.lookupByName(node.domain)
            if domain.isActive():
                raise RuntimeError(f"{node.domain} is running; shut the cluster down before saving golden disks")
            name = f"{key}-{node.hostname}.qcow2"
            try:
                pool.storageVolLookupByName(name).delete(0)       # replace an older golden disk of this key
            except libvirt_module().libvirtError:
                pass
            source = provisioner.conn.storagePoolLookupByName(plan.pool.name).storageVolLookupByName(node.volume)
            spec = VolumeSpec(name, self.pool_name, int(plan.settings.disk_gib * GIB))
            if is_test_driver(self.conn):
                # The test driver clones only within one pool and holds no data: an empty volume stands in.
                pool.createXML(volume_xml(spec), 0)
            else:
                provisioner.copy_volume(spec, source, owned=False)
            disks[node.hostname] = name
            nvram_path = ET.fromstring(domain.XMLDesc(0)).findtext("os/nvram")
            if nvram_path and Path(nvram_path).is_file():
                shutil.copyfile(nvram_path, self.directory / f"{key}-{node.hostname}.nvram.fd")
                nvram[node.hostname] = f"{key}-{node.hostname}.nvram.fd"
        image = GoldenImage(key=key, harvester_version=plan.harvester_version, layout=plan.layout, disks=disks,
                            nvram=nvram, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                            host_keys=dict(host_keys or {}))
        self.directory.mkdir(parents=True, exist_ok=True)
        self.manifest_path(key).write_text(image.to_json())
        log.info("saved golden image %s (%d disks)", key, len(disks))
        return image
