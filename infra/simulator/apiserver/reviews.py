"""Self-reviews the API server answers without storing anything (create-only kinds).

The simulator's bearer token stands for what RKE2's admin kubeconfig is: user `system:admin` in group
`system:masters`. kube-apiserver puts a privileged-groups authorizer first in its chain
(kubernetes pkg/kubeapiserver/authorizer/config.go, v1.32), which allows everything for that group with no
reason, and the RBAC authorizer's rules follow it in a rules review.
"""
from __future__ import annotations

import copy
from typing import Any

from . import errors
from .registry import ResourceType

USERNAME = "system:admin"
GROUPS = ["system:masters", "system:authenticated"]

_EVERYTHING = {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
_ALL_URLS = {"verbs": ["*"], "nonResourceURLs": ["*"]}
# RBAC's bootstrap roles bound to system:authenticated: basic-user, discovery, public-info-viewer.
_BASIC_USER = [{"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]},
               {"verbs": ["create"], "apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"]}]
_DISCOVERY_URLS = [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                                          "/openapi", "/openapi/*", "/readyz", "/version", "/version/"]},
                   {"verbs": ["get"], "nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"]}]


def review_types() -> list[ResourceType]:
    create = ("create",)
    return [
        ResourceType("authorization.k8s.io", ("v1",), "SelfSubjectAccessReview", "selfsubjectaccessreviews",
                     "selfsubjectaccessreview", False, verbs=create),
        ResourceType("authorization.k8s.io", ("v1",), "SelfSubjectRulesReview", "selfsubjectrulesreviews",
                     "selfsubjectrulesreview", False, verbs=create),
        ResourceType("authentication.k8s.io", ("v1",), "SelfSubjectReview", "selfsubjectreviews",
                     "selfsubjectreview", False, verbs=create),
    ]


REVIEW_KINDS = {(t.group, t.plural) for t in review_types()}


def is_review(rtype: ResourceType) -> bool:
    return (rtype.group, rtype.plural) in REVIEW_KINDS


def answer(rtype: ResourceType, body: dict[str, Any]) -> dict[str, Any]:
    """The review with its status filled in, as kube returns it (metadata.creationTimestamp null)."""
    review = copy.deepcopy(body)
    review["apiVersion"], review["kind"] = f"{rtype.group}/v1", rtype.kind
    review["metadata"] = {**(review.get("metadata") or {}), "creationTimestamp": None}
    spec = review.get("spec") or {}
    if rtype.plural == "selfsubjectaccessreviews":
        if not spec.get("resourceAttributes") and not spec.get("nonResourceAttributes"):
            raise errors.invalid(rtype.kind, "", ["spec.resourceAttributes: Invalid value: \"null\": exactly one of "
                                                  "nonResourceAttributes or resourceAttributes must be specified"],
                                 rtype.group)
        review["status"] = {"allowed": True}
    elif rtype.plural == "selfsubjectrulesreviews":
        if not spec.get("namespace"):
            raise errors.invalid(rtype.kind, "", ["spec.namespace: Required value"], rtype.group)
        review["status"] = {"resourceRules": [_EVERYTHING, *_BASIC_USER, _EVERYTHING],
                            "nonResourceRules": [_ALL_URLS, *_DISCOVERY_URLS, _ALL_URLS], "incomplete": False}
    else:
        review["status"] = {"userInfo": {"username": USERNAME, "groups": list(GROUPS)}}
    return review
