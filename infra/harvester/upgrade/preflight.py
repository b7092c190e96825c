"""Pre-flight check of a target's `harvester-release.yaml`, before an upgrade is started.

A Rancher dependency chart whose version hides a pre-release marker in build metadata
(`106.0.0+up0.12.0-rc.3`) is flagged: semver ranks it the same as the final release, so a later
upgrade to the final release will find nothing to install and wait for it for ever.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.versions import prerelease_hidden_in_build_metadata


@dataclass(frozen=True)
class Finding:
    release: str
    chart_version: str
    marker: str

    def __str__(self) -> str:
        return (f"{self.release} {self.chart_version}: pre-release '{self.marker}' sits in build metadata, "
                f"which semver ignores")


def check_release_file(release_file: dict[str, Any]) -> list[Finding]:
    findings = []
    for name, chart in sorted((release_file.get("rancherDependencies") or {}).items()):
        version = str((chart or {}).get("chart", ""))
        try:
            marker = prerelease_hidden_in_build_metadata(version)
        except ValueError:
            continue
        if marker:
            findings.append(Finding(name, version, marker))
    return findings
