"""Custom resources are pruned, defaulted and validated like kube-apiserver does for CRDs."""
from __future__ import annotations

import copy

import pytest

from infra.simulator.apimachinery.schema import validate_custom_object

SCHEMA = {
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["ranges"],
            "properties": {
                "ipam": {"type": "string", "enum": ["pool", "dhcp"], "default": "pool"},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMaximum": True, "maximum": 1},
                "enabled": {"type": "boolean"},
                "name": {"type": "string", "minLength": 3, "maxLength": 8, "pattern": "^[a-z]+$"},
                "port": {"x-kubernetes-int-or-string": True},
                "note": {"type": "string", "nullable": True},
                "mode": {"type": "string"},
                "ranges": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 2,
                    "items": {
                        "type": "object",
                        "required": ["subnet"],
                        "properties": {
                            "subnet": {"type": "string"},
                            "gateway": {"type": "string", "default": "auto"},
                        },
                    },
                },
                "config": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": True,
                    "properties": {"strict": {"type": "object", "properties": {"a": {"type": "string"}}}},
                },
                "selector": {"type": "object", "additionalProperties": {"type": "string"}},
                "anything": {"type": "object", "additionalProperties": True},
                "template": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {"spec": {"type": "object"}}},
                "network": {
                    "type": "object",
                    "properties": {"mtu": {"type": "integer", "default": 1500}, "vlan": {"type": "integer"}},
                },
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "nics": {
                    "type": "array",
                    "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"],
                    "items": {"type": "object", "properties": {"name": {"type": "string"}}},
                },
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "phase": {"type": "string", "enum": ["Pending", "Ready"], "default": "Pending"},
                "observedGeneration": {"type": "integer"},
            },
        },
    },
}


def make(spec: dict | None = None, **extra) -> dict:
    obj = {"apiVersion": "network.example.io/v1", "kind": "Pool", "metadata": {"name": "p1", "namespace": "default"}}
    obj["spec"] = {"ranges": [{"subnet": "10.0.0.0/24"}]} if spec is None else spec
    obj.update(extra)
    return obj


def check(obj: dict, *, strict: bool = False) -> tuple[dict, list[str], list[str]]:
    return validate_custom_object(obj, SCHEMA, strict=strict)


def test_valid_object_is_defaulted_and_kept() -> None:
    obj = make()
    result, errors, unknown = check(obj)
    assert errors == [] and unknown == []
    assert result["spec"]["ipam"] == "pool"
    assert result["spec"]["ranges"] == [{"subnet": "10.0.0.0/24", "gateway": "auto"}]
    assert "status" not in result  # no object is created just to hold defaults
    assert "network" not in result["spec"]  # defaults only fill objects that exist
    assert obj["spec"] == {"ranges": [{"subnet": "10.0.0.0/24"}]}  # input untouched


def test_unknown_fields_are_pruned_and_reported() -> None:
    spec = {"ranges": [{"subnet": "s", "bogus": 1}], "foo": {"bar": 1}, "network": {"mtu": 9000, "jumbo": True}}
    result, errors, unknown = check(make(spec, extra="x"))
    assert errors == []
    assert unknown == [".extra", ".spec.foo", ".spec.network.jumbo", ".spec.ranges[0].bogus"]
    assert result["spec"]["network"] == {"mtu": 9000}
    assert result["spec"]["ranges"] == [{"subnet": "s", "gateway": "auto"}]
    assert "extra" not in result


def test_preserve_unknown_fields_subtree_is_kept_but_declared_parts_still_pruned() -> None:
    spec = {
        "ranges": [{"subnet": "s"}],
        "config": {"free": {"form": [1, {"deep": True}]}, "strict": {"a": "x", "unknown": 1}},
    }
    result, errors, unknown = check(make(spec))
    assert errors == []
    assert result["spec"]["config"] == {"free": {"form": [1, {"deep": True}]}, "strict": {"a": "x"}}
    assert unknown == [".spec.config.strict.unknown"]


def test_additional_properties_keep_arbitrary_keys() -> None:
    spec = {"ranges": [{"subnet": "s"}], "selector": {"app": "web", "tier": 3}, "anything": {"x": {"y": [1]}}}
    result, errors, unknown = check(make(spec))
    assert unknown == []
    assert result["spec"]["anything"] == {"x": {"y": [1]}}
    assert errors == ['spec.selector.tier: Invalid value: "integer": spec.selector.tier in body must be of type string: "integer"']


def test_metadata_is_not_pruned_by_the_schema_but_limited_to_object_meta() -> None:
    obj = make()
    obj["metadata"].update({"labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"], "bogus": 1})
    result, errors, unknown = check(obj)
    assert result["metadata"] == {
        "name": "p1", "namespace": "default", "labels": {"a": "b"}, "annotations": {"c": "d"}, "finalizers": ["f"],
    }
    assert unknown == [".metadata.bogus"]
    assert errors == []


def test_root_type_meta_survives_a_schema_that_does_not_declare_it() -> None:
    schema = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"a": {"type": "string"}}}}}
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "1", "b": 2}}
    result, errors, unknown = validate_custom_object(obj, schema)
    assert result == {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": "1"}}
    assert unknown == [".spec.b"] and errors == []


def test_embedded_resource_keeps_type_meta() -> None:
    spec = {"ranges": [{"subnet": "s"}], "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}, "junk": 1}}
    result, _, unknown = check(make(spec))
    assert result["spec"]["template"] == {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": {}}
    assert unknown == [".spec.template.junk"]


def test_error_messages_look_like_kube() -> None:
    spec = {"ipam": "foo", "replicas": "string"}
    _, errors, _ = check(make(spec))
    assert errors == [
        "spec.ranges: Required value",
        'spec.ipam: Unsupported value: "foo": supported values: "pool", "dhcp"',
        'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"',
    ]


@pytest.mark.parametrize(
    ("spec_update", "error"),
    [
        ({"replicas": 11}, "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"),
        ({"replicas": 0}, "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"),
        ({"replicas": 2.5}, 'spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number"'),
        ({"replicas": True}, 'spec.replicas: Invalid value: "boolean": spec.replicas in body must be of type integer: "boolean"'),
        ({"ratio": 1}, "spec.ratio: Invalid value: 1: spec.ratio in body should be less than 1"),
        ({"enabled": "true"}, 'spec.enabled: Invalid value: "string": spec.enabled in body must be of type boolean: "string"'),
        ({"name": "ab"}, 'spec.name: Invalid value: "ab": spec.name in body should be at least 3 chars long'),
        ({"name": "abcdefghij"}, "spec.name: Too long: may not be more than 8 bytes"),
        ({"name": "abc1"}, "spec.name: Invalid value: \"abc1\": spec.name in body should match '^[a-z]+$'"),
        ({"name": "abc\n"}, "spec.name: Invalid value: \"abc\\n\": spec.name in body should match '^[a-z]+$'"),
        ({"port": True}, 'spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean"'),
        ({"ranges": []}, "spec.ranges: Invalid value: []interface {}{}: spec.ranges in body should have at least 1 items"),
        ({"ranges": [{"subnet": "a"}] * 3}, "spec.ranges: Too many: 3: must have at most 2 items"),
        ({"ranges": [{"gateway": "g"}]}, "spec.ranges[0].subnet: Required value"),
        ({"tags": ["a", "b", "a"]}, 'spec.tags[2]: Duplicate value: "a"'),
        ({"nics": [{"name": "eth0"}, {"name": "eth0"}]}, 'spec.nics[1]: Duplicate value: map[string]interface {}{"name":"eth0"}'),
        ({"network": "wide"}, 'spec.network: Invalid value: "string": spec.network in body must be of type object: "string"'),
    ],
)
def test_value_validations(spec_update: dict, error: str) -> None:
    spec = {"ranges": [{"subnet": "s"}], **spec_update}
    _, errors, _ = check(make(spec))
    assert errors == [error]


@pytest.mark.parametrize("value", [3, 3.0, "http"])
def test_accepted_values(value) -> None:
    spec = {"ranges": [{"subnet": "s"}], "port": value, "replicas": 3 if value == "http" else value, "ratio": 0}
    _, errors, _ = check(make(spec))
    assert errors == []


def test_nulls_follow_kube_rules() -> None:
    spec = {"ranges": [{"subnet": "s"}], "note": None, "mode": None, "ipam": None}
    result, errors, unknown = check(make(spec))
    assert errors == [] and unknown == []
    assert result["spec"]["note"] is None  # nullable: kept
    assert "mode" not in result["spec"]  # non-nullable without default: dropped
    assert result["spec"]["ipam"] == "pool"  # non-nullable with default: defaulted
    _, errors, _ = check(make({"ranges": [None]}))
    assert errors == ['spec.ranges[0]: Invalid value: "null": spec.ranges[0] in body must be of type object: "null"']


def test_nested_defaults_apply_inside_present_parents() -> None:
    result, errors, _ = check(make({"ranges": [{"subnet": "a"}, {"subnet": "b", "gateway": "g"}], "network": {}}))
    assert errors == []
    assert result["spec"]["network"] == {"mtu": 1500}
    assert [r["gateway"] for r in result["spec"]["ranges"]] == ["auto", "g"]


def test_status_subtree_is_pruned_defaulted_and_validated() -> None:
    result, errors, unknown = check(make(status={"observedGeneration": 2, "junk": 1}))
    assert result["status"] == {"observedGeneration": 2, "phase": "Pending"}
    assert unknown == [".status.junk"] and errors == []
    _, errors, _ = check(make(status={"phase": "Broken"}))
    assert errors == ['status.phase: Unsupported value: "Broken": supported values: "Pending", "Ready"']


def test_strict_mode_reports_unknown_fields_as_errors() -> None:
    obj = make({"ranges": [{"subnet": "s"}], "foo": 1, "replicas": 0})
    result, errors, unknown = check(obj, strict=True)
    assert unknown == [".spec.foo"]
    assert errors == [
        'unknown field "spec.foo"',
        "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
    ]
    assert "foo" not in result["spec"]


def test_one_of_and_any_of_constraints() -> None:
    schema = {
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "oneOf": [{"required": ["dhcp"]}, {"required": ["static"]}],
                "properties": {"dhcp": {"type": "boolean"}, "static": {"type": "string"}},
            }
        },
    }
    assert validate_custom_object({"spec": {"dhcp": True}}, schema)[1] == []
    both = validate_custom_object({"spec": {"dhcp": True, "static": "1.2.3.4"}}, schema)[1]
    assert both == ['spec: Invalid value: "": spec must validate one and only one schema (oneOf)']


def test_input_is_never_mutated() -> None:
    obj = make({"ranges": [{"subnet": "s", "x": 1}], "foo": 1}, status={"junk": 1})
    snapshot = copy.deepcopy(obj)
    check(obj)
    assert obj == snapshot
