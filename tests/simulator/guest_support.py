"""Shared pieces of the guest-cluster tests: a twin of their own, guests asked for over the wire."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from infra.backends.simulated import TwinProcess
from infra.harvester.guest import charts
from infra.harvester.guest import cluster as guests
from infra.kube import Kube
from infra.waits.budget import Budget
from tests.conftest import start_twin

RUN_ID = "guest-tests"
BUDGET = Budget("guest test wait", 60)


def own_twin(tmp: Path) -> TwinProcess:
    """A twin for one test module: guests add VMs, volumes and pools the shared twin should not see."""
    return start_twin("v1.4.2", tmp, time_scale=60.0)


@contextlib.contextmanager
def host_kube(tmp: Path) -> Iterator[Kube]:
    """A Kube on a twin of the test module's own, stopped when the module is done."""
    twin = own_twin(tmp)
    try:
        yield Kube(twin.kubeconfig, unavailable_budget=20)
    finally:
        twin.stop()


@contextlib.contextmanager
def a_guest(host: Kube, rke2: str = "v1.31.6+rke2r1", rancher: str = "2.10") -> Iterator[guests.GuestCluster]:
    name = guests.guest_name("t")
    guest = guests.provision_simulated_guest(host, name, rke2, rancher, RUN_ID)
    try:
        yield guest
    finally:
        guests.remove_simulated_guest(host, name)
        guests.forget_kubeconfig(guest)


def installer(guest: guests.GuestCluster, budget: Budget = BUDGET, **options: int) -> charts.HelmChartInstaller:
    return charts.HelmChartInstaller(guest.kube(), RUN_ID, budget, **options)
