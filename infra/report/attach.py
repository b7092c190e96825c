"""Allure attachment helpers that always redact first and cap the size of what they attach.

Every helper is a harmless no-op (returns False) when no Allure reporter is active, e.g. a run
without ``--alluredir``, so step code can attach evidence unconditionally. Oversized attachments
keep their head and tail around a visible marker: a multi-megabyte dump makes the report
unusable (the Kubernetes e2e dump-size lesson) while the start and the end are what a reader needs.
"""

from __future__ import annotations

import json
import logging
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import allure
import allure_commons
import yaml
from allure_commons.types import AttachmentType

from infra.report.redact import REDACTOR, Redactor

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 2 * 1024 * 1024
_TEXT_MIME_TYPES = {
    "application/json", "application/yaml", "application/x-yaml", "application/xml",
    "application/x-sh", "application/toml",
}


def allure_active() -> bool:
    """True when an Allure reporter (allure-pytest with ``--alluredir``) is listening."""
    return bool(allure_commons.plugin_manager.hook.attach_data.get_hookimpls())


def truncate_text(text: str, max_bytes: int = DEFAULT_MAX_BYTES) -> str:
    """Cut ``text`` to about ``max_bytes`` UTF-8 bytes, keeping the head and the tail."""
    data = text.encode("utf-8")
    if max_bytes <= 0 or len(data) <= max_bytes:
        return text
    marker_template = "\n\n... [harvester-e2e: attachment truncated: {total} bytes, {cut} bytes cut here] ...\n\n"
    marker_size = len(marker_template.format(total=len(data), cut=len(data)).encode("utf-8"))
    keep = max(max_bytes - marker_size, 0)
    head_size, tail_size = keep // 2, keep - keep // 2
    head = data[:head_size].decode("utf-8", errors="ignore")
    tail = data[len(data) - tail_size:].decode("utf-8", errors="ignore") if tail_size else ""
    cut = len(data) - len(head.encode("utf-8")) - len(tail.encode("utf-8"))
    return head + marker_template.format(total=len(data), cut=cut) + tail


def attach_text(
    name: str,
    text: str,
    *,
    attachment_type: AttachmentType | str = AttachmentType.TEXT,
    extension: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    redactor: Redactor = REDACTOR,
) -> bool:
    if not allure_active():
        return False
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    body = truncate_text(redactor.redact_text(str(text)), max_bytes)
    return _attach(body, name, attachment_type, extension)


def to_yaml(obj: Any, redactor: Redactor = REDACTOR) -> str:
    """Redacted YAML; a list of Kubernetes objects becomes a multi-document stream."""
    data = redactor.redact_data(obj)
    if isinstance(data, str):
        return redactor.redact_text(data)
    if _is_object_list(data):
        text = yaml.dump_all(data, Dumper=_LenientDumper, **_YAML_STYLE)
    else:
        text = yaml.dump(data, Dumper=_LenientDumper, **_YAML_STYLE)
    return redactor.redact_text(text)


def attach_yaml(name: str, obj: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, redactor: Redactor = REDACTOR) -> bool:
    if not allure_active():
        return False
    try:
        text = to_yaml(obj, redactor)
    except yaml.YAMLError as error:  # evidence must never turn a failure into a different one
        text = redactor.redact_text(f"# could not render as YAML: {error}\n{obj!r}")
    return _attach(truncate_text(text, max_bytes), name, AttachmentType.YAML, None)


def attach_json(name: str, obj: Any, *, max_bytes: int = DEFAULT_MAX_BYTES, redactor: Redactor = REDACTOR) -> bool:
    if not allure_active():
        return False
    text = json.dumps(redactor.redact_data(obj), indent=2, ensure_ascii=False, default=str)
    return _attach(truncate_text(redactor.redact_text(text), max_bytes), name, AttachmentType.JSON, None)


def attach_file(
    name: str,
    path: str | Path,
    mime: str | None = None,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    redactor: Redactor = REDACTOR,
) -> bool:
    """Attach a file. Text files are redacted; binary files cannot be, so keep secrets out of them."""
    if not allure_active():
        return False
    path = Path(path)
    mime = mime or mimetypes.guess_type(path.name)[0] or "text/plain"
    extension = path.suffix.lstrip(".") or None
    try:
        size = path.stat().st_size
        if _is_text_mime(mime):
            text = _read_head_and_tail(path, size, max_bytes)
            return attach_text(name, text, attachment_type=mime, extension=extension or "txt",
                               max_bytes=max_bytes, redactor=redactor)
        if size > max_bytes > 0:
            return _attach_too_large_note(name, path, size, max_bytes)
        allure.attach.file(str(path), name=name, attachment_type=mime, extension=extension)
        return True
    except OSError as error:
        logger.warning("could not attach %s (%s): %s", name, path, error)
        return False


def attach_png(name: str, path_or_bytes: str | Path | bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> bool:
    if not allure_active():
        return False
    if isinstance(path_or_bytes, (str, Path)):
        return attach_file(name, path_or_bytes, AttachmentType.PNG.mime_type, max_bytes=max_bytes)
    if len(path_or_bytes) > max_bytes > 0:
        return _attach_too_large_note(name, None, len(path_or_bytes), max_bytes)
    return _attach(bytes(path_or_bytes), name, AttachmentType.PNG, None)


def attach_evidence(evidence: Mapping[str, Any] | None, *, max_bytes: int = DEFAULT_MAX_BYTES) -> int:
    """Attach each ``name -> object`` entry as redacted YAML; returns how many were attached."""
    attached = 0
    for name, obj in (evidence or {}).items():
        attached += bool(attach_yaml(str(name), obj, max_bytes=max_bytes))
    return attached


class _LenientDumper(yaml.SafeDumper):
    """SafeDumper that writes unknown objects as their string form instead of failing."""


_LenientDumper.add_multi_representer(
    object, lambda dumper, value: dumper.represent_str(str(value))
)
_LenientDumper.add_representer(
    tuple, lambda dumper, value: dumper.represent_list(list(value))
)
_YAML_STYLE: dict[str, Any] = {"sort_keys": False, "default_flow_style": False, "allow_unicode": True, "width": 120}


def _is_object_list(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, Mapping) and "kind" in item for item in data)
    )


def _is_text_mime(mime: str) -> bool:
    return mime.startswith("text/") or mime in _TEXT_MIME_TYPES or mime.endswith(("+json", "+xml", "+yaml"))


def _read_head_and_tail(path: Path, size: int, max_bytes: int) -> str:
    # Reading a multi-GB log whole just to cut it would be wasteful: read only the two ends.
    if max_bytes <= 0 or size <= max_bytes:
        return path.read_text(encoding="utf-8", errors="replace")
    half = max(max_bytes // 2 - 128, 1)  # room for the marker, so attach_text need not cut again
    with path.open("rb") as handle:
        head = handle.read(half)
        handle.seek(size - half)
        tail = handle.read(half)
    return (
        head.decode("utf-8", errors="ignore")
        + f"\n\n... [harvester-e2e: file truncated: {size} bytes, {size - 2 * half} bytes cut here] ...\n\n"
        + tail.decode("utf-8", errors="ignore")
    )


def _attach_too_large_note(name: str, path: Path | None, size: int, max_bytes: int) -> bool:
    where = f" ({path})" if path else ""
    note = f"[harvester-e2e: {name}{where} not attached: {size} bytes exceeds the {max_bytes}-byte cap]\n"
    return _attach(note, name, AttachmentType.TEXT, None)


def _attach(body: str | bytes, name: str, attachment_type: AttachmentType | str, extension: str | None) -> bool:
    try:
        allure.attach(body, name=name, attachment_type=attachment_type, extension=extension)
        return True
    except Exception as error:  # e.g. attaching outside any test; evidence must not break a run
        logger.warning("could not attach %r to the Allure report: %s", name, error)
        return False
