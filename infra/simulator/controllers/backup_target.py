"""Harvester's `backup-target` setting: its `validator.harvesterhci.io` check and what its controller shows.

Read from harvester/harvester at v1.4.2 and v1.5.1 (identical at every simulated tag: v1.4.2, v1.4.3,
v1.5.0-rc2, v1.5.0, v1.5.1, v1.5.2 and ce188325):

* `pkg/settings/settings_helper.go` `BackupTarget`, `DecodeBackupTarget` (`json.Unmarshal`, wrapped as
  `unmarshal failed, error: %w, value: %s`), `IsDefaultBackupTarget` (type "" and every field zero).
* `pkg/webhook/resources/setting/validator.go` `validateBackupTarget` (Create and Update of the Setting named
  `backup-target`), in the source's order, stopping at the first failure:
  1. `validateBackupTargetHelper`: a non-empty `default` is decoded (a failure is 422 with field `default`),
     then a non-empty `value` (field `value`) replaces it. Neither set: allowed, nothing else is checked.
  2. `refreshIntervalInSeconds` < 0: 422 `Refresh interval should be greater than or equal to 0`.
  3. `isUpdatedS3BackupTarget`: an s3 value without keys whose type, endpoint, bucket, region and
     virtualHostedStyle equal the stored value's (the controller stripping its own keys) passes at once.
  4. Any VirtualMachineBackup deleting, without status, or not readyToUse: 400
     `There is VMBackup in creating or deleting progress`.
  5. Any VirtualMachineRestore deleting, without status, or not complete: 400
     `Can't update the backup target. There is a VM either in the process of creating or deleting`.
  6. The default (empty) target: allowed.
  7. `validateBackupTargetFields`: the s3, nfs and type messages (422, field `value`).
  8. s3 only, `customizeTransport`: the `http-proxy` setting's value must decode (else a plain error, so 500
     `failed to parse HTTP proxy config: %v`).
  9. `backupstore.GetBackupStoreDriver(util.ConstructEndpoint(target))`: an error is 422 with the driver's text.
* `pkg/controller/master/backup/backup_target.go` `OnBackupTargetChange` (below, `BackupTargetController`).

Fidelity gaps, on purpose:

* The simulator has no backupstore driver and no network to a store. Of step 9 it runs what fails before
  any I/O: Go's `url.Parse` of the endpoint URL and the nfs driver's host and path checks
  (`NFS path must follow format: nfs://<server-address>:/<share-name>/`, `cannot find nfs path`).
  **Reachability is not checked**: the NFS mount and the S3 list are not attempted, so any syntactically valid
  nfs endpoint, and any s3 target with keys, bucket and region, is admitted, where a real cluster refuses an
  unreachable store with 422 and the driver's error. The s3 driver's custom-CA parse and the
  `additional-ca` PEM check of `customizeTransport` are not run either.
* A VirtualMachineBackup whose status is present without `readyToUse` (or a restore without `complete`)
  makes the Go validator dereference a nil pointer; here it counts as in progress (the request is refused
  with step 4's or 5's message instead of the apiserver's failed-webhook-call error).
* The kinds VirtualMachineBackup and VirtualMachineRestore may not be served (their CRDs arrive separately):
  a kind that is not served counts as no objects.
* Go's `encoding/json` syntax errors and type errors are reproduced (scanner.go, decode.go of Go 1.22); Go's
  replacement of lone UTF-16 surrogates and case folding beyond ASCII are not.

The controller's visible part (`OnBackupTargetChange`; the Longhorn side is not simulated):

* It decodes `value` only. An s3 target with keys: Secret `longhorn-system/harvester-backup-target-secret`
  (`getBackupSecretData`: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINTS, AWS_CERT,
  VIRTUAL_HOSTED_STYLE, HTTP_PROXY, HTTPS_PROXY, NO_PROXY, all TrimSpace'd; `additional-ca` replaces
  AWS_CERT) is created or updated, then `value` is rewritten as Go's `json.Marshal` of the target with both
  keys blanked (`reUpdateBackupTargetSettingSecret`). An s3 target without keys: nothing to write. nfs and the
  default target: the Secret's data are emptied if it has any (`resetBackupTargetSecret`).
* Then condition `configured` (wrangler `condition.Cond`): True with no reason or message when there are no
  conditions yet or it is False; for the default target False with empty reason and message; on an error
  (a value that does not decode, an unknown type) False with reason `Error` and the error as message,
  e.g. `Invalid backup target type:%s or parameter`. `lastUpdateTime` changes only when status or message do.
* Its writes are in-process (`ObjectApi.mutate`), so they skip admission, where upstream's Updates pass the
  validator (the stripped s3 value through step 3). The simulated apiserver does not fold `stringData` into
  `data`, so the Secret is written with `data` as the apiserver would store it.
* Not simulated: the Longhorn backup target URL and credential secret (the Longhorn `backup-target` and
  `backup-target-credential-secret` Settings in v1.4.x, the BackupTarget `default` in v1.5.x) and the
  `backupstore-poll-interval` for `refreshIntervalInSeconds` > 0: the simulator serves no such kinds. Nor
  is `backup_metadata.go`'s re-sync of VMBackups from a new target's .cfg files.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.objects import AdmissionRequest, ObjectApi
from ..apiserver.store import StoredEvent
from .base import Controller
from .upgrade_webhook import AdmitError, bad_request, internal, invalid

if TYPE_CHECKING:
    from ..simulator import Simulator

Obj = dict[str, Any]

GROUP = "harvesterhci.io"
SETTINGS = (GROUP, "settings")
BACKUP_TARGET = "backup-target"
HTTP_PROXY_SETTING = "http-proxy"
ADDITIONAL_CA_SETTING = "additional-ca"
CONFIGURED = "configured"                      # v1beta1.SettingConfigured
LONGHORN_SYSTEM = "longhorn-system"
SECRET_NAME = "harvester-backup-target-secret"  # pkg/util/constants.go BackupTargetSecretName
S3, NFS = "s3", "nfs"

# pkg/util/proxy.go builtInNoProxy
BUILT_IN_NO_PROXY = ("localhost", "127.0.0.1", "0.0.0.0", "10.0.0.0/8", "longhorn-system", "cattle-system",
                     "cattle-system.svc", "harvester-system", ".svc", ".cluster.local")

MSG_REFRESH = "Refresh interval should be greater than or equal to 0"
MSG_VMBACKUPS = "There is VMBackup in creating or deleting progress"
MSG_VMRESTORES = "Can't update the backup target. There is a VM either in the process of creating or deleting"
MSG_S3_KEYS = "S3 backup target should have access key and access key id"
MSG_S3_BUCKET = "S3 backup target should have bucket name and region "          # the trailing space is upstream's
MSG_NFS_ENDPOINT = "NFS backup target should have endpoint"
MSG_NFS_KEYS = "NFS backup target should not have access key or access key id"
MSG_NFS_BUCKET = "NFS backup target should not have bucket name or region"
MSG_INVALID_TYPE = "Invalid backup target type"
MSG_NFS_FORMAT = "NFS path must follow format: nfs://<server-address>:/<share-name>/"
MSG_NFS_PATH = "cannot find nfs path"


# ---- Go's strconv.Quote ----------------------------------------------------------------------------

_GO_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v",
               0x5C: "\\\\"}


def _go_quote_rune(rune: int, quote: str = '"') -> str:
    if rune == ord(quote):
        return "\\" + quote
    if rune in _GO_ESCAPES:
        return _GO_ESCAPES[rune]
    char = chr(rune)
    if char.isprintable():          # unicode.IsPrint: graphic characters and the ASCII space
        return char
    if rune < 0x20 or rune == 0x7F:
        return f"\\x{rune:02x}"
    return f"\\u{rune:04x}" if rune < 0x10000 else f"\\U{rune:08x}"


def go_quote(data: str | bytes) -> str:
    """`strconv.Quote` (`%q`) of a Go string; bytes that are not UTF-8 come out as `\\xNN`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    out, i = [], 0
    while i < len(raw):
        for size in (1, 2, 3, 4):
            chunk = raw[i:i + size]
            try:
                char = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(_go_quote_rune(ord(char)))
            i += size
            break
        else:
            out.append(f"\\x{raw[i]:02x}")
            i += 1
    return '"' + "".join(out) + '"'


def _go_quote_byte(byte: int) -> str:
    """encoding/json `quoteChar`: the byte as a rune, in single quotes."""
    if byte == 0x27:
        return "'\\''"
    if byte == 0x22:
        return "'\"'"
    return "'" + go_quote(chr(byte))[1:-1] + "'"


# ---- Go's encoding/json ------------------------------------------------------------------------------

class _GoObject(list[Any]):
    """A JSON object as (key, value) pairs in document order (Go sees duplicates one after the other)."""


class _GoNumber(str):
    """A JSON number, as its literal text."""


def go_json_syntax_error(text: str) -> str | None:
    """encoding/json `checkValid`: the SyntaxError Unmarshal returns before decoding anything, or None."""
    data = text.encode("utf-8", "surrogatepass")
    stack: list[str] = []          # "key" | "value" (in an object) | "array"
    state = "begin_value"
    end_top = False

    def fail(byte: int, context: str) -> str:
        return f"invalid character {_go_quote_byte(byte)} {context}"

    def end_value(c: int) -> tuple[str, str | None]:
        nonlocal end_top
        if not stack:
            end_top = True
            return end_top_state(c)
        if c in b" \t\r\n":
            return "end_value", None
        top = stack[-1]
        if top == "key":
            if c == ord(":"):
                stack[-1] = "value"
                return "begin_value", None
            return "", fail(c, "after object key")
        if top == "value":
            if c == ord(","):
                stack[-1] = "key"
                return "begin_string", None
            if c == ord("}"):
                return pop()
            return "", fail(c, "after object key:value pair")
        if c == ord(","):
            return "begin_value", None
        if c == ord("]"):
            return pop()
        return "", fail(c, "after array element")

    def pop() -> tuple[str, str | None]:
        nonlocal end_top
        stack.pop()
        if not stack:
            end_top = True
            return "end_top", None
        return "end_value", None

    def end_top_state(c: int) -> tuple[str, str | None]:
        if c not in b" \t\r\n":
            return "", fail(c, "after top-level value")
        return "end_top", None

    def begin_value(c: int) -> tuple[str, str | None]:
        if c in b" \t\r\n":
            return "begin_value", None
        if c == ord("{"):
            stack.append("key")
            return "begin_string_or_empty", None
        if c == ord("["):
            stack.append("array")
            return "begin_value_or_empty", None
        simple = {ord('"'): "in_string", ord("-"): "neg", ord("0"): "zero", ord("t"): "t", ord("f"): "f",
                  ord("n"): "n"}
        if c in simple:
            return simple[c], None
        if ord("1") <= c <= ord("9"):
            return "one", None
        return "", fail(c, "looking for beginning of value")

    literals = {"t": ("r", "tr", "true"), "tr": ("u", "tru", "true"), "tru": ("e", None, "true"),
                "f": ("a", "fa", "false"), "fa": ("l", "fal", "false"), "fal": ("s", "fals", "false"),
                "fals": ("e", None, "false"), "n": ("u", "nu", "null"), "nu": ("l", "nul", "null"),
                "nul": ("l", None, "null")}

    def step(state: str, c: int) -> tuple[str, str | None]:
        digit = ord("0") <= c <= ord("9")
        if state == "begin_value":
            return begin_value(c)
        if state == "begin_value_or_empty":
            if c in b" \t\r\n":
                return state, None
            if c == ord("]"):
                return end_value(c)
            return begin_value(c)
        if state == "begin_string_or_empty":
            if c in b" \t\r\n":
                return state, None
            if c == ord("}"):
                stack[-1] = "value"
                return end_value(c)
            return step("begin_string", c)
        if state == "begin_string":
            if c in b" \t\r\n":
                return state, None
            if c == ord('"'):
                return "in_string", None
            return "", fail(c, "looking for beginning of object key string")
        if state == "end_value":
            return end_value(c)
        if state == "end_top":
            return end_top_state(c)
        if state == "in_string":
            if c == ord('"'):
                return "end_value", None
            if c == ord("\\"):
                return "in_string_esc", None
            if c < 0x20:
                return "", fail(c, "in string literal")
            return state, None
        if state == "in_string_esc":
            if c in b'bfnrt\\/"':
                return "in_string", None
            if c == ord("u"):
                return "esc_u0", None
            return "", fail(c, "in string escape code")
        if state.startswith("esc_u"):
            if digit or ord("a") <= c <= ord("f") or ord("A") <= c <= ord("F"):
                count = int(state[-1]) + 1
                return ("in_string", None) if count == 4 else (f"esc_u{count}", None)
            return "", fail(c, "in \\u hexadecimal character escape")
        if state == "neg":
            if c == ord("0"):
                return "zero", None
            if ord("1") <= c <= ord("9"):
                return "one", None
            return "", fail(c, "in numeric literal")
        if state == "one":
            if digit:
                return state, None
            return step("zero", c)
        if state == "zero":
            if c == ord("."):
                return "dot", None
            if c in b"eE":
                return "exp", None
            return end_value(c)
        if state == "dot":
            if digit:
                return "dot0", None
            return "", fail(c, "after decimal point in numeric literal")
        if state == "dot0":
            if digit:
                return state, None
            if c in b"eE":
                return "exp", None
            return end_value(c)
        if state == "exp":
            if c in b"+-":
                return "exp_sign", None
            return step("exp_sign", c)
        if state == "exp_sign":
            if digit:
                return "exp0", None
            return "", fail(c, "in exponent of numeric literal")
        if state == "exp0":
            if digit:
                return state, None
            return end_value(c)
        expect, following, word = literals[state]
        if c == ord(expect):
            return (following, None) if following else end_value_after_literal()
        return "", fail(c, f"in literal {word} (expecting {_go_quote_byte(ord(expect))})")

    def end_value_after_literal() -> tuple[str, str | None]:
        return "end_value", None

    for byte in data:
        state, error = step(state, byte)
        if error is not None:
            return error
    if end_top:
        return None
    state, error = step(state, ord(" "))        # scanner.eof feeds a space
    if error is not None:
        return error
    return None if end_top else "unexpected end of JSON input"


def _json_kind(value: Any) -> str:
    if isinstance(value, _GoObject):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, _GoNumber):
        return "number"
    return "string"


@dataclass(frozen=True)
class GoField:
    name: str           # the JSON name (struct tag)
    go_type: str        # as reflect.Type.String() prints it
    kind: str           # string | bool | int64


def go_unmarshal_struct(text: str, type_name: str, struct_fields: tuple[GoField, ...]) -> tuple[Obj, str | None]:
    """`json.Unmarshal` into a flat struct: (the fields by JSON name, Go's error text or None)."""
    result: Obj = {f.name: {"string": "", "bool": False, "int64": 0}[f.kind] for f in struct_fields}
    syntax = go_json_syntax_error(text)
    if syntax is not None:
        return result, syntax
    data = json.loads(text, object_pairs_hook=_GoObject, parse_int=_GoNumber, parse_float=_GoNumber)
    if data is None:
        return result, None
    if not isinstance(data, _GoObject):
        return result, f"json: cannot unmarshal {_json_kind(data)} into Go value of type {type_name}"
    struct = type_name.rpartition(".")[2]
    first_error: str | None = None
    by_name = {f.name: f for f in struct_fields}
    by_fold = {f.name.lower(): f for f in struct_fields}
    for key, item in data:
        found = by_name.get(key) or by_fold.get(key.lower())
        if found is None or item is None:
            continue                           # unknown keys are ignored; null leaves the field alone
        got = _json_kind(item)
        ok = (found.kind == "string" and got == "string") or (found.kind == "bool" and got == "bool")
        if ok:
            result[found.name] = item if found.kind == "bool" else str(item)
            continue
        problem = got
        if found.kind == "int64" and got == "number":
            if re.fullmatch(r"-?[0-9]+", item) and -(2**63) <= int(item) < 2**63:
                result[found.name] = int(item)
                continue
            problem = f"number {item}"
        if first_error is None:
            first_error = (f"json: cannot unmarshal {problem} into Go struct field {struct}.{found.name} of type "
                           f"{found.go_type}")
    return result, first_error


def go_marshal_string(text: str) -> str:
    """A string as Go's json.Marshal writes it (HTML-safe escapes)."""
    encoded = json.dumps(text, ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                         ("\u2029", "\\u2029")):
        encoded = encoded.replace(char, escape)
    return encoded


def go_trim_space(text: str) -> str:
    """strings.TrimSpace (unicode.IsSpace)."""
    return re.sub(r"^[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+|"
                  r"[\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$", "", text)


# ---- Go's net/url.Parse, as far as an endpoint URL needs it ------------------------------------------

_HOST_OK = set(b"!$&'()*+,;=:[]<>\"-_.~")
_USERINFO_OK = set(b"-._:~!$&'()*+,;=%@")
_HEX = set(b"0123456789abcdefABCDEF")


def _alnum(c: int) -> bool:
    return ord("a") <= c <= ord("z") or ord("A") <= c <= ord("Z") or ord("0") <= c <= ord("9")


def _unescape_error(raw: bytes, host: bool) -> str | None:
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == ord("%"):
            if i + 2 >= len(raw) or raw[i + 1] not in _HEX or raw[i + 2] not in _HEX:
                return "invalid URL escape " + go_quote(raw[i:i + 3])
            if host and int(chr(raw[i + 1]), 16) < 8 and raw[i:i + 3] != b"%25":
                return "invalid URL escape " + go_quote(raw[i:i + 3])
            i += 3
            continue
        if host and c < 0x80 and not _alnum(c) and c not in _HOST_OK:
            return "invalid character " + go_quote(bytes([c])) + " in host name"
        i += 1
    return None


def _valid_optional_port(port: bytes) -> bool:
    return port == b"" or (port[:1] == b":" and all(ord("0") <= c <= ord("9") for c in port[1:]))


def _parse_host(host: bytes) -> str | None:
    if host.startswith(b"["):
        close = host.rfind(b"]")
        if close < 0:
            return "missing ']' in host"
        port = host[close + 1:]
        if not _valid_optional_port(port):
            return f"invalid port {go_quote(port)} after host"
    elif b":" in host:
        port = host[host.rfind(b":"):]
        if not _valid_optional_port(port):
            return f"invalid port {go_quote(port)} after host"
    return _unescape_error(host, host=True)


def go_parse_hierarchical_url(url: str) -> tuple[str, str, str | None]:
    """url.Parse of `<scheme>://...`: (host, path, error text as *url.Error prints it)."""
    raw = url.encode("utf-8", "surrogatepass")
    raw, _, fragment = raw.partition(b"#")
    if any(c < 0x20 or c == 0x7F for c in raw):
        return "", "", f"parse {go_quote(raw)}: net/url: invalid control character in URL"
    rest = raw.split(b"://", 1)[1]
    if rest.endswith(b"?") and rest.count(b"?") == 1:
        rest = rest[:-1]
    else:
        rest = rest.partition(b"?")[0]
    authority, slash, path = rest.partition(b"/")
    path = slash + path
    userinfo, at, host = authority.rpartition(b"@")
    problem = _parse_host(host)
    if problem is None and at and not all(_alnum(c) or c in _USERINFO_OK for c in userinfo):
        problem = "net/url: invalid userinfo"
    if problem is None and at:
        for part in userinfo.split(b":", 1):        # username, then password
            problem = problem or _unescape_error(part, host=False)
    if problem is None:
        problem = _unescape_error(path, host=False)
    if problem is not None:
        return "", "", f"parse {go_quote(raw)}: {problem}"
    if fragment and (problem := _unescape_error(fragment, host=False)) is not None:
        return "", "", f"parse {go_quote(url)}: {problem}"
    return _percent_decode(host), _percent_decode(path), None


def _percent_decode(raw: bytes) -> str:
    return re.sub(rb"%([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), raw).decode("utf-8", "replace")


# ---- settings.BackupTarget --------------------------------------------------------------------------

BACKUP_TARGET_FIELDS = (
    GoField("type", "settings.TargetType", "string"), GoField("endpoint", "string", "string"),
    GoField("accessKeyId", "string", "string"), GoField("secretAccessKey", "string", "string"),
    GoField("bucketName", "string", "string"), GoField("bucketRegion", "string", "string"),
    GoField("cert", "string", "string"), GoField("virtualHostedStyle", "bool", "bool"),
    GoField("refreshIntervalInSeconds", "int64", "int64"),
)
HTTP_PROXY_FIELDS = (GoField("httpProxy", "string", "string"), GoField("httpsProxy", "string", "string"),
                     GoField("noProxy", "string", "string"))


@dataclass(frozen=True)
class BackupTarget:
    type: str = ""                 # the fields carry the JSON names, in the struct's order
    endpoint: str = ""
    accessKeyId: str = ""
    secretAccessKey: str = ""
    bucketName: str = ""
    bucketRegion: str = ""
    cert: str = ""
    virtualHostedStyle: bool = False
    refreshIntervalInSeconds: int = 0

    def is_default(self) -> bool:
        return self == BackupTarget()

    def endpoint_url(self) -> str:
        """pkg/util/backup.go ConstructEndpoint."""
        if self.type == S3:
            return f"s3://{self.bucketName}@{self.bucketRegion}/"
        if self.type == NFS:
            return "nfs://" + self.endpoint.removeprefix("nfs://")
        return self.endpoint

    def marshal(self) -> str:
        """json.Marshal: every field, in the struct's order (no omitempty)."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int):
                text = str(value)
            else:
                text = go_marshal_string(value)
            parts.append(f'"{f.name}":{text}')
        return "{" + ",".join(parts) + "}"


def decode_backup_target(value: str) -> tuple[BackupTarget | None, str | None]:
    """settings.DecodeBackupTarget: "" is the zero target; an Unmarshal error is wrapped."""
    if value == "":
        return BackupTarget(), None
    decoded, error = go_unmarshal_struct(value, "settings.BackupTarget", BACKUP_TARGET_FIELDS)
    if error is not None:
        return None, f"unmarshal failed, error: {error}, value: {value}"
    return BackupTarget(**decoded), None


def driver_error(target: BackupTarget) -> str | None:
    """backupstore.GetBackupStoreDriver up to its first I/O (see the module docstring)."""
    url = target.endpoint_url()
    if url == "":
        return "destination URL hasn't been specified"
    host, path, error = go_parse_hierarchical_url(url)
    if error is not None:
        return error
    if target.type == NFS:
        if host == "":
            return MSG_NFS_FORMAT
        if path == "":
            return MSG_NFS_PATH
    return None       # s3's path is always "/"; the mount or the bucket listing would come next


# ---- the validator -------------------------------------------------------------------------------------

def _setting_value(api: ObjectApi, name: str, default: str) -> str:
    """settings.X.Get(): the value, else the default (a setting the simulator does not seed: Harvester's default)."""
    setting = api.store.peek(SETTINGS, ("", name))
    if setting is None:
        return default
    return str(setting.get("value") or setting.get("default") or "")


def _objects(api: ObjectApi, plural: str) -> list[Obj]:
    if api.registry.get(GROUP, plural) is None:
        return []                             # the kind is not served: no objects
    return list(api.store.iter_raw((GROUP, plural)))


def _backup_busy(backup: Obj) -> bool:
    """hasVMBackupInCreatingOrDeletingProgress (readyToUse absent counts as not ready)."""
    status = backup.get("status")
    return bool(backup["metadata"].get("deletionTimestamp")) or status is None or status.get("readyToUse") is not True


def _restore_busy(restore: Obj) -> bool:
    status = restore.get("status")
    return bool(restore["metadata"].get("deletionTimestamp")) or status is None or status.get("complete") is not True


class BackupTargetValidator:
    """`settingValidator.validateBackupTarget` on Create and Update of the `backup-target` Setting."""

    def __init__(self, api: ObjectApi) -> None:
        self.api = api

    def __call__(self, request: AdmissionRequest) -> None:
        if request.subresource or request.operation not in ("CREATE", "UPDATE") or request.object is None:
            return
        if (request.object.get("metadata") or {}).get("name") != BACKUP_TARGET:
            return
        try:
            self.validate(request.object)
        except AdmitError as exc:
            raise exc.relayed() from None

    def validate(self, setting: Obj) -> None:
        target: BackupTarget | None = None
        for keyword in ("default", "value"):
            text = str(setting.get(keyword) or "")
            if text:
                decoded, error = decode_backup_target(text)
                if error is not None:
                    raise invalid(error, keyword)
                target = decoded
        if target is None:
            return
        if target.refreshIntervalInSeconds < 0:
            raise invalid(MSG_REFRESH, "value")
        if self._is_updated_s3_target(target):
            return
        if any(_backup_busy(b) for b in _objects(self.api, "virtualmachinebackups")):
            raise bad_request(MSG_VMBACKUPS)
        if any(_restore_busy(r) for r in _objects(self.api, "virtualmachinerestores")):
            raise bad_request(MSG_VMRESTORES)
        if target.is_default():
            return
        self._check_fields(target)
        if target.type == S3:
            self._customize_transport()
        problem = driver_error(target)
        if problem is not None:
            raise invalid(problem, "value")

    def _is_updated_s3_target(self, target: BackupTarget) -> bool:
        if target.type != S3 or target.secretAccessKey or target.accessKeyId:
            return False
        saved = self.api.store.peek(SETTINGS, ("", BACKUP_TARGET))
        if saved is None:
            return False
        stored, error = decode_backup_target(str(saved.get("value") or ""))
        if stored is None or error is not None:
            return False
        return (stored.type, stored.bucketName, stored.bucketRegion, stored.endpoint, stored.virtualHostedStyle) == \
            (target.type, target.bucketName, target.bucketRegion, target.endpoint, target.virtualHostedStyle)

    @staticmethod
    def _check_fields(target: BackupTarget) -> None:
        if target.type == S3:
            if not target.secretAccessKey or not target.accessKeyId:
                raise invalid(MSG_S3_KEYS, "value")
            if not target.bucketName or not target.bucketRegion:
                raise invalid(MSG_S3_BUCKET, "value")
        elif target.type == NFS:
            if not target.endpoint:
                raise invalid(MSG_NFS_ENDPOINT, "value")
            if target.secretAccessKey or target.accessKeyId:
                raise invalid(MSG_NFS_KEYS, "value")
            if target.bucketName or target.bucketRegion:
                raise invalid(MSG_NFS_BUCKET, "value")
        else:
            raise invalid(MSG_INVALID_TYPE, "value")

    def _customize_transport(self) -> None:
        proxy = self.api.store.peek(SETTINGS, ("", HTTP_PROXY_SETTING))
        value = str((proxy or {}).get("value") or "")
        if value:
            _, error = go_unmarshal_struct(value, "util.HTTPProxyConfig", HTTP_PROXY_FIELDS)
            if error is not None:
                raise internal(f"failed to parse HTTP proxy config: {error}")


# ---- the controller ------------------------------------------------------------------------------------

def set_condition(setting: Obj, status: str, message: str, reason: str) -> None:
    """wrangler condition.Cond: status and message touch lastUpdateTime when they change; reason does not."""
    block = setting.get("status") or {}
    conditions = list(block.get("conditions") or [])
    setting["status"] = {**block, "conditions": conditions}
    cond = next((c for c in conditions if isinstance(c, dict) and c.get("type") == CONFIGURED), None)
    if cond is None:
        cond = {"type": CONFIGURED, "status": "Unknown"}
        conditions.append(cond)
    touched = False
    if cond.get("status") != status:
        cond["status"] = status
        touched = True
    if (cond.get("message") or "") != message:
        touched = True
    for key, text in (("message", message), ("reason", reason)):
        if text:
            cond[key] = text
        else:
            cond.pop(key, None)          # omitempty
    if touched:
        cond["lastUpdateTime"] = rfc3339()


def configured_status(setting: Obj) -> str | None:
    for cond in ((setting.get("status") or {}).get("conditions") or []):
        if isinstance(cond, dict) and cond.get("type") == CONFIGURED:
            return str(cond.get("status", ""))
    return None


class BackupTargetController(Controller):
    """`TargetHandler.OnBackupTargetChange` (pkg/controller/master/backup/backup_target.go)."""

    watches = (SETTINGS,)

    async def handle(self, event: StoredEvent) -> None:
        if event.type == "DELETED" or event.object["metadata"].get("name") != BACKUP_TARGET:
            return
        self.reconcile()

    def reconcile(self) -> None:
        setting = self.api.store.get(SETTINGS, ("", BACKUP_TARGET))
        if setting is None or setting["metadata"].get("deletionTimestamp"):
            return
        target, error = decode_backup_target(str(setting.get("value") or ""))
        if target is None:
            self._set_error(error or "")
            return
        if target.type == S3:
            if target.secretAccessKey or target.accessKeyId:
                # updateLonghornTarget is not simulated
                problem = self._write_secret(target)
                if problem is not None:
                    self._set_error(problem)
                    return
                setting = self._write(lambda s: s.__setitem__(
                    "value", replace(target, secretAccessKey="", accessKeyId="").marshal()))
        elif target.type == NFS:
            self._reset_secret()            # and updateLonghornTarget, not simulated
        elif target.is_default():
            self._reset_secret()
            self._write(lambda s: set_condition(s, "False", "", ""))
            return
        else:
            self._set_error(f"Invalid backup target type:{target.type} or parameter")
            return
        # refreshIntervalInSeconds > 0 sets Longhorn's backupstore-poll-interval: not simulated
        if not ((setting.get("status") or {}).get("conditions")) or configured_status(setting) == "False":
            self._write(lambda s: set_condition(s, "True", "", ""))

    # --- writes ---------------------------------------------------------------------------------
    def _write(self, change: Callable[[Obj], None]) -> Obj:
        settings = self.api.lookup(GROUP, "v1beta1", "settings")
        return self.api.mutate(settings, None, BACKUP_TARGET, change)

    def _set_error(self, message: str) -> None:
        """setConfiguredCondition(setting, "", err): SetError with the reason defaulted to Error."""
        self._write(lambda s: set_condition(s, "False", message, "Error"))

    def _secret_data(self, target: BackupTarget) -> tuple[dict[str, str], str | None]:
        """getBackupSecretData."""
        data = {"AWS_ACCESS_KEY_ID": target.accessKeyId, "AWS_SECRET_ACCESS_KEY": target.secretAccessKey,
                "AWS_ENDPOINTS": target.endpoint, "AWS_CERT": target.cert,
                "VIRTUAL_HOSTED_STYLE": "true" if target.virtualHostedStyle else "false"}
        additional_ca = _setting_value(self.api, ADDITIONAL_CA_SETTING, "")
        if additional_ca:
            data["AWS_CERT"] = additional_ca
        proxy, error = go_unmarshal_struct(_setting_value(self.api, HTTP_PROXY_SETTING, "{}"),
                                           "util.HTTPProxyConfig", HTTP_PROXY_FIELDS)
        if error is not None:
            return {}, error
        data["HTTP_PROXY"], data["HTTPS_PROXY"] = proxy["httpProxy"], proxy["httpsProxy"]
        no_proxy = [go_trim_space(item) for item in proxy["noProxy"].split(",")]     # AddBuiltInNoProxy
        no_proxy += [item for item in BUILT_IN_NO_PROXY if item not in no_proxy]
        data["NO_PROXY"] = ",".join(no_proxy)
        return {key: go_trim_space(value) for key, value in data.items()}, None

    def _write_secret(self, target: BackupTarget) -> str | None:
        """updateBackupTargetSecret: stringData, which the apiserver folds into data."""
        data, error = self._secret_data(target)
        if error is not None:
            return error
        encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
        secrets = self.api.lookup("", "v1", "secrets")
        try:
            if self.api.store.peek(("", "secrets"), (LONGHORN_SYSTEM, SECRET_NAME)) is None:
                self.api.create(secrets, {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                                          "metadata": {"name": SECRET_NAME, "namespace": LONGHORN_SYSTEM},
                                          "data": encoded})
            else:
                self.api.mutate(secrets, LONGHORN_SYSTEM, SECRET_NAME,
                                lambda s: s.__setitem__("data", {**(s.get("data") or {}), **encoded}))
        except errors.ApiError as exc:
            return exc.message
        return None

    def _reset_secret(self) -> None:
        """resetBackupTargetSecret: a Secret with data is emptied (the Longhorn setting is not simulated)."""
        secret = self.api.store.peek(("", "secrets"), (LONGHORN_SYSTEM, SECRET_NAME))
        if secret is not None and secret.get("data"):
            secrets = self.api.lookup("", "v1", "secrets")
            self.api.mutate(secrets, LONGHORN_SYSTEM, SECRET_NAME, lambda s: s.pop("data", None))


def install(simulator: "Simulator") -> None:
    simulator.api.add_admission(GROUP, "settings", BackupTargetValidator(simulator.api))
    simulator.spawn(BackupTargetController(simulator.api).run, "backup-target-controller")
