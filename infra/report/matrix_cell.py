"""How a run learns it is a matrix cell, and how the report names the cell's parameters.

Shared by the report plugin (reader) and ``infra.matrix`` (writer) without either importing the other's
machinery (the plugin must not be imported before pytest registers it).
"""

CELL_ENV_VAR = "HARVESTER_MATRIX_CELL"
"""JSON ``{"id": "c01", "title": "...", "parameters": {"harvester_from": "v1.4.2", ...}}`` naming the matrix cell
of this run. (Not ``HARVESTER_E2E_*``: that prefix is the run configuration's, which rejects unknown keys.)"""

CELL_PARAMETER_PREFIX = "cell."
"""Allure parameter names of a cell's values: ``cell.harvester_from``, ``cell.rancher``, ..."""
