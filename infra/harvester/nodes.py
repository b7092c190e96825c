"""What a node says about itself over the Kubernetes API and SSH: boot ids, readiness, its OS."""
from __future__ import annotations

from infra import versions
from infra.kube import Kube
from infra.kube.predicates import condition_status
from infra.waits.budget import Budget

Obj = dict[str, object]


def _boot_id(obj: Obj | None) -> str:
    status = (obj or {}).get("status") or {}
    info = status.get("nodeInfo") if isinstance(status, dict) else None
    return str((info or {}).get("bootID") or "") if isinstance(info, dict) else ""


def wait_ready_after_new_boot(kube: Kube, node: str, before: str, budget: Budget) -> None:
    """The Node is Ready again and kubelet reports a boot id other than `before`."""
    kube.wait_for("v1", "Node", node,
                  lambda o: condition_status(o or {}, "Ready") == "True" and _boot_id(o) not in ("", before),
                  budget=budget, awaited=f"Node {node} Ready after a new boot (boot id other than {before})")


def wait_ready_with_boot_id(kube: Kube, node: str, boot_id: str, budget: Budget) -> None:
    """The Node is Ready and kubelet reports exactly the boot id the node gave over SSH."""
    kube.wait_for("v1", "Node", node, lambda o: condition_status(o or {}, "Ready") == "True" and _boot_id(o) == boot_id,
                  budget=budget, awaited=f"Node {node} Ready with bootID {boot_id}")


def os_problem(pretty_name: str, harvester_version: str) -> str | None:
    """Harvester OS names itself `Harvester <version>` (the installer's VERSION); a dev build the branch
    it was built from (`Harvester master` for `master-ce188325-head`)."""
    if versions.is_dev_build(harvester_version):
        expected = f"Harvester {harvester_version.split('-')[0]}"
    else:
        expected = f"Harvester {harvester_version}"
    if pretty_name != expected:
        return f"reports PRETTY_NAME={pretty_name!r} over SSH, expected {expected!r}"
    return None
