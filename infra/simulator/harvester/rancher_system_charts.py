"""How the embedded Rancher decides whether to (re)install fleet, fleet-crd and rancher-webhook.

rancher/rancher `pkg/catalogv2/system/system.go` `desiredVersionAndValues` (v2.10.1 to v2.11.3), called by
`pkg/controllers/dashboard/fleetcharts` for fleet and fleet-crd (`Ensure(..., minVersion=FleetVersion,
exactVersion="")`) and by `pkg/controllers/dashboard/systemcharts` for rancher-webhook
(`ExactVersionSetting: RancherWebhookVersion`, no minimum). With the values unchanged (the simulator's Rancher
computes the same values at every simulated version: systemcharts' webhook values are identical code from
v2.11.0-rc5 to v2.11.0 and read settings Harvester does not change), the rules are:

* exact version (webhook): reinstall at the exact version unless the deployed chart equals it. Masterminds
  `Equal` ignores build metadata; from v2.10.5 / v2.11.1 (rancher #49717, `isVersionAndMetadataEqual`) the
  metadata must match too. A lower exact version is installed as well (a downgrade).
* minimum version (fleet): nothing to do while the deployed chart is >= the minimum (metadata ignored);
  otherwise install the newest chart of the bundled index (the version the release file lists).
"""
from __future__ import annotations

from dataclasses import dataclass

from .versions import ChartRelease, compare_semver, parse_semver


@dataclass(frozen=True)
class Decision:
    release: str
    namespace: str
    install: str | None          # chart version to install, or None: Rancher leaves the release alone
    why: str


def metadata_aware(rancher_version: str) -> bool:
    """`isVersionAndMetadataEqual` ships in v2.10.5 and v2.11.1 (rancher #49717); v2.11.0 and older lack it."""
    version = parse_semver(rancher_version)
    if (version.major, version.minor) == (2, 10):
        return compare_semver(rancher_version, "v2.10.5") >= 0
    return compare_semver(rancher_version, "v2.11.1") >= 0


def decide(rancher_version: str, release: str, wanted: ChartRelease, deployed_chart: str | None) -> Decision:
    """What Rancher `rancher_version` does about `release` whose deployed chart version is `deployed_chart`."""
    if release == "rancher-webhook":
        if deployed_chart is None:
            return Decision(release, wanted.namespace, wanted.chart_version, "not installed")
        same = compare_semver(deployed_chart, wanted.chart_version) == 0
        if same and metadata_aware(rancher_version):
            same = parse_semver(deployed_chart).build == parse_semver(wanted.chart_version).build
        if not same:
            return Decision(release, wanted.namespace, wanted.chart_version,
                            f"exact version {wanted.chart_version} differs from {deployed_chart}")
        return Decision(release, wanted.namespace, None,
                        f"{deployed_chart} equals the exact version {wanted.chart_version}"
                        + ("" if metadata_aware(rancher_version) else " (build metadata ignored)"))
    if deployed_chart is not None and compare_semver(deployed_chart, wanted.chart_version) >= 0:
        return Decision(release, wanted.namespace, None,
                        f"{deployed_chart} is >= the minimum {wanted.chart_version} (build metadata ignored)")
    return Decision(release, wanted.namespace, wanted.chart_version,
                    "not installed" if deployed_chart is None else f"{deployed_chart} is below the minimum")
