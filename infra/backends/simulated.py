"""The default backend: a Harvester simulator per version, each its own child process on 127.0.0.1.

The harness talks to it only over the wire (HTTPS with the simulator's CA, bearer token), exactly as
to a real cluster. Children die with the parent (PR_SET_PDEATHSIG) and are stopped by SIGTERM.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity

from infra.cluster import AddressRange, Cluster, GuestTemplate, NodeHandle, RancherAccess, Release
from infra.config import RunConfig
from infra.https import Endpoint
from infra.kube import Kube
from infra.simulator.rancher.releases import RANCHER_VERSIONS
from infra.ssh import generate_keypair
from infra.waits.budget import Budget

from .base import Backend, BackendError
from .sim_power import attach_node_power, detach_node_power
from .simulator_client import SimulatorClient

NEWEST_SIMULATED_BUILD = "master-ce188325-head"
SIMULATED_RANCHERS = RANCHER_VERSIONS

PR_SET_PDEATHSIG = 1
log = logging.getLogger("harvester_e2e.backends.simulated")


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class SimulatorProcess:
    version: str
    process: subprocess.Popen[bytes]
    workdir: Path
    kubeconfig: Path
    log_path: Path
    info: dict[str, Any] = field(default_factory=dict)     # the ready file: URL, nodes' SSH ports and host keys

    def exit_reason(self) -> str | None:
        """None while the simulator runs; once it has exited, why its API will never answer again."""
        if self.process.poll() is None:
            return None
        return (f"the simulated Harvester {self.version} exited with status {self.process.returncode}; "
                f"its log ({self.log_path}) ends with:\n{self.stderr_tail(10)}")

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, grace: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


KEPT_FILE = "kept.json"        # in a simulator's workdir: a simulator kept running after the run (`sim down` stops it)


def start_simulator_process(version: str, *, time_scale: float, nodes: int, budget: Budget,
                       workdir: Path | None = None, ssh_authorized_key: Path | None = None,
                       ssh_password_file: Path | None = None, outlive_parent: bool = False,
                       client_cert_kubeconfig: Path | None = None, node_prefix: str | None = None) -> SimulatorProcess:
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"harvester-simulator-{version}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig, ready, log_path = workdir / "kubeconfig", workdir / "ready.json", workdir / "simulator.log"
    ready.unlink(missing_ok=True)     # a file left by an earlier simulator must not pass for this one
    command = [sys.executable, "-m", "infra.simulator", "--version", version, "--kubeconfig", str(kubeconfig),
               "--ready-file", str(ready), "--time-scale", str(time_scale), "--nodes", str(nodes),
               "--log-level", "INFO"]
    if ssh_authorized_key is not None:
        command += ["--ssh-authorized-key", str(ssh_authorized_key)]
    if ssh_password_file is not None:
        command += ["--ssh-password-file", str(ssh_password_file)]
    for rancher in SIMULATED_RANCHERS:        # the lab's Rancher Managers, one per line the stories name
        command += ["--rancher", rancher]
    if node_prefix is not None:
        command += ["--node-name-prefix", node_prefix]
    if client_cert_kubeconfig is not None:    # an admin's x509 kubeconfig, as RKE2 writes it
        command += ["--client-cert-kubeconfig", str(client_cert_kubeconfig)]
    with open(log_path, "ab") as log_file:      # appended: a restarted simulator keeps its predecessor's log
        # A simulator that may be kept after the run (--keep-on-failure) is its own session and does not die
        # with its parent; every other simulator does, so nothing outlives a killed run.
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=Path(__file__).resolve().parents[2],
                                   preexec_fn=None if outlive_parent else _die_with_parent,
                                   start_new_session=outlive_parent)
    simulator = SimulatorProcess(version, process, workdir, kubeconfig, log_path)

    def ready_or_dead() -> bool:
        if process.poll() is not None:
            raise BackendError(f"the simulated Harvester {version} exited with status {process.returncode} "
                               f"before serving; its log ends with:\n{simulator.stderr_tail()}")
        return ready.exists()

    try:
        tenacity.Retrying(retry=tenacity.retry_if_result(lambda ok: not ok),
                          wait=tenacity.wait_exponential(multiplier=0.02, max=0.25),
                          stop=tenacity.stop_after_delay(budget.seconds))(ready_or_dead)
    except tenacity.RetryError:
        simulator.stop()
        raise BackendError(f"budget '{budget.name}' ({budget.seconds:.0f}s) ran out waiting for the simulated "
                           f"Harvester {version} to serve; its log ends with:\n{simulator.stderr_tail()}") from None
    except BackendError:
        simulator.stop()
        raise
    simulator.info = json.loads(ready.read_text())
    return simulator


class SimulatedBackend(Backend):
    name = "simulated"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._simulators: dict[str, SimulatorProcess] = {}
        self._clusters: dict[str, Cluster] = {}
        self._retired: list[tuple[Cluster, SimulatorProcess]] = []
        self.kept: list[tuple[Cluster, SimulatorProcess]] = []

    def acquire(self, harvester_version: str | None = None) -> Cluster:
        harvester_version = harvester_version or self.default_version
        self._stop_retired()
        if harvester_version in self._clusters and self._simulators[harvester_version].process.poll() is None:
            return self._clusters[harvester_version]
        if harvester_version in self._simulators:
            dead = self._simulators[harvester_version]
            log.warning("the simulated Harvester %s exited with status %s; starting a new one. Its log ends with:\n%s",
                        harvester_version, dead.process.returncode, dead.stderr_tail())
            self._clusters[harvester_version].close_sessions()
        sim = self.config.simulated
        run_dir = (self.config.artifacts_dir / self.config.run_id).resolve()
        workdir = run_dir / f"simulator-{harvester_version}"
        keys = generate_keypair(run_dir / "ssh")            # the run's own key; the nodes authorize it
        password_file = None
        if sim.node_password is not None:
            password_file = run_dir / "ssh" / "node-password"
            password_file.touch(mode=0o600)
            password_file.write_text(sim.node_password.get_secret_value())
        simulator = start_simulator_process(harvester_version, time_scale=sim.time_scale, nodes=sim.nodes, workdir=workdir,
                                  budget=Budget("simulated cluster start", sim.startup_timeout_s),
                                  ssh_authorized_key=keys.public_key_file, ssh_password_file=password_file,
                                  outlive_parent=self.config.keep_on_failure)
        self._simulators[harvester_version] = simulator
        cluster = cluster_from_simulator(simulator, self.config.run_id, keys.private_key_file, sim.node_password,
                                    known_hosts=run_dir / "known_hosts", target=self.config.upgrade.target)
        self._clusters[harvester_version] = cluster
        attach_node_power(self.config.run_id, cluster)     # node power through libvirt's test driver
        upload_vm_image(cluster, self.config.vms.image)
        if sim.backup_target is not None:
            configure_backup_target(cluster.kube(), sim.backup_target)
        return cluster

    def retire(self, cluster: Cluster) -> None:
        """An upgraded simulator is not handed to another scenario. It keeps serving until this scenario's
        cleanup is done, and is stopped when the next cluster is acquired (or at the end of the run)."""
        if self._clusters.get(cluster.harvester_version) is cluster:
            del self._clusters[cluster.harvester_version]
            self._retired.append((cluster, self._simulators.pop(cluster.harvester_version)))

    def keep(self, cluster: Cluster) -> None:
        """--keep-on-failure: this (failed) scenario's cluster keeps running after the run, and only it."""
        pairs: list[tuple[Cluster, SimulatorProcess]] = []
        for version, candidate in list(self._clusters.items()):
            if candidate is cluster:
                pairs.append((cluster, self._simulators.pop(version)))
                del self._clusters[version]
        for retired in list(self._retired):
            if retired[0] is cluster:
                self._retired.remove(retired)
                pairs.append(retired)
        for kept_cluster, simulator in pairs:
            kept_cluster.close_sessions()
            detach_node_power(kept_cluster)
            (simulator.workdir / KEPT_FILE).write_text(json.dumps({
                "runId": self.config.run_id, "version": simulator.version, "pid": simulator.process.pid,
                "kubeconfig": str(simulator.kubeconfig), "knownHosts": str(kept_cluster.known_hosts or ""),
                "nodes": [{"name": n.name, "host": n.ssh_host, "port": n.ssh_port, "user": n.ssh_user,
                           "keyFile": str(n.ssh_key_file or "")} for n in kept_cluster.nodes]}, indent=2))
            self.kept.append((kept_cluster, simulator))

    def kept_summary(self) -> list[str]:
        lines = []
        for cluster, simulator in self.kept:
            lines += [f"kept the simulated Harvester {simulator.version} of a failed scenario (pid {simulator.process.pid}):",
                      f"  export KUBECONFIG={simulator.kubeconfig}",
                      *(f"  ssh -p {n.ssh_port} -i {n.ssh_key_file} -o UserKnownHostsFile={cluster.known_hosts} "
                        f"{n.ssh_user}@{n.ssh_host}   # {n.name}" for n in cluster.nodes),
                      f"  stop it: harvester-e2e sim down {self.config.run_id}"]
        return lines

    def _stop_retired(self) -> None:
        while self._retired:
            cluster, simulator = self._retired.pop()
            cluster.close_sessions()
            detach_node_power(cluster)
            simulator.stop()

    def release_all(self) -> None:
        self._stop_retired()
        for cluster in self._clusters.values():
            cluster.close_sessions()
            detach_node_power(cluster)
        for simulator in self._simulators.values():
            simulator.stop()
        self._simulators.clear()
        self._clusters.clear()


def stop_kept(artifacts_dir: Path, run_id: str) -> list[str]:
    """`harvester-e2e sim down RUN_ID`: stop the simulators a run kept (--keep-on-failure); what was stopped."""
    stopped = []
    for record_path in sorted((artifacts_dir / run_id).glob(f"simulator-*/{KEPT_FILE}")):
        record = json.loads(record_path.read_text())
        pid = int(record["pid"])
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            cmdline = []
        if b"infra.simulator" in cmdline:         # that pid is still our simulator (not a reused pid)
            os.kill(pid, signal.SIGTERM)
            try:                                  # a simulator stops serving within a second or two
                tenacity.Retrying(retry=tenacity.retry_if_result(bool), wait=tenacity.wait_fixed(0.1),
                                  stop=tenacity.stop_after_delay(10))(Path(f"/proc/{pid}").exists)
            except tenacity.RetryError:
                os.kill(pid, signal.SIGKILL)
            stopped.append(f"stopped the simulated Harvester {record['version']} (pid {pid})")
        else:
            stopped.append(f"the simulated Harvester {record['version']} (pid {pid}) had already stopped")
        record_path.unlink()
    return stopped


def cluster_from_simulator(simulator: SimulatorProcess, run_id: str, key_file: Path | None, password: Any, *,
                      known_hosts: Path, target: str | None = None) -> Cluster:
    """The `Cluster` a running simulator is, from its ready file: what it offers, as a lab would offer it."""
    info = simulator.info
    nodes = [NodeHandle(n["name"], n["sshHost"], n["sshPort"], ssh_user=n["sshUser"], ssh_key_file=key_file,
                        ssh_password=password, ssh_host_key=n["hostKey"]) for n in info.get("nodes", [])]
    api = Endpoint.from_kubeconfig(simulator.kubeconfig)
    cluster = Cluster(name=f"simulator-{simulator.version}", backend="simulated", kubeconfig=simulator.kubeconfig,
                      harvester_version=simulator.version, run_id=run_id, nodes=nodes, known_hosts=known_hosts,
                      faults=SimulatorClient(simulator.kubeconfig), releases=_releases(info, api.ca_file),
                      target=target or NEWEST_SIMULATED_BUILD)
    cluster.gone = simulator.exit_reason        # a dead simulator fails fast instead of being retried for minutes
    vip = info.get("harvesterApi") or {}     # Harvester's API at the VIP: its own CA, Rancher API keys
    if vip.get("url"):
        cluster.harvester_api = Endpoint(vip["url"], token=_secret(vip.get("apiKey")),
                                         ca_file=_pem_file(simulator.workdir / "vip-ca.pem", vip.get("caPem")))
    network = (info.get("lab") or {}).get("vmNetwork") or {}
    template = GuestTemplate(network=f"{network.get('namespace', 'default')}/{network.get('name', 'vm-network')}")
    for index, rancher in enumerate(info.get("ranchers") or []):     # one simulated Rancher per line
        cluster.ranchers.append(RancherAccess(rancher["url"], token=_secret(rancher["apiKey"]),
                                              ca_file=_pem_file(simulator.workdir / f"rancher-{index}-ca.pem",
                                                                rancher.get("caPem")),
                                              guest_template=template))
    reserved = (info.get("lab") or {}).get("loadBalancerRange")     # the lab's addresses for IPPools
    if reserved:
        cluster.lb_addresses = AddressRange.parse(f"{reserved['start']}-{reserved['end']}")
    return cluster


def _releases(info: dict[str, Any], ca_file: Path | None) -> dict[str, Release]:
    return {r["version"]: Release(r["version"], r["isoURL"], r.get("isoChecksum", ""), ca_file=ca_file)
            for r in info.get("releases") or []}


def _secret(value: str | None) -> Any:
    from pydantic import SecretStr

    return SecretStr(value) if value else None


def _pem_file(path: Path, pem: str | None) -> Path | None:
    if not pem:
        return None
    path.write_text(pem)
    return path


def run_foreground(argv: list[str]) -> int:
    """`harvester-e2e sim up`: the simulator in this process, printing the export line once it serves."""
    from infra.simulator.__main__ import main

    def announce(_simulator: object, info: dict[str, object]) -> None:
        print(f"Simulated Harvester {info['harvesterVersion']} serving at {info['url']} "
              f"(time scale x{info['timeScale']}). Ctrl-C stops it.", flush=True)
        print(f"export KUBECONFIG={info['kubeconfig']}", flush=True)

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return main(argv, announce=announce)


def configure_backup_target(kube: Kube, endpoint: str) -> None:
    """An NFS backup target, set as a lab's admins set theirs (Harvester's backup-target setting)."""
    kube.patch("harvesterhci.io/v1beta1", "Setting", "backup-target",
               {"value": json.dumps({"type": "nfs", "endpoint": endpoint})})


def upload_vm_image(cluster: Cluster, image: str) -> None:
    """The VM image the VM stories boot, uploaded as a lab's admins upload one (Harvester then makes its
    StorageClass); a lab names its own in `vms.image`."""
    namespace, name = image.split("/")
    kube = cluster.kube()
    if kube.find("harvesterhci.io/v1beta1", "VirtualMachineImage", name, namespace) is None:
        kube.create({"apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineImage",
                     "metadata": {"name": name, "namespace": namespace, "labels": {"harvesterhci.io/os-type": "ubuntu"}},
                     "spec": {"displayName": "jammy-server-cloudimg-amd64.img", "sourceType": "download",
                              "url": "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"}})
