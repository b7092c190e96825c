"""The simulator's behaviours: each module's `install(simulator)` registers admission hooks and controller tasks.

To add a behaviour, write a module with `install(simulator)` and list it in INSTALLERS. What a behaviour
does must follow from `simulator.version` (the simulated release), never from a test switch.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from . import settings
from .. import guest
from . import ipam, ippool_webhook, loadbalancer
from . import upgrade_webhook
from . import upgrade
from . import supportbundle

if TYPE_CHECKING:
    from ..simulator import Simulator


def _install_kubevirt(simulator: "Simulator") -> None:
    """VMs, their migrations and drains (imported lazily: the kubevirt package imports controllers.base)."""
    from .. import kubevirt

    kubevirt.install(simulator)


INSTALLERS: list[Callable[["Simulator"], None]] = [
    settings.install,
    guest.install,
    ipam.install, ippool_webhook.install, loadbalancer.install,
    upgrade_webhook.install,
    _install_kubevirt,          # after upgrade_webhook: its Upgrade precheck runs after the webhook's other checks
    upgrade.install,
    supportbundle.install,
]


def install_all(simulator: "Simulator") -> None:
    for install in INSTALLERS:
        install(simulator)
