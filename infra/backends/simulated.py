"""The default backend: a Harvester twin per version, each its own child process on 127.0.0.1.

The harness talks to it only over the wire (HTTPS with the twin's CA, bearer token), exactly as
to a real cluster. Children die with the parent (PR_SET_PDEATHSIG) and are stopped by SIGTERM.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import tenacity

from infra.config import RunConfig
from infra.waits.budget import Budget

from .base import Backend, BackendError, Cluster, NodeHandle

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class TwinProcess:
    version: str
    process: subprocess.Popen[bytes]
    workdir: Path
    kubeconfig: Path
    log_path: Path

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


def start_twin_process(version: str, *, time_scale: float, nodes: int, budget: Budget,
                       workdir: Path | None = None) -> TwinProcess:
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"harvester-twin-{version}-"))
    workdir.mkdir(parents=True, exist_ok=True)
    kubeconfig, ready, log_path = workdir / "kubeconfig", workdir / "ready.json", workdir / "twin.log"
    command = [sys.executable, "-m", "infra.simulator", "--version", version, "--kubeconfig", str(kubeconfig),
               "--ready-file", str(ready), "--time-scale", str(time_scale), "--nodes", str(nodes),
               "--log-level", "INFO"]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   cwd=Path(__file__).resolve().parents[2], preexec_fn=_die_with_parent)
    twin = TwinProcess(version, process, workdir, kubeconfig, log_path)

    def ready_or_dead() -> bool:
        if process.poll() is not None:
            raise BackendError(f"the simulated Harvester {version} exited with status {process.returncode} "
                               f"before serving; its log ends with:\n{twin.stderr_tail()}")
        return ready.exists()

    try:
        tenacity.Retrying(retry=tenacity.retry_if_result(lambda ok: not ok),
                          wait=tenacity.wait_exponential(multiplier=0.02, max=0.25),
                          stop=tenacity.stop_after_delay(budget.seconds))(ready_or_dead)
    except tenacity.RetryError:
        twin.stop()
        raise BackendError(f"budget '{budget.name}' ({budget.seconds:.0f}s) ran out waiting for the simulated "
                           f"Harvester {version} to serve; its log ends with:\n{twin.stderr_tail()}") from None
    except BackendError:
        twin.stop()
        raise
    json.loads(ready.read_text())
    return twin


class SimulatedBackend(Backend):
    name = "simulated"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self._twins: dict[str, TwinProcess] = {}
        self._clusters: dict[str, Cluster] = {}

    def acquire(self, harvester_version: str) -> Cluster:
        if harvester_version in self._clusters and self._twins[harvester_version].process.poll() is None:
            return self._clusters[harvester_version]
        sim = self.config.simulated
        workdir = (self.config.artifacts_dir / self.config.run_id / f"twin-{harvester_version}").resolve()
        twin = start_twin_process(harvester_version, time_scale=sim.time_scale, nodes=sim.nodes, workdir=workdir,
                                  budget=Budget("simulated cluster start", sim.startup_timeout_s))
        self._twins[harvester_version] = twin
        cluster = Cluster(name=f"twin-{harvester_version}", backend=self.name, kubeconfig=twin.kubeconfig,
                          harvester_version=harvester_version, run_id=self.config.run_id, simulated=True,
                          nodes=[NodeHandle(f"harvester-node-{i}") for i in range(sim.nodes)])
        self._clusters[harvester_version] = cluster
        return cluster

    def release_all(self) -> None:
        for twin in self._twins.values():
            twin.stop()
        self._twins.clear()
        self._clusters.clear()


def run_foreground(argv: list[str]) -> int:
    """`harvester-e2e sim up`: the twin in this process, printing the export line once it serves."""
    from infra.simulator.__main__ import main

    def announce(_twin: object, info: dict[str, object]) -> None:
        print(f"Simulated Harvester {info['harvesterVersion']} serving at {info['url']} "
              f"(time scale x{info['timeScale']}). Ctrl-C stops it.", flush=True)
        print(f"export KUBECONFIG={info['kubeconfig']}", flush=True)

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return main(argv, announce=announce)
