"""Provisioning a cluster through libvirt from a plan, step by step, every step registered for teardown.

  1. refuse a plan that cannot work on this host (nothing created yet);
  2. the network, the pool, one disk per node (a linked clone over the golden disk where one exists);
  3. install (no golden image): the config server serves each node's create/join document; the first node
     boots the installer (direct kernel boot with `harvester.install.automatic=true` and its
     `harvester.install.config_url`), installs and powers off; its domain is redefined to boot from disk
     and started; once the API answers at the VIP the other nodes install and join the same way;
     or boot (golden image, or `install: none`): every node boots straight away;
  4. SSH on every node, the API at the VIP, and the kubeconfig fetched over SSH from the first node.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from infra.cleanup import CleanupStack
from infra.waits.budget import Budget

from .accel import Acceleration
from .golden import GoldenImage, GoldenStore
from .install_config import (
    InstallConfigServer,
    NodeSecrets,
    installer_cmdline,
    publish_cluster_configs,
)
from .objects import Provisioner
from .plan import USER_MODE_HOST, ClusterPlan, NodePlan, check_plan, local_path
from .power import DomainControl
from .spec import Boot, DomainSpec
from .machine_waits import wait_for_api, wait_for_ssh

log = logging.getLogger("harvester_e2e.provision")
NODE_KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"


@dataclass
class ProvisionedNode:
    plan: NodePlan
    control: DomainControl
    spec: DomainSpec


@dataclass
class ProvisionedCluster:
    plan: ClusterPlan
    nodes: list[ProvisionedNode] = field(default_factory=list)
    domain_type: str = "kvm"
    restored_from: GoldenImage | None = None
    kubeconfig: Path | None = None
    host_keys: dict[str, str] = field(default_factory=dict)     # hostname -> the public host key to pin
    kvm_probe_seconds: float | None = None                     # how long deciding KVM vs TCG took
    timings: dict[str, float] = field(default_factory=dict)     # phase -> seconds it took (see ClusterProvisioner)
    password: str = field(default="", repr=False)              # the nodes' login password (install config)

    def control(self, hostname: str) -> DomainControl:
        for node in self.nodes:
            if hostname in (node.plan.hostname, node.plan.domain):
                return node.control
        raise KeyError(f"no node {hostname!r} in this cluster; nodes: {[n.plan.hostname for n in self.nodes]}")


_KEYS_BEGIN, _KEYS_END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
_PREFERRED = ("ssh-ed25519", "ecdsa-sha2-nistp256", "rsa-sha2-512", "ssh-rsa")


def host_keys_on_console(console: str) -> list[str]:
    """Host keys a node printed on its console, framed as cloud-init frames them; ed25519 first."""
    if _KEYS_BEGIN not in console:
        return []
    block = console.rsplit(_KEYS_BEGIN, 1)[1].split(_KEYS_END, 1)[0]
    lines = [" ".join(line.split()[:2]) for line in block.splitlines() if len(line.split()) >= 2]
    return sorted(lines, key=lambda line: _PREFERRED.index(line.split()[0]) if line.split()[0] in _PREFERRED else 9)


def fetch_to_host(url: str, directory: Path, budget: Budget) -> Path:
    """A local path for a kernel/initrd/ISO URL: the file itself, or a cached download of an http(s) URL."""
    path = local_path(url)
    if path is not None:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / (hashlib.sha256(url.encode()).hexdigest()[:16] + "-" + url.rsplit("/", 1)[-1])
    if not target.exists():
        partial = target.with_suffix(target.suffix + ".partial")
        log.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=min(budget.seconds, 60)) as response, partial.open("wb") as out:
            shutil.copyfileobj(response, out, length=1 << 20)
        partial.rename(target)
    return target


class ClusterProvisioner:
    def __init__(self, conn: Any, plan: ClusterPlan, stack: CleanupStack, *, golden: GoldenStore | None = None,
                 restore: GoldenImage | None = None, node_secrets: NodeSecrets | None = None) -> None:
        self.conn = conn
        self.plan = plan
        self.stack = stack
        self.objects = Provisioner(conn, plan.run_id, stack)
        self.golden = golden
        self.restore = restore
        hostnames = tuple(n.hostname for n in plan.nodes) if plan.installs_harvester else ()
        self.node_secrets = node_secrets or NodeSecrets.from_settings(plan.settings, hostnames)
        kernel = local_path(plan.settings.kernel_url) if plan.settings.kernel_url else None
        self.acceleration = Acceleration(plan.settings.domain_type, plan.settings.kvm_probe_s, probe_kernel=kernel)
        # A restored disk carries the host key of the install it was saved from; a fresh install gets ours.
        host_keys = dict(restore.host_keys) if restore is not None else \
            {name: key.public_line for name, key in self.node_secrets.host_keys.items()}
        self.result = ProvisionedCluster(plan, restored_from=restore, host_keys=host_keys,
                                         password=self.node_secrets.password)
        settings = plan.settings
        self.boot_budget = Budget.minutes("node boots to SSH", settings.boot_timeout_min)
        self.install_budget = Budget.minutes("Harvester installs on a node", settings.install_timeout_min)
        self.api_budget = Budget.minutes("Harvester API answers at the VIP", settings.api_timeout_min)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Record how long a phase took (the run's provisioning.json and the closing log line show them)."""
        started = time.monotonic()
        yield
        self.result.timings[phase] = round(time.monotonic() - started, 1)
        log.info("provisioning %s: %s took %.1fs", self.plan.run_id, phase, self.result.timings[phase])

    # -- step 1 and 2 -------------------------------------------------------------------------------------
    def create_infrastructure(self) -> None:
        check_plan(self.conn, self.plan)
        (self.plan.workdir / "consoles").mkdir(parents=True, exist_ok=True)
        if self.plan.network is not None:
            self.objects.create_network(self.plan.network)
        self.objects.create_pool(self.plan.pool)
        for node in self.plan.nodes:
            self.objects.create_volume(self.plan.volume_spec(node))

    def _file(self, url: str | None) -> Path | None:
        return fetch_to_host(url, self.plan.workdir / "downloads", self.install_budget) if url else None

    def _disk_boot(self, node: NodePlan) -> Boot:
        templates = self.golden.nvram_templates(self.restore) if self.golden and self.restore else {}
        return Boot(firmware=self.plan.settings.boot_mode, nvram_template=templates.get(node.hostname))

    def _guest_boot(self) -> Boot:
        settings = self.plan.settings
        return Boot(firmware=settings.boot_mode, kernel=self._file(settings.kernel_url),
                    initrd=self._file(settings.initrd_url), cmdline=settings.kernel_cmdline)

    def _start(self, node: NodePlan, boot: Boot, on_reboot: str = "restart") -> ProvisionedNode:
        if self.acceleration.probe_kernel is None and boot.kernel is not None:
            self.acceleration.probe_kernel = boot.kernel          # a kernel the nodes boot: probe KVM with it
        spec = self.plan.domain_spec(node, self.acceleration.initial_type(self.conn))
        spec = self.acceleration.define_and_start(self.objects, spec.with_boot(boot, on_reboot))  # type: ignore[arg-type]
        self.result.domain_type = spec.domain_type
        self.result.kvm_probe_seconds = self.acceleration.probe_seconds
        provisioned = ProvisionedNode(node, DomainControl(self.conn, node.domain, node.console_log), spec)
        self.result.nodes = [n for n in self.result.nodes if n.plan.index != node.index] + [provisioned]
        self.result.nodes.sort(key=lambda n: n.plan.index)
        return provisioned

    # -- step 3 -------------------------------------------------------------------------------------------
    def boot_all(self) -> None:
        """Every node boots at once: a plain guest (install none) or a restored golden disk."""
        for node in self.plan.nodes:
            self._start(node, self._guest_boot() if self.plan.settings.install == "none" else self._disk_boot(node))

    def start_installers(self, nodes: list[NodePlan], config_urls: dict[str, str]) -> list[ProvisionedNode]:
        settings = self.plan.settings
        kernel, initrd = self._file(settings.kernel_url), self._file(settings.initrd_url)
        cdrom = self._file(settings.iso_url) if settings.install == "iso" else None
        started = []
        for node in nodes:
            boot = Boot(firmware=settings.boot_mode, kernel=kernel, initrd=initrd, cdrom=cdrom,
                        cmdline=installer_cmdline(self.plan, node, config_urls[node.hostname]))
            # The installer powers off when done (install.poweroff); a reboot must not boot it again either.
            started.append(self._start(node, boot, on_reboot="destroy"))
        return started

    def finish_installs(self, installing: list[ProvisionedNode], *, wait: bool = True, boot: bool = True) -> None:
        """Wait for each installer to power off, then boot the node from its disk."""
        for node in installing:
            if wait:
                node.control.wait_for_state("shut off", self.install_budget)
                log.info("%s installed", node.plan.domain)
            if boot:
                log.info("booting %s from its disk", node.plan.domain)
                self._start(node.plan, self._disk_boot(node.plan))

    def install(self, server: InstallConfigServer) -> None:
        config_urls = publish_cluster_configs(server, self.plan, self.node_secrets)
        first, others = self.plan.nodes[0], list(self.plan.nodes[1:])
        with self.timed("install first node (installer boot to power-off)"):
            installing = self.start_installers([first], config_urls)
            self.finish_installs(installing, boot=False)
        with self.timed("first node boots from disk to SSH"):
            self.finish_installs(installing, wait=False)
            self.wait_for_ssh([first])
        with self.timed("first node's API answers"):
            self.wait_for_api()
        if others:
            with self.timed("install and boot the other nodes"):
                self.finish_installs(self.start_installers(others, config_urls))

    # -- step 4 -------------------------------------------------------------------------------------------
    def wait_for_ssh(self, nodes: list[NodePlan] | None = None) -> None:
        for node in nodes or list(self.plan.nodes):
            control = self.result.control(node.hostname)
            wait_for_ssh(node.ssh_host, node.ssh_port, self.boot_budget, evidence=control.evidence)
            if node.hostname not in self.result.host_keys:
                # A node the run installed no key on (a plain guest): the key it printed on its console.
                keys = host_keys_on_console(control.console_tail(400))
                if keys:
                    self.result.host_keys[node.hostname] = keys[0]

    def api_url(self) -> str:
        return self.plan.api_url

    def wait_for_api(self) -> None:
        first = self.result.nodes[0].control
        wait_for_api(self.api_url(), self.api_budget, evidence=first.evidence)

    def fetch_kubeconfig(self) -> Path:
        """The first node's RKE2 kubeconfig over SSH, pointed at the VIP, stored 0600 in the run's workdir."""
        from pydantic import SecretStr

        from infra.ssh import KnownHosts, SshNode, SshTarget

        node, settings = self.plan.nodes[0], self.plan.settings
        target = SshTarget(name=node.hostname, host=node.ssh_host, port=node.ssh_port, user=settings.ssh_user,
                           key_file=settings.ssh_key_file, password=SecretStr(self.node_secrets.password),
                           host_key=self.result.host_keys.get(node.hostname))
        with SshNode(target, KnownHosts(self.plan.workdir / "known_hosts")) as ssh:
            text = ssh.sudo(f"cat {NODE_KUBECONFIG}", check=True, budget=self.boot_budget).stdout
        config = yaml.safe_load(text)
        for cluster in config.get("clusters", []):
            cluster["cluster"]["server"] = self.api_url()
        target_file = self.plan.workdir / "kubeconfig"
        target_file.touch(mode=0o600)
        target_file.write_text(yaml.safe_dump(config))
        self.result.kubeconfig = target_file
        return target_file

    def run(self) -> ProvisionedCluster:
        """All steps. Whatever was created is on the stack, so a failure anywhere still tears it down."""
        self.create_infrastructure()
        if not self.plan.installs_harvester or self.restore is not None:
            with self.timed("restored nodes boot to SSH" if self.restore is not None else "nodes boot to SSH"):
                self.boot_all()
                self.wait_for_ssh()
        else:
            settings = self.plan.settings
            assert self.plan.layout is not None
            if settings.network_mode == "user":
                # The guests reach the host's 127.0.0.1 as qemu's 10.0.2.2, and nothing else of the host.
                server = InstallConfigServer(settings.config_server_bind or "127.0.0.1", settings.config_server_port,
                                             settings.config_url_base, guest_host=str(USER_MODE_HOST))
            else:
                bind = settings.config_server_bind or str(self.plan.layout.gateway)
                server = InstallConfigServer(bind, settings.config_server_port, settings.config_url_base)
            self.stack.defer("stop the install-config server", server.stop)
            server.start()
            self.install(server)
            self.wait_for_ssh()
        if self.plan.installs_harvester:
            with self.timed("API answers" if self.restore is not None else "every node's API answers"):
                self.wait_for_api()
            self.fetch_kubeconfig()
        return self.result

    def save_golden(self) -> GoldenImage:
        """Shut the cluster down, keep its disks as the golden image of this version, and start it again."""
        assert self.golden is not None, "libvirt.golden_image_dir is not set"
        with self.timed("save the golden image (shut down, copy the disks)"):
            for node in self.result.nodes:
                node.control.power("shutdown", Budget.minutes(f"{node.plan.domain} shuts down", 10))
            image = self.golden.save(self.objects, self.plan, self.result.host_keys)
        with self.timed("nodes start again after the golden save"):
            for node in self.result.nodes:
                node.control.power("start")
            self.wait_for_ssh()
            if self.plan.installs_harvester:
                self.wait_for_api()
        return image
