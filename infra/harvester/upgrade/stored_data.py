"""A workload recorded before an upgrade and checked after it: data whose checksum must not change.

The data is 64 KiB of random bytes kept in the cluster (a ConfigMap's binaryData, i.e. etcd); the
checksum is computed from the bytes read back, never stored alongside them as the thing compared.
"""
from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from infra.cleanup import CleanupStack
from infra.kube import Kube
from infra.waits.budget import Budget

from ..names import RUN_ID_LABEL


@dataclass(frozen=True)
class RecordedWorkload:
    namespace: str
    name: str
    sha256: str
    size: int

    def read_checksum(self, kube: Kube) -> str:
        stored = kube.get("v1", "ConfigMap", self.name, self.namespace)
        return hashlib.sha256(base64.b64decode(stored["binaryData"]["data"])).hexdigest()


def record_workload(kube: Kube, run_id: str, cleanup: CleanupStack, gone: Budget,
                    size: int = 64 * 1024) -> RecordedWorkload:
    namespace = f"e2e-{run_id}"[:63].rstrip("-")
    if kube.find("v1", "Namespace", namespace) is None:
        cleanup.delete_later(kube, "v1", "Namespace", namespace, budget=gone)
        kube.create({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": namespace, "labels": {RUN_ID_LABEL: run_id}}})
    data = os.urandom(size)
    kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "upgrade-workload-data", "namespace": namespace, "labels": {RUN_ID_LABEL: run_id}},
                 "binaryData": {"data": base64.b64encode(data).decode()}})
    return RecordedWorkload(namespace, "upgrade-workload-data", hashlib.sha256(data).hexdigest(), size)
