"""Harvester's upgrade eligibility check, as the upgrade controller runs it after the repo is up.

harvester/harvester `pkg/upgradehelper/versionguard/version.go` (`Check(upgrade, strictMode=true, "")`, the
same at every simulated tag and at ce188325) builds three versions with the vendored
github.com/harvester/go-common `version` package (e748ce72 in v1.5.x; `version.go` and `upgrade.go`
unchanged since v1.4.2's 198df478) and calls `CheckUpgradeEligibility(strict)`:

* target: `repoInfo.release.harvester` (the ISO's release file), current: `status.previousVersion`,
  minimum: `repoInfo.release.minUpgradableVersion` (empty = no minimum);
* a string Masterminds `StrictNewVersion` rejects (after trimming one "v") is a dev version;
* comparisons go through Masterminds semver/v3 (v3.3.0) constraints, whose rule that a prerelease version
  only satisfies a constraint that itself names a prerelease is what the `-z` suffixes work around.

Errors carry go-common's texts (`version/error.go`).
"""
from __future__ import annotations

from dataclasses import dataclass

from .versions import SemVer, compare_semver, is_semver, parse_semver

ERR_INVALID_VERSION = "invalid version string"
ERR_INCOMPARABLE = "incomparable: dev version"
ERR_MIN_UPGRADE = "current version does not meet minimum upgrade requirement"
ERR_DOWNGRADE = "downgrading is prohibited"
ERR_DEV_UPGRADE = "upgrading from dev versions to non-dev versions is prohibited"
ERR_PRERELEASE_CROSS = "cross-version upgrades from/to any prerelease version are prohibited"


class EligibilityError(Exception):
    """The check refused the upgrade; str() is the text the Upgrade's Completed condition carries."""


@dataclass(frozen=True)
class HarvesterVersionString:
    """go-common `HarvesterVersion`: the raw string, and its semver unless it is a dev version."""

    raw: str
    semver: SemVer | None

    @property
    def is_dev(self) -> bool:
        return self.semver is None

    @property
    def is_prerelease(self) -> bool:
        return self.semver is not None and bool(self.semver.prerelease)

    def stable(self) -> "HarvesterVersionString":
        """`GetStableVersion`: major.minor.patch only."""
        assert self.semver is not None
        core = f"{self.semver.major}.{self.semver.minor}.{self.semver.patch}"
        return HarvesterVersionString(core, parse_semver(core))


def harvester_version(text: str) -> HarvesterVersionString:
    """`NewHarvesterVersion`: "" is invalid; anything `StrictNewVersion` refuses is a dev version."""
    trimmed = text[1:] if text.startswith("v") else text
    if not trimmed:
        raise EligibilityError(ERR_INVALID_VERSION)
    if not is_semver(trimmed) or trimmed.startswith("v"):
        return HarvesterVersionString(text, None)
    return HarvesterVersionString(text, parse_semver(trimmed))


def _constraint_allows(version: SemVer, constraint_version: str) -> bool:
    """Masterminds' first test in every constraint: a prerelease only matches a prerelease-naming constraint."""
    return not version.prerelease or bool(parse_semver(constraint_version).prerelease)


def _text(version: SemVer) -> str:
    pre = "-" + ".".join(version.prerelease) if version.prerelease else ""
    return f"{version.major}.{version.minor}.{version.patch}{pre}"


def _greater_than(version: SemVer, constraint_version: str) -> bool:
    """Constraint `> X` (constraintGreaterThan, non-dirty): Compare == 1; build metadata is ignored."""
    return _constraint_allows(version, constraint_version) and compare_semver(_text(version), constraint_version) > 0


def _equal(version: SemVer, constraint_version: str) -> bool:
    """Constraint `X` (no operator: constraintTildeOrEqual, non-dirty): Equal, i.e. Compare == 0."""
    return _constraint_allows(version, constraint_version) and compare_semver(_text(version), constraint_version) == 0


def is_newer(v: HarvesterVersionString, other: HarvesterVersionString) -> bool:
    """`IsNewer`: `> other-z` when v is a prerelease and other is not (so v1.5.0-rc2 is not newer than v1.5.0)."""
    if v.is_dev or other.is_dev:
        raise EligibilityError(ERR_INCOMPARABLE)
    assert v.semver is not None
    bound = other.raw + "-z" if v.is_prerelease and not other.is_prerelease else other.raw
    return _greater_than(v.semver, bound)


def is_equal(v: HarvesterVersionString, other: HarvesterVersionString) -> bool:
    """`IsEqual`: two dev versions are equal only as identical strings; a dev and a release are incomparable."""
    if v.is_dev or other.is_dev:
        if v.raw == other.raw:
            return True
        raise EligibilityError(ERR_INCOMPARABLE)
    assert v.semver is not None
    return _equal(v.semver, other.raw)


def is_older(v: HarvesterVersionString, other: HarvesterVersionString) -> bool:
    if v.is_dev or other.is_dev:
        raise EligibilityError(ERR_INCOMPARABLE)
    return not (is_newer(v, other) or is_equal(v, other))


def check_upgrade_eligibility(current: HarvesterVersionString, target: HarvesterVersionString,
                              minimum: HarvesterVersionString | None, strict: bool = True) -> None:
    """`HarvesterUpgradeVersion.CheckUpgradeEligibility`, step by step in the source's order."""
    if target.is_dev:
        return                                         # upgrading to a dev version is always allowed
    if current.is_dev:
        if strict:
            raise EligibilityError(ERR_DEV_UPGRADE)
        return
    if is_equal(current, target):
        return                                         # same-version upgrade
    if is_newer(current, target):
        raise EligibilityError(ERR_DOWNGRADE)
    if minimum is not None and is_older(current, minimum):
        raise EligibilityError(ERR_MIN_UPGRADE)
    if current.is_prerelease:                          # only a *current* prerelease restricts the target
        if not is_equal(current.stable(), target.stable()):
            raise EligibilityError(ERR_PRERELEASE_CROSS)


def check(previous_version: str, release_harvester: str, release_min_upgradable: str) -> None:
    """versionguard.Check with strict mode and no override of the minimum."""
    target = harvester_version(release_harvester)
    current = harvester_version(previous_version)
    try:
        minimum: HarvesterVersionString | None = harvester_version(release_min_upgradable)
    except EligibilityError:
        minimum = None                                 # ErrInvalidVersion: "upgrade with no restrictions"
    check_upgrade_eligibility(current, target, minimum)


def skips_version_check(annotations: dict[str, str]) -> bool:
    """`upgradeEligibilityCheck`: harvesterhci.io/skip-version-check parsed with strconv.ParseBool."""
    value = annotations.get("harvesterhci.io/skip-version-check")
    return value in ("1", "t", "T", "TRUE", "true", "True")
