"""The Harvester install config: harvester-installer's schema (pkg/config/config.go), read as its loader reads
it, merged as its console merges the kernel command line with `config_url`, and validated in its words
(pkg/console/validator.go, `commonCheck` then `Validate`).

Key spellings: the loader's FuzzyNames mapper accepts a field's JSON name (`managementInterface`,
`powerOff`), its lower case (`poweroff`), its YAML name (`management_interface`, `power_off`) and that in
lower case, so `hwAddr`, `hw_addr` and `hwaddr` are one key. Scalars given as strings (the command line's
values) are converted as its ToBool/ToInt mappers do; a string where a list is expected is a one-item list.
Keys the schema does not know are ignored, as Go's converter ignores them (they are reported, not refused).

Merge (console.go): the command line's config is the base and `config_url`'s document fills in what it left
empty (mergo.Merge with WithAppendSlice: a field set on the command line wins, lists are appended).
"""
from __future__ import annotations

import base64
import copy
import gzip
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

SCHEME_VERSION = 1
SINGLE_DISK_MIN_SIZE_GIB = 250           # pkg/config: SingleDiskMinSizeGiB
MULTIPLE_DISK_MIN_SIZE_GIB = 180         # MultipleDiskMinSizeGiB (install disk when a data disk is separate)
HARD_MIN_DATA_DISK_SIZE_GIB = 50         # HardMinDataDiskSizeGiB
MBR_MAX_BYTES = 2 * 1024 ** 4            # an MBR partition table addresses 2 TiB

MODE_CREATE, MODE_JOIN, MODE_UPGRADE, MODE_INSTALL = "create", "join", "upgrade", "install"
METHOD_DHCP, METHOD_STATIC, METHOD_NONE = "dhcp", "static", "none"
ROLE_WITNESS = "witness"

ERR_MODE_CREATE_CONTAINS_SERVER_URL = f"ServerURL need to be empty in {MODE_CREATE} mode"
ERR_MODE_JOIN_SERVER_URL_NOT_SPECIFIED = f"ServerURL can't empty in {MODE_JOIN} mode"
ERR_MODE_UNKNOWN = "unknown mode"
ERR_TOKEN_NOT_SPECIFIED = "token not specified"
ERR_ISO_URL_NOT_SPECIFIED = "iso_url is required in automatic installation"
ERR_MGMT_INTERFACE_INVALID_METHOD = "management network must configure with either static or DHCP method"
ERR_MGMT_INTERFACE_STATIC_NO_DNS = "DNS servers are required for static IP address"
ERR_INTERFACE_NOT_SPECIFIED = "no interface specified"
ERR_INTERFACE_NOT_SPECIFIED_FOR_MGMT = "no interface specified for management network"
ERR_INTERFACE_NOT_FOUND = "interface not found"
ERR_INTERFACE_IS_LOOP = "interface is a loopback interface"
ERR_DEVICE_NOT_SPECIFIED = "no device specified"
ERR_DEVICE_NOT_FOUND = "device not found"
ERR_DEVICE_TOO_SMALL = f"device size too small. At least {SINGLE_DISK_MIN_SIZE_GIB}G is required"
ERR_NO_CREDENTIALS = "no SSH authorized keys or passwords are set"
ERR_FORCE_MBR_ON_LARGE_DISK = "disk size too large for MBR partitioning table"
ERR_FORCE_MBR_ON_UEFI = "cannot force MBR on UEFI system"
ERR_NETWORK_METHOD_UNKNOWN = "unknown network method"
ERR_VIP_MODE_UNKNOWN = "unknown vip mode"
ERR_SYSTEM_SETTINGS_UNKNOWN = "unknown system settings: %s"
ERR_VLAN_RANGE = "VLAN ID should be a number in the range 0-4094"
ERR_MANAGEMENT_INTERFACE_NOT_FOUND = (
    "networks is deprecated, please use management_interface for new config and refer "
    "https://docs.harvesterhci.io/v1.1/install/harvester-configuration/#installmanagement_interface")
ERR_UNSUPPORTED_SCHEME_VERSION = (
    "Unsupported Harvester Scheme Version %d, please use new config and refer "
    "https://docs.harvesterhci.io/v1.1/install/harvester-configuration/")
ERR_INVALID_HOSTNAME = ("invalid hostname. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                        "characters, '-' or '.'")
VALID_TOKEN_CHARS = r"""[a-zA-Z0-9 !"#$%&'()*+,\-./:;<=>?@^_`{|}~\[\]\\]"""
SYSTEM_SETTINGS_ALLOW_LIST = (
    "additional-ca", "api-ui-version", "cluster-registration-url", "server-version", "ui-index", "ui-path",
    "ui-source", "ui-plugin-index", "volume-snapshot-class", "backup-target", "upgradable-versions",
    "upgrade-checker-enabled", "upgrade-checker-url", "release-download-url", "log-level", "ssl-certificates",
    "ssl-parameters", "support-bundle-image", "support-bundle-namespaces", "support-bundle-timeout",
    "support-bundle-expiration", "support-bundle-node-collection-timeout", "default-storage-class", "http-proxy",
    "vm-force-reset-policy", "overcommit-config", "vip-pools", "auto-disk-provision-paths", "csi-driver-config",
    "containerd-registry", "storage-network", "default-vm-termination-grace-period-seconds",
    "auto-rotate-rke2-certs", "kubeconfig-default-token-ttl-minutes", "harvester-csi-ccm-versions", "ntp-servers",
    "additional-guest-memory-overhead-ratio", "csi-online-expand-validation", "ui-plugin-bundled-version",
    "upgrade-config", "longhorn-v2-data-engine-enabled", "max-hotplug-ratio", "vm-migration-network",
    "rancher-cluster", "kubevirt-migration", "cluster-pod-security-standard")


class ConfigError(ValueError):
    """The config is not one harvester-installer would install with; the message is the installer's."""


# --------------------------------------------------------------------------------------------
# Schema and key normalisation
# --------------------------------------------------------------------------------------------

STR, BOOL, INT, STRLIST, STRMAP, ANY = "str", "bool", "int", "list[str]", "map[str]", "any"
Schema = Mapping[str, Any]      # camelCase JSON name -> kind, nested Schema, or ("list", Schema)

INTERFACE_SCHEMA: Schema = {"name": STR, "hwAddr": STR}
NETWORK_SCHEMA: Schema = {"interfaces": ("list", INTERFACE_SCHEMA), "method": STR, "ip": STR, "subnetMask": STR,
                          "gateway": STR, "bondOptions": STRMAP, "mtu": INT, "vlanId": INT}
FILE_SCHEMA: Schema = {"encoding": STR, "content": STR, "owner": STR, "path": STR, "permissions": STR}
OS_SCHEMA: Schema = {
    "afterInstallChrootCommands": STRLIST, "sshAuthorizedKeys": STRLIST, "writeFiles": ("list", FILE_SCHEMA),
    "hostname": STR, "modules": STRLIST, "sysctls": STRMAP, "ntpServers": STRLIST, "dnsNameservers": STRLIST,
    "password": STR, "environment": STRMAP, "labels": STRMAP, "sshd": {"sftp": BOOL, "disablePasswordAuth": BOOL},
    "persistentStatePaths": STRLIST, "externalStorageConfig": ANY, "additionalKernelArguments": STR}
INSTALL_SCHEMA: Schema = {
    "automatic": BOOL, "skipchecks": BOOL, "mode": STR, "managementInterface": NETWORK_SCHEMA, "vip": STR,
    "vipHwAddr": STR, "vipMode": STR, "clusterDns": STR, "clusterPodCidr": STR, "clusterServiceCidr": STR,
    "forceEfi": BOOL, "device": STR, "configUrl": STR, "silent": BOOL, "isoUrl": STR, "powerOff": BOOL,
    "noFormat": BOOL, "debug": BOOL, "tty": STR, "forceGpt": BOOL, "role": STR, "withNetImages": BOOL,
    "wipeAllDisks": BOOL, "wipeDisksList": STRLIST, "forceMbr": BOOL, "dataDisk": STR, "webhooks": ANY,
    "addons": ANY, "harvester": ANY, "rawDiskImagePath": STR, "persistentPartitionSize": STR}
CONFIG_SCHEMA: Schema = {
    "schemeVersion": INT, "serverUrl": STR, "token": STR, "sans": STRLIST, "os": OS_SCHEMA, "install": INSTALL_SCHEMA,
    "runtimeVersion": STR, "rancherVersion": STR, "harvesterChartVersion": STR, "monitoringChartVersion": STR,
    "systemSettings": STRMAP, "loggingChartVersion": STR, "kubeovnChartVersion": STR}


def yaml_key(name: str) -> str:
    """rancher/mapper convert.ToYAMLKey: `managementInterface` -> `management_interface`, `hwAddr` -> `hw_addr`."""
    out = []
    for index, char in enumerate(name):
        if char.isupper() and index > 0 and not name[index - 1].isupper():
            out.append("_")
        out.append(char.lower())
    return "".join(out)


def _aliases(name: str) -> set[str]:
    return {name, name.lower(), yaml_key(name), yaml_key(name).lower()}


def _convert(kind: Any, value: Any, where: str, unknown: list[str]) -> Any:
    if value is None:
        return None
    if isinstance(kind, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return normalize(value, kind, where, unknown)
    if isinstance(kind, tuple):                        # ("list", schema)
        items = [value] if isinstance(value, (str, Mapping)) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(kind[1], item, f"{where}[{index}]", unknown) for index, item in enumerate(items)]
    if kind == STR:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__}")
        return value
    if kind == BOOL:
        if isinstance(value, str):
            return value == "true"              # NewToBool: a string is true only when it says "true"
        return bool(value)
    if kind == INT:
        if isinstance(value, bool):
            return int(value)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: {value!r} is not a number") from None
    if kind == STRLIST:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list):
            raise ConfigError(f"{where}: expected a list of strings, got {type(value).__name__}")
        return ["" if item is None else str(item) for item in items]
    if kind == STRMAP:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    return copy.deepcopy(value)                # ANY


def normalize(data: Mapping[str, Any], schema: Schema = CONFIG_SCHEMA, where: str = "",
              unknown: list[str] | None = None) -> dict[str, Any]:
    """`data` with every key the schema knows under its JSON (camelCase) name and values of the schema's kinds."""
    unknown = unknown if unknown is not None else []
    by_alias = {alias: name for name in schema for alias in _aliases(name)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = by_alias.get(str(key))
        path = f"{where}.{key}" if where else str(key)
        if name is None:
            unknown.append(path)
            continue
        converted = _convert(schema[name], value, path, unknown)
        if converted is not None:
            out[name] = converted
    return out


def merge(base: dict[str, Any], other: Mapping[str, Any]) -> dict[str, Any]:
    """mergo.Merge(base, other, WithAppendSlice): `other` fills what `base` leaves empty; lists are appended."""
    result = copy.deepcopy(base)
    for key, value in other.items():
        mine = result.get(key)
        if isinstance(mine, dict) and isinstance(value, Mapping):
            result[key] = merge(mine, value)
        elif isinstance(mine, list) and isinstance(value, list):
            result[key] = mine + copy.deepcopy(value)
        elif mine in (None, "", 0, False, {}, []):
            result[key] = copy.deepcopy(value)
    return result


# --------------------------------------------------------------------------------------------
# The typed config
# --------------------------------------------------------------------------------------------

@dataclass
class NetworkInterface:
    name: str = ""
    hw_addr: str = ""


@dataclass
class Network:
    interfaces: list[NetworkInterface] = field(default_factory=list)
    method: str = ""
    ip: str = ""
    subnet_mask: str = ""
    gateway: str = ""
    bond_options: dict[str, str] = field(default_factory=dict)
    mtu: int = 0
    vlan_id: int = 0


@dataclass
class WriteFile:
    path: str
    content: str = ""
    encoding: str = ""
    owner: str = ""
    permissions: str = ""

    def data(self) -> bytes:
        """The file's bytes, decoded as yip decodes `encoding` (b64/base64, gz/gzip, gz+b64, ...)."""
        encoding = self.encoding.strip().lower()
        if encoding in ("", "text", "plain"):
            return self.content.encode()
        if encoding in ("b64", "base64"):
            return base64.b64decode(self.content)
        if encoding in ("gz", "gzip"):
            return gzip.decompress(self.content.encode("latin-1"))
        if encoding in ("gz+base64", "gzip+base64", "gz+b64", "gzip+b64"):
            return gzip.decompress(base64.b64decode(self.content))
        raise ConfigError(f"write_files {self.path}: unknown encoding {self.encoding!r}")

    def mode(self) -> int:
        text = self.permissions.strip()
        if not text:
            return 0o644
        try:
            return int(text, 8)
        except ValueError:
            raise ConfigError(f"write_files {self.path}: permissions {self.permissions!r} is not octal") from None


@dataclass
class HarvesterConfig:
    """The parts the appliance acts on, typed; `document` is the whole normalised config (camelCase keys)."""

    document: dict[str, Any]
    unknown_keys: list[str] = field(default_factory=list)

    def _get(self, *path: str, default: Any = None) -> Any:
        node: Any = self.document
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return default
            node = node[key]
        return node

    scheme_version = property(lambda self: int(self._get("schemeVersion", default=0)))
    server_url = property(lambda self: str(self._get("serverUrl", default="")))
    token = property(lambda self: str(self._get("token", default="")))
    hostname = property(lambda self: str(self._get("os", "hostname", default="")))
    password = property(lambda self: str(self._get("os", "password", default="")))
    ssh_authorized_keys = property(lambda self: list(self._get("os", "sshAuthorizedKeys", default=[])))
    dns_nameservers = property(lambda self: list(self._get("os", "dnsNameservers", default=[])))
    ntp_servers = property(lambda self: list(self._get("os", "ntpServers", default=[])))
    labels = property(lambda self: dict(self._get("os", "labels", default={})))
    persistent_state_paths = property(lambda self: list(self._get("os", "persistentStatePaths", default=[])))
    mode = property(lambda self: str(self._get("install", "mode", default="")))
    role = property(lambda self: str(self._get("install", "role", default="")))
    device = property(lambda self: str(self._get("install", "device", default="")))
    data_disk = property(lambda self: str(self._get("install", "dataDisk", default="")))
    iso_url = property(lambda self: str(self._get("install", "isoUrl", default="")))
    config_url = property(lambda self: str(self._get("install", "configUrl", default="")))
    automatic = property(lambda self: bool(self._get("install", "automatic", default=False)))
    skipchecks = property(lambda self: bool(self._get("install", "skipchecks", default=False)))
    poweroff = property(lambda self: bool(self._get("install", "powerOff", default=False)))
    force_mbr = property(lambda self: bool(self._get("install", "forceMbr", default=False)))
    tty = property(lambda self: str(self._get("install", "tty", default="")))
    vip = property(lambda self: str(self._get("install", "vip", default="")))
    vip_mode = property(lambda self: str(self._get("install", "vipMode", default="")))
    vip_hw_addr = property(lambda self: str(self._get("install", "vipHwAddr", default="")))
    system_settings = property(lambda self: dict(self._get("systemSettings", default={})))
    additional_kernel_arguments = property(lambda self: str(self._get("os", "additionalKernelArguments",
                                                                      default="") or ""))

    @property
    def management_interface(self) -> Network:
        raw = self._get("install", "managementInterface", default={}) or {}
        return Network(
            interfaces=[NetworkInterface(str(i.get("name", "")), str(i.get("hwAddr", ""))) for i in raw.get("interfaces", [])],
            method=str(raw.get("method", "")), ip=str(raw.get("ip", "")), subnet_mask=str(raw.get("subnetMask", "")),
            gateway=str(raw.get("gateway", "")), bond_options=dict(raw.get("bondOptions", {})),
            mtu=int(raw.get("mtu", 0)), vlan_id=int(raw.get("vlanId", 0)))

    @property
    def write_files(self) -> list[WriteFile]:
        return [WriteFile(path=str(f.get("path", "")), content=str(f.get("content", "")),
                          encoding=str(f.get("encoding", "")), owner=str(f.get("owner", "")),
                          permissions=str(f.get("permissions", "")))
                for f in self._get("os", "writeFiles", default=[])]

    def sanitized(self) -> dict[str, Any]:
        """The document with the password and token masked (harvester-installer's `***`), for logs."""
        document = copy.deepcopy(self.document)
        if document.get("token"):
            document["token"] = "***"
        if isinstance(document.get("os"), dict) and document["os"].get("password"):
            document["os"]["password"] = "***"
        for entry in (document.get("os") or {}).get("writeFiles", []) or []:
            if entry.get("content"):
                entry["content"] = f"<{len(entry['content'])} characters>"
        return document


def load_config(data: Mapping[str, Any] | None) -> HarvesterConfig:
    unknown: list[str] = []
    return HarvesterConfig(normalize(data or {}, CONFIG_SCHEMA, "", unknown), unknown)


def parse_document(text: str) -> dict[str, Any]:
    """A config document's YAML (a `#cloud-config` line is dropped, as `cleanupFile` does)."""
    import yaml

    lines = [line for line in text.split("\n") if line not in ("#cloud-config", "#!cloud-config")]
    try:
        loaded = yaml.safe_load("\n".join(lines))
    except yaml.YAMLError as exc:
        raise ConfigError(f"failed to unmarshal yaml: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"failed to unmarshal yaml: the document is a {type(loaded).__name__}, not a mapping")
    return loaded


def combine(cmdline: Mapping[str, Any], remote: Mapping[str, Any] | None) -> HarvesterConfig:
    """The command line's config, completed by the remote document (both raw, any key spelling)."""
    base = load_config(cmdline)
    if remote is None:
        return base
    other = load_config(remote)
    return HarvesterConfig(merge(base.document, other.document), base.unknown_keys + other.unknown_keys)


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Interface:
    name: str
    mac: str
    loopback: bool = False


@dataclass
class SystemProbe:
    """What validation looks at on the machine; the installer fills it from /sys, tests by hand."""

    interfaces: list[Interface] = field(default_factory=list)
    disks: dict[str, int] = field(default_factory=dict)      # installable disk path -> size in bytes
    paths: dict[str, str] = field(default_factory=dict)      # device path (symlinks too) -> the disk it names
    bios: bool = True

    def resolve(self, device: str) -> str | None:
        """The installable disk `device` names (itself or a symlink's target), or None."""
        target = self.paths.get(device, device)
        return target if target in self.disks else None


_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def is_dns1123_subdomain(value: str) -> bool:
    return 0 < len(value) <= 253 and bool(_DNS1123_SUBDOMAIN.match(value))


def _check_ip(address: str) -> None:
    try:
        ipaddress.IPv4Address(address)
    except ValueError:
        raise ConfigError(f"{address} is not a valid IP address") from None


def _check_hw_addr(hw_addr: str) -> None:
    if not re.fullmatch(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}", hw_addr):
        raise ConfigError(f"{hw_addr} is an invalid hardware address, error: address {hw_addr}: invalid MAC address")


def _normal_mac(mac: str) -> str:
    return mac.strip().lower().replace("-", ":")


def resolve_interface(interface: NetworkInterface, probe: SystemProbe) -> str:
    """The interface's name (`FindNetworkInterfaceName`: a name wins, else the interface with that MAC)."""
    if interface.name:
        return interface.name
    if interface.hw_addr:
        _check_hw_addr(interface.hw_addr)
        for candidate in probe.interfaces:
            if _normal_mac(candidate.mac) == _normal_mac(interface.hw_addr):
                return candidate.name
        raise ConfigError(f"no interface matching hardware address {interface.hw_addr} found")
    return ""


def _check_interface(interface: NetworkInterface, probe: SystemProbe) -> None:
    name = resolve_interface(interface, probe)
    if not name:
        raise ConfigError(ERR_INTERFACE_NOT_SPECIFIED)
    for candidate in probe.interfaces:
        if candidate.name == name:
            if candidate.loopback:
                raise ConfigError(f"{ERR_INTERFACE_IS_LOOP}: {name}")
            return
    raise ConfigError(f"{ERR_INTERFACE_NOT_FOUND}: {name}")


def _check_networks(network: Network, dns_servers: list[str], probe: SystemProbe) -> None:
    if not network.interfaces:
        raise ConfigError(ERR_INTERFACE_NOT_SPECIFIED_FOR_MGMT)
    if network.method not in (METHOD_DHCP, METHOD_STATIC):
        raise ConfigError(ERR_MGMT_INTERFACE_INVALID_METHOD)
    if network.method == METHOD_STATIC and not dns_servers:
        raise ConfigError(ERR_MGMT_INTERFACE_STATIC_NO_DNS)
    for interface in network.interfaces:
        _check_interface(interface, probe)
    if not 0 <= network.vlan_id <= 4094:
        raise ConfigError(ERR_VLAN_RANGE)
    if network.method == METHOD_STATIC:
        for label, value in (("ip", network.ip), ("subnetMask", network.subnet_mask), ("gateway", network.gateway)):
            if not value:
                raise ConfigError(f"must specify {label} in static method")
            _check_ip(value)
        if network.mtu and not 576 <= network.mtu <= 9000:
            raise ConfigError(f"{network.mtu} is not a valid MTU value")


def _check_vip(vip: str, vip_hw_addr: str, vip_mode: str) -> None:
    _check_ip(vip)
    if vip_mode == METHOD_DHCP:
        _check_hw_addr(vip_hw_addr)
    elif vip_mode not in (METHOD_STATIC, METHOD_NONE):
        raise ConfigError(f"{ERR_VIP_MODE_UNKNOWN}: {vip_mode}")


def _check_device(config: HarvesterConfig, probe: SystemProbe) -> None:
    device, data_disk = config.device, config.data_disk
    if not device:
        raise ConfigError(ERR_DEVICE_NOT_SPECIFIED)
    if device not in probe.paths and device not in probe.disks:
        raise ConfigError(f"lstat {device}: no such file or directory")
    if probe.resolve(device) is None:
        raise ConfigError(f"{ERR_DEVICE_NOT_FOUND}: {device}")
    if config.skipchecks:
        return
    gib = 1024 ** 3

    def too_small(disk: str, minimum: int) -> bool:
        resolved = probe.resolve(disk)
        return resolved is None or probe.disks[resolved] < minimum * gib

    if config.role == ROLE_WITNESS or (data_disk and data_disk != device):
        if too_small(device, MULTIPLE_DISK_MIN_SIZE_GIB):
            raise ConfigError(f"{ERR_DEVICE_TOO_SMALL}: {device}")
        if data_disk and data_disk != device and config.role != ROLE_WITNESS \
                and too_small(data_disk, HARD_MIN_DATA_DISK_SIZE_GIB):
            raise ConfigError(f"{ERR_DEVICE_TOO_SMALL}: {data_disk}")
    elif too_small(device, SINGLE_DISK_MIN_SIZE_GIB):
        raise ConfigError(f"{ERR_DEVICE_TOO_SMALL}: {device}")


def _check_force_mbr(device: str, probe: SystemProbe) -> None:
    resolved = probe.resolve(device)
    if resolved is not None and probe.disks[resolved] > MBR_MAX_BYTES:
        raise ConfigError(f"{ERR_FORCE_MBR_ON_LARGE_DISK}: {device}")
    if not probe.bios:
        raise ConfigError(f"{ERR_FORCE_MBR_ON_UEFI}: UEFI")


def _check_token(token: str) -> None:
    pattern = "^" + VALID_TOKEN_CHARS + "+$"
    if not re.match(pattern, token):
        raise ConfigError(f"Invalid token. Must be alphanumeric and OWASP special password characters. "
                          f"Regexp: {pattern}")


def _check_labels(labels: dict[str, str]) -> None:
    for name, value in labels.items():
        prefix, _, local = name.rpartition("/")
        if (prefix and not is_dns1123_subdomain(prefix)) or not (0 < len(local) <= 63) \
                or not _QUALIFIED_NAME.match(local):
            raise ConfigError(f"invalid label name '{name}': name part must consist of alphanumeric characters, "
                              "'-', '_' or '.', and must start and end with an alphanumeric character")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise ConfigError(f"invalid label value '{value}': a valid label must be an empty string or consist of "
                              "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                              "alphanumeric character")


def common_check(config: HarvesterConfig) -> None:
    mode = config.mode
    if mode in (MODE_UPGRADE, MODE_INSTALL):
        return
    if mode == MODE_CREATE:
        if config.server_url:
            raise ConfigError(ERR_MODE_CREATE_CONTAINS_SERVER_URL)
    elif mode == MODE_JOIN:
        if not config.server_url:
            raise ConfigError(ERR_MODE_JOIN_SERVER_URL_NOT_SPECIFIED)
    else:
        raise ConfigError(f"{ERR_MODE_UNKNOWN}: {mode}")
    if config.automatic and not config.iso_url:
        raise ConfigError(ERR_ISO_URL_NOT_SPECIFIED)
    if not config.token:
        raise ConfigError(ERR_TOKEN_NOT_SPECIFIED)
    if not config.ssh_authorized_keys and not config.password:
        raise ConfigError(ERR_NO_CREDENTIALS)
    for path in config.persistent_state_paths:
        if not path.startswith("/"):
            raise ConfigError("Invalid path. PersistentStatePath must be an absolute path")
        if path == "/tmp" or path.startswith("/tmp/"):
            raise ConfigError("Invalid path. Parent dir of PersistentStatePath cannot be /tmp")


def validate(config: HarvesterConfig, probe: SystemProbe) -> None:
    """Raise ConfigError with harvester-installer's message for the first problem (`validateConfig`)."""
    common_check(config)
    if config.scheme_version != SCHEME_VERSION:
        raise ConfigError(ERR_UNSUPPORTED_SCHEME_VERSION % config.scheme_version)
    if not is_dns1123_subdomain(config.hostname):
        raise ConfigError(ERR_INVALID_HOSTNAME)
    _check_device(config, probe)
    if config.force_mbr:
        _check_force_mbr(config.device, probe)
    if config.mode != MODE_INSTALL:
        network = config.management_interface
        if not network.interfaces:
            raise ConfigError(ERR_MANAGEMENT_INTERFACE_NOT_FOUND)
        _check_networks(network, config.dns_nameservers, probe)
        _check_token(config.token)
    if config.mode == MODE_CREATE:
        _check_vip(config.vip, config.vip_hw_addr, config.vip_mode)
        for setting in config.system_settings:
            if setting not in SYSTEM_SETTINGS_ALLOW_LIST:
                raise ConfigError(ERR_SYSTEM_SETTINGS_UNKNOWN % setting)
    _check_labels(config.labels)


def management_interface_name(config: HarvesterConfig, probe: SystemProbe) -> str:
    """The management NIC's name on this machine (the first configured interface, resolved)."""
    for interface in config.management_interface.interfaces:
        name = resolve_interface(interface, probe)
        if name:
            return name
    return ""

