"""`--pause-on-failure` (chainsaw's name): at the first failed step, before evidence is collected and
anything is cleaned up, the run stops and says how to look inside the cluster as it is.

It prints the `KUBECONFIG` export, an `ssh` command per node (the run's key and known_hosts, the host
keys pinned), and the `kubectl`/`helm` commands that fit the failure (an Upgrade: the object, its
apply-manifests log, the history of the Helm release it waits for). Enter continues with diagnostics and
cleanup; Ctrl-C cleans up too. Without a terminal (CI) it never pauses. A pytest plugin.
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Any

import pytest

from infra.cluster import CLUSTER_KEY, Cluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("harvester-e2e").addoption(
        "--pause-on-failure", action="store_true", default=False,
        help="at the first failed step, stop (on a terminal) and print how to look inside, before cleanup")


def look_inside(cluster: Cluster, failure: BaseException) -> list[str]:
    """The commands a person types to look at the cluster as the failure left it."""
    lines = [f"export KUBECONFIG={cluster.kubeconfig}"]
    if cluster.context:
        lines.append(f"kubectl config use-context {shlex.quote(cluster.context)}   # (or --context on each command)")
    for node in cluster.nodes:
        if not (node.ssh_host and node.ssh_port):
            continue
        options = [f"-p {node.ssh_port}"]
        if node.ssh_key_file:
            options.append(f"-i {node.ssh_key_file}")
        if cluster.known_hosts:
            options.append(f"-o UserKnownHostsFile={cluster.known_hosts} -o StrictHostKeyChecking=yes")
        lines.append(f"ssh {' '.join(options)} {node.ssh_user}@{node.ssh_host}   # {node.name}")
    lines += ["kubectl get nodes -o wide", "kubectl get machines -n fleet-local -o wide",
              "kubectl get upgrades -n harvester-system"]
    upgrade = (getattr(failure, "evidence", None) or {}).get("Upgrade")
    if isinstance(upgrade, dict):
        name = upgrade.get("metadata", {}).get("name", "")
        lines += [f"kubectl get upgrade -n harvester-system {name} -o yaml",
                  f"kubectl logs -n harvester-system -l job-name={name}-apply-manifests --tail=50"]
    diagnosis = getattr(failure, "diagnosis", None)
    awaited = (getattr(diagnosis, "details", None) or {}).get("awaited") or {}
    if awaited.get("release"):
        lines.append(f"helm history {awaited['release']} -n {awaited['namespace']}   "
                     "# or over ssh on a node: sudo helm history ...")
    return lines


def pytest_bdd_step_error(request: pytest.FixtureRequest, feature: Any, scenario: Any, step: Any,
                          step_func: Any, step_func_args: dict, exception: BaseException) -> None:
    config = request.config
    if not config.getoption("pause_on_failure") or isinstance(exception, pytest.skip.Exception) \
            or request.node.stash.get(_PAUSED, False):
        return
    # pytest captures at the file-descriptor level (stdin too): give the terminal back, as its debugger does.
    capture = config.pluginmanager.getplugin("capturemanager")
    if capture is not None:
        capture.suspend(in_=True)
    try:
        if not (os.isatty(0) and os.isatty(1)):         # CI, a pipe, a file: never wait for a person
            return
        request.node.stash[_PAUSED] = True
        cluster = request.node.stash.get(CLUSTER_KEY, None)
        print(f"\n\n=== paused: step failed: {step.keyword} {step.name}\n    {type(exception).__name__}: "
              f"{str(exception).splitlines()[0] if str(exception) else ''}\n", flush=True)
        if cluster is not None:
            print("Look inside (nothing has been collected or cleaned up yet):")
            for line in look_inside(cluster, exception):
                print(f"  {line}")
        print("\nEnter: collect diagnostics and clean up; Ctrl-C: clean up and stop the run. ", end="", flush=True)
        sys.stdin.readline()            # "" at end of input: go on as with Enter
    finally:
        if capture is not None:
            capture.resume()


_PAUSED = pytest.StashKey[bool]()

