"""PATCH bodies are applied the way kube-apiserver applies them."""
from __future__ import annotations

import copy
import json

import pytest

from infra.simulator.apimachinery.patch import (
    APPLY_PATCH_YAML,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_STRATEGIES,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_json_patch,
    apply_merge_patch,
    apply_patch,
    apply_strategic_merge_patch,
    patch_meta,
)


def names(items: list[dict]) -> list:
    return [item["name"] for item in items]


# --- RFC 7386 JSON merge patch ---------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_rfc7386_examples(target, patch, expected) -> None:
    assert apply_merge_patch(target, patch) == expected


def test_merge_patch_does_not_mutate_inputs() -> None:
    target = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    patch = {"metadata": {"labels": {"a": None, "c": {"x": 1}}}}
    before_target, before_patch = copy.deepcopy(target), copy.deepcopy(patch)
    result = apply_merge_patch(target, patch)
    assert result == {"metadata": {"labels": {"b": "2", "c": {"x": 1}}}}
    assert target == before_target and patch == before_patch
    result["metadata"]["labels"]["c"]["x"] = 2
    assert patch["metadata"]["labels"]["c"]["x"] == 1


# --- RFC 6902 JSON patch ---------------------------------------------------------------

DOC = {"metadata": {"name": "vm", "labels": {"a": "1"}}, "spec": {"replicas": 1, "disks": ["d0", "d1"]}}


def test_json_patch_operations() -> None:
    ops = [
        {"op": "add", "path": "/metadata/labels/b", "value": "2"},
        {"op": "add", "path": "/spec/disks/1", "value": "new"},
        {"op": "add", "path": "/spec/disks/-", "value": "last"},
        {"op": "remove", "path": "/spec/disks/0"},
        {"op": "replace", "path": "/spec/replicas", "value": 3},
        {"op": "copy", "from": "/metadata/name", "path": "/spec/hostname"},
        {"op": "move", "from": "/metadata/labels/a", "path": "/metadata/labels/moved"},
        {"op": "test", "path": "/spec/replicas", "value": 3.0},
        {"op": "add", "path": "/metadata/annotations", "value": {"x~y/z": "1"}},
        {"op": "replace", "path": "/metadata/annotations/x~0y~1z", "value": "2"},
    ]
    result = apply_json_patch(DOC, ops)
    assert result == {
        "metadata": {"name": "vm", "labels": {"b": "2", "moved": "1"}, "annotations": {"x~y/z": "2"}},
        "spec": {"replicas": 3, "disks": ["new", "d1", "last"], "hostname": "vm"},
    }
    assert DOC["spec"]["disks"] == ["d0", "d1"]  # input untouched


def test_json_patch_failed_test_is_422_and_names_the_path() -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_json_patch(DOC, [{"op": "test", "path": "/spec/replicas", "value": 2}])
    assert excinfo.value.code == 422
    assert "/spec/replicas" in excinfo.value.message and "test" in excinfo.value.message


def test_json_patch_test_distinguishes_booleans_from_numbers() -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_json_patch({"x": 1}, [{"op": "test", "path": "/x", "value": True}])
    assert excinfo.value.code == 422


@pytest.mark.parametrize(
    ("ops", "fragment"),
    [
        ([{"op": "replace", "path": "/spec/missing", "value": 1}], 'replace operation does not apply: doc is missing path: "/spec/missing"'),
        ([{"op": "remove", "path": "/metadata/labels/zzz"}], 'remove operation does not apply: doc is missing path: "/metadata/labels/zzz"'),
        ([{"op": "add", "path": "/nope/deeper", "value": 1}], 'add operation does not apply: doc is missing path: "/nope/deeper"'),
        ([{"op": "add", "path": "/spec/disks/5", "value": 1}], "out of bounds"),
        ([{"op": "add", "path": "/spec/disks/01", "value": 1}], "out of bounds"),
        ([{"op": "move", "from": "/spec", "path": "/spec/inner"}], "is inside"),
        ([{"op": "copy", "from": "/nope", "path": "/x"}], 'doc is missing from path: "/nope"'),
        ([{"op": "frobnicate", "path": "/x"}], "Unexpected kind: frobnicate"),
        ([{"op": "add", "value": 1}], 'missing the "path" field'),
        ([{"op": "add", "path": "/x"}], 'missing the "value" field'),
        ([{"op": "add", "path": "x", "value": 1}], 'must start with "/"'),
    ],
)
def test_json_patch_errors_are_422(ops: list, fragment: str) -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_json_patch(DOC, ops)
    assert excinfo.value.code == 422
    assert fragment in excinfo.value.message


def test_json_patch_malformed_bodies_are_400() -> None:
    for body in (b'{"op": "add"}', b"[1]", b"not json"):
        with pytest.raises(PatchError) as excinfo:
            apply_patch(DOC, body, JSON_PATCH, "Pod")
        assert excinfo.value.code == 400, body
    # A merge-style dict sent as JSON patch (what kubernetes-client picks by default) fails as in kube.
    with pytest.raises(PatchError) as excinfo:
        apply_patch(DOC, b'{"spec": {}}', JSON_PATCH, "Pod")
    assert excinfo.value.message == "json: cannot unmarshal object into Go value of type jsonpatch.Patch"


def test_json_patch_is_atomic() -> None:
    doc = {"a": 1}
    with pytest.raises(PatchError):
        apply_json_patch(doc, [{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 1}])
    assert doc == {"a": 1}


# --- strategic merge patch -------------------------------------------------------------

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "finalizers": ["a.example.com", "b.example.com"], "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "nginx:1.25",
                        "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                        "ports": [{"containerPort": 80, "name": "http"}],
                    },
                    {"name": "sidecar", "image": "busybox"},
                ],
                "tolerations": [{"key": "k1", "operator": "Exists"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
            }
        },
    },
}


def pod_spec(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def test_kubectl_apply_removes_container_with_set_element_order() -> None:
    # What kubectl apply sends after the sidecar was dropped from the manifest and the image bumped.
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "app"}],
                    "containers": [{"image": "nginx:1.26", "name": "app"}, {"$patch": "delete", "name": "sidecar"}],
                }
            }
        }
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    containers = pod_spec(result)["containers"]
    assert names(containers) == ["app"]
    assert containers[0]["image"] == "nginx:1.26"
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]  # merged, not replaced
    assert names(pod_spec(DEPLOYMENT)["containers"]) == ["app", "sidecar"]  # input untouched


def test_set_element_order_reorders_and_adds() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "init"}, {"name": "app"}],
                    "containers": [{"name": "init", "image": "alpine"}],
                }
            }
        }
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert names(pod_spec(result)["containers"]) == ["sidecar", "init", "app"]


def test_nested_lists_merge_by_their_own_keys() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "$setElementOrder/env": [{"name": "B"}, {"name": "C"}],
                            "env": [{"$patch": "delete", "name": "A"}, {"name": "C", "value": "3"}],
                            "ports": [{"containerPort": 80, "protocol": "TCP"}, {"containerPort": 443}],
                        }
                    ]
                }
            }
        }
    }
    app = pod_spec(apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment"))["containers"][0]
    assert app["env"] == [{"name": "B", "value": "2"}, {"name": "C", "value": "3"}]
    assert {p["containerPort"]: p for p in app["ports"]}[80] == {"containerPort": 80, "name": "http", "protocol": "TCP"}
    assert len(app["ports"]) == 2
    assert app["image"] == "nginx:1.25"


def test_new_element_without_order_directive_goes_first() -> None:
    # Hand-written SMP (no $setElementOrder): kube puts items unknown to the live list in front.
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "debug", "image": "busybox"}]}}}}
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert names(pod_spec(result)["containers"]) == ["debug", "app", "sidecar"]


def test_atomic_and_unknown_lists_are_replaced() -> None:
    patch = {"spec": {"template": {"spec": {"tolerations": [{"key": "k2", "operator": "Exists"}]}}}}
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert pod_spec(result)["tolerations"] == [{"key": "k2", "operator": "Exists"}]
    cm = {"kind": "ConfigMap", "data": {"a": "1"}, "extra": [1, 2]}
    assert apply_strategic_merge_patch(cm, {"extra": [3]}, "ConfigMap")["extra"] == [3]


def test_null_deletes_and_maps_merge() -> None:
    patch = {"metadata": {"labels": {"app": None, "tier": "fe"}}, "spec": {"replicas": None}}
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert result["metadata"]["labels"] == {"tier": "fe"}
    assert "replicas" not in result["spec"]
    assert result["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1}


def test_primitive_merge_list_union_and_delete_from_primitive_list() -> None:
    added = apply_strategic_merge_patch(DEPLOYMENT, {"metadata": {"finalizers": ["b.example.com", "c.example.com"]}}, "Deployment")
    assert added["metadata"]["finalizers"] == ["a.example.com", "b.example.com", "c.example.com"]
    patch = {
        "metadata": {
            "$setElementOrder/finalizers": ["b.example.com", "c.example.com"],
            "$deleteFromPrimitiveList/finalizers": ["a.example.com"],
            "finalizers": ["c.example.com"],
        }
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert result["metadata"]["finalizers"] == ["b.example.com", "c.example.com"]


def test_owner_references_merge_by_uid() -> None:
    obj = {"metadata": {"ownerReferences": [{"uid": "1", "kind": "A", "name": "a"}]}}
    patch = {"metadata": {"ownerReferences": [{"uid": "1", "controller": True}, {"uid": "2", "kind": "B", "name": "b"}]}}
    refs = apply_strategic_merge_patch(obj, patch, "Secret")["metadata"]["ownerReferences"]
    assert refs == [{"uid": "1", "kind": "A", "name": "a", "controller": True}, {"uid": "2", "kind": "B", "name": "b"}]


def test_retain_keys_switches_volume_source() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "volumes": [{"name": "data", "$retainKeys": ["hostPath", "name"], "hostPath": {"path": "/srv"}}]
                }
            }
        }
    }
    result = apply_strategic_merge_patch(DEPLOYMENT, patch, "Deployment")
    assert pod_spec(result)["volumes"] == [{"name": "data", "hostPath": {"path": "/srv"}}]


def test_retain_keys_must_cover_the_patch() -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_strategic_merge_patch(DEPLOYMENT, {"spec": {"strategy": {"$retainKeys": ["type"], "rollingUpdate": {}}}}, "Deployment")
    assert excinfo.value.code == 400
    assert "retainKeys" in excinfo.value.message


def test_replace_and_delete_directives() -> None:
    replaced = apply_strategic_merge_patch(
        DEPLOYMENT, {"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}, "Deployment"
    )
    assert replaced["spec"]["strategy"] == {"type": "Recreate"}
    emptied = apply_strategic_merge_patch(DEPLOYMENT, {"spec": {"strategy": {"$patch": "delete"}}}, "Deployment")
    assert emptied["spec"]["strategy"] == {}
    list_replaced = apply_strategic_merge_patch(
        DEPLOYMENT,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}, {"$patch": "replace"}]}}}},
        "Deployment",
    )
    assert pod_spec(list_replaced)["containers"] == [{"name": "only", "image": "x"}]


def test_invalid_directives_are_rejected() -> None:
    with pytest.raises(PatchError, match="unknown patch type: merge"):
        apply_strategic_merge_patch(DEPLOYMENT, {"spec": {"strategy": {"$patch": "merge"}}}, "Deployment")
    with pytest.raises(PatchError, match="does not contain declared merge key: name") as excinfo:
        apply_strategic_merge_patch(DEPLOYMENT, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}, "Deployment")
    assert excinfo.value.code == 422


def test_kind_tables() -> None:
    assert patch_meta("Pod", "spec.containers") == ("merge", "name")
    assert patch_meta("Pod", "spec.containers[].volumeDevices") == ("merge", "devicePath")
    assert patch_meta("DaemonSet", "spec.template.spec.volumes") == ("merge,retainKeys", "name")
    assert patch_meta("CronJob", "spec.jobTemplate.spec.template.spec.initContainers[].env") == ("merge", "name")
    assert patch_meta("Node", "status.addresses") == ("merge", "type")
    assert patch_meta("Service", "spec.ports") == ("merge", "port")
    assert patch_meta("Namespace", "status.conditions") == ("merge", "type")
    assert patch_meta("ConfigMap", "metadata.finalizers") == ("merge", None)
    assert patch_meta("ConfigMap", "data") == (None, None)
    for kind in ("Deployment", "DaemonSet", "StatefulSet", "ReplicaSet", "Job"):
        assert PATCH_STRATEGIES[kind]["spec.template.spec.containers[].ports"] == ("merge", "containerPort")


def test_node_status_conditions_merge_and_taints_replace() -> None:
    node = {
        "kind": "Node",
        "spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
        "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "DiskPressure", "status": "False"}]},
    }
    patch = {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    result = apply_strategic_merge_patch(node, patch, "Node")
    assert result["spec"]["taints"] == [{"key": "b", "effect": "NoExecute"}]
    assert {c["type"]: c["status"] for c in result["status"]["conditions"]} == {"Ready": "False", "DiskPressure": "False"}


def test_strategic_merge_patch_is_refused_for_custom_resources() -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_strategic_merge_patch({"spec": {}}, {"spec": {"a": 1}}, "VirtualMachine", custom=True)
    assert excinfo.value.code == 415
    assert excinfo.value.message.startswith("strategic merge patch format is not supported")
    with pytest.raises(PatchError) as excinfo:
        apply_patch({}, b"{}", STRATEGIC_MERGE_PATCH, "VirtualMachine", custom=True)
    assert excinfo.value.code == 415


# --- dispatch on Content-Type ----------------------------------------------------------


def test_apply_patch_dispatches_on_content_type() -> None:
    merge = apply_patch(DEPLOYMENT, b'{"metadata":{"labels":{"x":"y"}}}', MERGE_PATCH + "; charset=utf-8", "Deployment")
    assert merge["metadata"]["labels"] == {"app": "web", "x": "y"}
    # Merge patch replaces lists wholesale, strategic merges them.
    body = json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "v2"}]}}}}).encode()
    assert len(pod_spec(apply_patch(DEPLOYMENT, body, MERGE_PATCH, "Deployment"))["containers"]) == 1
    assert len(pod_spec(apply_patch(DEPLOYMENT, body, STRATEGIC_MERGE_PATCH, "Deployment"))["containers"]) == 2
    ops = apply_patch(DEPLOYMENT, b'[{"op":"replace","path":"/spec/replicas","value":5}]', JSON_PATCH, "Deployment")
    assert ops["spec"]["replicas"] == 5


def test_unknown_patch_type_is_415() -> None:
    with pytest.raises(PatchError) as excinfo:
        apply_patch({}, b"{}", "text/plain", "Pod")
    assert excinfo.value.code == 415
    assert excinfo.value.message.startswith('the server does not support the patch type "text/plain"')


def test_malformed_merge_bodies_are_400() -> None:
    for body, content_type in ((b"{", MERGE_PATCH), (b"[1]", MERGE_PATCH), (b"null", STRATEGIC_MERGE_PATCH)):
        with pytest.raises(PatchError) as excinfo:
            apply_patch({}, body, content_type, "Pod")
        assert excinfo.value.code == 400


def test_server_side_apply_yaml_merges_strategically() -> None:
    body = b"""
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    deployed-at: 2024-05-01T10:00:00Z
spec:
  template:
    spec:
      containers:
      - name: app
        image: nginx:1.27
"""
    result = apply_patch(DEPLOYMENT, body, APPLY_PATCH_YAML, "Deployment")
    assert result["metadata"]["annotations"] == {"deployed-at": "2024-05-01T10:00:00Z"}  # stays a string
    assert names(pod_spec(result)["containers"]) == ["app", "sidecar"]
    assert pod_spec(result)["containers"][0]["image"] == "nginx:1.27"


def test_server_side_apply_accepts_json_bodies() -> None:
    body = json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}}).encode()
    result = apply_patch({"kind": "ConfigMap", "data": {"a": "1"}}, body, APPLY_PATCH_YAML, "ConfigMap")
    assert result["data"] == {"a": "1", "k": "v"}


def test_server_side_apply_on_custom_resource_replaces_lists() -> None:
    live = {"apiVersion": "x/v1", "kind": "Thing", "spec": {"items": [1, 2], "keep": True}}
    result = apply_patch(live, b"spec:\n  items: [3]\n", APPLY_PATCH_YAML, "Thing", custom=True)
    assert result["spec"] == {"items": [3], "keep": True}
