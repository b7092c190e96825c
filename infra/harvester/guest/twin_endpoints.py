"""Calls to a simulated cluster's own endpoints (`/twin/v1/...`), over the same HTTPS + token as the API.

Only the simulated backend has them; on a real cluster the same facts come from elsewhere (a guest
kubeconfig given in the configuration, `kubectl exec` in a pod).
"""
from __future__ import annotations

import json
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError

from infra.kube import ApiFailure, Kube
from infra.waits.retry import retry_api_unavailable


def twin_call(kube: Kube, method: str, path: str, body: dict[str, Any] | None = None,
              *, unavailable_budget: float = 60.0) -> dict[str, Any]:
    """One request to a twin endpoint; 4xx/5xx answers become `ApiFailure` with the server's message."""
    try:
        response = retry_api_unavailable(unavailable_budget)(kube.dynamic.request, method.lower(), path, body=body,
                                                              serialize=False, _request_timeout=kube.request_timeout)
    except (ApiException, DynamicApiError) as exc:
        raise ApiFailure.from_exception(exc) from None
    return dict(json.loads(response.data or b"{}"))
