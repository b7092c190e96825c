"""Names the report plugins share: stash keys, markers, tag families (one place each)."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from infra.report.run_files import MatrixCellInfo  # noqa: F401 - named in a string annotation

ENVIRONMENT_KEY = pytest.StashKey[dict]()
"""The lead's conftest puts run facts here (versions, node count, ISO checksum, backend)."""
CELL_KEY = pytest.StashKey["MatrixCellInfo | None"]()
FAILED_STEP_KEY = pytest.StashKey[str]()      # the text of the first Gherkin step that failed
KNOWN_ISSUE_MARKER = "known_issue"
TAG_FAMILY = re.compile(r"^(?P<family>issue|severity|owner)_(?P<value>.+)$")


def current_test_result(config: pytest.Config) -> Any:
    """allure-pytest's result object of the running test (None without Allure)."""
    listener = config.pluginmanager.get_plugin("allure_listener")
    reporter = getattr(listener, "allure_logger", None)
    return reporter.get_test(None) if reporter is not None else None
