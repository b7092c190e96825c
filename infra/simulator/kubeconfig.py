"""Kubeconfig files for the twin: the CA is embedded so clients verify the server."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def kubeconfig_dict(server_url: str, ca_pem: bytes, token: str, name: str = "harvester-twin") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server_url,
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin"}}],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server_url: str, ca_pem: bytes, token: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(kubeconfig_dict(server_url, ca_pem, token), handle, sort_keys=False)
    return path
