"""Helpers for the upgrade tests: the simulator's release server over HTTPS, Versions naming its ISOs, bounded waits."""
from __future__ import annotations

import base64
import datetime as dt
import ssl
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import yaml

from infra.backends.simulated import SimulatorProcess
from infra.kube import Kube
from infra.simulator.harvester.helm_storage import decode_release_secret, release_secret, secret_name
from infra.simulator.harvester.versions import get_version
from infra.waits.budget import Budget

HARVESTER = "harvesterhci.io/v1beta1"
NS = "harvester-system"
STATE = "harvesterhci.io/upgradeState"
Obj = dict[str, Any]


def server_of(simulator: SimulatorProcess) -> tuple[str, ssl.SSLContext, str]:
    """(base URL, an SSL context trusting the simulator's CA, bearer token) from the simulator's kubeconfig."""
    config = yaml.safe_load(Path(simulator.kubeconfig).read_text())
    cluster = config["clusters"][0]["cluster"]
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        ca.write(base64.b64decode(cluster["certificate-authority-data"]))
        ca.flush()
        context = ssl.create_default_context(cafile=ca.name)
    return cluster["server"], context, config["users"][0]["user"]["token"]


def http(simulator: SimulatorProcess, path: str, *, method: str = "GET", headers: dict[str, str] | None = None,
         token: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One request to the simulator's listener; (status, headers, body), error statuses included."""
    base, context, bearer = server_of(simulator)
    request = urllib.request.Request(base + path, method=method, headers=dict(headers or {}))
    if token:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, context=context, timeout=20) as response:  # noqa: S310 - https
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def release_iso_path(version: str) -> str:
    channel = get_version(version).release_channel
    return f"/harvester-releases/{channel}/harvester-{channel}-amd64.iso"


def version_object(simulator: SimulatorProcess, name: str, *, iso_of: str | None = None, checksum: str | None = None,
                   iso_url: str | None = None) -> Obj:
    """A Version named `name` whose isoURL is the simulator's ISO of `iso_of` (default: `name`) and its sha512."""
    base, _, _ = server_of(simulator)
    source = iso_of or name
    path = release_iso_path(source)
    if checksum is None:
        status, _, body = http(simulator, path[: -len(".iso")] + ".sha512")
        assert status == 200, body
        checksum = body.decode().split()[0]
    spec: Obj = {"isoURL": iso_url or base + path}
    if checksum:
        spec["isoChecksum"] = checksum
    return {"apiVersion": HARVESTER, "kind": "Version", "metadata": {"name": name, "namespace": NS}, "spec": spec}


def start_upgrade(kube: Kube, simulator: SimulatorProcess, target: str, *, name: str = "hvst-upgrade-t0001",
                  annotations: dict[str, str] | None = None, version: Obj | None = None) -> str:
    if kube.find(HARVESTER, "Version", target, NS) is None:
        kube.create(version or version_object(simulator, target))
    meta: Obj = {"name": name, "namespace": NS}
    if annotations:
        meta["annotations"] = annotations
    kube.create({"apiVersion": HARVESTER, "kind": "Upgrade", "metadata": meta,
                 "spec": {"version": target, "logEnabled": True}})
    return name


def watch_upgrade(kube: Kube, name: str, until: Callable[[Obj], bool], seconds: float = 120) -> list[Obj]:
    """Every state of the Upgrade the watch delivers, until `until(upgrade)` holds."""
    seen: list[Obj] = []

    def record(obj: Obj | None) -> bool:
        if obj is None:
            return False
        if not seen or seen[-1] != obj:
            seen.append(obj)
        return until(obj)

    kube.wait_for(HARVESTER, "Upgrade", name, record, budget=Budget(f"upgrade {name}", seconds),
                  awaited=f"Upgrade {name}", namespace=NS)
    return seen


def state(obj: Obj) -> str:
    return (obj["metadata"].get("labels") or {}).get(STATE, "")


def condition(obj: Obj, ctype: str) -> Obj:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


def includes(whole: Obj, part: Obj) -> bool:
    return all(whole.get(key) == value for key, value in part.items())


def terminal(obj: Obj) -> bool:
    return state(obj) in ("Succeeded", "Failed")


def node_state_sequences(seen: list[Obj]) -> dict[str, list[str]]:
    sequences: dict[str, list[str]] = {}
    for obj in seen:
        for node, status in ((obj.get("status") or {}).get("nodeStatuses") or {}).items():
            states = sequences.setdefault(node, [])
            if not states or states[-1] != status["state"]:
                states.append(status["state"])
    return sequences


def label_sequence(seen: list[Obj]) -> list[str]:
    labels: list[str] = []
    for obj in seen:
        if state(obj) and (not labels or labels[-1] != state(obj)):
            labels.append(state(obj))
    return labels


def apply_manifests_log(kube: Kube, name: str) -> list[str]:
    pods = kube.list("v1", "Pod", NS, label_selector=f"job-name={name}-apply-manifests")
    lines: list[str] = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"]):
        lines += kube.pod_log(pod["metadata"]["name"], NS, container="apply").splitlines()
    return lines


def wait_until(predicate: Callable[[], bool], seconds: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:       # bounded by the deadline
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"not within {seconds} s: {what}")


def helm_upgrade_over_api(kube: Kube, namespace: str, release: str, chart: str, app: str) -> None:
    """What `helm upgrade` writes: revision n+1 deployed, the deployed one superseded (Helm's Secret storage)."""
    secrets = kube.list("v1", "Secret", namespace, label_selector=f"owner=helm,name={release}")
    records = sorted((decode_release_secret(s) for s in secrets), key=lambda r: r["version"])
    latest = records[-1]
    now = dt.datetime.now(dt.timezone.utc)
    for record in records:
        if record["info"]["status"] == "deployed":
            old = release_secret(release, namespace, release, record["chart"]["metadata"]["version"],
                                 record["chart"]["metadata"].get("appVersion", ""), record["version"], "superseded",
                                 now, record.get("config"))
            kube.patch("v1", "Secret", secret_name(release, record["version"]),
                       {"data": old["data"], "metadata": {"labels": {"status": "superseded"}}}, namespace=namespace)
    kube.create(release_secret(release, namespace, release, chart, app, latest["version"] + 1, "deployed", now,
                               latest.get("config")))
