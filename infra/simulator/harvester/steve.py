"""Steve at `/v1/harvester/`: the API the Harvester dashboard reads and saves objects through.

Harvester's embedded Rancher serves Steve beside the Kubernetes API; its UI (and the Harvester UI
extension inside a Rancher dashboard, through `/k8s/clusters/<id>/v1/harvester/`) names a type
`<group>.<plural>` (`<plural>` for the core group) and an object `<namespace>/<name>`. A GET returns
the object with Steve's `id` and `type` beside it; a PUT replaces the object, through the same
admission chain a Kubernetes PUT takes (Harvester's validators answer it). Errors come in Norman's
body (`type: error`, `status`, `code` = the Kubernetes reason, `message`), as Rancher's API writes them.

Only what the dashboard's save needs is served: GET and PUT of one object. Steve's `links` and
`metadata.state` are left out (a client falls back to building the object's URL itself), and so are
built-in kinds. A PUT body that still carries `id` and `type` loses them to the CRD's pruning.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from ..rancher.front import rancher_error

if TYPE_CHECKING:
    from ..apiserver.registry import ResourceType
    from ..apiserver.server import ApiServer

PREFIX = "/v1/harvester/"
STEVE_FIELDS = ("id", "type", "links", "actions")     # Steve's own, never part of the stored object


def steve_type(rtype: "ResourceType") -> str:
    return f"{rtype.group}.{rtype.plural}" if rtype.group else rtype.plural


def install(server: "ApiServer") -> None:
    async def handle(request: web.Request, tail: str) -> web.StreamResponse:
        parts = [p for p in tail.split("/") if p]
        # Custom resources only: a built-in kind's own `type` (Secret, Service) is what Steve renames `_type`.
        rtype = next((t for t in server.api.registry.all() if t.custom and parts and steve_type(t) == parts[0]), None)
        if rtype is None:
            return rancher_error(404, "NotFound", f"schema {parts[0] if parts else ''!r} not found")
        if len(parts) != (3 if rtype.namespaced else 2):
            return rancher_error(404, "NotFound", "only one object is served here: <type>/<namespace>/<name>")
        if request.method not in ("GET", "PUT"):
            return rancher_error(405, "MethodNotAllowed", f"{request.method} is not served here")
        namespace = parts[1] if rtype.namespaced else None
        name = parts[-1]
        base = f"/apis/{rtype.group}/{rtype.storage_version}" if rtype.group else "/api/v1"
        kube_path = base + (f"/namespaces/{namespace}" if namespace else "") + f"/{rtype.plural}/{name}"
        answer = await server.serve_authenticated(request.clone(rel_url=kube_path), kube_path)
        assert isinstance(answer, web.Response) and answer.body is not None
        body = json.loads(bytes(answer.body))          # type: ignore[arg-type]
        if answer.status >= 400:
            return rancher_error(answer.status, str(body.get("reason") or answer.reason),
                                 str(body.get("message") or ""))
        for field in STEVE_FIELDS:
            body.pop(field, None)
        body["id"] = f"{namespace}/{name}" if namespace else name
        body["type"] = parts[0]
        return web.json_response(body, status=answer.status)

    server.add_product_route(PREFIX, handle)

