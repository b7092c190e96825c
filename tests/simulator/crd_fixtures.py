"""Two test kinds that differ only in the status subresource, to test the rule both ways."""
from __future__ import annotations

from typing import Any


def test_crd(plural: str, kind: str, *, status_subresource: bool, scope: str = "Namespaced") -> dict[str, Any]:
    version: dict[str, Any] = {
        "name": "v1", "served": True, "storage": True,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": {
            "spec": {"type": "object", "properties": {
                "size": {"type": "integer"}, "color": {"type": "string", "enum": ["red", "blue"]},
                "tags": {"type": "array", "items": {"type": "string"}}}},
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}},
        "additionalPrinterColumns": [
            {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
            {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
            {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
    }
    if status_subresource:
        version["subresources"] = {"status": {}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.e2e.example.com"},
        "spec": {"group": "e2e.example.com", "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "shortNames": [plural[:3]]},
                 "versions": [version]},
    }


WIDGETS = test_crd("widgets", "Widget", status_subresource=True)
GADGETS = test_crd("gadgets", "Gadget", status_subresource=False)
