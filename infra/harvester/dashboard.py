"""The Harvester dashboard's save, as a client the harness offers (docs/harvester-facts.md §4).

The dashboard saves an existing object with a PUT of the WHOLE object (there is no PATCH),
after `cleanForSave` removed the fields the browser's code strips:

* Rancher's `SteveModel.cleanForSave` deletes `STEVE_NEVER_SAVE = NEVER_ADD - STEVE_ADD`: `status`,
  `metadata.finalizers`, `creationTimestamp`, `generation`, `managedFields`, `uid`, ...; it keeps
  `metadata.resourceVersion` (so a stale save is a 409).
* harvester-ui-extension v1.5.0-rc2 (commit d8bee7f4, harvester-ui-extension#201, backported as
  0ca2b059) overrides it for every Harvester model (`HarvesterResource.cleanForSave` returns the
  data unchanged): the PUT carries the object as read, `status` included. The v1.0.x line got the
  same fix in v1.0.5 (e8c8a54b/dc2437db, 2025-04-08), so only v1.0.4 and earlier and v1.5.0-rc1 drop it.

For a kind without a status subresource (IPPool, LoadBalancer, Upgrade) a save before that fix
stores the object with no status at all. Which code runs is the browser's: the (Rancher, UI
extension) pair is given explicitly, whatever the cluster itself runs.

The request goes through Rancher's Steve API (`/k8s/clusters/<id>/v1/harvester/<type>/<id>`, as
the extension's store does) when a Rancher endpoint is configured, else straight to the
Kubernetes API with the same body.
"""
from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from typing import Any

from infra import versions
from infra.https import Endpoint, EndpointError
from infra.kube import ApiFailure, Kube

Obj = dict[str, Any]

# rancher/dashboard shell/utils/create-yaml.js
NEVER_ADD = (
    "metadata.clusterName", "metadata.creationTimestamp", "metadata.deletionGracePeriodSeconds",
    "metadata.deletionTimestamp", "metadata.finalizers", "metadata.generateName", "metadata.generation",
    "metadata.initializers", "metadata.managedFields", "metadata.ownerReferences", "metadata.resourceVersion",
    "metadata.relationships", "metadata.selfLink", "metadata.state", "metadata.uid", "spec.versions.schema",
    "status", "stringData", "links", "_name", "_labels", "_annotations",
)
# rancher/dashboard shell/plugins/steve/steve-class.js: fields the API needs although YAML hides them
# (newer copies also keep metadata.ownerReferences; the Rancher line that gained it was not verified)
STEVE_ADD = (
    "metadata.resourceVersion", "metadata.fields", "metadata.clusterName", "metadata.deletionGracePeriodSeconds",
    "metadata.generateName", "metadata.ownerReferences",
)
STEVE_NEVER_SAVE = tuple(path for path in NEVER_ADD if path not in STEVE_ADD)

# Steve's own top-level fields beside a Kubernetes object (rancher/apiserver's APIObject: id, type, links,
# actions); not part of the object, so compared objects leave them out.
STEVE_FIELDS = ("id", "type", "links", "actions")


def as_kubernetes_object(obj: Obj) -> Obj:
    """The object as the Kubernetes API holds it, without Steve's own fields."""
    return {key: value for key, value in obj.items() if key not in STEVE_FIELDS}


STATUS_DROPPED_BY = ("<=v1.0.4", "v1.5.0-rc1")     # UI extension releases without the cleanForSave fix


def _version(text: str) -> str:
    if not versions.is_semver(text):
        raise ValueError(f"not a release version: {text!r} (expected e.g. v1.0.4 or v1.5.0-rc2)")
    return text


@dataclass(frozen=True)
class DashboardRelease:
    """The browser side: which Rancher dashboard and which Harvester UI extension do the save."""

    rancher: str
    ui_extension: str

    def __post_init__(self) -> None:
        for text in (self.rancher, self.ui_extension):
            _version(text)       # a typo in a feature file fails here, with the expected form

    @property
    def keeps_status(self) -> bool:
        """Harvester models send the object as read (`cleanForSave` returns the data) from v1.0.5 and v1.5.0-rc2."""
        return not any(versions.satisfies(_version(self.ui_extension), c) for c in STATUS_DROPPED_BY)

    def body_for_save(self, obj: Obj) -> Obj:
        """The PUT body for an edited object, as this release's `cleanForSave` leaves it."""
        body = copy.deepcopy(obj)
        if not self.keeps_status:
            for path in STEVE_NEVER_SAVE:
                _delete_path(body, path)
        return body

    def dropped(self, obj: Obj) -> list[str]:
        """The paths present in `obj` that the save leaves out (for the report)."""
        body = self.body_for_save(obj)
        return [p for p in STEVE_NEVER_SAVE if _has_path(obj, p) and not _has_path(body, p)]

    def __str__(self) -> str:
        return f"Rancher {self.rancher} with UI extension {self.ui_extension}"


def _delete_path(obj: Obj, dotted: str) -> None:
    *parents, last = dotted.split(".")
    node: Any = obj
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(last, None)


def _has_path(obj: Obj, dotted: str) -> bool:
    node: Any = obj
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@dataclass(frozen=True)
class RancherEndpoint:
    """Where the dashboard runs: a Rancher's API (URL, how to trust it, its token) and the Harvester cluster's
    id there (`local` at Harvester's own VIP, where the embedded Rancher serves the standalone UI)."""

    api: Endpoint
    cluster_id: str

    @property
    def url(self) -> str:
        return self.api.url

    def harvester_base(self) -> str:
        return f"{self.api.url.rstrip('/')}/k8s/clusters/{self.cluster_id}/v1/harvester"


@dataclass(frozen=True)
class SaveResult:
    sent: Obj                   # the PUT body
    stored: Obj                 # the object the server answered with
    dropped: tuple[str, ...]    # what the save left out
    via: str                    # "Kubernetes API" or "Rancher Steve API at <url>"


class Dashboard:
    """Read an object and save it back the way this dashboard release does."""

    def __init__(self, release: DashboardRelease, kube: Kube, rancher: RancherEndpoint | None = None) -> None:
        self.release = release
        self.kube = kube
        self.rancher = rancher

    @property
    def via(self) -> str:
        return f"Rancher Steve API at {self.rancher.url}" if self.rancher else "Kubernetes API"

    def read(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        if self.rancher is None:
            return self.kube.get(api_version, kind, name, namespace)
        return self._steve("GET", self._steve_url(api_version, kind, name, namespace))

    def save(self, obj: Obj) -> SaveResult:
        """One PUT, as the browser sends it: no retry (a refusal is shown to the person)."""
        body = self.release.body_for_save(obj)
        dropped = tuple(self.release.dropped(obj))
        if self.rancher is None:
            stored = single_attempt(self.kube).replace(body)
        else:
            meta = obj["metadata"]
            links = obj.get("links") or {}
            url = links.get("update") or links.get("self") or self._steve_url(
                obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            stored = self._steve("PUT", url, body)
        return SaveResult(body, stored, dropped, self.via)

    # ---- Rancher's Steve API ------------------------------------------------------------------
    def _steve_url(self, api_version: str, kind: str, name: str, namespace: str | None) -> str:
        assert self.rancher is not None
        group = api_version.rpartition("/")[0]
        plural = self.kube.resource(api_version, kind).name
        steve_type = f"{group}.{plural}" if group else plural
        object_id = f"{namespace}/{name}" if namespace else name
        return f"{self.rancher.harvester_base()}/{steve_type}/{object_id}"

    def _steve(self, method: str, url: str, body: Obj | None = None) -> Obj:
        """One request, as the browser sends it (no retry); an error answer is the API's refusal."""
        assert self.rancher is not None
        try:
            return dict(self.rancher.api.request(method, url, json_body=body).json())
        except EndpointError as failure:
            if not failure.status:          # not an answer at all (refused, TLS, timeout): not a refusal
                raise
            try:
                error = json.loads(failure.body)
                message, reason = str(error.get("message") or error), str(error.get("code") or failure.status)
            except (ValueError, AttributeError):
                message, reason = failure.body, str(failure.status)
            raise ApiFailure(failure.status, reason, message) from None


def single_attempt(kube: Kube) -> Kube:
    """A view of `kube` whose writes are not retried on 5xx.

    A person's edit is one request; and Harvester's webhooks deny with 500 InternalError, which
    the facade's unavailable-retry would otherwise repeat for its whole budget.
    """
    view = copy.copy(kube)
    view.unavailable_budget = 0
    return view


_PAIR = re.compile(r"^Rancher (?P<rancher>v\S+) with UI extension (?P<ui>v\S+)$")


def parse_release(text: str) -> DashboardRelease:
    """`Rancher v2.10.3 with UI extension v1.0.4` -> DashboardRelease."""
    match = _PAIR.match(text.strip())
    if not match:
        raise ValueError(f"expected 'Rancher vX.Y.Z with UI extension vA.B.C', got {text!r}")
    return DashboardRelease(match["rancher"], match["ui"])
