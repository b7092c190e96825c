"""The simulator's `validator.harvesterhci.io`: Upgrade and Version admission per simulated release.

Expectations here are written from harvester/harvester's validator.go at each tag (docs/harvester-facts.md §1.3), not
from the simulator's flags: the Running check in every simulated release (since v1.2.0), the strict
Node <-> Machine match only in v1.5.1 and v1.5.2 (master-ce188325-head, the master of 2025-04-02, runs
v1.5.0's validator), and the later checks (cleanup-pending, pause map, add-ons, " or fix it") in none of
them; their code is checked in-process on a release that has them. Checked over the wire with the
`kubernetes` client and kubectl.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml
from kubernetes.dynamic.exceptions import DynamicApiError

from infra.backends.simulated import SimulatorProcess
from infra.cleanup import CleanupStack
from infra.harvester import machines as capi
from infra.kube import Kube
from infra.kube.kubectl import kubectl_binary
from infra.simulator.apiserver.objects import ObjectApi
from infra.simulator.controllers import upgrade_webhook as hook
from infra.simulator.harvester.versions import get_version
from infra.waits.budget import Budget

from ..conftest import start_simulator

HARVESTER = "harvesterhci.io/v1beta1"
CAPI = "cluster.x-k8s.io/v1beta1"
NS = "harvester-system"
PREFIX = 'admission webhook "validator.harvesterhci.io" denied the request: '
ALL_VERSIONS = ("v1.4.2", "v1.4.3", "v1.5.0-rc2", "v1.5.0", "v1.5.1", "v1.5.2", "master-ce188325-head")
STRICT_MATCH = {"v1.5.1", "v1.5.2"}        # commit 999ac37f2, first in v1.5.1 (ce00f096c on master: 2025-05-07)
HEAD_ONLY: set[str] = set()                # v1.7.0+ checks: no simulated release runs them
RUN_ID = "e2e-webhook-tests"

Obj = dict[str, Any]


# ---- fixtures and helpers ----------------------------------------------------------------------------

@pytest.fixture
def fresh_simulator(tmp_path: Path) -> Iterator[Callable[[str], SimulatorProcess]]:
    """A simulator of its own, for tests that break many things at once."""
    started: list[SimulatorProcess] = []

    def get(version: str) -> SimulatorProcess:
        started.append(start_simulator(version, tmp_path / f"simulator-{version}"))
        return started[-1]

    yield get
    for simulator in started:
        simulator.stop()


def client(simulator: SimulatorProcess) -> Kube:
    return Kube(simulator.kubeconfig, unavailable_budget=5)


def ensure_version(kube: Kube, name: str = "master-ce188325-head", **annotations: str) -> None:
    if kube.find(HARVESTER, "Version", name, NS) is None:
        meta: Obj = {"name": name, "namespace": NS}
        if annotations:
            meta["annotations"] = annotations
        kube.create({"apiVersion": HARVESTER, "kind": "Version", "metadata": meta,
                     "spec": {"isoURL": f"https://releases.rancher.com/harvester/{name}/harvester.iso"}})


def wait_for_state(kube: Kube, name: str, state: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:       # bounded: a few hundred reads at most
        labels = kube.get(HARVESTER, "Upgrade", name, NS)["metadata"].get("labels") or {}
        if labels.get(hook.UPGRADE_STATE_LABEL) == state:
            return
        time.sleep(0.2)
    raise AssertionError(f"Upgrade {name} did not reach {state} in {seconds} s")


def upgrade(version: str | None = "master-ce188325-head", *, name: str | None = None, **annotations: str) -> Obj:
    meta: Obj = {"namespace": NS}
    meta.update({"name": name} if name else {"generateName": "hvst-upgrade-"})
    if annotations:
        meta["annotations"] = annotations
    spec = {"version": version} if version else {}
    return {"apiVersion": HARVESTER, "kind": "Upgrade", "metadata": meta, "spec": spec}


def create(kube: Kube, body: Obj, *, dry_run: bool = True) -> tuple[int, Obj]:
    """POST with the kubernetes client (no retries): (HTTP status, the object or the Status body)."""
    resource = kube.resource(body["apiVersion"], body["kind"])
    try:
        created = resource.create(body=body, namespace=body["metadata"].get("namespace"),
                                  dry_run="All" if dry_run else None)
        return 201, created.to_dict()
    except DynamicApiError as exc:
        return exc.status, json.loads(exc.body)


def denial(status: Obj) -> str:
    message = status.get("message", "")
    assert message.startswith(PREFIX), f"not a webhook denial: {status}"
    return message[len(PREFIX):]


def expect(kube: Kube, body: Obj, reason: str | None, message: str | None = None) -> Obj:
    """Admitted (reason None), or denied with exactly this reason and message."""
    code, answer = create(kube, body)
    if reason is None:
        assert code == 201, f"expected admission, got {code}: {answer.get('message')}"
        return answer
    codes = {"BadRequest": 400, "Conflict": 409, "Invalid": 422, "InternalError": 500}
    assert (code, answer.get("reason")) == (codes[reason], reason), f"{code} {answer}"
    assert denial(answer) == message
    return answer


def kubectl_create(simulator: SimulatorProcess, body: Obj, *, dry_run: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(simulator.kubeconfig), "HOME": str(simulator.workdir)}
    args = [str(kubectl_binary()), "create", "-f", "-", "-o", "name"] + (["--dry-run=server"] if dry_run else [])
    return subprocess.run(args, input=yaml.safe_dump(body), capture_output=True, text=True, env=env, timeout=60)


def upgrades_stored(kube: Kube) -> list[str]:
    return [u["metadata"]["name"] for u in kube.list(HARVESTER, "Upgrade", NS)]


def set_status(kube: Kube, api_version: str, kind: str, name: str, status: Obj, namespace: str | None = None) -> None:
    kube.patch(api_version, kind, name, {"status": status}, namespace=namespace, subresource="status")


def set_condition(kube: Kube, api_version: str, kind: str, name: str, ctype: str, value: str,
                  namespace: str | None = None) -> None:
    obj = kube.get(api_version, kind, name, namespace)
    conditions = [dict(c, status=value) if c.get("type") == ctype else c for c in obj["status"]["conditions"]]
    set_status(kube, api_version, kind, name, {"conditions": conditions}, namespace)


# ---- a healthy cluster, and the orphan matrix ------------------------------------------------------------

@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_a_healthy_cluster_admits_the_upgrade_and_a_dry_run_stores_nothing(simulators, version: str) -> None:  # noqa: ANN001
    simulator = simulators(version)
    kube = client(simulator)
    ensure_version(kube)
    answer = expect(kube, upgrade(), None)
    assert answer["metadata"]["name"].startswith("hvst-upgrade-")
    assert answer["spec"]["logEnabled"] is True, "the CRD default is applied before admission"
    result = kubectl_create(simulator, upgrade())
    assert result.returncode == 0 and result.stdout.startswith("upgrade.harvesterhci.io/hvst-upgrade-"), result.stderr
    assert upgrades_stored(kube) == []


def _expected_for(version: str, kind: capi.OrphanKind, injection: capi.Injection) -> str | None:
    if kind.phase != "Running" and not kind.tampers_node:
        return f"machine fleet-local/{injection.machine} is not running"
    if version not in STRICT_MATCH:
        return None
    if kind.tampers_node:
        return f"node {injection.node} refers to machine {injection.machine}, but the machine does not exist"
    return "nodes(3) and machines(4) do not match, check the cluster provision"


@pytest.mark.parametrize("kind", [k.key for k in capi.ORPHAN_KINDS])
@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_orphans_with_the_kubernetes_client_and_kubectl(simulators, version: str, kind: str) -> None:  # noqa: ANN001
    simulator = simulators(version)
    kube = client(simulator)
    ensure_version(kube)
    stack = CleanupStack()
    try:
        injection = capi.inject_orphan(kube, kind, RUN_ID, stack, budget=Budget("removal", 10))
        expected = _expected_for(version, capi.orphan_kind(kind), injection)
        if expected is None:
            expect(kube, upgrade(), None)
        else:
            expect(kube, upgrade(), "InternalError", expected)
        result = kubectl_create(simulator, upgrade())
        if expected is None:
            assert result.returncode == 0, result.stderr
        else:
            assert result.returncode == 1
            assert result.stderr.strip() == (f'Error from server (InternalError): error when creating "STDIN": '
                                             f"{PREFIX}{expected}")
        assert upgrades_stored(kube) == [], "dry-run creates store nothing, admitted or not"
    finally:
        assert stack.run() == []
    expect(kube, upgrade(), None)          # put back: the next test starts healthy


def test_a_denied_real_create_stores_nothing_either(simulators) -> None:  # noqa: ANN001
    simulator = simulators("v1.5.1")
    kube = client(simulator)
    ensure_version(kube)
    stack = CleanupStack()
    try:
        capi.inject_orphan(kube, "provisioning", RUN_ID, stack, budget=Budget("removal", 10))
        code, answer = create(kube, upgrade(), dry_run=False)
        assert (code, answer["reason"]) == (500, "InternalError")
        result = kubectl_create(simulator, upgrade(), dry_run=False)
        assert result.returncode == 1 and "is not running" in result.stderr
        assert upgrades_stored(kube) == []
    finally:
        stack.run()


# ---- the order of the checks ------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1.4.2", "v1.5.0", "v1.5.1", "master-ce188325-head"])
def test_checks_run_in_the_source_order_and_stop_at_the_first_failure(fresh_simulator, version: str) -> None:  # noqa: ANN001
    """Break everything at once, then mend one thing at a time: each denial names the next check."""
    kube = client(fresh_simulator(version))
    ensure_version(kube)
    head = version in HEAD_ONLY
    strict = version in STRICT_MATCH

    # a previous Upgrade, let in with skipWebhook while it is the only one
    expect(kube, upgrade(name="previous", **{hook.SKIP_WEBHOOK_ANNOTATION: "true"}), None)
    create(kube, upgrade(name="previous", **{hook.SKIP_WEBHOOK_ANNOTATION: "true"}), dry_run=False)
    # the controller runs it too: its ISO (releases.rancher.com) is out of the air-gapped simulator's reach, so it
    # fails; only then is its state label the test's to set
    wait_for_state(kube, "previous", "Failed")
    kube.patch(HARVESTER, "Upgrade", "previous", {"metadata": {"labels": {hook.UPGRADE_STATE_LABEL: "UpgradingNodes"}}},
               namespace=NS)
    # storage: one degraded volume, one single-replica volume in use
    for name, replicas, status in (
            ("pvc-degraded", 3, {"robustness": "degraded", "state": "attached"}),
            ("pvc-single", 1, {"robustness": "healthy", "state": "attached",
                               "kubernetesStatus": {"namespace": "default", "pvcName": "data"}})):
        kube.create({"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
                     "metadata": {"name": name, "namespace": "longhorn-system"},
                     "spec": {"numberOfReplicas": replicas, "size": "1073741824"}})
        set_status(kube, "longhorn.io/v1beta2", "Volume", name, status, "longhorn-system")
    set_status(kube, CAPI, "Cluster", "local", {"phase": "Provisioning"}, "fleet-local")
    set_condition(kube, "management.cattle.io/v3", "ManagedChart", "harvester", "Ready", "False", "fleet-local")
    set_condition(kube, "v1", "Node", "harvester-node-0", "Ready", "False")
    kube.patch("v1", "Node", "harvester-node-1", {"spec": {"unschedulable": True}})
    kube.patch("v1", "Node", "harvester-node-2", {"metadata": {"annotations": {hook.RKE_INTERNAL_IP_ANNOTATION: None}}})
    stack = CleanupStack()
    injection = capi.inject_orphan(kube, "provisioning", RUN_ID, stack, budget=Budget("removal", 10))

    expect(kube, upgrade(None), "BadRequest", "version or image field are not specified.")
    expect(kube, upgrade("v9.9.9"), "BadRequest", "version v9.9.9 is not found")
    expect(kube, upgrade(), "Conflict", 'cannot proceed until previous upgrade "previous" completes')
    kube.patch(HARVESTER, "Upgrade", "previous", {"metadata": {"labels": {
        hook.UPGRADE_STATE_LABEL: "Succeeded", hook.UPGRADE_CLEANUP_LABEL: "Pending"}}}, namespace=NS)
    if head:
        expect(kube, upgrade(), "Conflict",
               "cannot proceed until the following upgrades completed their cleanup process: previous")
    kube.patch(HARVESTER, "Upgrade", "previous", {"metadata": {"labels": {hook.UPGRADE_CLEANUP_LABEL: "Succeeded"}}},
               namespace=NS)
    expect(kube, upgrade(**{hook.SKIP_WEBHOOK_ANNOTATION: "True"}), None)     # strings.ToLower(...) == "true"
    pause = {hook.PAUSE_MAP_ANNOTATION: json.dumps({"harvester-node-9": "pause"})}
    if head:
        expect(kube, upgrade(**pause), "BadRequest", "node harvester-node-9 does not exist")
    ignored = {} if head else pause          # releases before v1.8 do not read the pause map at all
    expect(kube, upgrade(**ignored), "BadRequest", "there are degraded volumes, please check all volumes are healthy")
    set_status(kube, "longhorn.io/v1beta2", "Volume", "pvc-degraded", {"robustness": "healthy", "state": "attached"},
               "longhorn-system")
    expect(kube, upgrade(), "BadRequest",
           "cluster fleet-local/local status is Provisioning, please wait for it to be provisioned")
    set_status(kube, CAPI, "Cluster", "local", {"phase": "Provisioned"}, "fleet-local")
    expect(kube, upgrade(), "BadRequest", "managed chart harvester is not ready, please wait for it to be ready"
           + (" or fix it" if head else ""))
    set_condition(kube, "management.cattle.io/v3", "ManagedChart", "harvester", "Ready", "True", "fleet-local")
    expect(kube, upgrade(), "BadRequest", "node harvester-node-0 is not ready, please wait for it to be ready")
    set_condition(kube, "v1", "Node", "harvester-node-0", "Ready", "True")
    expect(kube, upgrade(), "BadRequest", "node harvester-node-1 is unschedulable, please wait for it to be schedulable")
    kube.patch("v1", "Node", "harvester-node-1", {"spec": {"unschedulable": None}})
    expect(kube, upgrade(), "InternalError", "node harvester-node-2 doesn't have rke2.io/internal-ip annotation")
    kube.patch("v1", "Node", "harvester-node-2", {"metadata": {"annotations": {hook.RKE_INTERNAL_IP_ANNOTATION:
                                                                                "192.0.2.12"}}})
    expect(kube, upgrade(), "InternalError", f"machine fleet-local/{injection.machine} is not running")
    set_status(kube, CAPI, "Machine", injection.machine, {"phase": "Running"}, "fleet-local")
    if strict:
        expect(kube, upgrade(), "InternalError", "nodes(3) and machines(4) do not match, check the cluster provision")
    injection.remove()
    if version == "v1.4.2":
        expect(kube, upgrade(), "Invalid", "The backing volumes of the following PVCs have single replica "
               "configured, please consider shutdown the corresponding workload before upgrade: default/data")
    else:
        expect(kube, upgrade(), "Invalid", "Following PVCs with single-replica volume, even the volume is "
               "detached, upgrade may have potential data integrity concerns: default/data")
    kube.delete("longhorn.io/v1beta2", "Volume", "pvc-single", "longhorn-system")
    if strict:     # from v1.5.1 the certificate window is read from the Upgrade
        expect(kube, upgrade(**{hook.MIN_CERTS_EXPIRATION_ANNOTATION: "0"}), "BadRequest",
               "invalid value 0 for annotation harvesterhci.io/minCertsExpirationInDay, it should be greater than 0")
    expect(kube, upgrade(), None)
    assert upgrades_stored(kube) == ["previous"]
    assert stack.run() == []


def test_a_single_replica_volume_that_is_detached_passes_with_the_skip_annotation(simulators) -> None:  # noqa: ANN001
    kube = client(simulators("v1.5.1"))
    ensure_version(kube)
    kube.create({"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
                 "metadata": {"name": "pvc-detached", "namespace": "longhorn-system"},
                 "spec": {"numberOfReplicas": 1}})
    set_status(kube, "longhorn.io/v1beta2", "Volume", "pvc-detached",
               {"state": "detached", "kubernetesStatus": {"namespace": "vms", "pvcName": "disk-0"}}, "longhorn-system")
    try:
        answer = expect(kube, upgrade(), "Invalid", "Following PVCs with single-replica volume, even the volume is "
                        "detached, upgrade may have potential data integrity concerns: vms/disk-0")
        bare = "Following PVCs with single-replica volume, even the volume is detached, upgrade may have potential " \
               "data integrity concerns: vms/disk-0"
        assert answer["details"] == {"causes": [{"reason": "FieldValueInvalid", "message": bare}]}, \
            "NewInvalidError's cause keeps the webhook's own words; only the message gets the prefix"
        expect(kube, upgrade(**{hook.SKIP_SINGLE_REPLICA_DETACHED_ANNOTATION: "yes"}), None)
    finally:
        kube.delete("longhorn.io/v1beta2", "Volume", "pvc-detached", "longhorn-system")


@pytest.mark.parametrize("version, annotation_on", [("v1.5.0", "Version"), ("v1.5.1", "Upgrade")])
def test_skipping_the_disk_check_also_skips_its_internal_ip_read(fresh_simulator, version: str,
                                                                  annotation_on: str) -> None:
    kube = client(fresh_simulator(version))
    kube.patch("v1", "Node", "harvester-node-1", {"metadata": {"annotations": {hook.RKE_INTERNAL_IP_ANNOTATION: None}}})
    ensure_version(kube)
    expect(kube, upgrade(), "InternalError", "node harvester-node-1 doesn't have rke2.io/internal-ip annotation")
    skip = {hook.SKIP_GC_THRESHOLD_ANNOTATION: "true"}
    if annotation_on == "Version":
        ensure_version(kube, "skip-gc", **skip)
        expect(kube, upgrade("skip-gc"), None)
        expect(kube, upgrade(**skip), "InternalError", "node harvester-node-1 doesn't have rke2.io/internal-ip "
               "annotation")    # v1.5.0 reads it from the Version only
    else:
        expect(kube, upgrade(**skip), None)
        expect(kube, upgrade(**{hook.SKIP_GC_THRESHOLD_ANNOTATION: "maybe"}), "BadRequest",
               "invalid value maybe for harvesterhci.io/skipGarbageCollectionThresholdCheck annotation")


# ---- skipWebhook, pause map, update and delete -------------------------------------------------------------

def test_pause_map_is_read_by_no_simulated_release(simulators) -> None:  # noqa: ANN001
    bad_action = {hook.PAUSE_MAP_ANNOTATION: json.dumps({"harvester-node-0": "stop"})}
    not_json = {hook.PAUSE_MAP_ANNOTATION: "nodes"}
    for version in ("v1.5.2", "master-ce188325-head"):
        kube = client(simulators(version))
        ensure_version(kube)
        if version in HEAD_ONLY:
            expect(kube, upgrade(**bad_action), "BadRequest",
                   'desired action for node harvester-node-0 must be either "pause" or "unpause"')
            expect(kube, upgrade(**not_json), "BadRequest", "fail to unmarshal harvesterhci.io/node-upgrade-pause-map "
                   "annotation, err: invalid character 'n' looking for beginning of value")
        else:
            expect(kube, upgrade(**bad_action), None)
        name = f"pause-{uuid.uuid4().hex[:6]}"
        create(kube, upgrade(name=name, **{hook.SKIP_WEBHOOK_ANNOTATION: "true"}), dry_run=False)
        try:
            patch = {"metadata": {"annotations": bad_action}}
            if version in HEAD_ONLY:
                with pytest.raises(Exception) as caught:
                    kube.patch(HARVESTER, "Upgrade", name, patch, namespace=NS)
                assert str(caught.value).endswith(
                    PREFIX + 'desired action for node harvester-node-0 must be either "pause" or "unpause"')
            else:
                kube.patch(HARVESTER, "Upgrade", name, patch, namespace=NS)
        finally:
            kube.patch(HARVESTER, "Upgrade", name, {"metadata": {"labels": {hook.UPGRADE_STATE_LABEL: "Succeeded"}}},
                       namespace=NS)
            assert kube.delete(HARVESTER, "Upgrade", name, NS)


def test_delete_is_refused_while_nodes_upgrade_or_the_cluster_provisions(simulators) -> None:  # noqa: ANN001
    kube = client(simulators("v1.4.2"))
    ensure_version(kube)
    name = f"running-{uuid.uuid4().hex[:6]}"
    create(kube, upgrade(name=name, **{hook.SKIP_WEBHOOK_ANNOTATION: "false"}), dry_run=False)
    kube.patch(HARVESTER, "Upgrade", name, {"status": {"conditions": [
        {"type": "NodesUpgraded", "status": "Unknown"}]}}, namespace=NS)
    resource = kube.resource(HARVESTER, "Upgrade")
    try:
        for dry_run in ("All", None):
            with pytest.raises(DynamicApiError) as caught:
                resource.delete(name=name, namespace=NS, dry_run=dry_run)
            body = json.loads(caught.value.body)
            assert (body["code"], body["reason"]) == (400, "BadRequest")
            assert denial(body) == "node upgrade is in progressing, please wait for it to be provisioned"
        set_status(kube, CAPI, "Cluster", "local", {"phase": "Provisioning"}, "fleet-local")
        with pytest.raises(DynamicApiError) as caught:
            resource.delete(name=name, namespace=NS)
        assert denial(json.loads(caught.value.body)) == \
            "cluster fleet-local/local status is provisioning, please wait for it to be provisioned"
    finally:
        set_status(kube, CAPI, "Cluster", "local", {"phase": "Provisioned"}, "fleet-local")
        kube.patch(HARVESTER, "Upgrade", name, {"metadata": {"annotations": {hook.SKIP_WEBHOOK_ANNOTATION: "true"}}},
                   namespace=NS)
        assert kube.delete(HARVESTER, "Upgrade", name, NS), "skipWebhook lets the delete through"


# ---- the Version validator -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version, annotations, message", [
    ("v1.4.2", {hook.MIN_FREE_DISK_SPACE_ANNOTATION: "-1"},
     "invalid value -1 for annotation harvesterhci.io/minFreeDiskSpaceGB"),
    ("v1.5.0", {hook.SKIP_GC_THRESHOLD_ANNOTATION: "maybe"},
     "invalid value maybe for annotation harvesterhci.io/skipGarbageCollectionThresholdCheck"),
    ("v1.5.0", {hook.MIN_CERTS_EXPIRATION_ANNOTATION: "0"},
     "invalid value 0 for annotation harvesterhci.io/minCertsExpirationInDay, it should be greater than 0"),
    ("v1.5.1", {hook.MIN_CERTS_EXPIRATION_ANNOTATION: "0", hook.SKIP_GC_THRESHOLD_ANNOTATION: "maybe"}, None),
    ("master-ce188325-head", {"harvesterhci.io/anything": "x"}, None),
])
def test_the_version_validator_checks_the_annotations_its_release_reads(simulators, version: str, annotations: dict,  # noqa: ANN001
                                                                         message: str | None) -> None:
    kube = client(simulators(version))
    body = {"apiVersion": HARVESTER, "kind": "Version",
            "metadata": {"name": f"v-{uuid.uuid4().hex[:6]}", "namespace": NS, "annotations": annotations},
            "spec": {"isoURL": "https://example.invalid/h.iso"}}
    expect(kube, body, "BadRequest" if message else None, message)


def test_the_version_validator_wants_a_sha512_iso_checksum(simulators) -> None:  # noqa: ANN001
    kube = client(simulators("v1.5.1"))
    body = {"apiVersion": HARVESTER, "kind": "Version", "metadata": {"name": "bad-sum", "namespace": NS},
            "spec": {"isoURL": "https://example.invalid/h.iso", "isoChecksum": "abc"}}
    expect(kube, body, "BadRequest", "invalid isoChecksum abc")
    body["spec"]["isoChecksum"] = "a" * 128
    expect(kube, body, None)


# ---- the validator in-process: gating table and Go parsing ---------------------------------------------------

def test_the_checks_each_release_runs_in_order() -> None:
    def names(version: str) -> list[str]:
        return [c.name for c in hook.UpgradeValidator(get_version(version), ObjectApi()).checks()]

    common_tail = ["single-replica-volumes", "nonlivemigratablevms"]
    pre = ["spec", "version", "previous-upgrade"]
    v14 = pre + ["skip-webhook", "degraded-volumes", "local-cluster", "vmbackups", "schedulevmbackups",
                 "managed-charts", "nodes", "machines"] + common_tail
    assert names("v1.4.2") == names("v1.4.3") == v14
    assert names("v1.5.0-rc2") == names("v1.5.0") == v14 + ["certs"]
    strict = v14[:-2] + ["node-machine-matching"] + common_tail + ["certs"]
    assert names("v1.5.1") == names("v1.5.2") == strict
    assert names("master-ce188325-head") == names("v1.5.0"), "ce188325 (2025-04-02) has v1.5.0's validator"
    later = [c.name for c in hook.UpgradeValidator(release_with_code_of("v1.8.2"), ObjectApi()).checks()]
    assert later == pre + ["cleanup-pending", "skip-webhook", "pause-map", "degraded-volumes", "local-cluster",
                           "vmbackups", "schedulevmbackups", "managed-charts", "addons", "nodes", "machines",
                           "node-machine-matching", "single-replica-volumes", "nonlivemigratablevms", "stalehotplug",
                           "certs"]


def release_with_code_of(tag: str):  # noqa: ANN201 - a HarvesterVersion
    """A simulated release whose upgrade code is that of `tag` (for gates no simulated release reaches)."""
    return dataclasses.replace(get_version("master-ce188325-head"), behaviour_tag=tag)


def test_later_gates_open_at_the_tags_that_introduced_them() -> None:
    def gates(tag: str) -> tuple[bool, bool, str]:
        validator = hook.UpgradeValidator(release_with_code_of(tag), ObjectApi())
        return (validator.release.checks_cleanup_pending, validator.validates_pause_map,
                validator.managed_chart_message_suffix)
    assert gates("v1.5.2") == (False, False, "")
    assert gates("v1.7.0-rc1") == (True, False, "")
    assert gates("v1.7.0-rc3") == (True, True, "")
    assert gates("v1.7.0-rc4") == (True, True, " or fix it")


def test_a_pause_map_is_validated_where_the_release_has_the_check() -> None:
    api = ObjectApi()
    validator = hook.UpgradeValidator(release_with_code_of("v1.7.0-rc3"), api)
    with pytest.raises(hook.AdmitError) as caught:
        validator._validate_pause_map(upgrade(**{hook.PAUSE_MAP_ANNOTATION: json.dumps({"n1": "stop"})}))
    assert caught.value.message == 'desired action for node n1 must be either "pause" or "unpause"'
    with pytest.raises(hook.AdmitError) as caught:
        validator._validate_pause_map(upgrade(**{hook.PAUSE_MAP_ANNOTATION: "nodes"}))
    assert caught.value.message == ("fail to unmarshal harvesterhci.io/node-upgrade-pause-map annotation, err: "
                                    "invalid character 'n' looking for beginning of value")


def test_unmodelled_checks_are_listed() -> None:
    checks = hook.UpgradeValidator(release_with_code_of("v1.8.2"), ObjectApi()).checks()
    assert {c.name for c in checks if not c.modelled} <= set(hook.UNMODELLED)


@pytest.mark.parametrize("text, error", [
    ('{"a": "pause"}', None),
    ("null", None),
    ("", "unexpected end of JSON input"),
    ('{"a": ', "unexpected end of JSON input"),
    ("nodes", "invalid character 'n' looking for beginning of value"),
    ('["a"]', "json: cannot unmarshal array into Go value of type map[string]string"),
    ('{"a": 1}', "json: cannot unmarshal number into Go value of type string"),
])
def test_pause_map_json_errors_read_as_go_prints_them(text: str, error: str | None) -> None:
    assert hook._go_unmarshal_string_map(text)[1] == error


def test_go_number_and_bool_parsing() -> None:
    assert hook._go_parse_bool("T") is True and hook._go_parse_bool("yes") is None
    assert hook._go_atoi("-3") == -3 and hook._go_atoi("3.0") is None and hook._go_atoi(str(2**63)) is None
    assert hook._go_parse_uint("0") == 0 and hook._go_parse_uint("+1") is None and hook._go_parse_uint("-1") is None


def test_a_missing_local_cluster_is_named_as_wranglers_cache_names_it() -> None:
    """errors.NewNotFound(GroupResource{cluster.x-k8s.io, clusters}, "local"): the plural resource name."""
    validator = hook.UpgradeValidator(get_version("v1.5.0"), ObjectApi())
    with pytest.raises(hook.AdmitError) as caught:
        validator._check_local_cluster(hook.Context(upgrade(), None))
    assert (caught.value.code, caught.value.message) == (
        500, 'can\'t find fleet-local/local cluster, err: clusters.cluster.x-k8s.io "local" not found')
