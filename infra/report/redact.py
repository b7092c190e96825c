"""Remove secrets from text and data before anything is logged or attached to the report.

Two sources of secrets are covered:

* values registered at run time (API bearer token, SSH passwords, private-key text), replaced
  wherever they occur, also in their base64 and JSON-escaped forms;
* well-known shapes: ``Authorization: Bearer ...``, ``token:``/``password:``-style keys in text and
  mappings, PEM private-key blocks, and the ``data``/``stringData`` values of Kubernetes Secrets
  (the keys are kept so a reader still sees which keys exist).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***REDACTED***"

# Key names (lower-cased, without "-" and "_") whose values are secret.
_SECRET_KEY_NAMES = frozenset({
    "token", "password", "passwd", "secret", "privatekey", "clientkeydata",
    "apikey", "secretkey", "secretaccesskey", "bearertoken", "clientsecret",
})
_SECRET_KEY_SUFFIXES = ("token", "password", "passwd", "secret", "privatekey", "secretaccesskey")

# The same family of key names, as it appears in free text (YAML, JSON, env files, query strings).
_TEXT_KEY = (
    r"[A-Za-z0-9_.-]{0,48}?(?:token|password|passwd|secret|private[-_]?key|client[-_]key[-_]data"
    r"|api[-_]?key|secret[-_]?access[-_]?key)"
)

_PEM_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)",
    re.DOTALL,
)
_AUTHORIZATION_HEADER = re.compile(
    r"(?i)(\b(?:proxy-)?authorization\\?[\"']?[ \t]*[:=][ \t]*\\?[\"']?(?:bearer|basic|token|negotiate)?\s*)"
    r"[^\s\"'\\,;}]+"
)
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*")
# YAML block scalar under a secret key: the more-indented lines that follow it are the value.
_KEY_BLOCK_SCALAR = re.compile(
    rf"(?im)^(?P<indent>[ \t]*)(?P<head>(?:-[ \t]+)?[\"']?{_TEXT_KEY}[\"']?[ \t]*:[ \t]*[|>][-+0-9]*[ \t]*\n)"
    r"(?P<body>(?:(?P=indent)[ \t]+\S.*(?:\n|$)|[ \t]*\n(?=(?P=indent)[ \t]+\S))+)"
)
_KEY_VALUE = re.compile(
    rf"(?i)(?P<key>\b{_TEXT_KEY}\\?[\"']?[ \t]*(?:[:=](?!=))[ \t]*)"
    r"(?:(?P<dq>\\?\")(?:[^\"\\\n]|\\(?!\"))*\\?\"|'[^'\n]*'|(?P<bare>(?![|>])[^\s\"',;&}\]]+))"
)
_NOT_SECRET_VALUES = frozenset({"true", "false", "null", "~", "none", "yes", "no"})
_SECRET_KIND_LINE = re.compile(r"(?m)^[ \t]*kind:[ \t]*[\"']?Secret[\"']?[ \t]*$")
_YAML_DOC_SEPARATOR = re.compile(r"(?m)^---[ \t]*$")
_SECRET_DATA_BLOCK = re.compile(
    r"(?m)^([ \t]*)(data|stringData):[ \t]*\n((?:\1[ \t]+.*(?:\n|$))+)"
)
_SECRET_DATA_ENTRY = re.compile(r"(?m)^([ \t]+[\"']?[^\s:\"']+[\"']?:[ \t]*)(\S.*)$")


def _is_secret_key(key: object) -> bool:
    if not isinstance(key, str):
        return False
    normalized = key.lower().replace("-", "").replace("_", "")
    return normalized in _SECRET_KEY_NAMES or normalized.endswith(_SECRET_KEY_SUFFIXES)


def _replace_key_value(match: re.Match) -> str:
    key, quote, bare = match.group("key"), match.group("dq"), match.group("bare")
    if bare is not None:
        # Flags such as `lock_passwd: false` are not secrets; keep them readable.
        if bare.lower() in _NOT_SECRET_VALUES or REDACTED in bare:
            return match.group(0)
        # After "key:" a quoted placeholder keeps YAML/JSON valid (a plain "*..." is a YAML alias).
        return key + (f'"{REDACTED}"' if key.rstrip().endswith(":") else REDACTED)
    if quote:
        return f"{key}{quote}{REDACTED}{quote}"
    return f"{key}'{REDACTED}'"


def _replace_block_scalar(match: re.Match) -> str:
    body = match.group("body")
    body_indent = body.lstrip("\n")[:len(body.lstrip("\n")) - len(body.lstrip("\n").lstrip(" \t"))]
    return f"{match.group('indent')}{match.group('head')}{body_indent}{REDACTED}\n"


def _redact_secret_manifest_text(text: str) -> str:
    """Blank the data/stringData values of YAML Secret documents written as text."""
    if not _SECRET_KIND_LINE.search(text):
        return text

    def redact_block(match: re.Match) -> str:
        entries = _SECRET_DATA_ENTRY.sub(
            lambda m: m.group(0) if REDACTED in m.group(2) else f'{m.group(1)}"{REDACTED}"', match.group(3)
        )
        return f"{match.group(1)}{match.group(2)}:\n{entries}"

    docs = _YAML_DOC_SEPARATOR.split(text)
    if len(docs) == 1:
        return _SECRET_DATA_BLOCK.sub(redact_block, text)
    separators = _YAML_DOC_SEPARATOR.findall(text)
    out = []
    for index, doc in enumerate(docs):
        if _SECRET_KIND_LINE.search(doc):
            doc = _SECRET_DATA_BLOCK.sub(redact_block, doc)
        out.append(doc)
        if index < len(separators):
            out.append(separators[index])
    return "".join(out)


class Redactor:
    """Replaces secrets with ``***REDACTED***``. Thread-safe; registration is cheap."""

    def __init__(self, placeholder: str = REDACTED) -> None:
        self.placeholder = placeholder
        self._secrets: set[str] = set()
        self._literal_pattern: re.Pattern | None = None
        self._lock = threading.Lock()

    def register(self, secret: str | bytes | None) -> None:
        """Remember a secret value so it is redacted wherever it shows up later."""
        if secret is None:
            return
        if isinstance(secret, bytes):
            secret = secret.decode("utf-8", errors="replace")
        secret = str(secret)
        if not secret.strip():
            return
        variants = {secret, secret.strip()}
        # Secrets travel base64-encoded in Kubernetes objects and escaped in JSON logs.
        variants.add(base64.b64encode(secret.encode()).decode())
        variants.add(json.dumps(secret)[1:-1])
        with self._lock:
            self._secrets.update(v for v in variants if v)
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._literal_pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def register_all(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            self.register(secret)

    def clear(self) -> None:
        """Forget registered secrets (tests use this; a run never should)."""
        with self._lock:
            self._secrets.clear()
            self._literal_pattern = None

    def redact_text(self, text: str) -> str:
        if not isinstance(text, str) or not text:
            return text
        pattern = self._literal_pattern
        if pattern is not None:
            text = pattern.sub(self.placeholder, text)
        text = _PEM_PRIVATE_KEY.sub(self.placeholder, text)
        text = _AUTHORIZATION_HEADER.sub(lambda m: m.group(1) + self.placeholder, text)
        text = _BEARER.sub(lambda m: m.group(1) + self.placeholder, text)
        text = _KEY_BLOCK_SCALAR.sub(_replace_block_scalar, text)
        text = _KEY_VALUE.sub(_replace_key_value, text)
        text = self._redact_json_secret(text)
        text = _redact_secret_manifest_text(text)
        if self.placeholder != REDACTED:
            text = text.replace(REDACTED, self.placeholder)
        return text

    def _redact_json_secret(self, text: str) -> str:
        # `kubectl get secret -o json` output: key-based rules cannot see the data values.
        stripped = text.lstrip()
        if not stripped.startswith(("{", "[")) or '"Secret' not in text:
            return text
        try:
            parsed = json.loads(text)
        except ValueError:
            return text
        return json.dumps(self.redact_data(parsed), indent=2, ensure_ascii=False)

    def redact_data(self, obj: Any) -> Any:
        """Return a redacted copy of nested dicts/lists/strings (input is left untouched)."""
        return self._redact_value(obj, secret_items=False)

    def _redact_value(self, obj: Any, *, secret_items: bool) -> Any:
        if isinstance(obj, str):
            return self.redact_text(obj)
        if isinstance(obj, bytes):
            try:
                return self.redact_text(obj.decode("utf-8")).encode("utf-8")
            except UnicodeDecodeError:
                return obj
        if isinstance(obj, Mapping):
            return self._redact_mapping(obj, is_secret=secret_items)
        if isinstance(obj, (list, tuple, set, frozenset)):
            items = [self._redact_value(item, secret_items=secret_items) for item in obj]
            return items if isinstance(obj, (list, set, frozenset)) else tuple(items)
        converted = _as_plain_data(obj)
        if converted is not obj:
            return self._redact_value(converted, secret_items=secret_items)
        return obj

    def _redact_mapping(self, obj: Mapping, *, is_secret: bool) -> dict:
        kind = obj.get("kind")
        is_secret = is_secret or kind == "Secret"
        result: dict = {}
        for key, value in obj.items():
            if is_secret and key in ("data", "stringData", "string_data") and isinstance(value, Mapping):
                result[key] = {k: self.placeholder if v not in (None, "") else v for k, v in value.items()}
            elif _is_secret_key(key) and _is_secret_scalar(value):
                result[key] = self.placeholder
            elif key == "items" and kind == "SecretList":
                result[key] = self._redact_value(value, secret_items=True)
            else:
                result[key] = self._redact_value(value, secret_items=False)
        return result


def _is_secret_scalar(value: object) -> bool:
    # Empty values and booleans (`lock_passwd: false`) say nothing secret and help debugging.
    if value in ("", b""):
        return False
    return isinstance(value, (str, bytes, int, float)) and not isinstance(value, bool)


def _as_plain_data(obj: Any) -> Any:
    """Turn Kubernetes client models and pydantic models into plain data; other objects pass through."""
    for method_name, kwargs in (("model_dump", {"mode": "json"}), ("to_dict", {})):
        method = getattr(obj, method_name, None)
        if callable(method) and not isinstance(obj, type):
            try:
                return method(**kwargs)
            except TypeError:
                continue
    return obj


REDACTOR = Redactor()


def redact_text(text: str) -> str:
    return REDACTOR.redact_text(text)


def redact_data(obj: Any) -> Any:
    return REDACTOR.redact_data(obj)


def register_secret(secret: str | bytes | None) -> None:
    REDACTOR.register(secret)


class RedactingFilter(logging.Filter):
    """Formats the record's message with its args, then redacts it (and any traceback text)."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor or REDACTOR

    def filter(self, record: logging.LogRecord) -> bool:
        _redact_record(record, self.redactor)
        return True


_REDACTED_MARK = "_harvester_redacted"


def _redact_record(record: logging.LogRecord, redactor: Redactor) -> None:
    if getattr(record, _REDACTED_MARK, None) is redactor:  # already done by the record factory
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string must not lose the log line
        message = str(record.msg)
    record.msg = redactor.redact_text(message)
    record.args = None
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = redactor.redact_text(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.redact_text(record.stack_info)
    setattr(record, _REDACTED_MARK, redactor)


_install_lock = threading.Lock()


def install_log_redaction(redactor: Redactor | None = None) -> RedactingFilter:
    """Redact every log record. Idempotent: the first installed redactor stays in charge.

    The filter goes on the root logger's current handlers, as asked; a record factory covers
    handlers added later (pytest adds its capture handlers per test phase, and those feed the
    report's "log" attachment).
    """
    redactor = redactor or REDACTOR
    root = logging.getLogger()
    with _install_lock:
        existing = next(
            (f for h in root.handlers for f in h.filters if isinstance(f, RedactingFilter)), None
        )
        log_filter = existing or RedactingFilter(redactor)
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(log_filter)

        previous_factory = logging.getLogRecordFactory()
        if not getattr(previous_factory, _REDACTED_MARK, False):

            def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous_factory(*args, **kwargs)
                _redact_record(record, log_filter.redactor)
                return record

            setattr(redacting_factory, _REDACTED_MARK, True)
            redacting_factory.previous = previous_factory  # type: ignore[attr-defined]
            logging.setLogRecordFactory(redacting_factory)
    return log_filter


def uninstall_log_redaction() -> None:
    """Undo install_log_redaction (for embedding runs such as pytester in-process runs)."""
    root = logging.getLogger()
    with _install_lock:
        for handler in root.handlers:
            for log_filter in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
                handler.removeFilter(log_filter)
        factory = logging.getLogRecordFactory()
        if getattr(factory, _REDACTED_MARK, False):
            logging.setLogRecordFactory(factory.previous)  # type: ignore[attr-defined]
