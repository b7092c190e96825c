"""What a scenario ran against, recorded by its steps: the facts known issues and the report depend on.

Names are the matrix cell's parameter names, so a cell and a lone run say the same thing:
`harvester_from` (the version the cluster ran when the scenario began), `harvester_to` (an upgrade's
target), `rancher`, `ui_extension` (the dashboard's releases), `rke2` (a guest cluster's RKE2).
"""
from __future__ import annotations

import allure
import pytest

FACTS_KEY = pytest.StashKey[dict[str, str]]()


class ScenarioFacts:
    """The `facts` fixture: set once per fact and scenario; each fact is also an Allure parameter."""

    def __init__(self, item: pytest.Item) -> None:
        self._facts = item.stash.setdefault(FACTS_KEY, {})

    def record(self, name: str, value: str) -> None:
        if self._facts.get(name) == value:
            return
        self._facts[name] = value
        allure.dynamic.parameter(name, value)

    def get(self, name: str) -> str | None:
        return self._facts.get(name)

    def as_dict(self) -> dict[str, str]:
        return dict(self._facts)


def facts_of(item: pytest.Item) -> dict[str, str]:
    found = item.stash.get(FACTS_KEY, None)
    return dict(found) if found is not None else {}
