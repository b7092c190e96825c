"""virt-controller and virt-handler for VirtualMachines and their instances: VM -> VMI -> virt-launcher pod.

What follows KubeVirt v1.3.1 / v1.4.0 (the versions Harvester v1.4.x / v1.5.x ship; the code read is the same):

* VM controller (pkg/virt-controller/watch/vm/vm.go): the run strategy (`spec.running: true` is Always,
  `false` or neither is Halted) decides (`syncRunStrategy`): Always keeps a VMI (a final one, or one with a Stop
  request, is deleted and started again); RerunOnFailure starts one when coming from another strategy or on a
  Start request, deletes a Succeeded one and restarts a Failed one; Manual starts and stops on requests only;
  Halted deletes it; Once starts it if there is none. Stop/Start requests are `status.stateChangeRequests`.
  `setupVMIFromVM`: the VMI has the VM's name, the template's labels and annotations and a controller
  reference to the VM. Status: `created`, `ready`, `runStrategy`, `printableStatus` (`setPrintableStatus`:
  Terminating, Stopping, Migrating, Paused, Running, ErrorPvcNotFound, ErrorUnschedulable, Starting, Stopped,
  first match wins) and the conditions (`syncConditions`: Ready from the VMI's, VMINotExists without one; the
  VMI's other conditions copied).
* VMI controller (pkg/virt-controller/watch/vmi/vmi.go) and virt-handler: phases Pending -> Scheduling (the
  launcher pod exists) -> Scheduled (it runs on a node: `status.nodeName`, label `kubevirt.io/nodeName`) ->
  Running (the domain runs: Ready, LiveMigratable, `interfaces`, `volumeStatus`, `migrationMethod`); a missing
  PVC holds it Pending (Synchronized False, FailedPvcNotFound: "PVC <ns>/<name> does not exist, waiting for it
  to appear"); no fitting node holds it in Scheduling (PodScheduled False, Unschedulable). Deleting a VMI
  shuts the guest down, then the pods go and the finalizers (`foregroundDeleteVirtualMachine`,
  `kubevirt.io/virtualMachineControllerFinalize`) are removed. A launcher pod that disappears under a running
  VMI fails it.
* The launcher pod (pkg/virt-controller/services/template.go): `virt-launcher-<vmi>-<5 random>` (generateName),
  labels = the VMI's plus `kubevirt.io: virt-launcher`, `kubevirt.io/created-by: <vmi uid>` and
  `vm.kubevirt.io/name: <hostname>` (`spec.hostname`, else the VMI's name), a controller reference to the VMI.

Migrations are in `migrations.py`, the drain taint's evacuation in `evacuation.py`. VMIs some other part of the
simulator made already Running (the guest clusters' nodes) are left as they are, except that they migrate and
stop like any other; a VM whose virt-launcher pod the simulator made directly under the VM (the upgrade repo
VM, `controllers/upgrade_repo.py`) is not managed here at all.
"""
from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from ..apiserver import errors
from ..apiserver.clock import rfc3339
from ..apiserver.store import StoredEvent
from ..controllers.base import Controller
from ..harvester.versions import UnknownVersionError, get_version
from .common import (API_VERSION, APP_LABEL, BOOT_SECONDS, CREATED_BY_LABEL, GROUP, LAUNCHER_IMAGE,
                     MIGRATION_TARGET_NODE_LABEL, NODE_NAME_LABEL, POD_CREATE_SECONDS, SCHEDULE_SECONDS,
                     SHUTDOWN_SECONDS, VERSION, VM_CONTROLLER_FINALIZER, VM_NAME_LABEL, VMI_FINAL_PHASES,
                     VMI_FINALIZER, Obj, condition, condition_is, controller_ref, controller_uid, generated_suffix,
                     remove_condition, set_condition, stable_host, stable_mac, stamp_phase)
from .migratability import claim_of, live_migratable, migratable_on_eviction, storage_live_migratable
from .scheduling import pick_node

if TYPE_CHECKING:
    from ..simulator import Simulator
    from .evacuation import Evacuation
    from .guests import Guests
    from .migrations import Migrations

log = logging.getLogger(__name__)

VM_COMPONENT, VMI_COMPONENT = "virtualmachine-controller", "virtualmachineinstance-controller"
VM_NOT_RUNNING = "VM is not running"
KEYS = {"vms": (GROUP, "virtualmachines"), "vmis": (GROUP, "virtualmachineinstances"),
        "vmims": (GROUP, "virtualmachineinstancemigrations"), "pods": ("", "pods"), "nodes": ("", "nodes"),
        "pvcs": ("", "persistentvolumeclaims")}


def run_strategy(vm: Obj) -> str:
    """`vm.RunStrategy()`: spec.running wins when set (KubeVirt rejects both), else runStrategy, else Halted."""
    spec = vm.get("spec") or {}
    if spec.get("running") is not None:
        return "Always" if spec["running"] else "Halted"
    return str(spec.get("runStrategy") or "Halted")


def is_final(vmi: Obj | None) -> bool:
    return vmi is not None and (vmi.get("status") or {}).get("phase") in VMI_FINAL_PHASES


def is_migrating(vmi: Obj | None) -> bool:
    """pkg/util/migrations `IsMigrating`: started and not ended."""
    state = ((vmi or {}).get("status") or {}).get("migrationState") or {}
    return bool(state.get("startTimestamp")) and not state.get("endTimestamp")


class KubeVirt(Controller):
    """The simulated KubeVirt of one simulator: its store events, its timed work, its helpers."""

    watches = tuple(KEYS.values())

    def __init__(self, simulator: "Simulator") -> None:
        super().__init__(simulator.api)
        self.simulator = simulator
        self.clock = simulator.clock
        self.vms = self.api.lookup(GROUP, VERSION, "virtualmachines")
        self.vmis = self.api.lookup(GROUP, VERSION, "virtualmachineinstances")
        self.vmims = self.api.lookup(GROUP, VERSION, "virtualmachineinstancemigrations")
        self.pods = self.api.lookup("", "v1", "pods")
        self.nodes = self.api.lookup("", "v1", "nodes")
        self.pvcs = self.api.lookup("", "v1", "persistentvolumeclaims")
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._changed: asyncio.Event | None = None
        self.migrations: "Migrations"
        self.evacuation: "Evacuation"
        self.guests: "Guests | None" = None

    # --- events -------------------------------------------------------------------------------------
    def _offer(self, event: StoredEvent) -> None:
        if event.type_key == KEYS["pods"] and \
                (event.object["metadata"].get("labels") or {}).get(APP_LABEL) != "virt-launcher":
            return
        super()._offer(event)

    async def handle(self, event: StoredEvent) -> None:
        self.pulse()
        obj, key = event.object, event.type_key
        meta = obj["metadata"]
        if key == KEYS["vms"]:
            self.sync_vm(meta.get("namespace", ""), meta["name"])
        elif key == KEYS["vmis"]:
            self._on_vmi(event)
        elif key == KEYS["vmims"]:
            self.migrations.on_event(event)
        elif key == KEYS["pods"] and event.type == "DELETED":
            self._on_pod_gone(obj)
        self.evacuation.sync()

    def pulse(self) -> None:
        """Wake whatever waits for the world to change (a node back, a PVC created, a pod gone)."""
        if self._changed is not None:
            self._changed.set()
        self._changed = asyncio.Event()

    async def settle(self, simulated_seconds: float) -> None:
        """Wait for the next change or `simulated_seconds`, whichever comes first."""
        if self._changed is None:
            self._changed = asyncio.Event()
        try:
            await asyncio.wait_for(self._changed.wait(), max(simulated_seconds, 0.0) / self.clock.scale)
        except asyncio.TimeoutError:
            pass

    def spawn_once(self, key: str, make: Callable[[], Awaitable[Any]]) -> None:
        running = self._tasks.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.get_running_loop().create_task(make(), name=f"kubevirt {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t, k=key: self._tasks.pop(k, None) if self._tasks.get(k) is t else None)
        self.simulator.track(task)

    def cancel(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    def resync(self) -> None:
        """After a (re)start: every VM reconciled, every VMI's unfinished business picked up again."""
        for vmi in self.api.list(self.vmis).items:
            self._pick_up(vmi)
        for vm in self.api.list(self.vms).items:
            self.sync_vm(vm["metadata"]["namespace"], vm["metadata"]["name"])
        self.migrations.resync()
        if self.guests is not None:
            self.guests.resync()                 # the Running VMIs' guests boot again

    def record_event(self, obj: Obj, event_type: str, reason: str, message: str, component: str) -> None:
        """An Event, unless its namespace is going away (the recorder's write fails and is dropped)."""
        try:
            super().record_event(obj, event_type, reason, message, component)
        except errors.ApiError as exc:
            log.debug("event %s on %s not recorded: %s", reason, obj["metadata"].get("name"), exc.message)

    # --- reads --------------------------------------------------------------------------------------
    def find(self, rtype: Any, namespace: str | None, name: str) -> Obj | None:
        return self.api.find(rtype, namespace, name)

    def vmi_pods(self, vmi: Obj) -> list[Obj]:
        """The pods the VMI controls (its launcher pods, migration targets included)."""
        uid = vmi["metadata"]["uid"]
        return [p for p in self.api.list(self.pods, vmi["metadata"]["namespace"]).items if controller_uid(p) == uid]

    def all_launchers(self) -> list[Obj]:
        return self.api.list(self.pods, label_selector=f"{APP_LABEL}=virt-launcher").items

    def node_list(self) -> list[Obj]:
        return sorted(self.api.list(self.nodes).items, key=lambda n: n["metadata"]["name"])

    def launcher_image(self) -> str:
        """virt-launcher of the KubeVirt running now: the one of the Harvester in `server-version`."""
        settings = self.api.lookup("harvesterhci.io", "v1beta1", "settings")
        setting = self.api.find(settings, None, "server-version") or {}
        current = str(setting.get("value") or setting.get("default") or "")
        try:
            version = get_version(current)
        except UnknownVersionError:
            version = self.simulator.version
        return f"{LAUNCHER_IMAGE}:{version.kubevirt_version}"

    def node_ip(self, node_name: str) -> str:
        node = self.find(self.nodes, None, node_name) or {}
        return next((a.get("address", "") for a in (node.get("status") or {}).get("addresses") or []
                     if a.get("type") == "InternalIP"), "")

    def pod_ip(self, node_name: str, pod_name: str) -> str:
        """An address in the node's pod CIDR (`spec.podCIDR`) no running pod has (the CNI's IPAM hands out
        each address once); the pod's own stable pick when it is free."""
        node = self.find(self.nodes, None, node_name) or {}
        cidr = str((node.get("spec") or {}).get("podCIDR") or "10.52.0.0/24")
        prefix = cidr.split("/")[0].rsplit(".", 1)[0]
        taken = {(p.get("status") or {}).get("podIP") for p in self.api.list(self.pods).items
                 if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                 and p["metadata"]["name"] != pod_name}
        first = stable_host(node_name, pod_name)
        for offset in range(253):
            address = f"{prefix}.{2 + (first - 2 + offset) % 253}"
            if address not in taken:
                return address
        return f"{prefix}.{first}"

    # --- VirtualMachines ------------------------------------------------------------------------------
    def _external(self, vm: Obj) -> bool:
        """A VM whose launcher pod the simulator made directly under the VM (the upgrade repo VM)."""
        uid = vm["metadata"]["uid"]
        return any(any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])
                   for p in self.api.list(self.pods, vm["metadata"]["namespace"],
                                          label_selector=f"{APP_LABEL}=virt-launcher").items)

    def sync_vm(self, namespace: str, name: str) -> None:
        vm = self.find(self.vms, namespace, name)
        if vm is None:
            return
        vmi = self.find(self.vmis, namespace, name)
        if vmi is not None and controller_uid(vmi) not in ("", vm["metadata"]["uid"]):
            vmi = None                                   # someone else's VMI: not this VM's to run
        if vmi is None and self._external(vm):
            return
        try:
            if vm["metadata"].get("deletionTimestamp"):
                if vmi is not None:
                    self._delete_vmi(vmi)
            else:
                vmi = self._apply_run_strategy(vm, vmi)
        except errors.ApiError as exc:
            log.warning("VM %s/%s: %s", namespace, name, exc.message)
        self._write_vm_status(namespace, name)

    def _apply_run_strategy(self, vm: Obj, vmi: Obj | None) -> Obj | None:
        strategy = run_strategy(vm)
        status = vm.get("status") or {}
        requests = status.get("stateChangeRequests") or []
        stop_requested = vmi is not None and any(r.get("action") == "Stop" and r.get("uid") in (None, "", vmi["metadata"]["uid"])
                                                 for r in requests)
        start_requested = any(r.get("action") == "Start" for r in requests)
        if vmi is not None and vmi["metadata"].get("deletionTimestamp"):
            return vmi                                   # on its way out; decide again once it is gone
        if strategy == "Always":
            if vmi is None:
                return self._start_vmi(vm)
            if stop_requested or is_final(vmi):
                self._delete_vmi(vmi)
        elif strategy == "RerunOnFailure":
            if vmi is None:
                if start_requested or status.get("runStrategy") != strategy:
                    return self._start_vmi(vm)
            else:
                phase = (vmi.get("status") or {}).get("phase")
                if stop_requested or phase in VMI_FINAL_PHASES:
                    self._delete_vmi(vmi)
                    if phase == "Failed":
                        self._add_request(vm, {"action": "Start"})
        elif strategy == "Manual":
            if vmi is None and start_requested:
                return self._start_vmi(vm)
            if vmi is not None and stop_requested:
                self._delete_vmi(vmi)
        elif strategy == "Halted":
            if vmi is not None:
                self._delete_vmi(vmi)
        elif strategy == "Once":
            if vmi is None:
                return self._start_vmi(vm)
        return vmi

    def _add_request(self, vm: Obj, request: Obj) -> None:
        def add(obj: Obj) -> None:
            obj.setdefault("status", {}).setdefault("stateChangeRequests", []).append(request)
        self.api.mutate(self.vms, vm["metadata"]["namespace"], vm["metadata"]["name"], add, subresource="status")

    def _start_vmi(self, vm: Obj) -> Obj | None:
        """`startVMI` with `setupVMIFromVM`."""
        template = copy.deepcopy((vm.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        vmi = {"apiVersion": API_VERSION, "kind": "VirtualMachineInstance",
               "metadata": {"name": vm["metadata"]["name"], "namespace": vm["metadata"]["namespace"],
                            "labels": dict(meta.get("labels") or {}),
                            "annotations": dict(meta.get("annotations") or {}),
                            "ownerReferences": [controller_ref(vm)],
                            "finalizers": [VMI_FINALIZER, VM_CONTROLLER_FINALIZER]},
               "spec": template.get("spec") or {}}
        created = self.api.create(self.vmis, vmi)
        self.record_event(vm, "Normal", "SuccessfulCreate",
                          f"Started the virtual machine by creating the new virtual machine instance "
                          f"{created['metadata']['name']}", VM_COMPONENT)

        def consume(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["stateChangeRequests"] = [r for r in status.get("stateChangeRequests") or []
                                             if r.get("action") != "Start"]
            if not status["stateChangeRequests"]:
                status.pop("stateChangeRequests")
        self.api.mutate(self.vms, vm["metadata"]["namespace"], vm["metadata"]["name"], consume, subresource="status")
        return created

    def _delete_vmi(self, vmi: Obj) -> None:
        """`stopVMI`: delete it (its finalizers hold it until the guest is down)."""
        meta = vmi["metadata"]
        if meta.get("deletionTimestamp"):
            return
        try:
            self.api.delete(self.vmis, meta["namespace"], meta["name"])
        except errors.ApiError as exc:
            if exc.code != 404:
                raise
            return
        owner = self.find(self.vms, meta["namespace"], meta["name"])
        if owner is not None:
            self.record_event(owner, "Normal", "SuccessfulDelete",
                              f"Stopped the virtual machine by deleting the virtual machine instance {meta['uid']}",
                              VM_COMPONENT)

    def _printable_status(self, vm: Obj, vmi: Obj | None) -> str:
        """`setPrintableStatus`: the first status that holds."""
        if vm["metadata"].get("deletionTimestamp"):
            return "Terminating"
        phase = ((vmi or {}).get("status") or {}).get("phase") or ""
        if vmi is not None and not is_final(vmi) and vmi["metadata"].get("deletionTimestamp"):
            return "Stopping"
        if vmi is not None and is_migrating(vmi):
            return "Migrating"
        if condition_is(vmi, "Paused", "True"):
            return "Paused"
        if phase == "Running":
            return "Running"
        synchronized = condition(vmi, "Synchronized") or {}
        if synchronized.get("status") == "False" and synchronized.get("reason") == "FailedPvcNotFound":
            return "ErrorPvcNotFound"
        scheduled = condition(vmi, "PodScheduled") or {}
        if scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            return "ErrorUnschedulable"
        if vmi is not None and phase in ("", "Pending", "Scheduling", "Scheduled"):
            return "Starting"
        if vmi is None or is_final(vmi):
            return "Stopped"
        return "Unknown"

    def _write_vm_status(self, namespace: str, name: str) -> None:
        vm = self.find(self.vms, namespace, name)
        if vm is None:
            return
        vmi = self.find(self.vmis, namespace, name)
        if vmi is not None and controller_uid(vmi) not in ("", vm["metadata"]["uid"]):
            vmi = None
        printable = self._printable_status(vm, vmi)
        strategy = run_strategy(vm)

        def change(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["printableStatus"] = printable
            created = vmi is not None                  # updateStatus: created = vmi != nil
            if status.get("runStrategy") or created:   # set once a VMI was first created
                status["runStrategy"] = strategy
            status["created"] = created
            status["ready"] = created and condition_is(vmi, "Ready", "True")
            for flag in ("created", "ready"):          # omitempty
                if not status[flag]:
                    status.pop(flag)
            ready = condition(vmi, "Ready")
            if vmi is None:
                set_condition(status, "Ready", "False", "VMINotExists", "VMI does not exist", probe_time=True)
            elif ready is None:
                set_condition(status, "Ready", "False", "VMIConditionMissing", "VMI is missing the Ready condition",
                              probe_time=True)
            else:
                set_condition(status, "Ready", ready.get("status", "False"), ready.get("reason", ""),
                              ready.get("message", ""))
            if vmi is not None:                        # syncConditions: the VMI's other conditions, copied
                copied = {c.get("type") for c in (vmi.get("status") or {}).get("conditions") or []} - {"Ready"}
                for cond in (vmi.get("status") or {}).get("conditions") or []:
                    if cond.get("type") in copied:
                        set_condition(status, cond["type"], cond.get("status", ""), cond.get("reason", ""),
                                      cond.get("message", ""))
                status["conditions"] = [c for c in status["conditions"]
                                        if c.get("type") in copied or c.get("type") in ("Ready", "Failure",
                                                                                         "RestartRequired")]
            requests = status.get("stateChangeRequests") or []
            if requests:                               # isTrimFirstChangeRequestNeeded: a Stop is done once its VMI is
                current = vmi["metadata"]["uid"] if vmi is not None else None      # gone (or another one runs)
                status["stateChangeRequests"] = [r for r in requests if r.get("action") != "Stop"
                                                 or (current is not None and r.get("uid") in (None, "", current))]
                if not status["stateChangeRequests"]:
                    status.pop("stateChangeRequests")
        self.api.mutate(self.vms, namespace, name, change, subresource="status")

    def stop_vm(self, namespace: str, name: str) -> str:
        """`virtctl stop` (pkg/virt-api/rest/subresource.go `StopVMRequestHandler`); "" or the error's message.

        Always/Once: the spec says stop (`runStrategy: Halted`, or `running: false` for a VM that uses it);
        RerunOnFailure/Manual: a Stop request for the running VMI, the strategy stays; Halted: refused."""
        vm = self.find(self.vms, namespace, name)
        if vm is None:
            return f'virtualmachines.kubevirt.io "{name}" not found'
        vmi = self.find(self.vmis, namespace, name)
        strategy = run_strategy(vm)
        if strategy == "Halted":
            if vmi is None or is_final(vmi):
                return f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": {VM_NOT_RUNNING}'
            return (f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": Halted only supports '
                    "manual stop requests with a shorter graceperiod")
        if strategy in ("RerunOnFailure", "Manual"):
            if vmi is None or is_final(vmi):
                return f'Operation cannot be fulfilled on virtualmachine.kubevirt.io "{name}": {VM_NOT_RUNNING}'

            def request_stop(obj: Obj) -> None:
                obj.setdefault("status", {})["stateChangeRequests"] = [
                    {"action": "Stop", "uid": vmi["metadata"]["uid"]}]
            self.api.mutate(self.vms, namespace, name, request_stop, subresource="status")
        else:
            def halt(obj: Obj) -> None:
                if obj["spec"].get("runStrategy") is not None:
                    obj["spec"]["runStrategy"] = "Halted"
                else:
                    obj["spec"]["running"] = False
            self.api.mutate(self.vms, namespace, name, halt)
        return ""

    # --- VirtualMachineInstances ----------------------------------------------------------------------
    def _on_vmi(self, event: StoredEvent) -> None:
        vmi = event.object
        meta = vmi["metadata"]
        if event.type == "DELETED":
            self.cancel(f"launch/{meta['uid']}")
        else:
            self._pick_up(vmi)
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("kind") == "VirtualMachine"), None)
        if owner is not None:
            self.sync_vm(meta["namespace"], owner["name"])

    def _pick_up(self, vmi: Obj) -> None:
        meta = vmi["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            if meta.get("finalizers"):
                self.spawn_once(f"stop/{uid}", lambda: self._shut_down(meta["namespace"], meta["name"], uid))
            return
        phase = (vmi.get("status") or {}).get("phase") or ""
        if phase in ("", "Pending", "Scheduling", "Scheduled") and self._ours_to_launch(vmi):
            self.spawn_once(f"launch/{uid}", lambda: self._launch(meta["namespace"], meta["name"], uid))

    def _ours_to_launch(self, vmi: Obj) -> bool:
        """A new VMI, or one this controller was launching (its pods carry `kubevirt.io/created-by`)."""
        phase = (vmi.get("status") or {}).get("phase") or ""
        if phase in ("", "Pending"):
            return True
        return any((p["metadata"].get("labels") or {}).get(CREATED_BY_LABEL) == vmi["metadata"]["uid"]
                   for p in self.vmi_pods(vmi))

    def _current(self, namespace: str, name: str, uid: str) -> Obj | None:
        vmi = self.find(self.vmis, namespace, name)
        if vmi is None or vmi["metadata"]["uid"] != uid:
            return None
        return vmi

    def _mutate_vmi(self, vmi: Obj, change: Callable[[Obj], None]) -> Obj:
        return self.api.mutate(self.vmis, vmi["metadata"]["namespace"], vmi["metadata"]["name"], change)

    def _mutate_pod(self, namespace: str, name: str, change: Callable[[Obj], None]) -> None:
        if self.find(self.pods, namespace, name) is not None:
            self.api.mutate(self.pods, namespace, name, change)

    def _missing_claims(self, vmi: Obj) -> list[str]:
        namespace = vmi["metadata"]["namespace"]
        return [claim for claim in (claim_of(v) for v in (vmi.get("spec") or {}).get("volumes") or [])
                if claim and self.find(self.pvcs, namespace, claim) is None]

    async def _launch(self, namespace: str, name: str, uid: str) -> None:
        """Pending -> Scheduling -> Scheduled -> Running, as virt-controller and virt-handler take a VMI there."""
        vmi = self._current(namespace, name, uid)
        if vmi is None:
            return

        def pending(obj: Obj) -> None:
            if VMI_FINALIZER not in (obj["metadata"].get("finalizers") or []):
                obj["metadata"].setdefault("finalizers", []).insert(0, VMI_FINALIZER)
            status = obj.setdefault("status", {})
            if not status.get("phase"):
                stamp_phase(status, "Pending")
                set_condition(status, "Ready", "False", "PodNotExists", "virt-launcher pod has not yet been scheduled")
        vmi = self._mutate_vmi(vmi, pending)
        pod = next((p for p in self.vmi_pods(vmi) if not (p["metadata"].get("labels") or {}).get(
            "kubevirt.io/migrationJobUID")), None)
        if pod is None:
            await self.clock.sleep(POD_CREATE_SECONDS)
            while True:                                      # a missing PVC holds the VMI Pending
                vmi = self._current(namespace, name, uid)
                if vmi is None or vmi["metadata"].get("deletionTimestamp"):
                    return
                missing = self._missing_claims(vmi)
                if not missing:
                    break
                message = f"PVC {namespace}/{missing[0]} does not exist, waiting for it to appear"
                self._mutate_vmi(vmi, lambda o: set_condition(o.setdefault("status", {}), "Synchronized", "False",
                                                              "FailedPvcNotFound", message))
                await self.settle(60.0)
            pod = self.create_launcher_pod(vmi)

            def scheduling(obj: Obj) -> None:
                status = obj.setdefault("status", {})
                remove_condition(status, "Synchronized")
                stamp_phase(status, "Scheduling")
            vmi = self._mutate_vmi(vmi, scheduling)
        node = (pod.get("spec") or {}).get("nodeName") or ""
        while not node:                                      # no fitting node: Unschedulable until one fits
            vmi = self._current(namespace, name, uid)
            if vmi is None or vmi["metadata"].get("deletionTimestamp"):
                return
            node, why = pick_node(self.node_list(), vmi, self.all_launchers())
            if node:
                break
            self._unschedulable(vmi, pod["metadata"]["name"], why)
            await self.settle(60.0)
        await self.clock.sleep(SCHEDULE_SECONDS)
        vmi = self._current(namespace, name, uid)
        if vmi is None or vmi["metadata"].get("deletionTimestamp"):
            return
        pod = self.bind_pod(namespace, pod["metadata"]["name"], node)

        def scheduled(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            remove_condition(status, "PodScheduled")
            status["nodeName"] = node
            status["activePods"] = {pod["metadata"]["uid"]: node}
            status["launcherContainerImageVersion"] = pod["spec"]["containers"][0]["image"]
            status["qosClass"] = "Burstable"
            obj["metadata"].setdefault("labels", {})[NODE_NAME_LABEL] = node
            set_condition(status, "Ready", "False", "GuestNotRunning", "Guest VM is not reported as running")
            stamp_phase(status, "Scheduled")
        vmi = self._mutate_vmi(vmi, scheduled)
        await self.clock.sleep(BOOT_SECONDS)
        vmi = self._current(namespace, name, uid)
        if vmi is None or vmi["metadata"].get("deletionTimestamp") or is_final(vmi):
            return
        self._mutate_pod(namespace, pod["metadata"]["name"], _pod_ready)
        pod = self.find(self.pods, namespace, pod["metadata"]["name"]) or pod
        self._mutate_vmi(vmi, lambda o: self._running_status(o, pod))

    def _unschedulable(self, vmi: Obj, pod_name: str, why: str) -> None:
        def pod_status(obj: Obj) -> None:
            set_condition(obj.setdefault("status", {}), "PodScheduled", "False", "Unschedulable", why, probe_time=False)
        self._mutate_pod(vmi["metadata"]["namespace"], pod_name, pod_status)
        self._mutate_vmi(vmi, lambda o: set_condition(o.setdefault("status", {}), "PodScheduled", "False",
                                                      "Unschedulable", why))

    def volume_status(self, vmi: Obj) -> list[Obj]:
        """`status.volumeStatus`: each volume's target device and, for a claim, what the PVC says."""
        namespace = vmi["metadata"]["namespace"]
        disks = ((vmi.get("spec") or {}).get("domain") or {}).get("devices", {}).get("disks") or []
        targets: dict[str, str] = {}
        counters = {"vd": 0, "sd": 0}
        for disk in disks:
            kind = next((k for k in ("disk", "cdrom", "lun") if disk.get(k) is not None), "disk")
            bus = (disk.get(kind) or {}).get("bus") or ("sata" if kind == "cdrom" else "virtio")
            prefix = "vd" if bus == "virtio" else "sd"
            targets[disk.get("name", "")] = prefix + chr(ord("a") + counters[prefix])
            counters[prefix] += 1
        statuses = []
        for volume in (vmi.get("spec") or {}).get("volumes") or []:
            entry: Obj = {"name": volume.get("name", ""), "target": targets.get(volume.get("name", ""), "")}
            claim = claim_of(volume)
            pvc = self.find(self.pvcs, namespace, claim) if claim else None
            if pvc is not None:
                spec = pvc.get("spec") or {}
                requests = dict((spec.get("resources") or {}).get("requests") or {})
                mode = spec.get("volumeMode") or "Filesystem"
                info: Obj = {"accessModes": list(spec.get("accessModes") or []), "volumeMode": mode,
                             "requests": requests,
                             "capacity": dict((pvc.get("status") or {}).get("capacity") or requests)}
                if mode == "Filesystem":
                    info["filesystemOverhead"] = "0.055"
                entry["persistentVolumeClaimInfo"] = info
            statuses.append(entry)
        return statuses

    def interfaces(self, vmi: Obj, pod: Obj) -> list[Obj]:
        """`status.interfaces`: the pod network has the pod's address (a migration's target pod has another
        one: the VMI reports the new address after the switch-over, as virt-handler does for masquerade); a
        multus network (a VLAN, bridge binding) the address the guest agent reports, which the guest keeps
        across a migration (ILLUSTRATIVE: a DHCP lease per MAC, no other VMI's)."""
        spec = vmi.get("spec") or {}
        networks = {n.get("name"): n for n in spec.get("networks") or []}
        previous = {i.get("name"): i for i in (vmi.get("status") or {}).get("interfaces") or []}
        result = []
        for index, interface in enumerate(((spec.get("domain") or {}).get("devices") or {}).get("interfaces") or []):
            name = interface.get("name", "")
            network = networks.get(name) or {}
            mac = interface.get("macAddress") or (previous.get(name) or {}).get("mac") or \
                stable_mac(vmi["metadata"]["uid"], name)
            if network.get("pod") is not None:
                address = (pod.get("status") or {}).get("podIP", "")
                source = "domain, guest-agent"
            else:
                address = (previous.get(name) or {}).get("ipAddress") or self._vlan_address(vmi, mac)
                source = "domain, guest-agent, multus-status"
            result.append({"name": name, "mac": mac, "ipAddress": address, "ipAddresses": [address],
                           "interfaceName": f"eth{index}", "infoSource": source, "queueCount": 1})
        return result

    def _vlan_address(self, vmi: Obj, mac: str) -> str:
        taken = {i.get("ipAddress") for other in self.api.list(self.vmis).items
                 if other["metadata"]["uid"] != vmi["metadata"]["uid"]
                 for i in (other.get("status") or {}).get("interfaces") or []}
        first = stable_host(mac, low=0, high=253 * 254 - 1)
        for offset in range(253 * 254):
            pick = (first + offset) % (253 * 254)
            address = f"10.115.{1 + pick // 254}.{1 + pick % 254}"
            if address not in taken:
                return address
        return f"10.115.{1 + first // 254}.{1 + first % 254}"

    def _running_status(self, obj: Obj, pod: Obj) -> None:
        """virt-handler's view of a running domain (`updateLiveMigrationConditions` and the rest)."""
        status = obj.setdefault("status", {})
        status["volumeStatus"] = self.volume_status(obj)
        status["interfaces"] = self.interfaces(obj, pod)
        migratable, reason, message, method = live_migratable(obj)
        status["migrationMethod"] = method
        status["migrationTransport"] = "Unix"
        status.setdefault("guestOSInfo", {})
        set_condition(status, "Ready", "True")
        set_condition(status, "LiveMigratable", migratable, reason, message)
        conditions = [("LiveMigratable",)]
        if self.kubevirt_at_least(1, 4):                     # StorageLiveMigratable came with KubeVirt v1.4.0
            set_condition(status, "StorageLiveMigratable", *storage_live_migratable(obj))
            conditions.append(("StorageLiveMigratable",))
        for cond in status["conditions"]:                    # built without timestamps
            if (cond.get("type"),) in conditions:
                cond.update(lastProbeTime=None, lastTransitionTime=None)
        stamp_phase(status, "Running")
        if migratable == "False" and migratable_on_eviction(obj, False):
            self.record_event(obj, "Warning", "Migrated",
                              f"EvictionStrategy is set but vmi is not migratable; {message}", "virt-handler")

    def kubevirt_at_least(self, major: int, minor: int) -> bool:
        """The running KubeVirt (from its virt-launcher tag, e.g. 1.4.0-150600.5.15.1) is at least major.minor."""
        tag = self.launcher_image().rsplit(":", 1)[-1]
        try:
            have = tuple(int(part) for part in tag.split("-")[0].split(".")[:2])
        except ValueError:
            return True
        return have >= (major, minor)

    def create_launcher_pod(self, vmi: Obj, *, extra_labels: dict[str, str] | None = None,
                            annotations: dict[str, str] | None = None) -> Obj:
        """`renderLaunchManifest`: Pending, not yet bound to a node."""
        meta, spec = vmi["metadata"], vmi.get("spec") or {}
        hostname = str(spec.get("hostname") or meta["name"])
        labels = {**(meta.get("labels") or {}), APP_LABEL: "virt-launcher", CREATED_BY_LABEL: meta["uid"],
                  VM_NAME_LABEL: hostname, **(extra_labels or {})}
        labels.pop(NODE_NAME_LABEL, None)
        labels.pop(MIGRATION_TARGET_NODE_LABEL, None)
        volumes = []
        for volume in spec.get("volumes") or []:
            claim = claim_of(volume)
            if claim:
                volumes.append({"name": volume.get("name", ""), "persistentVolumeClaim": {"claimName": claim}})
        pod_spec: Obj = {"hostname": hostname, "restartPolicy": "Never", "terminationGracePeriodSeconds": 210,
                         "containers": [{"name": "compute", "image": self.launcher_image(),
                                         "command": ["/usr/bin/virt-launcher-monitor", "--qemu-timeout", "285s",
                                                     "--name", meta["name"], "--uid", meta["uid"],
                                                     "--namespace", meta["namespace"]]}],
                         "volumes": volumes,
                         "readinessGates": [{"conditionType": "kubevirt.io/virtual-machine-unpaused"}]}
        for field in ("nodeSelector", "affinity", "tolerations"):
            if spec.get(field) is not None:
                pod_spec[field] = copy.deepcopy(spec[field])
        return self.api.create(self.pods, {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"virt-launcher-{meta['name']}-{generated_suffix()}", "namespace": meta["namespace"],
                         "labels": labels,
                         "annotations": {"kubevirt.io/domain": meta["name"], **(annotations or {})},
                         "ownerReferences": [controller_ref(vmi)]},
            "spec": pod_spec,
            "status": {"phase": "Pending", "qosClass": "Burstable"}})

    def bind_pod(self, namespace: str, name: str, node: str) -> Obj:
        """The scheduler binds the pod; the kubelet starts its containers (not Ready until the domain runs)."""
        now = rfc3339()
        address = self.pod_ip(node, name)
        host = self.node_ip(node)

        def bound(obj: Obj) -> None:
            obj["spec"]["nodeName"] = node
            status = obj.setdefault("status", {})
            status.update(phase="Running", hostIP=host, hostIPs=[{"ip": host}], podIP=address,
                          podIPs=[{"ip": address}], startTime=now,
                          containerStatuses=[{"name": c["name"], "image": c["image"],
                                              "imageID": f"{c['image'].split(':')[0]}@sha256:"
                                                         f"{hashlib.sha256(c['image'].encode()).hexdigest()}",
                                              "containerID": "containerd://" + hashlib.sha256(
                                                  f"{obj['metadata']['uid']}/{c['name']}".encode()).hexdigest(),
                                              "ready": False, "restartCount": 0, "started": True,
                                              "state": {"running": {"startedAt": now}}}
                                             for c in obj["spec"]["containers"]])
            status["conditions"] = [{"type": t, "status": s, "lastProbeTime": None, "lastTransitionTime": now}
                                    for t, s in (("PodReadyToStartContainers", "True"), ("Initialized", "True"),
                                                 ("Ready", "False"), ("ContainersReady", "False"),
                                                 ("PodScheduled", "True"))]
        self.api.mutate(self.pods, namespace, name, bound)
        return self.api.get(self.pods, namespace, name)

    async def _shut_down(self, namespace: str, name: str, uid: str) -> None:
        """A deleted VMI: the guest shuts down, the pods go, the finalizers are removed (the VMI is gone)."""
        self.cancel(f"launch/{uid}")
        vmi = self._current(namespace, name, uid)
        if vmi is None:
            return
        if (vmi.get("status") or {}).get("phase") == "Running":
            await self.clock.sleep(SHUTDOWN_SECONDS)
            vmi = self._current(namespace, name, uid)
            if vmi is None:
                return

        def down(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            if status.get("phase") not in VMI_FINAL_PHASES:
                stamp_phase(status, "Succeeded" if status.get("phase") == "Running" else "Failed")
            set_condition(status, "Ready", "False", "PodTerminating", "virt-launcher pod is terminating")
            status.pop("activePods", None)
        vmi = self._mutate_vmi(vmi, down)
        for pod in self.vmi_pods(vmi):
            self._finish_pod(namespace, pod["metadata"]["name"])
            try:
                self.api.delete(self.pods, namespace, pod["metadata"]["name"])
            except errors.ApiError:
                pass

        def release(obj: Obj) -> None:
            obj["metadata"]["finalizers"] = [f for f in obj["metadata"].get("finalizers") or []
                                             if f not in (VMI_FINALIZER, VM_CONTROLLER_FINALIZER)]
        if self._current(namespace, name, uid) is not None:
            self._mutate_vmi(vmi, release)

    def _finish_pod(self, namespace: str, name: str, phase: str = "Succeeded") -> None:
        now = rfc3339()

        def finished(obj: Obj) -> None:
            status = obj.setdefault("status", {})
            status["phase"] = phase
            for container in status.get("containerStatuses") or []:
                container.update(ready=False, started=False, state={"terminated": {
                    "exitCode": 0 if phase == "Succeeded" else 1,
                    "reason": "Completed" if phase == "Succeeded" else "Error", "finishedAt": now}})
            for cond in status.get("conditions") or []:
                if cond.get("type") in ("Ready", "ContainersReady"):
                    cond.update(status="False", reason="PodCompleted", lastTransitionTime=now)
        self._mutate_pod(namespace, name, finished)

    def finish_source_pod(self, namespace: str, name: str) -> None:
        """After a migration the source virt-launcher exits: the pod is Completed and stays until the VMI goes."""
        self._finish_pod(namespace, name)

    def _on_pod_gone(self, pod: Obj) -> None:
        """A launcher pod that disappears under a running VMI (not a migration's) fails it."""
        labels = pod["metadata"].get("labels") or {}
        uid = labels.get(CREATED_BY_LABEL)
        if not uid or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return
        vmi = next((v for v in self.api.list(self.vmis, pod["metadata"]["namespace"]).items
                    if v["metadata"]["uid"] == uid), None)
        if vmi is None or vmi["metadata"].get("deletionTimestamp") or is_migrating(vmi):
            return
        status = vmi.get("status") or {}
        if status.get("phase") != "Running" or (pod.get("spec") or {}).get("nodeName") != status.get("nodeName"):
            return
        if pod["metadata"]["uid"] not in (status.get("activePods") or {}):
            return

        def failed(obj: Obj) -> None:
            st = obj.setdefault("status", {})
            stamp_phase(st, "Failed")
            set_condition(st, "Ready", "False", "PodNotExists", "virt-launcher pod has not yet been scheduled")
        self._mutate_vmi(vmi, failed)


def _pod_ready(obj: Obj) -> None:
    status = obj.setdefault("status", {})
    for container in status.get("containerStatuses") or []:
        container["ready"] = True
    now = rfc3339()
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Ready", "ContainersReady") and cond.get("status") != "True":
            cond.update(status="True", lastTransitionTime=now)
