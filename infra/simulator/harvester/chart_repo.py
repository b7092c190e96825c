"""Rancher's chart repository (what `helm repo add rancher-charts` points at), served over HTTPS.

It holds fleet, fleet-crd and rancher-webhook at every chart version a simulated Rancher line ships
(from the simulated versions' `rancher_dependencies`): an `index.yaml` and one packaged `.tgz` per
version, which real helm downloads, verifies and renders. Chart.yaml fields follow rancher/charts
(`charts/<name>/<version>/Chart.yaml`, e.g. fleet 105.0.2+up0.11.2 and 106.0.0+up0.12.0,
rancher-webhook 105.0.1+up0.6.2 and 106.0.0+up0.7.0). The templates render each chart's main objects
minimally, under their real names: Deployments `fleet-controller` and `gitjob` (fleet), the fleet
CustomResourceDefinitions (fleet-crd), Deployment `rancher-webhook` (rancher-webhook).

The same objects are rendered here in Python (`render`) for the simulator's seeded releases, so a seeded
release and a real `helm upgrade` of it agree; a test checks that against `helm template`.
"""
from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import gzip
import hashlib
import io
import socket
import ssl
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from aiohttp import web

from .versions import VERSIONS, HarvesterVersion, compare_semver, parse_semver

REPO_NAME = "rancher-charts"
CHARTS = ("fleet", "fleet-crd", "rancher-webhook")
_EPOCH = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)     # fixed package mtime: the same bytes every run

# Annotations that differ per chart line (rancher/charts: the 105.x line is Rancher 2.10, 106.x is 2.11).
_LINE = {
    105: {"rancher": ">= 2.10.0-0 < 2.11.0-0", "kube_below": "1.32.0-0"},
    106: {"rancher": ">= 2.11.0-0 < 2.12.0-0", "kube_below": "1.33.0-0"},
}
_FLEET_ICON = "https://charts.rancher.io/assets/logos/fleet.svg"
HELM_OWNER_LABEL = "app.kubernetes.io/managed-by"


@dataclass(frozen=True, order=True)
class ChartVersion:
    name: str
    version: str          # "106.0.0+up0.12.0"
    app_version: str      # "0.12.0"

    @property
    def file_name(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def released_chart_versions(versions: Iterable[HarvesterVersion] = VERSIONS.values()) -> list[ChartVersion]:
    """Every (chart, version) a simulated Harvester's Rancher installs, oldest first per chart."""
    found = {ChartVersion(name, dep.chart_version, dep.app_version)
             for version in versions for name, dep in version.rancher_dependencies.items() if name in CHARTS}
    by_semver = functools.cmp_to_key(lambda a, b: compare_semver(a.version, b.version) or (a > b) - (a < b))
    return [chart for name in CHARTS for chart in sorted((c for c in found if c.name == name), key=by_semver)]


def find_chart(name: str, version: str) -> ChartVersion | None:
    for chart in released_chart_versions():
        if chart.name == name and chart.version == version:
            return chart
    return None


# ---- Chart.yaml and values ------------------------------------------------------------------------------

def chart_metadata(chart: ChartVersion) -> dict[str, Any]:
    line = _LINE.get(parse_semver(chart.version).major, {})
    annotations = {"catalog.cattle.io/certified": "rancher", "catalog.cattle.io/hidden": "true",
                   "catalog.cattle.io/os": "linux", "catalog.cattle.io/permits-os": "linux,windows",
                   "catalog.cattle.io/release-name": chart.name}
    if chart.name == "fleet":
        annotations.update({"catalog.cattle.io/auto-install": "fleet-crd=match",
                            "catalog.cattle.io/experimental": "true",
                            "catalog.cattle.io/namespace": "cattle-fleet-system",
                            "catalog.cattle.io/provides-gvr": "clusters.fleet.cattle.io/v1alpha1"})
        if line:
            annotations["catalog.cattle.io/kube-version"] = f">= 1.28.0-0 < {line['kube_below']}"
        description = "Fleet Controller - GitOps at Scale"
    elif chart.name == "fleet-crd":
        annotations["catalog.cattle.io/namespace"] = "cattle-fleet-system"
        description = "Fleet CustomResourceDefinitions"
    else:
        annotations.update({"catalog.cattle.io/managed": "true", "catalog.cattle.io/namespace": "cattle-system"})
        if line:
            annotations["catalog.cattle.io/kube-version"] = f"< {line['kube_below']}"
        description = "ValidatingAdmissionWebhook for Rancher types"
    if line and chart.name != "fleet-crd":
        annotations["catalog.cattle.io/rancher-version"] = line["rancher"]
    metadata: dict[str, Any] = {"annotations": dict(sorted(annotations.items())), "apiVersion": "v2",
                                "appVersion": chart.app_version, "description": description}
    if chart.name.startswith("fleet"):
        metadata["icon"] = _FLEET_ICON
    metadata.update(name=chart.name, version=chart.version)
    return metadata


def chart_values(chart: ChartVersion) -> dict[str, Any]:
    tag = f"v{chart.app_version}"
    if chart.name == "fleet":
        return {"image": {"repository": "rancher/fleet", "tag": tag, "imagePullPolicy": "IfNotPresent"},
                "agentImage": {"repository": "rancher/fleet-agent", "tag": tag, "imagePullPolicy": "IfNotPresent"}}
    if chart.name == "rancher-webhook":
        return {"image": {"repository": "rancher/rancher-webhook", "tag": tag, "imagePullPolicy": "IfNotPresent"}}
    return {}


# ---- templates: one Python description, rendered to Go-template text or to objects -------------------

class _Placeholders:
    """What a template refers to: Helm template actions (for the chart) or the values themselves (render)."""

    def __init__(self, namespace: str | None, values: dict[str, Any] | None) -> None:
        self.namespace_value, self.values = namespace, values

    @property
    def namespace(self) -> str:
        return "{{ .Release.Namespace }}" if self.namespace_value is None else self.namespace_value

    def value(self, *path: str) -> str:
        if self.values is None:
            return "{{ .Values." + ".".join(path) + " }}"
        node: Any = self.values
        for key in path:
            node = node[key]
        return str(node)

    def image(self, key: str = "image") -> str:
        return f"{self.value(key, 'repository')}:{self.value(key, 'tag')}"


def _deployment(p: _Placeholders, name: str, containers: list[str], image_key: str = "image") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": p.namespace, "labels": dict(labels)},
        "spec": {"replicas": 1, "selector": {"matchLabels": dict(labels)},
                 "template": {"metadata": {"labels": dict(labels)},
                              "spec": {"serviceAccountName": name,
                                       "containers": [{"name": c, "image": p.image(image_key),
                                                       "imagePullPolicy": p.value(image_key, "imagePullPolicy")}
                                                      for c in containers]}}},
    }


def _crd(plural: str, kind: str, scope: str = "Namespaced") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.fleet.cattle.io"},
        "spec": {"group": "fleet.cattle.io", "scope": scope,
                 "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural, "singular": kind.lower()},
                 "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}},
                               "subresources": {"status": {}}}]},
    }


_TEMPLATES: dict[str, list[tuple[str, Callable[[_Placeholders], dict[str, Any]]]]] = {
    "fleet": [
        ("templates/deployment.yaml", lambda p: _deployment(
            p, "fleet-controller", ["fleet-controller", "fleet-cleanup", "fleet-agentmanagement"])),
        ("templates/deployment_gitjob.yaml", lambda p: _deployment(p, "gitjob", ["gitjob"])),
    ],
    "fleet-crd": [
        ("templates/crds.yaml", lambda p: _crd("bundles", "Bundle")),
        ("templates/crds_clusters.yaml", lambda p: _crd("clusters", "Cluster")),
        ("templates/crds_gitrepos.yaml", lambda p: _crd("gitrepos", "GitRepo")),
    ],
    "rancher-webhook": [
        ("templates/deployment.yaml", lambda p: _deployment(p, "rancher-webhook", ["rancher-webhook"])),
    ],
}


def chart_templates(chart: ChartVersion) -> dict[str, str]:
    """The chart's template files (Go templates helm renders)."""
    placeholders = _Placeholders(None, None)
    return {path: yaml.safe_dump(make(placeholders), sort_keys=False) for path, make in _TEMPLATES[chart.name]}


def render(chart: ChartVersion, namespace: str, values: dict[str, Any] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(template path, object) as `helm template` renders the chart with these values (default: the chart's)."""
    placeholders = _Placeholders(namespace, values if values is not None else chart_values(chart))
    return [(path, make(placeholders)) for path, make in _TEMPLATES[chart.name]]


def manifest(chart: ChartVersion, namespace: str) -> str:
    """The release `manifest` helm stores: each rendered template under a `# Source:` comment."""
    return "".join(f"---\n# Source: {chart.name}/{path}\n{yaml.safe_dump(obj, sort_keys=False)}"
                   for path, obj in render(chart, namespace))


def helm_owned(obj: dict[str, Any], release: str, namespace: str) -> dict[str, Any]:
    """The ownership metadata helm sets on what it installs (helm 3 action.setMetadataVisitor)."""
    metadata = obj.setdefault("metadata", {})
    metadata.setdefault("labels", {})[HELM_OWNER_LABEL] = "Helm"
    metadata.setdefault("annotations", {}).update({"meta.helm.sh/release-name": release,
                                                   "meta.helm.sh/release-namespace": namespace})
    return obj


def release_chart(chart: ChartVersion) -> dict[str, Any]:
    """The `chart` object of a Helm release record made from this chart (helm's chart.Chart JSON)."""
    return {"metadata": chart_metadata(chart), "lock": None,
            "templates": [{"name": path, "data": base64.b64encode(text.encode()).decode()}
                          for path, text in chart_templates(chart).items()],
            "values": chart_values(chart), "schema": None, "files": []}


# ---- packages and the index ----------------------------------------------------------------------------

def package(chart: ChartVersion) -> bytes:
    """`helm package` output: a gzipped tar of `<name>/Chart.yaml`, `values.yaml` and `templates/`."""
    files = {"Chart.yaml": yaml.safe_dump(chart_metadata(chart), sort_keys=False),
             "values.yaml": yaml.safe_dump(chart_values(chart), sort_keys=False) if chart_values(chart) else "{}\n",
             **chart_templates(chart)}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{chart.name}/{path}")
            info.size, info.mode, info.mtime = len(data), 0o644, int(_EPOCH.timestamp())
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=int(_EPOCH.timestamp()))


def index(base_url: str, charts: Iterable[ChartVersion] | None = None) -> dict[str, Any]:
    """The repository's index.yaml (helm repo.IndexFile): every version of every chart, newest first."""
    entries: dict[str, list[dict[str, Any]]] = {}
    for chart in charts if charts is not None else released_chart_versions():
        digest = hashlib.sha256(package(chart)).hexdigest()
        entries.setdefault(chart.name, []).insert(0, {
            **chart_metadata(chart), "created": _EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ"), "digest": digest,
            "urls": [f"{base_url.rstrip('/')}/assets/{chart.name}/{chart.file_name}"]})
    return {"apiVersion": "v1", "entries": entries, "generated": _EPOCH.strftime("%Y-%m-%dT%H:%M:%SZ")}


def index_yaml(base_url: str) -> bytes:
    return yaml.safe_dump(index(base_url), sort_keys=False).encode()


# ---- the HTTPS server ---------------------------------------------------------------------------------

class ChartRepository:
    """Serves index.yaml and the packages on 127.0.0.1 over HTTPS with the simulator's server certificate.

    `listen()` binds the port at once (the nodes' helm configuration names the URL before the loop runs
    the server); `serve()` is the task that answers until it is cancelled."""

    def __init__(self, cert_pem: bytes, key_pem: bytes) -> None:
        self._cert_pem, self._key_pem = cert_pem, key_pem
        self._socket: socket.socket | None = None
        self.packages = {f"/assets/{c.name}/{c.file_name}": c for c in released_chart_versions()}

    def listen(self) -> str:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.setblocking(False)
        return self.url

    @property
    def url(self) -> str:
        assert self._socket is not None, "listen() first"
        return f"https://127.0.0.1:{self._socket.getsockname()[1]}"

    def _ssl(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            cert, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            cert.write_bytes(self._cert_pem)
            key.touch(mode=0o600)
            key.write_bytes(self._key_pem)
            context.load_cert_chain(cert, key)
        return context

    async def _index(self, request: web.Request) -> web.Response:
        return web.Response(body=index_yaml(self.url), content_type="application/x-yaml")

    async def _package(self, request: web.Request) -> web.Response:
        chart = self.packages.get(request.path)
        if chart is None:
            return web.Response(status=404, text="404 Not Found\n")
        return web.Response(body=package(chart), content_type="application/x-tar")

    async def serve(self) -> None:
        assert self._socket is not None, "listen() first"
        app = web.Application()
        app.router.add_get("/index.yaml", self._index)
        app.router.add_get("/assets/{chart}/{file}", self._package)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            await web.SockSite(runner, self._socket, ssl_context=self._ssl()).start()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
