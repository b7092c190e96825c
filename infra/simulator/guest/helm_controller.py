"""RKE2's embedded helm-controller: HelmCharts (helm.cattle.io/v1) installed by klipper-helm Jobs.

As k3s-io/helm-controller does it: each HelmChart gets the finalizer
`wrangler.cattle.io/on-helm-chart-remove`, a ServiceAccount `helm-<name>`, and a Job
`helm-install-<name>` whose pod template carries `helmcharts.helm.cattle.io/configHash`; a change
of the chart's spec (or of its HelmChartConfig) replaces the Job. The Job's pod runs `helm install`
or `helm upgrade` against the chart repository (`catalog`), writes Helm release records
(`sh.helm.release.v1.<release>.v<N>` Secrets in the target namespace, so `helm history` works) and
logs what klipper-helm logs. A failing attempt (unknown chart version, bad values) logs Helm's
`Error: ...`, restarts the container with back-off, and after `spec.backOffLimit` failures
(default 1000) marks the Job Failed and the HelmChart `Failed=True` ("Job failed"). Deleting the
HelmChart runs `helm-delete-<name>`, which uninstalls the release (keeping objects annotated
`helm.sh/resource-policy: keep`, as Helm does) and then releases the finalizer.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..harvester import helm_storage
from . import catalog
from .objects import (
    Obj,
    kind,
    mutate_if_changed,
    owner_reference,
    random_suffix,
    status_of,
    with_condition,
)

if TYPE_CHECKING:
    from .cluster import SimulatedGuestCluster

FINALIZER = "wrangler.cattle.io/on-helm-chart-remove"
CONFIG_HASH = "helmcharts.helm.cattle.io/configHash"
CHART_LABEL = "helmcharts.helm.cattle.io/chart"
JOB_IMAGE = "rancher/klipper-helm:v0.9.4-build20250113"     # ILLUSTRATIVE tag of RKE2's job image
DEFAULT_BACKOFF_LIMIT = 1000
ATTEMPT_SECONDS = 8.0               # simulated: repo add, repo update, helm install
KEEP_ANNOTATION = "helm.sh/resource-policy"
RELEASE_NAME = "meta.helm.sh/release-name"
RELEASE_NAMESPACE = "meta.helm.sh/release-namespace"
MANAGED_BY = "app.kubernetes.io/managed-by"
VALUES_FILE = "/config/values-10_HelmChart.yaml"


@dataclass(frozen=True)
class ManifestRef:
    api_version: str
    kind: str
    namespace: str
    name: str

    def label(self) -> str:
        return f"[{self.kind}] {self.name}"


class HelmFailure(Exception):
    """What `helm` printed after `Error: ` before exiting 1."""


class HelmController:
    def __init__(self, guest: "SimulatedGuestCluster") -> None:
        self.guest = guest
        self.api = guest.api
        self.jobs = kind(self.api, "batch/v1", "jobs")
        self.pods = kind(self.api, "v1", "pods")
        self.secrets = kind(self.api, "v1", "secrets")
        self._due: dict[str, float] = {}         # job uid -> monotonic time of its next attempt
        self._attempts: dict[str, int] = {}      # job uid -> failed attempts so far

    @property
    def charts(self) -> Any:
        return kind(self.api, "helm.cattle.io/v1", "helmcharts")

    def reconcile(self) -> None:
        for chart in self.api.list(self.charts).items:
            try:
                if chart["metadata"].get("deletionTimestamp"):
                    if FINALIZER in (chart["metadata"].get("finalizers") or []):
                        self._remove(chart)
                else:
                    self._change(chart)
            except errors.ApiError as exc:     # a write raced with a client: the next pass retries
                self.guest.log.debug("helm-controller: %s", exc)

    # ---- OnChange -----------------------------------------------------------------------------------
    def _change(self, chart: Obj) -> None:
        meta = chart["metadata"]
        if FINALIZER not in (meta.get("finalizers") or []):
            chart = self.api.mutate(self.charts, meta["namespace"], meta["name"],
                                    lambda o: o["metadata"].setdefault("finalizers", []).append(FINALIZER))
        self._ensure_service_account(chart)
        config_hash = self._config_hash(chart)
        job_name = f"helm-install-{meta['name']}"
        job = self.api.find(self.jobs, meta["namespace"], job_name)
        job_hash = ((((job or {}).get("spec") or {}).get("template") or {}).get("metadata") or {}).get(
            "annotations", {}).get(CONFIG_HASH)
        if job is None or job_hash != config_hash:
            if job is not None:
                self._delete_job(job)
            job = self._create_job(chart, job_name, "install", config_hash)

            def created(obj: Obj) -> None:
                status = status_of(obj)
                status["jobName"] = job_name
                conditions = with_condition(status.get("conditions"), "JobCreated", "True", "Job created",
                                            f"Applying HelmChart using Job {meta['namespace']}/{job_name}")
                status["conditions"] = with_condition(conditions, "Failed", "False")
            mutate_if_changed(self.api, self.charts, chart, created)
            return
        self._advance(chart, job, install=True)

    def _advance(self, chart: Obj, job: Obj, *, install: bool) -> bool:
        """Run the job's next attempt when it is due; True once the job has completed."""
        status = job.get("status") or {}
        if status.get("succeeded"):
            return True
        if any(c.get("type") == "Failed" and c.get("status") == "True" for c in status.get("conditions") or []):
            return False
        uid = job["metadata"]["uid"]
        due = self._due.setdefault(uid, time.monotonic() + ATTEMPT_SECONDS / self.guest.clock.scale)
        if time.monotonic() < due:
            self.guest.runtime.after_real(due - time.monotonic())
            return False
        pod = self._job_pod(job)
        try:
            lines = self._install(chart) if install else self._uninstall(chart)
        except HelmFailure as failure:
            self._log(pod, [*getattr(failure, "lines", []), f"Error: {failure}"])
            self._attempt_failed(chart, job, pod)
            return False
        self._log(pod, lines)
        self._job_succeeded(job, pod)
        self._due.pop(uid, None)
        return True

    # ---- the helm commands -------------------------------------------------------------------------
    def _values(self, chart: Obj) -> Obj:
        spec = chart.get("spec") or {}
        values: Obj = {}
        for text, source in ((spec.get("valuesContent"), VALUES_FILE),
                             (self._chart_config_values(chart), "/config/values-20_HelmChartConfig.yaml")):
            if not text:
                continue
            try:
                loaded = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise HelmFailure(f"failed to parse {source}: error converting YAML to JSON: "
                                  f"{str(exc).splitlines()[0]}") from None
            if loaded is not None and not isinstance(loaded, dict):
                raise HelmFailure(f"failed to parse {source}: error unmarshaling JSON: while decoding JSON: "
                                  "json: cannot unmarshal array into Go value of type map[string]interface {}")
            values = catalog.deep_merge(values, loaded or {})
        for key, value in sorted((spec.get("set") or {}).items()):
            catalog.set_path(values, key, value)
        return values

    def _chart_config_values(self, chart: Obj) -> str:
        try:
            configs = kind(self.api, "helm.cattle.io/v1", "helmchartconfigs")
        except errors.ApiError:
            return ""
        config = self.api.find(configs, chart["metadata"]["namespace"], chart["metadata"]["name"])
        return ((config or {}).get("spec") or {}).get("valuesContent") or ""

    def _release_namespace(self, chart: Obj) -> str:
        return (chart.get("spec") or {}).get("targetNamespace") or chart["metadata"]["namespace"]

    def _install(self, chart: Obj) -> list[str]:
        spec, name = chart.get("spec") or {}, chart["metadata"]["name"]
        namespace = self._release_namespace(chart)
        repo, chart_name, version = spec.get("repo", ""), spec.get("chart", ""), str(spec.get("version") or "")
        lines = [f"+ helm_v3 repo add {name} {repo}", f'"{name}" has been added to your repositories',
                 "+ helm_v3 repo update", "Hang tight while we grab the latest from your chart repositories...",
                 f'...Successfully got an update from the "{name}" chart repository',
                 "Update Complete. \u2388Happy Helming!\u2388",
                 f"+ helm_v3 ls --all -f '^{name}$' --namespace {namespace} --output json"]
        history = self._history(name, namespace)
        deployed = next((r for r in reversed(history) if r["info"]["status"] == "deployed"), None)
        verb = "upgrade" if deployed else "install"
        lines.append(f"+ helm_v3 {verb} --namespace {namespace} --version {version} {name} {name}/{chart_name} "
                     f"--values {VALUES_FILE}")
        failure: HelmFailure | None = None
        try:
            chart_version = catalog.resolve(repo, chart_name, version, name)
            user_values = self._values(chart)
            rendered = chart_version.render(catalog.Release(name, namespace, len(history) + 1), user_values)
            self._apply(name, namespace, rendered, deployed)
        except (catalog.ChartError, HelmFailure) as exc:
            failure = HelmFailure(str(exc))
        if failure is not None:
            failure.lines = lines    # type: ignore[attr-defined]
            raise failure
        revision = len(history) + 1
        now = dt.datetime.now(dt.timezone.utc)
        if deployed is not None:
            self._supersede(name, namespace, deployed)
        record = helm_storage.release_record(
            name, namespace, chart_version.name, chart_version.version, chart_version.app_version, revision,
            "deployed", now, user_values, first_deployed=_first_deployed(history) or now,
            description="Upgrade complete" if deployed else "Install complete",
            manifest=_manifest(rendered))
        self.api.create(self.secrets, helm_storage.secret_for_record(record, created_at=now))
        if deployed:
            lines.append(f'Release "{name}" has been upgraded. Happy Helming!')
        lines += [f"NAME: {name}", f"LAST DEPLOYED: {now.strftime('%a %b %d %H:%M:%S %Y')}",
                  f"NAMESPACE: {namespace}", "STATUS: deployed", f"REVISION: {revision}", "TEST SUITE: None"]
        return lines

    def _uninstall(self, chart: Obj) -> list[str]:
        name = chart["metadata"]["name"]
        namespace = self._release_namespace(chart)
        lines = [f"+ helm_v3 uninstall {name} --namespace {namespace}"]
        history = self._history(name, namespace)
        if not history:
            return lines + [f"Error: uninstall: Release not loaded: {name}: release: not found",
                            f"Release {name} not found, nothing to uninstall"]
        latest = history[-1]
        kept = []
        for ref in reversed(_manifest_refs(latest.get("manifest", ""), namespace)):
            obj = self._find(ref)
            if obj is None:
                continue
            if (obj["metadata"].get("annotations") or {}).get(KEEP_ANNOTATION) == "keep":
                kept.append(ref.label())
                continue
            self._delete(ref)
        for secret in self._release_secrets(name, namespace):
            self.api.delete(self.secrets, namespace, secret["metadata"]["name"])
        if kept:
            lines += ["These resources were kept due to the resource policy:", *kept, ""]
        return lines + [f'release "{name}" uninstalled']

    # ---- applying manifests --------------------------------------------------------------------------
    def _rtype(self, ref: ManifestRef) -> Any:
        rtype = self.api.registry.by_kind(ref.api_version, ref.kind)
        if rtype is None:
            raise HelmFailure(f'unable to build kubernetes objects from release manifest: resource mapping not '
                              f'found for name: "{ref.name}" namespace: "{ref.namespace}" from "": no matches for '
                              f'kind "{ref.kind}" in version "{ref.api_version}"')
        return rtype

    def _find(self, ref: ManifestRef) -> Obj | None:
        return self.api.find(self._rtype(ref), ref.namespace or None, ref.name)

    def _delete(self, ref: ManifestRef) -> None:
        try:
            self.api.delete(self._rtype(ref), ref.namespace or None, ref.name)
        except errors.ApiError:
            pass

    def _apply(self, release: str, namespace: str, rendered: list[catalog.RenderedObject], deployed: Obj | None) -> None:
        previous = _manifest_refs(deployed.get("manifest", ""), namespace) if deployed else []
        wanted: list[tuple[ManifestRef, Obj]] = []
        for item in rendered:
            obj = json.loads(json.dumps(item.object))
            rtype = self.api.registry.by_kind(obj["apiVersion"], obj["kind"])
            meta = obj.setdefault("metadata", {})
            if rtype is not None and rtype.namespaced:
                meta.setdefault("namespace", namespace)
            meta.setdefault("labels", {})[MANAGED_BY] = "Helm"
            meta.setdefault("annotations", {}).update({RELEASE_NAME: release, RELEASE_NAMESPACE: namespace})
            wanted.append((ManifestRef(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"]), obj))
        for ref, _ in wanted:                              # ownership check before touching anything
            existing = self._find(ref)
            if existing is not None and ref not in previous:
                self._check_ownership(existing, ref, release, namespace)
        for ref, obj in wanted:
            existing = self._find(ref)
            rtype = self._rtype(ref)
            if existing is None:
                self.api.create(rtype, obj)
            else:
                self.api.mutate(rtype, ref.namespace or None, ref.name, _updater(obj))
        names = {ref for ref, _ in wanted}
        for ref in previous:
            if ref in names:
                continue
            existing = self._find(ref)
            if existing is not None and (existing["metadata"].get("annotations") or {}).get(KEEP_ANNOTATION) != "keep":
                self._delete(ref)

    @staticmethod
    def _check_ownership(existing: Obj, ref: ManifestRef, release: str, namespace: str) -> None:
        labels = existing["metadata"].get("labels") or {}
        annotations = existing["metadata"].get("annotations") or {}
        problems = []
        if labels.get(MANAGED_BY) != "Helm":
            problems.append(f'label validation error: missing key "{MANAGED_BY}": must be set to "Helm"')
        if annotations.get(RELEASE_NAME) != release:
            problems.append(f'annotation validation error: missing key "{RELEASE_NAME}": must be set to "{release}"'
                            if RELEASE_NAME not in annotations else
                            f'annotation validation error: key "{RELEASE_NAME}" must equal "{release}": current '
                            f'value is "{annotations[RELEASE_NAME]}"')
        if annotations.get(RELEASE_NAMESPACE) != namespace:
            problems.append(f'annotation validation error: missing key "{RELEASE_NAMESPACE}": must be set to '
                            f'"{namespace}"')
        if problems:
            raise HelmFailure("rendered manifests contain a resource that already exists. Unable to continue with "
                              f'install: {ref.kind} "{ref.name}" in namespace "{ref.namespace}" exists and cannot be '
                              "imported into the current release: invalid ownership metadata; " + "; ".join(problems))

    # ---- release records -------------------------------------------------------------------------------
    def _release_secrets(self, release: str, namespace: str) -> list[Obj]:
        return [s for s in self.api.list(self.secrets, namespace, label_selector=f"owner=helm,name={release}").items
                if helm_storage.is_release_secret(s)]

    def _history(self, release: str, namespace: str) -> list[Obj]:
        records = [helm_storage.decode_release_secret(s) for s in self._release_secrets(release, namespace)]
        return sorted(records, key=lambda r: r["version"])

    def _supersede(self, release: str, namespace: str, deployed: Obj) -> None:
        record = json.loads(json.dumps(deployed))
        record["info"]["status"] = "superseded"
        replacement = helm_storage.secret_for_record(record)
        name = replacement["metadata"]["name"]

        def update(obj: Obj) -> None:
            obj["data"] = replacement["data"]
            obj["metadata"].setdefault("labels", {})["status"] = "superseded"
        self.api.mutate(self.secrets, namespace, name, update)

    # ---- jobs and their pods -----------------------------------------------------------------------
    def _ensure_service_account(self, chart: Obj) -> None:
        meta = chart["metadata"]
        sa_kind = kind(self.api, "v1", "serviceaccounts")
        if self.api.find(sa_kind, meta["namespace"], f"helm-{meta['name']}") is None:
            self.api.create(sa_kind, {"metadata": {"name": f"helm-{meta['name']}", "namespace": meta["namespace"],
                                                   "ownerReferences": [owner_reference(chart, controller=False)]}})
        crb_kind = kind(self.api, "rbac.authorization.k8s.io/v1", "clusterrolebindings")
        crb_name = f"helm-{meta['namespace']}-{meta['name']}"
        if self.api.find(crb_kind, None, crb_name) is None:
            self.api.create(crb_kind, {
                "metadata": {"name": crb_name, "ownerReferences": [owner_reference(chart, controller=False)]},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                "subjects": [{"kind": "ServiceAccount", "name": f"helm-{meta['name']}",
                              "namespace": meta["namespace"]}]})

    def _config_hash(self, chart: Obj) -> str:
        material = json.dumps({"spec": chart.get("spec") or {}, "config": self._chart_config_values(chart)},
                              sort_keys=True)
        return "SHA256=" + hashlib.sha256(material.encode()).hexdigest().upper()

    def _create_job(self, chart: Obj, job_name: str, action: str, config_hash: str) -> Obj:
        meta, spec = chart["metadata"], chart.get("spec") or {}
        env = [{"name": "NAME", "value": meta["name"]}, {"name": "VERSION", "value": str(spec.get("version") or "")},
               {"name": "REPO", "value": spec.get("repo", "")}, {"name": "HELM_DRIVER", "value": "secret"},
               {"name": "CHART_NAMESPACE", "value": meta["namespace"]},
               {"name": "CHART", "value": f"{meta['name']}/{spec.get('chart', '')}" if spec.get("repo")
                else spec.get("chart", "")},
               {"name": "HELM_VERSION", "value": spec.get("helmVersion", "")},
               {"name": "TARGET_NAMESPACE", "value": self._release_namespace(chart)}]
        template = {
            "metadata": {"labels": {CHART_LABEL: meta["name"]}, "annotations": {CONFIG_HASH: config_hash}},
            "spec": {"restartPolicy": "OnFailure", "serviceAccountName": f"helm-{meta['name']}",
                     "containers": [{"name": "helm", "image": spec.get("jobImage") or JOB_IMAGE,
                                     "imagePullPolicy": "IfNotPresent", "args": [action], "env": env}]},
        }
        job = {"apiVersion": "batch/v1", "kind": "Job",
               "metadata": {"name": job_name, "namespace": meta["namespace"], "labels": {CHART_LABEL: meta["name"]},
                            "ownerReferences": [owner_reference(chart)]},
               "spec": {"backoffLimit": int(spec.get("backOffLimit", DEFAULT_BACKOFF_LIMIT)), "completions": 1,
                        "parallelism": 1, "template": template},
               "status": {"active": 1, "startTime": rfc3339()}}
        created = self.api.create(self.jobs, job, keep_status=True)
        uid = created["metadata"]["uid"]

        def select_own_pods(obj: Obj) -> None:      # the API server defaults a Job's selector to its uid
            obj["spec"]["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
            obj["spec"]["template"]["metadata"]["labels"].update({"batch.kubernetes.io/controller-uid": uid,
                                                                  "batch.kubernetes.io/job-name": job_name})
        created = self.api.mutate(self.jobs, meta["namespace"], job_name, select_own_pods)
        nodes = self.api.list(kind(self.api, "v1", "nodes")).items
        node = next((n["metadata"]["name"] for n in nodes
                     if "node-role.kubernetes.io/control-plane" in (n["metadata"].get("labels") or {})),
                    nodes[0]["metadata"]["name"] if nodes else "")
        pod_spec = {**json.loads(json.dumps(template["spec"])), "nodeName": node}
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{job_name}-{random_suffix()}", "namespace": meta["namespace"],
                            "labels": {**template["metadata"]["labels"], "batch.kubernetes.io/job-name": job_name,
                                       "job-name": job_name, "batch.kubernetes.io/controller-uid": created["metadata"]["uid"],
                                       "controller-uid": created["metadata"]["uid"]},
                            "annotations": dict(template["metadata"]["annotations"]),
                            "ownerReferences": [owner_reference(created)]},
               "spec": pod_spec,
               "status": {"phase": "Running", "startTime": rfc3339(), "qosClass": "BestEffort",
                          "conditions": with_condition(with_condition(None, "PodScheduled", "True"), "Ready", "True"),
                          "containerStatuses": [{"name": "helm", "image": pod_spec["containers"][0]["image"],
                                                 "ready": True, "started": True, "restartCount": 0,
                                                 "state": {"running": {"startedAt": rfc3339()}}}]}}
        self.api.create(self.pods, pod, keep_status=True)
        return created

    def _delete_job(self, job: Obj) -> None:
        self._due.pop(job["metadata"]["uid"], None)
        try:
            self.api.delete(self.jobs, job["metadata"]["namespace"], job["metadata"]["name"])
        except errors.ApiError:
            pass

    def _job_pod(self, job: Obj) -> Obj | None:
        pods = self.api.list(self.pods, job["metadata"]["namespace"],
                             label_selector=f"batch.kubernetes.io/job-name={job['metadata']['name']}").items
        return pods[0] if pods else None

    def _log(self, pod: Obj | None, lines: list[str]) -> None:
        if pod is not None:
            for line in lines:
                self.api.logs.append(pod["metadata"]["namespace"], pod["metadata"]["name"], "helm", line)

    def _job_succeeded(self, job: Obj, pod: Obj | None) -> None:
        now = rfc3339()
        if pod is not None:
            def done(obj: Obj) -> None:
                status = status_of(obj)
                status["phase"] = "Succeeded"
                status["conditions"] = with_condition(status.get("conditions"), "Ready", "False", "PodCompleted")
                for cs in status.get("containerStatuses") or []:
                    cs.update(ready=False, started=False, state={"terminated": {
                        "exitCode": 0, "reason": "Completed", "finishedAt": now}})
            mutate_if_changed(self.api, self.pods, pod, done)

        def complete(obj: Obj) -> None:
            status = status_of(obj)
            status.pop("active", None)
            status.update(succeeded=1, completionTime=now, ready=0)
            status["conditions"] = with_condition(with_condition(status.get("conditions"), "SuccessCriteriaMet",
                                                                 "True", "CompletionsReached",
                                                                 "Reached expected number of succeeded pods"),
                                                  "Complete", "True", "CompletionsReached",
                                                  "Reached expected number of succeeded pods")
        mutate_if_changed(self.api, self.jobs, job, complete)

    def _attempt_failed(self, chart: Obj, job: Obj, pod: Obj | None) -> None:
        uid = job["metadata"]["uid"]
        failed = self._attempts.get(uid, 0) + 1      # restarts in place (OnFailure) count towards the limit
        self._attempts[uid] = failed
        limit = int((job.get("spec") or {}).get("backoffLimit", DEFAULT_BACKOFF_LIMIT))
        now = rfc3339()
        give_up = failed > limit
        if pod is not None:
            def crashed(obj: Obj) -> None:
                status = status_of(obj)
                status["conditions"] = with_condition(status.get("conditions"), "Ready", "False", "ContainersNotReady")
                for cs in status.get("containerStatuses") or []:
                    cs["restartCount"] = failed
                    cs["ready"] = False
                    cs["lastState"] = {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now}}
                    cs["state"] = ({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": now}} if give_up
                                   else {"waiting": {"reason": "CrashLoopBackOff",
                                                     "message": f"back-off restarting failed container helm in pod "
                                                                f"{obj['metadata']['name']}"}})
                if give_up:
                    status["phase"] = "Failed"
            mutate_if_changed(self.api, self.pods, pod, crashed)

        def count(obj: Obj) -> None:
            status = status_of(obj)
            if give_up:
                status["failed"] = 1
                status.pop("active", None)
                status["conditions"] = with_condition(with_condition(
                    status.get("conditions"), "FailureTarget", "True", "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit"), "Failed", "True", "BackoffLimitExceeded",
                    "Job has reached the specified backoff limit")
        mutate_if_changed(self.api, self.jobs, job, count)
        if give_up:
            self.guest.event(chart, "Warning", "JobFailed",
                             "Job has reached configured number of retries without succeeding", "helm-controller")

            def failed_condition(obj: Obj) -> None:
                status = status_of(obj)
                status["conditions"] = with_condition(status.get("conditions"), "Failed", "True", "Job failed",
                                                      "Job has reached configured number of retries without "
                                                      "succeeding")
            mutate_if_changed(self.api, self.charts, chart, failed_condition)
            self._due.pop(job["metadata"]["uid"], None)
            return
        backoff = min(10.0 * 2 ** (failed - 1), 300.0)
        self._due[job["metadata"]["uid"]] = time.monotonic() + (ATTEMPT_SECONDS + backoff) / self.guest.clock.scale
        self.guest.runtime.after(ATTEMPT_SECONDS + backoff)

    # ---- OnRemove -----------------------------------------------------------------------------------
    def _remove(self, chart: Obj) -> None:
        meta = chart["metadata"]
        job_name = f"helm-delete-{meta['name']}"
        job = self.api.find(self.jobs, meta["namespace"], job_name)
        if job is None:
            job = self._create_job(chart, job_name, "delete", self._config_hash(chart))
        if not self._advance(chart, job, install=False):
            return
        self.guest.event(chart, "Normal", "RemoveJob", f"Uninstalled HelmChart using Job {meta['namespace']}/{job_name}, "
                         "removing resources", "helm-controller")

        def release(obj: Obj) -> None:
            obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or [] if f != FINALIZER]
        self.api.mutate(self.charts, meta["namespace"], meta["name"], release)


def _updater(desired: Obj) -> Any:
    """Helm's upgrade of one object: its rendered fields replace the live ones; status stays."""
    def update(live: Obj) -> None:
        meta, wanted = live["metadata"], desired["metadata"]
        meta["labels"] = {**(meta.get("labels") or {}), **(wanted.get("labels") or {})}
        meta["annotations"] = {**(meta.get("annotations") or {}), **(wanted.get("annotations") or {})}
        for key in [k for k in live if k not in ("apiVersion", "kind", "metadata", "status")]:
            if key not in desired:
                del live[key]
        for key, value in desired.items():
            if key not in ("apiVersion", "kind", "metadata", "status"):
                live[key] = json.loads(json.dumps(value))
    return update


def _manifest(rendered: list[catalog.RenderedObject]) -> str:
    return "".join(f"---\n# Source: {item.source}\n{yaml.safe_dump(item.object, sort_keys=False)}"
                   for item in rendered)


def _manifest_refs(manifest: str, namespace: str) -> list[ManifestRef]:
    refs = []
    for doc in yaml.safe_load_all(manifest or ""):
        if not doc:
            continue
        meta = doc.get("metadata") or {}
        refs.append(ManifestRef(doc.get("apiVersion", ""), doc.get("kind", ""),
                                meta.get("namespace", "") if doc.get("kind") not in _CLUSTER_SCOPED else "",
                                meta.get("name", "")))
    return [ManifestRef(r.api_version, r.kind, r.namespace or ("" if r.kind in _CLUSTER_SCOPED else namespace), r.name)
            for r in refs]


_CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "StorageClass", "CSIDriver", "Namespace",
                   "CustomResourceDefinition", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration",
                   "PriorityClass", "PersistentVolume"}


def _first_deployed(history: list[Obj]) -> dt.datetime | None:
    if not history:
        return None
    text = history[0]["info"].get("first_deployed", "")
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
