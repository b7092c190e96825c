"""Harvester's `validator.harvesterhci.io` for Upgrades and Versions, as the simulated version runs it.

Read from harvester/harvester `pkg/webhook/resources/upgrade/validator.go` and
`pkg/webhook/resources/version/validator.go` at the tags the simulator simulates (v1.4.0 = v1.4.2 = v1.4.3,
v1.5.0-rc2 = v1.5.0, v1.5.1 = v1.5.2) and at ce188325 (`master-ce188325-head`, identical to v1.5.0:
`git diff v1.5.0 ce188325 -- pkg/webhook/resources/upgrade pkg/webhook/resources/version` is empty);
docs/harvester-facts.md §1.3.
Checks that came later (cleanup-pending, pause map, add-ons, stale hotplug, restoreVM gating) are gated on
the tags that introduced them, so no simulated version runs them.

* The checks run in the source's order and stop at the first failure, with the source's message.
* A failure is an `AdmitError` (harvester `pkg/webhook/error`): BadRequest 400, Conflict 409, Invalid 422
  (with one `FieldValueInvalid` cause) or InternalError 500; any other error the validator returns becomes
  an InternalError too (`pkg/webhook/types/admission.go`). kube-apiserver relays the webhook's Status with
  its code and reason, the message prefixed `admission webhook "validator.harvesterhci.io" denied the
  request: ` (`webhookerrors.ToStatusErr`); the causes keep the bare message.
* The webhook is registered with `sideEffects: None`, so dry-run requests are checked too (and the simulator
  stores nothing for them).
* What the simulator has (Nodes, Machines, the CAPI Cluster, ManagedCharts, Longhorn Volumes, Upgrades,
  Versions, VirtualMachineBackups) is read from its store; a kind it does not serve (VirtualMachineBackups
  before their CRD is registered) has no objects. Inputs it does not model (kubelet disk stats and configz,
  serving certificates, backup schedules, add-ons, VM live-migratability, hotplug volumes) pass as on a
  healthy cluster: see `UNMODELLED`.
* Behaviour follows `simulator.version` (its `HarvesterVersion` flags), never a test switch.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..apiserver import errors
from ..apiserver.objects import AdmissionRequest, ObjectApi
from ..harvester.versions import HarvesterVersion

if TYPE_CHECKING:
    from ..simulator import Simulator

Obj = dict[str, Any]

WEBHOOK_NAME = "validator.harvesterhci.io"
GROUP = "harvesterhci.io"

# pkg/util/constants.go and the validator's constants
UPGRADE_STATE_LABEL = "harvesterhci.io/upgradeState"
UPGRADE_CLEANUP_LABEL = "harvesterhci.io/upgradeCleanup"
SKIP_WEBHOOK_ANNOTATION = "harvesterhci.io/skipWebhook"
PAUSE_MAP_ANNOTATION = "harvesterhci.io/node-upgrade-pause-map"
SKIP_SINGLE_REPLICA_DETACHED_ANNOTATION = "harvesterhci.io/skipSingleReplicaDetachedVol"
SKIP_GC_THRESHOLD_ANNOTATION = "harvesterhci.io/skipGarbageCollectionThresholdCheck"
MIN_CERTS_EXPIRATION_ANNOTATION = "harvesterhci.io/minCertsExpirationInDay"
MIN_FREE_DISK_SPACE_ANNOTATION = "harvesterhci.io/minFreeDiskSpaceGB"
RKE_INTERNAL_IP_ANNOTATION = "rke2.io/internal-ip"
MACHINE_ANNOTATION = "cluster.x-k8s.io/machine"
MANAGED_NODE_LABEL = "harvesterhci.io/managed"
STATE_SUCCEEDED, STATE_FAILED, CLEANUP_PENDING = "Succeeded", "Failed", "Pending"

FLEET_LOCAL, LOCAL_CLUSTER, LONGHORN_SYSTEM = "fleet-local", "local", "longhorn-system"
SHA512 = re.compile(r"^[a-f0-9]{128}$")
# cluster-api MachineStatus.GetTypedPhase: any other string is "Unknown"
MACHINE_PHASES = {"Pending", "Provisioning", "Provisioned", "Running", "Deleting", "Deleted", "Failed"}

UNMODELLED: dict[str, str] = {
    "schedulevmbackups": "running backup/snapshot schedules (no ScheduleVMBackup kind)",
    "addons": "add-ons being processed (v1.7.0-rc4 on; no Addon kind)",
    "diskspace": "kubelet /stats/summary and /configz per node (image GC threshold; v1.4.x also min free "
                 "space); only the rke2.io/internal-ip annotation it needs first is checked",
    "nonlivemigratablevms": "VMs that cannot live-migrate (needs KubeVirt's migratability rules)",
    "stalehotplug": "pending or ephemeral hotplug volumes (v1.8.2 on)",
    "certs": "expiry of the default/kubernetes serving certificate (v1.5.0-rc2 and later); only the "
             "minCertsExpirationInDay annotation it reads is checked",
    "restorevm": "the upgrade-config setting's restoreVM, which skips the non-live-migratable check from v1.6.0 "
                 "(521af1fc6); the simulator runs as restoreVM=false",
}


# ---- errors (harvester pkg/webhook/error) -------------------------------------------------------

@dataclass
class AdmitError(Exception):
    code: int
    reason: str
    message: str
    causes: list[Obj] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message

    def relayed(self, webhook: str = WEBHOOK_NAME) -> errors.ApiError:
        """The error kube-apiserver returns to the client for this denial."""
        denial = errors.admission_denied(webhook, self.message, self.code, self.reason)
        if self.causes:
            denial.details = {"causes": [dict(c) for c in self.causes]}
        return denial


def bad_request(message: str) -> AdmitError:
    return AdmitError(400, "BadRequest", message)


def conflict(message: str) -> AdmitError:
    return AdmitError(409, "Conflict", message)


def invalid(message: str, field: str = "") -> AdmitError:
    # NewInvalidError(msg, field): one cause, type FieldValueInvalid; Go omits an empty field
    cause = {"reason": "FieldValueInvalid", "message": message}
    if field:
        cause["field"] = field
    return AdmitError(422, "Invalid", message, [cause])


def internal(message: str) -> AdmitError:
    return AdmitError(500, "InternalError", message)


# ---- Go parsing, as strconv does it ---------------------------------------------------------------

def _go_parse_bool(value: str) -> bool | None:
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _go_atoi(value: str) -> int | None:
    if not re.fullmatch(r"[+-]?[0-9]+", value):
        return None
    number = int(value)
    return number if -(2**63) <= number < 2**63 else None


def _go_parse_uint(value: str) -> int | None:
    if not re.fullmatch(r"[0-9]+", value):
        return None
    number = int(value)
    return number if number < 2**64 else None


def _go_unmarshal_string_map(text: str) -> tuple[dict[str, str], str | None]:
    """json.Unmarshal into map[string]string: (map, error text). Error texts are Go's for common cases."""
    if not text.strip():
        return {}, "unexpected end of JSON input"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text.rstrip()):
            return {}, "unexpected end of JSON input"
        char = text[exc.pos]
        where = "looking for beginning of value" if exc.pos == len(text) - len(text.lstrip()) else \
            "after top-level value" if exc.msg == "Extra data" else "looking for beginning of object key string"
        return {}, f"invalid character {_go_quote_rune(char)} {where}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return {}, f"json: cannot unmarshal {_json_kind(data)} into Go value of type map[string]string"
    result: dict[str, str] = {}
    for key, value in data.items():
        if value is None:
            result[key] = ""
        elif not isinstance(value, str):
            return {}, f"json: cannot unmarshal {_json_kind(value)} into Go value of type string"
        else:
            result[key] = value
    return result, None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "value")


def _go_quote_rune(char: str) -> str:
    return "'\\''" if char == "'" else f"'{char}'"


def _go_quote(text: str) -> str:
    """Go's %q for the ASCII names Kubernetes allows."""
    return json.dumps(text)


# ---- the validator ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    """One step of `Create`, in the source's order. `modelled=False`: the simulator passes it as healthy."""

    name: str
    run: Callable[["Context"], None]
    modelled: bool = True


@dataclass
class Context:
    upgrade: Obj
    version: Obj | None          # the Version named by spec.version (None for an image-based upgrade)

    @property
    def annotations(self) -> dict[str, str]:
        return (self.upgrade.get("metadata") or {}).get("annotations") or {}


class UpgradeValidator:
    """`upgradeValidator` of the simulated release, reading the simulator's store."""

    def __init__(self, version: HarvesterVersion, api: ObjectApi) -> None:
        self.release = version
        self.api = api

    # --- version gates (from the release; see versions.py for the shared flags) -------------------
    @property
    def validates_pause_map(self) -> bool:
        """Pause-map annotation on Create and Update (7e3322ccf, 2025-11-21; backported to v1.7.0-rc3)."""
        return self.release.at_least("v1.7.0-rc3")

    @property
    def managed_chart_message_suffix(self) -> str:
        """`... please wait for it to be ready` gained ` or fix it` with the add-on check (ce73bdd95, v1.7.0-rc4)."""
        return " or fix it" if self.release.at_least("v1.7.0-rc4") else ""

    @property
    def single_replica_skip_annotation(self) -> bool:
        """checkSingleReplicaVolumes(upgrade) with the skip annotation and the new wording: v1.5.0-rc1 on."""
        return self.release.at_least("v1.5.0-rc1")

    def checks(self) -> list[Check]:
        """What `Create` runs on this release, in order (before `skipWebhook`: the first four)."""
        v = self.release
        pre = [Check("spec", self._check_spec), Check("version", self._check_version_exists),
               Check("previous-upgrade", self._check_previous_upgrade)]
        if v.checks_cleanup_pending:
            pre.append(Check("cleanup-pending", self._check_cleanup_pending))
        pre.append(Check("skip-webhook", lambda ctx: None))       # marker: everything after is skippable
        if self.validates_pause_map:
            pre.append(Check("pause-map", lambda ctx: self._validate_pause_map(ctx.upgrade)))
        resources = [
            Check("degraded-volumes", self._check_degraded_volumes),
            Check("local-cluster", self._check_local_cluster),
            Check("vmbackups", self._check_vmbackups),
            Check("schedulevmbackups", _passes, modelled=False),
            Check("managed-charts", self._check_managed_charts),
        ]
        if v.checks_addons:
            resources.append(Check("addons", _passes, modelled=False))
        resources.append(Check("nodes", self._check_nodes))
        if v.checks_machines_running:
            resources.append(Check("machines", self._check_machines))
        if v.checks_node_machine_match:
            resources.append(Check("node-machine-matching", self._check_node_machine_matching))
        resources.append(Check("single-replica-volumes", self._check_single_replica_volumes))
        resources.append(Check("nonlivemigratablevms", _passes, modelled=False))
        if v.checks_stale_hotplug:
            resources.append(Check("stalehotplug", _passes, modelled=False))
        if v.cert_check:
            resources.append(Check("certs", self._check_certs))
        return pre + resources

    # --- admission entry points -----------------------------------------------------------------
    def __call__(self, request: AdmissionRequest) -> None:
        if request.subresource:
            return                     # the webhook's rules name `upgrades`, not `upgrades/status`
        try:
            if request.operation == "CREATE":
                assert request.object is not None
                self.create(request.object)
            elif request.operation == "DELETE":
                assert request.old_object is not None
                self.delete(request.old_object)
            elif request.operation == "UPDATE" and self.validates_pause_map:
                assert request.object is not None
                self._validate_pause_map(request.object)
        except AdmitError as exc:
            raise exc.relayed() from None

    def create(self, upgrade: Obj) -> None:
        ctx = Context(upgrade, None)
        for check in self.checks():
            if check.name == "skip-webhook":
                if str(ctx.annotations.get(SKIP_WEBHOOK_ANNOTATION, "")).lower() == "true":
                    return
                continue
            check.run(ctx)

    def delete(self, upgrade: Obj) -> None:
        annotations = (upgrade.get("metadata") or {}).get("annotations") or {}
        if str(annotations.get(SKIP_WEBHOOK_ANNOTATION, "")).lower() == "true":
            return
        cluster = self._local_cluster()
        if ((cluster.get("status") or {}).get("phase") or "") == "Provisioning":
            raise bad_request(f"cluster {FLEET_LOCAL}/{LOCAL_CLUSTER} status is provisioning, please wait for it "
                              "to be provisioned")
        if _condition_status(upgrade, "NodesUpgraded") == "Unknown":
            raise bad_request("node upgrade is in progressing, please wait for it to be provisioned")

    # --- store access ----------------------------------------------------------------------------
    def _objects(self, group: str, plural: str, namespace: str | None = None) -> list[Obj]:
        return list(self.api.store.iter_raw((group, plural), namespace))

    def _nodes(self) -> list[Obj]:
        return self._objects("", "nodes")

    def _machines(self) -> list[Obj]:
        return self._objects("cluster.x-k8s.io", "machines", FLEET_LOCAL)

    def _local_cluster(self) -> Obj:
        cluster = self.api.store.peek(("cluster.x-k8s.io", "clusters"), (FLEET_LOCAL, LOCAL_CLUSTER))
        if cluster is None:
            # wrangler's generic cache: errors.NewNotFound(GroupResource{cluster.x-k8s.io, clusters}, name)
            raise internal(f"can't find {FLEET_LOCAL}/{LOCAL_CLUSTER} cluster, err: "
                           f'clusters.cluster.x-k8s.io "{LOCAL_CLUSTER}" not found')
        return cluster

    # --- the checks, in source order --------------------------------------------------------------
    def _check_spec(self, ctx: Context) -> None:
        spec = ctx.upgrade.get("spec") or {}
        if not spec.get("version") and not spec.get("image"):
            raise bad_request("version or image field are not specified.")

    def _check_version_exists(self, ctx: Context) -> None:
        spec = ctx.upgrade.get("spec") or {}
        if spec.get("version") and not spec.get("image"):
            namespace = ctx.upgrade["metadata"].get("namespace", "")
            found = self.api.store.peek((GROUP, "versions"), (namespace, spec["version"]))
            if found is None:
                raise bad_request(f"version {spec['version']} is not found")
            ctx.version = found

    def _upgrades(self, namespace: str) -> list[Obj]:
        return self._objects(GROUP, "upgrades", namespace)

    def _check_previous_upgrade(self, ctx: Context) -> None:
        # selector `upgradeState notin (Succeeded,Failed)`: an Upgrade without the label matches too
        for other in self._upgrades(ctx.upgrade["metadata"].get("namespace", "")):
            state = ((other["metadata"].get("labels") or {}).get(UPGRADE_STATE_LABEL))
            if state not in (STATE_SUCCEEDED, STATE_FAILED):
                raise conflict(f"cannot proceed until previous upgrade {_go_quote(other['metadata']['name'])} "
                               "completes")

    def _check_cleanup_pending(self, ctx: Context) -> None:
        pending = [u["metadata"]["name"] for u in self._upgrades(ctx.upgrade["metadata"].get("namespace", ""))
                   if (u["metadata"].get("labels") or {}).get(UPGRADE_CLEANUP_LABEL) == CLEANUP_PENDING]
        if pending:
            raise conflict("cannot proceed until the following upgrades completed their cleanup process: "
                           + ",".join(pending))

    def _validate_pause_map(self, upgrade: Obj) -> None:
        annotations = (upgrade.get("metadata") or {}).get("annotations") or {}
        if PAUSE_MAP_ANNOTATION not in annotations:
            return
        pause_map, error = _go_unmarshal_string_map(str(annotations[PAUSE_MAP_ANNOTATION]))
        if error is not None:
            raise bad_request(f"fail to unmarshal {PAUSE_MAP_ANNOTATION} annotation, err: {error}")
        existing = {n["metadata"]["name"] for n in self._nodes()}
        for node, action in sorted(pause_map.items()):       # Go ranges over the map in random order
            if action not in ("pause", "unpause"):
                raise bad_request(f'desired action for node {node} must be either "pause" or "unpause"')
            if node not in existing:
                raise bad_request(f"node {node} does not exist")

    def _check_degraded_volumes(self, ctx: Context) -> None:
        if len(self._nodes()) < 3:
            return
        for volume in self._objects("longhorn.io", "volumes", LONGHORN_SYSTEM):
            if (volume.get("status") or {}).get("robustness") == "degraded":
                raise bad_request("there are degraded volumes, please check all volumes are healthy")

    def _check_local_cluster(self, ctx: Context) -> None:
        phase = (self._local_cluster().get("status") or {}).get("phase") or ""
        if phase != "Provisioned":
            raise bad_request(f"cluster {FLEET_LOCAL}/{LOCAL_CLUSTER} status is {phase}, please wait for it to be "
                              "provisioned")

    def _check_vmbackups(self, ctx: Context) -> None:
        # GetByIndex(VMBackupByIsProgressing, "true"): backup.IsBackupProgressing, i.e. no status.error and
        # readyToUse not true (no status at all counts); the first of the index is named (here: by ns/name)
        for backup in self._objects(GROUP, "virtualmachinebackups"):
            status = backup.get("status") or {}
            if status.get("error") is None and status.get("readyToUse") is not True:
                meta = backup["metadata"]
                raise bad_request("please wait until all vmbackups are stopped, for example "
                                  f"{meta.get('namespace', '')}/{meta['name']} is under processing")

    def _check_managed_charts(self, ctx: Context) -> None:
        for chart in self._objects("management.cattle.io", "managedcharts", FLEET_LOCAL):
            status = _condition_status(chart, "Ready")
            if status is not None and status != "True":
                raise bad_request(f"managed chart {chart['metadata']['name']} is not ready, please wait for it to "
                                  f"be ready{self.managed_chart_message_suffix}")

    def _check_nodes(self, ctx: Context) -> None:
        skip_disk_check = False
        tuning = self.release.check_tuning_annotations
        if MIN_FREE_DISK_SPACE_ANNOTATION in tuning:                      # v1.4.x: read on the Version
            value = _annotations(ctx.version).get(MIN_FREE_DISK_SPACE_ANNOTATION) if ctx.version else None
            if value is not None and _go_parse_uint(value) is None:
                raise bad_request(f"invalid value {value} for {MIN_FREE_DISK_SPACE_ANNOTATION} annotation in "
                                  f"version {_ns_name(ctx.version)}")
        elif self.release.skip_annotations_on == "Version":              # v1.5.0-rc2, v1.5.0
            value = _annotations(ctx.version).get(SKIP_GC_THRESHOLD_ANNOTATION) if ctx.version else None
            if value is not None:
                parsed = _go_parse_bool(value)
                if parsed is None:
                    raise bad_request(f"invalid value {value} for {SKIP_GC_THRESHOLD_ANNOTATION} annotation in "
                                      f"version {_ns_name(ctx.version)}")
                skip_disk_check = parsed
        else:                                                            # v1.5.1 on: read on the Upgrade
            value = ctx.annotations.get(SKIP_GC_THRESHOLD_ANNOTATION)
            if value is not None:
                parsed = _go_parse_bool(value)
                if parsed is None:
                    raise bad_request(f"invalid value {value} for {SKIP_GC_THRESHOLD_ANNOTATION} annotation")
                skip_disk_check = parsed
        for node in self._nodes():
            name = node["metadata"]["name"]
            ready = _condition_status(node, "Ready")
            if ready is not None and ready != "True":
                raise bad_request(f"node {name} is not ready, please wait for it to be ready")
            if (node.get("spec") or {}).get("unschedulable"):
                raise bad_request(f"node {name} is unschedulable, please wait for it to be schedulable")
            if not skip_disk_check and RKE_INTERNAL_IP_ANNOTATION not in _annotations(node):
                raise internal(f"node {name} doesn't have {RKE_INTERNAL_IP_ANNOTATION} annotation")
            # the kubelet stats/configz read that follows is not modelled: a healthy node passes

    def _check_machines(self, ctx: Context) -> None:
        for machine in self._machines():
            phase = (machine.get("status") or {}).get("phase") or ""
            if phase not in MACHINE_PHASES or phase != "Running":   # GetTypedPhase() != MachinePhaseRunning
                meta = machine["metadata"]
                raise internal(f"machine {meta['namespace']}/{meta['name']} is not running")

    def _check_node_machine_matching(self, ctx: Context) -> None:
        nodes, machines = self._nodes(), self._machines()
        if not nodes:
            raise internal("no node was listed, this shall not happen")
        if len(nodes) != len(machines):
            raise internal(f"nodes({len(nodes)}) and machines({len(machines)}) do not match, check the cluster "
                           "provision")
        node_of_machine: dict[str, str] = {}
        for machine in machines:
            ref = (machine.get("status") or {}).get("nodeRef")
            if ref is None:
                raise internal(f"machine {machine['metadata']['name']} has empty NodeRef, check the cluster "
                               "provision")
            node_of_machine[machine["metadata"]["name"]] = ref.get("name", "")
        for node in nodes:
            meta = node["metadata"]
            name = meta["name"]
            if meta.get("labels") is None:
                raise internal(f"node {name} has no labels")
            if meta["labels"].get(MANAGED_NODE_LABEL) != "true":
                raise internal(f"node {name} has no expected label {MANAGED_NODE_LABEL}")
            if meta.get("annotations") is None:
                raise internal(f"node {name} has no nnnotations")           # sic, as in the source
            claimed = meta["annotations"].get(MACHINE_ANNOTATION, "")
            if not claimed:
                raise internal(f"node {name} has no expected annotation {MACHINE_ANNOTATION}, check the cluster "
                               "provision")
            if claimed not in node_of_machine:
                raise internal(f"node {name} refers to machine {claimed}, but the machine does not exist")
            if node_of_machine[claimed] != name:
                raise internal(f"node {name} refers to machine {claimed}, but the machine refers to another node "
                               f"{node_of_machine[claimed]}")

    def _check_single_replica_volumes(self, ctx: Context) -> None:
        if len(self._nodes()) == 1:
            return
        single = [v for v in self._objects("longhorn.io", "volumes")
                  if (v.get("spec") or {}).get("numberOfReplicas") == 1]
        active = [v for v in single if (v.get("status") or {}).get("state") in ("creating", "attached", "attaching")]
        if not self.single_replica_skip_annotation:
            if active:
                raise invalid("The backing volumes of the following PVCs have single replica configured, please "
                              "consider shutdown the corresponding workload before upgrade: " + _pvcs(active))
            return
        if ctx.annotations.get(SKIP_SINGLE_REPLICA_DETACHED_ANNOTATION):
            if active:
                raise invalid("Following PVCs with active single-replica volume, please consider shutdown the "
                              "corresponding workload before upgrade: " + _pvcs(active))
            return
        if single:
            raise invalid("Following PVCs with single-replica volume, even the volume is detached, upgrade may "
                          "have potential data integrity concerns: " + _pvcs(single))

    def _check_certs(self, ctx: Context) -> None:
        # Reading the serving certificate of the kubernetes ClusterIP is not modelled (it is fresh);
        # the annotation that sets the window is, where the release reads it.
        if self.release.skip_annotations_on == "Version":
            value = _annotations(ctx.version).get(MIN_CERTS_EXPIRATION_ANNOTATION) if ctx.version else None
            if value is not None and _go_atoi(value) is None:
                raise bad_request(f"invalid value {value} for annotation {MIN_CERTS_EXPIRATION_ANNOTATION}")
            return
        value = ctx.annotations.get(MIN_CERTS_EXPIRATION_ANNOTATION)
        if value is None:
            return
        days = _go_atoi(value)
        if days is None:
            raise bad_request(f"invalid value {value} for annotation {MIN_CERTS_EXPIRATION_ANNOTATION}")
        if days <= 0:
            raise bad_request(f"invalid value {value} for annotation {MIN_CERTS_EXPIRATION_ANNOTATION}, it should "
                              "be greater than 0")


class VersionValidator:
    """`versionValidator` (Create and Update): the ISO checksum format and, per release, tuning annotations."""

    def __init__(self, version: HarvesterVersion) -> None:
        self.release = version

    def __call__(self, request: AdmissionRequest) -> None:
        if request.subresource or request.operation not in ("CREATE", "UPDATE") or request.object is None:
            return
        try:
            self.check(request.object)
        except AdmitError as exc:
            raise exc.relayed() from None

    def check(self, version: Obj) -> None:
        annotations = _annotations(version)
        tuning = self.release.check_tuning_annotations
        if self.release.skip_annotations_on == "Version":      # up to v1.5.0 the Version carries the tuning
            if MIN_FREE_DISK_SPACE_ANNOTATION in tuning and MIN_FREE_DISK_SPACE_ANNOTATION in annotations:
                value = annotations[MIN_FREE_DISK_SPACE_ANNOTATION]
                if _go_parse_uint(value) is None:
                    raise bad_request(f"invalid value {value} for annotation {MIN_FREE_DISK_SPACE_ANNOTATION}")
            if SKIP_GC_THRESHOLD_ANNOTATION in tuning and SKIP_GC_THRESHOLD_ANNOTATION in annotations:
                value = annotations[SKIP_GC_THRESHOLD_ANNOTATION]
                if _go_parse_bool(value) is None:
                    raise bad_request(f"invalid value {value} for annotation {SKIP_GC_THRESHOLD_ANNOTATION}")
            if MIN_CERTS_EXPIRATION_ANNOTATION in tuning and MIN_CERTS_EXPIRATION_ANNOTATION in annotations:
                value = annotations[MIN_CERTS_EXPIRATION_ANNOTATION]
                days = _go_atoi(value)
                if days is None:
                    raise bad_request(f"invalid value {value} for annotation {MIN_CERTS_EXPIRATION_ANNOTATION}")
                if days <= 0:
                    raise bad_request(f"invalid value {value} for annotation {MIN_CERTS_EXPIRATION_ANNOTATION}, "
                                      "it should be greater than 0")
        checksum = (version.get("spec") or {}).get("isoChecksum") or ""
        if checksum and not SHA512.match(checksum):
            raise bad_request(f"invalid isoChecksum {checksum}")


# ---- helpers --------------------------------------------------------------------------------------

def _passes(ctx: Context) -> None:
    """An input the simulator does not model: the check passes, as on a healthy cluster."""


def _annotations(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _ns_name(obj: Obj | None) -> str:
    meta = (obj or {}).get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _condition_status(obj: Obj, ctype: str) -> str | None:
    for cond in ((obj.get("status") or {}).get("conditions") or []):
        if isinstance(cond, dict) and cond.get("type") == ctype:
            return str(cond.get("status", ""))
    return None


def _pvcs(volumes: Iterable[Obj]) -> str:
    names = []
    for volume in volumes:
        kube_status = (volume.get("status") or {}).get("kubernetesStatus") or {}
        names.append(f"{kube_status.get('namespace', '')}/{kube_status.get('pvcName', '')}")
    return ", ".join(names)


def install(simulator: "Simulator") -> None:
    simulator.api.add_admission(GROUP, "upgrades", UpgradeValidator(simulator.version, simulator.api))
    simulator.api.add_admission(GROUP, "versions", VersionValidator(simulator.version))
