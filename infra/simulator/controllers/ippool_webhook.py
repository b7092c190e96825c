"""harvester-load-balancer-webhook for IPPools (load-balancer-harvester `pkg/webhook/ippool`).

Mutating: labels `loadbalancer.harvesterhci.io/vid` (the VLAN of `selector.network`'s NAD) and
`loadbalancer.harvesterhci.io/global-ip-pool`. Validating: ranges (empty, malformed, overlapping
each other or other pools), on update `allocated IP %s is excluded` checked against
`status.allocated` OF THE INCOMING OBJECT (so a write that dropped the status passes), the
selector (one global pool, distinct priorities, scope overlaps), and no delete while addresses are
allocated. Denials are plain errors, which the webhook framework answers as 500 InternalError.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..apiserver import errors
from ..apiserver.objects import AdmissionRequest, ObjectApi
from .ipam import (GLOBAL_POOL_LABEL, GROUP, VERSION, RangeError, RangeSet, Requirement, go_status,
                   is_global_pool, parse_ip, selector_matches)

if TYPE_CHECKING:
    from ..simulator import Simulator

WEBHOOK = "harvester-load-balancer-webhook"
VALIDATOR = f"validator.harvester-system.{WEBHOOK}"
MUTATOR = f"mutator.harvester-system.{WEBHOOK}"
VID_LABEL = f"{GROUP}/vid"
NAD_VLAN_LABEL = "network.harvesterhci.io/vlan-id"

Obj = dict[str, Any]


class Refusal(Exception):
    """A check failed; the text is upstream's, before the create/update prefix."""


def _deny(webhook: str, message: str) -> errors.ApiError:
    return errors.admission_denied(webhook, message, code=500, reason="InternalError")


def _prefix(operation: str, name: str, why: str) -> str:
    verb = "create" if operation == "CREATE" else "update"
    return f"can't {verb} IP pool {name} because {why}"


# ---- mutating ------------------------------------------------------------------------------------

def _vid(api: ObjectApi, network: str) -> int:
    if not network:
        return 0
    parts = network.split("/")
    if len(parts) != 2:
        raise Refusal(f"invalid network {network}")
    nads = api.lookup("k8s.cni.cncf.io", "v1", "network-attachment-definitions")
    nad = api.find(nads, parts[0], parts[1])
    if nad is None:
        raise Refusal(f'networkattachmentdefinition.k8s.cni.cncf.io "{parts[1]}" not found')
    vlan = (nad["metadata"].get("labels") or {}).get(NAD_VLAN_LABEL)
    if vlan is not None:
        try:
            return int(vlan)
        except ValueError:
            raise Refusal(f"invalid vlan {vlan}") from None
    try:
        return int(json.loads((nad.get("spec") or {}).get("config") or "{}").get("vlan") or 0)
    except (ValueError, AttributeError) as exc:
        raise Refusal(str(exc)) from None


def mutate(api: ObjectApi, request: AdmissionRequest) -> None:
    pool = request.object
    if request.operation not in ("CREATE", "UPDATE") or pool is None or pool["metadata"].get("deletionTimestamp"):
        return
    network = ((pool.get("spec") or {}).get("selector") or {}).get("network", "")
    try:
        vid = _vid(api, network)
    except Refusal as refusal:
        raise _deny(MUTATOR, _prefix(request.operation, pool["metadata"]["name"], str(refusal))) from None
    labels = pool["metadata"].setdefault("labels", {})
    labels[VID_LABEL] = str(vid)
    labels[GLOBAL_POOL_LABEL] = "true" if is_global_pool(pool) else "false"


# ---- validating ----------------------------------------------------------------------------------

def _other_pools(api: ObjectApi, name: str) -> list[Obj]:
    pools = api.lookup(GROUP, VERSION, "ippools")
    return [p for p in api.list(pools).items if p["metadata"]["name"] != name]


def _check_ranges(api: ObjectApi, pool: Obj) -> RangeSet:
    ranges = (pool.get("spec") or {}).get("ranges") or []
    if not ranges:
        raise Refusal("range can't be empty")
    try:
        mine = RangeSet.from_spec(ranges)
    except RangeError as exc:
        raise Refusal(str(exc)) from None
    for i, first in enumerate(mine.ranges):
        for second in mine.ranges[i + 1:]:
            if first.overlaps(second):
                raise Refusal(f"there are overlaps between range {first.go_repr()} and {second.go_repr()}")
    for other in _other_pools(api, pool["metadata"]["name"]):
        try:
            theirs = RangeSet.from_spec((other.get("spec") or {}).get("ranges"))
        except RangeError as exc:
            raise Refusal(str(exc)) from None
        if mine.overlaps(theirs):
            raise Refusal(f"the ranges {mine.go_repr()} overlap with other pools")
    return mine


def _check_allocated(ranges: RangeSet, pool: Obj) -> None:
    for ip_text in (go_status(pool.get("status")).get("allocated") or {}):
        ip = parse_ip(ip_text)
        if ip is None:
            raise Refusal(f"invalid ip string {ip_text}")
        if not ranges.contains(ip):
            raise Refusal(f"allocated IP {ip_text} is excluded")


def _selector_repr(selector: Obj) -> str:
    scope = " ".join(f"{{Project:{t.get('project', '')} Namespace:{t.get('namespace', '')} "
                     f"GuestCluster:{t.get('guestCluster', '')}}}" for t in selector.get("scope") or [])
    return f"{{Priority:{selector.get('priority', 0)} Network:{selector.get('network', '')} Scope:[{scope}]}}"


def _check_selector(api: ObjectApi, pool: Obj) -> None:
    name = pool["metadata"]["name"]
    selector = (pool.get("spec") or {}).get("selector") or {}
    if is_global_pool(pool):
        for other in _other_pools(api, name):
            if (other["metadata"].get("labels") or {}).get(GLOBAL_POOL_LABEL) == "true":
                raise Refusal(f"there is already a global IP pool: {other['metadata']['name']}")
        return
    scope = selector.get("scope") or []
    for i, entry in enumerate(scope):
        later = {"network": selector.get("network", ""), "scope": scope[i + 1:]}
        if selector_matches(later, _requirement(selector, entry)):
            raise Refusal(f"selector {_selector_repr(selector)} is invalid: scope overlaps")
    priority = int(selector.get("priority") or 0)
    for other in _other_pools(api, name):
        if is_global_pool(other):
            continue
        theirs = (other.get("spec") or {}).get("selector") or {}
        their_priority = int(theirs.get("priority") or 0)
        if their_priority != 0 and their_priority == priority:
            raise Refusal(f"the priority can't be the same as the pool {other['metadata']['name']}")
        if their_priority == 0 and priority == 0:
            for entry in scope:
                if selector_matches(theirs, _requirement(selector, entry)):
                    raise Refusal(
                        f"scope selector is same as the pool {other['metadata']['name']} with priority 0 "
                        f"Project {entry.get('project', '')} Namespace {entry.get('namespace', '')} "
                        f"GuestCluster {entry.get('guestCluster', '')}, set a different priority or scope")


def _requirement(selector: Obj, entry: Obj) -> Requirement:
    return Requirement(selector.get("network", ""), entry.get("project", ""), entry.get("namespace", ""),
                       entry.get("guestCluster", ""))


def validate(api: ObjectApi, request: AdmissionRequest) -> None:
    if request.operation == "DELETE":
        old = request.old_object or {}
        if go_status(old.get("status")).get("allocated"):
            raise _deny(VALIDATOR, "can't delete pool before releasing all the allocated IP")
        return
    pool = request.object
    if pool is None or (request.operation == "UPDATE" and pool["metadata"].get("deletionTimestamp")):
        return
    try:
        ranges = _check_ranges(api, pool)
        if request.operation == "UPDATE":
            _check_allocated(ranges, pool)
        _check_selector(api, pool)
    except Refusal as refusal:
        raise _deny(VALIDATOR, _prefix(request.operation, pool["metadata"]["name"], str(refusal))) from None


def install(simulator: "Simulator") -> None:
    api = simulator.api
    api.add_admission(GROUP, "ippools", lambda request: mutate(api, request), mutating=True)
    api.add_admission(GROUP, "ippools", lambda request: validate(api, request))

