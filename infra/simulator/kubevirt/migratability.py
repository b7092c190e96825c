"""Whether a VMI can live-migrate: KubeVirt's answer and Harvester's (they differ).

KubeVirt (the VMI's `LiveMigratable` condition; identical at v1.3.1 and v1.4.0):

* virt-handler `calculateLiveMigrationCondition` (pkg/virt-handler/vm.go), first failure wins:
  `checkVolumesForMigration` - a PVC or DataVolume whose `status.volumeStatus[].persistentVolumeClaimInfo` is
  missing: "cannot migrate VMI: Unable to determine if PVC <claim> is shared, live migration requires that all
  PVCs must be shared (using ReadWriteMany access mode)"; a PVC without ReadWriteMany: "cannot migrate VMI: PVC
  <claim> is not shared, ..." (reason DisksNotLiveMigratable); a non-shared hostDisk: "cannot migrate VMI with
  non-shared HostDisk"; any other volume behind a writable disk makes the migration a BlockMigration
  (`status.migrationMethod`), a read-only CD-ROM does not. Then `checkNetworkInterfacesForMigration`
  (pkg/network/vmispec/interface.go `VerifyVMIMigratable`): the pod network bound by anything but masquerade
  (or bridge with the `kubevirt.io/allow-pod-bridge-network-live-migration` annotation): "cannot migrate VMI
  which does not use masquerade, bridge with kubevirt.io/allow-pod-bridge-network-live-migration VM annotation
  or a migratable plugin to connect to the pod network" (InterfaceNotLiveMigratable). Then virtiofs, PCI host
  devices or GPUs ("VMI uses a PCI host devices", HostDeviceNotLiveMigratable), SEV, SCSI persistent
  reservation, Hyper-V passthrough. (Host-model CPU and TSC-frequency checks are not modelled.)
* The default interface: with no networks and no interfaces the VMI mutator adds the pod network and the
  cluster's default binding (pkg/network/vmispec/defaults.go `SetDefaultNetworkInterface`); Harvester's KubeVirt
  CR sets `defaultNetworkInterface: bridge` (deploy/charts/harvester/values.yaml), so such a VM is not
  migratable.
* Eviction: `VMIMigratableOnEviction` (pkg/util/migrations/migrations.go): the VMI's evictionStrategy, else the
  cluster's (None by default, Harvester sets none); LiveMigrate -> migrate, LiveMigrateIfPossible -> migrate
  only if LiveMigratable, None/External -> never.

Harvester (`pkg/util/virtualmachineinstance/virtualmachineinstance.go` `GetAllNonLiveMigratableVMINames`,
identical at v1.4.2, v1.4.3, v1.5.0-rc2, v1.5.0, v1.5.1, v1.5.2 and ce188325), used by the upgrade webhook's
`checkNonLiveMigratableVMs` and the pre-drain `upgrade-helper vm-live-migrate-detector --shutdown`: nothing on a
one-node cluster; otherwise a VMI with any `spec.nodeSelector`, any `hostDevices`, a required node affinity no
other schedulable node satisfies, a CD-ROM disk or a containerDisk volume. It never reads the LiveMigratable
condition: an RWO-disk or pod-bridge VM passes it.
"""
from __future__ import annotations

from typing import Iterable

from .common import ALLOW_POD_BRIDGE_MIGRATION, CLUSTER_EVICTION_STRATEGY, Obj

PVC_UNKNOWN = ("cannot migrate VMI: Unable to determine if PVC {claim} is shared, live migration requires that all "
               "PVCs must be shared (using ReadWriteMany access mode)")
PVC_NOT_SHARED = ("cannot migrate VMI: PVC {claim} is not shared, live migration requires that all PVCs must be "
                  "shared (using ReadWriteMany access mode)")
HOSTDISK_NOT_SHARED = "cannot migrate VMI with non-shared HostDisk"
POD_NETWORK_NOT_MIGRATABLE = ("cannot migrate VMI which does not use masquerade, bridge with "
                              f"{ALLOW_POD_BRIDGE_MIGRATION} VM annotation or a migratable plugin to connect to the "
                              "pod network")

DEFAULT_NETWORK_INTERFACE = "bridge"     # Harvester's KubeVirt CR: configuration.network.defaultNetworkInterface


def _spec(vmi: Obj) -> Obj:
    return vmi.get("spec") or {}


def _devices(vmi: Obj) -> Obj:
    return (_spec(vmi).get("domain") or {}).get("devices") or {}


def claim_of(volume: Obj) -> str:
    """The PVC behind a persistentVolumeClaim or dataVolume volume ("" for any other kind)."""
    if volume.get("persistentVolumeClaim") is not None:
        return str((volume["persistentVolumeClaim"] or {}).get("claimName", ""))
    if volume.get("dataVolume") is not None:
        return str((volume["dataVolume"] or {}).get("name", ""))
    return ""


def _read_only(disk: Obj) -> bool:
    """pkg/util/util.go IsReadOnlyDisk: a CD-ROM that is not explicitly writable."""
    cdrom = disk.get("cdrom")
    return cdrom is not None and (cdrom or {}).get("readonly", True) is not False


def check_volumes(vmi: Obj) -> tuple[bool, str]:
    """`checkVolumesForMigration`: (block migration?, error message or "")."""
    statuses = {s.get("name"): s for s in (vmi.get("status") or {}).get("volumeStatus") or []}
    disks = {d.get("name"): d for d in _devices(vmi).get("disks") or []}
    block = False
    for volume in _spec(vmi).get("volumes") or []:
        claim = claim_of(volume)
        if volume.get("persistentVolumeClaim") is not None or volume.get("dataVolume") is not None:
            info = (statuses.get(volume.get("name")) or {}).get("persistentVolumeClaimInfo")
            if not info:
                return True, PVC_UNKNOWN.format(claim=claim)
            if "ReadWriteMany" not in (info.get("accessModes") or []):
                return True, PVC_NOT_SHARED.format(claim=claim)
        elif volume.get("hostDisk") is not None:
            if not (volume["hostDisk"] or {}).get("shared"):
                return True, HOSTDISK_NOT_SHARED
        else:
            disk = disks.get(volume.get("name"))
            if disk is not None and _read_only(disk):
                continue
            block = True
    return block, ""


def _pod_network(vmi: Obj) -> Obj | None:
    return next((n for n in _spec(vmi).get("networks") or [] if n.get("pod") is not None), None)


def check_interfaces(vmi: Obj) -> str:
    """`VerifyVMIMigratable` (no network binding plugins are registered in Harvester's KubeVirt)."""
    interfaces = _devices(vmi).get("interfaces") or []
    if not interfaces:
        return ""
    network = _pod_network(vmi)
    if network is None:
        return ""                                   # IsPodNetworkWithMasqueradeBindingInterface: no pod network
    interface = next((i for i in interfaces if i.get("name") == network.get("name")), None)
    if interface is None:
        return POD_NETWORK_NOT_MIGRATABLE
    if interface.get("masquerade") is not None:
        return ""
    annotations = vmi["metadata"].get("annotations") or {}
    if ALLOW_POD_BRIDGE_MIGRATION in annotations and interface.get("bridge") is not None:
        return ""
    return POD_NETWORK_NOT_MIGRATABLE


def live_migratable(vmi: Obj) -> tuple[str, str, str, str]:
    """`calculateLiveMigrationCondition`: (status, reason, message, migration method)."""
    block, volume_error = check_volumes(vmi)
    method = "BlockMigration" if block else "LiveMigration"
    if volume_error:
        return "False", "DisksNotLiveMigratable", volume_error, method
    interface_error = check_interfaces(vmi)
    if interface_error:
        return "False", "InterfaceNotLiveMigratable", interface_error, method
    devices = _devices(vmi)
    if any(f.get("virtiofs") is not None for f in devices.get("filesystems") or []):
        return "False", "VirtIOFSNotLiveMigratable", "VMI uses virtiofs", method
    if devices.get("hostDevices") or devices.get("gpus"):
        return "False", "HostDeviceNotLiveMigratable", "VMI uses a PCI host devices", method
    domain = _spec(vmi).get("domain") or {}
    if ((domain.get("launchSecurity") or {}).get("sev")) is not None:
        return "False", "SEVNotLiveMigratable", "VMI uses SEV", method
    if any(((d.get("lun") or {}).get("reservation")) for d in devices.get("disks") or []):
        return "False", "PersistentReservationNotLiveMigratable", "VMI uses SCSI persitent reservation", method
    if ((domain.get("features") or {}).get("hypervPassthrough") or {}).get("enabled"):
        return "False", "HypervPassthroughNotLiveMigratable", "VMI uses hyperv passthrough", method
    return "True", "", "", method


def storage_live_migratable(vmi: Obj) -> tuple[str, str, str]:
    """`calculateLiveStorageMigrationCondition` (KubeVirt v1.4.0 on; v1.3.1 has no StorageLiveMigratable): the
    checks above but the volumes', every failure listed ("<reason>: <message>, ..."), reason NotMigratable."""
    problems = []
    interface_error = check_interfaces(vmi)
    if interface_error:
        problems.append(("InterfaceNotLiveMigratable", interface_error))
    devices = _devices(vmi)
    domain = _spec(vmi).get("domain") or {}
    if any(f.get("virtiofs") is not None for f in devices.get("filesystems") or []):
        problems.append(("VirtIOFSNotLiveMigratable", "VMI uses virtiofs"))
    if devices.get("hostDevices") or devices.get("gpus"):
        problems.append(("HostDeviceNotLiveMigratable", "VMI uses a PCI host devices"))
    if ((domain.get("launchSecurity") or {}).get("sev")) is not None:
        problems.append(("SEVNotLiveMigratable", "VMI uses SEV"))
    if any(((d.get("lun") or {}).get("reservation")) for d in devices.get("disks") or []):
        problems.append(("PersistentReservationNotLiveMigratable", "VMI uses SCSI persitent reservation"))
    if ((domain.get("features") or {}).get("hypervPassthrough") or {}).get("enabled"):
        problems.append(("HypervPassthroughNotLiveMigratable", "VMI uses hyperv passthrough"))
    if not problems:
        return "True", "", ""
    return "False", "NotMigratable", ", ".join(f"{reason}: {message}" for reason, message in problems)


def default_network(spec: Obj) -> None:
    """`SetDefaultNetworkInterface` with Harvester's default binding (bridge), on a VMI spec being created."""
    devices = spec.setdefault("domain", {}).setdefault("devices", {})
    if devices.get("autoattachPodInterface") is False:
        return
    if spec.get("networks") or devices.get("interfaces"):
        return
    devices["interfaces"] = [{"name": "default", DEFAULT_NETWORK_INTERFACE: {}}]
    spec["networks"] = [{"name": "default", "pod": {}}]


def eviction_strategy(vmi: Obj) -> str:
    """`VMIEvictionStrategy`: the VMI's own, else the cluster's."""
    return str(_spec(vmi).get("evictionStrategy") or CLUSTER_EVICTION_STRATEGY)


def migratable_on_eviction(vmi: Obj, is_live_migratable: bool) -> bool:
    """`VMIMigratableOnEviction`."""
    strategy = eviction_strategy(vmi)
    if strategy == "LiveMigrate":
        return True
    if strategy == "LiveMigrateIfPossible":
        return is_live_migratable
    return False


# --- Harvester's rules ----------------------------------------------------------------------------------

def _match_expression(values: dict[str, str], expression: Obj) -> bool:
    key, operator = expression.get("key", ""), expression.get("operator", "")
    wanted = [str(v) for v in expression.get("values") or []]
    present = key in values
    if operator == "In":
        return present and values[key] in wanted
    if operator == "NotIn":
        return not present or values[key] not in wanted
    if operator == "Exists":
        return present
    if operator == "DoesNotExist":
        return not present
    if operator in ("Gt", "Lt") and present and len(wanted) == 1:
        try:
            have, limit = int(values[key]), int(wanted[0])
        except ValueError:
            return False
        return have > limit if operator == "Gt" else have < limit
    return False


def match_node_selector_terms(node: Obj, selector: Obj) -> bool:
    """component-helpers `MatchNodeSelectorTerms`: any term; within a term every expression and field."""
    labels = node["metadata"].get("labels") or {}
    fields = {"metadata.name": node["metadata"]["name"]}
    for term in selector.get("nodeSelectorTerms") or []:
        expressions, field_expressions = term.get("matchExpressions") or [], term.get("matchFields") or []
        if not expressions and not field_expressions:
            continue                                  # an empty term matches nothing
        if all(_match_expression(labels, e) for e in expressions) and \
                all(_match_expression(fields, e) for e in field_expressions):
            return True
    return False


def required_node_affinity(vmi: Obj) -> Obj | None:
    return (((_spec(vmi).get("affinity") or {}).get("nodeAffinity") or {})
            .get("requiredDuringSchedulingIgnoredDuringExecution"))


def _migratable_by_node_affinity(vmi: Obj, nodes: list[Obj]) -> bool:
    """`migratableByNodeAffinity`: some other node is schedulable and satisfies the required node affinity."""
    here = str((vmi.get("status") or {}).get("nodeName") or "")
    required = required_node_affinity(vmi)
    for node in nodes:
        if node["metadata"]["name"] == here:
            continue
        if (node.get("spec") or {}).get("unschedulable"):
            continue
        if required is None or match_node_selector_terms(node, required):
            return True
    return False


def contains_cdrom_or_container_disk(vmi: Obj) -> bool:
    """`VMContainsCDRomOrContainerDisk`."""
    return any(d.get("cdrom") is not None for d in _devices(vmi).get("disks") or []) or \
        any(v.get("containerDisk") is not None for v in _spec(vmi).get("volumes") or [])


def harvester_non_migratable_reason(vmi: Obj, nodes: list[Obj]) -> str:
    """Why `GetAllNonLiveMigratableVMINames` lists this VMI ("" if it does not); nodes: all of the cluster's."""
    if _spec(vmi).get("nodeSelector") is not None:
        return "node selectors"
    if _devices(vmi).get("hostDevices") is not None:
        return "pcie or usb devices"
    if not _migratable_by_node_affinity(vmi, nodes):
        return "node affinities"
    if contains_cdrom_or_container_disk(vmi):
        return "CD-ROM or container disk"
    return ""


def harvester_non_migratable(vmis: Iterable[Obj], nodes: list[Obj]) -> list[str]:
    """`GetAllNonLiveMigratableVMINames`: "<namespace>/<name>" of each, in the order given."""
    if len(nodes) == 1:
        return []
    return [f"{v['metadata'].get('namespace', '')}/{v['metadata']['name']}" for v in vmis
            if harvester_non_migratable_reason(v, nodes)]
