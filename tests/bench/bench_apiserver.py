"""`make bench`: figures for the simulated API server and the harness's waits, printed as a table.

- GETs per second (the `kubernetes` client, one connection; and raw keep-alive HTTPS, 4 threads);
- listing 1,000 objects (median of 5);
- watch delivery latency from the start of a write to the event at a watching client (p50, p95);
- `wait_for` reaction time versus a 5-second polling loop on the same change (p50, p95, ratio).
Targets (issue #2): watch p95 < 50 ms, wait_for reaction p95 < 100 ms, >= 500 GETs/s.
"""
from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import kubernetes
import urllib3
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from infra.backends.simulated import start_simulator_process  # noqa: E402
from infra.kube import Kube  # noqa: E402
from infra.waits.budget import Budget  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cm(name: str, ns: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def gets_per_second_client(kube: Kube, ns: str, seconds: float = 5.0) -> float:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    count, end = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < end:
        core.read_namespaced_config_map("target", ns)
        count += 1
    return count / (time.perf_counter() - start)


def gets_per_second_raw(kubeconfig: Path, ns: str, threads: int = 4, seconds: float = 5.0) -> float:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, token = config["clusters"][0]["cluster"], config["users"][0]["user"]["token"]
    import base64

    ca = tempfile.NamedTemporaryFile("wb", suffix=".crt", delete=False)
    ca.write(base64.b64decode(cluster["certificate-authority-data"]))
    ca.close()
    pool = urllib3.PoolManager(maxsize=threads, ca_certs=ca.name, cert_reqs="CERT_REQUIRED")
    url = f"{cluster['server']}/api/v1/namespaces/{ns}/configmaps/target"
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    end = time.perf_counter() + seconds

    def worker() -> int:
        n = 0
        while time.perf_counter() < end:
            response = pool.request("GET", url, headers=headers)
            assert response.status == 200
            n += 1
        return n

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as executor:
        total = sum(executor.map(lambda _: worker(), range(threads)))
    return total / (time.perf_counter() - start)


def list_thousand(kube: Kube, ns: str) -> float:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    for i in range(1000):
        core.create_namespaced_config_map(ns, cm(f"item-{i:04d}", ns, i=str(i)))
    timings = []
    for _ in range(5):
        start = time.perf_counter()
        items = core.list_namespaced_config_map(ns).items
        timings.append(time.perf_counter() - start)
        assert len(items) == 1000
    return statistics.median(timings)


def watch_latency(kube: Kube, ns: str, samples: int = 200) -> list[float]:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    rv = core.list_namespaced_config_map(ns, field_selector="metadata.name=nothing").metadata.resource_version
    written: dict[str, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def watch() -> None:
        for event in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=rv,
                                                     timeout_seconds=60):
            name = event["object"].metadata.name
            if event["type"] == "ADDED" and name in written:
                latencies.append(time.perf_counter() - written[name])
                if len(latencies) == samples:
                    done.set()
                    return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.5)
    writer = kubernetes.client.CoreV1Api(Kube(kube.kubeconfig).api_client)
    for i in range(samples):
        name = f"lat-{i}"
        written[name] = time.perf_counter()
        writer.create_namespaced_config_map(ns, cm(name, ns))
        time.sleep(0.01)
    done.wait(30)
    return latencies


def reaction_times(kube: Kube, ns: str, trials: int, poll: float | None) -> list[float]:
    """Time from a change to the waiter noticing it: wait_for (poll=None) or a polling loop."""
    core = kubernetes.client.CoreV1Api(kube.api_client)
    results = []
    for i in range(trials):
        name = f"react-{'poll' if poll else 'watch'}-{i}"
        core.create_namespaced_config_map(ns, cm(name, ns))
        changed_at: dict[str, float] = {}

        def change() -> None:
            changed_at["t"] = time.perf_counter()
            core.patch_namespaced_config_map(name, ns, {"data": {"ready": "yes"}})

        timer = threading.Timer(random.uniform(0.2, 1.0), change)
        timer.start()
        if poll is None:
            kube.wait_for("v1", "ConfigMap", name, lambda o: (o or {}).get("data", {}).get("ready") == "yes",
                          budget=Budget("bench", 30), awaited="ready", namespace=ns)
        else:
            while (core.read_namespaced_config_map(name, ns).data or {}).get("ready") != "yes":
                time.sleep(poll)
        noticed = time.perf_counter()
        timer.join()
        results.append(noticed - changed_at["t"])
    return results


def main() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="bench-simulator-"))
    simulator = start_simulator_process("v1.4.2", time_scale=60, nodes=3, workdir=workdir, budget=Budget("bench simulator", 60))
    try:
        kube = Kube(simulator.kubeconfig)
        ns = "bench"
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.create(cm("target", ns, a="1"))
        figures: dict[str, str] = {}
        figures["GET/s, kubernetes client, 1 connection"] = f"{gets_per_second_client(kube, ns):.0f}"
        figures["GET/s, raw HTTPS keep-alive, 4 threads"] = f"{gets_per_second_raw(simulator.kubeconfig, ns):.0f}"
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench-list"}})
        figures["list 1,000 ConfigMaps, median of 5 (ms)"] = f"{list_thousand(kube, 'bench-list') * 1000:.0f}"
        latencies = watch_latency(kube, ns)
        figures["watch delivery p50 / p95 (ms)"] = (f"{pct(latencies, 0.5) * 1000:.1f} / "
                                                    f"{pct(latencies, 0.95) * 1000:.1f}  (n={len(latencies)})")
        waited = reaction_times(kube, ns, trials=20, poll=None)
        polled = reaction_times(kube, ns, trials=6, poll=5.0)
        figures["wait_for reaction p50 / p95 (ms)"] = f"{pct(waited, 0.5) * 1000:.1f} / {pct(waited, 0.95) * 1000:.1f}"
        figures["5 s polling reaction p50 / p95 (ms)"] = f"{pct(polled, 0.5) * 1000:.0f} / {pct(polled, 0.95) * 1000:.0f}"
        figures["polling / wait_for, ratio of p50"] = f"{pct(polled, 0.5) / pct(waited, 0.5):.0f}x"
        width = max(len(k) for k in figures)
        print("\nAPI server and wait figures (this machine: %d cores)" % (__import__("os").cpu_count() or 0))
        for key, value in figures.items():
            print(f"  {key.ljust(width)}  {value}")
        print(json.dumps(figures), file=sys.stderr)
        return 0
    finally:
        simulator.stop()


if __name__ == "__main__":
    sys.exit(main())
