"""The one base of the failures a scenario reports about the product: a sentence and its evidence.

`evidence` maps a title to what a person needs to see (objects, tables, log tails); the report plugin
attaches it, redacted, to the failed step. A failure is an AssertionError: the product did not do what
the scenario expects (infrastructure problems raise other exceptions and land in other categories).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ProductFailure(AssertionError):
    def __init__(self, summary: str, evidence: Mapping[str, Any] | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.evidence: dict[str, Any] = dict(evidence or {})

    def __str__(self) -> str:
        return self.summary
