"""Bad input, many kinds: a generated corpus of broken run configurations, matrix files, known-issue files
and gate policies. Each must end with exit status 2 and one line on stderr that names the field (or the
file) and what would be valid, with no traceback, and must create nothing."""
from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cli import main

CONFIG = {"backend": "simulated", "harvester_version": "v1.4.2", "keep_on_failure": False,
          "simulated": {"time_scale": 60, "nodes": 3, "startup_timeout_s": 60},
          "timeouts": {"api_wait_min": 5, "node_ready_min": 15},
          "upgrade": {"stall_window_min": 10, "phase_budgets_min": {"NodesUpgraded": 90}, "progress": "off"}}
MATRIX = {"name": "corpus", "parallel": 2, "backend": "simulated", "markers": "smoke", "cell_timeout_min": 10,
          "expected_minutes": 5, "runner": {"vcpus": 8, "memory_gib": 16}, "needs": {"nodes": 1, "vcpus": 1,
                                                                                    "memory_gib": 1},
          "harvester": [{"from": "v1.4.2", "to": "master-ce188325-head"}], "rancher": ["v2.10"], "rke2": ["v1.31"]}
KNOWN = {"issues": {8001: {"state": "closed", "title": "t", "affects": {"harvester_from": ["v1.5.0-rc2"]},
                           "shows": {"step": "^x$", "exception": "UpgradeStalled", "message": "m"}}}}
POLICY = {"release": "v1.6.0", "blocking": {"features": ["*"], "cells": [{}]}, "non_blocking_features": [],
          "known_issue_passes": "block",
          "accepted_known_issues": [{"issue": 8001, "reason": "r", "until": "2027-01-01"}]}

# Values a field must refuse, by the field's kind; None means "delete the key" where it is required.
WRONG: dict[str, list[Any]] = {
    "backend": ["lab", 3], "harvester_version": ["v9.9.9", ["v1.4.2"]], "keep_on_failure": ["perhaps"],
    "time_scale": [0, "fast", -1], "nodes": [0, 99, "three"], "startup_timeout_s": [0], "api_wait_min": [-5, "x"],
    "node_ready_min": [0], "stall_window_min": [0], "NodesUpgraded": [0, "long"], "progress": ["loud"],
    "phase_budgets_min": [{"Nodesupgraded": 90}],
    "name": ["Not A Name!", ""], "parallel": [0, 99], "markers": [7], "cell_timeout_min": [0],
    "expected_minutes": [0], "vcpus": [0, "many"], "memory_gib": [0], "from": [None, 1.3], "rancher": ["v2.10"],
    "rke2": [{"v1.31": 1}], "harvester": [[], "v1.4.2"],
    "state": ["fixed"], "title": [None], "affects": [{}], "step": ["(unclosed"], "exception": [None], "message": ["["],
    "release": [["v1"]], "features": ["*"], "cells": [["x"]], "known_issue_passes": ["maybe"],
    "issue": ["eight"], "reason": [None], "until": ["someday"],
}
REQUIRED = {"name", "harvester", "from", "state", "title", "affects", "shows", "exception", "issue", "reason"}


@dataclass(frozen=True)
class Case:
    kind: str
    label: str
    content: str | None          # None: the file does not exist; "<dir>": a directory
    names: tuple[str, ...]       # one of these must be in the message (the field, or the file)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key), value
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from _paths(value, (*prefix, index))


def _set(document: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    changed = copy.deepcopy(document)
    node = changed
    for part in path[:-1]:
        node = node[part]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return changed


def _dump(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=False)


def _corpus() -> list[Case]:
    cases = []
    for kind, base in (("config", CONFIG), ("matrix", MATRIX), ("known-issues", KNOWN), ("gate", POLICY)):
        for path, _value in _paths(base):
            key = str(path[-1])
            dotted = ".".join(str(p) for p in path)
            for wrong in WRONG.get(key, []):
                if wrong is None or (path[0] == "needs" and wrong == 0):     # a cell may need nothing
                    continue
                cases.append(Case(kind, f"{dotted}={wrong!r}", _dump(_set(base, path, wrong)), (dotted, key)))
            if not isinstance(_value, (dict, list)) and path[0] != "issues" or key in ("title", "step"):
                cases.append(Case(kind, f"{dotted}=a mapping", _dump(_set(base, path, {"unexpected": 1})),
                                  (dotted, key)))
            if isinstance(_value, dict) and not (kind == "known-issues" and key in ("issues", "affects")):
                cases.append(Case(kind, f"unknown key under {dotted}",
                                  _dump(_set(base, (*path, "surprise_key"), "x")), ("surprise_key",)))
            if key in REQUIRED:
                cases.append(Case(kind, f"no {dotted}", _dump(_set(base, path, None, delete=True)), (dotted, key)))
            if isinstance(path[-1], str) and len(key) > 3 and not key.isdigit() and path[0] != "issues" \
                    and key not in ("NodesUpgraded",):
                typo = key[:-1] + ("x" if key[-1] != "x" else "y")
                parent = path[:-1]
                renamed = _set(_set(base, path, None, delete=True), (*parent, typo), _value)
                cases.append(Case(kind, f"typo {dotted}->{typo}", _dump(renamed), (typo,)))
        for label, content in (("empty", ""), ("blank", "   \n\n"), ("not YAML", "key: [unclosed\n  : -"),
                               ("a list", "- a\n- b\n"), ("a scalar", "42\n"), ("tabs", "a:\n\tb: 1\n"),
                               ("binary", "\x00\x01\x02"), ("missing", None), ("directory", "<dir>")):
            cases.append(Case(kind, label, content, ("corpus-input",)))
    return cases


CORPUS = _corpus()
COMMANDS = {
    "config": lambda f, t: ["config", "show", "--config", str(f)],
    "matrix": lambda f, t: ["matrix", "plan", str(f), "--shards", "2"],
    "known-issues": lambda f, t: ["repro", "--list", "--known-issues", str(f)],
    "gate": lambda f, t: ["gate", str(t / "results"), "--policy", str(f)],
}


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("case", CORPUS, ids=[f"{c.kind}:{c.label}" for c in CORPUS])
def test_bad_input_exits_2_with_one_line_and_creates_nothing(case: Case, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Run from tmp_path: what the command would create relative to its working directory (artifacts/...)
    # lands there, where the tree check sees it, and other tests writing artifacts/ at the same time
    # (pytest-xdist workers) cannot be mistaken for it.
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "corpus-input.yaml"
    if case.content == "<dir>":
        target.mkdir()
    elif case.content is not None:
        target.write_text(case.content)
    (tmp_path / "results").mkdir()
    before = _tree(tmp_path)
    status = main(COMMANDS[case.kind](target, tmp_path))
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, f"exit {status}; stdout: {out[:300]}; stderr: {err[:300]}"
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert "Traceback" not in err
    assert any(name in lines[0] for name in case.names), f"the line names none of {case.names}: {lines[0]}"
    assert _tree(tmp_path) == before, "the bad input created files"


def test_the_corpus_is_large_and_every_kind_is_in_it() -> None:
    kinds = {case.kind for case in CORPUS}
    assert kinds == set(COMMANDS) and len(CORPUS) >= 150, len(CORPUS)
    print(f"bad inputs tried: {len(CORPUS)} ({', '.join(f'{k} {sum(c.kind == k for c in CORPUS)}' for k in sorted(kinds))})")


def test_the_bases_themselves_are_accepted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "results").mkdir()
    for kind, base in (("config", CONFIG), ("matrix", MATRIX), ("known-issues", KNOWN)):
        target = tmp_path / f"{kind}.yaml"
        target.write_text(_dump(base))
        assert main(COMMANDS[kind](target, tmp_path)) == 0, capsys.readouterr().err
    policy = tmp_path / "gate.yaml"
    policy.write_text(_dump(POLICY))
    os.environ.pop("HARVESTER_E2E_CONFIG", None)
    assert main(COMMANDS["gate"](policy, tmp_path)) == 1      # a valid policy on no results: fails closed, not 2
    assert "gate policy error" not in capsys.readouterr().err
