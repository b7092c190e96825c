"""The upgrade's decision rules in-process: the version guard, Rancher's chart rules, repoInfo, script variants.

Tables written from harvester/harvester `pkg/upgradehelper/versionguard`, vendored go-common `version`
(e748ce72) with Masterminds semver v3.3.0, rancher/rancher `pkg/catalogv2/system/system.go` at v2.11.0
and v2.11.2, and `package/upgrade/*.sh` at the tags.
"""
from __future__ import annotations

import pytest

from infra.simulator.controllers.upgrade import repo_info_text
from infra.simulator.controllers.upgrade_manifests import ScriptVariant
from infra.simulator.controllers.upgrade_nodes import InvalidUpgradeConfig, preload_concurrency
from infra.simulator.harvester import version_guard
from infra.simulator.harvester.rancher_system_charts import decide, metadata_aware
from infra.simulator.harvester.versions import ChartRelease, get_version


@pytest.mark.parametrize("current, target, minimum, error", [
    ("v1.4.2", "v1.5.0-rc2", "v1.4.2", None),                 # a release may go to a prerelease
    ("v1.5.0-rc2", "v1.5.0", "v1.4.2", None),                 # rc -> its own release: same stable version
    ("v1.5.0-rc1", "v1.5.0-rc2", "v1.4.2", None),
    ("v1.5.0-rc2", "v1.5.1", "v1.4.2", version_guard.ERR_PRERELEASE_CROSS),   # patch level counts
    ("v1.5.0-rc2", "v1.6.0", "v1.5.0", version_guard.ERR_MIN_UPGRADE),         # rc2 is older than v1.5.0
    ("v1.5.0-rc2", "v1.6.0", "v1.4.2", version_guard.ERR_PRERELEASE_CROSS),
    ("v1.5.0-rc2", "ce188325", "", None),                      # a dev target is always allowed
    ("master-ce188325-head", "v1.5.1", "v1.4.2", version_guard.ERR_DEV_UPGRADE),
    ("master-ce188325-head", "ce188325", "", None),
    ("v1.5.0", "v1.5.0", "v1.4.2", None),                      # same version
    ("v1.5.1", "v1.4.2", "v1.4.1", version_guard.ERR_DOWNGRADE),
    ("v1.5.0-rc2", "v1.5.0-rc1", "v1.4.2", version_guard.ERR_DOWNGRADE),
    ("v1.4.1", "v1.5.0", "v1.4.2", version_guard.ERR_MIN_UPGRADE),
    ("v1.4.2-rc1", "v1.4.2", "v1.4.1", None),
    ("", "v1.5.0", "v1.4.2", version_guard.ERR_INVALID_VERSION),
])
def test_the_version_guard_in_strict_mode(current: str, target: str, minimum: str, error: str | None) -> None:
    if error is None:
        version_guard.check(current, target, minimum)
    else:
        with pytest.raises(version_guard.EligibilityError) as caught:
            version_guard.check(current, target, minimum)
        assert str(caught.value) == error


@pytest.mark.parametrize("value, skips", [("true", True), ("1", True), ("T", True), ("TRUE", True), ("True", True),
                                          ("yes", False), ("false", False), ("", False)])
def test_skip_version_check_is_parsed_with_parse_bool(value: str, skips: bool) -> None:
    assert version_guard.skips_version_check({"harvesterhci.io/skip-version-check": value}) is skips


FLEET_MIN = ChartRelease("cattle-fleet-system", "106.0.0+up0.12.0", "0.12.0")
WEBHOOK = ChartRelease("cattle-system", "106.0.0+up0.7.0", "0.7.0")


@pytest.mark.parametrize("rancher, release, wanted, deployed, install", [
    ("v2.11.0", "fleet", FLEET_MIN, "106.0.0+up0.12.0-rc.3", None),          # >= min: metadata ignored
    ("v2.11.0", "fleet", FLEET_MIN, "105.0.2+up0.11.2", "106.0.0+up0.12.0"),  # below min: the newest chart
    ("v2.11.3", "fleet", FLEET_MIN, "106.0.0+up0.12.0-rc.3", None),          # minVersion path never looks at metadata
    ("v2.11.0", "rancher-webhook", WEBHOOK, "106.0.0+up0.7.0-rc.9", None),   # Equal ignores metadata before #49717
    ("v2.11.2", "rancher-webhook", WEBHOOK, "106.0.0+up0.7.0-rc.9", "106.0.0+up0.7.0"),
    ("v2.10.5", "rancher-webhook", WEBHOOK, "106.0.0+up0.7.0-rc.9", "106.0.0+up0.7.0"),
    ("v2.10.4", "rancher-webhook", WEBHOOK, "106.0.0+up0.7.0-rc.9", None),
    ("v2.11.0", "rancher-webhook", WEBHOOK, "106.0.3+up0.7.3", "106.0.0+up0.7.0"),   # the exact path downgrades
    ("v2.11.0", "rancher-webhook", WEBHOOK, None, "106.0.0+up0.7.0"),
])
def test_rancher_chart_rules(rancher: str, release: str, wanted: ChartRelease, deployed: str | None,
                             install: str | None) -> None:
    assert decide(rancher, release, wanted, deployed).install == install


def test_metadata_aware_equality_ships_in_v2_10_5_and_v2_11_1() -> None:
    assert [metadata_aware(v) for v in ("v2.10.1", "v2.10.4", "v2.10.5", "v2.11.0-rc5", "v2.11.0", "v2.11.1")] == \
        [False, False, True, False, False, True]


def test_repo_info_is_yaml_v2_of_the_seven_release_keys() -> None:
    release = get_version("v1.5.0").release_file()
    assert repo_info_text(release) == ("release:\n  harvester: v1.5.0\n  harvesterChart: 1.5.0\n"
                                       "  os: Harvester v1.5.0\n  kubernetes: v1.32.3+rke2r1\n  rancher: v2.11.0\n"
                                       "  monitoringChart: 105.1.2+up61.3.2\n  minUpgradableVersion: v1.4.2\n")
    assert repo_info_text({"harvester": "1.0", "os": "x"}) == 'release:\n  harvester: "1.0"\n  os: x\n'


@pytest.mark.parametrize("tag, fleet_agent, whereabouts, engine_suffix", [
    ("v1.4.2", "statefulset", False, False), ("v1.4.3", "statefulset", False, True),
    ("v1.5.0-rc2", "deployment", True, False), ("v1.5.0", "deployment", True, True),
    ("v1.5.1", "deployment", False, True), ("v1.5.2", "deployment", False, True),
])
def test_script_differences_between_the_target_tags(tag: str, fleet_agent: str, whereabouts: bool,
                                                     engine_suffix: bool) -> None:
    variant = ScriptVariant(tag)
    assert (variant.fleet_agent_kind, variant.applies_whereabouts, variant.instance_manager_engine_suffix) == \
        (fleet_agent, whereabouts, engine_suffix)
    assert ScriptVariant(get_version("master-ce188325-head").behaviour_tag) == ScriptVariant("v1.5.0")


@pytest.mark.parametrize("value, nodes, concurrency", [
    ('{"imagePreloadOption":{"strategy":{"type":"sequential"}}, "restoreVM": false}', 3, 1),
    ('{"imagePreloadOption":{"strategy":{"type":"parallel","concurrency":2}}}', 3, 2),
    ('{"imagePreloadOption":{"strategy":{"type":"parallel"}}}', 3, 3),          # 0: the cluster's size
    ('{"imagePreloadOption":{"strategy":{"type":"parallel","concurrency":9}}}', 3, 3),
    ('{"imagePreloadOption":{"strategy":{"type":"skip"}}}', 3, None),
])
def test_prepare_plan_concurrency_follows_upgrade_config(value: str, nodes: int, concurrency: int | None) -> None:
    assert preload_concurrency(value, nodes) == concurrency


def test_a_bad_preload_strategy_is_an_error() -> None:
    with pytest.raises(InvalidUpgradeConfig, match="invalid image preload strategy type: fast"):
        preload_concurrency('{"imagePreloadOption":{"strategy":{"type":"fast"}}}', 3)
