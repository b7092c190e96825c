"""Would Harvester admit an upgrade? Ask its admission webhook without starting one.

A Version for the target is created (or an existing one reused; `releases.ensure_version`), then an Upgrade is created with
`dryRun=All`: the API server runs the admission chain, Harvester's `validator.harvesterhci.io`
included (it is registered with `sideEffects: None`), and stores nothing. On a real cluster no
upgrade starts. The Version this makes carries the run's label and is deleted by the cleanup stack.

The result says admitted or denied, with the exact text a client prints, the webhook's own text,
and the HTTP status and reason the webhook chose (BadRequest 400, Conflict 409, Invalid 422,
InternalError 500).
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

import tenacity

from infra.kube import ApiFailure, Kube, NotFound
from infra.waits.retry import is_api_unavailable

from infra.cleanup import CleanupStack
from infra.cluster import Release
from infra.waits.budget import Budget

from .names import HARVESTER, RUN_ID_LABEL, SYSTEM_NAMESPACE
from .releases import ensure_version

log = logging.getLogger("harvester_e2e.precheck")
Obj = dict[str, Any]

HARVESTER_WEBHOOK = "validator.harvesterhci.io"
UPGRADE_GENERATE_NAME = "hvst-upgrade-"           # what the UI uses (harvester-ui-extension)
_DENIAL = re.compile(r'^admission webhook "(?P<webhook>[^"]+)" denied the request(?:: (?P<text>.*))?$', re.S)


@dataclass(frozen=True)
class AdmissionResult:
    """The answer to "would this upgrade be admitted?"."""

    admitted: bool
    message: str = ""          # what a client prints: `admission webhook "..." denied the request: ...`
    denial: str = ""           # the webhook's own words (the part after the prefix)
    webhook: str = ""          # which webhook denied
    code: int = 201            # HTTP status of the dry-run create
    reason: str = ""           # Status reason: BadRequest, Conflict, Invalid, InternalError
    target: str = ""           # the Version name the Upgrade asked for
    details: Mapping[str, Any] = field(default_factory=dict)
    would_create: Obj | None = None   # the object the server returned for the dry run (admitted only)

    def summary(self) -> str:
        if self.admitted:
            return f"admitted: an upgrade to {self.target} passes admission (dry run, nothing created)"
        return f"denied ({self.reason} {self.code}): {self.message}"


def upgrade_manifest(version: str, run_id: str, *, namespace: str = SYSTEM_NAMESPACE,
                     annotations: Mapping[str, str] | None = None) -> Obj:
    """An Upgrade as the UI creates it (generateName `hvst-upgrade-`, spec.version), with the run's label."""
    meta: Obj = {"generateName": UPGRADE_GENERATE_NAME, "namespace": namespace, "labels": {RUN_ID_LABEL: run_id}}
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": HARVESTER, "kind": "Upgrade", "metadata": meta, "spec": {"version": version}}


def parse_denial(failure: ApiFailure) -> tuple[str, str] | None:
    """(webhook, its text) if the API server's message relays an admission webhook's denial."""
    match = _DENIAL.match(failure.message or "")
    if match is None:
        return None
    return match["webhook"], match["text"] or ""


def is_webhook_denial(exc: BaseException) -> bool:
    """An admission webhook said no: an answer, never a transient fault, whatever its HTTP code (often 500)."""
    body = getattr(exc, "body", None)
    if not body:
        return False
    try:
        message = json.loads(body).get("message", "")
    except (ValueError, TypeError, AttributeError):
        return False
    return bool(_DENIAL.match(message or ""))


def dry_run_upgrade(kube: Kube, version: str, run_id: str, *, namespace: str = SYSTEM_NAMESPACE,
                    annotations: Mapping[str, str] | None = None) -> AdmissionResult:
    """Create an Upgrade with dryRun=All and report what admission said. Nothing is stored."""
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError

    body = upgrade_manifest(version, run_id, namespace=namespace, annotations=annotations)
    resource = kube.resource(HARVESTER, "Upgrade")
    retrying = tenacity.Retrying(   # ride through outages, but a webhook's 500 is its answer, not an outage
        retry=tenacity.retry_if_exception(lambda e: is_api_unavailable(e) and not is_webhook_denial(e)),
        wait=tenacity.wait_exponential(multiplier=0.2, max=5.0),
        stop=tenacity.stop_after_delay(kube.unavailable_budget), reraise=True)
    try:
        created = retrying(resource.create, body=body, namespace=namespace, dry_run="All",
                           _request_timeout=kube.request_timeout)
    except (ApiException, DynamicApiError) as exc:
        failure = ApiFailure.from_exception(exc)
        denied = parse_denial(failure)
        if denied is None:
            if failure.status == 404:
                raise NotFound(failure.status, failure.reason, failure.message) from None
            raise failure from None
        details: Mapping[str, Any] = {}
        try:
            details = json.loads(getattr(exc, "body", "") or "{}").get("details") or {}
        except (ValueError, TypeError, AttributeError):
            pass
        result = AdmissionResult(False, failure.message, denied[1], denied[0], failure.status, failure.reason,
                                 version, details)
        log.info("upgrade to %s denied: %s", version, result.message)
        return result
    obj = created.to_dict() if hasattr(created, "to_dict") else dict(created)
    log.info("upgrade to %s admitted (dry run as %s)", version, obj.get("metadata", {}).get("name"))
    return AdmissionResult(True, target=version, would_create=obj)


def check_upgrade_admission(kube: Kube, target: Release, run_id: str, cleanup: CleanupStack, gone: Budget, *,
                            namespace: str = SYSTEM_NAMESPACE) -> AdmissionResult:
    """Would an upgrade to `target` be admitted now? Makes (or reuses) the Version, then a dry-run Upgrade."""
    ensure_version(kube, target, run_id, cleanup, gone, namespace=namespace)
    return dry_run_upgrade(kube, target.version, run_id, namespace=namespace, annotations=target.annotations)


# ---- expectations (what the Then steps assert; plain functions, so tests can prove their failures) ----

def render_expected(template: str, substitutions: Mapping[str, Any]) -> str:
    """Fill `{machine}`-style placeholders; an unknown one is a mistake in the scenario, said plainly."""
    try:
        return template.format(**substitutions)
    except (KeyError, IndexError) as exc:
        raise ValueError(f"the expected message {template!r} uses placeholder {exc}; known: "
                         f"{', '.join('{' + k + '}' for k in substitutions)}") from None


def expect_denied(result: AdmissionResult, reason: str, template: str, substitutions: Mapping[str, Any],
                  *, webhook: str = HARVESTER_WEBHOOK) -> str:
    """Assert the exact denial; returns the expected client message. AssertionError says what differs."""
    expected_text = render_expected(template, substitutions)
    expected = f'admission webhook "{webhook}" denied the request: {expected_text}'
    if result.admitted:
        raise AssertionError(f"expected the upgrade to {result.target} to be denied ({reason}) with "
                             f"{expected_text!r}, but admission accepted it")
    problems = []
    if result.message != expected:
        problems.append(f"message\n  expected: {expected}\n  actual:   {result.message}")
    if result.reason != reason:
        problems.append(f"reason: expected {reason}, actual {result.reason} (HTTP {result.code})")
    if problems:
        raise AssertionError("the upgrade was denied, but not as expected: " + "; ".join(problems))
    return expected


def expect_admitted(result: AdmissionResult, *, why: str = "") -> None:
    if not result.admitted:
        raise AssertionError(f"expected the upgrade to {result.target} to be admitted{why}, but it was denied "
                             f"({result.reason} {result.code}): {result.message}")
