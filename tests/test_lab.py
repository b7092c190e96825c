"""A lab that is a simulator, and a run that does not know it (backend parity).

`infra.lab` starts a simulated Harvester and writes what a lab hands a QA engineer: a kubeconfig of several
contexts, an SSH inventory, a guest cluster's kubeconfig, CAs and `lab.yaml`. A run with that file uses
`--backend existing` and must get every fact where a real cluster offers it: the simulator counts the calls made
to its own `/simulator/v1` endpoints, and the run must make none. The whole suite on a lab is `make e2e-existing`;
here a bounded selection, one row or more of every story, runs in a child process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from infra.backends.simulator_client import SimulatorClient
from infra.config import load_config
from infra.lab import CONTEXT, NODE_PREFIX, Lab, running, upgrade_target

ROOT = Path(__file__).resolve().parents[1]
VERSION = "v1.5.1"
# One row or more of every feature (pytest -k); the power-cycle row skips: a lab has no power control.
SELECTION = ("ready_to_upgrade or rebooted_over_ssh or powercycled or (keeps_the_pool_ready and "
             "(apply-network or v1.5.0-rc2-network)) or (version_with_orphan and v1.5.1) or "
             "(keeps_volumes and 2.10-v1.31.6) or (cloud_provider and 2.10-v1.31.5) or preflight or "
             "cluster_upgrades_to_the_target")
SKIP_REASONS = ("node power control", "needs a cluster at")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    # The lab's clock runs fast; the run does not know it (on `existing`, budgets are real minutes).
    with running(tmp_path_factory.mktemp("lab"), VERSION, time_scale=480) as started:
        yield started


def test_the_lab_hands_out_what_a_lab_engineer_would(lab: Lab) -> None:
    kubeconfig = yaml.safe_load((lab.directory / "kubeconfig").read_text())
    assert kubeconfig["current-context"] == CONTEXT and len(kubeconfig["contexts"]) > 1
    assert oct((lab.directory / "kubeconfig").stat().st_mode & 0o777) == "0o600"
    user = next(u["user"] for u in kubeconfig["users"] if u["name"] == f"{CONTEXT}-admin")
    assert "client-certificate-data" in user and "token" not in user, "an x509 admin login, as RKE2 writes it"
    config = load_config(lab.config)
    assert config.backend == "existing" and config.existing is not None
    assert config.existing.context == CONTEXT
    assert [n.name for n in config.existing.nodes] == [f"{NODE_PREFIX}-{i}" for i in range(3)]
    assert all(n.host_key and n.key_file for n in config.existing.nodes)
    assert config.upgrade.target == "v1.5.2" and config.existing.guest is not None
    ssh_config = (lab.directory / "ssh" / "config").read_text()
    assert f"Host {NODE_PREFIX}-0" in ssh_config


def test_upgrade_targets_are_what_qa_would_pick() -> None:
    offered = ["v1.4.2", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.5.2", "master-ce188325-head"]
    assert upgrade_target("v1.5.1", offered) == "v1.5.2"
    assert upgrade_target("v1.5.0-rc2", offered) == "master-ce188325-head"       # harvester/harvester#8001
    assert upgrade_target("v1.5.2", offered) == "master-ce188325-head"
    assert upgrade_target("master-ce188325-head", offered) is None


def test_a_run_against_the_lab_passes_or_skips_naming_what_it_lacks_and_never_calls_the_simulator(
        lab: Lab, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    command = [sys.executable, "-m", "infra.cli", "run", "--config", str(lab.config), f"--alluredir={tmp_path}/allure",
               "-k", SELECTION, f"--junitxml={junit}", "-q"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVESTER_E2E_")}
    env["HARVESTER_E2E_ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=480)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    outcomes: dict[str, list[str]] = {"passed": [], "skipped": [], "failed": []}
    for case in cases:
        skipped = case.find("skipped")
        failed = case.find("failure") if case.find("failure") is not None else case.find("error")
        if failed is not None:
            outcomes["failed"].append(case.get("name", ""))
        elif skipped is not None:
            outcomes["skipped"].append(skipped.get("message", ""))
        else:
            outcomes["passed"].append(case.get("name", ""))
    assert not outcomes["failed"], output[-6000:]
    every_story = ("ready_to_upgrade", "rebooted_over_ssh", "keeps_the_pool_ready", "version_with_orphan",
                   "keeps_volumes", "cloud_provider", "preflight", "cluster_upgrades_to_the_target")
    assert [s for s in every_story if not any(s in name for name in outcomes["passed"])] == [], \
        {**outcomes, "output": output[-4000:]}
    assert all(any(reason in message for reason in SKIP_REASONS) for message in outcomes["skipped"]), outcomes
    assert SimulatorClient(lab.simulator.kubeconfig).info()["simulatorCalls"] == 0, "the run called the simulator's own endpoints"
