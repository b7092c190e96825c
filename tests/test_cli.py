"""The `harvester-e2e` command: sim up in the foreground, config errors as exit 2, no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from infra.kube import Kube

CLI = [sys.executable, "-m", "infra.cli"]
ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sim_up_serves_prints_the_export_line_and_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    kubeconfig = tmp_path / "kc"
    process = subprocess.Popen([*CLI, "sim", "up", "--version", "v1.5.1", "--kubeconfig", str(kubeconfig),
                                "--time-scale", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               cwd=ROOT, start_new_session=True)
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("export KUBECONFIG=") for line in lines) and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        assert f"export KUBECONFIG={kubeconfig}" in lines, lines
        assert oct(kubeconfig.stat().st_mode & 0o777) == "0o600", "the kubeconfig holds a token"
        setting = Kube(kubeconfig).get("harvesterhci.io/v1beta1", "Setting", "server-version")
        assert setting["value"] == "v1.5.1"
        process.send_signal(sig)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            process.kill()
    leftover = subprocess.run(["pgrep", "-s", str(process.pid)], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "no process of the session is left behind"


def test_sim_up_refuses_an_unknown_version_with_exit_2() -> None:
    result = run_cli("sim", "up", "--version", "v0.1")
    assert result.returncode == 2
    assert "not simulated; valid: v1.4.2" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_config_exits_2_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("backend: simulated\nsimulated:\n  time_scal: 5\n")
    result = run_cli("run", "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "config error: simulated.time_scal: unknown key; did you mean 'time_scale'? "
        "valid keys here: time_scale, nodes, startup_timeout_s, node_password, backup_target"]


def test_a_bad_backend_on_the_command_line_exits_2() -> None:
    result = run_cli("config", "show", "--backend", "kvm")
    assert result.returncode == 2 and "backend: 'kvm' is not valid" in result.stderr


def test_config_show_prints_the_effective_configuration() -> None:
    result = run_cli("config", "show", env={"HARVESTER_E2E_HARVESTER_VERSION": "v1.5.0"})
    assert result.returncode == 0 and "harvester_version: v1.5.0" in result.stdout


@pytest.mark.parametrize("flag", ["--pause-on-failure", "--keep-on-failure"])
def test_a_parallel_run_refuses_what_needs_a_person_at_the_terminal(flag: str) -> None:
    result = run_cli("run", "-n", "2", flag, "-k", "smoke")
    assert result.returncode == 2
    assert result.stderr.startswith("error: -n: --pause-on-failure and --keep-on-failure need the scenarios")
    assert "Traceback" not in result.stderr and result.stdout == ""
