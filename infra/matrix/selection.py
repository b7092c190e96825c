"""pytest plugin for matrix cells: run only the Examples rows that belong to this cell.

A story's Scenario Outline lists its versions in Examples (``| version |``, ``| from | to |``). In a matrix
cell for v1.4.2 -> master-head, a row whose ``version`` is v1.5.1 belongs to another cell: it is
deselected here (shown in pytest's "deselected" count), so every row runs once across the matrix, on
the cell whose cluster it needs. Which columns compare to which cell parameters is the matrix file's
``columns`` map. Loaded by ``harvester-e2e matrix`` with ``-p infra.matrix.selection``; does nothing
outside a cell.
"""
from __future__ import annotations

from collections.abc import Mapping

import pytest

from infra.matrix.cell import MatrixCell, current_cell


def belongs_to_cell(row: Mapping[str, str] | None, cell: MatrixCell) -> bool:
    if not row:
        return True
    for column, parameter in cell.columns.items():
        if column in row and parameter in cell.parameters and str(row[column]) != cell.parameters[parameter]:
            return False
    return True


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    cell = current_cell()
    if cell is None:
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        row = callspec.params.get("_pytest_bdd_example") if callspec else None
        (keep if belongs_to_cell(row if isinstance(row, Mapping) else None, cell) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
