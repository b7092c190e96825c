"""Diagnosis of a stuck system-services stage, semver precedence, and the release-file pre-flight."""
from __future__ import annotations

import pytest

from infra.harvester.helm import HelmRevision, parse_history_yaml
from infra.versions import SemVer, prerelease_hidden_in_build_metadata, same_precedence
from infra.harvester.upgrade.diagnosis import awaited_release, diagnose
from infra.harvester.upgrade.preflight import check_release_file

LOG = [
    "Upgrading Rancher to v2.11.0",
    "Wait for Rancher dependencies helm releases...",
    "wait helm release cattle-fleet-system fleet fleet-106.0.0+up0.12.0 0.12.0 deployed",
]


def test_the_awaited_release_is_the_last_one_announced_and_not_completed() -> None:
    awaited = awaited_release(LOG)
    assert awaited is not None and (awaited.namespace, awaited.release, awaited.chart, awaited.app_version) == \
        ("cattle-fleet-system", "fleet", "fleet-106.0.0+up0.12.0", "0.12.0")
    done = LOG + ["completed helm release cattle-fleet-system fleet fleet-106.0.0+up0.12.0 0.12.0 deployed"]
    assert awaited_release(done) is None


def test_the_diagnosis_names_awaited_and_installed_and_the_semver_reason() -> None:
    history = [HelmRevision(1, "fleet-105.0.1+up0.11.1", "0.11.1", "superseded"),
               HelmRevision(2, "fleet-106.0.0+up0.12.0-rc.3", "0.12.0-rc.3", "deployed")]
    diagnosis = diagnose("SystemServicesUpgraded", LOG, lambda ns, release: history)
    assert diagnosis.sentence.startswith("SystemServicesUpgraded is waiting for Helm release "
                                         "cattle-fleet-system/fleet to be fleet-106.0.0+up0.12.0 (app 0.12.0, deployed)")
    assert "installed revision 2 is fleet-106.0.0+up0.12.0-rc.3" in diagnosis.sentence
    assert "semver ignores build metadata" in diagnosis.sentence


def test_no_semver_excuse_when_the_installed_chart_is_simply_older() -> None:
    history = [HelmRevision(1, "fleet-105.0.1+up0.11.1", "0.11.1", "deployed")]
    diagnosis = diagnose("SystemServicesUpgraded", LOG, lambda ns, release: history)
    assert "fleet-105.0.1+up0.11.1" in diagnosis.sentence and "semver" not in diagnosis.sentence


def test_without_a_wait_line_the_last_log_line_is_quoted() -> None:
    diagnosis = diagnose("NodesPrepared", ["preloading images on harvester-node-1"], None)
    assert "preloading images on harvester-node-1" in diagnosis.sentence


def test_semver_precedence_ignores_build_metadata() -> None:
    assert same_precedence("106.0.0+up0.12.0-rc.3", "106.0.0+up0.12.0")
    assert not same_precedence("106.0.0-rc.3", "106.0.0")
    assert SemVer.parse("1.0.0-rc.1").precedence_key() < SemVer.parse("1.0.0").precedence_key()
    assert SemVer.parse("1.0.0-alpha.2").precedence_key() < SemVer.parse("1.0.0-alpha.10").precedence_key()
    with pytest.raises(ValueError):
        SemVer.parse("master-ce188325-head")


def test_preflight_flags_pre_releases_hidden_in_build_metadata() -> None:
    assert prerelease_hidden_in_build_metadata("106.0.0+up0.12.0-rc.3") == "rc.3"
    assert prerelease_hidden_in_build_metadata("106.0.0+up0.12.0") is None
    assert prerelease_hidden_in_build_metadata("106.0.0-rc.3+up0.12.0-rc.3") is None, "a real pre-release is fine"
    release = {"rancherDependencies": {"fleet": {"chart": "106.0.0+up0.12.0-rc.3", "app": "0.12.0-rc.3"},
                                       "rancher-webhook": {"chart": "106.0.0+up0.7.0", "app": "0.7.0"}}}
    assert [str(f) for f in check_release_file(release)] == [
        "fleet 106.0.0+up0.12.0-rc.3: pre-release 'rc.3' sits in build metadata, which semver ignores"]


def test_helm_history_yaml_as_helm_prints_it() -> None:
    text = ("- app_version: 0.11.1\n  chart: fleet-105.0.1+up0.11.1\n  description: Install complete\n"
            "  revision: 1\n  status: superseded\n  updated: 'Mon Nov  3 10:00:00 2026'\n"
            "- app_version: 0.12.0-rc.3\n  chart: fleet-106.0.0+up0.12.0-rc.3\n  description: Upgrade complete\n"
            "  revision: 2\n  status: deployed\n  updated: 'Mon Nov  3 11:00:00 2026'\n")
    revisions = parse_history_yaml(text)
    assert [r.revision for r in revisions] == [1, 2] and revisions[-1].chart == "fleet-106.0.0+up0.12.0-rc.3"
