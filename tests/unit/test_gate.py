"""The release gate on crafted Allure results: it passes only what the policy allows, and fails closed."""
from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest

from infra import gate
from infra.matrix.cell import MatrixCell
from infra.matrix.merge import synthesize_cell_failure

POLICY = """\
release: null
blocking:
  features: ["Upgrade", "*"]
  cells: [{}]
non_blocking_features: ["Guest charts"]
known_issue_passes: block
accepted_known_issues:
  - {issue: 8001, reason: documented workaround, until: 2026-12-31}
  - {issue: 7942, reason: fixed in the v2.11 line, until_version: v1.6.0}
"""
TODAY = dt.date(2026, 11, 22)
CELL = {"harvester_from": "v1.5.0-rc2", "harvester_to": "master-ce188325-head", "rancher": "v2.11"}


def result(name: str, status: str = "passed", *, feature: str = "Upgrade", message: str | None = None,
           issues: tuple[int, ...] = (), cell: dict[str, str] | None = None, history: str | None = None,
           stop: int = 1000) -> dict:
    document = {
        "uuid": str(uuid.uuid4()), "historyId": history or name, "name": name, "status": status, "stop": stop,
        "labels": [{"name": "feature", "value": feature}],
        "links": [{"type": "issue", "url": f"https://github.com/harvester/harvester/issues/{n}"} for n in issues],
        "parameters": [{"name": f"cell.{k}", "value": repr(v)} for k, v in (cell or CELL).items()],
    }
    if message is not None:
        document["statusDetails"] = {"message": message}
    return document


def xfail(name: str, issue: int, **kwargs: object) -> dict:
    return result(name, "skipped", issues=(issue,), message=f"known issue harvester/harvester#{issue} (open) on "
                  "harvester_from v1.5.0-rc2, harvester_to master-ce188325-head: upgrade hangs", **kwargs)


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "gate.yaml"
    path.write_text(POLICY)
    return path


def write(results: Path, *documents: dict) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (results / f"{document['uuid']}-result.json").write_text(json.dumps(document))
    return results


def run_gate(results: Path, policy: Path, *extra: str, as_of: dt.date = TODAY) -> int:
    return gate.main([str(results), "--policy", str(policy), "--as-of", as_of.isoformat(), *extra])


def test_all_pass(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Upgrade from v1.4.2"), result("Upgrade from v1.5.1"))

    assert run_gate(results, policy, "--markdown", str(tmp_path / "gate.md")) == 0
    out = capsys.readouterr().out
    assert out.startswith("Release gate: PASS (2 results in 1 cell(s): 2 passed")
    assert "v1.5.0-rc2→master-ce188325-head rancher v2.11" in out and "2 scenarios" in out
    assert (tmp_path / "gate.md").read_text().startswith("### ✅ Release gate: PASS")


def test_known_issue_accepted_until_a_date(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Upgrade from v1.4.2"), xfail("Upgrade from v1.5.0-rc2", 8001))

    assert run_gate(results, policy, "--markdown", str(tmp_path / "gate.md")) == 0
    out = capsys.readouterr().out
    assert "xfail" in out and "Known product issue" in out and "accepted #8001 until 2026-12-31" in out
    assert "[#8001](https://github.com/harvester/harvester/issues/8001)" in (tmp_path / "gate.md").read_text()


def test_known_issue_acceptance_expired_by_date(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Upgrade from v1.4.2"), xfail("Upgrade from v1.5.0-rc2", 8001))

    assert run_gate(results, policy, as_of=dt.date(2027, 1, 1)) == 1
    assert "BLOCKS: acceptance of #8001 expired on 2026-12-31" in capsys.readouterr().out


def test_known_issue_acceptance_ends_at_a_version(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Edit pool"), xfail("Edit pool selector", 7942))

    assert run_gate(results, policy, "--release-version", "v1.5.2") == 0
    assert run_gate(results, policy, "--release-version", "v1.6.0") == 1
    assert "acceptance of #7942 ended at v1.6.0 (release v1.6.0)" in capsys.readouterr().out
    # Without --release-version the cell's target counts: master-ce188325-head is past every release.
    assert run_gate(results, policy) == 1
    without_target = write(tmp_path / "r2", xfail("Edit pool selector", 7942, cell={"harvester_from": "v1.5.0"}),
                           result("Edit pool", cell={"harvester_from": "v1.5.0"}))
    assert run_gate(without_target, policy) == 1
    assert "release version is unknown (pass --release-version)" in capsys.readouterr().out


def test_known_issue_nobody_accepted_blocks(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("ok"), xfail("Upgrade from v1.5.0", 9680))

    assert run_gate(results, policy) == 1
    assert "known issue harvester/harvester#9680 is not accepted for release" in capsys.readouterr().out


def test_empty_results_fail(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "environment.properties").write_text("backend=simulated\n")

    assert run_gate(tmp_path / "r", policy, "--markdown", str(tmp_path / "gate.md")) == 1
    assert "holds no results: nothing ran, so nothing may ship" in capsys.readouterr().out
    assert (tmp_path / "gate.md").read_text().startswith("### ❌ Release gate: FAIL")


def test_missing_results_folder_fails(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    assert run_gate(tmp_path / "never-written", policy) == 1
    assert "does not exist" in capsys.readouterr().out


def test_product_defect_blocks(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("ok"), result(
        "Upgrade from v1.4.2", "failed", message="AssertionError: server-version is 'v1.4.2', expected 'master-ce188325-head'"))

    assert run_gate(results, policy) == 1
    assert "BLOCKS: Product defect" in capsys.readouterr().out


def test_a_cell_without_a_cluster_blocks_as_infrastructure(tmp_path: Path, policy: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("ok"))
    cell = MatrixCell("c02", "nightly", {"harvester_from": "v1.5.1", "harvester_to": "master-ce188325-head"})
    synthesize_cell_failure(cell, results, message="infrastructure: cell c02 did not run (exit status 2): "
                                                   "config error: existing.kubeconfig: no such file")

    assert run_gate(results, policy) == 1
    assert "BLOCKS: Infrastructure: provisioning" in capsys.readouterr().out


def test_failures_outside_the_blocking_scope_only_warn(tmp_path: Path, policy: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    failing = dict(message="AssertionError: controller pod on a worker")
    results = write(tmp_path / "r", result("Upgrade"),
                    result("CSI upgrade", "failed", feature="Guest charts", **failing))

    assert run_gate(results, policy) == 0
    assert "warn: Product defect (not blocking)" in capsys.readouterr().out
    only_v2_11 = policy.read_text().replace("cells: [{}]", "cells: [{rancher: 'v2.11'}]")
    policy.write_text(only_v2_11.replace('non_blocking_features: ["Guest charts"]', "non_blocking_features: []"))
    v2_10 = write(tmp_path / "r2", result("Upgrade"), result("Upgrade on 2.10", "failed", cell={"rancher": "v2.10"},
                                                              **failing))
    assert run_gate(v2_10, policy) == 0
    assert run_gate(results, policy) == 1  # the v2.11 cell's failure blocks


def test_a_required_feature_without_results_fails(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("health", feature="Health"))

    assert run_gate(results, policy) == 1
    assert "blocking feature 'Upgrade' has no results that ran" in capsys.readouterr().out


def test_nothing_that_ran_is_not_a_pass(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Upgrade", "skipped", message="Skipped: the cluster runs v1.5.1"))

    assert run_gate(results, policy) == 1
    assert "no result in the blocking scope ran" in capsys.readouterr().out


def test_the_latest_attempt_counts(tmp_path: Path, policy: Path) -> None:
    first = result("Upgrade", "broken", message="infra.backends.base.BackendError: simulator exited", stop=1)
    retry = result("Upgrade", "passed", stop=2)

    assert run_gate(write(tmp_path / "r", first, retry), policy) == 0


def test_a_known_issue_that_passes_blocks_or_warns(tmp_path: Path, policy: Path) -> None:
    xpass = result("Upgrade from v1.5.0-rc2", "failed", issues=(8001,), message=(
        "XPASS(strict) known issue harvester/harvester#8001 (open): hang: the scenario passed"))
    results = write(tmp_path / "r", result("Upgrade"), xpass)

    assert run_gate(results, policy) == 1
    policy.write_text(policy.read_text().replace("known_issue_passes: block", "known_issue_passes: warn"))
    assert run_gate(results, policy) == 0


def test_an_unreadable_result_fails(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture) -> None:
    results = write(tmp_path / "r", result("Upgrade"))
    (results / "truncated-result.json").write_text('{"name": "Upgr')

    assert run_gate(results, policy) == 1
    assert "truncated-result.json cannot be read" in capsys.readouterr().out


def test_a_broken_policy_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "gate.yaml"
    bad.write_text("accepted_known_issues:\n  - {issue: 8001, until: someday}\n")

    assert gate.main([str(tmp_path), "--policy", str(bad)]) == 2
    assert "accepted_known_issues.0.reason: required, but not given" in capsys.readouterr().err


def test_the_shipped_policy_loads() -> None:
    policy = gate.load_policy()

    assert policy.accepted_known_issues and all(e.until or e.until_version for e in policy.accepted_known_issues)


def test_version_order() -> None:
    ordered = ["v1.4.2", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.6.0", "master-ce188325-head"]
    assert sorted(ordered, key=gate.version_key) == ordered
