"""Machines beside Nodes: the orphans the harness injects, and that every undo is registered first."""
from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from infra.cleanup import CleanupStack
from infra.harvester import machines as capi
from infra.harvester.names import MACHINE_ANNOTATION, RUN_ID_LABEL

RUN = "e2e-unit-1"
Obj = dict[str, Any]


def node(name: str, machine: str | None) -> Obj:
    annotations = {MACHINE_ANNOTATION: machine} if machine else {}
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"harvesterhci.io/managed": "true"}, "annotations": annotations},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def machine(name: str, node_name: str | None, phase: str | None = "Running") -> Obj:
    status: Obj = {}
    if phase:
        status["phase"] = phase
    if node_name:
        status["nodeRef"] = {"kind": "Node", "name": node_name}
    return {"apiVersion": capi.CAPI, "kind": "Machine", "metadata": {"name": name, "namespace": "fleet-local"},
            "spec": {"providerID": f"rke2://{node_name}"}, "status": status}


class FakeKube:
    """An in-memory Kube that writes every call into a shared log (the cleanup stack writes there too)."""

    def __init__(self, log: list[str], nodes: list[Obj], machines: list[Obj], *, fail_create: bool = False) -> None:
        self.log = log
        self.objects = {("Node", n["metadata"]["name"]): n for n in nodes}
        self.objects.update({("Machine", m["metadata"]["name"]): m for m in machines})
        self.fail_create = fail_create
        self.patches: list[tuple[str, str, Obj, str | None]] = []

    def list(self, api_version: str, kind: str, namespace: str | None = None, **_: Any) -> list[Obj]:
        return [copy.deepcopy(o) for (k, _n), o in sorted(self.objects.items()) if k == kind]

    def find(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> Obj | None:
        found = self.objects.get((kind, name))
        return copy.deepcopy(found) if found else None

    def create(self, obj: Obj, **_: Any) -> Obj:
        self.log.append(f"create {obj['kind']} {obj['metadata']['name']}")
        if self.fail_create:
            raise KeyboardInterrupt("interrupted while the create was in flight")
        self.objects[(obj["kind"], obj["metadata"]["name"])] = copy.deepcopy(obj)
        return obj

    def patch(self, api_version: str, kind: str, name: str, patch: Obj, *, namespace: str | None = None,
              subresource: str | None = None, **_: Any) -> Obj:
        self.log.append(f"patch {kind} {name}" + (f"/{subresource}" if subresource else ""))
        self.patches.append((kind, name, copy.deepcopy(patch), subresource))
        target = self.objects[(kind, name)]
        _merge(target, patch)
        return target

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        self.log.append(f"delete {kind} {name}")
        return self.objects.pop((kind, name), None) is not None

    def wait_for_gone(self, api_version: str, kind: str, name: str, **_: Any) -> None:
        assert (kind, name) not in self.objects


def _merge(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


class LoggingStack(CleanupStack):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def defer(self, description: str, action: Any) -> None:
        self.log.append(f"defer {description}")
        super().defer(description, action)


def healthy(log: list[str], **kw: Any) -> FakeKube:
    nodes = [node(f"n{i}", f"custom-00000000000{i}") for i in range(3)]
    machines = [machine(f"custom-00000000000{i}", f"n{i}") for i in range(3)]
    return FakeKube(log, nodes, machines, **kw)


# ---- the kinds and the fake Machine ---------------------------------------------------------------------

def test_each_kind_is_found_by_its_phrase_or_key_and_a_typo_lists_the_valid_phrases() -> None:
    for kind in capi.ORPHAN_KINDS:
        assert capi.orphan_kind(kind.phrase) is kind and capi.orphan_kind(kind.key) is kind
    with pytest.raises(ValueError) as caught:
        capi.orphan_kind("a Machine in Provisioning")
    assert '"a Machine stuck in Provisioning"' in str(caught.value)


def test_the_fake_machine_is_a_paused_local_cluster_machine_on_harv44_labelled_with_the_run() -> None:
    name = capi.fake_machine_name()
    assert re.fullmatch(r"custom-[0-9a-f]{12}", name)
    obj = capi.fake_machine(name, RUN)
    assert obj["apiVersion"] == "cluster.x-k8s.io/v1beta1" and obj["kind"] == "Machine"
    assert obj["metadata"]["namespace"] == "fleet-local" and obj["metadata"]["labels"][RUN_ID_LABEL] == RUN
    assert obj["metadata"]["annotations"]["cluster.x-k8s.io/paused"] == "true"
    assert obj["spec"]["providerID"] == "rke2://harv44" and obj["spec"]["clusterName"] == "local"
    assert obj["spec"]["infrastructureRef"]["kind"] == "CustomMachine"
    assert "status" not in obj


@pytest.mark.parametrize("key, status", [
    ("no-phase", None),
    ("provisioning", {"phase": "Provisioning"}),
    ("running-no-noderef", {"phase": "Running"}),
    ("noderef-missing-node", {"phase": "Running", "nodeRef": "harv44"}),
])
def test_the_status_of_each_kind(key: str, status: Obj | None) -> None:
    actual = capi.fake_machine_status(capi.orphan_kind(key))
    if status is None:
        assert actual is None
        return
    assert actual is not None and actual.get("phase") == status["phase"]
    assert (actual.get("nodeRef") or {}).get("name") == status.get("nodeRef")


# ---- undo first, then the change -------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["no-phase", "provisioning", "running-no-noderef", "noderef-missing-node"])
def test_the_removal_is_registered_before_the_machine_is_created(key: str) -> None:
    log: list[str] = []
    kube = healthy(log)
    stack = LoggingStack(log)
    injection = capi.inject_orphan(kube, key, RUN, stack, budget=None)
    assert log[0].startswith(f"defer delete fake Machine fleet-local/{injection.machine}")
    assert log[1] == f"create Machine {injection.machine}"
    assert (log[2:] == [f"patch Machine {injection.machine}/status"]) == (key != "no-phase")
    nodes, machines = kube.list("v1", "Node"), kube.list("", "Machine")
    assert capi.consistency_problems(nodes, machines), "the injection makes the cluster inconsistent"
    assert stack.run() == []
    assert ("Machine", injection.machine) not in kube.objects
    assert not capi.consistency_problems(kube.list("v1", "Node"), kube.list("", "Machine"))


def test_an_interrupt_during_the_create_still_leaves_the_removal_on_the_stack() -> None:
    log: list[str] = []
    kube = healthy(log, fail_create=True)
    stack = LoggingStack(log)
    with pytest.raises(KeyboardInterrupt):
        capi.inject_orphan(kube, "provisioning", RUN, stack, budget=None)
    assert len(stack) == 1
    assert stack.run() == [], "removing a Machine the create never made is a no-op, not a failure"


def test_only_a_machine_carrying_this_runs_label_is_removed() -> None:
    log: list[str] = []
    kube = healthy(log)
    with pytest.raises(RuntimeError, match="does not carry"):
        capi.remove_machine(kube, "custom-000000000000", RUN, budget=None)
    assert ("Machine", "custom-000000000000") in kube.objects


def test_a_node_is_pointed_at_a_missing_machine_and_restored_exactly() -> None:
    log: list[str] = []
    kube = healthy(log)
    before = copy.deepcopy(kube.objects[("Node", "n0")])
    stack = LoggingStack(log)
    injection = capi.inject_orphan(kube, "node-names-gone-machine", RUN, stack, budget=None)
    assert log[-2].startswith("defer restore Node n0") and log[-1] == "patch Node n0"
    assert injection.node == "n0" and injection.original_annotation == "custom-000000000000"
    tampered = kube.objects[("Node", "n0")]["metadata"]
    assert tampered["annotations"][MACHINE_ANNOTATION] == injection.machine
    assert injection.machine not in {m["metadata"]["name"] for m in kube.list("", "Machine")}
    assert tampered["labels"][RUN_ID_LABEL] == RUN, "the leak audit finds a Node left tampered"
    assert json.loads(tampered["annotations"][capi.ORIGINAL_ANNOTATION]) == "custom-000000000000"
    problems = capi.consistency_problems(kube.list("v1", "Node"), kube.list("", "Machine"))
    assert f"node n0 refers to machine {injection.machine}, which does not exist" in problems
    assert "MACHINE EXISTS" in capi.table(kube.list("v1", "Node"), kube.list("", "Machine"))
    injection.remove()
    injection.remove()                                   # idempotent
    assert stack.run() == []                             # and the stack's entry finds nothing left to do
    assert kube.objects[("Node", "n0")] == before
    assert log.count("patch Node n0") == 2


def test_a_node_without_the_annotation_gets_it_removed_again_on_restore() -> None:
    log: list[str] = []
    kube = FakeKube(log, [node("n0", None)], [])
    stack = CleanupStack()
    capi.inject_orphan(kube, "node-names-gone-machine", RUN, stack, budget=None)
    stack.run()
    assert MACHINE_ANNOTATION not in kube.objects[("Node", "n0")]["metadata"]["annotations"]


def test_substitutions_name_what_the_messages_mention() -> None:
    injection = capi.Injection(capi.orphan_kind("provisioning"), "custom-abcdefabcdef")
    assert injection.substitutions() == {"machine": "custom-abcdefabcdef", "node": "", "namespace": "fleet-local"}
    assert "custom-abcdefabcdef" in injection.describe() and "rke2://harv44" in injection.describe()


# ---- the table and the consistency check for each kind ------------------------------------------------------

def test_the_table_puts_machines_beside_nodes() -> None:
    nodes = [node("n0", "custom-000000000000"), node("n1", "custom-gone00000000")]
    machines = [machine("custom-000000000000", "n0"), machine("custom-abcdefabcdef", "harv44", None)]
    text = capi.table(nodes, machines)
    machine_part, node_part = text.split("\n\n")
    assert machine_part.splitlines()[0].split() == ["NAMESPACE", "MACHINE", "PHASE", "PROVIDERID", "NODEREF",
                                                    "NODE", "EXISTS"]
    assert re.search(r"custom-abcdefabcdef\s+<none>\s+rke2://harv44\s+harv44\s+NO$", machine_part, re.M)
    assert re.search(r"n1\s+True\s+custom-gone00000000\s+NO$", node_part, re.M)
    assert re.search(r"n0\s+True\s+custom-000000000000\s+yes$", node_part, re.M)


@pytest.mark.parametrize("extra, expected", [
    (machine("custom-x", None, None), "machine fleet-local/custom-x is not running (phase <none>)"),
    (machine("custom-x", None, "Provisioning"), "machine fleet-local/custom-x is not running (phase Provisioning)"),
    (machine("custom-x", None), "machine fleet-local/custom-x has no nodeRef"),
    (machine("custom-x", "harv44"), "machine fleet-local/custom-x refers to node harv44, which does not exist"),
])
def test_consistency_problems_name_each_kind_of_orphan(extra: Obj, expected: str) -> None:
    nodes = [node("n0", "custom-0")]
    problems = capi.consistency_problems(nodes, [machine("custom-0", "n0"), extra])
    assert expected in problems and "1 nodes but 2 machines" in problems
