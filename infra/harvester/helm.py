"""Helm release history as `helm history <release> -n <ns> -o yaml` shows it.

Two ways to read it: over the Kubernetes API (Helm keeps each revision in a Secret
`sh.helm.release.v1.<release>.v<N>`, data base64(gzip(JSON))), or over SSH on a node (`helm history`).
The harness decodes the storage format itself: it reaches clusters only over the wire.
"""
from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass
from typing import Any

import yaml

from infra.kube import Kube


@dataclass(frozen=True)
class HelmRevision:
    revision: int
    chart: str              # "<chart name>-<chart version>", the string wait_helm_release compares
    app_version: str
    status: str             # deployed | superseded | pending-upgrade | failed | ...
    updated: str = ""
    description: str = ""

    @classmethod
    def from_history_entry(cls, entry: dict[str, Any]) -> "HelmRevision":
        return cls(int(entry["revision"]), str(entry.get("chart", "")), str(entry.get("app_version", "")),
                   str(entry.get("status", "")), str(entry.get("updated", "")), str(entry.get("description", "")))


def _decode(stored: str) -> dict[str, Any]:
    raw = base64.b64decode(base64.b64decode(stored))      # Secret data, then Helm's own base64
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return json.loads(raw)


def history_from_api(kube: Kube, namespace: str, release: str) -> list[HelmRevision]:
    """The release's revisions, oldest first, read from Helm's storage Secrets."""
    secrets = kube.list("v1", "Secret", namespace, label_selector=f"owner=helm,name={release}")
    revisions = []
    for secret in secrets:
        if secret.get("type") != "helm.sh/release.v1":
            continue
        record = _decode(secret["data"]["release"])
        metadata = record["chart"]["metadata"]
        revisions.append(HelmRevision(
            revision=int(record["version"]), chart=f"{metadata['name']}-{metadata['version']}",
            app_version=str(metadata.get("appVersion", "")), status=record["info"]["status"],
            updated=record["info"].get("last_deployed", ""), description=record["info"].get("description", "")))
    return sorted(revisions, key=lambda r: r.revision)


def parse_history_yaml(text: str) -> list[HelmRevision]:
    """Parse what `helm history <release> -o yaml` prints on a node."""
    entries = yaml.safe_load(text) or []
    return sorted((HelmRevision.from_history_entry(e) for e in entries), key=lambda r: r.revision)


def latest(revisions: list[HelmRevision]) -> HelmRevision | None:
    return revisions[-1] if revisions else None
