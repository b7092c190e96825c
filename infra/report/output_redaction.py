"""Secrets stay out of everything pytest and Allure write: captured output is redacted before anything
attaches it, and every result field and text attachment is redacted on its way to the results folder.
A pytest plugin (loaded by infra.report.plugin)."""
from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import Any

import allure_commons
import attr
import pytest

from infra.report.redact import REDACTOR


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
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
