"""pytest plugin for matrix cells: run only the Examples rows that belong to this cell.

A story's Scenario Outline lists its versions in Examples (``| version |``, ``| from | to |``). In a matrix
cell for v1.4.2 -> master-ce188325-head, a row whose ``version`` is v1.5.1 belongs to another cell: it is
deselected here (shown in pytest's "deselected" count), so every row runs once across the matrix, on
the cell whose cluster it needs. Which columns compare to which cell parameters is the matrix file's
``columns`` map; its ``steps`` patterns do the same for plain Scenarios ("Given a Harvester cluster at
version v1.5.0-rc2" runs in the v1.5.0-rc2 cells only). Loaded by ``harvester-e2e matrix`` with
``-p infra.matrix.selection``; does nothing outside a cell.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import parse
import pytest

from infra.matrix.cell import MatrixCell, current_cell


def same_version(value: str, cell_value: str) -> bool:
    """A story's value matches the cell's when equal, with or without the leading "v", or when the cell names a
    line the value belongs to: RKE2 line v1.31 takes v1.31.6+rke2r1, Rancher v2.10 takes 2.10 and 2.10.3.
    v1.5.0 does not take v1.5.0-rc2."""
    value, cell_value = str(value).removeprefix("v"), str(cell_value).removeprefix("v")
    return value == cell_value or value.startswith(cell_value + ".") or value.startswith(cell_value + "+")


def belongs_to_cell(row: Mapping[str, str] | None, cell: MatrixCell) -> bool:
    if not row:
        return True
    for column, parameter in cell.columns.items():
        if column in row and parameter in cell.parameters and not same_version(row[column], cell.parameters[parameter]):
            return False
    return True


def steps_belong_to_cell(step_texts: Iterable[str], cell: MatrixCell) -> bool:
    patterns = [parse.compile(pattern) for pattern in cell.steps]
    for text in step_texts:
        for pattern in patterns:
            found = pattern.parse(text)
            if found is None:
                continue
            for name, value in found.named.items():
                if name in cell.parameters and not same_version(value, cell.parameters[name]):
                    return False
    return True


def _step_texts(item: pytest.Item, row: Mapping[str, str] | None) -> list[str]:
    """The scenario's steps with the Examples row filled in (empty when pytest-bdd does not say)."""
    try:
        from pytest_bdd.scenario import scenario_wrapper_template_registry
    except ImportError:
        return []
    function = getattr(item, "obj", None)
    template: Any = scenario_wrapper_template_registry.get(function) if function is not None else None
    if template is None:
        return []
    return [step.name for step in template.render(dict(row or {})).steps]


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    cell = current_cell()
    if cell is None:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        row = callspec.params.get("_pytest_bdd_example") if callspec else None
        row = row if isinstance(row, Mapping) else None
        belongs = belongs_to_cell(row, cell) and (not cell.steps or steps_belong_to_cell(_step_texts(item, row), cell))
        (keep if belongs else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
