"""Unattended Harvester install: the create/join config documents and the HTTP server that hands them out.

The documents follow harvester-installer's config schema (docs/harvester-facts.md §5): the first node
`install.mode: create` with the VIP, the others `join` with `server_url: https://<vip>:443`; the token,
password and SSH keys come from the run's config. The installer fetches them from
`harvester.install.config_url`, which is on the kernel command line the domain boots with. The server
serves exactly those documents and logs only paths (they hold the cluster token and the password).
"""
from __future__ import annotations

import http.server
import logging
import secrets
import threading
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import yaml

from infra.config import LibvirtSettings
from infra.report.redact import register_secret

from .plan import ClusterPlan, NodePlan, local_path
from .xmlgen import NIC_PCI_SLOT, USER_NIC_PCI_SLOT

log = logging.getLogger("harvester_e2e.provision")
# The virtio NIC sits at PCI slot 3 of the i440fx machine: predictable naming calls it ens3 (the user-mode
# NIC, which libvirt does not manage, sits at slot 0x1e: ens30).
MANAGEMENT_NIC = f"ens{int(NIC_PCI_SLOT, 16)}"
USER_MODE_MANAGEMENT_NIC = f"ens{int(USER_NIC_PCI_SLOT, 16)}"
INSTALL_DEVICE = "/dev/vda"


@dataclass(frozen=True)
class HostKey:
    """An SSH host key the harness makes for a node: installed through the install config, pinned by the run."""

    private_openssh: str = field(repr=False)
    public_line: str                  # "ssh-ed25519 AAAA..." as known_hosts and the node's .pub hold it

    @classmethod
    def generate(cls) -> "HostKey":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption()).decode()
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                               serialization.PublicFormat.OpenSSH).decode()
        register_secret(private)
        return cls(private, public)


@dataclass(frozen=True)
class NodeSecrets:
    """What a node is installed with that must never be logged."""

    token: str
    password: str
    authorized_keys: tuple[str, ...]
    host_keys: dict[str, HostKey] = field(default_factory=dict, repr=False)     # hostname -> its host key

    @classmethod
    def from_settings(cls, settings: LibvirtSettings, hostnames: tuple[str, ...] = ()) -> NodeSecrets:
        keys: tuple[str, ...] = ()
        if settings.ssh_key_file is not None:
            keys = (public_key_of(settings.ssh_key_file),)
        token = settings.cluster_token.get_secret_value() if settings.cluster_token else secrets.token_hex(16)
        password = settings.ssh_password.get_secret_value() if settings.ssh_password else secrets.token_urlsafe(16)
        register_secret(token)          # the report redacts them wherever they might show up
        register_secret(password)
        return cls(token, password, keys, {name: HostKey.generate() for name in hostnames})

    def __repr__(self) -> str:
        return (f"NodeSecrets(token=***, password=***, authorized_keys={len(self.authorized_keys)}, "
                f"host_keys={len(self.host_keys)})")


HOST_KEY_PATH = "/etc/ssh/ssh_host_ed25519_key"


def host_key_files(host_key: HostKey) -> list[dict[str, str]]:
    """`os.write_files` entries (harvester-installer's schema) that install the node's SSH host key."""
    return [{"encoding": "", "content": host_key.private_openssh, "owner": "root", "path": HOST_KEY_PATH,
             "permissions": "0600"},
            {"encoding": "", "content": host_key.public_line + "\n", "owner": "root", "path": HOST_KEY_PATH + ".pub",
             "permissions": "0644"}]


def public_key_of(private_key_file: Path) -> str:
    from cryptography.hazmat.primitives import serialization

    data = private_key_file.expanduser().read_bytes()
    key: Any
    try:
        key = serialization.load_ssh_private_key(data, password=None)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return public.decode()


def _management_interface(plan: ClusterPlan, node: NodePlan) -> dict[str, Any]:
    name = USER_MODE_MANAGEMENT_NIC if plan.settings.network_mode == "user" else MANAGEMENT_NIC
    interface: dict[str, Any] = {"interfaces": [{"name": name, "hwAddr": node.mac}]}
    if plan.settings.network_mode == "bridge" and plan.layout is not None and node.ip is not None:
        interface.update(method="static", ip=str(node.ip), subnet_mask=str(plan.layout.cidr.netmask),
                         gateway=str(plan.layout.gateway))
    else:
        interface["method"] = "dhcp"     # the NAT network's reservation pins it by MAC; qemu's user network
                                         # always hands out the same address
    return interface


def node_config(plan: ClusterPlan, node: NodePlan, node_secrets: NodeSecrets) -> dict[str, Any]:
    """The harvester-installer config for one node (create for the first, join for the others)."""
    assert plan.vip is not None, "a Harvester install needs a VIP"
    settings = plan.settings
    document: dict[str, Any] = {
        "scheme_version": 1,
        "token": node_secrets.token,
        "os": {"hostname": node.hostname, "password": node_secrets.password,
               "ssh_authorized_keys": list(node_secrets.authorized_keys)},
        "install": {"mode": node.role, "management_interface": _management_interface(plan, node),
                    "device": INSTALL_DEVICE, "iso_url": settings.iso_url, "tty": "ttyS0", "automatic": True,
                    "poweroff": True},
    }
    if node.hostname in node_secrets.host_keys:     # the key the run pins for this node
        document["os"]["write_files"] = host_key_files(node_secrets.host_keys[node.hostname])
    if node.role == "create":
        document["install"].update(vip=str(plan.vip), vip_mode="static")
    else:
        document["server_url"] = f"https://{plan.vip}:443"
    return document


def installer_cmdline(plan: ClusterPlan, node: NodePlan, config_url: str) -> str:
    """The kernel command line that makes the installer run unattended with this node's config."""
    settings = plan.settings
    if settings.network_mode == "bridge" and plan.layout is not None and node.ip is not None:
        network = (f"ip={node.ip}::{plan.layout.gateway}:{plan.layout.cidr.netmask}:{node.hostname}:"
                   f"{MANAGEMENT_NIC}:none")
    else:
        network = "ip=dhcp rd.net.dhcp.retry=3"
    if settings.install == "iso":
        root = f"root=live:CDLABEL={iso_volume_label(settings.iso_url or '') or 'COS_LIVE'}"
    else:
        root = f"root=live:{settings.rootfs_url}"
    parts = [network, "rd.cos.disable", "rd.noverifyssl", "net.ifnames=1", root, "console=tty1", "console=ttyS0",
             "harvester.install.automatic=true",
             # the installer's own switch for machines below Harvester's minimums (its preflight checks)
             "harvester.install.skipchecks=true" if settings.install_skipchecks else "",
             f"harvester.install.config_url={config_url}", settings.kernel_cmdline]
    return " ".join(p for p in parts if p)


def iso_volume_label(iso_url: str) -> str | None:
    """The ISO 9660 volume label (primary volume descriptor, bytes 32808-32840) of a local ISO."""
    path = local_path(iso_url)
    if path is None or not path.is_file():
        return None
    with path.open("rb") as iso:
        iso.seek(32808)
        return iso.read(32).decode("ascii", "replace").strip() or None


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _DocumentServer

    def do_GET(self) -> None:
        body = self.server.documents.get(self.path.split("?", 1)[0])
        if body is None:
            self.send_error(404, "no such install config")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/yaml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.server.fetched.append(self.path)

    def log_message(self, format: str, *args: Any) -> None:
        """The request line only (a path), never a body: the documents hold the token and the password."""
        log.info("install-config server: %s %s", self.address_string(), format % args)


class _DocumentServer(http.server.ThreadingHTTPServer):
    documents: dict[str, bytes]
    fetched: list[str]


class InstallConfigServer:
    """Serves `/<run id>/<hostname>.yaml` for every node on `bind:port` (127.0.0.1 in tests). `guest_host`:
    the name the guests reach `bind` by, where it is not `bind` itself (qemu's user network: 10.0.2.2)."""

    def __init__(self, bind: str, port: int = 0, url_base: str | None = None, *, guest_host: str | None = None) -> None:
        IPv4Address(bind)
        self._server = _DocumentServer((bind, port), _Handler)
        self._server.documents, self._server.fetched = {}, []
        self._url_base = url_base
        self._guest_host = guest_host
        self._thread = threading.Thread(target=self._server.serve_forever, name="install-config-server",
                                        daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url_base(self) -> str:
        host, port = self.address
        return (self._url_base or f"http://{self._guest_host or host}:{port}").rstrip("/")

    @property
    def fetched(self) -> list[str]:
        """Paths the nodes have fetched so far (diagnostics: did the installer get its config?)."""
        return list(self._server.fetched)

    def publish(self, path: str, document: dict[str, Any]) -> str:
        self._server.documents[path] = yaml.safe_dump(document, sort_keys=False).encode()
        return self.url_base + path

    def start(self) -> InstallConfigServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def publish_cluster_configs(server: InstallConfigServer, plan: ClusterPlan,
                            node_secrets: NodeSecrets) -> dict[str, str]:
    """Publish every node's document; returns hostname -> the config_url that node boots with."""
    return {node.hostname: server.publish(f"/{plan.run_id}/{node.hostname}.yaml",
                                          node_config(plan, node, node_secrets))
            for node in plan.nodes}
