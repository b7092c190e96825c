"""A test matrix as data (``ci/matrix/*.yaml``) and its expansion into cells.

The axes are multiplied: every Harvester from/to pair x every Rancher line x every RKE2 line x every
chart pair; ``exclude`` entries remove the cells they match (a partial match: only the keys given), and
``include`` entries add whole cells. Every cell keeps the matrix-wide settings (backend, markers, run
configuration overrides) unless its include entry says otherwise.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra.matrix.cell import (
    BACKEND,
    HARVESTER_FROM,
    HARVESTER_TO,
    RANCHER,
    RKE2,
    MatrixCell,
)
from infra.validation import InputError, load_mapping, one_line

DEFAULT_COLUMNS = {"version": HARVESTER_FROM, "from": HARVESTER_FROM, "to": HARVESTER_TO,
                   "rancher": RANCHER, "rke2": RKE2}
DEFAULT_STEPS = ("a Harvester cluster at version {harvester_from}",)


class MatrixError(ValueError):
    """The matrix file is missing or wrong; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class VersionPair(_Model):
    from_version: str = Field(alias="from")
    to_version: str | None = Field(None, alias="to")


class Cell(_Model):
    """An explicit cell (``include``): the same keys as one combination of the axes."""

    harvester: VersionPair
    rancher: str | None = None
    rke2: str | None = None
    charts: dict[str, VersionPair] = {}
    backend: str | None = None
    markers: str | None = None
    expected_minutes: float | None = Field(None, gt=0, description="this cell's expected duration")


class RunnerCapacity(_Model):
    """One CI runner (a KVM host) of the pool the shards run on."""

    vcpus: int = Field(64, ge=1)
    memory_gib: float = Field(256, gt=0)
    max_cells: int | None = Field(None, ge=1, description="cells at once on one runner, whatever fits")


class CellNeeds(_Model):
    """What one cell's cluster takes of a runner (a libvirt cell: its nodes' vCPUs and memory)."""

    nodes: int = Field(3, ge=0)
    vcpus: int = Field(8, ge=0)
    memory_gib: float = Field(32, ge=0)


class MatrixSpec(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?$",
                      description="lower-case, at most 16 characters: it becomes part of run ids")
    description: str = ""
    parallel: int = Field(2, ge=1, le=32, description="cells running at the same time")
    backend: str = "simulated"
    markers: str | None = Field(None, description="pytest -m expression: which stories every cell runs")
    cell_timeout_min: float = Field(60.0, gt=0, description="a cell still running after this is stopped")
    expected_minutes: float = Field(120.0, gt=0, description="a cell's expected duration when no earlier run "
                                    "measured it (the plan balances shards with it)")
    runner: RunnerCapacity = RunnerCapacity()
    needs: CellNeeds = CellNeeds()
    config: dict[str, Any] = Field({}, description="run-configuration overrides for every cell")
    columns: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_COLUMNS),
                                    description="Examples column -> cell parameter it must equal")
    steps: list[str] = Field(default_factory=lambda: list(DEFAULT_STEPS),
                             description="step patterns whose {parameter} fields must equal the cell's")
    harvester: list[VersionPair] = Field(min_length=1)
    rancher: list[str] = []
    rke2: list[str] = []
    charts: list[dict[str, VersionPair]] = []
    exclude: list[dict[str, Any]] = []
    include: list[Cell] = []

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, value: str) -> str:
        if value not in ("simulated", "libvirt", "existing"):
            raise ValueError(f"{value!r} is not a backend; use simulated, libvirt or existing")
        return value


def load_matrix(path: Path) -> MatrixSpec:
    try:
        data = load_mapping(Path(path), "matrix", "`name:` and `harvester:` (a list of {from, to})")
    except InputError as error:
        raise MatrixError(str(error)) from None
    try:
        return MatrixSpec.model_validate(data)
    except ValidationError as error:
        raise MatrixError(one_line(error, MatrixSpec, f"{path}: ")) from None


def expand(spec: MatrixSpec) -> list[MatrixCell]:
    """The cells, in a stable order (axes multiplied in file order, then includes), ids c01, c02, ..."""
    combinations: list[dict[str, str]] = []
    ranchers: list[str | None] = list(spec.rancher) or [None]
    rke2_lines: list[str | None] = list(spec.rke2) or [None]
    for pair, rancher, rke2, charts in itertools.product(spec.harvester, ranchers, rke2_lines, spec.charts or [{}]):
        parameters = _parameters(pair, rancher, rke2, charts, spec.backend)
        if not any(_matches(parameters, rule) for rule in spec.exclude):
            combinations.append(parameters)
    markers = [spec.markers] * len(combinations)
    minutes: list[float | None] = [None] * len(combinations)
    for extra in spec.include:
        combinations.append(_parameters(extra.harvester, extra.rancher, extra.rke2, extra.charts,
                                        extra.backend or spec.backend))
        markers.append(extra.markers or spec.markers)
        minutes.append(extra.expected_minutes)
    seen: set[tuple] = set()
    cells: list[MatrixCell] = []
    for parameters, cell_markers, cell_minutes in zip(combinations, markers, minutes, strict=True):
        key = tuple(sorted(parameters.items()))
        if key in seen:  # an include that repeats a product cell
            continue
        seen.add(key)
        cells.append(MatrixCell(id=f"c{len(cells) + 1:02d}", matrix=spec.name, parameters=parameters,
                                markers=cell_markers, columns=dict(spec.columns), steps=tuple(spec.steps),
                                expected_minutes=cell_minutes))
    return cells


def _parameters(pair: VersionPair, rancher: str | None, rke2: str | None, charts: dict[str, VersionPair],
                backend: str) -> dict[str, str]:
    parameters = {HARVESTER_FROM: pair.from_version}
    if pair.to_version:
        parameters[HARVESTER_TO] = pair.to_version
    if rancher:
        parameters[RANCHER] = rancher
    if rke2:
        parameters[RKE2] = rke2
    for chart, versions in sorted(charts.items()):
        parameters[f"{chart}_from"] = versions.from_version
        if versions.to_version:
            parameters[f"{chart}_to"] = versions.to_version
    parameters[BACKEND] = backend
    return parameters


def _matches(parameters: dict[str, str], rule: dict[str, Any]) -> bool:
    """An exclude rule: ``{harvester: {from: v1.4.2}, rancher: v2.11}`` matches every cell with both."""
    flat: dict[str, str] = {}
    for key, value in rule.items():
        if key == "harvester" and isinstance(value, dict):
            flat.update({HARVESTER_FROM: value["from"]} if "from" in value else {})
            flat.update({HARVESTER_TO: value["to"]} if "to" in value else {})
        elif key == "charts" and isinstance(value, dict):
            for chart, versions in value.items():
                flat.update({f"{chart}_{end}": str(versions[end]) for end in ("from", "to") if end in versions})
        else:
            flat[key] = str(value)
    return all(parameters.get(key) == value for key, value in flat.items())
