"""`--pause-on-failure` on a real terminal: the run stops at the failed step and says how to look inside;
Enter goes on with diagnostics and cleanup. pytest captures file descriptors 0 and 1, so only a run on a
pseudo-terminal shows whether the pause reaches the person at all.
"""
from __future__ import annotations

import os
import pty
import select
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# A row that fails at a step within seconds: the v1.0.4 dashboard save drops status (known issue #7942).
ROW = "keeps_the_pool_ready and v1.0.4-network"
PROMPT = b"Enter: collect diagnostics and clean up"

pytestmark = pytest.mark.slow


def _read_until(fd: int, wanted: bytes | None, seconds: float) -> bytes:
    """What the terminal shows until `wanted` appears (None: until the child closes it), bounded in time."""
    seen, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline and (wanted is None or wanted not in seen):
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:                     # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_a_failed_step_pauses_on_a_terminal_and_enter_goes_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARVESTER_E2E_", "PYTEST_"))}
    env["HARVESTER_E2E_ARTIFACTS_DIR"] = str(tmp_path / "artifacts")
    command = [sys.executable, "-m", "pytest", "steps", "-p", "no:cacheprovider", "-q", "-k", ROW,
               "--pause-on-failure", f"--alluredir={tmp_path / 'allure'}"]
    pid, fd = pty.fork()
    if pid == 0:                            # the child: pytest on the pseudo-terminal
        os.chdir(ROOT)
        os.execve(sys.executable, command, env)
    try:
        shown = _read_until(fd, PROMPT, 120)
        assert PROMPT in shown, shown.decode(errors="replace")[-3000:]
        text = shown.decode(errors="replace")
        assert "=== paused: step failed: Then the status of IPPool" in text
        assert "export KUBECONFIG=" in text and "kubectl get nodes -o wide" in text
        assert "ssh -p " in text and "StrictHostKeyChecking=yes" in text
        os.write(fd, b"\n")
        rest = _read_until(fd, None, 120).decode(errors="replace")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, rest[-3000:]     # the known issue's xfail
        assert "1 xfailed" in rest, rest[-3000:]
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
