"""A lab that is a simulated Harvester: what a lab hands a QA engineer, written into a directory.

`harvester-e2e sim up --lab-dir DIR` (foreground) and `harvester-e2e lab run` (a lab for one suite run)
start a simulator and write, as a lab's inventory would give them:

- `DIR/kubeconfig`: several contexts, the cluster's own (`harvester-lab`, an x509 admin certificate as
  RKE2 writes it) current, and others that point at clusters that do not answer;
- `DIR/ssh/`: the key the nodes accept, and an OpenSSH config naming each node;
- `DIR/rancher/`, `DIR/vip-ca.pem`, `DIR/release-mirror-ca.pem`: the CAs of the lab's Rancher Managers,
  of Harvester's API at the VIP, and of the release mirror;
- `DIR/guest-<name>.kubeconfig`: a guest RKE2 cluster the lab runs, provisioned through its Rancher;
- `DIR/lab.yaml`: the run configuration for `--backend existing`.

The run that reads lab.yaml knows nothing of the simulator: no simulator token, no ready file, no `/simulator/v1`.
What the lab set up for itself (the VM image, the cloud credential, the guest) is the lab's, not a run's.
"""
from __future__ import annotations

import base64
import contextlib
import dataclasses
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import yaml
from pydantic import SecretStr

from infra.backends.simulated import SimulatorProcess, configure_backup_target, start_simulator_process
from infra.cluster import GuestTemplate, RancherAccess
from infra.harvester.guest.cluster import FLEET_DEFAULT, PROVISIONING, provisioning_manifests
from infra.kube import Kube
from infra.scratch import write_private
from infra.ssh import generate_keypair
from infra.versions import SemVer, compare, is_dev_build, order_key
from infra.waits.budget import Budget

CONTEXT = "harvester-lab"
NODE_PREFIX = "hv-lab"                           # not the simulated backend's names: nothing may assume them
LAB_GUEST = ("2.10", "v1.31.6+rke2r1")          # the guest the lab runs: Rancher line, RKE2 release
LAB_IMAGE = ("default", "image-ubuntu-jammy")     # the VM image the lab's admins uploaded
LAB_BACKUP_TARGET = "nfs://127.0.0.1:/exports/lab-backups"   # the backup target they set (nothing mounts it)
LAB_RUN_ID = "lab-setup"
TIME_SCALE = 60.0


@dataclass
class Lab:
    directory: Path
    version: str
    simulator: SimulatorProcess
    workdir: Path                      # the simulator's own files (token kubeconfig, ready file): not the lab's

    @property
    def config(self) -> Path:
        return self.directory / "lab.yaml"

    def stop(self) -> None:
        self.simulator.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _unanswered_port() -> int:
    """A port on 127.0.0.1 nothing listens on: the other contexts' clusters, which must never be used."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_kubeconfig(directory: Path, admin: dict[str, Any]) -> Path:
    """The cluster's admin context current, between two others a lab engineer also has."""
    cluster, user = admin["clusters"][0]["cluster"], admin["users"][0]["user"]
    decoy = f"https://127.0.0.1:{_unanswered_port()}"
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "staging", "cluster": {"server": decoy, "insecure-skip-tls-verify": True}},
                     {"name": CONTEXT, "cluster": cluster},
                     {"name": "dev-laptop", "cluster": {"server": decoy, "insecure-skip-tls-verify": True}}],
        "users": [{"name": "staging-admin", "user": {"token": "not-this-cluster"}},
                  {"name": f"{CONTEXT}-admin", "user": user}],
        "contexts": [{"name": "staging", "context": {"cluster": "staging", "user": "staging-admin"}},
                     {"name": CONTEXT, "context": {"cluster": CONTEXT, "user": f"{CONTEXT}-admin"}},
                     {"name": "dev-laptop", "context": {"cluster": "dev-laptop", "user": "staging-admin"}}],
        "current-context": CONTEXT,
    }
    return write_private(directory / "kubeconfig", yaml.safe_dump(config, sort_keys=False))


def _ssh_config(directory: Path, nodes: list[dict[str, Any]], key: Path) -> None:
    known = "\n".join(f"[{n['sshHost']}]:{n['sshPort']} {n['hostKey']}" for n in nodes) + "\n"
    known_hosts = write_private(directory / "ssh" / "known_hosts", known)
    hosts = "".join(f"Host {n['name']}\n  HostName {n['sshHost']}\n  Port {n['sshPort']}\n  User {n['sshUser']}\n"
                    f"  IdentityFile {key}\n  UserKnownHostsFile {known_hosts}\n\n" for n in nodes)
    write_private(directory / "ssh" / "config", hosts)


def _cloud_credential(rancher: Kube, harvester_kubeconfig: str) -> str:
    """Rancher's Harvester cloud credential (what "Cloud Credentials > Harvester" makes), `ns:name`."""
    name = f"cc-{secrets.token_hex(3)}"
    rancher.create({"apiVersion": "v1", "kind": "Secret", "type": "provisioning.cattle.io/cloud-credential",
                    "metadata": {"name": name, "namespace": "cattle-global-data",
                                 "annotations": {"field.cattle.io/name": "harvester-lab",
                                                 "provisioning.cattle.io/driver": "harvester"}},
                    "data": {key: base64.b64encode(value.encode()).decode() for key, value in {
                        "harvestercredentialConfig-clusterType": "imported",
                        "harvestercredentialConfig-clusterId": "local",
                        "harvestercredentialConfig-kubeconfigContent": harvester_kubeconfig}.items()}})
    return f"cattle-global-data:{name}"


def _vm_image(host: Kube) -> str:
    namespace, name = LAB_IMAGE
    if host.find("harvesterhci.io/v1beta1", "VirtualMachineImage", name, namespace) is None:
        host.create({"apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineImage",
                     "metadata": {"name": name, "namespace": namespace},
                     "spec": {"displayName": "jammy-server-cloudimg-amd64.img", "sourceType": "download",
                              "url": "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"}})
    return f"{namespace}/{name}"


def _backup_target(host: Kube) -> None:
    """The lab's backup target, set once as its admins set it (Settings > backup-target)."""
    setting = host.find("harvesterhci.io/v1beta1", "Setting", "backup-target") or {}
    if not setting.get("value"):
        configure_backup_target(host, LAB_BACKUP_TARGET)


def _guest(directory: Path, rancher: RancherAccess, budget: Budget) -> tuple[str, Path]:
    """The guest RKE2 cluster the lab runs, provisioned through its Rancher as a lab admin would."""
    local = Kube(rancher.local_kubeconfig())
    name = f"lab-guest-{secrets.token_hex(2)}"
    machine_config, provisioning = provisioning_manifests(name, LAB_GUEST[1], rancher, LAB_RUN_ID)
    local.create(machine_config)
    local.create(provisioning)
    ready = local.wait_for(PROVISIONING, "Cluster", name,
                           lambda o: bool(((o or {}).get("status") or {}).get("clientSecretName")),
                           budget=budget, namespace=FLEET_DEFAULT, awaited=f"the lab's guest cluster {name}")
    assert ready is not None
    secret = local.get("v1", "Secret", ready["status"]["clientSecretName"], FLEET_DEFAULT)
    text = base64.b64decode(secret["data"]["value"]).decode()
    return name, write_private(directory / f"guest-{name}.kubeconfig", text)


def build(directory: Path, version: str, *, nodes: int = 3, time_scale: float = TIME_SCALE,
          budget: Budget = Budget("lab start", 120)) -> Lab:
    """Start a simulator and write the lab's files into `directory` (made if missing, 0700)."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    workdir = Path(tempfile.mkdtemp(prefix="harvester-lab-simulator-"))
    key = generate_keypair(directory / "ssh", "id_ed25519", comment="harvester-lab")
    simulator = start_simulator_process(version, time_scale=time_scale, nodes=nodes, budget=budget, workdir=workdir,
                              ssh_authorized_key=key.public_key_file,
                              client_cert_kubeconfig=workdir / "admin-x509.kubeconfig", node_prefix=NODE_PREFIX)
    lab = Lab(directory, version, simulator, workdir)
    try:
        _write(lab, key.private_key_file, budget)
    except BaseException:
        lab.stop()
        raise
    return lab


def _write(lab: Lab, key_file: Path, budget: Budget) -> None:
    info, directory = lab.simulator.info, lab.directory
    admin = yaml.safe_load(Path(info["clientCertKubeconfig"]).read_text())
    kubeconfig = write_kubeconfig(directory, admin)
    _ssh_config(directory, info["nodes"], key_file)
    vip = info["harvesterApi"]
    vip_ca = write_private(directory / "vip-ca.pem", vip["caPem"])
    mirror_ca = write_private(directory / "release-mirror-ca.pem", info["caPem"])
    host = Kube(kubeconfig, context=CONTEXT)
    image = _vm_image(host)
    _backup_target(host)
    network = f"{info['lab']['vmNetwork']['namespace']}/{info['lab']['vmNetwork']['name']}"
    harvester_kubeconfig = yaml.safe_dump(admin)
    ranchers: list[dict[str, Any]] = []
    accesses: list[RancherAccess] = []
    for entry in info["ranchers"]:
        ca = write_private(directory / "rancher" / f"{entry['version']}-ca.pem", entry["caPem"])
        probe = RancherAccess(entry["url"], token=SecretStr(entry["apiKey"]), ca_file=ca)
        credential = _cloud_credential(Kube(probe.local_kubeconfig()), harvester_kubeconfig)
        template = GuestTemplate(cloud_credential=credential, image=image, network=network)
        accesses.append(dataclasses.replace(probe, guest_template=template))
        ranchers.append({"url": entry["url"], "token": entry["apiKey"], "ca_file": str(ca),
                         "guest": {"cloud_credential": credential, "image": image, "network": network}})
    line = next(a for a, e in zip(accesses, info["ranchers"]) if e["version"].startswith(f"v{LAB_GUEST[0]}."))
    guest_name, guest_kubeconfig = _guest(directory, line, budget)
    pool = info["lab"]["loadBalancerRange"]
    target = upgrade_target(lab.version, [r["version"] for r in info["releases"]])
    stall_min = round(30 / info["timeScale"], 3)
    config = {
        "backend": "existing",
        "existing": {
            "kubeconfig": str(kubeconfig), "context": CONTEXT,
            "nodes": [{"name": n["name"], "host": n["sshHost"], "port": n["sshPort"], "user": n["sshUser"],
                       "key_file": str(key_file), "host_key": n["hostKey"]} for n in info["nodes"]],
            "guest": {"name": guest_name, "kubeconfig": str(guest_kubeconfig)},
            "harvester_api": {"url": vip["url"], "token": vip["apiKey"], "ca_file": str(vip_ca)},
            "lb_address_range": f"{pool['start']}-{pool['end']}",
        },
        "rancher": ranchers,
        "upgrade": {
            "target": target,
            "releases": [{"version": r["version"], "iso_url": r["isoURL"], "iso_checksum": r["isoChecksum"],
                          "ca_file": str(mirror_ca)} for r in info["releases"] if target is not None],
            "stall_window_min": stall_min,
        },
    }
    header = (f"# The lab `harvester-e2e sim up --lab-dir` made: Harvester {lab.version}, simulated at x"
              f"{info['timeScale']:g}\n# (30 simulated minutes of silence = {stall_min} real minutes, hence "
              "stall_window_min).\n# Run: harvester-e2e run --config " + str(lab.config) + "\n")
    write_private(lab.config, header + yaml.safe_dump(config, sort_keys=False))


def upgrade_target(version: str, offered: list[str]) -> str | None:
    """The target a QA engineer would give this lab: from a release candidate, the development build (the
    RC -> master path of harvester/harvester#8001); from a release, the newest later release; else the
    development build. None from a development build (upstream's guard refuses dev -> release)."""
    if is_dev_build(version):
        return None
    dev = [v for v in offered if is_dev_build(v)]
    later = sorted((v for v in offered if not is_dev_build(v) and compare(v, version) > 0), key=order_key)
    if SemVer.parse(version.lstrip("v")).prerelease or not later:
        if not dev:
            raise ValueError(f"the lab offers no upgrade target for {version}: {', '.join(offered)}")
        return dev[-1]
    return later[-1]


@contextlib.contextmanager
def running(directory: Path, version: str, **options: Any) -> Iterator[Lab]:
    lab = build(directory, version, **options)
    try:
        yield lab
    finally:
        lab.stop()


def serve_foreground(directory: Path, version: str, *, nodes: int, time_scale: float) -> int:
    """`harvester-e2e sim up --lab-dir`: the lab until Ctrl-C (or SIGTERM), then the simulator is stopped."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with running(directory, version, nodes=nodes, time_scale=time_scale) as lab:
        print(f"Lab ready: Harvester {version} ({nodes} nodes, x{time_scale:g}) in {lab.directory}", flush=True)
        print(f"  harvester-e2e run --config {lab.config}", flush=True)
        print(f"  kubectl --kubeconfig {lab.directory / 'kubeconfig'} get nodes", flush=True)
        print(f"  ssh -F {lab.directory / 'ssh' / 'config'} {lab.simulator.info['nodes'][0]['name']}", flush=True)
        print("Ctrl-C stops it.", flush=True)
        while not stop.wait(1.0):                  # until a signal, or the simulator dies by itself
            if lab.simulator.exit_reason() is not None:
                print(f"error: {lab.simulator.exit_reason()}", file=sys.stderr)
                return 1
    return 0


def run_suite(directory: Path, version: str, run_args: list[str]) -> int:
    """`harvester-e2e lab run`: a lab, the suite against it as `--backend existing` in its own process."""
    with running(directory, version) as lab:
        command = [sys.executable, "-m", "infra.cli", "run", "--config", str(lab.config), *run_args]
        print("+ " + " ".join(command), flush=True)
        return subprocess.call(command, cwd=Path(__file__).resolve().parents[1])


