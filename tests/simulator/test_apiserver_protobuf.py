"""Protobuf request bodies: kube's envelope decoded into the JSON object kube would store.

The decoder is checked on a schema built here (no kubectl needed), then end to end: real kubectl 1.32 and 1.33
write built-in kinds as `application/vnd.kubernetes.protobuf`, and what the simulator stores must equal what the same
command stores when sent as JSON.
"""
from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from infra.simulator.apimachinery import protobuf
from infra.simulator.apiserver import errors, server

from .apiserver_support import comparable, get_json, kubectl_binary, kubectl_for, make_schema, proto_simulator  # noqa: F401

F = descriptor_pb2.FieldDescriptorProto
META, RUNTIME = "k8s.io.apimachinery.pkg.apis.meta.v1", "k8s.io.apimachinery.pkg.runtime"


def _message(file: Any, name: str, fields: list[tuple[str, int, int, str | None, bool]]) -> Any:
    message = file.message_type.add(name=name)
    for field_name, number, kind, type_name, repeated in fields:
        field = message.field.add(name=field_name, number=number, type=kind,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
    return message


def hand_built_schema() -> bytes:
    """A few messages shaped like kube's generated.proto files, including every special type."""
    s = descriptor_pb2.FileDescriptorSet()
    runtime = s.file.add(name="k8s.io/apimachinery/pkg/runtime/generated.proto", package=RUNTIME, syntax="proto2")
    _message(runtime, "TypeMeta", [("apiVersion", 1, F.TYPE_STRING, None, False), ("kind", 2, F.TYPE_STRING, None, False)])
    _message(runtime, "Unknown", [("typeMeta", 1, F.TYPE_MESSAGE, f".{RUNTIME}.TypeMeta", False),
                                  ("raw", 2, F.TYPE_BYTES, None, False),
                                  ("contentEncoding", 3, F.TYPE_STRING, None, False),
                                  ("contentType", 4, F.TYPE_STRING, None, False)])
    _message(runtime, "RawExtension", [("raw", 1, F.TYPE_BYTES, None, False)])
    intstr = s.file.add(name="k8s.io/apimachinery/pkg/util/intstr/generated.proto",
                        package="k8s.io.apimachinery.pkg.util.intstr", syntax="proto2")
    _message(intstr, "IntOrString", [("type", 1, F.TYPE_INT64, None, False), ("intVal", 2, F.TYPE_INT32, None, False),
                                     ("strVal", 3, F.TYPE_STRING, None, False)])
    resource = s.file.add(name="k8s.io/apimachinery/pkg/api/resource/generated.proto",
                          package="k8s.io.apimachinery.pkg.api.resource", syntax="proto2")
    _message(resource, "Quantity", [("string", 1, F.TYPE_STRING, None, False)])
    meta = s.file.add(name="k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto", package=META, syntax="proto2")
    for name in ("Time", "MicroTime"):
        _message(meta, name, [("seconds", 1, F.TYPE_INT64, None, False), ("nanos", 2, F.TYPE_INT32, None, False)])
    _message(meta, "Duration", [("duration", 1, F.TYPE_INT64, None, False)])
    _message(meta, "FieldsV1", [("Raw", 1, F.TYPE_BYTES, None, False)])
    _message(meta, "Verbs", [("items", 1, F.TYPE_STRING, None, True)])
    object_meta = _message(meta, "ObjectMeta", [("name", 1, F.TYPE_STRING, None, False),
                                                ("generateName", 2, F.TYPE_STRING, None, False),
                                                ("namespace", 3, F.TYPE_STRING, None, False),
                                                ("creationTimestamp", 8, F.TYPE_MESSAGE, f".{META}.Time", False)])
    _add_map(object_meta, "labels", 11, F.TYPE_STRING, None, f".{META}.ObjectMeta")
    core = s.file.add(name="k8s.io/api/core/v1/generated.proto", package="k8s.io.api.core.v1", syntax="proto2",
                      dependency=[runtime.name, intstr.name, resource.name, meta.name])
    _message(core, "Source", [("path", 1, F.TYPE_STRING, None, False)])
    widget = _message(core, "Widget", [
        ("metadata", 1, F.TYPE_MESSAGE, f".{META}.ObjectMeta", False),
        ("when", 2, F.TYPE_MESSAGE, f".{META}.Time", False),
        ("micro", 3, F.TYPE_MESSAGE, f".{META}.MicroTime", False),
        ("timeout", 4, F.TYPE_MESSAGE, f".{META}.Duration", False),
        ("port", 5, F.TYPE_MESSAGE, ".k8s.io.apimachinery.pkg.util.intstr.IntOrString", False),
        ("size", 6, F.TYPE_MESSAGE, ".k8s.io.apimachinery.pkg.api.resource.Quantity", False),
        ("blob", 8, F.TYPE_BYTES, None, False),
        ("raw", 9, F.TYPE_MESSAGE, f".{RUNTIME}.RawExtension", False),
        ("tags", 10, F.TYPE_STRING, None, True),
        ("replicas", 11, F.TYPE_INT32, None, False),
        ("paused", 12, F.TYPE_BOOL, None, False),
        ("name", 13, F.TYPE_STRING, None, False),
        ("fields", 14, F.TYPE_MESSAGE, f".{META}.FieldsV1", False),
        ("verbs", 15, F.TYPE_MESSAGE, f".{META}.Verbs", False),
        ("source", 16, F.TYPE_MESSAGE, ".k8s.io.api.core.v1.Source", False),
        ("named", 17, F.TYPE_STRING, None, False),
    ])
    _add_map(widget, "limits", 7, F.TYPE_MESSAGE, ".k8s.io.apimachinery.pkg.api.resource.Quantity",
             ".k8s.io.api.core.v1.Widget")
    return s.SerializeToString()


def _add_map(message: Any, field_name: str, number: int, value_kind: int, value_type: str | None,
             owner: str) -> None:
    entry_name = field_name[0].upper() + field_name[1:] + "Entry"
    entry = message.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    value = entry.field.add(name="value", number=2, type=value_kind, label=F.LABEL_OPTIONAL)
    if value_type:
        value.type_name = value_type
    message.field.add(name=field_name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_REPEATED,
                      type_name=f"{owner}.{entry_name}")


def _fact(json_name: str, *, omitempty: bool = True, pointer: bool = False, inline: bool = False) -> dict[str, Any]:
    return {"json": json_name, "omitempty": omitempty, "pointer": pointer, "inline": inline}


# What kubectl's Go types say of these fields: replicas is a pointer, name has no omitempty, source is inlined.
FACTS = {
    "k8s.io.api.core.v1.Widget": {"1": _fact("metadata"), "11": _fact("replicas", pointer=True),
                                  "12": _fact("paused"), "13": _fact("name", omitempty=False),
                                  "16": _fact("", inline=True), "17": _fact("renamed")},
    f"{META}.ObjectMeta": {"1": _fact("name"), "2": _fact("generateName"), "3": _fact("namespace"),
                           "8": _fact("creationTimestamp"), "11": _fact("labels")},
}


def test_decoder_reads_an_envelope_written_by_the_protobuf_library() -> None:
    raw = hand_built_schema()
    schema = protobuf.KubeProtobuf(raw, FACTS)
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_pb2.FileDescriptorSet.FromString(raw).file:
        pool.Add(file)
    cls = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))  # noqa: E731
    widget = cls("k8s.io.api.core.v1.Widget")()
    widget.metadata.name = "w1"
    widget.metadata.generateName = ""            # gogo writes empty non-pointer strings: omitempty drops them
    widget.metadata.labels["app"] = "x"
    widget.metadata.creationTimestamp.SetInParent()   # the zero Time goes on the wire as an empty message
    widget.when.seconds = 1700000000
    widget.micro.seconds, widget.micro.nanos = 1700000000, 123456789
    widget.timeout.duration = 90 * 10**9 + 500 * 10**6
    widget.port.type, widget.port.strVal = 1, "http"
    widget.size.string = "10Gi"
    widget.limits["cpu"].string = "500m"
    widget.blob = b"\x00\xffbin"
    widget.raw.raw = b'{"a":[1,2]}'
    widget.tags.extend(["a", "b"])
    widget.replicas = 0                           # a pointer set to zero stays
    widget.paused = False                         # a non-pointer false with omitempty goes
    widget.name = ""                              # no omitempty: stays, empty
    widget.fields.Raw = b'{"f:data":{}}'
    widget.verbs.items.extend(["get", "list"])
    widget.source.path = "/x"
    widget.named = "n"
    unknown = cls(f"{RUNTIME}.Unknown")()
    unknown.typeMeta.apiVersion, unknown.typeMeta.kind = "v1", "Widget"
    unknown.raw = widget.SerializeToString()
    decoded = schema.decode(b"k8s\x00" + unknown.SerializeToString())
    assert decoded == {
        "kind": "Widget", "apiVersion": "v1",
        "metadata": {"name": "w1", "labels": {"app": "x"}, "creationTimestamp": None},
        "when": "2023-11-14T22:13:20Z",
        "micro": "2023-11-14T22:13:20.123456Z",
        "timeout": "1m30.5s",
        "port": "http",
        "size": "10Gi",
        "limits": {"cpu": "500m"},
        "blob": base64.b64encode(b"\x00\xffbin").decode(),
        "raw": {"a": [1, 2]},
        "tags": ["a", "b"],
        "replicas": 0,
        "name": "",
        "fields": {"f:data": {}},
        "verbs": ["get", "list"],
        "path": "/x",
        "renamed": "n",
    }
    # And back: what the encoder writes decodes to the same object.
    assert schema.decode(schema.encode(decoded)) == decoded


def test_decoder_refuses_a_body_without_the_magic_number() -> None:
    schema = protobuf.KubeProtobuf(hand_built_schema(), FACTS)
    with pytest.raises(protobuf.ProtobufError, match="magic"):
        schema.decode(b'{"kind":"Widget"}')


@pytest.mark.parametrize("nanos,text", [(0, "0s"), (1500, "1.5µs"), (150 * 10**6, "150ms"),
                                        (3723 * 10**9, "1h2m3s"), (-2 * 10**9, "-2s")])
def test_durations_print_as_go_does(nanos: int, text: str) -> None:
    assert protobuf.go_duration(nanos) == text
    assert protobuf.parse_go_duration(text) == nanos


class _Body:
    """The two things `_read_body` reads of a request."""

    def __init__(self, content_type: str, body: bytes) -> None:
        self.headers = {"Content-Type": content_type}
        self._body = body

    async def read(self) -> bytes:
        return self._body


def test_without_a_schema_protobuf_gets_415_saying_how_to_make_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    monkeypatch.setattr(server, "_PROTOBUF_SCHEMA", [None])
    with pytest.raises(errors.ApiError) as caught:
        asyncio.run(server._read_body(_Body(protobuf.MEDIA_TYPE, b"k8s\x00")))  # type: ignore[arg-type]
    assert caught.value.code == 415 and caught.value.reason == "UnsupportedMediaType"
    assert "protobuf schema" in caught.value.message and "protobuf extract --kubectl" in caught.value.message


def test_the_extractor_finds_every_api_group_in_kubectl(tmp_path: Path) -> None:
    out = make_schema(tmp_path)
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    names = {f.name for f in files}
    assert {"k8s.io/api/core/v1/generated.proto", "k8s.io/api/apps/v1/generated.proto",
            "k8s.io/apimachinery/pkg/apis/meta/v1/generated.proto",
            "k8s.io/apimachinery/pkg/runtime/generated.proto"} <= names
    facts = json.loads(protobuf.facts_path(out).read_text())["messages"]
    run_as_user = next(f for f in facts["k8s.io.api.core.v1.SecurityContext"].values() if f["json"] == "runAsUser")
    assert run_as_user["pointer"] and run_as_user["omitempty"]
    volume_source = facts["k8s.io.api.core.v1.Volume"]["2"]
    assert volume_source["inline"], "Volume inlines its VolumeSource in JSON"


# --- end to end with real kubectl ---------------------------------------------------------------------

CREATES = {
    "namespace": (["create", "namespace", "{name}"], ["namespace", "{name}"]),
    "configmap": (["create", "configmap", "{name}", "-n", "{ns}", "--from-literal=a=1", "--from-literal=b=two"],
                  ["configmap", "{name}", "-n", "{ns}"]),
    "secret": (["create", "secret", "generic", "{name}", "-n", "{ns}", "--from-literal=password=s3cr3t"],
               ["secret", "{name}", "-n", "{ns}"]),
    "deployment": (["create", "deployment", "{name}", "-n", "{ns}", "--image=nginx:1.25", "--replicas=2",
                    "--port=80"], ["deployment", "{name}", "-n", "{ns}"]),
    "service": (["create", "service", "clusterip", "{name}", "-n", "{ns}", "--tcp=80:8080"],
                ["service", "{name}", "-n", "{ns}"]),
}


def _fill(words: list[str], **values: str) -> list[str]:
    return [w.format(**values) for w in words]


@pytest.mark.kubectl
@pytest.mark.parametrize("minor", [32, 33])
@pytest.mark.parametrize("what", sorted(CREATES))
def test_kubectl_protobuf_create_stores_what_json_stores(proto_simulator, what: str, minor: int) -> None:  # noqa: ANN001, F811
    kubectl = kubectl_for(proto_simulator, minor)
    ns = f"pb-{what}-{minor}"
    if what != "namespace":
        kubectl("create", "namespace", ns, check=False)
    create, get = CREATES[what]
    via_proto, via_json = f"{what}-pb-{minor}", f"{what}-js-{minor}"
    sent = kubectl(*_fill(create, name=via_proto, ns=ns), "-v=8")
    assert "Content-Type: application/vnd.kubernetes.protobuf" in sent.stderr, "kubectl wrote JSON, not protobuf"
    manifest = kubectl(*_fill(create, name=via_json, ns=ns), "--dry-run=client", "-o", "json").stdout
    kubectl("create", "-f", "-", input=manifest)       # kubectl sends a manifest from a file as JSON
    stored_proto = get_json(kubectl, *_fill(get, name=via_proto, ns=ns))
    stored_json = get_json(kubectl, *_fill(get, name=via_json, ns=ns))
    assert comparable(stored_proto, via_proto) == comparable(stored_json, via_json)


@pytest.mark.kubectl
@pytest.mark.parametrize("minor", [32, 33])
def test_kubectl_replace_label_annotate_after_protobuf_creates(proto_simulator, minor: int) -> None:  # noqa: ANN001, F811
    kubectl = kubectl_for(proto_simulator, minor)
    ns = f"pb-edit-{minor}"
    kubectl("create", "namespace", ns, check=False)
    kubectl("create", "configmap", "cfg", "-n", ns, "--from-literal=a=1")
    kubectl("create", "deployment", "web", "-n", ns, "--image=nginx:1.25")
    live = get_json(kubectl, "configmap", "cfg", "-n", ns)
    live["data"] = {"a": "2", "c": "3"}
    kubectl("replace", "-f", "-", input=yaml.safe_dump(live))     # manifests from files go as JSON
    deployment = get_json(kubectl, "deployment", "web", "-n", ns)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["securityContext"] = {"runAsUser": 0, "allowPrivilegeEscalation": False, "privileged": False}
    kubectl("replace", "-f", "-", input=json.dumps(deployment))
    kubectl("label", "configmap", "cfg", "-n", ns, "tier=web")
    kubectl("annotate", "configmap", "cfg", "-n", ns, "note=kept")
    stored = get_json(kubectl, "configmap", "cfg", "-n", ns)
    assert stored["data"] == {"a": "2", "c": "3"}
    assert stored["metadata"]["labels"] == {"tier": "web"}
    assert stored["metadata"]["annotations"] == {"note": "kept"}
    again = get_json(kubectl, "deployment", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]
    # Pointer fields set to zero values are kept; they mean something (root, no privilege escalation).
    assert again["securityContext"] == {"runAsUser": 0, "allowPrivilegeEscalation": False, "privileged": False}
