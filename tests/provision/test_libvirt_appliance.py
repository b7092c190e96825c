"""`make e2e-libvirt` in small, so CI keeps it working: one install, one story.

`harvester-e2e appliance run --passes install --no-golden --stories smoke` builds the Harvester appliance (or
reuses it from .cache/appliance), starts a private libvirtd, and runs cluster_health with `--backend libvirt`:
the backend boots the appliance's installer from its ISO with the served install config, waits for it to
power off, boots the node from its disk, waits for SSH and the API at the forwarded VIP, fetches the node's
kubeconfig over SSH, and the story reads the cluster through it. Then the leak audit must find nothing.
Where libvirtd, qemu or the appliance's packages cannot be had, the test skips and says why.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.real_vm]
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_the_libvirt_backend_installs_the_appliance_and_a_story_passes_on_it(tmp_path: Path) -> None:
    pytest.importorskip("libvirt", reason="appliance VM test skipped: libvirt-python is not installed")
    from infra.provision.local_libvirtd import why_not

    reason = why_not()
    if reason:
        pytest.skip(f"appliance VM test skipped: {reason}")
    command = [sys.executable, "-m", "infra.cli", "appliance", "run", "--passes", "install", "--no-golden",
               "--stories", "smoke", "--target", "", "--artifacts-dir", str(tmp_path)]
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=40 * 60)
    output = done.stdout + done.stderr
    if done.returncode == 3 and "appliance unavailable:" in output:
        pytest.skip("appliance VM test skipped: " + output.strip().splitlines()[-1])
    summaries = list(tmp_path.glob("e2e-libvirt/*/summary.json"))
    assert len(summaries) == 1, output[-4000:]
    summary = json.loads(summaries[0].read_text())
    print(output[-2500:])
    (install,) = summary["passes"]
    assert done.returncode == 0, output[-4000:]
    assert install["verdicts"] == {"passed": 1}, install
    assert install["provisioning"]["how"] == "installed", install["provisioning"]
    timings = install["provisioning"]["timings_s"]
    assert {"install first node (installer boot to power-off)", "first node boots from disk to SSH"} <= set(timings)
    assert install["leftovers_after"] == [], install
