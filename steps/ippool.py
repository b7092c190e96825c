"""Steps about IPPools and load balancers, and the reusable "status is preserved" Then.

Objects are named in the feature file by aliases (pool, lb1); `scene` maps them to what the
scenario created. An edit path records what its outcome depends on (the dashboard's releases) as
scenario facts, so a known issue (ci/known-issues.yaml) is judged on the versions it affects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from pytest_bdd import given, parsers, then, when

from infra.cleanup import CleanupStack
from infra.cluster import Capability, Cluster
from infra.config import RunConfig
from infra.harvester import ippool
from infra.harvester.dashboard import RancherEndpoint
from infra.harvester.edits import EditOutcome, EditPath, ObjectRef, parse_path
from infra.harvester.status_compare import Snapshot, StatusNotPreserved, compare
from infra.kube import Kube
from infra.kube.kubectl import Kubectl, KubectlMissing
from infra.report.attach import attach_text, attach_yaml
from infra.report.facts import ScenarioFacts
from infra.waits.budget import Budget
from infra.waits.catalogue import Wait, budget

Obj = dict[str, Any]


@dataclass
class Scene:
    """What this scenario made, by the names the feature file gives them."""

    namespace: str = ""
    objects: dict[str, ObjectRef] = field(default_factory=dict)
    addresses: dict[str, ippool.LbAddress] = field(default_factory=dict)
    edits: list[EditOutcome] = field(default_factory=list)

    def ref(self, alias: str, kind: str | None = None) -> ObjectRef:
        found = self.objects.get(alias)
        assert found is not None, f"no object {alias!r} in this scenario (known: {', '.join(self.objects)})"
        assert kind is None or found.kind == kind, f"{alias} is a {found.kind}, not a {kind}"
        return found

    def last_edit(self, ref: ObjectRef, field_path: str | None = None, path: str | None = None) -> EditOutcome:
        for outcome in reversed(self.edits):
            if outcome.target == ref and field_path in (None, outcome.field) and path in (None, outcome.path):
                return outcome
        raise AssertionError(f"no edit of {field_path or 'any field'} of {ref} through {path or 'any path'} "
                             f"in this scenario")


@pytest.fixture
def scene() -> Scene:
    return Scene()


def _budget(run_config: RunConfig, what: str) -> Budget:
    return Budget(f"{what}: {budget(Wait.OBJECT_STATE, run_config).name}", budget(Wait.OBJECT_STATE, run_config).seconds)


def _rancher(cluster: Cluster) -> RancherEndpoint | None:
    """Where the dashboard saves: the Steve API of a Rancher that manages this cluster, else the embedded
    Rancher's at Harvester's VIP (the standalone UI); a cluster with neither gets the same body on the kube API."""
    managing = next((r for r in cluster.ranchers if r.cluster_id), None)
    if managing is not None:
        assert managing.cluster_id is not None
        return RancherEndpoint(managing.endpoint(), managing.cluster_id)
    vip = cluster.harvester_api
    if vip is None or vip.token is None:
        return None
    return RancherEndpoint(vip, "local")


def _edit_path(text: str, cluster: Cluster, facts: ScenarioFacts) -> EditPath:
    def kubectl() -> Kubectl:
        try:
            return Kubectl(cluster.kubeconfig, context=cluster.context)
        except KubectlMissing as missing:
            pytest.fail(f"{missing}; run `make setup` to install the project's kubectl", pytrace=False)

    path = parse_path(text, kubectl=kubectl, rancher=_rancher(cluster))
    for name, value in path.facts.items():
        facts.record(name, value)
    return path


def _record(scene: Scene, outcome: EditOutcome) -> EditOutcome:
    scene.edits.append(outcome)
    attach_text(f"edit of {outcome.field} through {outcome.path}", outcome.transcript)
    return outcome


# ---- Given ------------------------------------------------------------------------------------------

@given(parsers.parse("an IPPool {alias} with {size:d} addresses for load balancers in a new namespace"))
def pool_for_new_namespace(alias: str, size: int, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
                           run_config: RunConfig) -> None:
    kube, budget = cluster.kube(), _budget(run_config, "IPPool set-up")
    scene.namespace = scene.namespace or ippool.create_namespace(kube, cleanup, cluster.run_id, budget)
    scene.objects[alias] = _ready_pool(kube, cleanup, cluster, alias, ippool.namespace_scope(scene.namespace),
                                       budget, size)


@given(parsers.parse("another IPPool {alias} with {size:d} addresses"))
def another_pool(alias: str, size: int, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
                 run_config: RunConfig) -> None:
    scope = ippool.namespace_scope(f"{scene.namespace or cluster.run_id}-{alias}")
    scene.objects[alias] = _ready_pool(cluster.kube(), cleanup, cluster, alias, scope,
                                       _budget(run_config, "IPPool set-up"), size)


@given(parsers.parse("a global IPPool {alias}"))
def a_global_pool(alias: str, scene: Scene, cluster: Cluster, cleanup: CleanupStack, run_config: RunConfig) -> None:
    kube = cluster.kube()
    existing = ippool.global_pool(kube)
    scene.objects[alias] = existing or _ready_pool(kube, cleanup, cluster, alias, ippool.GLOBAL_SCOPE,
                                                   _budget(run_config, "IPPool set-up"), 8)


def _ready_pool(kube: Kube, cleanup: CleanupStack, cluster: Cluster, role: str, scope: list[Obj], budget: Budget,
                size: int) -> ObjectRef:
    cluster.require(Capability.LB_ADDRESSES, "creating a test IPPool")
    assert cluster.lb_addresses is not None
    ref = ippool.create_pool(kube, cleanup, cluster.run_id, role, {"scope": scope}, budget, cluster.lb_addresses, size)
    kube.wait_for(ref.api_version, ref.kind, ref.name, lambda o: ippool.PoolStatus.of(o or {}).ready == "True",
                  budget=budget, awaited=f"{ref} to be Ready")
    return ref


@given(parsers.parse("a pool-mode LoadBalancer {lb} holding an address from IPPool {pool}"))
def lb_holding_address(lb: str, pool: str, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
                       run_config: RunConfig) -> None:
    _allocate(lb, scene.ref(pool, "IPPool"), scene, cluster, cleanup, run_config, network="")


def _allocate(alias: str, pool: ObjectRef, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
              run_config: RunConfig, network: str) -> ippool.LbAddress:
    kube, budget = cluster.kube(), _budget(run_config, "load balancer address")
    ref = ippool.create_loadbalancer(kube, cleanup, cluster.run_id, scene.namespace, alias, budget, network=network)
    lb, address = ippool.wait_for_address(kube, ref, budget)
    attach_yaml(f"LoadBalancer {alias}", lb)
    assert address.pool == pool.name, f"{ref} got {address.ip} from IPPool {address.pool}, not from {pool.name}"
    log = ippool.controller_log(kube)
    assert ippool.allocation_logged(log, ref, address), \
        f"the load balancer controller's log has no 'lb {ref.namespace}/{ref.name} allocate ip {address.ip} " \
        f"from pool {address.pool}' line"
    scene.objects[alias], scene.addresses[alias] = ref, address
    return address


# ---- When -------------------------------------------------------------------------------------------

@when(parsers.parse("the {change} selector of IPPool {pool} is changed through {path}"))
def change_selector(change: str, pool: str, path: str, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
                    run_config: RunConfig, facts: ScenarioFacts) -> None:
    kube, what = cluster.kube(), ippool.SelectorChange.parse(change)
    network = ""
    if what is ippool.SelectorChange.NETWORK:
        network = ippool.create_vm_network(kube, cleanup, cluster.run_id, scene.namespace,
                                           _budget(run_config, "VM network"))

    def edit(obj: Obj) -> None:
        what.apply(obj["spec"].setdefault("selector", {}), namespace=scene.namespace, network=network)

    outcome = _record(scene, _edit_path(path, cluster, facts).edit(kube, scene.ref(pool), "spec.selector", edit))
    assert not outcome.refused, f"changing the {change} selector through {path} was refused: {outcome.refusal}"


@when(parsers.parse("the description of LoadBalancer {lb} is changed through {path}"))
def change_lb_description(lb: str, path: str, scene: Scene, cluster: Cluster, facts: ScenarioFacts) -> None:
    def edit(obj: Obj) -> None:
        obj["spec"]["description"] = "edited through the dashboard by harvester-e2e"

    outcome = _record(scene, _edit_path(path, cluster, facts).edit(
        cluster.kube(), scene.ref(lb, "LoadBalancer"), "spec.description", edit))
    assert not outcome.refused, f"changing the description through {path} was refused: {outcome.refusal}"


_BAD_EDITS: dict[str, Callable[[re.Match[str], Scene, Kube], Callable[[Obj], None]]] = {
    r"a range overlapping IPPool (?P<other>\S+)":
        lambda m, scene, kube: ippool.add_range_of(scene.ref(m["other"]).get(kube)),
    r"a range that leaves out the address of (?P<lb>\S+)":
        lambda m, scene, kube: ippool.leave_out(scene.addresses[m["lb"]].ip),
    r"a global scope":
        lambda m, scene, kube: ippool.make_global,
}


@when(parsers.parse("{bad_edit} is attempted on IPPool {pool} through {path}"))
def attempt_bad_edit(bad_edit: str, pool: str, path: str, scene: Scene, cluster: Cluster,
                     facts: ScenarioFacts) -> None:
    kube = cluster.kube()
    for pattern, make in _BAD_EDITS.items():
        if match := re.fullmatch(pattern, bad_edit):
            change = make(match, scene, kube)
            break
    else:
        raise ValueError(f"unknown bad edit {bad_edit!r}; known: {', '.join(_BAD_EDITS)}")
    _record(scene, _edit_path(path, cluster, facts).edit(kube, scene.ref(pool), "spec", change))


# ---- Then -------------------------------------------------------------------------------------------

@then(parsers.parse("the status of {kind} {alias} is preserved after editing {field_path} through {path}"))
def status_preserved(kind: str, alias: str, field_path: str, path: str, scene: Scene, cluster: Cluster) -> None:
    ref = scene.ref(alias, kind)
    outcome = scene.last_edit(ref, field_path, path)
    assert outcome.stored is not None, f"the edit through {path} was refused: {outcome.refusal}"
    before = Snapshot.of(outcome.before)
    as_stored = compare(before, Snapshot.of(outcome.stored))
    now = compare(before, Snapshot.of(ref.get(cluster.kube())))
    diff = f"{as_stored.report('as the edit stored it')}\n\n{now.report('now')}"
    attach_text(f"status diff of {ref}", diff)
    if not (as_stored.preserved and now.preserved):
        raise StatusNotPreserved(f"editing {field_path} of {ref} through {path} did not preserve its status:\n{diff}",
                                 evidence={"status before": outcome.before.get("status"),
                                           "status as stored": outcome.stored.get("status")})


@then(parsers.parse("IPPool {pool} is Ready with its allocations unchanged"))
def pool_ready_allocations_unchanged(pool: str, scene: Scene, cluster: Cluster) -> None:
    ref = scene.ref(pool, "IPPool")
    before = ippool.PoolStatus.of(scene.last_edit(ref).before)
    now = ippool.PoolStatus.of(ref.get(cluster.kube()))
    assert now.ready == "True", f"{ref} shows {now.shows} ({now.summary()})"
    assert now.allocated == before.allocated, \
        f"{ref} allocations changed: {before.allocated} before the edit, {now.allocated} now"


@then(parsers.parse("IPPool {pool} counts available as total minus allocated"))
def pool_counts_consistent(pool: str, scene: Scene, cluster: Cluster) -> None:
    ref = scene.ref(pool, "IPPool")
    now = ippool.PoolStatus.of(ref.get(cluster.kube()))
    problems = now.count_problems()
    assert not problems, f"{ref}: {'; '.join(problems)} ({now.summary()})"


@then(parsers.parse('the load balancer controller has logged no "is deleted" line for IPPool {pool}'))
def no_pool_removal_logged(pool: str, scene: Scene, cluster: Cluster) -> None:
    ref = scene.ref(pool, "IPPool")
    log = ippool.controller_log(cluster.kube())
    own = [(scene.objects[a], addr) for a, addr in scene.addresses.items()]
    assert own and all(ippool.allocation_logged(log, lb, addr) for lb, addr in own), \
        "the log read is not the controller's: it lacks this scenario's allocation lines"
    removals = ippool.pool_removal_lines(log, ref.name)
    assert not removals, f"the load balancer controller logged {ref} as removed:\n" + "\n".join(removals)


@then(parsers.parse("a second pool-mode LoadBalancer {lb} gets an address from IPPool {pool} that no other holds"))
def second_lb_gets_free_address(lb: str, pool: str, scene: Scene, cluster: Cluster, cleanup: CleanupStack,
                                run_config: RunConfig) -> None:
    ref = scene.ref(pool, "IPPool")
    held = dict(scene.addresses)
    network = ippool.requirement_network(ref.get(cluster.kube()))
    address = _allocate(lb, ref, scene, cluster, cleanup, run_config, network=network)
    holders = [other for other, a in held.items() if a.ip == address.ip]
    assert not holders, f"{lb} got {address.ip}, which {', '.join(holders)} already holds"


@then(parsers.parse("the edit is refused with: {expected}"))
def edit_refused(expected: str, scene: Scene) -> None:
    outcome = scene.edits[-1]
    wanted = _expected_message(expected, scene)
    assert outcome.refused, \
        f"the edit through {outcome.path} was accepted; expected a refusal matching {wanted.pattern}"
    assert wanted.search(outcome.refusal or ""), \
        f"refused with:\n  {outcome.refusal}\nexpected a message matching:\n  {wanted.pattern}"


_PLACEHOLDER = re.compile(r"\{(?P<alias>\w+)(?P<address> address)?\}|\.\.\.")


def _expected_message(text: str, scene: Scene) -> re.Pattern[str]:
    """`{alias}` is that object's name, `{alias address}` its load balancer address, `...` anything."""
    pattern, index = "", 0
    for match in _PLACEHOLDER.finditer(text):
        pattern += re.escape(text[index:match.start()])
        if match.group(0) == "...":
            pattern += ".*?"
        elif match["address"]:
            pattern += re.escape(scene.addresses[match["alias"]].ip)
        else:
            pattern += re.escape(scene.ref(match["alias"]).name)
        index = match.end()
    return re.compile(pattern + re.escape(text[index:]), re.DOTALL)


@then(parsers.parse("IPPool {pool} is unchanged"))
def pool_unchanged(pool: str, scene: Scene, cluster: Cluster) -> None:
    ref = scene.ref(pool, "IPPool")
    before = scene.last_edit(ref).before
    comparison = compare(Snapshot.of(before, section=""), Snapshot.of(ref.get(cluster.kube()), section=""))
    attach_text(f"{ref} before and after the refused edit", comparison.report("now"))
    assert comparison.preserved, comparison.report("now")
