"""Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`), decoded as kube-apiserver does.

kubectl 1.32+ writes built-in kinds as protobuf. The schema is not vendored: the kubectl binary embeds the
gzipped FileDescriptorProto of every `k8s.io/api` and apimachinery `generated.proto` (gogo registers them at
init), and its Go runtime type data holds each API struct's field tags (`json:"name,omitempty"`,
`protobuf:"bytes,1,opt,name=name"`) and whether a field is a pointer. Both are needed to turn a message into
the JSON kube would store: gogo writes every non-pointer field, empty or not, and kube's JSON encoder then drops
the empty ones that carry `omitempty` while keeping pointer fields set to a zero value (`runAsUser: 0`).

    python -m infra.simulator.apimachinery.protobuf extract --kubectl PATH --out FILE

writes FILE (a FileDescriptorSet) and FILE's sibling `<stem>.gofields.json` (the struct tag facts).

The envelope (k8s.io/apimachinery/pkg/runtime/serializer/protobuf/protobuf.go, v0.32): the 4 bytes `k8s\\x00`
then a `runtime.Unknown{typeMeta, raw, contentEncoding, contentType}` whose `raw` is the object's message.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAGIC = b"k8s\x00"
MEDIA_TYPE = "application/vnd.kubernetes.protobuf"
ENV_VAR = "HARVESTER_E2E_KUBE_PROTO"
_META = "k8s.io.apimachinery.pkg.apis.meta.v1"
_RUNTIME = "k8s.io.apimachinery.pkg.runtime"
_GZIP_HEADER = b"\x1f\x8b\x08\x00"


class ProtobufError(ValueError):
    """A body that is not a Kubernetes protobuf object this schema can read."""


def default_descriptor_path(repo_root: Path) -> Path:
    return Path(os.environ.get(ENV_VAR) or repo_root / ".cache" / "kube-proto" / "descriptors.binpb")


def facts_path(descriptors: Path) -> Path:
    return descriptors.with_name(descriptors.stem + ".gofields.json")


# --------------------------------------------------------------------------------------------------
# Extraction from a kubectl binary

def scan_descriptors(binary: bytes) -> dict[str, Any]:
    """Every gzipped FileDescriptorProto in `binary` whose name is a Kubernetes `generated.proto`."""
    from google.protobuf import descriptor_pb2
    from google.protobuf.message import DecodeError

    found: dict[str, Any] = {}
    start = 0
    while (start := binary.find(_GZIP_HEADER, start)) >= 0:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            raw = inflater.decompress(binary[start:start + 8 * 1024 * 1024])
        except zlib.error:
            raw = b""
        start += 1
        if not raw or not inflater.eof:
            continue
        try:
            file = descriptor_pb2.FileDescriptorProto.FromString(raw)
        except DecodeError:
            continue
        if file.name.startswith("k8s.io/") and file.name.endswith("/generated.proto"):
            found[file.name] = file
    return found


class _Elf:
    """Just enough of an ELF64 little-endian image to read Go's read-only type data."""

    def __init__(self, data: bytes) -> None:
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ProtobufError("not an ELF64 little-endian binary")
        self.data = data
        shoff = struct.unpack_from("<Q", data, 0x28)[0]
        entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
        raw = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
        names_offset = raw[names_index][4]
        self.sections: dict[str, tuple[int, int, int]] = {}
        for name, _type, _flags, addr, offset, size in raw:
            end = data.index(b"\0", names_offset + name)
            self.sections[data[names_offset + name:end].decode()] = (addr, offset, size)

    def offset(self, addr: int) -> int:
        for base, offset, size in self.sections.values():
            if base <= addr < base + size and offset:
                return offset + addr - base
        raise ProtobufError(f"address {addr:#x} is in no section of the binary")


class _GoTypes:
    """Walks Go's runtime type descriptors (internal/abi.Type layout of go1.21+, amd64/arm64)."""

    KIND_BOOL, KIND_MAP, KIND_PTR, KIND_SLICE, KIND_STRUCT, KIND_ARRAY = 1, 21, 22, 23, 25, 17
    TYPE_SIZE = 48

    def __init__(self, elf: _Elf) -> None:
        self.elf = elf
        if ".typelink" not in elf.sections or ".rodata" not in elf.sections:
            raise ProtobufError("the binary has no Go type links")
        self.types_base = elf.sections[".rodata"][0]     # the linker starts runtime.types at .rodata
        self.structs: dict[tuple[str, str], list[tuple[str, str, int, str]]] = {}
        self._seen: set[int] = set()

    def _u8(self, addr: int) -> int:
        return self.elf.data[self.elf.offset(addr)]

    def _words(self, fmt: str, addr: int) -> tuple[Any, ...]:
        return struct.unpack_from(fmt, self.elf.data, self.elf.offset(addr))

    def _name(self, addr: int) -> tuple[str, str]:
        flags = self._u8(addr)
        length, pos = self._varint(addr + 1)
        start = self.elf.offset(pos)
        name = self.elf.data[start:start + length].decode()
        tag = ""
        if flags & 2:
            tag_length, tag_pos = self._varint(pos + length)
            tag_start = self.elf.offset(tag_pos)
            tag = self.elf.data[tag_start:tag_start + tag_length].decode()
        return name, tag

    def _varint(self, addr: int) -> tuple[int, int]:
        value, shift = 0, 0
        while True:
            byte = self._u8(addr)
            addr += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, addr

    def _header(self, addr: int) -> tuple[int, int, str]:
        _size, _ptr, _hash, tflag, _al, _fal, kind, _eq, _gc, str_off, _ptt = self._words("<QQIBBBBQQii", addr)
        text, _ = self._name(self.types_base + str_off)
        return kind & 0x1F, tflag, text[1:] if tflag & 2 else text

    def walk_all(self) -> None:
        _, offset, size = self.elf.sections[".typelink"]
        for link in struct.unpack_from(f"<{size // 4}i", self.elf.data, offset):
            self._walk(self.types_base + link)

    def _walk(self, addr: int) -> None:
        if not addr or addr in self._seen:
            return
        self._seen.add(addr)
        kind, tflag, text = self._header(addr)
        body = addr + self.TYPE_SIZE
        if kind in (self.KIND_PTR, self.KIND_SLICE, self.KIND_ARRAY):
            self._walk(self._words("<Q", body)[0])
        elif kind == self.KIND_MAP:
            key, elem = self._words("<QQ", body)
            self._walk(key)
            self._walk(elem)
        elif kind == self.KIND_STRUCT:
            _pkg, fields_at, count, _cap = self._words("<QQQQ", body)
            fields = []
            for index in range(count):
                name_at, type_at, _offset = self._words("<QQQ", fields_at + 24 * index)
                name, tag = self._name(name_at)
                field_kind, _, field_type = self._header(type_at)
                fields.append((name, tag, field_kind, field_type))
                self._walk(type_at)
            package = ""
            if tflag & 1:                                  # an uncommon type follows: the package path
                package_off = self._words("<i", body + 32)[0]
                package = self._name(self.types_base + package_off)[0]
            self.structs[(package, text)] = fields


def _tag_value(tag: str, key: str) -> str | None:
    marker = f'{key}:"'
    at = tag.find(marker)
    if at < 0:
        return None
    end = tag.index('"', at + len(marker))
    return tag[at + len(marker):end]


def go_field_facts(binary: bytes) -> dict[str, dict[str, dict[str, Any]]]:
    """proto message full name -> field number -> {json, omitempty, pointer, inline, goKind} from Go types."""
    walker = _GoTypes(_Elf(binary))
    walker.walk_all()
    facts: dict[str, dict[str, dict[str, Any]]] = {}
    for (package, text), fields in walker.structs.items():
        if not package.startswith("k8s.io/"):
            continue
        message = package.replace("/", ".") + "." + text.rpartition(".")[2]
        entries: dict[str, dict[str, Any]] = {}
        for _name, tag, kind, _type in fields:
            proto = (_tag_value(tag, "protobuf") or "").split(",")
            if len(proto) < 2 or not proto[1].isdigit():
                continue                                   # not on the wire (`protobuf:"-"`)
            number = proto[1]
            json_tag = (_tag_value(tag, "json") or "").split(",")
            entry: dict[str, Any] = {"json": json_tag[0], "omitempty": "omitempty" in json_tag[1:],
                                     "pointer": kind == _GoTypes.KIND_PTR, "inline": "inline" in json_tag[1:],
                                     "goKind": kind}
            for key in ("patchStrategy", "patchMergeKey"):
                value = _tag_value(tag, key)
                if value:
                    entry[key] = value
            entries[number] = entry
        if entries:
            facts[message] = entries
    return facts


def extract(kubectl: Path, out: Path) -> tuple[int, int]:
    """Write the descriptor set and the Go field facts of `kubectl`; returns (files, messages with facts)."""
    from google.protobuf import descriptor_pb2

    binary = kubectl.read_bytes()
    files = scan_descriptors(binary)
    if not any(name.endswith("api/core/v1/generated.proto") for name in files):
        raise ProtobufError(f"{kubectl} embeds no k8s.io/api/core/v1/generated.proto: is it a kubectl binary?")
    descriptor_set = descriptor_pb2.FileDescriptorSet()
    for name in _dependency_order(files):
        descriptor_set.file.append(files[name])
    facts = go_field_facts(binary)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(descriptor_set.SerializeToString())
    facts_path(out).write_text(json.dumps({"source": str(kubectl), "messages": facts}, separators=(",", ":")))
    return len(files), len(facts)


def _dependency_order(files: dict[str, Any]) -> list[str]:
    ordered: list[str] = []

    def visit(name: str) -> None:
        if name in ordered or name not in files:
            return
        for dependency in files[name].dependency:
            visit(dependency)
        ordered.append(name)

    for name in sorted(files):
        visit(name)
    return ordered


# --------------------------------------------------------------------------------------------------
# Decoding

@dataclass(frozen=True)
class _Field:
    json: str
    omitempty: bool
    pointer: bool
    inline: bool
    go_kind: int


class KubeProtobuf:
    """A loaded schema: decodes kube's protobuf envelope into the JSON object kube would keep."""

    def __init__(self, descriptor_set: bytes, facts: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
        self.pool = descriptor_pool.DescriptorPool()
        names = {file.name for file in files.file}
        for file in files.file:
            # Some files import gogo.proto for options only; nothing of it is needed to read messages.
            kept = [name for name in file.dependency if name in names]
            if len(kept) != len(file.dependency):
                del file.dependency[:]
                file.dependency.extend(kept)
                file.options.Clear()
            self.pool.Add(file)
        self._classes = message_factory
        self._facts: dict[str, dict[int, _Field]] = {
            message: {int(number): _Field(entry["json"], entry["omitempty"], entry["pointer"], entry["inline"],
                                          entry.get("goKind", 0)) for number, entry in fields.items()}
            for message, fields in (facts or {}).items()}
        self.has_facts = bool(self._facts)

    @classmethod
    def load(cls, path: Path) -> "KubeProtobuf":
        side = facts_path(path)
        facts = json.loads(side.read_text())["messages"] if side.exists() else None
        return cls(path.read_bytes(), facts)

    # --- the envelope ------------------------------------------------------------------------
    def decode(self, body: bytes) -> dict[str, Any]:
        """The object of a `k8s\\x00` + runtime.Unknown body, as JSON kube would write it."""
        if not body.startswith(MAGIC):
            raise ProtobufError("the protobuf body does not start with the Kubernetes magic number k8s\\x00")
        unknown = self.message(f"{_RUNTIME}.Unknown")
        try:
            envelope = unknown.FromString(body[len(MAGIC):])
        except Exception as exc:  # noqa: BLE001 - the C and Python backends raise different types
            raise ProtobufError(f"the protobuf envelope could not be decoded: {exc}") from None
        api_version, kind = envelope.typeMeta.apiVersion, envelope.typeMeta.kind
        if envelope.contentEncoding:
            raise ProtobufError(f"unsupported protobuf content encoding {envelope.contentEncoding!r}")
        name = self.message_name(api_version, kind)
        try:
            obj = self.message(name).FromString(envelope.raw)
        except Exception as exc:  # noqa: BLE001
            raise ProtobufError(f"the {kind} message could not be decoded: {exc}") from None
        result = {"kind": kind, "apiVersion": api_version}
        result.update(self.to_json(obj))
        return result

    def encode(self, obj: dict[str, Any]) -> bytes:
        """The envelope of a JSON object (for tests and tools; kube's clients write it the same way)."""
        name = self.message_name(obj.get("apiVersion", ""), obj.get("kind", ""))
        message = self.message(name)()
        self._fill(message, obj)
        unknown = self.message(f"{_RUNTIME}.Unknown")()
        unknown.typeMeta.apiVersion = obj.get("apiVersion", "")
        unknown.typeMeta.kind = obj.get("kind", "")
        unknown.raw = message.SerializeToString()
        return MAGIC + unknown.SerializeToString()

    def message(self, full_name: str) -> Any:
        try:
            descriptor = self.pool.FindMessageTypeByName(full_name)
        except KeyError:
            raise ProtobufError(f"the protobuf schema has no message {full_name}") from None
        return self._classes.GetMessageClass(descriptor)

    def message_name(self, api_version: str, kind: str) -> str:
        """The message of a kind: k8s.io.api.<group's first label>.<version>.<Kind>, else meta/v1."""
        group, _, version = api_version.rpartition("/")
        if not kind or not version:
            raise ProtobufError("the protobuf object has no apiVersion and kind")
        label = {"": "core", "flowcontrol.apiserver.k8s.io": "flowcontrol",
                 "internal.apiserver.k8s.io": "apiserverinternal"}.get(group, group.split(".")[0])
        for candidate in (f"k8s.io.api.{label}.{version}.{kind}", f"{_META}.{kind}"):
            try:
                self.pool.FindMessageTypeByName(candidate)
                return candidate
            except KeyError:
                continue
        raise ProtobufError(f'the protobuf schema has no kind "{kind}" in version "{api_version}"')

    # --- messages -> JSON --------------------------------------------------------------------
    def to_json(self, message: Any) -> Any:
        special = _SPECIAL_READERS.get(message.DESCRIPTOR.full_name)
        if special is not None:
            return special(message)
        if self._is_wrapper(message.DESCRIPTOR):
            return [self._value(message.DESCRIPTOR.fields_by_name["items"], v) for v in message.items] or None
        out: dict[str, Any] = {}
        facts = self._facts.get(message.DESCRIPTOR.full_name, {})
        present = {field.number for field, _ in message.ListFields()}
        for field in message.DESCRIPTOR.fields:
            fact = facts.get(field.number)
            name = fact.json if fact and fact.json else field.name
            if fact is not None and fact.inline:
                inner = self.to_json(getattr(message, field.name))
                if isinstance(inner, dict):
                    out.update(inner)
                continue
            repeated = _is_repeated(field)
            if field.number not in present:
                if fact is None or fact.omitempty or fact.pointer:
                    continue
                # A non-pointer field without omitempty is always in kube's JSON, at its zero value.
                out[name] = None if repeated else self._zero(field, message)
                continue
            value = getattr(message, field.name)
            if repeated:
                converted = self._repeated(field, value)
                if not converted and (fact is None or fact.omitempty):
                    continue
                out[name] = converted
                continue
            converted = self._value(field, value)
            if _is_empty_scalar(field, converted) and not (fact and fact.pointer):
                if fact is None or fact.omitempty:
                    continue
            out[name] = converted
        return out

    def _zero(self, field: Any, message: Any) -> Any:
        if field.type == field.TYPE_MESSAGE:
            return self.to_json(getattr(message, field.name))
        return self._value(field, field.default_value)

    def _repeated(self, field: Any, value: Any) -> Any:
        if _is_map(field):
            value_field = field.message_type.fields_by_name["value"]
            return {key: self._value(value_field, value[key]) for key in sorted(value)}
        return [self._value(field, item) for item in value]

    def _value(self, field: Any, value: Any) -> Any:
        if field.type == field.TYPE_MESSAGE:
            return self.to_json(value)
        if field.type == field.TYPE_BYTES:
            return base64.b64encode(value).decode()
        if field.type in (field.TYPE_FLOAT, field.TYPE_DOUBLE):
            return float(value)
        return value

    def _is_wrapper(self, descriptor: Any) -> bool:
        """A named Go slice (meta/v1 Verbs, authentication/v1 ExtraValue): a message holding only `items`."""
        if descriptor.full_name in self._facts:
            return False
        fields = descriptor.fields
        return len(fields) == 1 and fields[0].name == "items" and _is_repeated(fields[0]) \
            and not descriptor.name.endswith("List")

    # --- JSON -> messages (encode) -------------------------------------------------------------
    def _fill(self, message: Any, obj: Any) -> None:
        writer = _SPECIAL_WRITERS.get(message.DESCRIPTOR.full_name)
        if writer is not None:
            writer(message, obj)
            return
        if self._is_wrapper(message.DESCRIPTOR):
            message.items.extend(obj or [])
            return
        facts = self._facts.get(message.DESCRIPTOR.full_name, {})
        for field in message.DESCRIPTOR.fields:
            fact = facts.get(field.number)
            if fact is not None and fact.inline:
                self._fill(getattr(message, field.name), obj)
                continue
            name = fact.json if fact and fact.json else field.name
            if not isinstance(obj, dict) or obj.get(name) is None:
                if fact is not None and not fact.pointer and field.type == field.TYPE_MESSAGE \
                        and not _is_repeated(field):
                    getattr(message, field.name).SetInParent()    # gogo writes non-pointer structs, even empty
                continue
            value = obj[name]
            if _is_map(field):
                target = getattr(message, field.name)
                value_field = field.message_type.fields_by_name["value"]
                for key, item in value.items():
                    if value_field.type == value_field.TYPE_MESSAGE:
                        self._fill(target[key], item)
                    else:
                        target[key] = self._scalar(value_field, item)
            elif _is_repeated(field):
                target = getattr(message, field.name)
                for item in value:
                    if field.type == field.TYPE_MESSAGE:
                        self._fill(target.add(), item)
                    else:
                        target.append(self._scalar(field, item))
            elif field.type == field.TYPE_MESSAGE:
                child = getattr(message, field.name)
                child.SetInParent()
                self._fill(child, value)
            else:
                setattr(message, field.name, self._scalar(field, value))

    @staticmethod
    def _scalar(field: Any, value: Any) -> Any:
        return base64.b64decode(value) if field.type == field.TYPE_BYTES else value


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)


def _is_map(field: Any) -> bool:
    return _is_repeated(field) and field.type == field.TYPE_MESSAGE and field.message_type.GetOptions().map_entry


def _is_empty_scalar(field: Any, value: Any) -> bool:
    """What Go's omitempty drops: false, 0, "" (an empty bytes field is "" once base64-encoded)."""
    return field.type != field.TYPE_MESSAGE and value in ("", 0, False)


# --- k8s types with their own JSON form (apimachinery pkg/apis/meta/v1, api/resource, util/intstr) ---------

def _time(message: Any) -> str | None:
    # meta/v1 time_proto.go: an empty message is the zero Time (JSON null); whole seconds only.
    if not message.ListFields():
        return None
    moment = dt.datetime.fromtimestamp(message.seconds, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _micro_time(message: Any) -> str | None:
    if not message.ListFields():
        return None
    moment = dt.datetime.fromtimestamp(message.seconds, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{(message.nanos // 1000):06d}Z"


def go_duration(nanoseconds: int) -> str:
    """time.Duration.String(): 1h2m3.5s, 150ms, 0s."""
    if nanoseconds == 0:
        return "0s"
    sign, n = ("-", -nanoseconds) if nanoseconds < 0 else ("", nanoseconds)
    if n < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if n >= size:
                return sign + _trim(n / size) + unit
    hours, rest = divmod(n, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


def _int_or_string(message: Any) -> int | str:
    return message.strVal if message.type == 1 else message.intVal


def _raw_json(message: Any, field: str) -> Any:
    raw = getattr(message, field)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise ProtobufError("an embedded object is not JSON (nested protobuf is not supported)") from None


def _set_time(message: Any, value: Any) -> None:
    if value:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        message.seconds = int(moment.timestamp())
        if message.DESCRIPTOR.name == "MicroTime":
            message.nanos = moment.microsecond * 1000


def _set_duration(message: Any, value: Any) -> None:
    message.duration = parse_go_duration(str(value))


def parse_go_duration(text: str) -> int:
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
    total, number, index = 0.0, "", 0
    sign = -1 if text.startswith("-") else 1
    text = text.lstrip("+-")
    while index < len(text):
        char = text[index]
        if char.isdigit() or char == ".":
            number += char
            index += 1
            continue
        unit = next((u for u in ("ns", "us", "µs", "ms", "h", "m", "s") if text.startswith(u, index)), None)
        if unit is None or not number:
            raise ProtobufError(f"invalid duration {text!r}")
        total += float(number) * units[unit]
        number, index = "", index + len(unit)
    if number and number != "0":
        raise ProtobufError(f"missing unit in duration {text!r}")
    return sign * int(total)


def _set_int_or_string(message: Any, value: Any) -> None:
    if isinstance(value, str):
        message.type, message.strVal = 1, value
    else:
        message.type, message.intVal = 0, int(value)


def _set_raw(field: str) -> Any:
    def write(message: Any, value: Any) -> None:
        setattr(message, field, json.dumps(value, separators=(",", ":")).encode())
    return write


_SPECIAL_READERS: dict[str, Any] = {
    f"{_META}.Time": _time,
    f"{_META}.MicroTime": _micro_time,
    f"{_META}.Duration": lambda m: go_duration(m.duration),
    f"{_META}.FieldsV1": lambda m: _raw_json(m, "Raw"),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda m: m.string,
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _int_or_string,
    f"{_RUNTIME}.RawExtension": lambda m: _raw_json(m, "raw"),
}
_SPECIAL_WRITERS: dict[str, Any] = {
    f"{_META}.Time": _set_time,
    f"{_META}.MicroTime": _set_time,
    f"{_META}.Duration": _set_duration,
    f"{_META}.FieldsV1": _set_raw("Raw"),
    "k8s.io.apimachinery.pkg.api.resource.Quantity": lambda m, v: setattr(m, "string", str(v)),
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": _set_int_or_string,
    f"{_RUNTIME}.RawExtension": _set_raw("raw"),
}


# --------------------------------------------------------------------------------------------------
# CLI

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.simulator.apimachinery.protobuf",
                                     description="Kubernetes protobuf schema for the simulated API server")
    commands = parser.add_subparsers(dest="command", required=True)
    extract_cmd = commands.add_parser("extract", help="write the schema embedded in a kubectl binary")
    extract_cmd.add_argument("--kubectl", type=Path, required=True, help="a kubectl binary (1.30 or later)")
    extract_cmd.add_argument("--out", type=Path, required=True, help="the FileDescriptorSet to write")
    decode_cmd = commands.add_parser("decode", help="print a protobuf body (from stdin) as JSON")
    decode_cmd.add_argument("--schema", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "extract":
            if not args.kubectl.is_file():
                raise ProtobufError(f"{args.kubectl} is not a file")
            files, messages = extract(args.kubectl, args.out)
            print(f"wrote {args.out} ({files} proto files) and {facts_path(args.out)} ({messages} Go structs)")
        else:
            schema = KubeProtobuf.load(args.schema)
            print(json.dumps(schema.decode(sys.stdin.buffer.read()), indent=2))
    except (ProtobufError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
