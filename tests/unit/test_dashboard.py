"""What the dashboard's save sends, per Harvester UI extension release (docs/harvester-facts.md §4)."""
from __future__ import annotations

import copy

import pytest
from pydantic import SecretStr

from infra.harvester.dashboard import STEVE_NEVER_SAVE, DashboardRelease, RancherEndpoint, parse_release
from infra.harvester.edits import manifest_of, merge_patch, parse_path
from infra.https import Endpoint

POOL = {
    "apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
    "metadata": {
        "name": "pool1", "uid": "0b6c7e4e-1111-4a2b-9c3d-000000000001", "resourceVersion": "4711",
        "creationTimestamp": "2025-03-27T08:00:00Z", "generation": 3,
        "finalizers": ["wrangler.cattle.io/harvester-ipam-controller"],
        "managedFields": [{"manager": "harvester-load-balancer", "operation": "Update"}],
        "labels": {"loadbalancer.harvesterhci.io/vid": "0", "loadbalancer.harvesterhci.io/global-ip-pool": "false"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "kept"},
    },
    "spec": {"ranges": [{"subnet": "198.51.100.0/24"}], "selector": {"priority": 10}},
    "status": {"total": 253, "available": 252, "lastAllocated": "198.51.100.1",
               "allocated": {"198.51.100.1": "default/lb1"}, "conditions": [{"type": "Ready", "status": "True"}]},
}

RANCHER_2_10 = DashboardRelease("v2.10.3", "v1.0.4")
RANCHER_2_11 = DashboardRelease("v2.11.0", "v1.5.0-rc2")


def test_before_v1_5_0_rc2_the_put_body_leaves_out_status_and_the_fields_rancher_never_saves() -> None:
    body = RANCHER_2_10.body_for_save(POOL)
    assert "status" not in body
    meta = body["metadata"]
    for dropped in ("finalizers", "uid", "creationTimestamp", "generation", "managedFields"):
        assert dropped not in meta, dropped
    assert meta["resourceVersion"] == "4711", "Steve needs it: a stale save must be a 409, not an overwrite"
    assert meta["labels"] == POOL["metadata"]["labels"] and meta["annotations"] == POOL["metadata"]["annotations"]
    assert body["spec"] == POOL["spec"]
    assert POOL["status"]["total"] == 253, "the object passed in is not modified"


def test_from_v1_5_0_rc2_harvester_models_send_the_object_as_read() -> None:
    assert RANCHER_2_11.body_for_save(POOL) == POOL
    assert RANCHER_2_11.dropped(POOL) == []


def test_the_fix_is_in_v1_5_0_rc2_and_its_backport_in_v1_0_5_but_not_before() -> None:
    for ui in ("v1.0.0", "v1.0.4", "v1.5.0-rc1"):
        assert not DashboardRelease("v2.10.3", ui).keeps_status, ui
    for ui in ("v1.0.5", "v1.0.6", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.6.0"):
        assert DashboardRelease("v2.11.0", ui).keeps_status, ui


def test_the_report_names_what_the_save_dropped() -> None:
    assert RANCHER_2_10.dropped(POOL) == ["metadata.creationTimestamp", "metadata.finalizers", "metadata.generation",
                                          "metadata.managedFields", "metadata.uid", "status"]
    assert "metadata.resourceVersion" not in STEVE_NEVER_SAVE and "status" in STEVE_NEVER_SAVE


def test_the_dashboard_path_records_the_releases_known_issues_depend_on() -> None:
    path = parse_path("the dashboard at Rancher v2.10.3 with UI extension v1.0.4", kubectl=_no_kubectl)
    assert path.facts == {"rancher": "v2.10.3", "ui_extension": "v1.0.4"}
    assert parse_path("a merge patch", kubectl=_no_kubectl).facts == {}


def test_release_pairs_are_read_from_feature_text_and_typos_fail_early() -> None:
    assert parse_release("Rancher v2.10.3 with UI extension v1.0.4") == RANCHER_2_10
    assert str(RANCHER_2_11) == "Rancher v2.11.0 with UI extension v1.5.0-rc2"
    with pytest.raises(ValueError, match="expected 'Rancher vX.Y.Z with UI extension vA.B.C'"):
        parse_release("Rancher 2.10 and UI 1.0.4")
    with pytest.raises(ValueError, match="not a release version"):
        DashboardRelease("v2.10.3", "vone")


def test_the_edit_path_words_of_the_feature_files() -> None:
    path = parse_path("the dashboard at Rancher v2.10.3 with UI extension v1.0.4", kubectl=_no_kubectl)
    assert path.label == "the dashboard at Rancher v2.10.3 with UI extension v1.0.4"
    with pytest.raises(ValueError, match="unknown edit path"):
        parse_path("the API", kubectl=_no_kubectl)


def _no_kubectl() -> None:
    raise AssertionError("kubectl is not needed for this path")


def test_steve_requests_go_through_the_harvester_cluster_proxy() -> None:
    rancher = RancherEndpoint(Endpoint("https://rancher.example.test/", token=SecretStr("token-xyz")), "c-m-abc123")
    assert rancher.harvester_base() == "https://rancher.example.test/k8s/clusters/c-m-abc123/v1/harvester"
    assert "token-xyz" not in repr(rancher), "the token never shows in a repr (logs, reports)"


def test_a_merge_patch_carries_only_what_changed() -> None:
    before = {"metadata": {"labels": {"a": "1"}}, "spec": {"selector": {"priority": 10, "scope": [{"n": "x"}]}}}
    after = copy.deepcopy(before)
    after["spec"]["selector"]["scope"].append({"n": "y"})
    del after["spec"]["selector"]["priority"]
    assert merge_patch(before, after) == {"spec": {"selector": {"priority": None, "scope": [{"n": "x"}, {"n": "y"}]}}}


def test_a_kubectl_manifest_is_what_a_person_keeps_in_a_file() -> None:
    manifest = manifest_of(POOL)
    assert set(manifest) == {"apiVersion", "kind", "metadata", "spec"}
    assert manifest["metadata"] == {"name": "pool1", "labels": POOL["metadata"]["labels"],
                                    "annotations": {"note": "kept"}}
