"""pytest plugin: Gherkin scenarios as readable Allure results, with secrets kept out of them.

* every Gherkin step is an Allure step ("Given the cluster is at v1.4.2"); after a failure the
  steps that never ran are still listed, as skipped "not run" steps;
* ``exception.evidence`` (or its ``__cause__``'s) is attached, redacted, to the failed step;
* Scenario Outline example values become Allure parameters (so each upgrade path keeps its own
  history), feature/scenario become feature/story/title/description;
* tags ``@issue_NNNN``, ``@severity_<level>`` and ``@owner_<name>`` become an issue link, the
  severity and the owner; other tags stay Allure tags (allure-pytest turns markers into tags);
* the results directory gets ``environment.properties``, ``executor.json``, ``categories.json``
  (from ``ci/allure/categories.json``) and the ``history/`` of the previous report, and everything
  written there is passed through the redactor;
* a matrix cell (``HARVESTER_MATRIX_CELL``: JSON ``{"id": ..., "title": ..., "parameters": {...}}``, set
  by ``harvester-e2e matrix``) becomes Allure parameters ``cell.<name>`` on every result (plus ``cell``,
  its title, left out of the history id), so each cell keeps its own history and trend, and lines in
  ``environment.properties``;
* ``@known_issue @issue_NNNN``: after the scenario ran, it is judged against issue NNNN of
  ``ci/known-issues.yaml`` (``--known-issues``) from the facts its steps recorded (``facts`` fixture) and
  the matrix cell: unaffected versions run as ordinary scenarios; on affected ones a failure that shows
  as the issue says is an expected failure, any other failure stays the failure it is (its own category,
  with a "known issue" attachment saying why it is not the known one), and a pass is "known issue ... no
  longer reproduces" (a failure, so someone looks). A missing or unknown issue fails the scenario with "known-issue bookkeeping: ...".

Load it with ``pytest_plugins = ["infra.report.plugin"]`` or ``-p infra.report.plugin``.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import allure
import allure_commons
import pytest
from allure_commons.types import LabelType, Severity

from infra.report.allure_steps import _list_steps_not_run, _ScenarioProgress, _PROGRESS_KEY
from infra.report.keys import (CELL_KEY, ENVIRONMENT_KEY, KNOWN_ISSUE_MARKER, TAG_FAMILY,  # noqa: F401 - re-exported
                               current_test_result)
from infra.report.known_issue_plugin import KNOWN_ISSUE_KEY, fail_on_known_issue_bookkeeping, report_known_issue_outcome
from infra.report.known_issues import KNOWN_ISSUES_FILE
from infra.report.matrix_cell import CELL_PARAMETER_PREFIX
from infra.report.output_redaction import _AllureOutputRedactor
from infra.report.redact import install_log_redaction, uninstall_log_redaction
from infra.report.run_files import (DEFAULT_HISTORY_FROM, MatrixCellInfo, _copy_history_forward,  # noqa: F401
                                    environment_facts, executor_info, matrix_cell_from_env, write_categories_json,
                                    write_environment_properties, write_executor_json)

from infra.report import allure_steps, known_issue_plugin, output_redaction  # noqa: E402 - the sub-plugins

# The plugin's concerns, each its own module, registered with it: Allure steps for Gherkin steps,
# known-issue judging, redaction of what pytest and Allure write.
SUB_PLUGINS = (allure_steps, known_issue_plugin, output_redaction)

logger = logging.getLogger(__name__)

DEFAULT_ISSUE_LINK_PATTERN = "https://github.com/harvester/harvester/issues/{}"
_SEVERITIES = {level.value for level in Severity}
_FEATURE_TAG = re.compile(r"(?<!\S)@([^\s@#]+)")
_FAMILY_TAGS_KEY = pytest.StashKey[set]()


# --- options and configuration -----------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("reporting").addoption(
        "--allure-history-from",
        dest="allure_history_from",
        metavar="DIR",
        default=None,
        help="Previous Allure report (or its history/ dir) whose history/ is copied into the results "
        f"dir so trends continue (default: <rootdir>/{DEFAULT_HISTORY_FROM})",
    )
    parser.getgroup("reporting").addoption(
        "--known-issues",
        dest="known_issues_file",
        metavar="FILE",
        default=None,
        help=f"states of the issues @known_issue scenarios link to (default: {KNOWN_ISSUES_FILE})",
    )


def pytest_configure(config: pytest.Config) -> None:
    for module in SUB_PLUGINS:
        if not config.pluginmanager.is_registered(module):
            config.pluginmanager.register(module, module.__name__)
    _add_default_issue_link_pattern(config)
    config.stash[CELL_KEY] = matrix_cell_from_env(os.environ)
    for tag in sorted(_feature_file_family_tags(config)):
        config.addinivalue_line("markers", f"{tag}: {_describe_family_tag(tag)}")

    install_log_redaction()
    config.add_cleanup(uninstall_log_redaction)

    output_redactor = _AllureOutputRedactor(_results_dir(config))
    allure_commons.plugin_manager.register(output_redactor)
    config.add_cleanup(lambda: allure_commons.plugin_manager.unregister(output_redactor))


def _add_default_issue_link_pattern(config: pytest.Config) -> None:
    patterns = getattr(config.option, "allure_link_pattern", None)
    if patterns is None:  # allure-pytest not loaded
        return
    if not any(link_type == "issue" for link_type, _ in patterns):
        patterns.append(["issue", DEFAULT_ISSUE_LINK_PATTERN])


def _feature_file_family_tags(config: pytest.Config) -> set[str]:
    """Tags like ``issue_8001`` in the project's feature files (they have no fixed list)."""
    roots = {config.rootpath / "features"}
    try:
        base_dir = config.getini("bdd_features_base_dir")
    except ValueError:  # pytest-bdd not loaded
        base_dir = ""
    if base_dir:
        roots.add(config.rootpath / base_dir)
    tags: set[str] = set()
    for root in roots:
        for feature_file in sorted(root.glob("**/*.feature")) if root.is_dir() else ():
            for line in feature_file.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.lstrip().startswith("@"):
                    tags.update(t for t in _FEATURE_TAG.findall(line.split(" #")[0]) if TAG_FAMILY.match(t))
    return tags


def _describe_family_tag(tag: str) -> str:
    match = TAG_FAMILY.match(tag)
    assert match is not None, tag
    family, value = match["family"], match["value"]
    if family == "issue":
        return f"links harvester/harvester#{value}" if value.isdigit() else f"links issue {value}"
    return f"Allure {family} {value}"


def _results_dir(config: pytest.Config) -> Path | None:
    report_dir = getattr(config.option, "allure_report_dir", None)
    return Path(os.path.abspath(report_dir)) if report_dir else None


def pytest_bdd_apply_tag(tag: str, function: Any) -> None:
    """Leave every tag to pytest-bdd (it makes a marker); the Allure mapping happens at run time."""
    return None


# --- run-level files ---------------------------------------------------------------------------

@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    results_dir = _results_dir(config)
    if results_dir is None or hasattr(config, "workerinput"):  # xdist workers share the controller's
        return
    results_dir.mkdir(parents=True, exist_ok=True)
    _copy_history_forward(config, results_dir)
    write_environment_properties(results_dir, environment_facts(config))
    write_executor_json(results_dir)
    write_categories_json(results_dir)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    # Facts found during the run (cluster version after connecting) land in the stash later.
    results_dir = _results_dir(session.config)
    if results_dir is not None and not hasattr(session.config, "workerinput") and results_dir.is_dir():
        write_environment_properties(results_dir, environment_facts(session.config))


# --- scenario metadata ------------------------------------------------------------------------

def pytest_bdd_before_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    request.node.stash[_PROGRESS_KEY] = _ScenarioProgress(steps=list(scenario.steps))

    allure.dynamic.feature(feature.name)
    allure.dynamic.story(scenario.name)
    allure.dynamic.title(scenario.name)
    description = "\n\n".join(
        text.strip() for text in (feature.description, scenario.description) if text and text.strip()
    )
    if description:
        allure.dynamic.description(description)

    example = _example_row(request.node)
    if example:
        _drop_raw_example_parameter(request.config)
        for name, value in example.items():
            allure.dynamic.parameter(name, value)

    _apply_tags(request, scenario)
    if request.node.stash.get(KNOWN_ISSUE_KEY, None) is not None and request.node.stash[KNOWN_ISSUE_KEY].problem:
        _list_steps_not_run(request.node.stash[_PROGRESS_KEY])
        fail_on_known_issue_bookkeeping(request.node)


def _example_row(item: pytest.Item) -> Mapping[str, str] | None:
    callspec = getattr(item, "callspec", None)
    row = callspec.params.get("_pytest_bdd_example") if callspec else None
    return row if isinstance(row, Mapping) else None


def _drop_raw_example_parameter(config: pytest.Config) -> None:
    # allure-pytest lists pytest-bdd's internal parametrize argument as one dict-valued parameter;
    # the per-column parameters replace it (and give each row its own history id).
    test_result = current_test_result(config)
    if test_result is not None:
        test_result.parameters[:] = [p for p in test_result.parameters if p.name != "_pytest_bdd_example"]


def _apply_tags(request: pytest.FixtureRequest, scenario: Any) -> None:
    marker_names = {mark.name for mark in request.node.iter_markers()}
    rule_tags = scenario.rule.tags if getattr(scenario, "rule", None) else set()
    # Markers include the feature's and the Examples table's tags too.
    tags = set(scenario.tags) | set(scenario.feature.tags) | set(rule_tags) | marker_names
    family_tags = set()
    for tag in sorted(tags):
        match = TAG_FAMILY.match(tag)
        if match and _apply_family_tag(match["family"], match["value"]):
            family_tags.add(tag)
        elif tag not in marker_names and (tag in scenario.tags or tag in scenario.feature.tags):
            allure.dynamic.tag(tag)  # a conftest's apply_tag hook consumed it, so no marker → no tag yet
    request.node.stash[_FAMILY_TAGS_KEY] = family_tags


def _apply_family_tag(family: str, value: str) -> bool:
    if family == "issue":
        allure.dynamic.issue(value)
    elif family == "severity":
        if value not in _SEVERITIES:
            logger.warning("unknown severity tag @severity_%s (use one of %s)", value, sorted(_SEVERITIES))
            return False
        allure.dynamic.severity(Severity(value))
    else:
        allure.dynamic.label("owner", value)
    return True


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Runs after allure-pytest has copied every marker into a "tag" label: @issue_8001 and
    # friends are already shown as a link/severity/owner, so drop their duplicate tags.
    try:
        return (yield)
    finally:
        family_tags = item.stash.get(_FAMILY_TAGS_KEY, set())
        test_result = current_test_result(item.config) if family_tags else None
        if test_result is not None:
            test_result.labels[:] = [
                label for label in test_result.labels
                if not (label.name == LabelType.TAG and label.value in family_tags)
            ]
        report_known_issue_outcome(item)


# --- matrix cell and known issues ---------------------------------------------------------------

def pytest_runtest_setup(item: pytest.Item) -> None:
    # Inside allure-pytest's setup wrapper, so the result exists; parameters set here count in historyId.
    cell = item.config.stash.get(CELL_KEY, None)
    if cell is not None and current_test_result(item.config) is not None:
        allure.dynamic.parameter("cell", cell.title, excluded=True)  # the values below identify it
        for name, value in cell.parameters.items():
            allure.dynamic.parameter(f"{CELL_PARAMETER_PREFIX}{name}", value)
    if "_pytest_bdd_example" not in getattr(item, "fixturenames", ()):  # scenarios fail in before_scenario,
        fail_on_known_issue_bookkeeping(item)                           # with their title and steps shown


# --- steps ---------------------------------------------------------------------------------------


# --- captured output ------------------------------------------------------------------------------


