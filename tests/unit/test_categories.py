"""Failure categories: the messages the report plugin really produces land in the right category, under
the Python classifier the gate uses and under Allure 3's own matcher (node), and known issues behave."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from infra.report import categories as cat
from infra.report.matrix_cell import CELL_ENV_VAR

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parents[2]

FEATURE = """\
Feature: Failure sorting
  Every way a scenario can end, once.

  Scenario: Passes
    Given nothing happens

  @known_issue @issue_101
  Scenario: Known issue shows on an affected version
    Given the product misbehaves

  @known_issue @issue_101
  Scenario: Known issue no longer reproduces on an affected version
    Given nothing happens

  @known_issue @issue_101
  Scenario: Known issue scenario fails in another way on an affected version
    Given the product never gets there

  @known_issue @issue_101
  Scenario: Known issue scenario, but no cluster
    Given no cluster can be provisioned

  @known_issue @issue_201
  Scenario: A closed issue still explains the builds it affected
    Given the product misbehaves

  @known_issue @issue_202
  Scenario: Known issue scenario fails on a version the issue does not affect
    Given the product misbehaves

  @known_issue @issue_202
  Scenario: Known issue scenario passes on a version the issue does not affect
    Given nothing happens

  @known_issue @issue_102
  Scenario: Known issue on a fact a step records
    Given the dashboard is at UI extension v1.0.4
    And the product misbehaves

  @known_issue @issue_102
  Scenario: Known issue on a fact a step records, with the fix
    Given the dashboard is at UI extension v1.5.0
    And the product misbehaves

  @known_issue
  Scenario: Known issue without its issue
    Given nothing happens

  @known_issue @issue_999
  Scenario: Known issue missing from the file
    Given nothing happens

  Scenario: No cluster
    Given no cluster can be provisioned

  Scenario: API refuses connections
    Given the API refuses connections

  Scenario: API answers 503
    Given the API answers 503

  Scenario: SSH drops
    Given SSH drops

  Scenario: Step nobody wrote
    Given a step nobody wrote

  Scenario: Harness bug
    Given the harness has a bug

  Scenario: Product assertion
    Given the product misbehaves

  Scenario: Product never gets there
    Given the product never gets there

  Scenario: Admission denies the upgrade
    Given admission denies the upgrade

  Scenario: The simulator's endpoint refuses connections
    Given the simulator's endpoint refuses connections

  Scenario: Cleanup cannot reach the API
    Given cleanup cannot reach the API

  Scenario: A step expects a known issue that does not happen
    Given a step expects known issue 103
    And nothing happens
"""

CONFTEST = """
from pytest_bdd import given, parsers

from infra.backends.base import BackendError
from infra.kube.client import ApiFailure
from infra.ssh.session import TransportDropped
from infra.waits.budget import Budget, WaitTimeout


@given("nothing happens")
def nothing():
    pass


@given(parsers.parse("the dashboard is at UI extension {ui}"))
def dashboard_at(ui, facts):
    facts.record("ui_extension", ui)


@given("a step expects known issue 103")
def expects_known_issue(request):
    import pytest
    request.node.add_marker(pytest.mark.xfail(strict=True, reason="known issue harvester/harvester#103: old UI"))


@given("the product misbehaves")
def misbehaves():
    assert "v1.4.2" == "master-ce188325-head", "server-version is 'v1.4.2', expected 'master-ce188325-head'"


@given("the product never gets there")
def never():
    raise WaitTimeout(Budget("Upgrade Completed", 180), "Completed=True", 181.0, "Completed=Unknown")


@given("no cluster can be provisioned")
def no_cluster():
    raise BackendError("the simulated Harvester v1.4.2 exited with status 1 before serving")


@given("the API refuses connections")
def refused():
    raise ConnectionRefusedError(111, "Connection refused")


@given("the API answers 503")
def unavailable():
    raise ApiFailure(503, "ServiceUnavailable", "the server is currently unable to handle the request")


@given("the simulator's endpoint refuses connections")
def simulator_refuses():
    import urllib.error
    raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))


@given("cleanup cannot reach the API")
def cleanup_unreachable():
    import pytest
    pytest.fail("cleanup failed: delete namespace e2e-1: HTTPSConnectionPool(host='127.0.0.1', port=40131): Max "
                "retries exceeded (Caused by NewConnectionError(... [Errno 111] Connection refused))", pytrace=False)


@given("SSH drops")
def ssh_drops():
    raise TransportDropped("harvester-node-1: SSH transport dropped while running journalctl")


@given("the harness has a bug")
def harness_bug():
    return {}["cluster"]


@given("admission denies the upgrade")
def denied():
    raise ApiFailure(500, "InternalError", 'admission webhook "validator.harvesterhci.io" denied the request: '
                     "machine fleet-local/custom-1 is not running")
"""

KNOWN_ISSUES = """\
issues:
  101:
    state: open
    title: "upgrade hangs on fleet"
    affects: {harvester_from: [v1.5.0-rc2]}
    shows: {step: "^the product misbehaves$", exception: AssertionError, message: "expected 'master-ce188325-head'"}
  102:
    state: open
    title: "pool goes Not Ready"
    affects: {ui_extension: ["<=v1.0.4", v1.5.0-rc1]}
    shows: {step: "^the product misbehaves$", exception: AssertionError}
  201:
    state: closed
    title: "fixed in later builds"
    affects: {harvester_from: ["<=v1.5.0-rc2"]}
    shows: {step: "^the product misbehaves$", exception: AssertionError}
  202:
    state: closed
    title: "only old builds"
    affects: {harvester_from: ["<v1.4.0"]}
    shows: {step: "^the product misbehaves$", exception: AssertionError}
"""

EXPECTED = {
    "Passes": ("passed", None),
    "Known issue shows on an affected version": ("skipped", cat.KNOWN_PRODUCT_ISSUE),
    "Known issue no longer reproduces on an affected version": ("failed", cat.KNOWN_ISSUE_PASSES),
    "Known issue scenario fails in another way on an affected version": ("broken", cat.PRODUCT_DEFECT),
    "Known issue scenario, but no cluster": ("broken", cat.INFRA_PROVISIONING),
    "A closed issue still explains the builds it affected": ("skipped", cat.KNOWN_PRODUCT_ISSUE),
    "Known issue scenario fails on a version the issue does not affect": ("failed", cat.PRODUCT_DEFECT),
    "Known issue scenario passes on a version the issue does not affect": ("passed", None),
    "Known issue on a fact a step records": ("skipped", cat.KNOWN_PRODUCT_ISSUE),
    "Known issue on a fact a step records, with the fix": ("failed", cat.PRODUCT_DEFECT),
    "Known issue without its issue": ("failed", cat.HARNESS_DEFECT),
    "Known issue missing from the file": ("failed", cat.HARNESS_DEFECT),
    "No cluster": ("broken", cat.INFRA_PROVISIONING),
    "API refuses connections": ("broken", cat.INFRA_API_UNAVAILABLE),
    "API answers 503": ("broken", cat.INFRA_API_UNAVAILABLE),
    "SSH drops": ("broken", cat.INFRA_SSH),
    "The simulator's endpoint refuses connections": ("broken", cat.INFRA_API_UNAVAILABLE),
    "Cleanup cannot reach the API": ("failed", cat.INFRA_API_UNAVAILABLE),
    "Step nobody wrote": ("broken", cat.HARNESS_DEFECT),
    "Harness bug": ("broken", cat.HARNESS_DEFECT),
    "Product assertion": ("failed", cat.PRODUCT_DEFECT),
    "Product never gets there": ("broken", cat.PRODUCT_DEFECT),
    "Admission denies the upgrade": ("broken", cat.PRODUCT_DEFECT),
    "A step expects a known issue that does not happen": ("failed", cat.KNOWN_ISSUE_PASSES),
}

CELL = {"id": "c07", "title": "v1.5.0-rc2 to master-ce188325-head, Rancher v2.11",
        "parameters": {"harvester_from": "v1.5.0-rc2", "rancher": "v2.11"}}


@pytest.fixture(scope="module")
def results(pytester_module: Path) -> dict[str, dict]:
    return {r["name"]: r for r in (json.loads(p.read_text()) for p in pytester_module.glob("*-result.json"))}


@pytest.fixture(scope="module")
def pytester_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the sample project, in a subprocess, with a matrix cell set; returns its results dir."""
    project = tmp_path_factory.mktemp("categories")
    (project / "features").mkdir()
    (project / "features" / "sorting.feature").write_text(FEATURE)
    (project / "conftest.py").write_text(CONFTEST)
    (project / "test_sorting.py").write_text('from pytest_bdd import scenarios\n\nscenarios("features")\n')
    (project / "known-issues.yaml").write_text(KNOWN_ISSUES)
    (project / "pytest.ini").write_text("[pytest]\nmarkers =\n    known_issue: x\n")
    results = project / "allure-results"
    env = {"PYTHONPATH": str(REPO_ROOT), CELL_ENV_VAR: json.dumps(CELL), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "python") if (REPO_ROOT / ".venv").is_dir() else "python3",
         "-m", "pytest", "-p", "infra.report.plugin", "-p", "no:cacheprovider", "--strict-markers",
         f"--alluredir={results}", f"--known-issues={project / 'known-issues.yaml'}", "-q"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert "passed" in run.stdout, run.stdout + run.stderr
    return results


def test_every_outcome_gets_its_category(results: dict[str, dict]) -> None:
    actual = {name: (result["status"], cat.classify_result(result)) for name, result in results.items()}

    assert actual == EXPECTED


def test_known_issue_messages_name_the_issue(results: dict[str, dict]) -> None:
    known = results["Known issue shows on an affected version"]["statusDetails"]["message"]
    closed = results["A closed issue still explains the builds it affected"]["statusDetails"]["message"]
    gone = results["Known issue no longer reproduces on an affected version"]["statusDetails"]["message"]
    other = results["Known issue scenario fails in another way on an affected version"]
    bookkeeping = results["Known issue missing from the file"]["statusDetails"]["message"]

    assert known == ("known issue harvester/harvester#101 (open) on harvester_from v1.5.0-rc2: "
                     "upgrade hangs on fleet\n\nAssertionError: server-version is 'v1.4.2', expected "
                     "'master-ce188325-head'")
    assert closed.startswith("known issue harvester/harvester#201 (closed) on harvester_from v1.5.0-rc2")
    assert gone.startswith("known issue harvester/harvester#101 (open) no longer reproduces on harvester_from "
                           "v1.5.0-rc2")
    assert other["statusDetails"]["message"].startswith("infra.waits.budget.WaitTimeout") or \
        "WaitTimeout" in other["statusDetails"]["message"]
    assert "harvester/harvester#999 not listed in" in bookkeeping
    assert {link["url"] for link in results["Known issue shows on an affected version"]["links"]} == {
        "https://github.com/harvester/harvester/issues/101"}


def test_cell_parameters_on_every_result(results: dict[str, dict], pytester_module: Path) -> None:
    for result in results.values():
        parameters = {p["name"]: p for p in result["parameters"]}
        assert parameters["cell.harvester_from"]["value"] == "'v1.5.0-rc2'"
        assert parameters["cell.rancher"]["value"] == "'v2.11'"
        assert parameters["cell"]["value"] == "'v1.5.0-rc2 to master-ce188325-head, Rancher v2.11'"
        assert parameters["cell"].get("excluded") is True
    properties = (pytester_module / "environment.properties").read_text()
    assert "matrix.cell=c07" in properties
    assert "matrix.rancher=v2.11" in properties


def test_categories_file_is_written_into_the_results(pytester_module: Path) -> None:
    assert json.loads((pytester_module / "categories.json").read_text()) == \
        json.loads(cat.CATEGORIES_FILE.read_text())


@pytest.mark.skipif(shutil.which("node") is None or not (REPO_ROOT / "node_modules" / "@allurereport").is_dir(),
                    reason="Allure 3 (npm ci) and Node.js are needed to check the regexes with Allure's matcher")
def test_allure3_files_them_the_same_way(results: dict[str, dict]) -> None:
    cases = [{"name": name, "status": r["status"], "message": (r.get("statusDetails") or {}).get("message"),
              "trace": (r.get("statusDetails") or {}).get("trace")} for name, r in results.items()]
    script = (
        "import {normalizeCategoriesConfig, matchCategory} from '@allurereport/core-api';"
        "import fs from 'node:fs';"
        "const categories = normalizeCategoriesConfig(JSON.parse(fs.readFileSync(process.argv[1], 'utf8')));"
        "const cases = JSON.parse(fs.readFileSync(0, 'utf8'));"
        "const out = {};"
        "for (const c of cases) {"
        "  const m = matchCategory(categories, {status: c.status, message: c.message, trace: c.trace, labels: []});"
        "  out[c.name] = m ? m.name : null; }"
        "console.log(JSON.stringify(out));"
    )
    run = subprocess.run(["node", "--input-type=module", "-e", script, str(cat.CATEGORIES_FILE)],
                         input=json.dumps(cases), cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    allure3 = json.loads(run.stdout)

    # Allure 3 files a plain skip or pass under no category; its built-in fallbacks never show up here.
    expected = {name: category for name, (status, category) in EXPECTED.items() if status != "passed"}
    assert {name: category for name, category in allure3.items() if name in expected} == expected


def test_unmatched_failures_are_uncategorised_and_passes_have_none() -> None:
    assert cat.classify("broken", "RuntimeError: something new") == cat.UNCATEGORISED
    assert cat.classify("passed", None) is None
    assert cat.classify("skipped", "Skipped: the libvirt cluster runs v1.5.1") is None
    assert cat.is_infrastructure(cat.INFRA_SSH) and not cat.is_infrastructure(cat.PRODUCT_DEFECT)


ALLURERC = REPO_ROOT / "allurerc.mjs"


@pytest.mark.skipif(shutil.which("node") is None or not (REPO_ROOT / "node_modules" / ".bin" / "allure").exists(),
                    reason="Allure 3 CLI not installed: run `npm ci` (needs Node.js)")
@pytest.mark.skipif("categories.json" not in ALLURERC.read_text(),
                    reason="allurerc.mjs does not load ci/allure/categories.json yet (Allure 3 reads categories "
                           "from its config, not from the results folder)")
def test_the_html_report_files_failures_in_these_categories(pytester_module: Path, tmp_path: Path) -> None:
    from infra.report import html

    html.generate_report(pytester_module, tmp_path / "report")
    widget = json.loads((tmp_path / "report" / "widgets" / "categories.json").read_text())
    shown = {node["name"] for node in widget["nodes"].values() if node["type"] == "category"}

    assert shown == {category for status, category in EXPECTED.values() if category}
