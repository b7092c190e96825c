"""A simulated matrix run as shards in separate processes and merged gives what one unsharded run gives,
and a shard killed half-way shows up in the release gate as the cells it never reported."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MATRIX = ROOT / "tests" / "data" / "matrix-shards.yaml"
CLI = [sys.executable, "-m", "infra.cli"]

pytestmark = pytest.mark.slow


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _results(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*-result.json"))]


def _per_cell(results: list[dict]) -> dict[str, tuple[str, str]]:
    """cell.harvester_from -> (scenario, status), from each result's own parameters."""
    shown = {}
    for result in results:
        parameters = {p["name"]: p["value"] for p in result["parameters"]}
        shown[parameters["cell.harvester_from"]] = (result["name"], result["status"])
    return shown


def test_shards_merge_into_the_unsharded_verdict_and_a_killed_shard_is_named(tmp_path: Path) -> None:
    whole = _cli("matrix", "run", str(MATRIX), "--out", str(tmp_path / "whole"), "--no-report")
    assert whole.returncode == 0, whole.stdout + whole.stderr

    plan_run = _cli("matrix", "plan", str(MATRIX), "--shards", "2", "--format", "json")
    assert plan_run.returncode == 0, plan_run.stderr
    (tmp_path / "plan.json").write_text(plan_run.stdout)
    shards = json.loads(plan_run.stdout)["shards"]
    assert sorted(c for s in shards for c in s["cells"]) == ["c01", "c02", "c03"] and all(s["cells"] for s in shards)
    processes = [subprocess.Popen([*CLI, "matrix", "run", str(MATRIX), "--cells", ",".join(s["cells"]), "--out",
                                   str(tmp_path / f"shard-{s['index']}"), "--no-report"], cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in shards]
    assert [p.wait(300) for p in processes] == [0, 0]
    merged = _cli("matrix", "merge", *(str(tmp_path / f"shard-{s['index']}") for s in shards), "--matrix",
                  str(MATRIX), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "merged"), "--no-report")
    assert merged.returncode == 0, merged.stdout + merged.stderr

    unsharded, sharded = _results(tmp_path / "whole" / "allure-results"), _results(tmp_path / "merged" / "allure-results")
    assert Counter(r["status"] for r in sharded) == Counter(r["status"] for r in unsharded) == Counter(passed=3)
    assert _per_cell(sharded) == _per_cell(unsharded)
    gates = [_cli("gate", str(tmp_path / name / "allure-results"), "--policy", str(ROOT / "ci" / "gate.yaml"))
             for name in ("whole", "merged")]
    assert [g.returncode for g in gates] == [0, 0], gates[1].stdout
    assert all("Release gate: PASS" in g.stdout for g in gates)

    # A shard killed half-way: it leaves no summary, its cells are missing, the gate says which.
    survivor, doomed = shards[0], shards[1]
    killed = subprocess.Popen([*CLI, "matrix", "run", str(MATRIX), "--cells", ",".join(doomed["cells"]), "--out",
                               str(tmp_path / "killed"), "--no-report"], cwd=ROOT, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60          # once its first cell is under way, kill it all: no cleanup at all
    while not list((tmp_path / "killed" / "cells").glob("*/run.log")) and time.monotonic() < deadline:
        killed.poll()
        time.sleep(0.1)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(30)
    partial = _cli("matrix", "merge", str(tmp_path / f"shard-{survivor['index']}"), str(tmp_path / "killed"),
                   "--matrix", str(MATRIX), "--plan", str(tmp_path / "plan.json"), "--out", str(tmp_path / "partial"),
                   "--no-report")
    assert partial.returncode == 1 and f"missing: {', '.join(doomed['cells'])}" in partial.stdout + partial.stderr
    gate = _cli("gate", str(tmp_path / "partial" / "allure-results"), "--policy", str(ROOT / "ci" / "gate.yaml"))
    assert gate.returncode == 1
    assert f"cells {', '.join(doomed['cells'])} never reported" in gate.stdout
    assert "Infrastructure: cell never reported" in gate.stdout
