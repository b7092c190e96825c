"""The harness's one version ordering: semver precedence, Harvester dev builds, and constraints."""
from __future__ import annotations

import pytest

from infra import versions


def test_build_metadata_never_affects_precedence_and_hides_prereleases() -> None:
    assert versions.same_precedence("106.0.0+up0.12.0-rc.3", "106.0.0+up0.12.0")
    assert not versions.same_precedence("106.0.0-rc.3", "106.0.0")
    assert versions.prerelease_hidden_in_build_metadata("106.0.0+up0.7.0-rc.9") == "rc.9"
    assert versions.prerelease_hidden_in_build_metadata("106.0.0+up0.7.0") is None
    assert versions.prerelease_hidden_in_build_metadata("106.0.0-rc.1+up0.7.0-rc.9") is None   # a real prerelease


@pytest.mark.parametrize("lower, higher", [
    ("v1.5.0-rc2", "v1.5.0"), ("v1.5.0-rc.2", "v1.5.0-rc.10"), ("v1.4.3", "v1.5.0-rc1"), ("v1.5.2", "v1.5-ce188325-head"),
    ("v1.5-ce188325-head", "v1.6.0-rc1"), ("v1.9.9", "master-ce188325-head"),
])
def test_harvester_versions_order_releases_then_branch_heads(lower: str, higher: str) -> None:
    assert versions.compare(lower, higher) == -1 and versions.compare(higher, lower) == 1


@pytest.mark.parametrize("version, constraint, expected", [
    ("v1.0.4", "<=v1.0.4", True), ("v1.0.5", "<=v1.0.4", False), ("v1.5.0-rc1", "v1.5.0-rc1", True),
    ("v1.5.0-rc2", "v1.5.0-rc1", False), ("v1.5.0-rc2", ">=v1.5.0-rc2", True), ("v1.4.2", "<v1.5.0", True),
    ("master-ce188325-head", ">=v1.5.0", True), ("master-ce188325-head", "master-ce188325-head", True),
    ("anything", "*", True),
])
def test_constraints(version: str, constraint: str, expected: bool) -> None:
    assert versions.satisfies(version, constraint) is expected


def test_a_bad_constraint_or_version_says_what_is_expected() -> None:
    with pytest.raises(ValueError, match="not a version constraint"):
        versions.check_constraint("~> 1.2")
    with pytest.raises(ValueError, match="expected e.g. v1.5.0-rc2 or master-ce188325-head"):
        versions.check_constraint("<=one")
