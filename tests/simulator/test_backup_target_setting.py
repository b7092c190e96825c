"""The simulator's `backup-target` setting: Harvester's validator, the visible part of its controller, and the
upgrade webhook's VM backup check.

Expectations are written from harvester/harvester (the same at v1.4.2 and v1.5.1): `pkg/webhook/resources/setting/
validator.go` `validateBackupTarget`, `pkg/settings/settings_helper.go` `DecodeBackupTarget`, `pkg/controller/master/
backup/backup_target.go` `OnBackupTargetChange`, `pkg/webhook/resources/upgrade/validator.go` `checkVMBackups` and
`pkg/controller/master/backup/util.go` `IsBackupProgressing`. Go's encoding/json and net/url texts are Go 1.22's.
Checked over the wire with the `kubernetes` client; the parsers and the restore check also in-process.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any, Iterator

import pytest
from kubernetes.dynamic.exceptions import DynamicApiError

from infra.backends.simulated import SimulatorProcess
from infra.kube import Kube
from infra.kube.client import NotFound
from infra.simulator.apiserver import errors
from infra.simulator.apiserver.objects import AdmissionRequest, ObjectApi
from infra.simulator.controllers import backup_target as bt
from infra.simulator.controllers.upgrade_webhook import AdmitError
from infra.simulator.harvester.versions import get_version
from infra.simulator.simulator import seed
from infra.waits.budget import Budget

HARVESTER = "harvesterhci.io/v1beta1"
NS = "harvester-system"
SETTING = "backup-target"
PREFIX = 'admission webhook "validator.harvesterhci.io" denied the request: '
VERSION = "v1.4.2"
NFS_OK = '{"type":"nfs","endpoint":"nfs://192.0.2.10:/exports/backup"}'
S3_KEYS = ('{"type":"s3","endpoint":"https://s3.example.com","accessKeyId":"AKIAEXAMPLE","secretAccessKey":"s3cr3t",'
           '"bucketName":"harvester","bucketRegion":"us-east-1"}')
BUILT_IN_NO_PROXY = ("localhost,127.0.0.1,0.0.0.0,10.0.0.0/8,longhorn-system,cattle-system,cattle-system.svc,"
                     "harvester-system,.svc,.cluster.local")

Obj = dict[str, Any]


# ---- fixtures and helpers ----------------------------------------------------------------------------

@pytest.fixture
def kube(simulators) -> Iterator[Kube]:  # noqa: ANN001
    """The module's v1.4.2 simulator; every test leaves the backup target at its default."""
    simulator: SimulatorProcess = simulators(VERSION)
    client = Kube(simulator.kubeconfig, unavailable_budget=5)
    yield client
    code, answer = patch_setting(client, {"value": ""})
    assert code == 200, f"putting the default target back: {answer}"
    wait_configured(client, "False")


def patch_setting(kube: Kube, body: Obj) -> tuple[int, Obj]:
    """A merge patch of the Setting with the kubernetes client (no retries): (HTTP status, object or Status)."""
    resource = kube.resource(HARVESTER, "Setting")
    try:
        answer = resource.patch(body=body, name=SETTING, content_type="application/merge-patch+json")
        return 200, answer.to_dict()
    except DynamicApiError as exc:
        return exc.status, json.loads(exc.body)


def setting(kube: Kube) -> Obj:
    return kube.get(HARVESTER, "Setting", SETTING)


def configured(obj: Obj | None) -> Obj | None:
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or []
                 if c.get("type") == "configured"), None)


def wait_configured(kube: Kube, status: str, predicate: Any = None) -> Obj:
    def done(obj: Obj | None) -> bool:
        cond = configured(obj)
        return cond is not None and cond.get("status") == status and (predicate is None or predicate(obj))

    found = kube.wait_for(HARVESTER, "Setting", SETTING, done, budget=Budget("backup-target configured", 20),
                          awaited=f"backup-target configured={status}")
    assert found is not None
    return found


def expect_denied(kube: Kube, body: Obj, code: int, message: str, field: str | None = "value") -> None:
    before = setting(kube)
    got, answer = patch_setting(kube, body)
    reason = {400: "BadRequest", 422: "Invalid", 500: "InternalError"}[code]
    assert (got, answer.get("reason")) == (code, reason), f"{got} {answer}"
    assert answer["message"] == PREFIX + message
    if code == 422:
        cause = {"reason": "FieldValueInvalid", "message": message}
        if field:
            cause["field"] = field
        assert answer["details"]["causes"] == [cause], "NewInvalidError keeps the bare message and the field"
    else:
        assert "causes" not in (answer.get("details") or {})
    after = setting(kube)
    assert (after.get("value"), after.get("default")) == (before.get("value"), before.get("default"))


def expect_allowed(kube: Kube, value: str) -> Obj:
    code, answer = patch_setting(kube, {"value": value})
    assert code == 200, f"{code}: {answer.get('message')}"
    return answer


def upgrade_dry_run(kube: Kube, version: str) -> tuple[int, Obj]:
    body = {"apiVersion": HARVESTER, "kind": "Upgrade",
            "metadata": {"generateName": "hvst-upgrade-", "namespace": NS}, "spec": {"version": version}}
    try:
        created = kube.resource(HARVESTER, "Upgrade").create(body=body, namespace=NS, dry_run="All")
        return 201, created.to_dict()
    except DynamicApiError as exc:
        return exc.status, json.loads(exc.body)


def ensure_version(kube: Kube, name: str) -> None:
    if kube.find(HARVESTER, "Version", name, NS) is None:
        kube.create({"apiVersion": HARVESTER, "kind": "Version", "metadata": {"name": name, "namespace": NS},
                     "spec": {"isoURL": f"https://releases.rancher.com/harvester/{name}/harvester.iso"}})


# ---- seeded settings -------------------------------------------------------------------------------------

def test_the_seeded_settings_carry_the_upstream_defaults(simulators) -> None:  # noqa: ANN001
    kube = Kube(simulators(VERSION).kubeconfig, unavailable_budget=5)
    target = kube.get(HARVESTER, "Setting", SETTING)
    assert "value" not in target and "default" not in target, "BackupTargetSet's default is \"\" (omitempty)"
    cond = configured(target)
    assert cond is not None and cond["status"] == "False"
    assert "reason" not in cond and "message" not in cond, "the default target: False, empty reason and message"
    dt.datetime.strptime(cond["lastUpdateTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert kube.get(HARVESTER, "Setting", "csi-driver-config")["default"] == (
        '{"driver.longhorn.io":{"volumeSnapshotClassName":"longhorn-snapshot",'
        '"backupVolumeSnapshotClassName":"longhorn"}}')
    assert kube.get(HARVESTER, "Setting", "volume-snapshot-class")["default"] == "longhorn"


# ---- the validator's refusals, in source order ---------------------------------------------------------------

REFUSALS = [
    pytest.param({"value": "{nfs"}, 422, "unmarshal failed, error: invalid character 'n' looking for beginning "
                 "of object key string, value: {nfs", id="bad-json"),
    pytest.param({"value": "nfs://192.0.2.10:/exports"}, 422, "unmarshal failed, error: invalid character 'f' in "
                 "literal null (expecting 'u'), value: nfs://192.0.2.10:/exports", id="bare-endpoint"),
    pytest.param({"value": '{"type":"nfs","refreshIntervalInSeconds":"60"}'}, 422, "unmarshal failed, error: json: "
                 "cannot unmarshal string into Go struct field BackupTarget.refreshIntervalInSeconds of type int64, "
                 'value: {"type":"nfs","refreshIntervalInSeconds":"60"}', id="wrong-json-type"),
    pytest.param({"value": '{"type":"nfs","refreshIntervalInSeconds":-1}'}, 422,
                 "Refresh interval should be greater than or equal to 0", id="negative-refresh"),
    pytest.param({"value": '{"type":"nfs"}'}, 422, "NFS backup target should have endpoint", id="nfs-no-endpoint"),
    pytest.param({"value": '{"type":"nfs","endpoint":"nfs://192.0.2.10:/exports","accessKeyId":"a"}'}, 422,
                 "NFS backup target should not have access key or access key id", id="nfs-with-keys"),
    pytest.param({"value": '{"type":"nfs","endpoint":"nfs://192.0.2.10:/exports","bucketRegion":"us-east-1"}'},
                 422, "NFS backup target should not have bucket name or region", id="nfs-with-bucket"),
    pytest.param({"value": '{"type":"s3","bucketName":"b","bucketRegion":"us-east-1"}'}, 422,
                 "S3 backup target should have access key and access key id", id="s3-no-keys"),
    pytest.param({"value": '{"type":"s3","accessKeyId":"a","secretAccessKey":"s","bucketName":"b"}'}, 422,
                 "S3 backup target should have bucket name and region ", id="s3-no-region"),
    pytest.param({"value": '{"type":"ftp","endpoint":"ftp://192.0.2.10/"}'}, 422, "Invalid backup target type",
                 id="invalid-type"),
    pytest.param({"value": '{"endpoint":"192.0.2.10:/exports"}'}, 422, "Invalid backup target type",
                 id="no-type-but-not-default"),
    pytest.param({"value": '{"type":"nfs","endpoint":"192.0.2.10"}'}, 422, "cannot find nfs path",
                 id="nfs-without-path"),
    pytest.param({"value": '{"type":"nfs","endpoint":"nfs:///exports"}'}, 422,
                 "NFS path must follow format: nfs://<server-address>:/<share-name>/", id="nfs-without-server"),
    pytest.param({"value": '{"type":"nfs","endpoint":"nfs://nas:2049x/exports"}'}, 422,
                 'parse "nfs://nas:2049x/exports": invalid port ":2049x" after host', id="nfs-bad-port"),
    pytest.param({"default": "{"}, 422, "unmarshal failed, error: unexpected end of JSON input, value: {",
                 id="bad-default"),
]


@pytest.mark.parametrize("body, code, message", REFUSALS)
def test_the_validator_refuses_with_the_upstream_message(kube: Kube, body: Obj, code: int, message: str) -> None:
    field = "default" if "default" in body else "value"
    expect_denied(kube, body, code, message, field)


def test_the_default_target_is_allowed_and_not_configured(kube: Kube) -> None:
    expect_allowed(kube, NFS_OK)
    wait_configured(kube, "True")
    for value in ("", "{}", '{"type":""}', "null"):     # DecodeBackupTarget gives the zero target for each
        expect_allowed(kube, value)
        cond = configured(wait_configured(kube, "False"))
        assert cond is not None and "reason" not in cond and "message" not in cond
        expect_allowed(kube, NFS_OK)
        wait_configured(kube, "True")


def test_a_valid_nfs_target_is_admitted_without_reaching_it_and_configured(kube: Kube) -> None:
    # 192.0.2.0/24 is TEST-NET-1: a real cluster would fail to mount it; the simulator does not try
    answer = expect_allowed(kube, NFS_OK)
    assert answer["value"] == NFS_OK
    found = wait_configured(kube, "True")
    cond = configured(found)
    assert cond is not None and "reason" not in cond and "message" not in cond, "SetError(nil): no reason, no message"
    assert found["value"] == NFS_OK, "an nfs value is left as it is"
    # the optional nfs:// prefix and nfsOptions are accepted as well
    expect_allowed(kube, '{"type":"nfs","endpoint":"192.0.2.10:/exports?nfsOptions=nfsvers=4.1",'
                         '"refreshIntervalInSeconds":300}')
    assert configured(wait_configured(kube, "True")) is not None


def test_an_s3_target_moves_its_keys_to_a_secret_and_is_configured(kube: Kube) -> None:
    expect_allowed(kube, S3_KEYS)
    stripped = ('{"type":"s3","endpoint":"https://s3.example.com","accessKeyId":"","secretAccessKey":"",'
                '"bucketName":"harvester","bucketRegion":"us-east-1","cert":"","virtualHostedStyle":false,'
                '"refreshIntervalInSeconds":0}')
    found = wait_configured(kube, "True", lambda obj: obj.get("value") == stripped)
    assert found["value"] == stripped, "reUpdateBackupTargetSettingSecret: json.Marshal with the keys blanked"
    secret = kube.get("v1", "Secret", bt.SECRET_NAME, "longhorn-system")
    data = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert data == {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
                    "AWS_ENDPOINTS": "https://s3.example.com", "AWS_CERT": "", "VIRTUAL_HOSTED_STYLE": "false",
                    "HTTP_PROXY": "", "HTTPS_PROXY": "", "NO_PROXY": "," + BUILT_IN_NO_PROXY}
    # the stripped value passes again (isUpdatedS3BackupTarget); another bucket without keys does not
    expect_allowed(kube, stripped)
    expect_denied(kube, {"value": stripped.replace('"harvester"', '"other"')}, 422,
                  "S3 backup target should have access key and access key id")
    expect_allowed(kube, "")
    wait_configured(kube, "False")
    assert not kube.get("v1", "Secret", bt.SECRET_NAME, "longhorn-system").get("data"), \
        "resetBackupTargetSecret empties the secret"


# ---- VM backups in progress: the setting and the upgrade webhook ---------------------------------------------

def test_a_progressing_vmbackup_blocks_the_upgrade_and_a_new_backup_target(kube: Kube) -> None:
    try:
        kube.resource(HARVESTER, "VirtualMachineBackup")
    except NotFound:
        pytest.skip("the simulator does not serve virtualmachinebackups.harvesterhci.io yet")
    ensure_version(kube, "master-ce188325-head")
    code, answer = upgrade_dry_run(kube, "master-ce188325-head")
    assert code == 201, f"the cluster starts healthy: {answer.get('message')}"
    name = f"held-{uuid.uuid4().hex[:6]}"
    # status set at creation (a backup synced from a target looks like this), so the VM need not exist; type
    # snapshot needs no backup target. A finalizer keeps it while deleting, when no controller touches it.
    kube.create({"apiVersion": HARVESTER, "kind": "VirtualMachineBackup",
                 "metadata": {"name": name, "namespace": "default", "finalizers": ["e2e.harvesterhci.io/hold"]},
                 "spec": {"source": {"apiGroup": "kubevirt.io", "kind": "VirtualMachine", "name": "gone"},
                          "type": "snapshot"},
                 "status": {"readyToUse": False}})
    try:
        assert kube.delete(HARVESTER, "VirtualMachineBackup", name, "default")
        kube.patch(HARVESTER, "VirtualMachineBackup", name, {"status": {"error": None, "readyToUse": False}},
                   namespace="default")
        refused = f"please wait until all vmbackups are stopped, for example default/{name} is under processing"
        code, answer = upgrade_dry_run(kube, "master-ce188325-head")
        assert (code, answer.get("reason"), answer.get("message")) == (400, "BadRequest", PREFIX + refused)
        expect_denied(kube, {"value": NFS_OK}, 400, "There is VMBackup in creating or deleting progress")
        expect_denied(kube, {"value": "{}"}, 400, "There is VMBackup in creating or deleting progress")
        expect_allowed(kube, "")        # neither value nor default: validateBackupTarget returns before the list

        kube.patch(HARVESTER, "VirtualMachineBackup", name, {"status": None}, namespace="default")
        code, answer = upgrade_dry_run(kube, "master-ce188325-head")
        assert (code, answer.get("message")) == (400, PREFIX + refused), "no status at all is progressing too"

        kube.patch(HARVESTER, "VirtualMachineBackup", name,
                   {"status": {"readyToUse": False, "error": {"message": "VolumeSnapshot x in error state"}}},
                   namespace="default")
        code, answer = upgrade_dry_run(kube, "master-ce188325-head")
        assert code == 201, f"a backup in error does not block the upgrade: {answer.get('message')}"
        expect_denied(kube, {"value": NFS_OK}, 400, "There is VMBackup in creating or deleting progress")
    finally:
        kube.patch(HARVESTER, "VirtualMachineBackup", name, {"metadata": {"finalizers": None}}, namespace="default")
    kube.wait_for_gone(HARVESTER, "VirtualMachineBackup", name, namespace="default",
                       budget=Budget("held backup gone", 10))
    expect_allowed(kube, NFS_OK)
    wait_configured(kube, "True")


# ---- in-process: restores, and Go's parsers --------------------------------------------------------------------

def test_a_restore_in_progress_blocks_a_new_backup_target_but_not_a_ready_backup() -> None:
    api = ObjectApi()
    seed(api, get_version(VERSION), 1)
    validator = bt.BackupTargetValidator(api)
    backups = api.lookup("harvesterhci.io", "v1beta1", "virtualmachinebackups")
    restores = api.lookup("harvesterhci.io", "v1beta1", "virtualmachinerestores")
    target = {"metadata": {"name": SETTING}, "value": NFS_OK}
    api.create(backups, {"metadata": {"name": "done", "namespace": "default"},
                         "spec": {"source": {"kind": "VirtualMachine", "name": "vm"}, "type": "snapshot"},
                         "status": {"readyToUse": True}}, keep_status=True)
    validator.validate(target)                               # a ready backup does not block
    spec = {"target": {"kind": "VirtualMachine", "name": "vm"}, "virtualMachineBackupName": "done",
            "virtualMachineBackupNamespace": "default"}
    api.create(restores, {"metadata": {"name": "r", "namespace": "default"}, "spec": spec,
                          "status": {"complete": False}}, keep_status=True)
    with pytest.raises(AdmitError) as caught:
        validator.validate(target)
    assert (caught.value.code, caught.value.message) == (400, bt.MSG_VMRESTORES)
    with pytest.raises(errors.ApiError) as relayed:
        validator(AdmissionRequest("UPDATE", api.lookup("harvesterhci.io", "v1beta1", "settings"), target,
                                      None, False))
    assert relayed.value.message == PREFIX + bt.MSG_VMRESTORES
    api.mutate(restores, "default", "r", lambda r: r.__setitem__("status", {"complete": True}))
    validator.validate(target)


def test_a_kind_that_is_not_served_has_no_objects() -> None:
    api = ObjectApi()                                        # no CRDs at all
    bt.BackupTargetValidator(api).validate({"metadata": {"name": SETTING}, "value": NFS_OK})


@pytest.mark.parametrize("text, error", [
    ("{nfs", "invalid character 'n' looking for beginning of object key string"),
    ("tru", "invalid character ' ' in literal true (expecting 'e')"),
    ("-", "invalid character ' ' in numeric literal"),
    ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    ('{"a" 1}', "invalid character '1' after object key"),
    ('{"a":1 "b"', "invalid character '\"' after object key:value pair"),
    ("[1 2]", "invalid character '2' after array element"),
    ('{"type":"nfs"} x', "invalid character 'x' after top-level value"),
    ("1.x", "invalid character 'x' after decimal point in numeric literal"),
    ("{'a':1}", "invalid character '\\'' looking for beginning of object key string"),
    ('"\x01"', "invalid character '\\x01' in string literal"),
    ('"\\q"', "invalid character 'q' in string escape code"),
    ('"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape"),
    ('{"a":', "unexpected end of JSON input"),
    ("é", "invalid character 'Ã' looking for beginning of value"),
    ("[]", "json: cannot unmarshal array into Go value of type settings.BackupTarget"),
    ('{"type":5}', "json: cannot unmarshal number into Go struct field BackupTarget.type of type settings.TargetType"),
    ('{"refreshIntervalInSeconds":1.5}',
     "json: cannot unmarshal number 1.5 into Go struct field BackupTarget.refreshIntervalInSeconds of type int64"),
    ('{"virtualHostedStyle":"true"}',
     "json: cannot unmarshal string into Go struct field BackupTarget.virtualHostedStyle of type bool"),
    ('{"endpoint":["a"]}', "json: cannot unmarshal array into Go struct field BackupTarget.endpoint of type string"),
])
def test_decode_errors_read_as_go_prints_them(text: str, error: str) -> None:
    assert bt.decode_backup_target(text) == (None, f"unmarshal failed, error: {error}, value: {text}")


def test_decoding_follows_go_field_matching() -> None:
    target, error = bt.decode_backup_target('{"TYPE":"nfs","endpoint":null,"Endpoint":"x","extra":1}')
    assert error is None and target == bt.BackupTarget(type="nfs", endpoint="x")
    assert bt.decode_backup_target("null") == (bt.BackupTarget(), None)
    assert bt.BackupTarget().is_default() and not bt.BackupTarget(cert="c").is_default()


@pytest.mark.parametrize("endpoint, error", [
    ("nfs://192.0.2.10:/exports", None),
    ("192.0.2.10:/exports", None),
    ("nas.example.com:/exports?nfsOptions=nfsvers=4.2,soft", None),
    ("192.0.2.10", "cannot find nfs path"),
    ("nfs://", "NFS path must follow format: nfs://<server-address>:/<share-name>/"),
    ("nas box:/x", 'parse "nfs://nas box:/x": invalid character " " in host name'),
    ("nas:/x%zz", 'parse "nfs://nas:/x%zz": invalid URL escape "%zz"'),
    ("[fd00::1:/x", "parse \"nfs://[fd00::1:/x\": missing ']' in host"),
    ("nas:/x\n", 'parse "nfs://nas:/x\\n": net/url: invalid control character in URL'),
])
def test_nfs_endpoints_fail_as_the_driver_fails_before_mounting(endpoint: str, error: str | None) -> None:
    assert bt.driver_error(bt.BackupTarget(type="nfs", endpoint=endpoint)) == error
