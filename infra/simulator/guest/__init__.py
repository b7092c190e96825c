"""Guest RKE2 clusters running on the simulator's VMs (the Harvester CSI driver and cloud provider live there).

A guest is provisioned by a simulated Rancher (`infra.simulator.rancher`), through the registry: a
second Kubernetes API server in the simulator's process with its own CA, token and port, whose nodes are
KubeVirt VMs on the host. Its kubeconfig is the one Rancher publishes (the Secret
`fleet-default/<name>-kubeconfig`, reaching the guest through Rancher's proxy). Inside run RKE2's helm-controller, the workload controllers, a
scheduler, kubelets, the CSI driver's and the cloud provider's behaviour (only while their charts'
pods run), all of them derived from what the installed chart versions contain.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..simulator import Simulator


def install(simulator: "Simulator") -> None:
    """Give the simulator its guest registry (imported lazily: controllers/ imports this package)."""
    from .registry import install as install_registry

    install_registry(simulator)
