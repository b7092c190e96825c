"""Accept negotiation of GET responses as kube-apiserver does it: plain objects, Table, PartialObjectMetadata.

Modelled on k8s.io/apiserver pkg/endpoints/handlers/negotiation and handlers/response.go (v0.32): each Accept
clause is tried in order of preference; a clause asking for a conversion (`;as=Kind;g=meta.k8s.io;v=v1`) the
endpoint cannot do is skipped, and when no clause is left the answer is 406 NotAcceptable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import errors

META_GROUP = "meta.k8s.io"
META_VERSIONS = ("v1", "v1beta1")
TRANSFORMS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")
# What the simulator writes (it reads protobuf, but answers JSON, which every client accepts).
SERVED = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")


@dataclass(frozen=True)
class Target:
    kind: str = ""            # "" for the object itself, else one of TRANSFORMS
    version: str = "v1"       # of meta.k8s.io

    @property
    def api_version(self) -> str:
        return f"{META_GROUP}/{self.version}"


def _clauses(accept: str) -> list[tuple[float, int, str, dict[str, str]]]:
    clauses = []
    for index, part in enumerate(accept.split(",")):
        pieces = [p.strip() for p in part.split(";")]
        media = pieces[0].lower()
        if not media:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip()
        try:
            quality = float(params.pop("q", "1"))
        except ValueError:
            quality = 1.0
        clauses.append((-quality, index, media, params))
    return sorted(clauses)


def negotiate(accept: str, *, is_list: bool) -> Target:
    """The response form an Accept header asks for; ApiError 406 if none can be served."""
    if not accept.strip():
        return Target()
    for _q, _i, media, params in _clauses(accept):
        kind = params.get("as")
        if media not in SERVED and media not in ("*/*", "application/*"):
            continue
        if kind is None:
            return Target()
        if params.get("g") != META_GROUP or params.get("v") not in META_VERSIONS or kind not in TRANSFORMS:
            continue
        if kind == "Table" and media not in ("application/json", "application/yaml"):
            continue
        target = Target(kind, params["v"])
        if kind == "PartialObjectMetadata" and is_list:
            raise not_acceptable("you requested PartialObjectMetadata, but the requested object is a list "
                                 "(*unstructured.UnstructuredList)")
        if kind == "PartialObjectMetadataList" and not is_list:
            raise not_acceptable("you requested PartialObjectMetadataList, but the requested object is not a list "
                                 "(*unstructured.Unstructured)")
        return target
    raise not_acceptable("only the following media types are accepted: " + ", ".join(SERVED))


def not_acceptable(message: str) -> errors.ApiError:
    return errors.ApiError(406, "NotAcceptable", message)


def partial(obj: dict[str, Any], target: Target) -> dict[str, Any]:
    """meta.AsPartialObjectMetadata: the whole ObjectMeta, nothing else."""
    return {"kind": "PartialObjectMetadata", "apiVersion": target.api_version, "metadata": obj.get("metadata", {})}


def partial_list(items: list[dict[str, Any]], metadata: dict[str, Any], target: Target) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadataList", "apiVersion": target.api_version, "metadata": metadata,
            "items": [partial(item, target) for item in items]}
