"""Known issues judged after a scenario ran (infra/report/known_issues.py): an expected failure on the
versions an issue affects when it shows the issue's way, a change when it passes there, an ordinary
scenario elsewhere. A pytest plugin (loaded by infra.report.plugin); the `facts` fixture lives here.
"""
from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import allure
import pytest
from allure_commons.model2 import StatusDetails

from infra.report.attach import attach_text
from infra.report.facts import ScenarioFacts, facts_of
from infra.report.keys import CELL_KEY, FAILED_STEP_KEY, KNOWN_ISSUE_MARKER, TAG_FAMILY, current_test_result
from infra.report.known_issues import (KNOWN_ISSUES_FILE, Judgement, KnownIssue, KnownIssuesError, issue_ref, judge,
                                       load_known_issues)


@dataclass(frozen=True)
class _KnownIssueExpectation:
    """The issues a ``@known_issue`` scenario links, as the known-issues file describes them."""

    issues: tuple[tuple[int, KnownIssue], ...]
    refs: tuple[str, ...]
    problem: str = ""       # a bookkeeping problem (no issue tag, an issue not in the file)


KNOWN_ISSUE_KEY = pytest.StashKey[_KnownIssueExpectation]()


_XPASS_STRICT_KEY = pytest.StashKey[str]()  # the xfail reason of a strict xfail that passed


_JUDGEMENT_KEY = pytest.StashKey[Judgement]()


def fail_on_known_issue_bookkeeping(item: pytest.Item) -> None:
    expectation = item.stash.get(KNOWN_ISSUE_KEY, None)
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
        item.stash[KNOWN_ISSUE_KEY] = _known_issue_expectation(item, known, problem)


def _known_issue_expectation(item: pytest.Item, known: Any, problem: str | None) -> _KnownIssueExpectation:
    numbers = sorted({int(match["value"]) for mark in item.iter_markers()
                      if (match := TAG_FAMILY.match(mark.name)) and match["family"] == "issue"
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
    cell = item.config.stash.get(CELL_KEY, None)
    return {**(cell.parameters if cell is not None else {}), **facts_of(item)}


def _judge(item: pytest.Item, failure: BaseException | None) -> Judgement | None:
    """The verdict of the first linked issue that applies (an affected one decides; else unaffected)."""
    expectation = item.stash.get(KNOWN_ISSUE_KEY, None)
    if expectation is None or expectation.problem:
        return None
    facts, step = _facts_for_judging(item), item.stash.get(FAILED_STEP_KEY, None)
    judgements = [judge(number, issue, facts, failure, step) for number, issue in expectation.issues]
    known = [j for j in judgements if j.verdict == "known"]
    applicable = [j for j in judgements if j.verdict != "unaffected"]
    ranked = known or applicable or judgements
    return ranked[0] if ranked else None


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
def pytest_runtest_makereport_known_issue(item: pytest.Item, call: pytest.CallInfo
                                          ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Outermost: sees the report after pytest's xfail handling has decided the outcome.
    report = yield
    if report.when == "call" and report.failed and isinstance(report.longrepr, str) \
            and report.longrepr.startswith("[XPASS(strict)]"):
        item.stash[_XPASS_STRICT_KEY] = report.longrepr.removeprefix("[XPASS(strict)]").strip()
    return report


def report_known_issue_outcome(item: pytest.Item) -> None:
    """Word a known-issue scenario's outcome in the Allure result so the categories file can file it."""
    judgement = item.stash.get(_JUDGEMENT_KEY, None)
    xpass_reason = item.stash.get(_XPASS_STRICT_KEY, None)
    test_result = current_test_result(item.config)
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
