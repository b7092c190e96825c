"""The real client binaries a simulated node runs, from the project's .cache/bin (`make setup` puts them
there): RKE2's kubectl, of the minor of the RKE2 the node runs (RKE2 ships kubectl of its own version in
/var/lib/rancher/rke2/bin), and helm 3 (what the Harvester v1.4/v1.5 line runs)."""
from __future__ import annotations

import re
from pathlib import Path

CLIENT_BIN = Path(__file__).resolve().parents[3] / ".cache" / "bin"
_MINOR = re.compile(r"^v?(\d+)\.(\d+)")


def _executable(path: Path) -> Path | None:
    return path if path.is_file() and path.stat().st_mode & 0o111 else None


def node_kubectl(rke2_version: str, bin_dir: Path = CLIENT_BIN) -> Path | None:
    match = _MINOR.match(rke2_version)
    return _executable(bin_dir / f"kubectl-{match[1]}.{match[2]}") if match else None


def node_helm(bin_dir: Path = CLIENT_BIN) -> Path | None:
    return _executable(bin_dir / "helm-3")
