"""The run's configuration: one YAML file, overridden by environment, overridden by the command line.

Every field is typed (pydantic). A wrong key, type or value becomes `ConfigError` with one line that
names the field and what would be valid; the CLI turns it into exit status 2.
"""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from infra.validation import InputError, load_mapping, one_line

ENV_PREFIX = "HARVESTER_E2E_"
SIMULATED_VERSIONS = ("v1.4.2", "v1.4.3", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.5.2", "master-ce188325-head")


class ConfigError(ValueError):
    """A configuration problem, phrased as one line for a person."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class VmSettings(_Model):
    """The VMs the VM stories run: an image the cluster already has (a lab's admins uploaded it; the simulated
    backend uploads it as they would), its default cloud-init user, and what users may feel of an upgrade."""

    image: str = Field("default/image-ubuntu-jammy", description="<namespace>/<VirtualMachineImage name>")
    user: str = Field("ubuntu", description="the image's default cloud-init user (the harness's key goes to it)")
    namespace: str = Field("default", description="where the stories make their VMs")
    network: str | None = Field("default/vm-network", description="<namespace>/<VM network> the VMs bridge to "
                                "(the simulator's is default/vm-network); null: the pod network (masquerade)")
    outage_budget_s: float = Field(5.0, gt=0, description="the longest a VM may not answer SSH during an upgrade "
                                                          "(live migrations pause a guest for well under a second)")

    @field_validator("image")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        if value.count("/") != 1 or not all(value.split("/")):
            raise ValueError("write it as <namespace>/<image name>, e.g. default/image-ubuntu-jammy")
        return value


class SimulatedSettings(_Model):
    time_scale: float = Field(60.0, gt=0, description="simulated seconds per wall-clock second")
    nodes: int = Field(3, ge=1, le=7, description="nodes in the simulated cluster")
    startup_timeout_s: float = Field(60.0, gt=0, description="budget for the simulator to start serving")
    node_password: SecretStr | None = Field(None, description="turns on password login (and sudo password) "
                                            "for user rancher on the simulated nodes; off by default")
    backup_target: str | None = Field("nfs://127.0.0.1:/exports/harvester-e2e-backups", description="the NFS "
                                      "backup target the simulated cluster is configured with, as a lab's admins "
                                      "configure theirs (nothing is mounted); null: none, so VM backups are refused "
                                      "and the stories taking one skip")

    @field_validator("backup_target")
    @classmethod
    def _nfs(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("nfs://"):
            raise ValueError("write it as nfs://<server>:/<export>, or null for no backup target")
        return value


class NodeSettings(_Model):
    name: str
    host: str
    port: int = Field(22, ge=1, le=65535)
    user: str = "rancher"
    password: SecretStr | None = None
    key_file: Path | None = None
    host_key: str | None = Field(None, description="the node's public host key ('ssh-ed25519 AAAA...') to pin; "
                                 "without it the first key seen is recorded in the run's known_hosts")


class GuestSettings(_Model):
    """An RKE2 guest cluster the lab runs on the Harvester cluster (for the CSI/cloud-provider stories)."""

    name: str
    host_namespace: str = Field("default", description="the host namespace its VMs live in")
    kubeconfig: Path | None = Field(None, description="default: the Secret fleet-default/<name>-kubeconfig of "
                                    "the Rancher that provisioned it")

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "the guest cluster's kubeconfig")


class HarvesterApiSettings(_Model):
    """Harvester's own API at the cluster VIP (support bundles), with an API key a lab hands out."""

    url: str = Field(description="https://<vip>")
    token: SecretStr = Field(description="a Rancher API key (token-xxxxx:secret); never logged")
    ca_file: Path | None = Field(None, description="the CA that signed the VIP's certificate (PEM); "
                                 "default: the system's trust")

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Harvester serves its API over HTTPS at the VIP)")
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "the CA certificate (PEM) that signed the VIP's certificate")


class ExistingSettings(_Model):
    kubeconfig: Path
    context: str | None = Field(None, description="the kubeconfig context of the Harvester cluster "
                                "(default: its current context)")
    nodes: list[NodeSettings] = []
    guest: GuestSettings | None = None
    harvester_api: HarvesterApiSettings | None = None
    lb_address_range: str | None = Field(None, description="addresses the harness may give test IPPools, "
                                         "FIRST-LAST on a network no DHCP server leases from")

    @field_validator("kubeconfig")
    @classmethod
    def _kubeconfig_exists(cls, value: Path) -> Path:
        checked = _existing_file(value, "the cluster's kubeconfig")
        assert checked is not None
        return checked

    @field_validator("lb_address_range")
    @classmethod
    def _a_range(cls, value: str | None) -> str | None:
        if value is not None:
            from infra.cluster import AddressRange

            AddressRange.parse(value)
        return value

    @model_validator(mode="after")
    def _context_exists(self) -> "ExistingSettings":
        from infra.https import kubeconfig_context

        try:
            kubeconfig_context(self.kubeconfig, self.context)
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"existing.context: {exc}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"existing.kubeconfig: {self.kubeconfig} is not valid YAML: {exc}") from None
        return self


def _existing_file(value: Path | None, what: str) -> Path | None:
    if value is None:
        return None
    value = value.expanduser()
    if not value.is_file():
        raise ValueError(f"no such file: {value}; give the path of {what}")
    return value


# A real Harvester node's minimums (installer preflight and docs, docs/harvester-facts.md §5): below them the
# install aborts.
HARVESTER_MIN_VCPUS, HARVESTER_MIN_MEMORY_GIB, HARVESTER_MIN_DISK_GIB = 8, 32, 250


class LibvirtSettings(_Model):
    """Real VMs through libvirt. `install` says what boots: the Harvester installer by direct kernel boot
    (`pxe`: kernel + initrd + rootfs URL), the installer with its rootfs on the attached ISO (`iso`), or a
    plain kernel/initrd guest with no Harvester (`none`: smoke tests of the provisioning itself)."""

    uri: str = "qemu:///system"
    nodes: int = Field(3, ge=1, le=7)
    vcpus: int = Field(8, ge=1)
    memory_gib: float = Field(32, gt=0)
    disk_gib: float = Field(250, gt=0)
    install: Literal["pxe", "iso", "none"] = "pxe"
    iso_url: str | None = None
    kernel_url: str | None = None
    initrd_url: str | None = None
    rootfs_url: str | None = None
    kernel_cmdline: str = Field("", description="extra kernel arguments (install none: the whole command line)")
    boot_mode: Literal["uefi", "bios"] = "uefi"
    domain_type: Literal["auto", "kvm", "qemu"] = Field(
        "auto", description="auto: KVM, falling back to software emulation when a KVM guest shows no sign of life")
    kvm_probe_s: float = Field(30.0, gt=0, description="silence on a KVM guest's console that means KVM fails")
    network_mode: Literal["nat", "bridge", "user"] = Field(
        "nat", description="nat: a libvirt network with DHCP reservations; bridge: an existing host bridge "
                           "with static addresses; user: qemu user-mode networking, SSH forwarded to 127.0.0.1")
    network_cidr: str = "192.168.100.0/24"
    gateway: str | None = Field(None, description="default: the first address of network_cidr")
    bridge_name: str | None = Field(None, description="bridge mode: the host bridge; nat: the bridge to create")
    vip: str | None = Field(None, description="the cluster's VIP; default: the 10th address of network_cidr")
    storage_pool_dir: Path = Path("/var/lib/libvirt/images/harvester-e2e")
    golden_image_dir: Path | None = Field(None, description="where golden disks live; unset: always install")
    config_server_bind: str | None = Field(None, description="address the install-config server listens on "
                                                             "(default: the NAT network's gateway)")
    config_server_port: int = Field(0, ge=0, le=65535)
    config_url_base: str | None = Field(None, description="URL nodes fetch configs from, if not the server's own")
    ssh_user: str = "rancher"
    ssh_password: SecretStr | None = None
    ssh_key_file: Path | None = Field(None, description="private key; its public half goes to the nodes")
    cluster_token: SecretStr | None = Field(None, description="default: a random token per run")
    harvester_api_token: SecretStr | None = Field(None, description="a Rancher API key for Harvester's API at "
                                                  "the VIP (support bundles); without it none is requested")
    harvester_api_ca_file: Path | None = Field(None, description="the CA of the VIP's certificate")
    lb_address_range: str | None = Field(None, description="addresses the harness may give test IPPools, "
                                         "FIRST-LAST outside the network's DHCP range")
    install_skipchecks: bool = Field(
        False, description="pass harvester.install.skipchecks=true: the installer skips its preflight checks "
                           "(CPU, memory, disk, /dev/kvm), and so does this config's check of the VM's size")
    install_timeout_min: float = Field(60.0, gt=0)
    boot_timeout_min: float = Field(10.0, gt=0)
    api_timeout_min: float = Field(20.0, gt=0)

    @field_validator("network_cidr")
    @classmethod
    def _cidr_is_a_subnet(cls, value: str) -> str:
        import ipaddress

        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as exc:
            raise ValueError(f"not an IPv4 subnet ({exc}); write it like 192.168.100.0/24") from None
        if network.prefixlen > 26:
            raise ValueError("too small: give a /26 or larger (gateway, VIP, nodes and a DHCP range must fit)")
        return value

    @field_validator("gateway", "vip", "config_server_bind")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        import ipaddress

        if value is not None:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise ValueError("not an IPv4 address; write it like 192.168.100.10") from None
        return value

    @field_validator("bridge_name")
    @classmethod
    def _bridge_name_fits(cls, value: str | None) -> str | None:
        if value is not None and not (0 < len(value) <= 15):
            raise ValueError("a Linux interface name has 1 to 15 characters")
        return value

    @model_validator(mode="after")
    def _enough_for_what_it_installs(self) -> "LibvirtSettings":
        """Refuse, before anything is created, a config that cannot give a working cluster."""
        if self.install != "none" and not self.install_skipchecks:
            fix = ("or set libvirt.install_skipchecks: true for a machine below Harvester's minimums, or "
                   "libvirt.install: none for a plain guest without Harvester")
            if self.vcpus < HARVESTER_MIN_VCPUS:
                raise ValueError(f"libvirt.vcpus: {self.vcpus} is fewer than the {HARVESTER_MIN_VCPUS} vCPUs a "
                                 f"Harvester node needs; set libvirt.vcpus: {HARVESTER_MIN_VCPUS} or more, {fix}")
            if self.memory_gib < HARVESTER_MIN_MEMORY_GIB:
                raise ValueError(f"libvirt.memory_gib: {self.memory_gib:g} GiB is less than the "
                                 f"{HARVESTER_MIN_MEMORY_GIB} GiB a Harvester node needs; set libvirt.memory_gib: "
                                 f"{HARVESTER_MIN_MEMORY_GIB} or more, {fix}")
            if self.disk_gib < HARVESTER_MIN_DISK_GIB:
                raise ValueError(f"libvirt.disk_gib: {self.disk_gib:g} GiB is less than the "
                                 f"{HARVESTER_MIN_DISK_GIB} GiB Harvester installs on; set libvirt.disk_gib: "
                                 f"{HARVESTER_MIN_DISK_GIB} or more, {fix}")
        if self.install != "none" and self.network_mode == "user" and self.nodes > 1:
            raise ValueError(f"libvirt.network_mode: 'user' isolates every node, so it holds a one-node cluster "
                             f"only; set libvirt.nodes: 1, or use nat or bridge for {self.nodes} nodes")
        needed = {"pxe": ("kernel_url", "initrd_url", "rootfs_url", "iso_url"),
                  "iso": ("iso_url", "kernel_url", "initrd_url"), "none": ("kernel_url", "initrd_url")}
        for name in needed[self.install]:
            if not getattr(self, name):
                raise ValueError(f"libvirt.{name}: required for install '{self.install}' but not given; set it "
                                 f"to an http(s) URL or a path on the libvirt host")
        if self.network_mode == "bridge" and not self.bridge_name:
            raise ValueError("libvirt.bridge_name: bridge mode needs the name of an existing host bridge "
                             "(e.g. br0)")
        if self.network_mode == "bridge" and self.install != "none" and not self.config_server_bind \
                and not self.config_url_base:
            raise ValueError("libvirt.config_server_bind: bridge mode needs this host's address on the lab "
                             "network, so the nodes can fetch their install configs")
        if self.install != "none" and not (self.ssh_password or self.ssh_key_file):
            raise ValueError("libvirt.ssh_password or libvirt.ssh_key_file: the harness logs in to the nodes "
                             "as libvirt.ssh_user; give one of them")
        return self


class TimeoutSettings(_Model):
    """Named budgets, in minutes, for the waits steps make (chainsaw-style per-operation timeouts)."""

    api_wait_min: float = Field(5.0, gt=0, description="an object reaching a state")
    api_unavailable_min: float = Field(5.0, gt=0, description="riding through an unavailable API server")
    node_ready_min: float = Field(15.0, gt=0)
    guest_provision_min: float = Field(30.0, gt=0, description="Rancher provisioning a guest RKE2 cluster")
    support_bundle_min: float = Field(10.0, gt=0, description="a support bundle being generated")
    guest_ssh_min: float = Field(5.0, gt=0, description="a VM's guest answering SSH after the VM runs")
    vm_backup_min: float = Field(30.0, gt=0, description="a VM snapshot or backup ready, or a restore complete")


class GuestTemplateSettings(_Model):
    """What Rancher's Harvester node driver needs to make guest RKE2 clusters' VMs on this cluster (the
    values of the dashboard's machine pool form)."""

    cloud_credential: str = Field(description="Rancher's cloud credential for this Harvester, e.g. "
                                  "cattle-global-data:cc-abc12")
    image: str = Field(description="the VirtualMachineImage the VMs boot, <namespace>/<name>")
    network: str = Field(description="the VM network, <namespace>/<NetworkAttachmentDefinition>")
    vm_namespace: str = "default"
    ssh_user: str = "ubuntu"
    cpus: int = Field(2, ge=1)
    memory_gib: int = Field(4, ge=1)
    disk_gib: int = Field(40, ge=1)
    nodes: int = Field(3, ge=1, description="machines in the guest's one pool (etcd, control plane, worker)")

    @field_validator("image", "network")
    @classmethod
    def _namespaced(cls, value: str) -> str:
        namespace, slash, name = value.partition("/")
        if not slash or not namespace or not name:
            raise ValueError(f"must be <namespace>/<name>, not {value!r}")
        return value


class RancherSettings(_Model):
    """A Rancher that manages the cluster: dashboard edits go through its Steve API, and guest clusters
    are provisioned through its local cluster's API (provisioning.cattle.io)."""

    url: str = Field(description="https://rancher.example")
    token: SecretStr = Field(description="an API token (never logged)")
    cluster_id: str | None = Field(None, description="Rancher's id of this Harvester cluster in Virtualization "
                                   "Management, e.g. c-m-abc123: dashboard edits then go through this Rancher "
                                   "(default: Harvester's own UI at existing.harvester_api)")
    verify: bool = Field(True, description="verify Rancher's certificate (against ca_file, or the system's trust)")
    ca_file: Path | None = Field(None, description="the CA that signed Rancher's certificate (PEM)")
    guest: GuestTemplateSettings | None = Field(None, description="how this Rancher provisions guest clusters "
                                                "here; without it the guest stories use existing.guest")

    @field_validator("ca_file")
    @classmethod
    def _ca_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "the CA certificate (PEM) that signed Rancher's certificate")

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (Rancher serves its API over HTTPS)")
        return value.rstrip("/")


UPGRADE_PHASES = ("LogReady", "ImageReady", "RepoReady", "NodesPrepared", "SystemServicesUpgraded",
                  "NodesUpgraded", "Completed")


class ReleaseSettings(_Model):
    """An upgrade target as a Version names it (on the simulated backend the simulator serves every release)."""

    version: str
    iso_url: str = Field(description="https:// or http:// URL of the release ISO")
    iso_checksum: str = Field("", description="the ISO's SHA-512 (Version spec.isoChecksum)")
    annotations: dict[str, str] = Field(default_factory=dict, description="annotations the Upgrade needs, "
                                        "e.g. harvesterhci.io/skip-version-check: 'true' for a pre-release")
    ca_file: Path | None = Field(None, description="the CA of the release server (default: the system's trust)")

    @field_validator("iso_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s):// URL of the release ISO")
        return value


class UpgradeSettings(_Model):
    """How upgrades are followed. Budgets are real minutes, whatever the backend."""

    target: str | None = Field(None, description="the version an upgrade goes to when a story names none "
                               "(default: the last of releases; simulated: the newest simulated build)")
    releases: list[ReleaseSettings] = Field(default_factory=list, description="upgrade targets and their ISOs")

    phase_budgets_min: dict[str, float] = Field(default_factory=dict,
                                                description="per-phase budget overrides, e.g. {NodesUpgraded: 90}")
    stall_window_min: float | None = Field(None, gt=0, description="no visible change for this long = stalled; "
                                           "default 10 (real clusters) or 30 simulated minutes on the simulator")
    progress: Literal["auto", "on", "off"] = "auto"

    @field_validator("phase_budgets_min")
    @classmethod
    def _known_phases(cls, value: dict[str, float]) -> dict[str, float]:
        for phase, minutes in value.items():
            if phase not in UPGRADE_PHASES:
                raise ValueError(f"unknown phase {phase!r}; phases are {', '.join(UPGRADE_PHASES)}")
            if minutes <= 0:
                raise ValueError(f"the budget of {phase} must be more than 0 minutes")
        return value


DEFAULT_SIMULATED_VERSION = "v1.4.2"


class RunConfig(_Model):
    backend: Literal["simulated", "libvirt", "existing"] = "simulated"
    harvester_version: str | None = Field(None, description="the version the cluster runs; simulated: the one "
                                          f"started for stories that name none (default {DEFAULT_SIMULATED_VERSION});"
                                          " existing: checked against the cluster (default: what it runs)")
    run_id: str = Field(default_factory=lambda: f"e2e-{time.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}")
    artifacts_dir: Path = Path("artifacts")
    keep_on_failure: bool = False
    simulated: SimulatedSettings = SimulatedSettings()
    existing: ExistingSettings | None = None
    libvirt: LibvirtSettings | None = None
    timeouts: TimeoutSettings = TimeoutSettings()
    upgrade: UpgradeSettings = UpgradeSettings()
    vms: VmSettings = VmSettings()
    rancher: list[RancherSettings] = Field(default_factory=list, description="the Rancher Managers of the "
                                           "lab (one per line the guest stories name); one mapping is a list of one")

    @field_validator("rancher", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value

    def secrets(self) -> list[str]:
        """Every secret value the configuration holds (tokens, passwords), for the report to redact."""
        found: list[str] = []

        def walk(value: Any) -> None:
            if isinstance(value, SecretStr):
                found.append(value.get_secret_value())
            elif isinstance(value, BaseModel):
                for name in type(value).model_fields:
                    walk(getattr(value, name))
            elif isinstance(value, (list, tuple)):
                for item in value:
                    walk(item)
            elif isinstance(value, dict):
                for item in value.values():
                    walk(item)

        walk(self)
        return [secret for secret in found if secret]

    def stall_window_seconds(self) -> float:
        """The simulator compresses time, so its default window is 30 simulated minutes in real seconds."""
        if self.upgrade.stall_window_min is not None:
            return self.upgrade.stall_window_min * 60.0
        if self.backend == "simulated":
            return max(15.0, 30 * 60.0 / self.simulated.time_scale)
        return 600.0

    @field_validator("run_id")
    @classmethod
    def _run_id_is_a_label_value(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?", value):
            raise ValueError("must be lower-case letters, digits and '-', at most 42 characters "
                             "(it becomes a label value and part of resource names)")
        return value

    @model_validator(mode="after")
    def _backend_has_its_section(self) -> "RunConfig":
        if self.backend == "simulated" and self.harvester_version is None:
            self.harvester_version = DEFAULT_SIMULATED_VERSION
        if self.backend == "simulated" and self.harvester_version not in SIMULATED_VERSIONS:
            raise ValueError(f"harvester_version {self.harvester_version!r} is not simulated; "
                             f"valid: {', '.join(SIMULATED_VERSIONS)}")
        if self.backend == "existing" and self.existing is None:
            raise ValueError("backend 'existing' needs an 'existing:' section with at least 'kubeconfig: PATH'")
        if self.backend == "libvirt" and self.libvirt is None:
            raise ValueError("backend 'libvirt' needs a 'libvirt:' section (at least what to boot: kernel_url, "
                             "initrd_url, rootfs_url and iso_url for a PXE-style install)")
        if self.backend == "libvirt" and self.harvester_version is None:
            raise ValueError("harvester_version: the libvirt backend installs it, so name it (e.g. v1.5.1)")
        versions = [r.version for r in self.upgrade.releases]
        if self.upgrade.target is not None and self.backend != "simulated" and self.upgrade.target not in versions:
            raise ValueError(f"upgrade.target: {self.upgrade.target!r} is not among upgrade.releases "
                             f"({', '.join(versions) or 'none'}); add its iso_url there")
        return self


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, Any]:
    """`HARVESTER_E2E_BACKEND=existing`, `HARVESTER_E2E_SIMULATED__TIME_SCALE=120` (`__` nests)."""
    environ = dict(os.environ if environ is None else environ)
    data: dict[str, Any] = {}
    for key, value in environ.items():
        if key.startswith(ENV_PREFIX) and key != ENV_PREFIX + "CONFIG":
            _set_path(data, key[len(ENV_PREFIX):].lower().replace("__", "."), yaml.safe_load(value))
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, *, cli: dict[str, Any] | None = None,
                environ: dict[str, str] | None = None) -> RunConfig:
    """File < environment < command line. Raises ConfigError with a one-line explanation."""
    environ = dict(os.environ if environ is None else environ)
    if path is None and environ.get(ENV_PREFIX + "CONFIG"):
        path = Path(environ[ENV_PREFIX + "CONFIG"])
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = load_mapping(path, "run configuration", "`backend:` (simulated, existing or libvirt)")
        except InputError as exc:
            raise ConfigError(f"--config {exc}" if "no such file" in str(exc) else str(exc)) from None
    data = _deep_merge(data, env_overrides(environ))
    for dotted, value in (cli or {}).items():
        if value is not None:
            _set_path(data, dotted, value)
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(one_line(exc, RunConfig)) from None


def describe(config: RunConfig) -> dict[str, Any]:
    """The effective configuration for logs and reports: secrets stay masked."""
    return config.model_dump(mode="json")
