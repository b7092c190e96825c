"""Label and field selectors behave like k8s.io/apimachinery's labels and fields packages."""
from __future__ import annotations

import pytest

from infra.simulator.apimachinery.selectors import (
    DEFAULT_FIELDS,
    EXTRA_FIELDS_BY_KIND,
    SelectorError,
    label_selector_from_spec,
    parse_field_selector,
    parse_label_selector,
    supported_field_labels,
)


# --- label selectors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", {"app": "web"}, True),
        ("app==web", {"app": "web"}, True),
        ("app=web", {"app": "db"}, False),
        ("app=web", {}, False),
        ("app!=web", {"app": "db"}, True),
        ("app!=web", {"app": "web"}, False),
        ("app!=web", {}, True),  # a missing key satisfies !=
        ("tier in (a,b)", {"tier": "b"}, True),
        ("tier in (a,b)", {"tier": "c"}, False),
        ("tier in (a,b)", {}, False),
        ("tier notin (a,b)", {"tier": "c"}, True),
        ("tier notin (a,b)", {"tier": "a"}, False),
        ("tier notin (a,b)", {}, True),  # a missing key satisfies notin
        ("tier", {"tier": ""}, True),
        ("tier", {"other": "x"}, False),
        ("!tier", {"other": "x"}, True),
        ("!tier", {"tier": "x"}, False),
        ("app=web,!canary,tier notin (db)", {"app": "web", "tier": "fe"}, True),
        ("app=web,!canary", {"app": "web", "canary": "true"}, False),
        ("replicas>2", {"replicas": "3"}, True),
        ("replicas>2", {"replicas": "2"}, False),
        ("replicas<2", {"replicas": "x"}, False),
        ("app=", {"app": ""}, True),
        ("app in ()", {"app": ""}, True),  # "()" is the set holding only the empty value
    ],
)
def test_label_selector_matching(text: str, labels: dict, expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_label_selector_selects_everything() -> None:
    selector = parse_label_selector("")
    assert selector.is_empty()
    assert selector.matches(None)
    assert selector.matches({"a": "b"})
    assert str(selector) == ""


def test_label_selector_is_whitespace_tolerant_and_canonical() -> None:
    selector = parse_label_selector("  zone notin ( b , a ) ,  !legacy,app = web ,  example.com/role ")
    # kube sorts requirements by key (ignoring the "!" prefix) and values alphabetically.
    assert str(selector) == "app=web,example.com/role,!legacy,zone notin (a,b)"
    assert selector.matches({"app": "web", "example.com/role": "x"})
    assert parse_label_selector(str(selector)) == selector


def test_keywords_are_plain_values_inside_value_positions() -> None:
    assert parse_label_selector("mode in (in,notin)").matches({"mode": "notin"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app in web", "unable to parse requirement: found 'web' expected: '('"),
        ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
        ("app=web extra", "found 'extra', expected: ',' or 'end of string'"),
        ("app=web,", "found '', expected: identifier after ','"),
        ("!app=web", "found '=', expected: ',' or 'end of string'"),
        ("=web", "found '=', expected: !, identifier, or 'end of string'"),
        ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("replicas>two", "unable to parse requirement: values[0]: Invalid value: \"two\": for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_label_selector_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_label_selector(text)
    assert str(excinfo.value) == message


def test_invalid_label_key_is_reported_like_kube() -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_label_selector("-bad=x")
    message = str(excinfo.value)
    assert message.startswith('unable to parse requirement: <nil>: Invalid value: "-bad": name part must consist of')
    assert "'MyName',  or 'my.name',  or '123-abc'" in message


def test_invalid_label_key_prefix_and_length() -> None:
    with pytest.raises(SelectorError, match="prefix part a lowercase RFC 1123 subdomain"):
        parse_label_selector("Example.COM/app")
    with pytest.raises(SelectorError, match="name part must be no more than 63 characters"):
        parse_label_selector("a" * 64)


def test_invalid_label_value_names_the_key() -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_label_selector("app=" + "v" * 64)
    assert "values[0][app]: Invalid value:" in str(excinfo.value)
    assert "must be no more than 63 characters" in str(excinfo.value)
    with pytest.raises(SelectorError, match=r"values\[0\]\[app\]: Invalid value: \"-x\""):
        parse_label_selector("app in (-x)")


def test_label_selector_from_spec() -> None:
    selector = label_selector_from_spec(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["fe", "be"]},
                {"key": "zone", "operator": "NotIn", "values": ["x"]},
                {"key": "team", "operator": "Exists"},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(selector) == "app=web,!legacy,team,tier in (be,fe),zone notin (x)"
    assert selector.matches({"app": "web", "tier": "fe", "team": "a"})
    assert not selector.matches({"app": "web", "tier": "fe", "team": "a", "zone": "x"})
    assert not selector.matches({"app": "web", "tier": "fe"})


def test_empty_and_nil_spec_selectors() -> None:
    assert label_selector_from_spec({}).matches({"any": "thing"})
    assert label_selector_from_spec(None).matches({"any": "thing"})
    nothing = label_selector_from_spec(None, nil_matches_nothing=True)
    assert not nothing.matches({})
    assert not nothing.matches({"any": "thing"})
    assert label_selector_from_spec({}, nil_matches_nothing=True).matches({})


def test_spec_selector_errors() -> None:
    with pytest.raises(SelectorError, match='"Gt" is not a valid label selector operator'):
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})
    with pytest.raises(SelectorError, match="values set can't be empty"):
        label_selector_from_spec({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})


# --- field selectors -----------------------------------------------------------------

POD = {
    "kind": "Pod",
    "metadata": {"name": "web-0", "namespace": "default"},
    "spec": {"nodeName": "node-1", "restartPolicy": "Always"},
    "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.7"}], "podIP": "10.0.0.7"},
}
POD_FIELDS = supported_field_labels("Pod")


def test_field_selector_equality_and_inequality() -> None:
    assert parse_field_selector("metadata.name=web-0", POD_FIELDS).matches(POD)
    assert parse_field_selector("metadata.name==web-0,metadata.namespace=default", POD_FIELDS).matches(POD)
    assert not parse_field_selector("metadata.namespace!=default", POD_FIELDS).matches(POD)
    assert parse_field_selector("status.phase!=Pending,spec.nodeName=node-1", POD_FIELDS).matches(POD)
    assert parse_field_selector("status.podIP=10.0.0.7", POD_FIELDS).matches(POD)


def test_missing_field_compares_as_empty_string() -> None:
    pending = {"metadata": {"name": "p"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", POD_FIELDS).matches(pending)
    assert not parse_field_selector("spec.nodeName!=", POD_FIELDS).matches(pending)
    assert parse_field_selector("spec.nodeName!=", POD_FIELDS).matches(POD)
    # Go bools render as "false" even when omitted from the JSON.
    assert parse_field_selector("spec.hostNetwork=false", POD_FIELDS).matches(pending)


def test_empty_field_selector_selects_everything() -> None:
    selector = parse_field_selector("", DEFAULT_FIELDS)
    assert selector.is_empty()
    assert selector.matches({"metadata": {"name": "x"}})


def test_unsupported_field_is_rejected() -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_field_selector("spec.foo=bar", POD_FIELDS)
    assert str(excinfo.value) == "field label not supported: spec.foo"
    with pytest.raises(SelectorError, match="field label not supported: spec.nodeName"):
        parse_field_selector("spec.nodeName=n1", DEFAULT_FIELDS)


def test_field_selector_escapes() -> None:
    obj = {"metadata": {"name": r"a,b=c\d"}}
    selector = parse_field_selector(r"metadata.name=a\,b\=c\\d", DEFAULT_FIELDS)
    assert selector.matches(obj)
    assert str(selector) == r"metadata.name=a\,b\=c\\d"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (r"metadata.name=a\x", r"invalid field selector: invalid escape sequence: \x"),
        ("metadata.name=a=b", "invalid field selector: unescaped character in value: 61"),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
    ],
)
def test_field_selector_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as excinfo:
        parse_field_selector(text, DEFAULT_FIELDS)
    assert str(excinfo.value) == message


def test_kind_specific_field_values() -> None:
    event = {
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "default"},
        "involvedObject": {"kind": "VirtualMachine", "name": "vm1", "namespace": "default"},
        "reason": "Started",
        "reportingComponent": "virt-controller",
        "type": "Normal",
    }
    event_fields = supported_field_labels("Event")
    # "source" falls back to reportingComponent when source.component is empty.
    assert parse_field_selector("source=virt-controller", event_fields).matches(event)
    assert parse_field_selector(
        "involvedObject.kind=VirtualMachine,involvedObject.name=vm1,type=Normal", event_fields
    ).matches(event)
    job = {"metadata": {"name": "j"}, "status": {"succeeded": 1}}
    assert parse_field_selector("status.successful=1", supported_field_labels("Job")).matches(job)
    node = {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}
    node_fields = supported_field_labels("Node", namespaced=False)
    assert parse_field_selector("spec.unschedulable=true", node_fields).matches(node)
    assert "metadata.namespace" not in node_fields
    secret = {"metadata": {"name": "s"}, "type": "kubernetes.io/tls"}
    assert parse_field_selector("type=kubernetes.io/tls", supported_field_labels("Secret")).matches(secret)


def test_field_tables() -> None:
    assert DEFAULT_FIELDS == ("metadata.name", "metadata.namespace")
    assert "status.nominatedNodeName" in EXTRA_FIELDS_BY_KIND["Pod"]
    assert "involvedObject.resourceVersion" in EXTRA_FIELDS_BY_KIND["Event"]
    assert EXTRA_FIELDS_BY_KIND["Secret"] == ("type",)
    assert EXTRA_FIELDS_BY_KIND["Namespace"] == ("status.phase",)
    assert EXTRA_FIELDS_BY_KIND["ReplicaSet"] == ("status.replicas",)
    assert supported_field_labels("ConfigMap") == DEFAULT_FIELDS


def test_trailing_newline_is_not_a_valid_label_value() -> None:
    # Go's "$" means end of text; a value ending in "\n" must be rejected.
    with pytest.raises(SelectorError):
        label_selector_from_spec({"matchLabels": {"app": "web\n"}})
