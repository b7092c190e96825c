"""The simulated KubeVirt of the simulated Harvester: VMs run, migrate, drain and stop as upstream models them.

* `controller.py`: VirtualMachine -> VirtualMachineInstance -> virt-launcher pod (virt-controller, virt-handler).
* `migratability.py`: KubeVirt's LiveMigratable condition and Harvester's own non-live-migratable rules.
* `migrations.py`: VirtualMachineInstanceMigration admission and phases, the switch-over pause.
* `evacuation.py`: the `kubevirt.io/drain` taint empties a node through migrations.
* `harvester_upgrade.py`: the upgrade's precheck, pre-drain, post-drain and single-node steps for VMs
  (called from `controllers/upgrade_nodes.py`), with the per-release table.
* `scheduling.py`: where a virt-launcher pod may run.
* `guests.py`: each running VM's guest OS - its files on its root disk (`guest_disk.py`), the image's OS and
  cloud-init (`guest_os.py`), its shell (`guest_shell.py`) - reached by SSH through any node (direct-tcpip).
* `images.py`: Harvester's StorageClass per VM image, whose volumes start as a copy of the image.
* `backups.py`: Harvester's VM backups, snapshots and restores, and the CSI snapshots under them.

KubeVirt as Harvester ships it: v1.3.1 in Harvester v1.4.x, v1.4.0/v1.4.1 in v1.5.x (`HarvesterVersion.
kubevirt_version`); everything modelled here reads the same at kubevirt/kubevirt v1.3.1 and v1.4.0. Behaviour
follows the simulated release only; nothing is switched by a test.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..apiserver.objects import AdmissionRequest
from ..harvester import load_crds
from .common import GROUP
from . import images
from .backups import VmBackups
from .controller import KubeVirt
from .evacuation import Evacuation
from .guests import Guests
from .harvester_upgrade import kubevirt_of, post_drain, pre_drain, precheck, single_node_shutdown
from .migratability import default_network
from .migrations import Migrations

if TYPE_CHECKING:
    from ..simulator import Simulator


def _vmi_defaults(request: AdmissionRequest) -> None:
    """virt-api's VMI mutator, the part modelled: the default pod network and interface."""
    if request.operation == "CREATE" and request.object is not None and not request.subresource:
        default_network(request.object.setdefault("spec", {}))


def _ensure_crds(simulator: "Simulator") -> None:
    """KubeVirt's CRDs a state directory saved before they were simulated lacks (virt-operator would add them)."""
    api = simulator.api
    crd_type = api.registry.get("apiextensions.k8s.io", "customresourcedefinitions")
    for crd in load_crds():
        if crd["spec"]["group"] == GROUP and api.registry.get(GROUP, crd["spec"]["names"]["plural"]) is None \
                and crd_type is not None:
            api.create(crd_type, crd)


def install(simulator: "Simulator") -> None:
    """Admission (VMI defaults, VMIM webhooks, the upgrade precheck) and the controllers; `simulator.kubevirt`."""
    _ensure_crds(simulator)
    kubevirt = KubeVirt(simulator)
    kubevirt.migrations = Migrations(kubevirt)
    kubevirt.evacuation = Evacuation(kubevirt)
    hostside = getattr(simulator.guests, "hostside", None)       # Longhorn's side (guest/hostside.py)
    if hostside is not None:
        kubevirt.guests = Guests(kubevirt, hostside)
        kubevirt.guests.install()
        VmBackups(kubevirt, hostside).install()
    images.install(simulator)
    api = simulator.api
    api.add_admission(GROUP, "virtualmachineinstances", _vmi_defaults, mutating=True)
    api.add_admission(GROUP, "virtualmachineinstancemigrations", kubevirt.migrations.mutate, mutating=True)
    api.add_admission(GROUP, "virtualmachineinstancemigrations", kubevirt.migrations.validate)
    api.add_admission("harvesterhci.io", "upgrades", precheck(kubevirt))
    setattr(simulator, "kubevirt", kubevirt)

    async def run() -> None:
        kubevirt.resync()
        await kubevirt.run()
    simulator.spawn(run, "kubevirt")


__all__ = ["Guests", "KubeVirt", "install", "kubevirt_of", "post_drain", "pre_drain", "single_node_shutdown"]
