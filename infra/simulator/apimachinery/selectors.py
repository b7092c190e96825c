"""Label and field selectors with the semantics of k8s.io/apimachinery (v0.32).

Parsing follows ``labels.Parse`` and ``fields.ParseSelector`` closely, including
their error texts, because kubectl prints the server's message verbatim.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class SelectorError(ValueError):
    """A selector that kube-apiserver would reject with 400 BadRequest."""


# --------------------------------------------------------------------------
# Validation of label keys and values (k8s.io/apimachinery/pkg/util/validation)

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, "
    "'-', '_' or '.', and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
    "characters, '-' or '.', and must start and end with an alphanumeric character"
)
_NAME_MAX = 63


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # Reproduces Go's RegexError, including its double space before "or".
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    parts = "".join((" or " if i else "") + f"'{ex}', " for i, ex in enumerate(examples))
    return f"{msg} (e.g. {parts}regex used for validation is '{fmt}')"


def _max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


def go_quote(value: str) -> str:
    """Approximates Go's %q for the strings that appear in API error messages."""
    return json.dumps(value, ensure_ascii=False)


def qualified_name_errors(value: str) -> list[str]:
    """Problems with a label/annotation key, worded like validation.IsQualifiedName."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part " + _max_len_error(253))
            if not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix):
                errs.append(
                    "prefix part "
                    + _regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com")
                )
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > _NAME_MAX:
        errs.append("name part " + _max_len_error(_NAME_MAX))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_MSG, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def label_value_errors(value: str) -> list[str]:
    """Problems with a label value, worded like validation.IsValidLabelValue."""
    errs: list[str] = []
    if len(value) > _NAME_MAX:
        errs.append(_max_len_error(_NAME_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _invalid(path: str, value: str, detail: str) -> str:
    return f"{path}: Invalid value: {go_quote(value)}: {detail}"


def _aggregate(messages: list[str]) -> str:
    unique = list(dict.fromkeys(messages))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


# --------------------------------------------------------------------------
# Label selectors

EQUALS, DOUBLE_EQUALS, NOT_EQUALS = "=", "==", "!="
IN, NOT_IN = "in", "notin"
EXISTS, DOES_NOT_EXIST = "exists", "!"
GREATER_THAN, LESS_THAN = "gt", "lt"

_SET_OPERATORS = (IN, NOT_IN)
_EXACT_OPERATORS = (EQUALS, DOUBLE_EQUALS, NOT_EQUALS)
_ORDER_OPERATORS = (GREATER_THAN, LESS_THAN)
_UNARY_OPERATORS = (EXISTS, DOES_NOT_EXIST)
_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_INT64_RE = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    if not _INT64_RE.fullmatch(text):
        return None
    value = int(text)
    return value if -(2**63) <= value < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector; ``values`` is kept sorted like Go's sets.String."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, Any] | None) -> bool:
        labels = labels or {}
        present = self.key in labels
        value = str(labels[self.key]) if present else ""
        if self.operator in (IN, EQUALS, DOUBLE_EQUALS):
            return present and value in self.values
        if self.operator in (NOT_IN, NOT_EQUALS):
            # Kubernetes: a missing key satisfies != and notin.
            return not present or value not in self.values
        if self.operator == EXISTS:
            return present
        if self.operator == DOES_NOT_EXIST:
            return not present
        if self.operator in _ORDER_OPERATORS:
            actual = _parse_int64(value) if present else None
            wanted = _parse_int64(self.values[0]) if len(self.values) == 1 else None
            if actual is None or wanted is None:
                return False
            return actual > wanted if self.operator == GREATER_THAN else actual < wanted
        return False

    def __str__(self) -> str:
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        if self.operator == EXISTS:
            return self.key
        symbol = {IN: " in ", NOT_IN: " notin ", GREATER_THAN: ">", LESS_THAN: "<"}.get(
            self.operator, self.operator
        )
        joined = ",".join(sorted(self.values))
        if self.operator in _SET_OPERATORS:
            return f"{self.key}{symbol}({joined})"
        return f"{self.key}{symbol}{joined}"


def new_requirement(key: str, operator: str, values: Iterable[str] = ()) -> Requirement:
    """Validated constructor mirroring labels.NewRequirement (values are de-duplicated and sorted)."""
    vals = list(values)
    errs: list[str] = []
    key_errs = qualified_name_errors(key)
    if key_errs:
        errs.append(_invalid("key", key, "; ".join(key_errs)))
    if operator in _SET_OPERATORS:
        if not vals:
            errs.append("values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty")
    elif operator in _EXACT_OPERATORS:
        if len(vals) != 1:
            errs.append(
                f"values: Invalid value: {json.dumps(vals)}: exact-match compatibility requires one single value"
            )
    elif operator in _UNARY_OPERATORS:
        if vals:
            errs.append(
                f"values: Invalid value: {json.dumps(vals)}: values set must be empty for exists and does not exist"
            )
    elif operator in _ORDER_OPERATORS:
        if len(vals) != 1:
            errs.append(
                f"values: Invalid value: {json.dumps(vals)}: for 'Gt', 'Lt' operators, exactly one value is required"
            )
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(_invalid(f"values[{i}]", v, "for 'Gt', 'Lt' operators, the value must be an integer"))
    else:
        supported = ", ".join(go_quote(op) for op in _BINARY_OPERATORS + _UNARY_OPERATORS)
        errs.append(f"operator: Unsupported value: {go_quote(operator)}: supported values: {supported}")
    for i, v in enumerate(vals):
        value_errs = label_value_errors(v)
        if value_errs:
            errs.append(_invalid(f"values[{i}][{key}]", v, "; ".join(value_errs)))
    if errs:
        raise SelectorError(_aggregate(errs))
    return Requirement(key, operator, tuple(sorted(set(vals))))


class LabelSelector:
    """An AND of requirements. No requirements selects everything; ``nothing`` selects nothing."""

    def __init__(self, requirements: Iterable[Requirement] = (), *, nothing: bool = False):
        self.requirements: tuple[Requirement, ...] = tuple(sorted(requirements, key=lambda r: r.key))
        self.nothing = nothing

    def matches(self, labels: Mapping[str, Any] | None) -> bool:
        if self.nothing:
            return False
        return all(req.matches(labels) for req in self.requirements)

    def is_empty(self) -> bool:
        """True when the selector matches every object."""
        return not self.nothing and not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return "LabelSelector(<nothing>)" if self.nothing else f"LabelSelector({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelSelector):
            return NotImplemented
        return (self.requirements, self.nothing) == (other.requirements, other.nothing)

    def __hash__(self) -> int:
        return hash((self.requirements, self.nothing))


EVERYTHING = LabelSelector()
NOTHING = LabelSelector(nothing=True)

# Lexer ----------------------------------------------------------------------

_IDENT, _END, _OPEN, _CLOSE, _COMMA, _NOT, _EQ, _DEQ, _NEQ, _GT, _LT, _IN, _NOTIN = range(13)
_TOKENS = {
    ")": _CLOSE,
    ",": _COMMA,
    "!": _NOT,
    "==": _DEQ,
    "=": _EQ,
    ">": _GT,
    "in": _IN,
    "<": _LT,
    "!=": _NEQ,
    "notin": _NOTIN,
    "(": _OPEN,
}
_OPERATOR_TOKENS = {
    _IN: IN, _NOTIN: NOT_IN, _EQ: EQUALS, _DEQ: DOUBLE_EQUALS, _NEQ: NOT_EQUALS, _GT: GREATER_THAN, _LT: LESS_THAN,
}
_SPECIAL = set("=!(),><")
_WHITESPACE = set(" \t\r\n")


def _lex(text: str) -> list[tuple[int, str]]:
    items: list[tuple[int, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_END, ""))
            return items
        if text[pos] in _SPECIAL:
            # Operators are at most two characters long; prefer the longer one ("!=" over "!").
            token = text[pos:pos + 2] if text[pos:pos + 2] in _TOKENS else text[pos]
            items.append((_TOKENS[token], token))
            pos += len(token)
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
                pos += 1
            word = text[start:pos]
            items.append((_TOKENS.get(word, _IDENT), word))


class _LabelParser:
    def __init__(self, text: str):
        self.items = _lex(text)
        self.pos = 0

    # In "values" context the keywords in/notin are plain identifiers.
    def _peek(self, values: bool = True) -> tuple[int, str]:
        tok, lit = self.items[self.pos]
        return (_IDENT if values and tok in (_IN, _NOTIN) else tok), lit

    def _next(self, values: bool = True) -> tuple[int, str]:
        item = self._peek(values)
        self.pos += 1
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self._peek()
            if tok == _END:
                return requirements
            if tok not in (_IDENT, _NOT):
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")
            try:
                requirements.append(self._requirement())
            except SelectorError as exc:
                raise SelectorError(f"unable to parse requirement: {exc}") from None
            tok, lit = self._next()
            if tok == _END:
                return requirements
            if tok != _COMMA:
                raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
            tok2, lit2 = self._peek()
            if tok2 not in (_IDENT, _NOT):
                raise SelectorError(f"found '{lit2}', expected: identifier after ','")

    def _requirement(self) -> Requirement:
        operator = None
        tok, lit = self._next()
        if tok == _NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self._next()
        if tok != _IDENT:
            raise SelectorError(f"found '{lit}', expected: identifier")
        key = lit
        key_errs = qualified_name_errors(key)
        if key_errs:
            # kube validates here with a nil field path, hence the "<nil>" prefix.
            raise SelectorError(_invalid("<nil>", key, "; ".join(key_errs)))
        if operator == DOES_NOT_EXIST:
            # "!key=v" is rejected by the caller when it meets the "=".
            return new_requirement(key, DOES_NOT_EXIST)
        if self._peek()[0] in (_END, _COMMA):
            return new_requirement(key, EXISTS)
        operator = self._operator()
        if operator in _SET_OPERATORS:
            values = self._set_values()
        else:
            values = self._exact_value()
        return new_requirement(key, operator, values)

    def _operator(self) -> str:
        tok, lit = self._next(values=False)
        if tok not in _OPERATOR_TOKENS:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        return _OPERATOR_TOKENS[tok]

    def _set_values(self) -> set[str]:
        tok, lit = self._next()
        if tok != _OPEN:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self._peek()
        if tok == _CLOSE:
            self._next()
            return {""}
        if tok not in (_IDENT, _COMMA):
            raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")
        values = self._identifier_list()
        if self._next()[0] != _CLOSE:
            raise SelectorError(f"found '{lit}', expected: ')'")
        return values

    def _identifier_list(self) -> set[str]:
        # Empty entries such as "(a,,b)" or "(,a)" stand for the empty value.
        values: set[str] = set()
        while True:
            tok, lit = self._next()
            if tok == _IDENT:
                values.add(lit)
                tok2, lit2 = self._peek()
                if tok2 == _COMMA:
                    continue
                if tok2 == _CLOSE:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not values:
                    values.add("")
                tok2, _ = self._peek()
                if tok2 == _CLOSE:
                    values.add("")
                    return values
                if tok2 == _COMMA:
                    values.add("")
                continue
            raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def _exact_value(self) -> set[str]:
        tok, _ = self._peek()
        if tok in (_END, _COMMA):
            return {""}
        tok, lit = self._next()
        if tok == _IDENT:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter syntax; "" selects everything."""
    if not text:
        return EVERYTHING
    return LabelSelector(_LabelParser(text).parse())


_SPEC_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def label_selector_from_spec(spec: Mapping[str, Any] | None, *, nil_matches_nothing: bool = False) -> LabelSelector:
    """Convert a metav1.LabelSelector dict, like metav1.LabelSelectorAsSelector.

    An empty selector matches everything. A missing (None) selector matches everything
    unless ``nil_matches_nothing`` is set, which is what e.g. PodDisruptionBudget and
    NetworkPolicy peers use in kube.
    """
    if spec is None:
        return NOTHING if nil_matches_nothing else EVERYTHING
    match_labels = spec.get("matchLabels") or {}
    expressions = spec.get("matchExpressions") or []
    requirements = [new_requirement(k, EQUALS, [str(v)]) for k, v in match_labels.items()]
    for expr in expressions:
        op = expr.get("operator")
        if op not in _SPEC_OPERATORS:
            raise SelectorError(f"{go_quote(str(op))} is not a valid label selector operator")
        requirements.append(new_requirement(expr.get("key", ""), _SPEC_OPERATORS[op], expr.get("values") or []))
    return LabelSelector(requirements)


# --------------------------------------------------------------------------
# Field selectors

DEFAULT_FIELDS: tuple[str, ...] = ("metadata.name", "metadata.namespace")

# Extra selectable fields per kind (k8s.io/kubernetes pkg/apis/*/v1 conversion.go).
EXTRA_FIELDS_BY_KIND: dict[str, tuple[str, ...]] = {
    "Pod": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "Event": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "Secret": ("type",),
    "Node": ("spec.unschedulable",),
    "Namespace": ("status.phase",),
    "ReplicaSet": ("status.replicas",),
    "ReplicationController": ("status.replicas",),
    "Job": ("status.successful",),
}


def supported_field_labels(kind: str, *, namespaced: bool = True) -> tuple[str, ...]:
    """Field labels kube-apiserver accepts for ``kind`` (cluster-scoped kinds lack metadata.namespace)."""
    base = DEFAULT_FIELDS if namespaced else ("metadata.name",)
    return base + EXTRA_FIELDS_BY_KIND.get(kind, ())


def _lookup(obj: Mapping[str, Any], dotted: str) -> Any:
    current: Any = obj
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


def _first_pod_ip(obj: Mapping[str, Any]) -> Any:
    pod_ips = _lookup(obj, "status.podIPs")
    if isinstance(pod_ips, list) and pod_ips and isinstance(pod_ips[0], Mapping):
        return pod_ips[0].get("ip")
    return _lookup(obj, "status.podIP")


def _event_source(obj: Mapping[str, Any]) -> Any:
    return _lookup(obj, "source.component") or obj.get("reportingComponent")


# Fields whose selectable value is not simply the JSON value at the same path.
_FIELD_READERS = {
    "status.podIP": _first_pod_ip,
    "source": _event_source,
    "status.successful": lambda obj: _lookup(obj, "status.succeeded") or 0,
    "status.replicas": lambda obj: _lookup(obj, "status.replicas") or 0,
    "spec.hostNetwork": lambda obj: bool(_lookup(obj, "spec.hostNetwork")),
    "spec.unschedulable": lambda obj: bool(_lookup(obj, "spec.unschedulable")),
}


def field_value(obj: Mapping[str, Any], field: str) -> str:
    """String value kube compares a field selector against; missing values are ""."""
    reader = _FIELD_READERS.get(field)
    value = reader(obj) if reader else _lookup(obj, field)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    out: list[str] = []
    in_slash = False
    for ch in value:
        if in_slash:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch in ",=":
            # Go prints the rune with %v, i.e. as its code point number.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_terms(text: str) -> list[str]:
    terms, start, in_slash = [], 0, False
    for i, ch in enumerate(text):
        if in_slash:
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: str  # "=" or "!="
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        equal = field_value(obj, self.field) == self.value
        return equal if self.operator == EQUALS else not equal

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


class FieldSelector:
    """An AND of field equality/inequality terms."""

    def __init__(self, requirements: Iterable[FieldRequirement] = ()):
        self.requirements: tuple[FieldRequirement, ...] = tuple(requirements)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return all(req.matches(obj) for req in self.requirements)

    def is_empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    def __repr__(self) -> str:
        return f"FieldSelector({str(self)!r})"


def parse_field_selector(text: str | None, supported: Iterable[str] = DEFAULT_FIELDS) -> FieldSelector:
    """Parse the ``fieldSelector`` query parameter; fields outside ``supported`` are rejected."""
    if not text:
        return FieldSelector()
    allowed = set(supported)
    requirements: list[FieldRequirement] = []
    for part in sorted(_split_terms(text)):
        if not part:
            continue
        split = _split_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        field, op, raw_value = split
        value = _unescape_field_value(raw_value)
        requirements.append(FieldRequirement(field, NOT_EQUALS if op == "!=" else EQUALS, value))
    for req in requirements:
        if req.field not in allowed:
            raise SelectorError(f"field label not supported: {req.field}")
    return FieldSelector(requirements)
