"""Shared pieces of the guest-cluster tests: a lab of their own, guests provisioned through Rancher.

A lab is a simulator started with simulated Ranchers (`python -m infra.simulator --rancher ...`). A guest
is asked for as Rancher Manager users ask for one: a HarvesterConfig and a provisioning Cluster in
`fleet-default` of that Rancher's local cluster; its kubeconfig is the Secret Rancher publishes.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import tenacity
import yaml

from infra.backends.simulated import SimulatorProcess
from infra.harvester.guest import charts
from infra.harvester.guest import cluster as guests
from infra.harvester.names import RUN_ID_LABEL
from infra.kube import Kube
from infra.waits.budget import Budget

RUN_ID = "guest-tests"
BUDGET = Budget("guest test wait", 60)
RANCHERS = {"2.8": "v2.8.13", "2.9": "v2.9.5", "2.10": "v2.10.3", "2.11": "v2.11.3"}
WORKSPACE = "fleet-default"
REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Lab:
    """A simulator with its Ranchers, reached only over the wire (the ready file says where)."""

    process: SimulatorProcess
    info: dict[str, Any]
    _ranchers: dict[str, Kube] = field(default_factory=dict)

    def stop(self) -> None:
        self.process.stop()

    def rancher_info(self, line: str) -> dict[str, Any]:
        version = RANCHERS.get(line, line)
        return next(r for r in self.info["ranchers"] if r["version"] == version)

    def rancher(self, line: str) -> Kube:
        """A Kube on that Rancher's local cluster, through its Rancher kubeconfig."""
        version = RANCHERS.get(line, line)
        if version not in self._ranchers:
            self._ranchers[version] = Kube(Path(self.rancher_info(version)["kubeconfig"]), unavailable_budget=20)
        return self._ranchers[version]


class LabHost(Kube):
    """The Harvester host's Kube, knowing the lab it belongs to."""

    lab: Lab


def start_lab(tmp: Path, ranchers: tuple[str, ...] = tuple(RANCHERS.values()), *,
              extra: tuple[str, ...] = (), budget: Budget = Budget("lab start in tests", 60)) -> Lab:
    tmp.mkdir(parents=True, exist_ok=True)
    kubeconfig, ready, log_path = tmp / "kubeconfig", tmp / "ready.json", tmp / "simulator.log"
    command = [sys.executable, "-m", "infra.simulator", "--version", "v1.4.2", "--kubeconfig", str(kubeconfig),
               "--ready-file", str(ready), "--time-scale", "60", "--nodes", "3", "--log-level", "INFO", *extra]
    for version in ranchers:
        command += ["--rancher", version]
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=REPO_ROOT, env={**os.environ})
    simulator = SimulatorProcess("v1.4.2", process, tmp, kubeconfig, log_path)

    def ready_or_dead() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the lab exited with {process.returncode}:\n{simulator.stderr_tail()}")
        return ready.exists()

    try:
        tenacity.Retrying(retry=tenacity.retry_if_result(lambda ok: not ok), wait=tenacity.wait_fixed(0.1),
                          stop=tenacity.stop_after_delay(budget.seconds), reraise=True)(ready_or_dead)
    except BaseException:
        simulator.stop()
        raise
    simulator.info = json.loads(ready.read_text())
    return Lab(simulator, simulator.info)


@contextlib.contextmanager
def host_kube(tmp: Path) -> Iterator[LabHost]:
    """The Harvester host of a lab of the test module's own (guests add VMs, volumes and pools), stopped after."""
    lab = start_lab(tmp)
    try:
        host = LabHost(lab.process.kubeconfig, unavailable_budget=20)
        host.lab = lab
        yield host
    finally:
        lab.stop()


def harvester_config(name: str, vm_namespace: str = "default", **fields: str) -> dict[str, Any]:
    """A HarvesterConfig as the dashboard writes one for a Harvester node pool."""
    return {"apiVersion": "rke-machine-config.cattle.io/v1", "kind": "HarvesterConfig",
            "metadata": {"name": name, "namespace": WORKSPACE},
            "vmNamespace": vm_namespace, "cpuCount": "4", "memorySize": "8", "diskSize": "40", "diskBus": "virtio",
            "diskInfo": json.dumps({"disks": [{"size": 40, "bootOrder": 1}]}),
            "networkInfo": json.dumps({"interfaces": [{"networkName": "default/vm-network"}]}),
            "sshUser": "ubuntu", **fields}


def provisioning_cluster(name: str, rke2: str, config: str, *, servers: int = 1, agents: int = 2) -> dict[str, Any]:
    """A provisioning Cluster: one pool of servers (etcd, control plane, worker), one of agents."""
    ref = {"kind": "HarvesterConfig", "name": config}
    pools = [{"name": "cp", "quantity": servers, "etcdRole": True, "controlPlaneRole": True, "workerRole": True,
              "machineConfigRef": ref}]
    if agents:
        pools.append({"name": "wk", "quantity": agents, "workerRole": True, "machineConfigRef": ref})
    return {"apiVersion": "provisioning.cattle.io/v1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": WORKSPACE, "labels": {RUN_ID_LABEL: RUN_ID}},
            "spec": {"kubernetesVersion": rke2, "rkeConfig": {"machinePools": pools}}}


def guest_kubeconfig(rancher: Kube, name: str) -> dict[str, Any]:
    secret = rancher.get("v1", "Secret", f"{name}-kubeconfig", WORKSPACE)
    return yaml.safe_load(base64.b64decode(secret["data"]["value"]))


def provision(host: LabHost, name: str, rke2: str, rancher_line: str, *, vm_namespace: str = "default",
              budget: Budget = BUDGET) -> guests.GuestCluster:
    rancher = host.lab.rancher(rancher_line)
    rancher.create(harvester_config(f"nc-{name}-pool", vm_namespace))
    rancher.create(provisioning_cluster(name, rke2, f"nc-{name}-pool"))
    cluster = rancher.wait_for("provisioning.cattle.io/v1", "Cluster", name,
                               lambda c: bool(((c or {}).get("status") or {}).get("ready")), budget=budget,
                               namespace=WORKSPACE, awaited=f"Cluster {name} ready")
    assert cluster is not None and cluster["status"]["clientSecretName"] == f"{name}-kubeconfig"
    path = Path(tempfile.mkdtemp(prefix="harvester-e2e-guest-")) / f"{name}.kubeconfig"   # 0700
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(guest_kubeconfig(rancher, name), handle)
    return guests.GuestCluster(name, path, host, vm_namespace, )


def deprovision(host: LabHost, name: str, rancher_line: str, budget: Budget = BUDGET) -> None:
    rancher = host.lab.rancher(rancher_line)
    if rancher.find("provisioning.cattle.io/v1", "Cluster", name, WORKSPACE) is not None:
        rancher.delete("provisioning.cattle.io/v1", "Cluster", name, WORKSPACE)
        rancher.wait_for_gone("provisioning.cattle.io/v1", "Cluster", name, budget=budget, namespace=WORKSPACE)


@contextlib.contextmanager
def a_guest(host: Kube, rke2: str = "v1.31.6+rke2r1", rancher: str = "2.10") -> Iterator[guests.GuestCluster]:
    assert isinstance(host, LabHost), "guests come from a lab's Rancher: use host_kube()"
    name = guests.guest_name("t")
    guest = provision(host, name, rke2, rancher)
    try:
        yield guest
    finally:
        deprovision(host, name, rancher)
        guests.forget_kubeconfig(guest)


def installer(guest: guests.GuestCluster, budget: Budget = BUDGET, **options: int) -> charts.HelmChartInstaller:
    return charts.HelmChartInstaller(guest.kube(), RUN_ID, budget, **options)
