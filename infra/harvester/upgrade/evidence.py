"""On any upgrade problem, before cleanup: what an engineer needs to see, attached to the report.

Upgrade and Version YAML, every upgrade job pod's log, events in harvester-system, each node's
journal for rke2-server and rancher-system-agent over SSH (where the nodes answer), and, where the
cluster can make one, a SupportBundle request's state. Everything goes through the redacting
attachment helpers; each part is collected independently, so one unreachable source does not hide
the others.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

from infra.cluster import Capability, CapabilityMissing, Cluster
from infra.report.attach import attach_file, attach_text, attach_yaml
from infra.scratch import scratch_dir
from infra.waits.budget import Budget

from ..names import HARVESTER, SYSTEM_NAMESPACE
from ..supportbundle import request_and_download
from .run import UpgradeRun

log = logging.getLogger("harvester_e2e.upgrade")
JOURNAL_UNITS = ("rke2-server", "rancher-system-agent")


def _safely(what: str, collect: Callable[[], Any]) -> None:
    try:
        collect()
    except (Exception, CapabilityMissing) as exc:  # noqa: BLE001 - diagnostics never replace the real failure
        attach_text(f"{what} (not collected)", f"{type(exc).__name__}: {exc}")
        log.warning("diagnostics: %s not collected: %s", what, exc)


def collect_upgrade_diagnostics(cluster: Cluster, run: UpgradeRun, *, bundle_budget: Budget,
                                journal_lines: int = 200) -> None:
    kube = run.kube

    def upgrade_and_version() -> None:
        upgrade = run.get()
        attach_yaml(f"Upgrade {run.name}", upgrade)
        attach_yaml(f"Version {run.target_version}", kube.get(HARVESTER, "Version", run.target_version, SYSTEM_NAMESPACE))

    def job_logs() -> None:
        for pod in kube.list("v1", "Pod", SYSTEM_NAMESPACE, label_selector=f"harvesterhci.io/upgrade={run.name}"):
            name = pod["metadata"]["name"]
            for container in (pod.get("spec") or {}).get("containers", []):
                attach_text(f"log {name}/{container['name']}",
                            kube.pod_log(name, SYSTEM_NAMESPACE, container=container["name"], tail_lines=500))

    def events() -> None:
        attach_yaml("events in harvester-system", kube.list("v1", "Event", SYSTEM_NAMESPACE))

    def journals() -> None:
        units = " ".join(f"-u {u}" for u in JOURNAL_UNITS)
        for node in cluster.nodes:
            def journal(name: str = node.name) -> None:
                command = f"journalctl {units} --no-pager -n {journal_lines}"
                attach_text(f"journal {name}", cluster.ssh(name).sudo(command).stdout)

            _safely(f"journal of {node.name}", journal)

    def support_bundle() -> None:
        if cluster.harvester_api is None:
            attach_text("support bundle (not requested)", f"{Capability.HARVESTER_API.value} is not configured; "
                        "request one from the UI: Support > Generate Support Bundle")
            return
        bundle = request_and_download(kube, cluster.harvester_api, cluster.run_id,
                                      f"harvester-e2e: upgrade {run.name} to {run.target_version} failed",
                                      bundle_budget)
        saved = scratch_dir("bundle") / bundle.filename
        saved.write_bytes(bundle.archive)           # already redacted, member by member
        attach_file(f"support bundle {bundle.filename}", saved, "application/zip")

    for what, collect in (("Upgrade and Version", upgrade_and_version), ("upgrade job logs", job_logs),
                          ("events", events), ("node journals", journals), ("support bundle", support_bundle)):
        _safely(what, collect)
