"""Kubeconfig files for the simulator: the CA is embedded so clients verify the server."""
from __future__ import annotations

import base64
import os
from pathlib import Path

import yaml


def kubeconfig_dict(server_url: str, ca_pem: bytes, token: str, name: str = "harvester-simulator") -> dict:
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


def write_kubeconfig(path: Path, server_url: str, ca_pem: bytes, token: str, name: str = "harvester-simulator") -> Path:
    return write_config(path, kubeconfig_dict(server_url, ca_pem, token, name))


def client_certificate_kubeconfig_dict(server_url: str, ca_pem: bytes, cert_pem: bytes, key_pem: bytes,
                                       name: str = "harvester-simulator") -> dict:
    """As RKE2's own rke2.yaml: the admin logs in with a client certificate (CN system:admin, O system:masters)."""
    config = kubeconfig_dict(server_url, ca_pem, "", name)
    config["users"][0]["user"] = {"client-certificate-data": base64.b64encode(cert_pem).decode(),
                                  "client-key-data": base64.b64encode(key_pem).decode()}
    return config


def write_config(path: Path, config: dict) -> Path:
    """Write any kubeconfig privately (0600), as the simulator writes its own.

    Replaced whole (tmp file, rename): a reader never sees half a file, and the mode is 0600 even where an
    older file had another (a restart rewrites /etc/rancher/rke2/rke2.yaml)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)               # a tmp file left by a crash may have had another mode
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    os.replace(tmp, path)
    return path
