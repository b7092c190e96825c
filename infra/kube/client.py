"""`Kube`: get/list/create/apply/patch/replace/delete any kind, and `wait_for` a state by watching.

Waits return as soon as the state holds (watch events, not polling), survive dropped watches and
410 Gone by re-listing, ride through an unavailable API server within the budget, and when the
budget runs out raise `WaitTimeout` saying what was awaited and what was last seen.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import kubernetes
import tenacity
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

from infra.scratch import scratch_dir
from infra.waits.budget import Budget, Deadline, WaitTimeout
from infra.waits.retry import (
    is_api_unavailable,
    retry_api_unavailable,
    retry_conflict,
    transport_retries,
)

from .predicates import summary

log = logging.getLogger("harvester_e2e.kube")
Obj = dict[str, Any]
Objects = list[Obj]            # (Kube has a method named `list`: annotations in it use this name)

PATCH_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


class ApiFailure(Exception):
    """The API server refused a request; `message` is what kubectl would print."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def from_exception(cls, exc: ApiException | DynamicApiError) -> "ApiFailure":
        body = getattr(exc, "body", None) or ""
        try:
            status = json.loads(body)
            return cls(int(status.get("code", exc.status)), status.get("reason", ""), status.get("message", body))
        except (ValueError, TypeError, AttributeError):
            return cls(int(getattr(exc, "status", 0) or 0), str(getattr(exc, "reason", "")), str(body))


class NotFound(ApiFailure):
    pass


class _WatchEnded(Exception):
    """The watch closed (timeout, dropped connection) before the awaited state held."""


_DISCOVERY_DIR: Path | None = None


def _discovery_cache(server: str, kubeconfig: Path, context: str | None) -> Path:
    """One discovery cache per API server and process: a second `Kube` of the same cluster (a re-attach, a
    guest's host) reuses it instead of asking the server again. New kinds re-discover (see `resource`)."""
    global _DISCOVERY_DIR
    if _DISCOVERY_DIR is None:
        _DISCOVERY_DIR = scratch_dir("discovery")
    import hashlib

    key = hashlib.sha256(f"{server}|{Path(kubeconfig).resolve()}|{context}".encode()).hexdigest()[:16]
    return _DISCOVERY_DIR / f"{key}.json"


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


class Kube:
    def __init__(self, kubeconfig: Path, *, context: str | None = None, unavailable_budget: float = 300.0,
                 request_timeout: float = 30.0, gone: Callable[[], str | None] | None = None,
                 transport_attempts: int = 8) -> None:
        """`unavailable_budget`: how long a call rides through an unavailable API server; `transport_attempts`:
        how often one GET is re-sent at the transport first (0 and 0: one quick look, as a probe needs)."""
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), context=context,
                                           client_configuration=configuration, persist_config=False)
        configuration.retries = transport_retries(transport_attempts)   # a fault costs one GET's retry, not discovery's
        self.api_client = kubernetes.client.ApiClient(configuration)
        self.unavailable_budget = unavailable_budget
        self.gone = gone          # says why the API server will not come back (no point retrying), if known
        self.request_timeout = request_timeout
        self.dynamic = retry_api_unavailable(unavailable_budget, gone)(
            DynamicClient, self.api_client, cache_file=str(_discovery_cache(configuration.host, kubeconfig, context)))

    # --- plumbing -----------------------------------------------------------------------------
    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            return retry_api_unavailable(self.unavailable_budget, self.gone)(fn, *args, **kwargs)
        except Exception as exc:
            self._raise_if_gone(exc)
            if not isinstance(exc, (ApiException, DynamicApiError)):
                raise
            failure = ApiFailure.from_exception(exc)
            if failure.status == 404:
                raise NotFound(failure.status, failure.reason, failure.message) from None
            raise failure from None

    def _raise_if_gone(self, exc: BaseException) -> None:
        """A transport failure from a server known to be gone becomes one clear failure, at once."""
        reason = self.gone() if self.gone is not None and is_api_unavailable(exc) else None
        if reason:
            raise ApiFailure(503, "ServerGone", reason) from exc

    def resource(self, api_version: str, kind: str) -> Any:
        try:
            return retry_api_unavailable(self.unavailable_budget, self.gone)(
                self.dynamic.resources.get, api_version=api_version, kind=kind)
        except Exception as exc:
            self._raise_if_gone(exc)
            if not isinstance(exc, ResourceNotFoundError):
                raise
            self.dynamic.resources.invalidate_cache()   # a CRD registered since discovery
            try:
                return self.dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise NotFound(404, "NotFound", f"the server does not serve kind {kind} in {api_version}") from None

    @staticmethod
    def _dict(result: Any) -> Obj:
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)

    # --- reads --------------------------------------------------------------------------------
    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj:
        return self._dict(self._call(self.resource(api_version, kind).get, name=name, namespace=namespace))

    def find(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        try:
            return self.get(api_version, kind, name, namespace)
        except NotFound:
            return None

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> list[Obj]:
        result = self._call(self.resource(api_version, kind).get, namespace=namespace,
                            label_selector=label_selector, field_selector=field_selector)
        return [dict(item) for item in self._dict(result).get("items", [])]

    def server_version(self) -> Obj:
        info = self._call(kubernetes.client.VersionApi(self.api_client).get_code)
        return {"major": info.major, "minor": info.minor, "gitVersion": info.git_version}

    def pod_log(self, name: str, namespace: str, *, container: str | None = None, tail_lines: int | None = None) -> str:
        core = kubernetes.client.CoreV1Api(self.api_client)
        return str(self._call(core.read_namespaced_pod_log, name, namespace, container=container,
                              tail_lines=tail_lines))

    def events_for(self, obj: Obj) -> Objects:
        meta = obj.get("metadata", {})
        selector = f"involvedObject.name={meta.get('name')}"
        if obj.get("kind"):
            selector += f",involvedObject.kind={obj['kind']}"
        return self.list("v1", "Event", meta.get("namespace"), field_selector=selector)

    # --- writes -------------------------------------------------------------------------------
    def create(self, obj: Obj, *, dry_run: bool = False) -> Obj:
        resource = self.resource(obj["apiVersion"], obj["kind"])
        namespace = obj.get("metadata", {}).get("namespace")
        return self._dict(self._call(resource.create, body=obj, namespace=namespace,
                                     dry_run="All" if dry_run else None))

    def replace(self, obj: Obj) -> Obj:
        """PUT the whole object (optimistic concurrency: a stale resourceVersion fails with 409)."""
        resource = self.resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        return self._dict(self._call(resource.replace, body=obj, name=meta["name"], namespace=meta.get("namespace")))

    def patch(self, api_version: str, kind: str, name: str, patch: Any, *, namespace: str | None = None,
              patch_type: str = "merge", subresource: str | None = None) -> Obj:
        resource = self.resource(api_version, kind)
        if subresource:
            # Sent even when discovery does not list the subresource: the server's 404 is the answer.
            path = f"{resource.path(name=name, namespace=namespace)}/{subresource}"
            return self._dict(self._call(self.dynamic.request, "patch", path, body=patch,
                                         content_type=PATCH_TYPES[patch_type]))
        return self._dict(self._call(resource.patch, body=patch, name=name, namespace=namespace,
                                     content_type=PATCH_TYPES[patch_type]))

    def apply(self, obj: Obj) -> Obj:
        """Create, or merge the given fields into the existing object (retrying on conflicts)."""
        meta = obj["metadata"]

        def attempt() -> Obj:
            current = self.find(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            if current is None:
                return self.create(obj)
            return self.patch(obj["apiVersion"], obj["kind"], meta["name"], obj, namespace=meta.get("namespace"))

        return retry_conflict()(attempt)

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, *,
               propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            self._call(self.resource(api_version, kind).delete, name=name, namespace=namespace,
                       body={"propagationPolicy": propagation})
            return True
        except NotFound:
            return False

    # --- waits --------------------------------------------------------------------------------
    def wait_for(self, api_version: str, kind: str, name: str, predicate: Callable[[Obj | None], bool], *,
                 budget: Budget, awaited: str, namespace: str | None = None) -> Obj | None:
        """Wait until `predicate(object or None)` holds for one named object; return it."""
        found: dict[str, Obj | None] = {}

        def check(items: Objects) -> bool:
            obj = next((o for o in items if o["metadata"]["name"] == name), None)
            found["obj"] = obj
            return predicate(obj)

        self._wait(api_version, kind, namespace, None, f"metadata.name={name}", check,
                   lambda items: summary(found.get("obj")), budget, awaited)
        return found.get("obj")

    def wait_for_gone(self, api_version: str, kind: str, name: str, *, budget: Budget,
                      namespace: str | None = None) -> None:
        self.wait_for(api_version, kind, name, lambda o: o is None, budget=budget, namespace=namespace,
                      awaited=f"{kind} {name} to be deleted")

    def wait_for_all(self, api_version: str, kind: str, predicate: Callable[[Objects], bool], *, budget: Budget,
                     awaited: str, namespace: str | None = None, label_selector: str | None = None,
                     describe: Callable[[Objects], str] | None = None) -> Objects:
        """Wait until `predicate(every matching object)` holds; return the objects."""
        seen: dict[str, Objects] = {"items": []}

        def check(items: Objects) -> bool:
            seen["items"] = items
            return predicate(items)

        default = lambda items: "; ".join(summary(o) for o in items) or "no objects"  # noqa: E731
        self._wait(api_version, kind, namespace, label_selector, None, check, describe or default, budget, awaited)
        return seen["items"]

    def _wait(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None,
              field_selector: str | None, check: Callable[[Objects], bool],
              describe: Callable[[Objects], str], budget: Budget, awaited: str) -> None:
        deadline = budget.start()
        cache: dict[tuple[str, str], Obj] = {}
        watch_started = {"at": 0.0}

        def attempt() -> None:
            resource_version = self._relist(api_version, kind, namespace, label_selector, field_selector,
                                            cache, deadline)
            if check(list(cache.values())):
                return
            watch_started["at"] = time.monotonic()
            if not self._watch_until(api_version, kind, namespace, label_selector, field_selector, cache,
                                     resource_version, check, deadline):
                raise _WatchEnded(awaited)

        def backoff(state: tenacity.RetryCallState) -> float:
            # A watch that ran its full course reconnects at once; one that broke early backs off.
            if time.monotonic() - watch_started["at"] > 5.0:
                return 0.0
            return min(2.0, 0.05 * 2 ** min(state.attempt_number, 6), max(deadline.remaining, 0.0))

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, _WatchEnded) or is_api_unavailable(exc):
                return not deadline.expired()
            return isinstance(exc, ApiException) and exc.status == 410

        try:
            tenacity.Retrying(retry=tenacity.retry_if_exception(retryable), wait=backoff,
                              stop=lambda state: deadline.expired(), reraise=True)(attempt)
        except ApiException as exc:
            if not is_api_unavailable(exc) and exc.status != 410:
                raise ApiFailure.from_exception(exc) from None
            self._timeout(budget, awaited, deadline, kind, cache, describe)
        except Exception as exc:
            if isinstance(exc, _WatchEnded) or is_api_unavailable(exc):
                self._timeout(budget, awaited, deadline, kind, cache, describe)
            raise

    @staticmethod
    def _timeout(budget: Budget, awaited: str, deadline: Deadline, kind: str, cache: dict[tuple[str, str], Obj],
                 describe: Callable[[Objects], str]) -> None:
        items = list(cache.values())
        raise WaitTimeout(budget, awaited, deadline.elapsed, describe(items),
                          evidence={f"last seen {kind}": items or "nothing"})

    def _relist(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None,
                field_selector: str | None, cache: dict[tuple[str, str], Obj], deadline: Deadline) -> str:
        resource = self.resource(api_version, kind)
        listing = retry_api_unavailable(max(deadline.remaining, 0.1), self.gone)(
            resource.get, namespace=namespace, label_selector=label_selector, field_selector=field_selector,
            _request_timeout=self.request_timeout)
        data = self._dict(listing)
        cache.clear()
        for item in data.get("items", []):
            cache[_key(item)] = dict(item)
        return str(data["metadata"]["resourceVersion"])

    def _watch_until(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None,
                     field_selector: str | None, cache: dict[tuple[str, str], Obj], resource_version: str,
                     check: Callable[[Objects], bool], deadline: Deadline) -> bool:
        resource = self.resource(api_version, kind)
        watcher = kubernetes.watch.Watch()
        server_timeout = max(1, int(min(deadline.remaining, 60.0)))
        try:
            for event in watcher.stream(resource.get, namespace=namespace, label_selector=label_selector,
                                        field_selector=field_selector, resource_version=resource_version,
                                        allow_watch_bookmarks=True, serialize=False,
                                        timeout_seconds=server_timeout,
                                        _request_timeout=(10, server_timeout + 15)):
                kind_of_event, obj = event["type"], event.get("raw_object") or event["object"]
                if kind_of_event in ("ADDED", "MODIFIED"):
                    cache[_key(obj)] = obj
                elif kind_of_event == "DELETED":
                    cache.pop(_key(obj), None)
                if kind_of_event != "BOOKMARK" and check(list(cache.values())):
                    return True
                if deadline.expired():
                    return False
        finally:
            watcher.stop()
        return False


def names(objects: Iterable[Obj]) -> list[str]:
    return [o["metadata"]["name"] for o in objects]
