"""`clone` is what every read and write of the simulated API server copies objects with: a change to the
copy, at any depth, must never reach the stored object (or the other way round)."""
from __future__ import annotations

import copy

from infra.simulator.apimachinery.jsontree import clone


def test_a_clone_equals_the_tree_and_shares_no_dict_or_list_with_it() -> None:
    stored = {"metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
              "spec": {"containers": [{"ports": [{"containerPort": 80}], "env": []}], "paused": False},
              "status": None, "data": {"n": 1.5, "big": 2**70, "empty": {}}}
    copied = clone(stored)
    assert copied == stored == copy.deepcopy(stored)

    def containers(value: object) -> list[int]:
        found = []
        if isinstance(value, dict):
            found.append(id(value))
            for item in value.values():
                found += containers(item)
        elif isinstance(value, list):
            found.append(id(value))
            for item in value:
                found += containers(item)
        return found

    assert not set(containers(copied)) & set(containers(stored))
    copied["spec"]["containers"][0]["ports"][0]["containerPort"] = 8080
    copied["metadata"]["finalizers"].append("y")
    assert stored["spec"]["containers"][0]["ports"][0]["containerPort"] == 80
    assert stored["metadata"]["finalizers"] == ["x"]
