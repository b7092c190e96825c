"""One cell of a test matrix: the versions a run covers, and how a run learns which cell it is.

``harvester-e2e matrix`` starts each cell as its own ``harvester-e2e run`` with ``HARVESTER_MATRIX_CELL``
set to :meth:`MatrixCell.to_json`. Code that needs the cell's values (a guest cluster's RKE2 line, the
chart versions to install) reads them with :func:`current_cell`; outside a matrix it returns None.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from infra.report.matrix_cell import CELL_ENV_VAR

# Parameter names a cell always uses for its fixed axes; chart pairs add <chart>_from / <chart>_to.
HARVESTER_FROM, HARVESTER_TO, RANCHER, RKE2, BACKEND = "harvester_from", "harvester_to", "rancher", "rke2", "backend"


@dataclass(frozen=True)
class ChartPair:
    """A chart upgraded from one version to another in the cell, e.g. csi 0.1.21 -> 0.1.23."""

    chart: str
    from_version: str
    to_version: str


@dataclass(frozen=True)
class MatrixCell:
    """A matrix cell. ``parameters`` hold every value (all strings); the properties name the usual ones.

    ``columns`` maps Scenario Outline Examples columns to parameters: an Examples row whose ``version``
    column differs from the cell's ``harvester_from`` (say) does not belong to this cell and is not run.
    ``steps`` does the same for step text: a scenario with a step matching ``a Harvester cluster at version
    {harvester_from}`` for another version belongs to another cell (parse-style patterns, fields named
    after parameters).
    """

    id: str
    matrix: str
    parameters: dict[str, str]
    markers: str | None = None
    columns: dict[str, str] = field(default_factory=dict)
    steps: tuple[str, ...] = ()
    expected_minutes: float | None = None      # how long it should take, for planning shards

    @property
    def harvester_from(self) -> str | None:
        return self.parameters.get(HARVESTER_FROM)

    @property
    def harvester_to(self) -> str | None:
        return self.parameters.get(HARVESTER_TO)

    @property
    def rancher(self) -> str | None:
        return self.parameters.get(RANCHER)

    @property
    def rke2(self) -> str | None:
        return self.parameters.get(RKE2)

    @property
    def backend(self) -> str | None:
        return self.parameters.get(BACKEND)

    def chart(self, name: str) -> ChartPair | None:
        low, high = self.parameters.get(f"{name}_from"), self.parameters.get(f"{name}_to")
        return ChartPair(name, low, high) if low is not None and high is not None else None

    @property
    def title(self) -> str:
        """For people: ``v1.4.2 → master-ce188325-head · Rancher v2.10 · RKE2 v1.31`` (chart pairs are parameters)."""
        parts = []
        if self.harvester_from:
            parts.append(self.harvester_from + (f" → {self.harvester_to}" if self.harvester_to else ""))
        if self.rancher:
            parts.append(f"Rancher {self.rancher}")
        if self.rke2:
            parts.append(f"RKE2 {self.rke2}")
        return " · ".join(parts) or self.id

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "title": self.title, "matrix": self.matrix, "parameters": self.parameters,
                           "markers": self.markers, "columns": self.columns, "steps": list(self.steps)},
                          sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "MatrixCell":
        data = json.loads(text)
        return cls(id=str(data["id"]), matrix=str(data.get("matrix") or ""),
                   parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()},
                   markers=data.get("markers"),
                   columns={str(k): str(v) for k, v in (data.get("columns") or {}).items()},
                   steps=tuple(str(pattern) for pattern in data.get("steps") or ()))


def current_cell(env: Mapping[str, str] | None = None) -> MatrixCell | None:
    """The cell this process runs, from ``HARVESTER_MATRIX_CELL``; None outside a matrix."""
    raw = (os.environ if env is None else env).get(CELL_ENV_VAR)
    return MatrixCell.from_json(raw) if raw else None
