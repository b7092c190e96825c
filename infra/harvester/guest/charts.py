"""Install, upgrade and uninstall a chart in a guest: through RKE2's helm-controller, or the helm CLI.

`HelmChartInstaller` needs nothing but the API: a `helm.cattle.io/v1` HelmChart in `kube-system`
(as RKE2 itself installs its charts). Its Job `helm-install-<name>` runs helm; the installer waits
for the Job that carries the new configuration and reports helm's own `Error:` line (from the job
pod's log) when an attempt fails, instead of waiting for the Job's 1000 retries.
`HelmCliInstaller` runs the project's `helm` (make setup installs it). `release_history` is what `helm history`
shows, read from Helm's storage Secrets (the one decoder, infra/harvester/helm.py).
"""
from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.kube import Kube
from infra.kube.kubectl import KubectlMissing, helm_binary
from infra.waits.budget import Budget

from ..helm import HelmRevision, history_from_api
from ..names import RUN_ID_LABEL

HARVESTER_CHARTS = "https://charts.harvesterhci.io"
HELM_CHART_API = "helm.cattle.io/v1"
CONFIG_HASH = "helmcharts.helm.cattle.io/configHash"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Chart:
    """A chart release to have in a guest: name (= release name), version, repo, values."""

    name: str
    version: str
    repo: str = HARVESTER_CHARTS
    namespace: str = "kube-system"
    values: dict[str, Any] = field(default_factory=dict)

    def values_yaml(self) -> str:
        return yaml.safe_dump(self.values, sort_keys=True) if self.values else ""


@dataclass
class ChartJobFailed(AssertionError):
    """helm failed in the helm-controller's Job; `helm_error` is helm's `Error:` line."""

    chart: str
    version: str
    helm_error: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"helm could not install {self.chart} {self.version}: {self.helm_error}"


class HelmChartInstaller:
    def __init__(self, kube: Kube, run_id: str, budget: Budget, *, backoff_limit: int | None = None) -> None:
        self.kube = kube
        self.run_id = run_id
        self.budget = budget
        self.backoff_limit = backoff_limit

    def _spec(self, chart: Chart) -> Obj:
        spec: Obj = {"chart": chart.name, "version": chart.version, "repo": chart.repo,
                     "targetNamespace": chart.namespace, "valuesContent": chart.values_yaml()}
        if self.backoff_limit is not None:
            spec["backOffLimit"] = self.backoff_limit
        return spec

    def install(self, chart: Chart) -> None:
        previous = self._job_uid(chart)
        self.kube.create({"apiVersion": HELM_CHART_API, "kind": "HelmChart",
                          "metadata": {"name": chart.name, "namespace": "kube-system",
                                       "labels": {RUN_ID_LABEL: self.run_id}},
                          "spec": self._spec(chart)})
        self._wait_job(chart, "install", previous)

    def upgrade(self, chart: Chart) -> None:
        previous = self._job_uid(chart)
        self.kube.patch(HELM_CHART_API, "HelmChart", chart.name, {"spec": self._spec(chart)}, namespace="kube-system")
        self._wait_job(chart, "install", previous)

    def uninstall(self, release: str) -> None:
        if not self.kube.delete(HELM_CHART_API, "HelmChart", release, "kube-system"):
            return
        try:
            self.kube.wait_for_gone(HELM_CHART_API, "HelmChart", release, namespace="kube-system", budget=self.budget)
        except Exception as exc:
            log = self._job_log(f"helm-delete-{release}")
            if log:
                exc.evidence = {**getattr(exc, "evidence", {}), f"helm-delete-{release} log": log}  # type: ignore[attr-defined]
            raise

    def installed(self, release: str) -> Obj | None:
        return self.kube.find(HELM_CHART_API, "HelmChart", release, "kube-system")

    # ---- the helm-controller's Job ----------------------------------------------------------------
    def _job_uid(self, chart: Chart) -> str:
        job = self.kube.find("batch/v1", "Job", f"helm-install-{chart.name}", "kube-system")
        return (job or {}).get("metadata", {}).get("uid", "")

    def _wait_job(self, chart: Chart, action: str, previous_uid: str) -> None:
        job_name = f"helm-{action}-{chart.name}"
        job = self.kube.wait_for("batch/v1", "Job", job_name,
                                 lambda j: j is not None and j["metadata"]["uid"] != previous_uid,
                                 budget=self.budget, namespace="kube-system",
                                 awaited=f"the helm-controller to start Job {job_name} for {chart.name} {chart.version}")
        assert job is not None
        selector = f"batch.kubernetes.io/controller-uid={job['metadata']['uid']}"

        def finished(pods: list[Obj]) -> bool:
            return any(_pod_outcome(p) for p in pods)

        pods = self.kube.wait_for_all("v1", "Pod", finished, budget=self.budget, namespace="kube-system",
                                      label_selector=selector,
                                      awaited=f"Job {job_name} to run helm for {chart.name} {chart.version}",
                                      describe=lambda ps: "; ".join(f"{p['metadata']['name']} "
                                                                    f"{(p.get('status') or {}).get('phase')}"
                                                                    for p in ps) or "no job pod yet")
        outcome = next(_pod_outcome(p) for p in pods if _pod_outcome(p))
        if outcome == "succeeded":
            return
        pod = next(p for p in pods if _pod_outcome(p))
        log = self.kube.pod_log(pod["metadata"]["name"], "kube-system", container="helm")
        error = next((line[len("Error: "):] for line in reversed(log.splitlines()) if line.startswith("Error: ")),
                     "the helm job failed without an Error line")
        raise ChartJobFailed(chart.name, chart.version, error, evidence={
            f"{job_name} log": log, "HelmChart": self.installed(chart.name) or "absent"})

    def _job_log(self, job_name: str) -> str:
        pods = self.kube.list("v1", "Pod", "kube-system", label_selector=f"batch.kubernetes.io/job-name={job_name}")
        return "\n".join(self.kube.pod_log(p["metadata"]["name"], "kube-system", container="helm") for p in pods)


def _pod_outcome(pod: Obj) -> str:
    """"succeeded", "failed" (a helm attempt exited non-zero), or "" while it runs."""
    status = pod.get("status") or {}
    if status.get("phase") == "Succeeded":
        return "succeeded"
    if status.get("phase") == "Failed":
        return "failed"
    for container in status.get("containerStatuses") or []:
        last = (container.get("lastState") or {}).get("terminated") or {}
        if container.get("restartCount", 0) > 0 or last.get("exitCode", 0) != 0:
            return "failed"
    return ""


class HelmCliInstaller:
    """The same operations with the `helm` binary (the project's, from `make setup`, unless one is given)."""

    def __init__(self, kubeconfig: Path, budget: Budget, helm: str | None = None) -> None:
        try:
            self.helm = helm or str(helm_binary())
        except KubectlMissing as missing:
            raise FileNotFoundError(f"{missing}; or use HelmChartInstaller (needs nothing but the API)") from None
        self.kubeconfig = kubeconfig
        self.budget = budget

    def _run(self, *args: str) -> str:
        result = subprocess.run([self.helm, *args, "--kubeconfig", str(self.kubeconfig)], capture_output=True,
                                text=True, timeout=self.budget.seconds)
        if result.returncode != 0:
            error = next((line[len("Error: "):] for line in result.stderr.splitlines() if line.startswith("Error: ")),
                         result.stderr.strip())
            raise ChartJobFailed(args[1] if len(args) > 1 else "", "", error, evidence={"helm stderr": result.stderr})
        return result.stdout

    def install(self, chart: Chart) -> None:
        self.upgrade(chart)

    def upgrade(self, chart: Chart) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as values:
            values.write(chart.values_yaml() or "{}\n")
            values.flush()
            self._run("upgrade", "--install", chart.name, chart.name, "--repo", chart.repo, "--version", chart.version,
                      "--namespace", chart.namespace, "--values", values.name, "--wait",
                      "--timeout", f"{int(self.budget.seconds)}s")

    def uninstall(self, release: str, namespace: str = "kube-system") -> None:
        self._run("uninstall", release, "--namespace", namespace, "--wait", "--timeout", f"{int(self.budget.seconds)}s")


def release_history(kube: Kube, release: str, namespace: str = "kube-system") -> list[HelmRevision]:
    """`helm history <release>`: the revisions Helm's Secret storage driver holds, oldest first."""
    return history_from_api(kube, namespace, release)


def history_table(revisions: list[HelmRevision]) -> str:
    """`helm history` as text: REVISION STATUS CHART APP VERSION DESCRIPTION."""
    return "\n".join(f"{r.revision:<4} {r.status:<11} {r.chart:<32} {r.app_version:<8} {r.description}"
                     for r in revisions)
