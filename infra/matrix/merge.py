"""Put the cells' results together: one Allure results folder, one JUnit file, and a result for each cell
that could not run (so a cell without a cluster is a visible, categorised failure, never a gap).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path

from allure_commons.utils import represent

from infra.matrix.cell import MatrixCell
from infra.report.matrix_cell import CELL_PARAMETER_PREFIX
from infra.report.redact import REDACTOR

# Files each cell writes for itself; the merged folder gets its own once.
_RUN_LEVEL_FILES = {"environment.properties", "executor.json", "categories.json"}
SYNTHETIC_FEATURE = "Matrix cells"


def merge_results(cell_results: Iterable[Path], merged: Path) -> int:
    """Copy every cell's results, attachments and containers into ``merged``; returns the result count.

    File names are UUIDs, so nothing collides; per-run files and copied history are left out.
    """
    merged.mkdir(parents=True, exist_ok=True)
    count = 0
    for source in cell_results:
        if not source.is_dir():
            continue
        for path in source.iterdir():
            if path.is_file() and path.name not in _RUN_LEVEL_FILES:
                shutil.copy2(path, merged / path.name)
                count += path.name.endswith("-result.json")
    return count


def cell_parameters(cell: MatrixCell) -> list[dict[str, object]]:
    """The cell's Allure parameters, as the report plugin writes them."""
    parameters: list[dict[str, object]] = [{"name": "cell", "value": represent(cell.title), "excluded": True}]
    parameters += [{"name": f"{CELL_PARAMETER_PREFIX}{name}", "value": represent(value)}
                   for name, value in cell.parameters.items()]
    return parameters


def synthesize_cell_failure(cell: MatrixCell, results_dir: Path, *, message: str, log_tail: str = "",
                            started: float | None = None, stopped: float | None = None) -> Path:
    """Write a broken Allure result standing for a cell that produced no results of its own.

    ``message`` must say what happened in words the categories file files: "infrastructure: ..." for a
    cell that could not get a cluster, "harness: ..." for a cell the harness could not run.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    stopped = time.time() if stopped is None else stopped
    started = stopped if started is None else started
    result_uuid = str(uuid.uuid4())
    full_name = f"harvester-e2e matrix {cell.matrix}: cell"
    history_key = json.dumps([full_name, sorted(cell.parameters.items())])
    attachments = []
    if log_tail.strip():
        attachment = f"{uuid.uuid4()}-attachment.txt"
        (results_dir / attachment).write_text(REDACTOR.redact_text(log_tail), encoding="utf-8")
        attachments.append({"name": "cell run log (tail)", "source": attachment, "type": "text/plain"})
    result = {
        "uuid": result_uuid,
        "name": f"Cell {cell.id} runs: {cell.title}",
        "fullName": full_name,
        "historyId": hashlib.md5(history_key.encode()).hexdigest(),
        "testCaseId": hashlib.md5(full_name.encode()).hexdigest(),
        "status": "broken",
        "stage": "finished",
        "statusDetails": {"message": REDACTOR.redact_text(message), "trace": REDACTOR.redact_text(log_tail)},
        "start": int(started * 1000),
        "stop": int(stopped * 1000),
        "labels": [
            {"name": "feature", "value": SYNTHETIC_FEATURE},
            {"name": "story", "value": f"Cell {cell.id}"},
            {"name": "suite", "value": f"matrix {cell.matrix}"},
            {"name": "framework", "value": "harvester-e2e matrix"},
        ],
        "parameters": cell_parameters(cell),
        "attachments": attachments,
        "steps": [],
        "links": [],
    }
    path = results_dir / f"{result_uuid}-result.json"
    path.write_text(json.dumps(result, indent=1), encoding="utf-8")
    return path


def count_statuses(results_dir: Path) -> dict[str, int]:
    """How many results of each status a results folder holds (unreadable files count as "unknown")."""
    counts: dict[str, int] = {}
    for path in results_dir.glob("*-result.json") if results_dir.is_dir() else ():
        try:
            status = json.loads(path.read_text(encoding="utf-8")).get("status") or "unknown"
        except (OSError, ValueError):
            status = "unknown"  # being written right now
        counts[status] = counts.get(status, 0) + 1
    return counts


def merge_junit(cells: Iterable[tuple[MatrixCell, Path | None, str | None]], merged: Path, matrix: str) -> Path:
    """One JUnit file: a ``<testsuite>`` per cell (named after it, its parameters as properties), test
    classes prefixed with the cell id; a cell without a JUnit file gets one ``<error>`` test case saying why.
    """
    root = ET.Element("testsuites", name=f"harvester-e2e matrix {matrix}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    elapsed = 0.0
    for cell, junit, failure in cells:
        suites = _read_suites(junit) if junit is not None else []
        if not suites:
            suites = [_error_suite(cell, failure or "the cell wrote no JUnit report")]
        for suite in suites:
            suite.set("name", f"{cell.id} {cell.title}")
            for case in suite.iter("testcase"):
                case.set("classname", f"{cell.id}.{case.get('classname', '')}".rstrip("."))
            properties = suite.find("properties")
            if properties is None:
                properties = ET.Element("properties")
                suite.insert(0, properties)
            for name, value in cell.parameters.items():
                ET.SubElement(properties, "property", name=f"{CELL_PARAMETER_PREFIX}{name}", value=value)
            for key in totals:
                totals[key] += int(suite.get(key, "0") or 0)
            elapsed += float(suite.get("time", "0") or 0)
            root.append(suite)
    for key, count in totals.items():
        root.set(key, str(count))
    root.set("time", f"{elapsed:.3f}")
    merged.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(root).write(merged, encoding="utf-8", xml_declaration=True)
    return merged


def _read_suites(junit: Path) -> list[ET.Element]:
    try:
        tree = ET.parse(junit)
    except (OSError, ET.ParseError):
        return []
    top = tree.getroot()
    return [top] if top.tag == "testsuite" else list(top.iter("testsuite"))


def _error_suite(cell: MatrixCell, failure: str) -> ET.Element:
    suite = ET.Element("testsuite", name=cell.id, tests="1", errors="1", failures="0", skipped="0", time="0")
    case = ET.SubElement(suite, "testcase", classname="matrix", name=f"cell {cell.id} runs", time="0")
    error = ET.SubElement(case, "error", message=REDACTOR.redact_text(failure.splitlines()[0] if failure else ""))
    error.text = REDACTOR.redact_text(failure)
    return suite


def write_summary(path: Path, summary: Mapping[str, object]) -> Path:
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return path
