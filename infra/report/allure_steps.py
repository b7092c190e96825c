"""Gherkin steps as Allure steps: each step opens one; after a failure the steps that never ran are
listed as skipped "not run" steps; a failure's `evidence` (and its causes') is attached, redacted.

A pytest plugin (loaded by infra.report.plugin).
"""
from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import allure
import pytest

from infra.report.attach import DEFAULT_MAX_BYTES, attach_evidence, attach_text
from infra.report.keys import FAILED_STEP_KEY
from infra.report.redact import REDACTOR


NOT_RUN = "not run"


@dataclass
class _ScenarioProgress:
    """Where a running scenario is, so unfinished steps can be closed and the rest listed."""

    steps: list
    next_index: int = 0
    open_step: Any = None
    ended: bool = False


_PROGRESS_KEY = pytest.StashKey[_ScenarioProgress]()


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
    request.node.stash.setdefault(FAILED_STEP_KEY, step.name)     # the first step that failed
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
