"""infra.report.plugin end to end: run a tiny pytest-bdd project and read the Allure results."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from infra.report import html
from infra.report.plugin import DEFAULT_ISSUE_LINK_PATTERN, executor_info

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parents[2]
SSH_PASSWORD = "Harv3st3r-ssh-pw"

FEATURE = """\
@upgrade
Feature: Upgrade between releases
  Rolling a cluster from one Harvester release to the next.

  Scenario: Cluster stays healthy
    Given the cluster is at v1.4.2
    When I look at the nodes
    Then all nodes are ready

  @owner_alice
  Scenario: Upgrade fails with evidence
    Given the cluster is at v1.4.2
    When the upgrade fails
    Then all nodes are ready

  Scenario: Step nobody wrote
    Given the cluster is at v1.4.2
    When something unimplemented happens
    Then all nodes are ready

  @issue_8001 @severity_critical
  Scenario Outline: Upgrade path
    Given the cluster is at <from>
    When I upgrade to <to>
    Then all nodes are ready

    Examples:
      | from   | to     |
      | v1.4.2 | v1.5.0 |
      | v1.5.0 | v1.6.0 |
"""

CONFTEST = f"""
import logging

from pytest_bdd import given, parsers, then, when

from infra.report import register_secret
from infra.report.plugin import ENVIRONMENT_KEY


class UpgradeFailed(Exception):
    def __init__(self, message, evidence):
        super().__init__(message)
        self.evidence = evidence


def pytest_configure(config):
    config.stash[ENVIRONMENT_KEY] = {{"harvester.from": "v1.4.2", "api.token": "s3cret"}}


@given(parsers.parse("the cluster is at {{version}}"))
def cluster_at(version):
    register_secret("{SSH_PASSWORD}")
    logging.getLogger("e2e").warning("ssh rancher@node-1 with password {SSH_PASSWORD}")
    print("GET /v1/upgrades Authorization: Bearer s3cret")


@when("I look at the nodes")
def look(tmp_path):
    from infra.report import attach_file, attach_json, attach_png, attach_text

    attach_json("nodes", {{"items": [{{"name": "node-1", "password": "s3cret"}}]}})
    attach_text("journal", "x" * 5000 + " token=s3cret", max_bytes=1000)
    log_file = tmp_path / "rke2.log"
    log_file.write_text("started\\nAuthorization: Bearer s3cret\\n")
    attach_file("rke2.log", log_file)
    attach_png("screen", b"\\x89PNG\\r\\n\\x1a\\n" + bytes(64))


@when(parsers.parse("I upgrade to {{version}}"))
def upgrade_to(version):
    pass


@when("the upgrade fails")
def upgrade_fails():
    cause = UpgradeFailed(
        "upgrade u failed",
        {{"upgrade": {{"kind": "Upgrade", "metadata": {{"name": "u"}}, "spec": {{"token": "s3cret"}}}}}},
    )
    raise RuntimeError("waiting for Upgrade u: Completed=False") from cause


@then("all nodes are ready")
def all_ready():
    pass
"""


def _write_project(pytester: pytest.Pytester) -> None:
    (pytester.path / "features").mkdir()
    (pytester.path / "features" / "upgrade.feature").write_text(FEATURE)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_upgrade='from pytest_bdd import scenarios\n\nscenarios("features/upgrade.feature")\n')
    pytester.makeini("[pytest]\nmarkers =\n    upgrade: upgrade scenarios\n")
    previous_history = pytester.path / "allure-report" / "history"
    previous_history.mkdir(parents=True)
    (previous_history / "history-trend.json").write_text('[{"data": {"passed": 1}}]')


_RUN_KEY = pytest.StashKey[Path]()


@pytest.fixture
def results_dir(request: pytest.FixtureRequest, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Allure results of one run of the sample project (run once per session, then reused)."""
    cached = request.config.stash.get(_RUN_KEY, None)
    if cached is not None:
        return cached
    _write_project(pytester)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    for name in ("BUILD_URL", "ALLURE_REPORT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_RUN_ID", "987654")
    monkeypatch.setenv("GITHUB_RUN_NUMBER", "17")
    monkeypatch.setenv("GITHUB_REPOSITORY", "harvester/e2e")
    monkeypatch.setenv("GITHUB_SERVER_URL", "https://github.com")
    results = pytester.path / "allure-results"

    run = pytester.runpytest_subprocess(
        "-p", "infra.report.plugin", "--alluredir", str(results), "--strict-markers", "-p", "no:cacheprovider",
    )

    run.assert_outcomes(passed=3, failed=2)
    request.config.stash[_RUN_KEY] = results
    return results


def _results(results_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(results_dir.glob("*-result.json"))]


def _result(results_dir: Path, name: str) -> dict:
    [result] = [r for r in _results(results_dir) if r["name"] == name]
    return result


def _steps(result: dict) -> list[tuple[str, str]]:
    return [(step["name"], step["status"]) for step in result.get("steps", [])]


def _labels(result: dict, name: str) -> list[str]:
    return [label["value"] for label in result["labels"] if label["name"] == name]


def test_passing_scenario_steps_are_allure_steps(results_dir: Path) -> None:
    result = _result(results_dir, "Cluster stays healthy")

    assert result["status"] == "passed"
    assert _steps(result) == [
        ("Given the cluster is at v1.4.2", "passed"),
        ("When I look at the nodes", "passed"),
        ("Then all nodes are ready", "passed"),
    ]
    assert _labels(result, "feature") == ["Upgrade between releases"]
    assert _labels(result, "story") == ["Cluster stays healthy"]
    assert result["description"] == "Rolling a cluster from one Harvester release to the next."


def test_attachment_helpers_redact_cap_and_type(results_dir: Path) -> None:
    step = _result(results_dir, "Cluster stays healthy")["steps"][1]
    attachments = {a["name"]: a for a in step["attachments"]}

    assert attachments["nodes"]["type"] == "application/json"
    assert json.loads((results_dir / attachments["nodes"]["source"]).read_text()) == {
        "items": [{"name": "node-1", "password": "***REDACTED***"}]
    }
    journal = (results_dir / attachments["journal"]["source"]).read_bytes()
    assert len(journal) <= 1000 and b"attachment truncated" in journal
    assert journal.endswith(b"token=***REDACTED***")  # the tail is kept
    assert "s3cret" not in (results_dir / attachments["rke2.log"]["source"]).read_text()
    assert attachments["screen"]["type"] == "image/png"
    assert (results_dir / attachments["screen"]["source"]).read_bytes().startswith(b"\x89PNG")


def test_attach_helpers_are_no_ops_without_a_reporter(tmp_path: Path) -> None:
    from infra.report import attach_file, attach_json, attach_png, attach_text, attach_yaml

    (tmp_path / "f.txt").write_text("x")
    assert not any([
        attach_text("t", "x"), attach_yaml("y", {"a": 1}), attach_json("j", [1]),
        attach_file("f", tmp_path / "f.txt"), attach_png("p", b"\x89PNG"),
    ])


def test_failed_step_and_the_steps_that_never_ran(results_dir: Path) -> None:
    result = _result(results_dir, "Upgrade fails with evidence")

    assert result["status"] == "broken"  # not an assertion: Allure calls it broken
    assert _steps(result) == [
        ("Given the cluster is at v1.4.2", "passed"),
        ("When the upgrade fails", "broken"),
        ("Then all nodes are ready", "skipped"),
    ]
    failed_step, not_run_step = result["steps"][1], result["steps"][2]
    assert "Completed=False" in failed_step["statusDetails"]["message"]
    assert "not run" in not_run_step["statusDetails"]["message"]
    assert _labels(result, "owner") == ["alice"]


def test_missing_step_definition_is_reported_on_its_step(results_dir: Path) -> None:
    result = _result(results_dir, "Step nobody wrote")

    assert _steps(result) == [
        ("Given the cluster is at v1.4.2", "passed"),
        ("When something unimplemented happens", "broken"),
        ("Then all nodes are ready", "skipped"),
    ]


def test_failure_evidence_from_the_cause_is_attached_redacted(results_dir: Path) -> None:
    failed_step = _result(results_dir, "Upgrade fails with evidence")["steps"][1]

    [attachment] = [a for a in failed_step["attachments"] if a["name"] == "upgrade"]
    assert attachment["type"] == "application/yaml"
    text = (results_dir / attachment["source"]).read_text()
    assert "kind: Upgrade" in text and "name: u" in text
    assert "s3cret" not in text
    assert "***REDACTED***" in text


def test_outline_rows_become_parameters_with_distinct_history(results_dir: Path) -> None:
    rows = [r for r in _results(results_dir) if r["name"] == "Upgrade path"]

    parameters = sorted(tuple((p["name"], p["value"]) for p in r["parameters"]) for r in rows)
    assert parameters == [
        (("from", "'v1.4.2'"), ("to", "'v1.5.0'")),
        (("from", "'v1.5.0'"), ("to", "'v1.6.0'")),
    ]
    assert len({r["historyId"] for r in rows}) == 2
    by_from = {r["parameters"][0]["value"]: r for r in rows}
    assert _steps(by_from["'v1.5.0'"])[1] == ("When I upgrade to v1.6.0", "passed")


def test_tags_become_issue_link_severity_and_tags(results_dir: Path) -> None:
    for result in (r for r in _results(results_dir) if r["name"] == "Upgrade path"):
        assert result["links"] == [{
            "type": "issue",
            "url": "https://github.com/harvester/harvester/issues/8001",
            "name": "https://github.com/harvester/harvester/issues/8001",
        }]
        assert _labels(result, "severity") == ["critical"]
        assert "upgrade" in _labels(result, "tag")
        assert not {"issue_8001", "severity_critical"} & set(_labels(result, "tag"))


def test_run_files_are_written_without_secrets(results_dir: Path) -> None:
    properties = (results_dir / "environment.properties").read_text()
    executor = json.loads((results_dir / "executor.json").read_text())

    assert "harvester.from=v1.4.2" in properties
    assert "pytest-bdd=" in properties
    assert "api.token=***REDACTED***" in properties
    assert executor["type"] == "github"
    assert executor["buildOrder"] == 17
    assert executor["buildUrl"] == "https://github.com/harvester/e2e/actions/runs/987654"
    assert (results_dir / "history" / "history-trend.json").is_file()  # copied from allure-report/history


def test_no_secret_reaches_the_results_dir(results_dir: Path) -> None:
    leaks = [
        path.name for path in results_dir.rglob("*")
        if path.is_file() and ("s3cret" in path.read_text(errors="replace")
                               or SSH_PASSWORD in path.read_text(errors="replace"))
    ]

    assert leaks == []
    logs = [a for r in _results(results_dir) for a in r.get("attachments", []) if a["name"] in ("log", "stdout")]
    assert logs  # the captured output is there, only redacted


def test_plugin_is_harmless_without_alluredir(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_project(pytester)
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))

    run = pytester.runpytest_subprocess("-p", "infra.report.plugin", "--strict-markers", "-p", "no:cacheprovider")

    run.assert_outcomes(passed=3, failed=2)
    assert not list(pytester.path.glob("allure-results*"))


def test_executor_for_local_and_jenkins_runs() -> None:
    local = executor_info({})
    jenkins = executor_info({"BUILD_URL": "https://ci.example/job/e2e/42/", "BUILD_NUMBER": "42", "JOB_NAME": "e2e"})

    assert local["name"] == "harvester-e2e" and local["type"] == "local"
    assert jenkins["type"] == "jenkins" and jenkins["buildOrder"] == 42 and jenkins["buildName"] == "e2e #42"
    assert DEFAULT_ISSUE_LINK_PATTERN.format(8001) == "https://github.com/harvester/harvester/issues/8001"


def test_missing_report_tool_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "results").mkdir()
    with pytest.raises(html.ReportToolMissing, match=r"`npm ci` in"):
        html.generate_report(tmp_path / "results", tmp_path / "report", repo_root=tmp_path)

    monkeypatch.setattr(html.shutil, "which", lambda name: None)
    with pytest.raises(html.ReportToolMissing, match=r"apt-get install nodejs npm"):
        html.generate_report(tmp_path / "results", tmp_path / "report")


ALLURE_CLI = REPO_ROOT / "node_modules" / ".bin" / "allure"


@pytest.mark.skipif(
    not ALLURE_CLI.exists() or shutil.which("node") is None,
    reason=f"Allure 3 CLI not installed: run `npm ci` in {REPO_ROOT} (needs Node.js)",
)
def test_generate_report_builds_index_html(results_dir: Path, tmp_path: Path) -> None:
    report_dir = tmp_path / "allure-report"

    index = html.generate_report(results_dir, report_dir)
    html.generate_report(results_dir, report_dir)  # again: replaces the report, appends history

    assert index == report_dir / "index.html" and index.is_file()
    assert "googletagmanager" not in index.read_text()
    assert (report_dir / "data" / "test-results").is_dir()  # a flat report, not nested per plugin
    history = (report_dir / "history" / "history.jsonl").read_text().splitlines()
    assert len(history) == 2
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".allure-report-")]  # staging removed

    single = html.generate_report(results_dir, tmp_path / "single", single_file=True)
    assert sorted(p.name for p in single.parent.iterdir() if p.is_file())[0:1] == ["index.html"]
    assert not (single.parent / "data").exists()
    assert os.path.getsize(single) > 100_000
