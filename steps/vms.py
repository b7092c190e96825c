"""Steps about the VMs users run: made before an upgrade with data inside, watched over SSH while it runs,
looked inside after it. The image, its user and the outage budget are the run's (`vms:`); the VMs are reached
through the cluster's nodes, as a lab reaches its guests.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pytest_bdd import given, then

from infra.cleanup import CleanupStack
from infra.cluster import Capability, CapabilityMissing, Cluster
from infra.config import RunConfig
from infra.harvester.backups import (VmBackup, backup_target, restore_to_new_vm, take_backup, wait_backup_ready,
                                     wait_restored)
from infra.harvester import ippool
from infra.harvester.upgrade.follow import UpgradeAttempt
from infra.harvester.vms import KUBEVIRT, GuestVm, VmRequest, address_probe, create_vm, run_inside, wait_running
from infra.report.attach import attach_text
from infra.scratch import scratch_dir
from infra.ssh import generate_keypair
from infra.waits.budget import Budget
from infra.waits.catalogue import Wait, budget
from infra.waits.poll import poll_until

DATA_FILE = "e2e-data"
LB_PORT = 2222          # the load balancer's listener in front of the guests' sshd (22)


@dataclass
class WatchedVms:
    vms: list[GuestVm]
    known_hosts: Path
    guest_ssh: Budget                                         # each look inside waits for the guest this long
    uids: dict[str, str] = field(default_factory=dict)        # VM name -> its VMI's uid (kept running = same)
    boot_ids: dict[str, str] = field(default_factory=dict)    # VM name -> the guest's boot id
    checksums: dict[str, str] = field(default_factory=dict)   # VM name -> sha256 of the data, read inside

    def inside(self, cluster: Cluster, vm: GuestVm, command: str) -> str:
        return run_inside(cluster, vm, self.known_hosts, command, self.guest_ssh)


@given("two running VMs on different nodes, each with random data and its checksum taken inside",
       target_fixture="watched_vms")
def two_vms(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack) -> WatchedVms:
    cluster.require(Capability.SSH, "looking inside VMs through a node")
    settings, kube = run_config.vms, cluster.kube()
    keys = generate_keypair(scratch_dir("vm-keys"), comment=f"harvester-e2e {run_config.run_id}")
    watched = WatchedVms([], scratch_dir("vm-known-hosts") / "known_hosts", budget(Wait.GUEST_SSH, run_config))
    for letter in "ab":        # one after the other, so the second is placed beside the first's node
        vm = create_vm(kube, VmRequest(settings.namespace, f"{run_config.run_id}-vm-{letter}"[-63:].lstrip("-"),
                                       settings.image, settings.user, keys.public_key, settings.network),
                       keys.private_key_file, run_id=run_config.run_id, cleanup=cleanup,
                       gone=budget(Wait.OBJECT_GONE, run_config))
        vmi = wait_running(kube, vm, budget(Wait.OBJECT_STATE, run_config))
        watched.vms.append(vm)
        watched.uids[vm.name] = vmi["metadata"]["uid"]
    nodes = {vm.name: vm.node(kube) for vm in watched.vms}
    assert len(set(nodes.values())) == len(nodes), f"the VMs were scheduled on one node: {nodes}"
    for vm in watched.vms:
        output = watched.inside(cluster, vm, f"head -c 1048576 /dev/urandom > {DATA_FILE} && sync && "
                                             f"sha256sum {DATA_FILE}")
        watched.checksums[vm.name] = output.split()[0]
        watched.boot_ids[vm.name] = watched.inside(cluster, vm, "cat /proc/sys/kernel/random/boot_id")
    attach_text("VMs before the upgrade", "\n".join(
        f"{vm.namespace}/{vm.name} on {nodes[vm.name]}: sha256 {watched.checksums[vm.name]}, boot id "
        f"{watched.boot_ids[vm.name]}" for vm in watched.vms))
    return watched


@then("every VM kept running through the upgrade, its SSH outage within the VM outage budget")
def kept_running(cluster: Cluster, run_config: RunConfig, upgrade: UpgradeAttempt, watched_vms: WatchedVms) -> None:
    kube = cluster.kube()
    for vm in watched_vms.vms:
        vmi = kube.find(KUBEVIRT, "VirtualMachineInstance", vm.name, vm.namespace)
        assert vmi is not None and vmi["metadata"]["uid"] == watched_vms.uids[vm.name], \
            f"VM {vm.namespace}/{vm.name} was stopped or restarted during the upgrade (its VMI is not the one before)"
        assert watched_vms.inside(cluster, vm, "cat /proc/sys/kernel/random/boot_id") == \
            watched_vms.boot_ids[vm.name], f"VM {vm.namespace}/{vm.name} rebooted during the upgrade"
    assert upgrade.probes is not None, "the upgrade was not probed"
    problems = upgrade.probes.check({"vm ": run_config.vms.outage_budget_s})
    assert not problems, "; ".join(problems)


@then("every VM ran on an upgraded node at the end, having live-migrated")
def on_upgraded_nodes(cluster: Cluster, upgrade: UpgradeAttempt, watched_vms: WatchedVms) -> None:
    kube = cluster.kube()
    want = str(upgrade.release_file.get("os") or "")
    for vm in watched_vms.vms:
        vmi = kube.get(KUBEVIRT, "VirtualMachineInstance", vm.name, vm.namespace)
        node = vmi["status"].get("nodeName", "")
        assert vmi["status"].get("phase") == "Running", f"VM {vm.name} is {vmi['status'].get('phase')}"
        migration = vmi["status"].get("migrationState") or {}
        assert migration.get("completed"), f"VM {vm.name} never live-migrated during the upgrade"
        pretty = cluster.ssh(node).os_release().get("PRETTY_NAME", "")
        assert pretty == want, f"VM {vm.name} runs on {node}, which runs {pretty!r}, not the target's {want!r}"


@then("every VM has the same data checksum inside")
def same_checksum(cluster: Cluster, watched_vms: WatchedVms) -> None:
    for vm in watched_vms.vms:
        now = watched_vms.inside(cluster, vm, f"sha256sum {DATA_FILE}").split()[0]
        assert now == watched_vms.checksums[vm.name], \
            f"VM {vm.namespace}/{vm.name}: the data's sha256 is {now}, it was {watched_vms.checksums[vm.name]}"


@given("a snapshot and a backup of the first VM", target_fixture="vm_backups")
def snapshot_and_backup(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack,
                        watched_vms: WatchedVms) -> list[VmBackup]:
    """Both kinds Harvester's UI offers, of the first VM with its data in, each ready to use before going on."""
    kube = cluster.kube()
    target = backup_target(kube)
    if target is None:
        raise CapabilityMissing(f"backing up a VM needs {Capability.BACKUP_TARGET.value}; this cluster's "
                                "backup-target setting is empty", Capability.BACKUP_TARGET)
    vm = watched_vms.vms[0]
    made = [take_backup(kube, vm, f"{vm.name}-{kind}"[-63:].lstrip("-"), kind, run_id=run_config.run_id,
                        cleanup=cleanup, gone=budget(Wait.OBJECT_GONE, run_config)) for kind in ("snapshot", "backup")]
    for backup in made:
        wait_backup_ready(kube, backup, budget(Wait.VM_BACKUP, run_config))
    attach_text("VM backups before the upgrade", "\n".join(
        f"{b.kind} {b.namespace}/{b.name} of VM {b.source.name} (sha256 {watched_vms.checksums[vm.name]})"
        + (f", on {target}" if b.kind == "backup" else "") for b in made))
    return made


@then("the snapshot and the backup each restore to a new VM with the same data inside")
def restores_keep_data(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack, watched_vms: WatchedVms,
                       vm_backups: list[VmBackup]) -> None:
    kube, lines = cluster.kube(), []
    restores = [restore_to_new_vm(kube, b, f"{b.name}-restored"[-63:].lstrip("-"), run_id=run_config.run_id,
                                  cleanup=cleanup, gone=budget(Wait.OBJECT_GONE, run_config)) for b in vm_backups]
    for backup, restore in zip(vm_backups, restores):
        wait_restored(kube, restore, budget(Wait.VM_BACKUP, run_config))
        wait_running(kube, restore.vm, budget(Wait.OBJECT_STATE, run_config))
        now = watched_vms.inside(cluster, restore.vm, f"sha256sum {DATA_FILE}").split()[0]
        lines.append(f"{backup.kind} {backup.name} -> VM {restore.vm.name} on {restore.vm.node(kube)}: sha256 {now}")
        assert now == watched_vms.checksums[backup.source.name], \
            (f"VM {restore.vm.name} restored from {backup.kind} {backup.name}: the data's sha256 is {now}, "
             f"{backup.source.name} had {watched_vms.checksums[backup.source.name]} when it was taken")
    attach_text("VMs restored after the upgrade", "\n".join(lines))


@dataclass(frozen=True)
class VmLoadBalancer:
    namespace: str
    name: str
    address: str
    port: int

    @property
    def probe_name(self) -> str:
        return f"lb {self.namespace}/{self.name} {self.address}:{self.port}"


@given("a load balancer in front of the VMs' SSH", target_fixture="vm_load_balancer")
def load_balancer_in_front(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack,
                           watched_vms: WatchedVms) -> VmLoadBalancer:
    """A pool-mode VM load balancer (its pool from the lab's test range) forwarding a TCP port to both VMs' sshd,
    answering through a node before the story goes on."""
    cluster.require(Capability.LB_ADDRESSES, "a load balancer with an address from a test IPPool")
    assert cluster.lb_addresses is not None
    kube, gone = cluster.kube(), budget(Wait.OBJECT_GONE, run_config)
    namespace = run_config.vms.namespace
    pool = ippool.create_pool(kube, cleanup, run_config.run_id, "vm-lb",
                              {"scope": [{"project": "*", "namespace": namespace, "guestCluster": "*"}]}, gone,
                              cluster.lb_addresses, size=2)
    lb = ippool.create_vm_loadbalancer(kube, cleanup, run_config.run_id, namespace, "vm-lb", gone,
                                       vms=[vm.name for vm in watched_vms.vms], pool=pool.name, port=LB_PORT,
                                       backend_port=22)
    _, address = ippool.wait_for_address(kube, lb, budget(Wait.OBJECT_STATE, run_config))
    made = VmLoadBalancer(namespace, lb.name, address.ip, LB_PORT)
    answers = address_probe(cluster, made.probe_name, made.address, made.port, watched_vms.known_hosts)
    def answered() -> bool:
        answers.attempt(3.0)          # refused (an OSError) until a backend's sshd listens: tried again
        return True
    poll_until(answered, budget(Wait.OBJECT_STATE, run_config),
               f"load balancer {namespace}/{lb.name} to answer at {address.ip}:{LB_PORT}", interval_s=1.0)
    attach_text("load balancer in front of the VMs",
                f"{namespace}/{lb.name}: {address.ip}:{LB_PORT} (pool {address.pool}) -> port 22 of "
                + ", ".join(vm.name for vm in watched_vms.vms))
    return made


@then("the load balancer answered through the upgrade, its outage within the VM outage budget")
def load_balancer_answered(run_config: RunConfig, upgrade: UpgradeAttempt, vm_load_balancer: VmLoadBalancer) -> None:
    assert upgrade.probes is not None, "the upgrade was not probed"
    summary = upgrade.probes.probe(vm_load_balancer.probe_name)
    assert summary.samples > 0, f"the load balancer {vm_load_balancer.probe_name} was never probed"
    problems = upgrade.probes.check({"lb ": run_config.vms.outage_budget_s})
    assert not problems, "; ".join(problems)


@given("a running VM pinned to one node by a nodeSelector", target_fixture="pinned_vm")
def pinned_vm(cluster: Cluster, run_config: RunConfig, cleanup: CleanupStack) -> GuestVm:
    settings, kube = run_config.vms, cluster.kube()
    keys = generate_keypair(scratch_dir("vm-keys"), comment=f"harvester-e2e {run_config.run_id}")
    node = cluster.node_names()[0]
    vm = create_vm(kube, VmRequest(settings.namespace, f"{run_config.run_id}-pinned"[-63:].lstrip("-"), settings.image,
                                   settings.user, keys.public_key, settings.network, node=node),
                   keys.private_key_file, run_id=run_config.run_id, cleanup=cleanup,
                   gone=budget(Wait.OBJECT_GONE, run_config))
    wait_running(kube, vm, budget(Wait.OBJECT_STATE, run_config))
    assert vm.node(kube) == node, f"VM {vm.name} runs on {vm.node(kube)}, not on {node} its nodeSelector names"
    return vm
