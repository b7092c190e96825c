"""Interrupting a precheck scenario right after its injection still removes the fake Machine.

A child pytest runs one row of features/precheck_orphan_machine.feature against this test's own simulator
(backend `existing`), so the simulator outlives the child and can be inspected. The test watches the API
for the Machine labelled with the child's run id, signals the child, and then checks that the Machine
is gone and the leak audit finds nothing. conftest.py turns SIGTERM into KeyboardInterrupt; pytest
then runs the pending fixture finalizers (the cleanup stack) before it exits.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from infra.backends.simulated import SimulatorProcess
from infra.harvester import leaks
from infra.harvester.names import CAPI, FLEET_LOCAL, RUN_ID_LABEL
from infra.kube import Kube
from infra.waits.budget import Budget, WaitTimeout

from .conftest import start_simulator

ROOT = Path(__file__).resolve().parents[1]
VERSION = "v1.5.1"
ROW = f"version_with_orphan and {VERSION} and Provisioning"      # one row of the Scenario Outline
CLI = Path(sys.executable).with_name("harvester-e2e")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    process = start_simulator(VERSION, tmp_path_factory.mktemp("interrupt-simulator"))
    try:
        yield process
    finally:
        process.stop()


def _lab_config(simulator: SimulatorProcess, tmp: Path) -> Path:
    """The run configuration a lab would hand out for this simulator: its kubeconfig and the releases it offers."""
    ca = tmp / "release-mirror-ca.pem"
    ca.write_text(simulator.info["caPem"])
    config = {"backend": "existing", "existing": {"kubeconfig": str(simulator.kubeconfig)},
              "upgrade": {"releases": [{"version": r["version"], "iso_url": r["isoURL"],
                                        "iso_checksum": r["isoChecksum"], "ca_file": str(ca)}
                                       for r in simulator.info["releases"]]}}
    path = tmp / "lab.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _child(simulator: SimulatorProcess, tmp: Path, run_id: str, *, via_cli: bool, pause: bool) -> subprocess.Popen[str]:
    selection = ["-m", "precheck", "-k", ROW, "-p", "no:cacheprovider", "-o", "log_cli=true",
                 "--log-cli-level=INFO", f"--junitxml={tmp / 'junit.xml'}"]
    if pause:
        selection += ["-p", "tests.interrupt_pause_plugin"]
    selection += ["--config", str(_lab_config(simulator, tmp))]
    if via_cli:
        command = [str(CLI), "run", "--backend", "existing", "--harvester-version", VERSION,
                   f"--alluredir={tmp / 'allure'}", *selection]
    else:
        command = [sys.executable, "-m", "pytest", "steps", "--backend", "existing", "--harvester-version", VERSION,
                   f"--alluredir={tmp / 'allure'}", *selection]
    env = {**os.environ, "HARVESTER_E2E_RUN_ID": run_id, "HARVESTER_E2E_ARTIFACTS_DIR": str(tmp / "artifacts"),
           "PYTHONUNBUFFERED": "1"}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _wait_for_injection(kube: Kube, run_id: str, child: subprocess.Popen[str]) -> str:
    try:
        machines = kube.wait_for_all(CAPI, "Machine", lambda items: bool(items), namespace=FLEET_LOCAL,
                                     label_selector=f"{RUN_ID_LABEL}={run_id}", awaited="the injected Machine",
                                     budget=Budget("injection to appear", 60))
    except WaitTimeout:
        child.kill()
        pytest.fail("the child never injected a Machine; its output:\n" + child.communicate()[0])
    return machines[0]["metadata"]["name"]


def _finish(child: subprocess.Popen[str]) -> str:
    try:
        return child.communicate(timeout=120)[0]
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        pytest.fail("the child did not exit within 120 s of the signal:\n" + child.communicate()[0])


def _assert_cleaned(kube: Kube, run_id: str, machine: str, output: str) -> None:
    assert kube.find(CAPI, "Machine", machine, FLEET_LOCAL) is None, \
        f"the fake Machine {machine} is still there after the interrupt; the child said:\n{output}"
    report = leaks.audit(kube, run_id)
    assert report.clean, report.render() + "\n\nthe child said:\n" + output
    assert f"cleaned up: delete fake Machine {FLEET_LOCAL}/{machine}" in output, output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_right_after_the_injection_still_removes_the_fake_machine(simulator: SimulatorProcess, tmp_path: Path,
                                                                            signum: int) -> None:
    kube = Kube(simulator.kubeconfig)
    run_id = f"e2e-int-{secrets.token_hex(4)}"
    child = _child(simulator, tmp_path, run_id, via_cli=False, pause=True)
    machine = _wait_for_injection(kube, run_id, child)
    child.send_signal(signum)
    output = _finish(child)
    assert child.returncode == 2, f"pytest should report an interrupted run (exit 2):\n{output}"
    assert "KeyboardInterrupt" in output, output
    _assert_cleaned(kube, run_id, machine, output)


def test_the_same_row_uninterrupted_passes_and_leaves_nothing(simulator: SimulatorProcess, tmp_path: Path) -> None:
    kube = Kube(simulator.kubeconfig)
    run_id = f"e2e-int-{secrets.token_hex(4)}"
    output = _finish(_child(simulator, tmp_path, run_id, via_cli=False, pause=False))
    assert "1 passed" in output, output
    assert leaks.audit(kube, run_id).clean


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_interrupting_harvester_e2e_run_still_removes_the_fake_machine(simulator: SimulatorProcess, tmp_path: Path,
                                                                       how: str) -> None:
    """Ctrl-C in a terminal signals the CLI's process group; a CI cancel may SIGTERM the CLI alone."""
    kube = Kube(simulator.kubeconfig)
    run_id = f"e2e-int-{secrets.token_hex(4)}"
    child = _child(simulator, tmp_path, run_id, via_cli=True, pause=True)
    machine = _wait_for_injection(kube, run_id, child)
    if how == "ctrl-c":
        os.killpg(child.pid, signal.SIGINT)
    else:
        child.send_signal(signal.SIGTERM)
    output = _finish(child)
    assert child.returncode == 2, f"the CLI passes on pytest's exit status (2: interrupted):\n{output}"
    try:
        _assert_cleaned(kube, run_id, machine, output)
    finally:                      # whatever the CLI did, leave the shared simulator clean for the other tests
        if kube.find(CAPI, "Machine", machine, FLEET_LOCAL) is not None:
            kube.delete(CAPI, "Machine", machine, FLEET_LOCAL)
