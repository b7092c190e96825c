"""Rancher's HTTPS front: its own listener and CA, Rancher API keys, and the cluster proxy.

Rancher authenticates API keys `token-xxxxx:<secret>` (a Token's name and key) given as a bearer
token, and answers anything else with 401 "must authenticate" (rancher/rancher v2.10.3
`pkg/auth/requests/authenticate.go`). `/k8s/clusters/<id>/...` reaches a cluster's Kubernetes API:
`local` is Rancher's own cluster, `c-m-xxxxxxxx` a downstream one (what a Rancher kubeconfig's
server names). Here the request is handed to that cluster's API server in the same process, after
Rancher's authentication, as Rancher's proxy does with its own credentials.

Harvester's VIP is such a front too: the embedded Rancher's ingress serves Harvester's own API
(`/v1/harvester/...`) with a certificate of Rancher's CA, not the RKE2 one.
"""
from __future__ import annotations

import hmac
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from ..apiserver.server import GO_HEADER_LIMITS, ApiServer
from ..apiserver.tls import TlsMaterial, server_ssl_context

log = logging.getLogger(__name__)

# Rancher's random tokens (wrangler randomtoken): 54 characters of this alphabet.
TOKEN_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
RouteHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def random_token(length: int = 54) -> str:
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


@dataclass(frozen=True)
class ApiKey:
    name: str            # the Token object's name, e.g. token-4xk9p
    secret: str

    @classmethod
    def new(cls, name: str | None = None) -> "ApiKey":
        return cls(name or f"token-{random_token(5)}", random_token())

    @property
    def bearer(self) -> str:
        return f"{self.name}:{self.secret}"


def rancher_error(status: int, code: str, message: str) -> web.Response:
    """Norman's error body, as Rancher's API answers."""
    body = {"type": "error", "status": str(status), "code": code, "message": message}
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


class RancherFront:
    def __init__(self, tls: TlsMaterial, keys: list[ApiKey], host: str = "127.0.0.1", port: int = 0) -> None:
        self.tls = tls
        self.keys = list(keys)
        self.host = host
        self.port = port
        self._routes: dict[str, RouteHandler] = {}
        self._clusters: dict[str, ApiServer] = {}
        self._cluster_keys: dict[str, list[ApiKey]] = {}     # keys valid only for one cluster's proxy
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def add_route(self, prefix: str, handler: RouteHandler) -> None:
        self._routes[prefix] = handler

    def add_cluster(self, cluster_id: str, server: ApiServer, keys: list[ApiKey] = ()) -> None:  # type: ignore[assignment]
        self._clusters[cluster_id] = server
        self._cluster_keys[cluster_id] = list(keys)

    def remove_cluster(self, cluster_id: str) -> None:
        self._clusters.pop(cluster_id, None)
        self._cluster_keys.pop(cluster_id, None)

    async def start(self) -> None:
        app = web.Application(client_max_size=32 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0,
                                     **GO_HEADER_LIMITS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=server_ssl_context(self.tls),
                           reuse_address=True)
        await site.start()
        if not self.port:
            server = site._server  # noqa: SLF001 - aiohttp exposes no public accessor for the bound port
            assert server is not None and server.sockets
            self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _key_matches(self, presented: str, keys: list[ApiKey]) -> bool:
        return any(hmac.compare_digest(presented.encode(), key.bearer.encode()) for key in keys)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        if path in ("/ping", "/healthz"):
            return web.Response(text="pong" if path == "/ping" else "ok")
        header = request.headers.get("Authorization", "")
        presented = header[7:].strip() if header.startswith("Bearer ") else ""
        cluster_id, rest = _cluster_path(path)
        allowed = self.keys + (self._cluster_keys.get(cluster_id, []) if cluster_id else [])
        if not presented or not self._key_matches(presented, allowed):
            return web.Response(status=401, text="Unauthorized 401: must authenticate")
        if cluster_id is not None:
            server = self._clusters.get(cluster_id)
            if server is None:
                return rancher_error(404, "NotFound", f"clusters.management.cattle.io \"{cluster_id}\" not found")
            return await self._proxy(request, server, rest)
        for prefix, handler in self._routes.items():
            if path.startswith(prefix):
                return await handler(request, path[len(prefix):])
        return rancher_error(404, "NotFound", "Not Found")

    @staticmethod
    async def _proxy(request: web.Request, server: ApiServer, rest: str) -> web.StreamResponse:
        if rest in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        target = rest + (f"?{request.query_string}" if request.query_string else "")
        return await server.serve_authenticated(request.clone(rel_url=target), rest.rstrip("/") or "/")


def _cluster_path(path: str) -> tuple[str | None, str]:
    """`/k8s/clusters/<id>/<rest>` -> (id, /rest); anything else -> (None, path)."""
    prefix = "/k8s/clusters/"
    if not path.startswith(prefix):
        return None, path
    cluster_id, _, rest = path[len(prefix):].partition("/")
    return cluster_id, "/" + rest
