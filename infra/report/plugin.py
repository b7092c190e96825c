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

import json
import logging
import os
import platform
import re
import shutil
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import allure
import allure_commons
import attr
import pytest
from allure_commons.model2 import StatusDetails
from allure_commons.types import LabelType, Severity

from infra.report.attach import DEFAULT_MAX_BYTES, attach_evidence, attach_text
from infra.report.categories import CATEGORIES_FILE
from infra.report.facts import ScenarioFacts, facts_of
from infra.report.known_issues import (KNOWN_ISSUES_FILE, Judgement, KnownIssue, KnownIssuesError, issue_ref, judge,
                                       load_known_issues)
from infra.report.matrix_cell import CELL_ENV_VAR, CELL_PARAMETER_PREFIX
from infra.report.redact import REDACTOR, install_log_redaction, uninstall_log_redaction

logger = logging.getLogger(__name__)

ENVIRONMENT_KEY = pytest.StashKey[dict]()
"""The lead's conftest puts run facts here (versions, node count, ISO checksum, backend)."""

DEFAULT_ISSUE_LINK_PATTERN = "https://github.com/harvester/harvester/issues/{}"
DEFAULT_HISTORY_FROM = Path("allure-report") / "history"
NOT_RUN = "not run"
KNOWN_ISSUE_MARKER = "known_issue"

_TAG_FAMILY = re.compile(r"^(?P<family>issue|severity|owner)_(?P<value>.+)$")
_SEVERITIES = {level.value for level in Severity}
_FEATURE_TAG = re.compile(r"(?<!\S)@([^\s@#]+)")


@dataclass
class _ScenarioProgress:
    """Where a running scenario is, so unfinished steps can be closed and the rest listed."""

    steps: list
    next_index: int = 0
    open_step: Any = None
    ended: bool = False


@dataclass(frozen=True)
class MatrixCellInfo:
    """The part of a matrix cell the report needs: its id, a title for people, and its parameters."""

    id: str
    title: str
    parameters: dict[str, str]


@dataclass(frozen=True)
class _KnownIssueExpectation:
    """The issues a ``@known_issue`` scenario links, as the known-issues file describes them."""

    issues: tuple[tuple[int, KnownIssue], ...]
    refs: tuple[str, ...]
    problem: str = ""       # a bookkeeping problem (no issue tag, an issue not in the file)


_PROGRESS_KEY = pytest.StashKey[_ScenarioProgress]()
_FAMILY_TAGS_KEY = pytest.StashKey[set]()
_CELL_KEY = pytest.StashKey["MatrixCellInfo | None"]()
_KNOWN_ISSUE_KEY = pytest.StashKey[_KnownIssueExpectation]()
_XPASS_STRICT_KEY = pytest.StashKey[str]()  # the xfail reason of a strict xfail that passed
_JUDGEMENT_KEY = pytest.StashKey[Judgement]()
_FAILED_STEP_KEY = pytest.StashKey[str]()


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
    _add_default_issue_link_pattern(config)
    config.stash[_CELL_KEY] = matrix_cell_from_env(os.environ)
    config.addinivalue_line("markers", f"{KNOWN_ISSUE_MARKER}: expected to fail because of the linked open issue")
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
    """Tags like ``issue_8750`` in the project's feature files (they have no fixed list)."""
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
                    tags.update(t for t in _FEATURE_TAG.findall(line.split(" #")[0]) if _TAG_FAMILY.match(t))
    return tags


def _describe_family_tag(tag: str) -> str:
    match = _TAG_FAMILY.match(tag)
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


def environment_facts(config: pytest.Config) -> dict[str, str]:
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "pytest": pytest.__version__,
    }
    for package in ("pytest-bdd", "allure-pytest"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    for extra in (config.stash.get(ENVIRONMENT_KEY, None), getattr(config, "_harvester_environment", None)):
        if isinstance(extra, Mapping):
            facts.update({str(k): "" if v is None else str(v) for k, v in extra.items()})
    cell = config.stash.get(_CELL_KEY, None)
    if cell is not None:
        facts["matrix.cell"] = cell.id
        facts["matrix.title"] = cell.title
        facts.update({f"matrix.{name}": value for name, value in cell.parameters.items()})
    return facts


def write_categories_json(results_dir: Path, source: Path = CATEGORIES_FILE) -> Path:
    """Copy the repository's failure categories into a results directory (Allure reads them there)."""
    path = results_dir / "categories.json"
    shutil.copyfile(source, path)
    return path


def matrix_cell_from_env(env: Mapping[str, str]) -> MatrixCellInfo | None:
    raw = env.get(CELL_ENV_VAR)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        cell = MatrixCellInfo(id=str(data["id"]), title=str(data.get("title") or data["id"]),
                              parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()})
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise pytest.UsageError(f"{CELL_ENV_VAR}: not a matrix cell ({error!r}); expected JSON like "
                                '{"id": "c01", "parameters": {"harvester_from": "v1.4.2"}}') from None
    return cell


def write_environment_properties(results_dir: Path, facts: Mapping[str, str]) -> Path:
    # redact_data also catches values whose key names them secret ("api.token": "...").
    safe_facts = REDACTOR.redact_data({str(key): str(value) for key, value in facts.items()})
    lines = [f"{_escape_property(key, is_key=True)}={_escape_property(value)}" for key, value in safe_facts.items()]
    path = results_dir / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _escape_property(text: str, *, is_key: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if is_key:
        return re.sub(r"([ =:#!])", r"\\\1", text)
    return text


def executor_info(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Allure executor.json: where this run came from, so trends link back to CI builds."""
    env = os.environ if env is None else env
    report_url = env.get("ALLURE_REPORT_URL")
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo = env.get("GITHUB_REPOSITORY", "")
        number = env.get("GITHUB_RUN_NUMBER", env["GITHUB_RUN_ID"])
        info = {
            "name": "GitHub Actions",
            "type": "github",
            "url": f"{server}/{repo}",
            "buildOrder": _as_int(number),
            "buildName": f"{env.get('GITHUB_WORKFLOW', 'harvester-e2e')} #{number}",
            "buildUrl": f"{server}/{repo}/actions/runs/{env['GITHUB_RUN_ID']}",
        }
    elif env.get("BUILD_URL"):
        number = env.get("BUILD_NUMBER", "0")
        info = {
            "name": "Jenkins",
            "type": "jenkins",
            "url": env.get("JENKINS_URL", env["BUILD_URL"]),
            "buildOrder": _as_int(number),
            "buildName": f"{env.get('JOB_NAME', 'harvester-e2e')} #{number}",
            "buildUrl": env["BUILD_URL"],
        }
    else:
        started = int(time.time())
        info = {
            "name": "harvester-e2e",
            "type": "local",
            "buildOrder": started,
            "buildName": f"harvester-e2e on {socket.gethostname()} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}",
        }
    if report_url:
        info["reportUrl"] = report_url
    info["reportName"] = "Harvester upgrade e2e"
    return REDACTOR.redact_data(info)


def _as_int(value: str) -> int | str:
    return int(value) if str(value).isdigit() else value


def write_executor_json(results_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    path = results_dir / "executor.json"
    path.write_text(json.dumps(executor_info(env), indent=2) + "\n", encoding="utf-8")
    return path


def _copy_history_forward(config: pytest.Config, results_dir: Path) -> None:
    option = getattr(config.option, "allure_history_from", None)
    source = Path(option) if option else config.rootpath / DEFAULT_HISTORY_FROM
    if not source.is_absolute():
        source = (Path.cwd() if option else config.rootpath) / source
    history = source / "history" if (source / "history").is_dir() else source
    if not history.is_dir() or not any(history.glob("*.json")):
        return
    shutil.copytree(history, results_dir / "history", dirs_exist_ok=True)


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
    if request.node.stash.get(_KNOWN_ISSUE_KEY, None) is not None and request.node.stash[_KNOWN_ISSUE_KEY].problem:
        _list_steps_not_run(request.node.stash[_PROGRESS_KEY])
        _fail_on_known_issue_bookkeeping(request.node)


def _example_row(item: pytest.Item) -> Mapping[str, str] | None:
    callspec = getattr(item, "callspec", None)
    row = callspec.params.get("_pytest_bdd_example") if callspec else None
    return row if isinstance(row, Mapping) else None


def _drop_raw_example_parameter(config: pytest.Config) -> None:
    # allure-pytest lists pytest-bdd's internal parametrize argument as one dict-valued parameter;
    # the per-column parameters replace it (and give each row its own history id).
    test_result = _current_test_result(config)
    if test_result is not None:
        test_result.parameters[:] = [p for p in test_result.parameters if p.name != "_pytest_bdd_example"]


def _current_test_result(config: pytest.Config) -> Any:
    listener = config.pluginmanager.get_plugin("allure_listener")
    reporter = getattr(listener, "allure_logger", None)
    return reporter.get_test(None) if reporter is not None else None


def _apply_tags(request: pytest.FixtureRequest, scenario: Any) -> None:
    marker_names = {mark.name for mark in request.node.iter_markers()}
    rule_tags = scenario.rule.tags if getattr(scenario, "rule", None) else set()
    # Markers include the feature's and the Examples table's tags too.
    tags = set(scenario.tags) | set(scenario.feature.tags) | set(rule_tags) | marker_names
    family_tags = set()
    for tag in sorted(tags):
        match = _TAG_FAMILY.match(tag)
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
    # Runs after allure-pytest has copied every marker into a "tag" label: @issue_8750 and
    # friends are already shown as a link/severity/owner, so drop their duplicate tags.
    try:
        return (yield)
    finally:
        family_tags = item.stash.get(_FAMILY_TAGS_KEY, set())
        test_result = _current_test_result(item.config) if family_tags else None
        if test_result is not None:
            test_result.labels[:] = [
                label for label in test_result.labels
                if not (label.name == LabelType.TAG and label.value in family_tags)
            ]
        _report_known_issue_outcome(item)


# --- matrix cell and known issues ---------------------------------------------------------------

def pytest_runtest_setup(item: pytest.Item) -> None:
    # Inside allure-pytest's setup wrapper, so the result exists; parameters set here count in historyId.
    cell = item.config.stash.get(_CELL_KEY, None)
    if cell is not None and _current_test_result(item.config) is not None:
        allure.dynamic.parameter("cell", cell.title, excluded=True)  # the values below identify it
        for name, value in cell.parameters.items():
            allure.dynamic.parameter(f"{CELL_PARAMETER_PREFIX}{name}", value)
    if "_pytest_bdd_example" not in getattr(item, "fixturenames", ()):  # scenarios fail in before_scenario,
        _fail_on_known_issue_bookkeeping(item)                           # with their title and steps shown


def _fail_on_known_issue_bookkeeping(item: pytest.Item) -> None:
    expectation = item.stash.get(_KNOWN_ISSUE_KEY, None)
    if expectation is not None and expectation.problem:
        pytest.fail(f"known-issue bookkeeping: {expectation.problem}", pytrace=False)


@pytest.fixture
def facts(request: pytest.FixtureRequest) -> ScenarioFacts:
    """What this scenario runs against (versions, releases), recorded by its steps."""
    return ScenarioFacts(request.node)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    tagged = [item for item in items if item.get_closest_marker(KNOWN_ISSUE_MARKER) is not None]
    if not tagged:
        return
    option = getattr(config.option, "known_issues_file", None)
    source = Path(option) if option else KNOWN_ISSUES_FILE
    try:
        known, problem = load_known_issues(source), None
    except KnownIssuesError as error:
        known, problem = None, str(error)
    for item in tagged:
        item.stash[_KNOWN_ISSUE_KEY] = _known_issue_expectation(item, known, problem)


def _known_issue_expectation(item: pytest.Item, known: Any, problem: str | None) -> _KnownIssueExpectation:
    numbers = sorted({int(match["value"]) for mark in item.iter_markers()
                      if (match := _TAG_FAMILY.match(mark.name)) and match["family"] == "issue"
                      and match["value"].isdigit()})
    refs = tuple(issue_ref(number) for number in numbers)
    if not numbers:
        return _KnownIssueExpectation((), refs, "@known_issue needs the issue it reproduces, "
                                                "e.g. @issue_8001 (harvester/harvester#8001)")
    if known is None:
        return _KnownIssueExpectation((), refs, problem or "no known-issues file")
    missing = [number for number in numbers if known.get(number) is None]
    if missing:
        return _KnownIssueExpectation((), refs, ", ".join(issue_ref(n) for n in missing)
                                      + f" not listed in {known.source}; add it (state, affects, shows) there")
    return _KnownIssueExpectation(tuple((n, known.get(n)) for n in numbers), refs)


def _facts_for_judging(item: pytest.Item) -> dict[str, str]:
    cell = item.config.stash.get(_CELL_KEY, None)
    return {**(cell.parameters if cell is not None else {}), **facts_of(item)}


def _judge(item: pytest.Item, failure: BaseException | None) -> Judgement | None:
    """The verdict of the first linked issue that applies (an affected one decides; else unaffected)."""
    expectation = item.stash.get(_KNOWN_ISSUE_KEY, None)
    if expectation is None or expectation.problem:
        return None
    facts, step = _facts_for_judging(item), item.stash.get(_FAILED_STEP_KEY, None)
    judgements = [judge(number, issue, facts, failure, step) for number, issue in expectation.issues]
    known = [j for j in judgements if j.verdict == "known"]
    applicable = [j for j in judgements if j.verdict != "unaffected"]
    return (known or applicable or judgements or [None])[0]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    # The scenario's outcome is judged here, where the failure is still an exception: an expected one
    # becomes pytest's xfail, a pass on an affected version a failure; anything else stays what it was.
    try:
        result = yield
    except (pytest.skip.Exception, KeyboardInterrupt):
        raise
    except BaseException as failure:
        judgement = _judge(item, failure)
        if judgement is not None:
            item.stash[_JUDGEMENT_KEY] = judgement
            if judgement.verdict == "known":
                raise pytest.xfail.Exception(judgement.text) from failure
            if judgement.verdict == "other-failure":
                item.add_report_section("call", "known issue", judgement.text)
        raise
    judgement = _judge(item, None)
    if judgement is not None:
        item.stash[_JUDGEMENT_KEY] = judgement
        if judgement.verdict == "no-longer-reproduces":
            pytest.fail(judgement.text, pytrace=False)
    return result


@pytest.hookimpl(specname="pytest_runtest_makereport", wrapper=True, tryfirst=True)
def pytest_runtest_makereport_known_issue(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    # Outermost: sees the report after pytest's xfail handling has decided the outcome.
    report = yield
    if report.when == "call" and report.failed and isinstance(report.longrepr, str) \
            and report.longrepr.startswith("[XPASS(strict)]"):
        item.stash[_XPASS_STRICT_KEY] = report.longrepr.removeprefix("[XPASS(strict)]").strip()
    return report


def _report_known_issue_outcome(item: pytest.Item) -> None:
    """Word a known-issue scenario's outcome in the Allure result so the categories file can file it."""
    judgement = item.stash.get(_JUDGEMENT_KEY, None)
    xpass_reason = item.stash.get(_XPASS_STRICT_KEY, None)
    test_result = _current_test_result(item.config)
    if test_result is None or (judgement is None and xpass_reason is None):
        return
    if judgement is not None and judgement.verdict in ("known", "no-longer-reproduces"):
        details = test_result.statusDetails or StatusDetails()
        details.message = judgement.text
        test_result.statusDetails = details
        allure_link = f"https://github.com/{judgement.issue.repo}/issues/{judgement.number}"
        if not any(link.url == allure_link for link in test_result.links):
            allure.dynamic.link(allure_link, name=issue_ref(judgement.number, judgement.issue.repo))
    elif judgement is not None and judgement.verdict == "other-failure":
        # A real failure keeps its own message and category; the report says it is not the known one.
        attach_text("known issue", judgement.text)
    elif xpass_reason is not None and test_result.statusDetails is None:
        test_result.statusDetails = StatusDetails(message=f"XPASS(strict) {xpass_reason}: the scenario passed")


# --- steps ---------------------------------------------------------------------------------------

def step_title(step: Any) -> str:
    return f"{step.keyword.strip()} {step.name}"


def pytest_bdd_before_step(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                           step_func: Any) -> None:
    progress = _progress(request, scenario)
    progress.next_index = _index_of(progress.steps, step) + 1
    progress.open_step = allure.step(REDACTOR.redact_text(step_title(step)))
    progress.open_step.__enter__()
    if step.docstring:
        attach_text("docstring", step.docstring)
    if step.datatable is not None:
        attach_text("datatable", _format_datatable(step.datatable.raw()))


def pytest_bdd_after_step(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                          step_func: Any, step_func_args: dict) -> None:
    _close_open_step(_progress(request, scenario), None)


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                          step_func: Any, step_func_args: dict, exception: BaseException) -> None:
    request.node.stash.setdefault(_FAILED_STEP_KEY, step.name)     # the first step that failed
    progress = _progress(request, scenario)
    for evidence in _evidence_of(exception):
        attach_evidence(evidence, max_bytes=DEFAULT_MAX_BYTES)
    _close_open_step(progress, exception)
    _list_steps_not_run(progress)


def pytest_bdd_step_func_lookup_error(request: pytest.FixtureRequest, feature: Any, scenario: Any,
                                      step: Any, exception: BaseException) -> None:
    progress = _progress(request, scenario)
    progress.next_index = _index_of(progress.steps, step) + 1
    progress.open_step = allure.step(REDACTOR.redact_text(step_title(step)))
    progress.open_step.__enter__()
    _close_open_step(progress, exception)
    _list_steps_not_run(progress)


def pytest_bdd_after_scenario(request: pytest.FixtureRequest, feature: Any, scenario: Any) -> None:
    # A step left open here was interrupted by something the step hooks do not see
    # (pytest.skip(), KeyboardInterrupt); this hook runs in pytest-bdd's `finally`.
    progress = request.node.stash.get(_PROGRESS_KEY, None)
    if progress is None or progress.ended:
        return
    in_flight = sys.exc_info()[1]
    if progress.open_step is not None:
        _close_open_step(progress, in_flight or RuntimeError("step did not finish"))
    if in_flight is not None and progress.next_index < len(progress.steps):
        _list_steps_not_run(progress)
    progress.ended = True


def _progress(request: pytest.FixtureRequest, scenario: Any) -> _ScenarioProgress:
    progress = request.node.stash.get(_PROGRESS_KEY, None)
    if progress is None:  # before_scenario skipped by another plugin; keep working without it
        progress = request.node.stash[_PROGRESS_KEY] = _ScenarioProgress(steps=list(scenario.steps))
    return progress


def _index_of(steps: list, step: Any) -> int:
    return next((i for i, candidate in enumerate(steps) if candidate is step), len(steps) - 1)


def _close_open_step(progress: _ScenarioProgress, exception: BaseException | None) -> None:
    context, progress.open_step = progress.open_step, None
    if context is None:
        return
    if exception is None:
        context.__exit__(None, None, None)
    else:
        context.__exit__(type(exception), exception, exception.__traceback__)


def _list_steps_not_run(progress: _ScenarioProgress) -> None:
    not_run = pytest.skip.Exception(NOT_RUN)
    for step in progress.steps[progress.next_index:]:
        context = allure.step(REDACTOR.redact_text(step_title(step)))
        context.__enter__()
        context.__exit__(type(not_run), not_run, None)
    progress.next_index = len(progress.steps)
    progress.ended = True


def _evidence_of(exception: BaseException) -> Iterator[Mapping]:
    """``evidence`` mappings on the exception and its causes (outermost first, each once)."""
    seen: set[int] = set()
    current: BaseException | None = exception
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        evidence = getattr(current, "evidence", None)
        if isinstance(evidence, Mapping) and evidence:
            yield evidence
        current = current.__cause__ or current.__context__


def _format_datatable(rows: list[list[str]]) -> str:
    widths = [max(len(str(row[i])) for row in rows if i < len(row)) for i in range(max(map(len, rows), default=0))]
    return "\n".join(
        "| " + " | ".join(str(cell).ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows
    )


# --- captured output ------------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    # Innermost wrapper: captured stdout/stderr/log are redacted before allure-pytest attaches them
    # (and before the terminal and JUnit XML show them).
    report = yield
    report.sections = [(title, REDACTOR.redact_text(content)) for title, content in report.sections]
    return report


class _AllureOutputRedactor:
    """Last line of defence: nothing reaches the results dir unredacted.

    Result fields (names, messages, traces, parameters, links) are redacted before they are
    written; text attachments written by anyone (allure.attach in step code, allure-pytest's
    captured output) are re-read and rewritten if they contain a secret.
    """

    _MAX_SCRUB_BYTES = 64 * 1024 * 1024

    def __init__(self, results_dir: Path | None) -> None:
        self.results_dir = results_dir

    @allure_commons.hookimpl(tryfirst=True)
    def report_result(self, result: Any) -> None:
        _redact_attrs_in_place(result)

    @allure_commons.hookimpl(tryfirst=True)
    def report_container(self, container: Any) -> None:
        _redact_attrs_in_place(container)

    @allure_commons.hookimpl(tryfirst=True)
    def report_globals(self, globals_item: Any) -> None:
        _redact_attrs_in_place(globals_item)

    @allure_commons.hookimpl(trylast=True)
    def report_attached_data(self, body: Any, file_name: str) -> None:
        self._scrub(file_name)

    @allure_commons.hookimpl(trylast=True)
    def report_attached_file(self, source: Any, file_name: str) -> None:
        self._scrub(file_name)

    def _scrub(self, file_name: str) -> None:
        if self.results_dir is None:
            return
        path = self.results_dir / file_name
        try:
            if not path.is_file() or path.stat().st_size > self._MAX_SCRUB_BYTES:
                return
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):  # binary attachments cannot be redacted
            return
        redacted = REDACTOR.redact_text(text)
        if redacted != text:
            temporary = path.with_name(path.name + ".redacting")
            temporary.write_text(redacted, encoding="utf-8")
            os.replace(temporary, path)


_NOT_REDACTED_FIELDS = {"uuid", "historyId", "testCaseId", "source", "type", "status", "stage", "children"}


def _redact_attrs_in_place(obj: Any) -> None:
    if not attr.has(type(obj)):
        return
    for attribute in attr.fields(type(obj)):
        if attribute.name in _NOT_REDACTED_FIELDS:
            continue
        value = getattr(obj, attribute.name)
        if isinstance(value, str):
            setattr(obj, attribute.name, REDACTOR.redact_text(value))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, str):
                    value[index] = REDACTOR.redact_text(item)
                else:
                    _redact_attrs_in_place(item)
        else:
            _redact_attrs_in_place(value)
