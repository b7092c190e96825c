"""The matrix: expansion of the files, width, merging, and cells that cannot run (the others go on)."""
from __future__ import annotations

import io
import json
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from rich.console import Console

from infra.matrix import cli as matrix_cli
from infra.matrix.cell import MatrixCell, current_cell
from infra.matrix.merge import synthesize_cell_failure
from infra.matrix.runner import (
    CellOutcome,
    CellPaths,
    RunSettings,
    config_override_variables,
    judge_cell,
    run_cell_subprocess,
    run_cells,
)
from infra.matrix.selection import belongs_to_cell, steps_belong_to_cell
from infra.matrix.spec import MatrixError, MatrixSpec, expand, load_matrix
from infra.report import categories as cat
from infra.report.matrix_cell import CELL_ENV_VAR

REPO_ROOT = Path(__file__).resolve().parents[2]


def _spec(**overrides: object) -> MatrixSpec:
    data = {"name": "t",
            "harvester": [{"from": "v1.4.2", "to": "master-ce188325-head"}, {"from": "v1.5.1", "to": "master-ce188325-head"}],
            "rancher": ["v2.10", "v2.11"], "rke2": ["v1.31", "v1.32"]}
    return MatrixSpec.model_validate({**data, **overrides})


def _quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


# --- expansion -----------------------------------------------------------------------------------------

def test_the_shipped_matrices_expand_into_distinct_cells() -> None:
    nightly = expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "nightly.yaml"))
    release = expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "release.yaml"))

    assert len(nightly) == 3 * (2 * 2 - 1) + 2     # 3 upgrade paths x (2 Rancher x 2 RKE2 lines - 1 excluded) + 2 older lines
    assert len(release) > len(nightly)
    for cells in (nightly, release):
        assert len({c.id for c in cells}) == len(cells)
        assert len({tuple(sorted(c.parameters.items())) for c in cells}) == len(cells)
    assert not [c for c in release if (c.rancher, c.rke2) in {("v2.11", "v1.29"), ("v2.10", "v1.32")}]  # excluded
    assert {c.markers for c in nightly if c.rancher in ("v2.8", "v2.9")} == {"csi or cloud_provider"}  # includes


def test_axes_multiply_exclude_removes_include_adds() -> None:
    spec = _spec(exclude=[{"harvester": {"from": "v1.5.1"}, "rancher": "v2.10"}],
                 include=[{"harvester": {"from": "v1.5.0-rc2", "to": "master-ce188325-head"}, "rancher": "v2.11",
                           "markers": "upgrade"},
                          {"harvester": {"from": "v1.4.2", "to": "master-ce188325-head"}, "rancher": "v2.10", "rke2": "v1.31",
                           "charts": {"csi": {"from": "0.1.21", "to": "0.1.23"}}}],
                 charts=[{"csi": {"from": "0.1.21", "to": "0.1.23"}}], markers="smoke")
    cells = expand(spec)

    assert len(cells) == 2 * 2 * 2 - 2 + 1  # product, minus two excluded, plus one new include (the other repeats)
    assert [c.id for c in cells] == [f"c{i:02d}" for i in range(1, 8)]
    first, extra = cells[0], cells[-1]
    assert first.parameters == {"harvester_from": "v1.4.2", "harvester_to": "master-ce188325-head", "rancher": "v2.10",
                                "rke2": "v1.31", "csi_from": "0.1.21", "csi_to": "0.1.23", "backend": "simulated"}
    assert first.markers == "smoke" and extra.markers == "upgrade" and extra.rke2 is None
    assert first.chart("csi").to_version == "0.1.23" and first.chart("cloud_provider") is None
    assert first.title == "v1.4.2 → master-ce188325-head · Rancher v2.10 · RKE2 v1.31"


def test_a_wrong_matrix_file_says_where(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("name: t\nharvester: [{from: v1.4.2}]\nrke2: [1.30]\n")
    with pytest.raises(MatrixError, match=r"rke2\.0: .*quote versions"):
        load_matrix(path)
    path.write_text("name: t\nharvester: [{from: v1.4.2}]\nparallel: 0\n")
    with pytest.raises(MatrixError, match=r"parallel: "):
        load_matrix(path)


def test_command_line_overrides_keep_the_rest_of_the_cell(tmp_path: Path) -> None:
    args = matrix_cli._parser().parse_args([str(REPO_ROOT / "ci" / "matrix" / "nightly.yaml"), "--backend", "libvirt",
                                            "--markers", "upgrade", "--cells", "c05"])
    [cell] = matrix_cli.select_cells(load_matrix(args.matrix), args)

    assert cell.backend == "libvirt" and cell.markers == "upgrade" and cell.harvester_from == "v1.5.0-rc2"
    assert cell.steps and cell.columns


def test_cell_round_trips_through_the_environment() -> None:
    [cell] = expand(_spec(harvester=[{"from": "v1.4.2"}], rancher=[], rke2=[]))

    assert current_cell({CELL_ENV_VAR: cell.to_json()}) == cell
    assert current_cell({}) is None


def test_examples_rows_belong_to_the_cell_with_their_versions() -> None:
    [cell] = expand(_spec(harvester=[{"from": "v1.5.0-rc2", "to": "master-ce188325-head"}], rancher=["v2.11"], rke2=[]))

    assert belongs_to_cell({"version": "v1.5.0-rc2", "orphan": "x"}, cell)
    assert not belongs_to_cell({"version": "v1.5.1"}, cell)
    assert belongs_to_cell({"from": "v1.5.0-rc2", "to": "master-ce188325-head"}, cell)
    assert not belongs_to_cell({"from": "v1.5.0-rc2", "to": "v1.5.2"}, cell)
    assert not belongs_to_cell({"rancher": "v2.10"}, cell)
    assert belongs_to_cell({"rancher": "2.11"}, cell) and belongs_to_cell({"rancher": "v2.11.0"}, cell)
    assert belongs_to_cell({"rke2": "v1.29"}, cell)  # the cell has no RKE2 line: no constraint
    [lines] = expand(_spec(harvester=[{"from": "v1.5.0"}], rancher=["v2.10"], rke2=["v1.31"]))
    assert belongs_to_cell({"rancher": "2.10", "rke2": "v1.31.6+rke2r1"}, lines)
    assert not belongs_to_cell({"rancher": "2.10", "rke2": "v1.32.2+rke2r1"}, lines)
    assert not belongs_to_cell({"version": "v1.5.0-rc2"}, lines)
    assert belongs_to_cell(None, cell)  # a plain Scenario runs in every cell


def test_plain_scenarios_belong_to_the_cell_their_cluster_step_names() -> None:
    [cell] = expand(_spec(harvester=[{"from": "v1.4.2", "to": "master-ce188325-head"}], rancher=[], rke2=[]))

    assert steps_belong_to_cell(["a Harvester cluster at version v1.4.2", "the cluster is upgraded to master-ce188325-head"],
                                cell)
    assert not steps_belong_to_cell(["a Harvester cluster at version v1.5.0-rc2"], cell)
    assert steps_belong_to_cell(["an IPPool pool1 with 8 addresses"], cell)
    guest = MatrixCell("c01", "t", {"rancher": "v2.10", "rke2": "v1.31"},
                       steps=("a guest RKE2 {rke2} cluster managed by Rancher {rancher}",))
    assert steps_belong_to_cell(["a guest RKE2 v1.31.6+rke2r1 cluster managed by Rancher 2.10"], guest)
    assert not steps_belong_to_cell(["a guest RKE2 v1.29.14+rke2r1 cluster managed by Rancher 2.8"], guest)


def test_config_overrides_travel_as_run_configuration_variables() -> None:
    assert config_override_variables({"simulated": {"time_scale": 120, "nodes": 3}, "keep_on_failure": True}) == {
        "HARVESTER_E2E_SIMULATED__TIME_SCALE": "120", "HARVESTER_E2E_SIMULATED__NODES": "3",
        "HARVESTER_E2E_KEEP_ON_FAILURE": "true"}


# --- running --------------------------------------------------------------------------------------------

def test_no_more_cells_run_at_once_than_the_width(tmp_path: Path) -> None:
    cells = expand(_spec(rke2=["v1.30", "v1.31", "v1.32"], rancher=["v2.11"]))  # 6 cells
    lock = threading.Condition()
    active, most = [0], [0]

    def runner(cell: MatrixCell, paths: CellPaths, settings: RunSettings, stop: threading.Event) -> CellOutcome:
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
            lock.notify_all()
            lock.wait_for(lambda: most[0] >= 2, timeout=5)  # hold until two ran together once
            active[0] -= 1
        return CellOutcome(cell, "passed", exit_code=0, counts={"passed": 1})

    outcomes, interrupted = run_cells(cells, tmp_path, RunSettings("t-1"), width=2, runner=runner, console=_quiet())

    assert most[0] == 2
    assert [o.cell.id for o in outcomes] == [c.id for c in cells] and not interrupted


def _write_result(results: Path, cell: MatrixCell, name: str, status: str) -> None:
    results.mkdir(parents=True, exist_ok=True)
    document = {"uuid": name, "historyId": name, "name": name, "status": status, "stop": 1,
                "labels": [{"name": "feature", "value": "F"}],
                "parameters": [{"name": f"cell.{k}", "value": repr(v)} for k, v in cell.parameters.items()]}
    (results / f"{name}-result.json").write_text(json.dumps(document))


def test_a_cell_without_a_cluster_is_an_infrastructure_failure_and_the_others_go_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: demo\nparallel: 2\nharvester:\n  - {from: v1.4.2, to: master-ce188325-head}\n"
                      "  - {from: v1.5.1, to: master-ce188325-head}\n  - {from: v1.5.0, to: master-ce188325-head}\n")
    out = tmp_path / "out"

    def runner(cell: MatrixCell, paths: CellPaths, settings: RunSettings, stop: threading.Event) -> CellOutcome:
        if cell.harvester_from == "v1.5.1":  # as `harvester-e2e run` says when the backend cannot start
            paths.root.mkdir(parents=True)
            paths.log.write_text("config error: existing.kubeconfig: no such file: /lab/kubeconfig; give the path\n")
            return judge_cell(cell, paths, 2)
        _write_result(paths.results, cell, f"{cell.id}-ok", "passed")
        paths.junit.write_text('<testsuites><testsuite name="pytest" tests="1" errors="0" failures="0" skipped="0">'
                               '<testcase classname="steps.test_features" name="t" /></testsuite></testsuites>')
        return judge_cell(cell, paths, 0)

    status = matrix_cli.main([str(matrix), "--out", str(out), "--no-report"], runner=runner, console=_quiet())

    assert status == 1
    summary = json.loads((out / "matrix.json").read_text())
    assert [(c["id"], c["state"]) for c in summary["cells"]] == [("c01", "passed"), ("c02", "infrastructure"),
                                                                 ("c03", "passed")]
    merged = [json.loads(p.read_text()) for p in (out / "allure-results").glob("*-result.json")]
    assert sorted(r["status"] for r in merged) == ["broken", "passed", "passed"]
    [broken] = [r for r in merged if r["status"] == "broken"]
    assert cat.classify_result(broken) == cat.INFRA_PROVISIONING
    assert "could not" in broken["statusDetails"]["message"] or "did not run" in broken["statusDetails"]["message"]
    assert "no such file: /lab/kubeconfig" in broken["statusDetails"]["message"]
    assert {p["name"]: p["value"] for p in broken["parameters"]}["cell.harvester_from"] == "'v1.5.1'"
    assert (out / "allure-results" / "categories.json").is_file()
    assert "cell.c02=" in (out / "allure-results" / "environment.properties").read_text()
    junit = ET.parse(out / "junit.xml").getroot()
    assert junit.get("tests") == "3" and junit.get("errors") == "1"
    assert [s.get("name").split()[0] for s in junit.iter("testsuite")] == ["c01", "c02", "c03"]
    assert (out / "cells" / "c01" / "junit.xml").is_file()


def test_a_cell_that_selects_nothing_or_runs_out_of_time_says_so(tmp_path: Path) -> None:
    [cell] = expand(_spec(harvester=[{"from": "v1.4.2"}], rancher=[], rke2=[], markers="csi"))
    paths = CellPaths(tmp_path / "c01")

    nothing = judge_cell(cell, paths, 5)
    late = judge_cell(cell, paths, -15, timed_out=True, timeout_s=5400)
    synthesize_cell_failure(cell, tmp_path / "merged", message=nothing.synthetic_message)
    [document] = [json.loads(p.read_text()) for p in (tmp_path / "merged").glob("*-result.json")]

    assert nothing.state == "harness" and "selected no scenarios" in nothing.synthetic_message
    assert cat.classify_result(document) == cat.HARNESS_DEFECT
    assert late.state == "infrastructure" and "within its budget of 90 min" in late.synthetic_message


def test_a_real_cell_whose_cluster_never_starts(tmp_path: Path) -> None:
    """`harvester-e2e run` for one cell, with a simulator start budget nobody can meet."""
    [cell] = expand(_spec(harvester=[{"from": "v1.4.2", "to": "master-ce188325-head"}], rancher=["v2.10"], rke2=[],
                          markers="smoke"))
    paths = CellPaths(tmp_path / "c01")
    settings = RunSettings("unit-matrix", config_overrides={"simulated": {"startup_timeout_s": 0.001}}, timeout_s=300)

    outcome = run_cell_subprocess(cell, paths, settings, threading.Event())

    assert outcome.state == "infrastructure", paths.log.read_text()[-3000:]
    [result] = [json.loads(p.read_text()) for p in paths.results.glob("*-result.json")]  # only v1.4.2's row ran
    assert result["status"] == "broken" and cat.classify_result(result) == cat.INFRA_PROVISIONING
    assert "simulated cluster start" in result["statusDetails"]["message"]
    assert {p["name"]: p["value"] for p in result["parameters"]}["cell.rancher"] == "'v2.10'"
    assert paths.junit.is_file()
