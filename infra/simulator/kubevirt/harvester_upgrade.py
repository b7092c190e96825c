"""What Harvester's upgrade does to VMs: the precheck, the pre-drain, the post-drain and the single-node job.

The node Jobs run the *target* release's `package/upgrade/upgrade_node.sh` and `upgrade-helper`; their VM parts
are identical at every simulated release (v1.4.2, v1.4.3, v1.5.0-rc2, v1.5.0, v1.5.1, v1.5.2 and ce188325:
`git diff` of package/upgrade/upgrade_node.sh between them touches only OS/elemental steps, and
pkg/upgradehelper/vmlivemigratedetector and pkg/util/virtualmachineinstance are unchanged), and so is the
webhook's check (pkg/webhook/resources/upgrade/validator.go). So is what follows:

| step | upstream | what happens to a VM |
| --- | --- | --- |
| Upgrade created | validator.go `checkNonLiveMigratableVMs` (last of `checkResources` at v1.4.x; before `checkCerts` from v1.5.0-rc2) | any VMI Harvester calls non-live-migratable (`migratability.harvester_non_migratable`: nodeSelector, hostDevices, node affinity, CD-ROM or containerDisk; never on one node) refuses the Upgrade: 422 "There are non-live migratable VMs that need to be shut off before initiating the upgrade: <ns/name, ...>"; `harvesterhci.io/skipWebhook: "true"` skips it |
| pre-drain Job, per node | upgrade_node.sh `command_pre_drain`: `upgrade-helper vm-live-migrate-detector <node> --shutdown` | the VMIs on the node (label `kubevirt.io/nodeName`, not labelled `harvesterhci.io/upgrade`) Harvester calls non-live-migratable are stopped (`virtctl stop`: runStrategy Halted / running false, or a Stop request for RerunOnFailure and Manual) |
| | `kubectl taint node <node> kubevirt.io/drain=draining:NoSchedule` | KubeVirt's evacuation live-migrates every VMI there that migrates on eviction (`evacuation.py`) |
| | `wait_vms_out_or_shutdown` (every 5 s, no timeout) | the Job waits until no VMI labelled with the node is in a phase other than Succeeded. A VMI that is neither stopped nor migrated - LiveMigratable False (an RWO PVC, a bridge on the pod network) or evictionStrategy None/unset (the cluster default is None) - holds the node in "Pre-draining" for ever |
| | `wait_evacuation_pdb_gone` | nothing to wait for: KubeVirt v1.3/v1.4 expand the VMI's own PDB and create no `kubevirt-migration-pdb-kubevirt-evacuation-*` |
| Rancher drain, RKE2 upgrade, post-drain Job | `command_post_drain`: `kubectl taint node <node> kubevirt.io/drain-` | the taint goes before the OS upgrade and reboot; VMs can run there again once the node is Ready and uncordoned (post-hook) |
| after the upgrade | upgrade_controller.go `restoreVMState` only when `status.singleNode` and the upgrade-config setting's `restoreVM` | on a multi-node cluster a VM stopped by the pre-drain stays stopped |
| single-node Job | `command_single_node_upgrade`: `shutdown_all_vms` then `wait_vms_out` | every VMI's VM is stopped (`virtctl stop`), then the Job waits for them to be gone or Succeeded |

Not modelled: a `virtctl stop` or detector error fails the Job's pod in the real script (`bash -e`; the Job
retries it); here it is logged to the Job's pod log and the step goes on. `restoreVM` on a single node is not
modelled (it lives in the upgrade controller's end of upgrade): those VMs stay stopped, as with the default
`restoreVM: false`. A VMI without a VirtualMachine is never stopped and holds its node's pre-drain.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..apiserver.objects import AdmissionRequest
from ..controllers import upgrade_webhook
from .common import DRAIN_TAINT_KEY, HARVESTER_UPGRADE_LABEL, NODE_NAME_LABEL, Obj
from .migratability import harvester_non_migratable

if TYPE_CHECKING:
    from ..simulator import Simulator
    from .controller import KubeVirt

WAIT_SECONDS = 5.0                     # `sleep 5` in wait_vms_out_or_shutdown / wait_vms_out
Say = Callable[[str], None]


def kubevirt_of(simulator: "Simulator") -> "KubeVirt | None":
    return getattr(simulator, "kubevirt", None)


def _names(kv: "KubeVirt", label_selector: str = "") -> list[Obj]:
    return sorted(kv.api.list(kv.vmis, label_selector=label_selector).items,
                  key=lambda v: (v["metadata"]["namespace"], v["metadata"]["name"]))


def running_count(kv: "KubeVirt", node: str) -> int:
    """`get_running_vm_count`: VMIs labelled with the node whose phase is not Succeeded."""
    return sum(1 for v in kv.api.list(kv.vmis, label_selector=f"{NODE_NAME_LABEL}={node}").items
               if (v.get("status") or {}).get("phase") != "Succeeded")


def _go_list(items: list[str]) -> str:
    return "[" + " ".join(items) + "]"


def detect_and_stop(kv: "KubeVirt", node: str, say: Say) -> list[str]:
    """`upgrade-helper vm-live-migrate-detector <node> --shutdown`; the VMs it stopped."""
    vmis = _names(kv, f"{NODE_NAME_LABEL}={node},!{HARVESTER_UPGRADE_LABEL}")
    names = harvester_non_migratable(vmis, kv.node_list())
    say("Starting VM Live Migrate Detector")
    say(f"Non-migratable VM(s): {_go_list(names)}")
    stopped = []
    for full in names:
        namespace, _, name = full.rpartition("/")
        problem = kv.stop_vm(namespace, name)
        if problem:
            say(problem)
            continue
        stopped.append(full)
        say(f"vm {full} was administratively stopped")
    return stopped


def taint(kv: "KubeVirt", node: str, present: bool) -> None:
    """`kubectl taint node <node> --overwrite kubevirt.io/drain=draining:NoSchedule`, or `kubevirt.io/drain-`."""
    def change(obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        taints = [t for t in spec.get("taints") or [] if t.get("key") != DRAIN_TAINT_KEY]
        if present:
            taints.append({"key": DRAIN_TAINT_KEY, "value": "draining", "effect": "NoSchedule"})
        if taints:
            spec["taints"] = taints
        else:
            spec.pop("taints", None)
    kv.api.mutate(kv.nodes, None, node, change)


async def pre_drain(simulator: "Simulator", node: str, say: Say) -> None:
    """The VM part of `command_pre_drain`: returns once no VM runs on the node (which may be never)."""
    kv = kubevirt_of(simulator)
    if kv is None:
        return
    detect_and_stop(kv, node, say)
    taint(kv, node, True)
    say(f"node/{node} tainted")
    await _wait_vms_out(simulator, kv, node, say, "Waiting for VM live-migration or shutdown")
    say(f"all VMs on node {node} have been live-migrated or shutdown")


async def _wait_vms_out(simulator: "Simulator", kv: "KubeVirt", node: str, say: Say, waiting: str) -> None:
    """The scripts' wait loops: every 5 s, no timeout, until no VMI labelled with the node is still running."""
    while True:
        count = running_count(kv, node)
        if count == 0:
            return
        say(f"{waiting}...(count: {count})")
        await simulator.clock.sleep(WAIT_SECONDS)


def post_drain(simulator: "Simulator", node: str, say: Say) -> None:
    """`kubectl taint node <node> kubevirt.io/drain- || true` in `command_post_drain`."""
    kv = kubevirt_of(simulator)
    if kv is None:
        return
    taint(kv, node, False)
    say(f"node/{node} untainted")


async def single_node_shutdown(simulator: "Simulator", node: str, say: Say) -> None:
    """`shutdown_all_vms` then `wait_vms_out` in `command_single_node_upgrade`."""
    kv = kubevirt_of(simulator)
    if kv is None:
        return
    for vmi in _names(kv):
        namespace, name = vmi["metadata"]["namespace"], vmi["metadata"]["name"]
        say(f"Stop {namespace}/{name}")
        problem = kv.stop_vm(namespace, name)
        if problem:
            say(problem)
    await _wait_vms_out(simulator, kv, node, say, "Waiting for VM shutdown")
    say("all VMs are down")


def precheck(kv: "KubeVirt") -> Callable[[AdmissionRequest], None]:
    """`checkNonLiveMigratableVMs` of `validator.harvesterhci.io` on Upgrade creation.

    Registered after `controllers.upgrade_webhook` (whose list has it as an unmodelled pass): the webhook's
    other checks run first; a release whose `checkCerts` follows it (v1.5.0-rc2 on) would report a certificate
    problem before this one only when both fail."""
    def check(request: AdmissionRequest) -> None:
        if request.subresource or request.operation != "CREATE" or request.object is None:
            return
        annotations = (request.object.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(upgrade_webhook.SKIP_WEBHOOK_ANNOTATION, "")).lower() == "true":
            return
        names = harvester_non_migratable(_names(kv), kv.node_list())
        if names:
            raise upgrade_webhook.invalid("There are non-live migratable VMs that need to be shut off before "
                                          f"initiating the upgrade: {', '.join(names)}").relayed()
    return check
