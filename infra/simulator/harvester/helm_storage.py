"""Helm 3 release records as the Secret storage driver keeps them.

A release revision is a Secret `sh.helm.release.v1.<release>.v<revision>` of type
`helm.sh/release.v1`, labelled name/owner/status/version. Its `data.release` holds
base64(gzip(JSON release)); as any Secret data it is base64-encoded once more on the wire, so the
JSON value in the object is base64(base64(gzip(JSON))). `helm history` reads these records.
"""
from __future__ import annotations

import base64
import gzip
import json
from datetime import datetime, timezone
from typing import Any, Iterable

SECRET_TYPE = "helm.sh/release.v1"
NAME_PREFIX = "sh.helm.release.v1."
STATUSES = ("unknown", "deployed", "uninstalled", "superseded", "failed", "uninstalling",
            "pending-install", "pending-upgrade", "pending-rollback")


def secret_name(release: str, revision: int) -> str:
    return f"{NAME_PREFIX}{release}.v{revision}"


def go_time(moment: datetime) -> str:
    """Go's time.Time JSON form (RFC 3339 with trailing-zero-trimmed fractional seconds), in UTC."""
    moment = moment.astimezone(timezone.utc)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += ("." + f"{moment.microsecond:06d}").rstrip("0")
    return text + "Z"


def encode_release(release: dict[str, Any]) -> str:
    """What the driver stores in the Secret: base64(gzip(JSON))."""
    raw = json.dumps(release, separators=(",", ":")).encode()
    return base64.b64encode(gzip.compress(raw, mtime=0)).decode()


def decode_release(stored: str | bytes) -> dict[str, Any]:
    raw = base64.b64decode(stored)
    if raw[:3] == b"\x1f\x8b\x08":   # Helm accepts both gzip'd and plain JSON
        raw = gzip.decompress(raw)
    return json.loads(raw)


def release_record(name: str, namespace: str, chart_name: str, chart_version: str, app_version: str,
                   revision: int, status: str, deployed_at: datetime, values: dict[str, Any] | None = None,
                   *, first_deployed: datetime | None = None, description: str | None = None,
                   manifest: str = "", chart: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON release object Helm serialises (the fields `helm history`/`helm get` read).

    `chart` is the whole chart object (metadata, templates, values) when the chart is known, so that a
    real `helm upgrade --reuse-values` of this release has the values its templates need."""
    if status not in STATUSES:
        raise ValueError(f"unknown helm release status {status!r}; one of {', '.join(STATUSES)}")
    if description is None:
        description = "Install complete" if revision == 1 else "Upgrade complete"
    return {
        "name": name,
        "info": {
            "first_deployed": go_time(first_deployed or deployed_at),
            "last_deployed": go_time(deployed_at),
            "deleted": "",
            "description": description,
            "status": status,
        },
        "chart": chart or {
            "metadata": {"name": chart_name, "version": chart_version, "appVersion": app_version,
                         "apiVersion": "v2"},
            "lock": None,
            "templates": [],
            "values": {},
            "schema": None,
            "files": [],
        },
        "config": dict(values or {}),
        "manifest": manifest,
        "version": revision,
        "namespace": namespace,
    }


def release_secret(name: str, namespace: str, chart_name: str, chart_version: str, app_version: str,
                   revision: int, status: str, deployed_at: datetime, values: dict[str, Any] | None = None,
                   **record_options: Any) -> dict[str, Any]:
    """A full Secret object (wire form) holding one revision of a Helm release."""
    record = release_record(name, namespace, chart_name, chart_version, app_version, revision, status,
                            deployed_at, values, **record_options)
    return secret_for_record(record, created_at=deployed_at)


def secret_for_record(record: dict[str, Any], *, created_at: datetime | None = None) -> dict[str, Any]:
    """Wrap an existing release JSON (e.g. one a simulated `helm upgrade` produced) as its Secret."""
    stored = encode_release(record)
    created_at = created_at or datetime.now(timezone.utc)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(record["name"], record["version"]),
            "namespace": record["namespace"],
            "labels": {
                "name": record["name"],
                "owner": "helm",
                "status": record["info"]["status"],
                "version": str(record["version"]),
                "createdAt": str(int(created_at.timestamp())),
            },
        },
        "type": SECRET_TYPE,
        "data": {"release": base64.b64encode(stored.encode()).decode()},
    }


def is_release_secret(secret: dict[str, Any]) -> bool:
    return secret.get("type") == SECRET_TYPE and (secret.get("metadata", {}).get("labels", {}).get("owner") == "helm")


def decode_release_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """The JSON release inside a Secret (accepts wire `data` or already-decoded `stringData`)."""
    if "data" in secret and "release" in secret["data"]:
        stored = base64.b64decode(secret["data"]["release"])
    elif "stringData" in secret and "release" in secret["stringData"]:
        stored = secret["stringData"]["release"].encode()
    else:
        raise ValueError(f"secret {secret.get('metadata', {}).get('name')!r} holds no helm release")
    return decode_release(stored)


def history_entry(record: dict[str, Any]) -> dict[str, Any]:
    """One row of `helm history <rel> -o yaml`."""
    meta = record["chart"]["metadata"]
    return {
        "revision": record["version"],
        "updated": record["info"]["last_deployed"],
        "status": record["info"]["status"],
        "chart": f"{meta['name']}-{meta['version']}",
        "app_version": meta.get("appVersion", ""),
        "description": record["info"].get("description", ""),
    }


def history_entries(secrets: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`helm history` of the release records given (all of one release), oldest revision first."""
    records = [decode_release_secret(s) for s in secrets if is_release_secret(s)]
    return [history_entry(r) for r in sorted(records, key=lambda r: r["version"])]
