"""Real `kubectl` against a cluster's kubeconfig, for steps that do what a person types.

One bounded subprocess per call; the kubeconfig is passed by path (its token never reaches an
argument list or a log), and kubectl's discovery cache goes to a private directory.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubectlMissing(RuntimeError):
    """No kubectl binary on PATH: a step needing it should skip, saying so."""


@dataclass(frozen=True)
class KubectlResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def json(self) -> Any:
        return json.loads(self.stdout)

    def transcript(self) -> str:
        return (f"$ kubectl {' '.join(self.args)}\n(exit {self.returncode})\n"
                f"--- stdout\n{self.stdout.strip()[:4000]}\n--- stderr\n{self.stderr.strip()[:4000]}")


class Kubectl:
    def __init__(self, kubeconfig: Path, *, context: str | None = None, binary: str | None = None,
                 timeout_s: float = 60.0) -> None:
        found = binary or shutil.which("kubectl")
        if not found:
            raise KubectlMissing("kubectl is not installed (it is needed for the `kubectl apply` edit path)")
        self.binary = found
        self.kubeconfig = Path(kubeconfig)
        self.context = context
        self.timeout_s = timeout_s
        self._cache = tempfile.mkdtemp(prefix="harvester-e2e-kubectl-")

    def run(self, *args: str, stdin: str | None = None) -> KubectlResult:
        command = [self.binary, f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self._cache}",
                   *([f"--context={self.context}"] if self.context else []), *args]
        done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=self.timeout_s,
                              check=False)
        return KubectlResult(tuple(args), done.returncode, done.stdout, done.stderr)

    def apply(self, manifest: dict[str, Any]) -> KubectlResult:
        """`kubectl apply -f - -o json` (client-side apply, as a person runs it)."""
        return self.run("apply", "-f", "-", "-o", "json", stdin=yaml.safe_dump(manifest, sort_keys=False))
