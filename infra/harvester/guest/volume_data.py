"""A workload that keeps data on a guest volume, and a way to write and read that data.

`DataWorkload` is a one-replica Deployment mounting a PVC at /data. Data goes through `PodFiles`:
`ExecPodFiles` runs `sh -c` in the pod through the API's exec subresource, on a real cluster and on
the simulated one alike. The checksum is always computed here from the bytes read back, never taken
from the cluster.
"""
from __future__ import annotations

import base64
import hashlib
import os
import shlex
from dataclasses import dataclass
from typing import Any, Protocol

from infra.cleanup import CleanupStack
from infra.failures import ProductFailure
from infra.kube import Kube
from infra.waits.budget import Budget

from ..names import RUN_ID_LABEL
from .rollout import ready_pods

Obj = dict[str, Any]
MOUNT = "/data"
PAYLOAD = f"{MOUNT}/payload.bin"
CHECKSUM = f"{MOUNT}/payload.bin.sha256"


class PodFiles(Protocol):
    def write(self, namespace: str, pod: str, path: str, data: bytes) -> None: ...

    def read(self, namespace: str, pod: str, path: str) -> bytes: ...


class PodCommandFailed(RuntimeError):
    """A command run in a pod through exec exited non-zero (or never finished): its exit code and stderr."""

    def __init__(self, namespace: str, pod: str, what: str, exit_code: int | None, stderr: str) -> None:
        self.exit_code, self.stderr = exit_code, stderr
        ended = f"exited {exit_code}" if exit_code is not None else "did not finish"
        detail = stderr.strip() or "(no stderr)"
        super().__init__(f"{what} in pod {namespace}/{pod} {ended}: {detail}")


class ExecPodFiles:
    """Files in a pod, through the exec subresource: `sh -c` with base64 so binary data survives.

    stdout and stderr are read apart (only stdout is data); a command that fails raises `PodCommandFailed`
    with its exit code and stderr. Writes go in chunks so each command line stays well under the API
    server's 1 MiB request-line limit."""

    CHUNK_BYTES = 48 * 1024                  # 64 KiB of base64 per command

    def __init__(self, guest_kube: Kube) -> None:
        self.kube = guest_kube

    def _exec(self, namespace: str, pod: str, script: str, what: str) -> str:
        from kubernetes.client import CoreV1Api
        from kubernetes.stream import stream

        client = stream(CoreV1Api(self.kube.api_client).connect_get_namespaced_pod_exec, pod, namespace,
                        command=["sh", "-c", script], stderr=True, stdin=False, stdout=True, tty=False,
                        _preload_content=False, _request_timeout=self.kube.request_timeout)
        try:
            client.run_forever(timeout=self.kube.request_timeout)
            stdout, stderr = client.read_stdout(), client.read_stderr()
            exit_code = client.returncode
        finally:
            client.close()
        if exit_code != 0:
            raise PodCommandFailed(namespace, pod, what, exit_code, stderr)
        return str(stdout)

    def write(self, namespace: str, pod: str, path: str, data: bytes) -> None:
        target = shlex.quote(path)
        chunks = [data[i:i + self.CHUNK_BYTES] for i in range(0, len(data), self.CHUNK_BYTES)] or [b""]
        for index, chunk in enumerate(chunks):
            encoded = base64.b64encode(chunk).decode()
            redirect = ">" if index == 0 else ">>"
            self._exec(namespace, pod, f"printf '%s' '{encoded}' | base64 -d {redirect} {target}",
                       f"writing {path} (part {index + 1} of {len(chunks)})")
        self._exec(namespace, pod, "sync", f"sync after writing {path}")

    def read(self, namespace: str, pod: str, path: str) -> bytes:
        encoded = self._exec(namespace, pod, f"base64 -w0 {shlex.quote(path)}", f"reading {path}")
        return base64.b64decode(encoded.strip())



@dataclass(frozen=True)
class DataRecord:
    """What was written: the payload's size and sha256, and the checksum file's line."""

    size: int
    sha256: str

    @property
    def checksum_line(self) -> bytes:
        return f"{self.sha256}  payload.bin\n".encode()


class DataNotIntact(ProductFailure):
    """The data read back is not the data written."""


@dataclass
class DataWorkload:
    namespace: str
    name: str
    claim: str

    @property
    def selector(self) -> str:
        return f"app={self.name}"

    def manifest(self, run_id: str) -> Obj:
        labels = {"app": self.name, RUN_ID_LABEL: run_id}
        return {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": labels},
                "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                         "selector": {"matchLabels": {"app": self.name}},
                         "template": {"metadata": {"labels": labels}, "spec": {
                             "containers": [{"name": "writer", "image": "busybox:1.36",
                                             "command": ["sh", "-c", "sleep infinity"],
                                             "volumeMounts": [{"name": "data", "mountPath": MOUNT}]}],
                             "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": self.claim}}]}}}}


def claim_manifest(namespace: str, name: str, run_id: str, size: str = "1Gi", storage_class: str = "harvester") -> Obj:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "labels": {RUN_ID_LABEL: run_id}},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": size}}}}


def scale(kube: Kube, workload: DataWorkload, replicas: int, budget: Budget) -> list[Obj]:
    """Scale and wait: 0 means every pod gone, n means n Ready pods of the current template."""
    kube.patch("apps/v1", "Deployment", workload.name, {"spec": {"replicas": replicas}}, namespace=workload.namespace)

    def settled(pods: list[Obj]) -> bool:
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if any(c.get("type") == "Ready" and c.get("status") == "True"
                                        for c in (p.get("status") or {}).get("conditions") or [])]
        return len(live) == replicas and len(ready) == replicas

    kube.wait_for_all("v1", "Pod", settled, budget=budget, namespace=workload.namespace,
                      label_selector=workload.selector,
                      awaited=f"{workload.name} to have {replicas} Ready pod(s) and no others")
    return ready_pods(kube, workload.namespace, workload.selector)


def the_pod(kube: Kube, workload: DataWorkload) -> Obj:
    pods = ready_pods(kube, workload.namespace, workload.selector)
    if len(pods) != 1:
        raise DataNotIntact(f"{workload.name} has {len(pods)} Ready pods, expected 1")
    return pods[0]


def write_data(files: PodFiles, workload: DataWorkload, pod: str, size: int = 256 * 1024) -> DataRecord:
    payload = os.urandom(size)
    record = DataRecord(size, hashlib.sha256(payload).hexdigest())
    files.write(workload.namespace, pod, PAYLOAD, payload)
    files.write(workload.namespace, pod, CHECKSUM, record.checksum_line)
    return record


def verify_data(files: PodFiles, workload: DataWorkload, pod: str, record: DataRecord) -> str:
    """Read the payload and its checksum file back; the sha256 is computed from the bytes read."""
    payload = files.read(workload.namespace, pod, PAYLOAD)
    stored_line = files.read(workload.namespace, pod, CHECKSUM)
    actual = hashlib.sha256(payload).hexdigest()
    problems = []
    if len(payload) != record.size:
        problems.append(f"payload is {len(payload)} bytes, {record.size} were written")
    if actual != record.sha256:
        problems.append(f"payload sha256 is {actual}, {record.sha256} was written")
    if stored_line != record.checksum_line:
        problems.append(f"checksum file holds {stored_line[:80]!r}, expected {record.checksum_line!r}")
    if problems:
        raise DataNotIntact(f"data on {workload.namespace}/{workload.claim} changed: " + "; ".join(problems),
                            evidence={"pod": pod, "written sha256": record.sha256, "read sha256": actual})
    return actual


def deploy(kube: Kube, namespace: str, run_id: str, cleanup: CleanupStack, budget: Budget, gone: Budget,
           name: str = "data-writer", claim: str = "data") -> tuple[DataWorkload, Obj]:
    """A PVC on `harvester` and a one-replica workload mounting it; undos registered before each create."""
    data = DataWorkload(namespace, name, claim)
    cleanup.delete_later(kube, "v1", "PersistentVolumeClaim", claim, namespace, budget=gone)
    kube.create(claim_manifest(namespace, claim, run_id))
    cleanup.delete_later(kube, "apps/v1", "Deployment", name, namespace, budget=gone)
    kube.create(data.manifest(run_id))
    return data, scale(kube, data, 1, budget)[0]
