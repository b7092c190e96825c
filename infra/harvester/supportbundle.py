"""Harvester support bundles for failure diagnostics (docs/harvester-facts.md §1.6).

Create a SupportBundle in harvester-system, wait (with a budget) for `ready` or `error`, download it
from Harvester's API at the VIP (`/v1/harvester/supportbundles/{name}/download`, which deletes the
request) with the credentials a lab hands out for it (an API key, and the CA of the VIP's certificate),
and hand back the zip with every text file redacted, so it can go into the report.
"""
from __future__ import annotations

import io
import secrets
import zipfile
from dataclasses import dataclass

from infra.cleanup import CleanupStack
from infra.https import Endpoint
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


def request_and_download(kube: Kube, harvester_api: Endpoint, run_id: str, description: str, budget: Budget,
                         cleanup: CleanupStack | None = None) -> SupportBundle:
    name = f"e2e-{secrets.token_hex(4)}"
    if cleanup is not None:
        cleanup.delete_later(kube, HARVESTER, "SupportBundle", name, SYSTEM_NAMESPACE, budget=budget)
    kube.create({"apiVersion": HARVESTER, "kind": "SupportBundle",
                 "metadata": {"name": name, "namespace": SYSTEM_NAMESPACE, "labels": {RUN_ID_LABEL: run_id}},
                 "spec": {"description": description[:1000]}})
    bundle = kube.wait_for(HARVESTER, "SupportBundle", name,
                           lambda o: ((o or {}).get("status") or {}).get("state") in ("ready", "error"),
                           budget=budget, awaited=f"SupportBundle {name} to be ready", namespace=SYSTEM_NAMESPACE)
    status = (bundle or {}).get("status") or {}
    if status.get("state") != "ready":
        raise SupportBundleFailed(f"SupportBundle {name} ended in state {status.get('state')!r}")
    archive = harvester_api.get_bytes(f"/v1/harvester/supportbundles/{name}/download", timeout_s=120)
    return SupportBundle(name, str(status.get("filename", f"{name}.zip")), redact_archive(archive))


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
