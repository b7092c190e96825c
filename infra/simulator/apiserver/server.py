"""The HTTPS front of the simulator: Kubernetes REST over aiohttp.

Serves discovery, CRUD, list/watch, patch, status/scale/log subresources and server-side tables,
with bearer-token auth and a CA generated per run. `/simulator/v1/*` are the simulator's own endpoints
(fault injection, facts about the simulation); they require the same token.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from infra.simulator.apimachinery import fieldmanager, protobuf, selectors
from infra.simulator.apimachinery.selectors import SelectorError

from . import discovery, errors, negotiation, reviews
from .faults import Faults
from .objects import ObjectApi, supported_fields
from .registry import ResourceType
from .store import StoredEvent, TooOldResourceVersion
from .streams import STREAM_SUBRESOURCES, PodStreams
from .tables import to_table
from .tls import TlsMaterial, client_certificate_identity, server_ssl_context

log = logging.getLogger(__name__)

JSON = "application/json"
ADMIN = "system:admin"          # who the token and a system:masters certificate authenticate as
KUBE_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.2+rke2r1", "gitCommit": "simulator",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
                "compiler": "gc", "platform": "linux/amd64"}


SimulatorRoute = Callable[[web.Request, str], Awaitable[dict[str, Any]]]
ProductRoute = Callable[[web.Request, str], Awaitable[web.StreamResponse]]
# A Service's backend as the API server's proxy reaches it: (request, port as written in the URL, path
# below .../proxy). Used for what a real cluster serves behind a Service, e.g. the upgrade repo.
ServiceProxy = Callable[[web.Request, str, str], Awaitable[web.StreamResponse]]


def _dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_dumps(body), status=status, content_type=JSON, headers=headers)


def _error(exc: errors.ApiError) -> web.Response:
    return _json(exc.status(), exc.code)


def _injected_error(code: int) -> web.Response:
    """An injected error burst's answer, as kube-apiserver words it: 429 from the max-in-flight filter
    (TooManyRequests, with Retry-After), 500 InternalError, other 5xx ServiceUnavailable."""
    if code == 429:
        exc = errors.ApiError(429, "TooManyRequests", "injected fault: too many requests, please try again later",
                              details={"retryAfterSeconds": 1})
        response = _error(exc)
        response.headers["Retry-After"] = "1"
        return response
    return _error(errors.ApiError(code, "InternalError" if code == 500 else "ServiceUnavailable",
                                  "injected fault: the server is currently unable to handle the request"))


@dataclass
class ResourcePath:
    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str


def parse_resource_path(segments: list[str]) -> ResourcePath | None:
    if segments[:1] == ["api"] and len(segments) >= 3:
        group, version, rest = "", segments[1], segments[2:]
    elif segments[:1] == ["apis"] and len(segments) >= 4:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in ("status", "finalize")):
        namespace, rest = rest[1], rest[2:]
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if len(rest) > 3:
        return None
    return ResourcePath(group, version, plural, namespace, name, sub)


# Go's net/http reads request lines and headers up to 1 MiB (DefaultMaxHeaderBytes): exec's command rides in
# the query string. Every listener written in Go (kube-apiserver, Rancher, Harvester's API) takes as much.
GO_HEADER_LIMITS = {"max_line_size": 1 << 20, "max_field_size": 1 << 20}


def url_host(bind: str) -> str:
    """The host part of a URL for a listener bound to `bind`: 0.0.0.0 and :: mean this machine's 127.0.0.1."""
    if bind in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{bind}]" if ":" in bind else bind


class ApiServer:
    def __init__(self, api: ObjectApi, *, token: str, tls: TlsMaterial, host: str = "127.0.0.1",
                 port: int = 0, bookmark_interval: float = 5.0, kube_version: dict[str, str] | None = None,
                 info: Callable[[], dict[str, Any]] | None = None) -> None:
        self.api = api
        self._token = token
        self._tls = tls
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.kube_version = kube_version or KUBE_VERSION
        self.faults = Faults()
        self._info = info or (lambda: {})
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._vip_away = 0                          # kube-vip failovers under way (vip_away)
        self._ssl: ssl.SSLContext | None = None
        self._streams: set[web.StreamResponse] = set()
        self.requests_served = 0
        self.simulator_calls = 0                   # /simulator/v1 requests but info: a run posing as a lab makes none
        self._simulator_routes: dict[tuple[str, str], SimulatorRoute] = {}
        self._product_routes: dict[str, ProductRoute] = {}
        self._public_routes: dict[str, ProductRoute] = {}
        self._service_proxies: dict[tuple[str, str], ServiceProxy] = {}
        # exec/attach/portforward; the cluster sets its runtime
        self.pod_streams = PodStreams(api, None, minor=int("".join(c for c in self.kube_version["minor"] if c.isdigit())))

    def add_product_route(self, prefix: str, handler: "ProductRoute", *, public: bool = False) -> None:
        """A route of the product's own API beside Kubernetes' (e.g. Harvester's /v1/harvester/...).

        `public` routes answer without the bearer token, as a public server does (e.g. a release server).
        """
        (self._public_routes if public else self._product_routes)[prefix] = handler

    def add_service_proxy(self, namespace: str, service: str, handler: "ServiceProxy") -> None:
        """What answers behind Service namespace/service: `.../services/[scheme:]name[:port]/proxy/...`."""
        self._service_proxies[(namespace, service)] = handler

    def remove_service_proxy(self, namespace: str, service: str) -> None:
        self._service_proxies.pop((namespace, service), None)

    def add_simulator_route(self, method: str, path: str, handler: "SimulatorRoute") -> None:
        """A simulator-only endpoint under /simulator/v1/ (e.g. node power); `path` may hold one `{name}` segment."""
        self._simulator_routes[(method.upper(), path.rstrip("/"))] = handler

    # --- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                     **GO_HEADER_LIMITS)
        await self._runner.setup()
        self._ssl = server_ssl_context(self._tls)
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl, reuse_address=True)
        await self._site.start()
        if not self.port:
            server = self._site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]

    async def refuse_connections(self, seconds: float) -> None:
        """Close the listener for a while: clients see connection refused, as during an RKE2 restart."""
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self.api.store.close_all_watches()
        await asyncio.sleep(seconds)
        await self._listen()

    async def stop(self) -> None:
        self.api.store.close_all_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    @property
    def address(self) -> str:
        """host:port as a client on this machine dials it (a wildcard listener answers on 127.0.0.1)."""
        return f"{url_host(self.host)}:{self.port}"

    # --- request handling ---------------------------------------------------------------------
    def vip_away(self, away: bool) -> None:
        """The VIP is on no node (kube-vip failover, nodes/kube_vip.py): every request for the API is dropped
        without an answer and open watches end, while the simulator's own endpoints and the download site (not
        behind the VIP) go on answering. Counted, so overlapping failovers end with the last."""
        self._vip_away = max(self._vip_away + (1 if away else -1), 0)
        if away:
            self.api.store.close_all_watches()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests_served += 1
        path = request.path.rstrip("/") or "/"
        if self._vip_away and not path.startswith("/simulator/v1/") and \
                not any(request.path.startswith(prefix) for prefix in self._public_routes):
            if request.transport is not None:
                request.transport.close()            # no answer: the client sees the connection dropped
            return web.Response(status=503)
        if path in ("/healthz", "/livez", "/readyz"):
            # Up but not ready (the unavailable fault): kube-apiserver's readyz and healthz fail with 500 and
            # the failing check, livez stays ok (the process is alive).
            if path != "/livez" and self.faults.api_unavailable():
                return web.Response(status=500, text="[+]ping ok\n[-]etcd failed: reason withheld\n"
                                                     f"{path.lstrip('/')} check failed\n")
            return web.Response(text="ok")
        if path == "/version":
            return _json(self.kube_version)
        for prefix, public in self._public_routes.items():      # served to anyone, as a download site is
            if request.path.startswith(prefix):
                return await public(request, request.path[len(prefix):])
        user = self._authenticate(request)
        if user is None:
            return _error(errors.unauthorized())
        if user != ADMIN:
            # The simulator has no RBAC: only cluster admins are authorized, as if no role bound anyone else.
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
                request.method, request.method.lower())
            return _error(errors.ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"'))
        return await self.serve_authenticated(request, path)

    async def serve_authenticated(self, request: web.Request, path: str) -> web.StreamResponse:
        """Answer a request whose caller is already known (also what a proxy in front of this server calls)."""
        if path == "/version":
            return _json(self.kube_version)
        try:
            if path.startswith("/simulator/v1/"):
                self.simulator_calls += path != "/simulator/v1/info"
                return await self._simulator(request, path)
            for prefix, handler in self._product_routes.items():
                if path.startswith(prefix):
                    return await handler(request, path[len(prefix):])
            if self.faults.api_unavailable():
                raise errors.unavailable("the server is currently unable to handle the request")
            burst = self.faults.take_burst()
            if burst is not None:
                return _injected_error(burst)
            return await self._route(request, path)
        except errors.ApiError as exc:
            return _error(exc)
        except SelectorError as exc:
            return _error(errors.bad_request(str(exc)))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a server bug must still answer like an API server
            log.exception("internal error serving %s %s", request.method, path)
            return _error(errors.internal(f"internal error: {exc}"))

    def _authenticate(self, request: web.Request) -> str | None:
        """Who calls, as kube-apiserver's authenticators decide: a client certificate from this server's
        client CA (its CN; RKE2's x509 login) first, then the bearer token; None means 401."""
        transport = request.transport
        identity = client_certificate_identity(transport.get_extra_info("ssl_object") if transport else None,
                                               self._tls)
        if identity is not None:
            return ADMIN if "system:masters" in identity.groups else identity.user
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), self._token.encode()):
            return ADMIN
        return None

    async def _route(self, request: web.Request, path: str) -> web.StreamResponse:
        segments = [s for s in path.split("/") if s]
        registry = self.api.registry
        if path == "/api":
            return _json(discovery.api_versions(self.address))
        if path == "/apis":
            return _json(discovery.api_group_list(registry))
        if path == "/api/v1":
            return _json(discovery.api_resource_list(registry, "", "v1"))
        if segments[0] == "apis" and len(segments) == 2:
            group = discovery.api_group(registry, segments[1])
            if group is None:
                raise errors.page_not_found()
            return _json(group)
        if segments[0] == "apis" and len(segments) == 3:
            doc = discovery.api_resource_list(registry, segments[1], segments[2])
            if doc is None:
                raise errors.page_not_found()
            return _json(doc)
        if segments[0] == "openapi":
            return self._openapi(segments)
        if segments[:2] == ["api", "v1"] and len(segments) >= 6 and segments[2] == "namespaces" \
                and segments[4] == "services" and segments[6:7] == ["proxy"]:
            return await self._service_proxy(request, segments[3], segments[5], "/".join(segments[7:]))
        target = parse_resource_path(segments)
        if target is None:
            raise errors.page_not_found()
        rtype = self.api.lookup(target.group, target.version, target.plural)
        if (rtype.group, rtype.plural) == ("", "pods") and target.subresource in STREAM_SUBRESOURCES \
                and target.namespace and target.name:
            return await self.pod_streams.handle(request, target.namespace, target.name, target.subresource)
        if target.namespace is not None and not rtype.namespaced:
            raise errors.page_not_found()
        return await self._resource(request, rtype, target)

    async def _service_proxy(self, request: web.Request, namespace: str, spec: str, rest: str) -> web.StreamResponse:
        """kube-apiserver's services/proxy: `[scheme:]name[:port]`; 503 while nothing serves the Service."""
        parts = spec.split(":")
        name = parts[1] if len(parts) == 3 or (len(parts) == 2 and parts[0] in ("http", "https")) else parts[0]
        port = parts[-1] if len(parts) == 3 or (len(parts) == 2 and parts[0] not in ("http", "https")) else ""
        services = self.api.lookup("", "v1", "services")
        self.api.get(services, namespace, name)         # 404 services "<name>" not found, as kube says
        handler = self._service_proxies.get((namespace, name))
        if handler is None:
            raise errors.ApiError(503, "ServiceUnavailable", f'no endpoints available for service "{name}"')
        if request.path.endswith("/") and rest:
            rest += "/"
        return await handler(request, port, rest)

    def _openapi(self, segments: list[str]) -> web.Response:
        if segments == ["openapi", "v3"]:
            return _json(discovery.openapi_v3_index(self.api.registry))
        if len(segments) >= 4 and segments[1] == "v3":
            rest = segments[2:]
            group, version = ("", rest[1]) if rest[0] == "api" else (rest[1], rest[2]) if len(rest) > 2 else ("", "")
            schemas = {(t.group, t.plural): t.schemas.get(version) or {} for t in self.api.registry.all() if t.custom}
            doc = discovery.openapi_v3_document(self.api.registry, group, version, schemas)
            if doc is not None:
                return _json(doc)
        raise errors.page_not_found()

    # --- resources ----------------------------------------------------------------------------
    async def _resource(self, request: web.Request, rtype: ResourceType, target: ResourcePath) -> web.StreamResponse:
        query = request.query
        method = request.method
        dry_run = _dry_run(query)
        strict = query.get("fieldValidation", "") == "Strict"
        version = target.version
        sub = target.subresource
        if sub and sub not in ("status", "scale", *rtype.extra_subresources):
            raise errors.page_not_found()
        if sub == "status" and not rtype.has_status:
            raise errors.page_not_found()
        if sub == "scale" and not rtype.has_scale:
            raise errors.page_not_found()

        if not sub and _verb(method, target.name, query) not in rtype.verbs:
            raise errors.method_not_allowed()
        if method == "GET":
            if target.name is None:
                if query.get("watch") in ("true", "1"):
                    return await self._watch(request, rtype, target)
                return self._list(request, rtype, target)
            if sub == "log":
                return await self._log(request, target)
            obj = self.api.get(rtype, target.namespace, target.name, version)
            if sub == "scale":
                return _json(_scale_of(obj))
            form = negotiation.negotiate(request.headers.get("Accept", ""), is_list=False)
            if form.kind == "Table":
                return _json(self._table(request, rtype, version, [obj], obj["metadata"]["resourceVersion"]))
            if form.kind == "PartialObjectMetadata":
                return _json(negotiation.partial(obj, form))
            return _json(obj)

        body = await _read_body(request) if method in ("POST", "PUT", "PATCH", "DELETE") else b""
        if method == "POST" and target.name is None and reviews.is_review(rtype):
            return _json(reviews.answer(rtype, _decode(body)), 201)
        if method == "POST" and target.name is None:
            obj = _decode(body)
            created = self.api.create(rtype, obj, namespace=target.namespace, dry_run=dry_run,
                                      strict_fields=strict, version=version, manager=_manager(request))
            return _json(created, 201)
        if method == "PUT" and target.name:
            obj = _decode(body)
            if sub == "scale":
                return _json(self._set_scale(rtype, target, obj))
            name = (obj.get("metadata") or {}).get("name")
            if name != target.name:
                raise errors.bad_request(f"the name of the object ({name}) does not match the name on the URL "
                                         f"({target.name})")
            updated = self.api.update(rtype, obj, namespace=target.namespace, subresource=sub, dry_run=dry_run,
                                      strict_fields=strict, version=version, manager=_manager(request))
            return _json(updated)
        if method == "PATCH" and target.name:
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            if sub == "scale":
                current = _scale_of(self.api.get(rtype, target.namespace, target.name, version))
                from infra.simulator.apimachinery.patch import PatchError, apply_patch
                try:
                    wanted = apply_patch(current, body, content_type, "Scale", custom=False)
                except PatchError as exc:
                    raise errors.ApiError(exc.code, "BadRequest", str(exc)) from None
                return _json(self._set_scale(rtype, target, wanted))
            if content_type == "application/apply-patch+yaml":
                manager = query.get("fieldManager", "")
                if not manager:
                    raise errors.bad_request("PATCH, application/apply-patch+yaml requires fieldManager to be set")
                applied, created = self.api.apply(rtype, target.namespace, target.name, body, manager=manager,
                                                  force=query.get("force") in ("true", "1"), subresource=sub,
                                                  dry_run=dry_run, strict_fields=strict, version=version)
                return _json(applied, 201 if created else 200)
            patched = self.api.patch(rtype, target.namespace, target.name, body, content_type, subresource=sub,
                                     dry_run=dry_run, strict_fields=strict, version=version,
                                     manager=_manager(request))
            return _json(patched)
        if method == "DELETE":
            options = _decode(body) if body.strip() else {}
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            dry_run = dry_run or "All" in (options.get("dryRun") or [])
            if target.name:
                deleted = self.api.delete(rtype, target.namespace, target.name, dry_run=dry_run,
                                          propagation=propagation, preconditions=options.get("preconditions"),
                                          version=version)
                return _json(deleted)
            result = self.api.list(rtype, target.namespace, label_selector=query.get("labelSelector", ""),
                                   field_selector=query.get("fieldSelector", ""), version=version)
            for item in result.items:
                self.api.delete(rtype, item["metadata"].get("namespace"), item["metadata"]["name"],
                                dry_run=dry_run, propagation=propagation, version=version)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
        raise errors.method_not_allowed()

    def _set_scale(self, rtype: ResourceType, target: ResourcePath, scale: dict[str, Any]) -> dict[str, Any]:
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise errors.invalid("Scale", target.name or "", [f"spec.replicas: Invalid value: {json.dumps(replicas)}: "
                                                              "must be greater than or equal to 0"], "autoscaling")
        assert target.name is not None

        def set_replicas(obj: dict[str, Any]) -> None:
            obj.setdefault("spec", {})["replicas"] = replicas

        updated = self.api.mutate(rtype, target.namespace, target.name, set_replicas)
        return _scale_of(updated)

    def _table(self, request: web.Request, rtype: ResourceType, version: str, objects: list[dict[str, Any]],
               resource_version: str, continue_token: str = "") -> dict[str, Any]:
        from .registry import printer_columns_for

        columns = printer_columns_for(rtype, version, self.api.crd_for(rtype))
        return to_table(rtype, columns, objects, resource_version,
                        request.query.get("includeObject", "Metadata"), continue_token)

    def _list(self, request: web.Request, rtype: ResourceType, target: ResourcePath) -> web.Response:
        query = request.query
        limit = _int(query.get("limit"), "limit")
        result = self.api.list(rtype, target.namespace, label_selector=query.get("labelSelector", ""),
                               field_selector=query.get("fieldSelector", ""), limit=limit,
                               continue_token=query.get("continue", ""), version=target.version)
        form = negotiation.negotiate(request.headers.get("Accept", ""), is_list=True)
        if form.kind == "Table":
            return _json(self._table(request, rtype, target.version, result.items, str(result.resource_version),
                                     result.continue_token))
        metadata: dict[str, Any] = {"resourceVersion": str(result.resource_version)}
        if result.continue_token:
            metadata["continue"] = result.continue_token
            metadata["remainingItemCount"] = result.remaining
        if form.kind == "PartialObjectMetadataList":
            return _json(negotiation.partial_list(result.items, metadata, form))
        return _json({"kind": rtype.list_kind, "apiVersion": rtype.api_version(target.version),
                      "metadata": metadata, "items": result.items})

    async def _watch(self, request: web.Request, rtype: ResourceType, target: ResourcePath) -> web.StreamResponse:
        query = request.query
        labels = selectors.parse_label_selector(query.get("labelSelector", ""))
        fields = selectors.parse_field_selector(query.get("fieldSelector", ""), supported_fields(rtype))
        namespace = target.namespace if rtype.namespaced else None
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = _int(query.get("timeoutSeconds"), "timeoutSeconds") or 1800
        rv_text = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents") in ("true", "1")
        since = None if rv_text in ("", "0") or send_initial else _int(rv_text, "resourceVersion")

        def matches(obj: dict[str, Any] | None) -> bool:
            if obj is None:
                return False
            meta = obj["metadata"]
            if namespace and meta.get("namespace") != namespace:
                return False
            return labels.matches(meta.get("labels")) and fields.matches(obj)

        def accepts(event: StoredEvent) -> bool:
            return matches(event.object) or matches(event.old_object)

        form = negotiation.negotiate(request.headers.get("Accept", ""), is_list=False)
        response = web.StreamResponse(headers={"Content-Type": JSON, "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        self._streams.add(response)
        store = self.api.store
        try:
            watcher, replay = store.watch((rtype.group, rtype.plural), since, accepts)
        except TooOldResourceVersion as exc:
            status = errors.gone(str(exc)).status()
            await response.write(_dumps({"type": "ERROR", "object": status}) + b"\n")
            self._streams.discard(response)
            return response
        try:
            def view(obj: dict[str, Any]) -> dict[str, Any]:
                obj = self.api._view(rtype, obj, target.version)  # noqa: SLF001
                return negotiation.partial(obj, form) if form.kind == "PartialObjectMetadata" else obj

            if since is None:
                for obj in self.api.list(rtype, namespace, label_selector=query.get("labelSelector", ""),
                                         field_selector=query.get("fieldSelector", ""),
                                         version=target.version).items:
                    await response.write(_dumps({"type": "ADDED", "object": view(obj)}) + b"\n")
                if send_initial:
                    mark = {"kind": rtype.kind, "apiVersion": rtype.api_version(target.version),
                            "metadata": {"resourceVersion": str(store.resource_version),
                                         "annotations": {"k8s.io/initial-events-end": "true"}}}
                    await response.write(_dumps({"type": "BOOKMARK", "object": mark}) + b"\n")
            for event in replay:
                await response.write(_dumps(_translate(event, matches, view)) + b"\n")
            deadline = time.monotonic() + timeout
            last_rv = store.resource_version
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                wait = min(remaining, self.bookmark_interval) if bookmarks else remaining
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), wait)
                except asyncio.TimeoutError:
                    if bookmarks and time.monotonic() < deadline:
                        mark = {"kind": rtype.kind, "apiVersion": rtype.api_version(target.version),
                                "metadata": {"resourceVersion": str(max(last_rv, store.resource_version))}}
                        await response.write(_dumps({"type": "BOOKMARK", "object": mark}) + b"\n")
                    continue
                if event is None:
                    break
                last_rv = event.resource_version
                await response.write(_dumps(_translate(event, matches, view)) + b"\n")
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watcher)
            self._streams.discard(response)
        return response

    async def _log(self, request: web.Request, target: ResourcePath) -> web.StreamResponse:
        query = request.query
        pods = self.api.lookup("", "v1", "pods")
        assert target.name is not None and target.namespace is not None
        pod = self.api.get(pods, target.namespace, target.name)
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers", [])]
        container = query.get("container") or (containers[0] if len(containers) == 1 else "")
        if not container:
            raise errors.bad_request(f"a container name must be specified for pod {target.name}, "
                                     f"choose one of: [{' '.join(containers)}]")
        if containers and container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {target.name}")
        logs = self.api.logs
        lines = logs.lines(target.namespace, target.name, container)
        tail = _int(query.get("tailLines"), "tailLines") if query.get("tailLines") else None
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        follow = query.get("follow") in ("true", "1")
        if not follow:
            text = "".join(line + "\n" for line in lines)
            return web.Response(text=text, content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        sent = len(logs.lines(target.namespace, target.name, container))
        for line in lines:
            await response.write((line + "\n").encode())
        try:
            while True:
                waiter = logs.waiter(target.namespace, target.name, container)
                current = logs.lines(target.namespace, target.name, container)
                if len(current) == sent:
                    live = self.api.find(pods, target.namespace, target.name)
                    if live is None or (live.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                        break
                    try:
                        await asyncio.wait_for(waiter.wait(), 0.5)
                    except asyncio.TimeoutError:
                        pass
                    continue
                for line in current[sent:]:
                    await response.write((line + "\n").encode())
                sent = len(current)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    # --- the simulator's own endpoints -------------------------------------------------------------
    async def _simulator(self, request: web.Request, path: str) -> web.Response:
        if path == "/simulator/v1/info" and request.method == "GET":
            return _json({"apiserver": self.url, "requestsServed": self.requests_served, "simulatorCalls": self.simulator_calls,
                          "openWatches": self.api.store.open_watches(), **self._info()})
        if path == "/simulator/v1/faults" and request.method == "POST":
            spec = _decode(await request.read())
            done: dict[str, Any] = {}
            if spec.get("unavailableSeconds"):
                self.faults.unavailable_until = time.monotonic() + float(spec["unavailableSeconds"])
                done["unavailableSeconds"] = spec["unavailableSeconds"]
            if spec.get("errorBurst"):
                self.faults.error_burst_left = int(spec["errorBurst"].get("count", 1))
                self.faults.error_burst_code = int(spec["errorBurst"].get("code", 503))
                done["errorBurst"] = spec["errorBurst"]
            if spec.get("dropWatches"):
                done["droppedWatches"] = self.api.store.close_all_watches()
            if spec.get("compact"):
                self.api.store.compact()
                done["compacted"] = True
            if spec.get("refuseConnectionsSeconds"):
                seconds = float(spec["refuseConnectionsSeconds"])
                asyncio.get_running_loop().call_later(0.05, lambda: asyncio.ensure_future(
                    self.refuse_connections(seconds)))
                self.faults.fired["refusedConnections"] = self.faults.fired.get("refusedConnections", 0) + 1
                done["refuseConnectionsSeconds"] = seconds
            if spec.get("sshDrop"):
                self.faults.ssh_drop_left = int(spec["sshDrop"].get("count", 1))
                done["sshDrop"] = spec["sshDrop"]
            if spec.get("slowPhases"):
                slow = spec["slowPhases"]
                try:
                    self.faults.slow_phases(float(slow.get("factor", 2.0)), float(slow.get("seconds", 10.0)))
                except ValueError as exc:
                    raise errors.bad_request(str(exc)) from None
                done["slowPhases"] = slow
            return _json({"applied": done})
        if path == "/simulator/v1/faults" and request.method == "GET":
            return _json(self.faults.describe())
        for (method, route), handler in self._simulator_routes.items():
            if method != request.method:
                continue
            base, _, param = route.partition("/{")
            suffix = param.partition("}")[2]          # "/power" in "/simulator/v1/nodes/{name}/power"
            name = path[len(base) + 1:len(path) - len(suffix)] if path.endswith(suffix) else ""
            if param and path.startswith(base + "/") and name and "/" not in name:
                return _json(await handler(request, name))
            if not param and path == route:
                return _json(await handler(request, ""))
        raise errors.page_not_found()


def _translate(event: StoredEvent, matches: Callable[[dict[str, Any] | None], bool],
               view: Callable[[dict[str, Any]], dict[str, Any]]) -> dict[str, Any]:
    """Selector-aware event types: an object leaving the selection is DELETED for this watcher."""
    kind = event.type
    if kind == "MODIFIED":
        now, before = matches(event.object), matches(event.old_object)
        if now and not before:
            kind = "ADDED"
        elif before and not now:
            kind = "DELETED"
    return {"type": kind, "object": view(dict(event.object))}


def _scale_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    selector = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": ",".join(f"{k}={v}" for k, v in sorted(selector.items()))}}


def _manager(request: web.Request) -> str:
    """The field manager of a write: `fieldManager`, else derived from the User-Agent as kube does."""
    return request.query.get("fieldManager") or fieldmanager.manager_from_user_agent(
        request.headers.get("User-Agent", ""))


def _verb(method: str, name: str | None, query: Any) -> str:
    """The API verb of a request, as kube's RequestInfoFactory names it."""
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if name else "list"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def _dry_run(query: Any) -> bool:
    values = query.getall("dryRun", [])
    for value in values:
        if value != "All":
            raise errors.bad_request(f'Invalid dry run value: "{value}": supported values: "All"')
    return bool(values)


def _int(text: str | None, name: str) -> int:
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise errors.bad_request(f"invalid value for {name}: {text!r}") from None


_PROTOBUF_SCHEMA: list[protobuf.KubeProtobuf | None] = []


def protobuf_schema() -> protobuf.KubeProtobuf | None:
    """The protobuf schema extracted from kubectl (see apimachinery/protobuf.py), loaded once."""
    if not _PROTOBUF_SCHEMA:
        path = protobuf.default_descriptor_path(Path(__file__).resolve().parents[3])
        try:
            _PROTOBUF_SCHEMA.append(protobuf.KubeProtobuf.load(path) if path.exists() else None)
        except (OSError, ValueError) as exc:
            log.warning("the protobuf schema %s could not be loaded: %s", path, exc)
            _PROTOBUF_SCHEMA.append(None)
    return _PROTOBUF_SCHEMA[0]


async def _read_body(request: web.Request) -> bytes:
    """The request body as JSON/YAML bytes; kube's protobuf envelope is decoded into the JSON kube would keep."""
    content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
    body = await request.read()
    if content_type != protobuf.MEDIA_TYPE:
        return body
    schema = protobuf_schema()
    if schema is None:
        path = protobuf.default_descriptor_path(Path(__file__).resolve().parents[3])
        raise errors.ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                              "accepted media types include: application/json, application/yaml (the simulator's "
                              f"protobuf schema {path} is missing: make it with `python -m "
                              "infra.simulator.apimachinery.protobuf extract --kubectl $(command -v kubectl) "
                              f"--out {path}`)")
    try:
        return _dumps(schema.decode(body))
    except protobuf.ProtobufError as exc:
        raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from None


def _decode(body: bytes) -> dict[str, Any]:
    try:
        obj = json.loads(body or b"{}")
    except ValueError:
        import yaml
        try:
            obj = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from None
    if not isinstance(obj, dict):
        raise errors.bad_request("the body of the request must be an object")
    return obj
