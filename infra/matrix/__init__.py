"""Test matrices: ``ci/matrix/*.yaml`` expanded into cells, run side by side, merged into one report.

``spec`` (the file and its expansion), ``cell`` (one cell; ``current_cell()`` inside a run), ``selection``
(pytest plugin: a cell runs only its own Examples rows), ``runner`` (cells as ``harvester-e2e run``
processes), ``merge`` (one Allure folder, one JUnit file), ``cli`` (``harvester-e2e matrix``).
"""
from infra.matrix.cell import ChartPair, MatrixCell, current_cell

__all__ = ["ChartPair", "MatrixCell", "current_cell"]
