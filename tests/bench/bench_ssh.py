"""`make bench`: SSH to a simulated node through the harness's client (infra/ssh), printed as a table.

- command round trip on an open session (a new channel per command), p50 / p95;
- a new session (TCP, key exchange, public-key auth), p50 / p95;
- `sudo kubectl get nodes` over SSH (runs the real kubectl against the simulator), p50 / p95;
- a reboot over SSH until the session answers with a new boot id (time scale x60).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.backends.simulated import start_simulator_process  # noqa: E402
from infra.ssh import KnownHosts, SshNode, SshTarget, generate_keypair  # noqa: E402
from infra.waits.budget import Budget  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def timed(samples: int, action: Callable[[], object]) -> list[float]:
    timings = []
    for _ in range(samples):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return timings


def ms(values: list[float]) -> str:
    return f"{pct(values, 0.5) * 1000:.1f} / {pct(values, 0.95) * 1000:.1f}  (n={len(values)})"


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    keys = generate_keypair(workdir / "ssh")
    simulator = start_simulator_process("v1.4.2", time_scale=60, nodes=3, workdir=workdir / "simulator",
                              budget=Budget("bench simulator", 60), ssh_authorized_key=keys.public_key_file)
    try:
        node = simulator.info["nodes"][0]
        target = SshTarget(node["name"], node["sshHost"], node["sshPort"], key_file=keys.private_key_file,
                           host_key=node["hostKey"])
        known = KnownHosts(workdir / "known_hosts")
        session = SshNode(target, known)
        session.run("true", check=True)                                   # warm up
        figures: dict[str, str] = {}
        figures["command round trip, open session, p50 / p95 (ms)"] = ms(
            timed(500, lambda: session.run("cat /etc/os-release", check=True)))

        def new_session() -> None:
            with SshNode(target, known) as fresh:
                fresh.run("true", check=True)
        figures["new session + command, p50 / p95 (ms)"] = ms(timed(30, new_session))
        figures["sudo kubectl get nodes over SSH, p50 / p95 (ms)"] = ms(
            timed(20, lambda: session.sudo("kubectl get nodes", check=True)))
        started = time.perf_counter()
        session.reboot(Budget("bench reboot", 60))
        figures["reboot until the session answers again, x60 (s)"] = f"{time.perf_counter() - started:.1f}"
        width = max(len(k) for k in figures)
        print(f"\nSSH to a simulated node (this machine: {os.cpu_count() or 0} cores)")
        for key, value in figures.items():
            print(f"  {key.ljust(width)}  {value}")
        print(json.dumps(figures), file=sys.stderr)
        session.close()
        return 0
    finally:
        simulator.stop()


if __name__ == "__main__":
    sys.exit(main())
