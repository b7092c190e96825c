"""Harvester's support bundles (docs/harvester-facts.md §1.6): a SupportBundle in harvester-system goes ""
-> generating -> ready (or error), and `GET /v1/harvester/supportbundles/{name}/download` streams the zip, then
deletes the SupportBundle unless `?retain=true`.

The simulator's bundle is built from its own state: YAML of the objects in harvester-system (and the
extra namespaces asked for), nodes, settings, upgrades and versions, and every container log it holds.
Secrets appear by name and keys only, never with their data.
"""
from __future__ import annotations

import datetime as dt
import io
import zipfile
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from ..apiserver.errors import ApiError
from ..apiserver.store import StoredEvent
from .base import Controller

if TYPE_CHECKING:
    from ..simulator import Simulator

NAMESPACE = "harvester-system"
GENERATION_SECONDS = 90            # simulated seconds from request to ready (ILLUSTRATIVE)
NAMESPACED_KINDS = (("", "v1", "pods"), ("", "v1", "events"), ("", "v1", "configmaps"), ("", "v1", "secrets"),
                    ("apps", "v1", "deployments"), ("batch", "v1", "jobs"),
                    ("harvesterhci.io", "v1beta1", "upgrades"), ("harvesterhci.io", "v1beta1", "versions"))
CLUSTER_KINDS = (("", "v1", "nodes"), ("harvesterhci.io", "v1beta1", "settings"))


class SupportBundleController(Controller):
    watches = (("harvesterhci.io", "supportbundles"),)

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.simulator = simulator
        self.bundles = simulator.api.lookup("harvesterhci.io", "v1beta1", "supportbundles")
        self.archives: dict[str, bytes] = {}

    async def handle(self, event: StoredEvent) -> None:
        name = event.object["metadata"]["name"]
        if event.type == "DELETED":
            self.archives.pop(name, None)
        elif event.type == "ADDED" and event.object["metadata"].get("namespace") == NAMESPACE:
            self.simulator.spawn(lambda: self._generate(name), f"supportbundle-{name}")

    def _status(self, name: str, **status: Any) -> None:
        self.api.mutate(self.bundles, NAMESPACE, name, lambda o: o.setdefault("status", {}).update(status),
                        subresource="status")

    async def _generate(self, name: str) -> None:
        self._status(name, state="generating", progress=0,
                     conditions=[{"type": "Initialized", "status": "True"}])
        for progress in (33, 66):
            await self.simulator.clock.sleep(GENERATION_SECONDS / 3)
            self._status(name, progress=progress)
        await self.simulator.clock.sleep(GENERATION_SECONDS / 3)
        bundle = self.api.get(self.bundles, NAMESPACE, name)
        namespaces = [NAMESPACE, *((bundle.get("spec") or {}).get("extraCollectionNamespaces") or [])]
        archive = self._archive(bundle, namespaces)
        cluster_uuid = self.api.get(self.api.lookup("", "v1", "namespaces"), None, "kube-system")["metadata"]["uid"]
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
        self.archives[name] = archive
        self._status(name, state="ready", progress=100, filename=f"supportbundle_{cluster_uuid}_{stamp}.zip",
                     filesize=len(archive))

    def _archive(self, bundle: dict[str, Any], namespaces: list[str]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("bundle.yaml", yaml.safe_dump({"issueURL": bundle["spec"].get("issueURL", ""),
                                                            "description": bundle["spec"].get("description", ""),
                                                            "harvesterVersion": self.simulator.version.name}))
            for group, version, plural in CLUSTER_KINDS:
                items = self.api.list(self.api.lookup(group, version, plural)).items
                archive.writestr(f"cluster/{plural}.yaml", yaml.safe_dump_all(items, sort_keys=False))
            for namespace in namespaces:
                for group, version, plural in NAMESPACED_KINDS:
                    items = self.api.list(self.api.lookup(group, version, plural), namespace).items
                    if plural == "secrets":
                        items = [{"metadata": {"name": s["metadata"]["name"]}, "type": s.get("type"),
                                  "keys": sorted((s.get("data") or {}).keys())} for s in items]
                    archive.writestr(f"namespaces/{namespace}/{plural}.yaml", yaml.safe_dump_all(items, sort_keys=False))
                for pod in self.api.list(self.api.lookup("", "v1", "pods"), namespace).items:
                    pod_name = pod["metadata"]["name"]
                    for container in self.api.logs.containers(namespace, pod_name):
                        text = "\n".join(self.api.logs.lines(namespace, pod_name, container))
                        archive.writestr(f"logs/{namespace}/{pod_name}/{container}.log", text)
        return buffer.getvalue()

    async def download(self, request: web.Request, tail: str) -> web.StreamResponse:
        """Harvester's download handler (harvester/harvester v1.4.2 `pkg/api/supportbundle/download_handler.go`):
        400 with `{"errors": [...]}` for an unknown or unready bundle; the zip with Content-Length and
        `Content-Disposition: attachment; filename=<status.filename>`; then the SupportBundle is deleted
        unless `retain` parses as true (Go's strconv.ParseBool)."""
        name, _, action = tail.partition("/")
        if action != "download" or request.method != "GET":
            return _harvester_error(404, "404 page not found")
        try:
            bundle = self.api.get(self.bundles, NAMESPACE, name)
        except ApiError as exc:
            return _harvester_error(400, f"fail to get support bundle resource: {exc.message}")
        status = bundle.get("status") or {}
        if status.get("state") != "ready" or not status.get("filename") or not status.get("filesize") \
                or name not in self.archives:
            return _harvester_error(400, "support bundle is not ready")
        archive = self.archives[name]
        response = web.Response(body=archive, headers={
            "Content-Type": "application/zip", "Content-Length": str(len(archive)),
            "Content-Disposition": f"attachment; filename={status['filename']}"})
        if request.query.get("retain", "") not in ("1", "t", "T", "TRUE", "true", "True"):
            await response.prepare(request)
            await response.write_eof()
            try:
                self.api.delete(self.bundles, NAMESPACE, name)
            except ApiError:
                pass
        return response


def _harvester_error(status: int, message: str) -> web.Response:
    return web.json_response({"errors": [message]}, status=status)


def install(simulator: "Simulator") -> None:
    controller = SupportBundleController(simulator)
    simulator.spawn(controller.run, "supportbundle-controller")
    # Served at the VIP (Harvester's API behind the embedded Rancher), not on the kube API listener.
    assert simulator.vip is not None
    simulator.vip.add_route("/v1/harvester/supportbundles/", controller.download)
