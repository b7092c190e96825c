"""Harvester support bundles for failure diagnostics (facts §1.6).

Create a SupportBundle in harvester-system, wait (with a budget) for `ready` or `error`, download it
from Harvester's API (`/v1/harvester/supportbundles/{name}/download`, which deletes the request), and
hand back the zip with every text file redacted, so it can go into the report.
"""
from __future__ import annotations

import base64
import io
import secrets
import ssl
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from infra.cleanup import CleanupStack
from infra.kube import Kube
from infra.report.redact import redact_text
from infra.waits.budget import Budget

from .names import HARVESTER, RUN_ID_LABEL, SYSTEM_NAMESPACE


class SupportBundleFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class SupportBundle:
    name: str
    filename: str
    archive: bytes          # redacted


def request_and_download(kube: Kube, harvester_url: str, run_id: str, description: str, budget: Budget,
                         cleanup: CleanupStack | None = None) -> SupportBundle:
    name = f"e2e-{secrets.token_hex(4)}"
    if cleanup is not None:
        cleanup.defer(f"delete SupportBundle {name}", lambda: kube.delete(HARVESTER, "SupportBundle", name,
                                                                           SYSTEM_NAMESPACE))
    kube.create({"apiVersion": HARVESTER, "kind": "SupportBundle",
                 "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": {RUN_ID_LABEL: run_id}},
                 "spec": {"description": description[:1000]}})
    bundle = kube.wait_for(HARVESTER, "SupportBundle", name,
                           lambda o: ((o or {}).get("status") or {}).get("state") in ("ready", "error"),
                           budget=budget, awaited=f"SupportBundle {name} to be ready", namespace=SYSTEM_NAMESPACE)
    status = (bundle or {}).get("status") or {}
    if status.get("state") != "ready":
        raise SupportBundleFailed(f"SupportBundle {name} ended in state {status.get('state')!r}")
    archive = _download(kube.kubeconfig, harvester_url, name)
    return SupportBundle(name, str(status.get("filename", f"{name}.zip")), redact_archive(archive))


def _download(kubeconfig: Path, harvester_url: str, name: str) -> bytes:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    with tempfile.NamedTemporaryFile("wb", suffix=".crt") as ca:
        if cluster.get("certificate-authority-data"):
            ca.write(base64.b64decode(cluster["certificate-authority-data"]))
            ca.flush()
            context = ssl.create_default_context(cafile=ca.name)
        else:
            context = ssl.create_default_context()
    request = urllib.request.Request(f"{harvester_url.rstrip('/')}/v1/harvester/supportbundles/{name}/download",
                                     headers={"Authorization": f"Bearer {user.get('token', '')}"})
    with urllib.request.urlopen(request, context=context, timeout=120) as response:  # noqa: S310 - https
        return response.read()


def redact_archive(archive: bytes) -> bytes:
    """The same zip with every text member passed through the redactor (binary members left out)."""
    source, target = zipfile.ZipFile(io.BytesIO(archive)), io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as out:
        for member in source.infolist():
            data = source.read(member)
            try:
                out.writestr(member.filename, redact_text(data.decode("utf-8")))
            except UnicodeDecodeError:
                out.writestr(member.filename + ".omitted", "binary content left out of the report\n")
    return target.getvalue()
