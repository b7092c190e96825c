"""The status comparison: what counts as a change, what is ignored, and how the diff reads."""
from __future__ import annotations

import copy
from typing import Any

from infra.harvester.status_compare import MISSING, Snapshot, compare

POOL: dict[str, Any] = {
    "apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
    "metadata": {"name": "pool1", "resourceVersion": "10",
                 "finalizers": ["wrangler.cattle.io/harvester-ipam-controller"]},
    "spec": {"ranges": [{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.16", "rangeEnd": "198.51.100.23"}]},
    "status": {"total": 8, "available": 7, "lastAllocated": "198.51.100.16",
               "allocated": {"198.51.100.16": "default/lb1"},
               "conditions": [{"type": "Ready", "status": "True", "lastUpdateTime": "2025-03-27T08:00:00Z"}]},
}


def _with(**status_changes: object) -> dict[str, Any]:
    pool = copy.deepcopy(POOL)
    pool["metadata"]["resourceVersion"] = "11"
    pool["status"].update(status_changes)
    return pool


def test_an_untouched_status_is_preserved_even_when_timestamps_and_resource_version_move() -> None:
    after = _with(conditions=[{"type": "Ready", "status": "True", "lastUpdateTime": "2025-03-27T09:00:00Z"}])
    comparison = compare(Snapshot.of(POOL), Snapshot.of(after))
    assert comparison.preserved
    assert "no differences" in comparison.report()
    assert "lastUpdateTime" in comparison.report(), "the report says what it ignored"


def test_a_wiped_status_lists_every_field_it_lost() -> None:
    wiped = copy.deepcopy(POOL)
    del wiped["status"]
    comparison = compare(Snapshot.of(POOL), Snapshot.of(wiped))
    assert not comparison.preserved
    lines = comparison.report("as the edit stored it").splitlines()
    assert lines[0] == "status of IPPool pool1: before (rv 10) vs as the edit stored it (rv 10)"
    assert lines[1:] == [
        '  removed  status.allocated["198.51.100.16"]: "default/lb1"',
        "  removed  status.available: 7",
        '  removed  status.conditions[Ready].status: "True"',
        '  removed  status.lastAllocated: "198.51.100.16"',
        "  removed  status.total: 8",
    ]


def test_conditions_are_matched_by_type_so_reordering_is_no_change() -> None:
    before = _with(conditions=[{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "True"}])
    after = _with(conditions=[{"type": "Synced", "status": "True"}, {"type": "Ready", "status": "True"}])
    assert compare(Snapshot.of(before), Snapshot.of(after)).preserved


def test_a_changed_value_and_an_added_key_are_reported_with_both_sides() -> None:
    after = _with(available=-1, allocated={"198.51.100.16": "default/lb1", "198.51.100.17": "default/lb2"})
    after["status"]["conditions"] = [{"type": "Ready", "status": "False", "message": "boom"}]
    differences = {d.path: d for d in compare(Snapshot.of(POOL), Snapshot.of(after)).differences}
    assert differences["status.available"].change == "changed"
    assert str(differences["status.available"]) == "  changed  status.available: 7 -> -1"
    assert differences['status.allocated["198.51.100.17"]'].change == "added"
    assert differences["status.conditions[Ready].status"].after == "False"
    assert differences["status.conditions[Ready].message"].before is MISSING


def test_an_empty_status_is_not_the_same_as_no_status() -> None:
    empty, absent = copy.deepcopy(POOL), copy.deepcopy(POOL)
    empty["status"] = {}
    del absent["status"]
    comparison = compare(Snapshot.of(empty), Snapshot.of(absent))
    assert [str(d) for d in comparison.differences] == ["  removed  status: {}"]


def test_the_whole_object_can_be_compared_with_metadata_volatiles_ignored() -> None:
    after = copy.deepcopy(POOL)
    after["metadata"].update(resourceVersion="99", managedFields=[{"manager": "kubectl"}], generation=3)
    assert compare(Snapshot.of(POOL, section=""), Snapshot.of(after, section="")).preserved
    after["spec"]["ranges"][0]["rangeEnd"] = "198.51.100.20"
    differences = compare(Snapshot.of(POOL, section=""), Snapshot.of(after, section="")).differences
    assert [d.path for d in differences] == ["spec.ranges[0].rangeEnd"]


def test_list_items_without_a_type_are_compared_by_position() -> None:
    before = {"kind": "LoadBalancer", "metadata": {"name": "lb", "namespace": "ns"},
              "status": {"backendServers": ["10.0.0.1", "10.0.0.2"]}}
    after = copy.deepcopy(before)
    after["status"]["backendServers"] = ["10.0.0.1"]
    comparison = compare(Snapshot.of(before), Snapshot.of(after))
    assert [str(d) for d in comparison.differences] == ['  removed  status.backendServers[1]: "10.0.0.2"']
    assert comparison.report().startswith("status of LoadBalancer ns/lb:")
