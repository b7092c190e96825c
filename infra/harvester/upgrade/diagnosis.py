"""Say in one sentence why an upgrade is stuck, from what an operator would read.

The system-services stage (`upgrade_manifests.sh`) logs `wait helm release <ns> <name> <chart> <app>
<status>` and then waits, with no timeout, until `helm history` shows exactly that chart string. The
diagnosis finds the awaited release in the apply-manifests log and compares it with what is installed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..helm import HelmRevision
from infra.versions import SemVer, same_precedence

_WAIT_LINE = re.compile(r"wait helm release (\S+) (\S+) (\S+) (\S+) (\S+)")


@dataclass(frozen=True)
class AwaitedRelease:
    namespace: str
    release: str
    chart: str          # e.g. fleet-106.0.0+up0.12.0
    app_version: str
    status: str

    @property
    def chart_version(self) -> str:
        return self.chart[len(self.release) + 1:] if self.chart.startswith(self.release + "-") else self.chart


@dataclass
class Diagnosis:
    sentence: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.sentence


def awaited_release(log_lines: list[str]) -> AwaitedRelease | None:
    """The last `wait helm release ...` the log announces that no `completed helm release` followed."""
    awaited = None
    for line in log_lines:
        match = _WAIT_LINE.search(line)
        if match:
            awaited = AwaitedRelease(*match.groups())
        elif awaited and "completed helm release" in line and awaited.release in line:
            awaited = None
    return awaited


def _version_of(chart: str, release: str) -> str:
    return chart[len(release) + 1:] if chart.startswith(release + "-") else chart


def diagnose(phase: str, log_lines: list[str],
             helm_history: Callable[[str, str], list[HelmRevision]] | None) -> Diagnosis:
    awaited = awaited_release(log_lines)
    if awaited is None:
        last = log_lines[-1] if log_lines else "(no log lines)"
        return Diagnosis(f"{phase} made no progress; the apply-manifests log ends with: {last}",
                         {"last log lines": log_lines[-10:]})
    wanted = f"{awaited.chart} (app {awaited.app_version}, {awaited.status})"
    if helm_history is None:
        return Diagnosis(f"{phase} is waiting for Helm release {awaited.namespace}/{awaited.release} to be {wanted}; "
                         "the installed revision could not be read", {"awaited": awaited.__dict__})
    history = helm_history(awaited.namespace, awaited.release)
    if not history:
        return Diagnosis(f"{phase} is waiting for Helm release {awaited.namespace}/{awaited.release} to be {wanted}, "
                         "but that release is not installed at all", {"awaited": awaited.__dict__})
    installed = history[-1]
    sentence = (f"{phase} is waiting for Helm release {awaited.namespace}/{awaited.release} to be {wanted}, but "
                f"the installed revision {installed.revision} is {installed.chart} (app {installed.app_version}, "
                f"{installed.status}); wait_helm_release compares the exact chart string and never times out")
    try:
        wanted_version = _version_of(awaited.chart, awaited.release)
        have_version = _version_of(installed.chart, awaited.release)
        if installed.chart != awaited.chart and same_precedence(wanted_version, have_version):
            build = SemVer.parse(have_version).build
            sentence += (f", and Rancher sees nothing to upgrade because semver ignores build metadata "
                         f"('+{build}'), so {have_version} and {wanted_version} rank the same")
    except ValueError:
        pass
    return Diagnosis(sentence + ".", {"awaited": awaited.__dict__, "installed": installed.__dict__,
                                      "helm history": [r.__dict__ for r in history]})
