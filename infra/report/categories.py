"""Failure categories: the repository's ``ci/allure/categories.json``, and the same sorting in Python.

The file is Allure's own format (``name``, ``matchedStatuses``, ``messageRegex``, ``traceRegex``; the
first matching entry wins). The report plugin copies it into every results directory; the release
gate uses :func:`classify` so that it sorts results exactly as the report shows them.

The regexes are written to mean the same under every engine that reads them: Allure 2 (Java,
whole-message match), Allure 3 (JavaScript, search) and this module (whole-message match): each
starts with ``^`` and ends with ``[\\s\\S]*``.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CATEGORIES_FILE = REPO_ROOT / "ci" / "allure" / "categories.json"

# Names the harness itself produces or tests for; kept here so code and the JSON file agree.
KNOWN_ISSUE_PASSES = "Known issue no longer reproduces"
KNOWN_PRODUCT_ISSUE = "Known product issue"
INFRASTRUCTURE_PREFIX = "Infrastructure"
INFRA_PROVISIONING = "Infrastructure: provisioning"
INFRA_CELL_MISSING = "Infrastructure: cell never reported"
INFRA_API_UNAVAILABLE = "Infrastructure: API unavailable"
INFRA_SSH = "Infrastructure: SSH"
HARNESS_DEFECT = "Harness defect"
PRODUCT_DEFECT = "Product defect"
UNCATEGORISED = "Uncategorised"


@dataclass(frozen=True)
class Category:
    name: str
    statuses: frozenset[str]
    message: re.Pattern[str] | None
    trace: re.Pattern[str] | None

    def matches(self, status: str, message: str, trace: str) -> bool:
        if self.statuses and status not in self.statuses:
            return False
        if self.message is not None and not self.message.fullmatch(message):
            return False
        return self.trace is None or bool(self.trace.fullmatch(trace))


def load_categories(path: Path = CATEGORIES_FILE) -> tuple[Category, ...]:
    return _load(str(path))


@lru_cache(maxsize=8)
def _load(path: str) -> tuple[Category, ...]:
    entries = json.loads(Path(path).read_text(encoding="utf-8"))
    return tuple(
        Category(
            name=entry["name"],
            statuses=frozenset(entry.get("matchedStatuses") or ("failed", "broken")),
            message=re.compile(entry["messageRegex"]) if entry.get("messageRegex") is not None else None,
            trace=re.compile(entry["traceRegex"]) if entry.get("traceRegex") is not None else None,
        )
        for entry in entries
    )


def classify(status: str, message: str | None, trace: str | None = None,
             categories: tuple[Category, ...] | None = None) -> str | None:
    """The category Allure shows for a result, or None (passed, plain skips); unmatched failures are
    ``Uncategorised``."""
    for category in categories if categories is not None else load_categories():
        if category.matches(status, message or "", trace or ""):
            return category.name
    return UNCATEGORISED if status in ("failed", "broken") else None


def classify_result(result: Mapping[str, Any], categories: tuple[Category, ...] | None = None) -> str | None:
    """Category of one ``*-result.json`` document."""
    details = result.get("statusDetails") or {}
    return classify(str(result.get("status") or "unknown"), details.get("message"), details.get("trace"),
                    categories)


def is_infrastructure(category: str | None) -> bool:
    return category is not None and category.startswith(INFRASTRUCTURE_PREFIX)
