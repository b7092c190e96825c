"""Known issues match only their own failure, on the versions they affect (ci/known-issues.yaml)."""
from __future__ import annotations

from pathlib import Path

import pytest

from infra.harvester.upgrade.diagnosis import Diagnosis
from infra.harvester.upgrade.tracker import UpgradeStalled
from infra.report.known_issues import KNOWN_ISSUES_FILE, KnownIssuesError, judge, load_known_issues
from infra.waits.budget import Budget, WaitTimeout

KNOWN = load_known_issues()
RC_TO_MASTER = {"harvester_from": "v1.5.0-rc2", "harvester_to": "master-ce188325-head"}
STEP = "the upgrade completes within its phase budgets"


def _stall(release: str = "fleet", phase: str = "SystemServicesUpgraded") -> UpgradeStalled:
    namespace = "cattle-system" if release == "rancher-webhook" else "cattle-fleet-system"
    sentence = (f"{phase} is waiting for Helm release {namespace}/{release} to be {release}-106.0.0+up0.12.0 "
                "(app 0.12.0, deployed), but ...")
    return UpgradeStalled(f"upgrade hvst-upgrade-x stalled in phase {phase}: nothing changed for 30.4s. {sentence}",
                          phase=phase, evidence={}, diagnosis=Diagnosis(sentence), stalled_after=30.4)


def test_the_rc_to_master_hang_is_issue_8001_only_on_the_versions_it_affects() -> None:
    issue = KNOWN.get(8001)
    assert issue is not None
    assert judge(8001, issue, RC_TO_MASTER, _stall(), STEP).verdict == "known"
    for release in ("fleet-crd", "rancher-webhook"):      # the same hang, on the next dependency
        assert judge(8001, issue, RC_TO_MASTER, _stall(release), STEP).verdict == "known"
    stable = {"harvester_from": "v1.4.2", "harvester_to": "master-ce188325-head"}
    assert judge(8001, issue, stable, _stall(), STEP).verdict == "unaffected"
    assert judge(8001, issue, {"harvester_from": "v1.5.0-rc2"}, _stall(), STEP).verdict == "unaffected"


def test_any_other_failure_on_an_affected_version_is_not_the_known_issue() -> None:
    issue = KNOWN.get(8001)
    assert issue is not None
    other_phase = judge(8001, issue, RC_TO_MASTER, _stall(phase="NodesUpgraded"), STEP)
    assert other_phase.verdict == "other-failure" and "its phase is 'NodesUpgraded'" in other_phase.text
    timeout = WaitTimeout(Budget("nodes Ready", 900), "every node to be Ready", 901.0)
    assert judge(8001, issue, RC_TO_MASTER, timeout, "every node is Ready").verdict == "other-failure"
    earlier_step = judge(8001, issue, RC_TO_MASTER, _stall(), "every Machine is Running and matched to its Node")
    assert earlier_step.verdict == "other-failure" and "it failed in step" in earlier_step.text


def test_a_pass_on_an_affected_version_is_a_change_and_says_so() -> None:
    issue = KNOWN.get(8001)
    assert issue is not None
    verdict = judge(8001, issue, RC_TO_MASTER, None, None)
    assert verdict.verdict == "no-longer-reproduces"
    assert verdict.text.startswith("known issue harvester/harvester#8001 (closed) no longer reproduces on "
                                   "harvester_from v1.5.0-rc2, harvester_to master-ce188325-head")


def test_the_dashboard_issue_depends_on_the_ui_extension_only() -> None:
    issue = KNOWN.get(7942)
    assert issue is not None
    for ui, affected in (("v1.0.4", True), ("v1.5.0-rc1", True), ("v1.0.5", False), ("v1.5.0-rc2", False)):
        assert issue.affected({"ui_extension": ui, "harvester_from": "v1.5.1"})[0] is affected, ui


def test_a_malformed_file_names_the_entry_and_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "known.yaml"
    bad.write_text("issues:\n  1:\n    state: open\n    title: t\n    affects: {harvester_from: ['~> 1']}\n"
                   "    shows: {exception: X}\n")
    with pytest.raises(KnownIssuesError, match=r"known.yaml: issues.1.affects: not a version constraint"):
        load_known_issues(bad)
    bad.write_text("issues:\n  1:\n    state: open\n    title: t\n    affects: {harvester_from: [v1.4.2]}\n"
                   "    shows: {exception: X, message: '(unclosed'}\n")
    with pytest.raises(KnownIssuesError, match="shows.message: not a regular expression"):
        load_known_issues(bad)
    assert KNOWN.source == KNOWN_ISSUES_FILE
