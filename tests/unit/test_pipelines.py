"""The CI pipelines stay run-able: valid structure, and every make target, harvester-e2e command and
repository file they name exists."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from infra.gate import load_policy
from infra.matrix.spec import expand, load_matrix

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO_ROOT / ".github" / "workflows"
JENKINSFILE = REPO_ROOT / "ci" / "Jenkinsfile"


def _workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def _run_scripts(workflow: dict) -> list[str]:
    return [step["run"] for job in workflow["jobs"].values() for step in job.get("steps", []) if "run" in step]


def _make_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", (REPO_ROOT / "Makefile").read_text(), re.MULTILINE))


def _cli_commands() -> set[str]:
    """First words of the commands infra/cli.py dispatches (its `commands` dict)."""
    source = (REPO_ROOT / "infra" / "cli.py").read_text()
    return set(re.findall(r'\(\s*"([a-z][a-z-]*)"\s*,', source))


def _commands_in(text: str) -> list[tuple[str, list[str]]]:
    """(`make`|`harvester-e2e`, its arguments) for each invocation in shell text."""
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for match in re.finditer(r"(?:^|[\s;&|(])((?:\.venv/bin/)?(?:make|harvester-e2e))\s+([^;&|]*)", line):
            try:
                words = shlex.split(match.group(2), comments=True)
            except ValueError:
                words = match.group(2).split()
            found.append((match.group(1).rsplit("/", 1)[-1], words))
    return found


def _check_commands(text: str) -> None:
    invocations = _commands_in(text)
    assert invocations, "no make or harvester-e2e command found"
    for tool, words in invocations:
        if tool == "make":
            targets = [w for w in words if not w.startswith("-") and "=" not in w] or ["all"]
            assert set(targets) <= _make_targets(), f"make {' '.join(words)}: no such target"
        else:
            assert words and words[0] in _cli_commands(), f"harvester-e2e {' '.join(words)}: no such command"
    for path in re.findall(r"\bci/[\w./-]+\.(?:yaml|yml|json)\b", text):
        assert (REPO_ROOT / path).is_file(), f"{path} does not exist"


@pytest.mark.parametrize("name", ["pr.yml", "nightly.yml"])
def test_workflow_structure(name: str) -> None:
    workflow = _workflow(name)

    assert workflow["name"] and workflow["on"] and workflow["jobs"]
    for job_name, job in workflow["jobs"].items():
        assert job.get("runs-on"), f"{job_name}: no runs-on"
        assert job.get("steps"), f"{job_name}: no steps"
        for step in job["steps"]:
            assert ("uses" in step) != ("run" in step), f"{job_name}: a step needs exactly one of uses/run: {step}"
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+", step["uses"]), f"{step['uses']}: pin a major version"
    _check_commands("\n".join(_run_scripts(workflow)))


def test_pull_request_workflow_lints_tests_runs_e2e_and_keeps_the_report() -> None:
    workflow = _workflow("pr.yml")
    scripts = "\n".join(_run_scripts(workflow))
    uploads = [step["with"]["path"] for job in workflow["jobs"].values() for step in job["steps"]
               if step.get("uses", "").startswith("actions/upload-artifact@")]

    assert "pull_request" in workflow["on"]
    assert "ruff check" in scripts and "make test" in scripts and "make e2e" in scripts
    assert any("allure-report" in path for path in uploads)


def test_nightly_runs_the_matrix_on_kvm_with_libvirt_publishes_and_gates() -> None:
    workflow = _workflow("nightly.yml")
    job = workflow["jobs"]["matrix"]
    scripts = "\n".join(_run_scripts(workflow))
    uses = [step.get("uses", "") for j in workflow["jobs"].values() for step in j["steps"]]

    assert "schedule" in workflow["on"]
    assert {"self-hosted", "kvm"} <= set(job["runs-on"])
    assert job["env"]["MATRIX_BACKEND"].endswith("'libvirt' }}")
    assert "harvester-e2e matrix" in scripts and "harvester-e2e gate" in scripts
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    gate_step = job["steps"][-1]
    assert "gate" in gate_step["run"] and "continue-on-error" not in gate_step  # the gate's verdict is the job's
    assert load_matrix(REPO_ROOT / job["env"]["MATRIX_FILE"].split("'")[1])


def test_jenkinsfile_structure() -> None:
    text = JENKINSFILE.read_text()
    code = _strip_groovy_strings_and_comments(text)

    for opening, closing in ("{}", "()", "[]"):
        depth = 0
        for char in code:
            depth += (char == opening) - (char == closing)
            assert depth >= 0, f"unbalanced {opening}{closing}"
        assert depth == 0, f"unbalanced {opening}{closing}"
    for block in ("pipeline {", "agent {", "stages {", "post {", "always {"):
        assert block in code, f"missing {block}"
    stages = re.findall(r"stage\('([^']+)'\)\s*\{", text)
    assert stages == ["Setup", "Matrix", "Gate"]
    for body in re.split(r"stage\('[^']+'\)", code)[1:]:
        assert re.match(r"\s*\{\s*steps\s*\{", body), "every stage has steps"
    assert "label 'kvm'" in text and "'libvirt'" in text
    assert "junit " in text and "publishHTML" in text
    _check_commands("\n".join(re.findall(r"'''(.*?)'''", text, re.DOTALL) + re.findall(r"sh '([^']*)'", text)))


def _strip_groovy_strings_and_comments(text: str) -> str:
    text = re.sub(r"'''.*?'''|\"\"\".*?\"\"\"", "''", text, flags=re.DOTALL)
    text = re.sub(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"", "''", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def test_the_files_the_pipelines_read_are_valid() -> None:
    assert len(expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "nightly.yaml"))) >= 12
    assert expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "release.yaml"))
    assert load_policy(REPO_ROOT / "ci" / "gate.yaml")
