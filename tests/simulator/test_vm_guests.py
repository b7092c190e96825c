"""VM guests of the simulated Harvester, reached as on a real cluster: SSH to a node, a direct-tcpip channel to
the VMI's address, SSH to the guest as its cloud-init user (infra/simulator/kubevirt/guests.py).

The disk is the VM image's StorageClass's Longhorn volume (`longhorn-<image>`, backing image), its bytes the
guest's files; cloud-init gives the test's key to the image's default user; a live migration keeps the boot
and the files (a VLAN address and its sessions too; a masquerade address follows the new pod); a stop and a
start is a new boot of the same disk.
"""
from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import re
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import kubernetes
import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from infra.backends.simulated import SimulatorProcess, start_simulator_process
from infra.simulator.guest.hostside import VolumeContents
from infra.simulator.kubevirt.guest_disk import GuestDisk, GuestFiles
from infra.simulator.kubevirt.guest_os import CloudInit, base_files, parse_cloud_config, profile_of, users
from infra.simulator.kubevirt.guest_shell import GuestIdentity, GuestShell
from infra.waits.budget import Budget

from .test_kubevirt_vms import Clients, finished_migration, migrate, running_vmi, wait_until

Obj = dict[str, Any]
SCALE = 10           # simulated seconds per wall second: a switch-over pause of 0.5 s lasts 50 ms
MIB = 1 << 20
IMAGE = "image-ubuntu-jammy"
SWITCHOVER = "kubevirt.simulator.harvesterhci.io/last-switchover"


# ---- keys and SSH ---------------------------------------------------------------------------------------------

def new_key() -> tuple[paramiko.PKey, str]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    key = paramiko.Ed25519Key(file_obj=io.StringIO(pem))
    return key, f"{key.get_name()} {key.get_base64()} test@vm-guests"


NODE_KEY, NODE_PUBLIC = new_key()
GUEST_KEY, GUEST_PUBLIC = new_key()
WRONG_KEY, _ = new_key()


class Node:
    """An SSH session to a simulated node as rancher (host key pinned from the ready file): the jump host."""

    def __init__(self, simulator: SimulatorProcess, name: str) -> None:
        info = next(n for n in simulator.info["nodes"] if n["name"] == name)
        self.name = name
        self.client = paramiko.SSHClient()
        key_type, key_data = info["hostKey"].split()[:2]
        self.client.get_host_keys().add(f"[{info['sshHost']}]:{info['sshPort']}", key_type,
                                        paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data)))
        self.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        self.client.connect(info["sshHost"], info["sshPort"], username="rancher", pkey=NODE_KEY,
                            allow_agent=False, look_for_keys=False, timeout=10)
        transport = self.client.get_transport()
        assert transport is not None
        transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # small requests, no 40 ms waits
        self.transport = transport

    def channel(self, address: str, port: int = 22) -> paramiko.Channel:
        return self.transport.open_channel("direct-tcpip", (address, port), ("127.0.0.1", 0), timeout=10)

    def close(self) -> None:
        self.client.close()


class Guest:
    """An SSH session to a VM guest over a node's direct-tcpip channel."""

    def __init__(self, node: Node, address: str, user: str = "ubuntu", key: paramiko.PKey = GUEST_KEY,
                 password: str | None = None) -> None:
        self.address = address
        self.transport = paramiko.Transport(node.channel(address))
        self.transport.start_client(timeout=10)
        self.host_key = f"{self.transport.get_remote_server_key().get_name()} " \
                        f"{self.transport.get_remote_server_key().get_base64()}"
        if password is not None:
            self.transport.auth_password(user, password)
        else:
            self.transport.auth_publickey(user, key)

    def run(self, command: str, timeout: float = 20.0, stdin: bytes = b"") -> tuple[int, str, str]:
        channel = self.transport.open_session(timeout=10)
        channel.settimeout(timeout)
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        out, err = bytearray(), bytearray()
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            out += chunk
        while channel.recv_stderr_ready() or not channel.exit_status_ready():
            chunk = channel.recv_stderr(65536)
            if not chunk:
                break
            err += chunk
        status = channel.recv_exit_status()
        channel.close()
        return status, out.decode(errors="replace"), err.decode(errors="replace")

    def ok(self, command: str) -> str:
        status, out, err = self.run(command)
        assert status == 0, f"{command!r} exited {status}: {err}"
        return out

    def close(self) -> None:
        self.transport.close()


def dropped(guest: Guest) -> bool:
    """The session is gone: the transport closed, or a command cannot run any more."""
    if not guest.transport.is_active():
        return True
    try:
        return guest.run("true", timeout=2)[0] != 0
    except (paramiko.SSHException, EOFError, OSError):
        return True


def login(node: Node, address: str, seconds: float = 20, **options: Any) -> Guest:
    """Log in once the guest's sshd answers (it starts a while after the VMI is Running, as a real one)."""
    deadline = time.monotonic() + seconds
    while True:                                  # bounded by the deadline
        try:
            return Guest(node, address, **options)
        except paramiko.ChannelException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def refused(node: Node, address: str, port: int = 22) -> bool:
    try:
        node.channel(address, port).close()
    except paramiko.ChannelException as exc:
        return exc.code == paramiko.OPEN_FAILED_CONNECT_FAILED
    return False


# ---- the cluster ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def simulator_for_guests(directory: Path, version: str, *, nodes: int, scale: float) -> Iterator[SimulatorProcess]:
    """A simulated Harvester whose nodes let the test's key in (the jump host to the guests)."""
    key_file = directory / "node_key.pub"
    key_file.write_text(NODE_PUBLIC + "\n")
    started = start_simulator_process(version, time_scale=scale, nodes=nodes, workdir=directory / "simulator",
                                      budget=Budget("simulator start in tests", 60), ssh_authorized_key=key_file)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatorProcess]:
    with simulator_for_guests(tmp_path_factory.mktemp("vm-guests"), "v1.4.2", nodes=3, scale=SCALE) as started:
        yield started


@pytest.fixture(scope="module")
def c(simulator: SimulatorProcess) -> Clients:
    return Clients(simulator)


@pytest.fixture
def ns(c: Clients) -> Iterator[str]:
    name = c.namespace()
    yield name
    c.drop_namespace(name)


@pytest.fixture
def nodes(simulator: SimulatorProcess, c: Clients) -> Iterator[dict[str, Node]]:
    sessions = {name: Node(simulator, name) for name in c.node_names()}
    yield sessions
    for session in sessions.values():
        session.close()


def image(c: Clients, namespace: str, name: str = IMAGE) -> str:
    """A VM image as an admin uploads one; its StorageClass (Harvester's image controller) is the disk's class."""
    c.custom.create_namespaced_custom_object("harvesterhci.io", "v1beta1", namespace, "virtualmachineimages", {
        "apiVersion": "harvesterhci.io/v1beta1", "kind": "VirtualMachineImage",
        "metadata": {"name": name, "labels": {"harvesterhci.io/os-type": "ubuntu"}},
        "spec": {"displayName": "jammy-server-cloudimg-amd64.img", "sourceType": "download",
                 "url": "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"}})
    storage = kubernetes.client.StorageV1Api(c.api_client)
    klass = wait_until(lambda: next((s for s in storage.list_storage_class().items
                                     if s.metadata.name == f"longhorn-{name}"), None), 10, "the image's StorageClass")
    assert klass.parameters["backingImage"] == f"{namespace}-{name}"

    def recorded() -> str:
        found: Obj = c.custom.get_namespaced_custom_object("harvesterhci.io", "v1beta1", namespace,
                                                           "virtualmachineimages", name)
        return str((found.get("status") or {}).get("storageClassName") or "")
    assert wait_until(recorded, 10, "the image's status.storageClassName") == f"longhorn-{name}"
    return f"longhorn-{name}"


def disk(c: Clients, namespace: str, name: str, storage_class: str, image_id: str | None) -> None:
    annotations = {"harvesterhci.io/imageId": image_id} if image_id else {}
    c.core.create_namespaced_persistent_volume_claim(namespace, {
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"accessModes": ["ReadWriteMany"], "volumeMode": "Block", "storageClassName": storage_class,
                 "resources": {"requests": {"storage": "1Gi"}}}})


def cloud_config(*, keys: list[str] | None = None, extra: str = "") -> str:
    text = "#cloud-config\n"
    if keys:
        text += "ssh_authorized_keys:\n" + "".join(f"  - {k}\n" for k in keys)
    return text + extra


def vm(c: Clients, namespace: str, name: str, claim: str, *, network: str = "vlan", user_data: str | None = None,
       secret: str | None = None, memory: str = "1Gi") -> Obj:
    """A VM as Harvester's UI makes one, with a cloud-init disk."""
    cloud_init: Obj = {"secretRef": {"name": secret}} if secret else {"userData": user_data or ""}
    spec: Obj = {"domain": {"cpu": {"cores": 1}, "resources": {"requests": {"memory": memory}},
                            "devices": {"disks": [{"name": "disk-0", "bootOrder": 1, "disk": {"bus": "virtio"}},
                                                  {"name": "cloudinitdisk", "disk": {"bus": "virtio"}}]}},
                 "evictionStrategy": "LiveMigrateIfPossible",
                 "volumes": [{"name": "disk-0", "persistentVolumeClaim": {"claimName": claim}},
                             {"name": "cloudinitdisk", "cloudInitNoCloud": cloud_init}]}
    if network == "vlan":
        spec["domain"]["devices"]["interfaces"] = [{"name": "nic-0", "bridge": {}, "model": "virtio"}]
        spec["networks"] = [{"name": "nic-0", "multus": {"networkName": "default/vlan1"}}]
    else:
        spec["domain"]["devices"]["interfaces"] = [{"name": "default", "masquerade": {}, "model": "virtio"}]
        spec["networks"] = [{"name": "default", "pod": {}}]
    return c.create(namespace, "virtualmachines", {
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachine", "metadata": {"name": name},
        "spec": {"runStrategy": "Always", "template": {"metadata": {"labels": {"harvesterhci.io/vmName": name}},
                                                        "spec": spec}}})


def address(vmi: Obj) -> str:
    return vmi["status"]["interfaces"][0]["ipAddress"]


def longhorn_volume(c: Clients, namespace: str, claim: str) -> Obj:
    pvc = c.core.read_namespaced_persistent_volume_claim(claim, namespace)
    return c.custom.get_namespaced_custom_object("longhorn.io", "v1beta2", "longhorn-system", "volumes",
                                                 pvc.spec.volume_name)


def volume_state(c: Clients, namespace: str, claim: str) -> tuple[str, str, str]:
    status = longhorn_volume(c, namespace, claim).get("status") or {}
    return status.get("state", ""), status.get("robustness", ""), status.get("currentNodeID", "")


def micro(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc).timestamp()


def other_node(nodes: dict[str, Node], *avoid: str) -> Node:
    return next(n for name, n in sorted(nodes.items()) if name not in avoid)


# ---- the guest over SSH -------------------------------------------------------------------------------------------

def test_a_vm_guest_keeps_its_files_and_boot_through_a_migration_and_gets_a_new_boot_after_a_restart(
        c: Clients, ns: str, nodes: dict[str, Node]) -> None:
    klass = image(c, ns)
    disk(c, ns, "web-disk-0", klass, f"{ns}/{IMAGE}")
    pvc = wait_until(lambda: (lambda p: p if p.status.phase == "Bound" else None)(
        c.core.read_namespaced_persistent_volume_claim("web-disk-0", ns)), 10, "the PVC Bound")
    assert pvc.spec.volume_name == f"pvc-{pvc.metadata.uid}"
    vm(c, ns, "web", "web-disk-0", user_data=cloud_config(keys=[GUEST_PUBLIC]), memory="8Gi")
    vmi = running_vmi(c, ns, "web")
    source, ip = vmi["status"]["nodeName"], address(vmi)

    volume = longhorn_volume(c, ns, "web-disk-0")
    assert volume["metadata"]["name"] == pvc.spec.volume_name and volume["spec"]["backingImage"] == f"{ns}-{IMAGE}"
    assert volume["status"]["kubernetesStatus"]["pvcName"] == "web-disk-0"
    wait_until(lambda: volume_state(c, ns, "web-disk-0") == ("attached", "healthy", source), 10,
               "the volume attached to the VMI's node")

    jump = other_node(nodes, source)             # any node reaches the guest, not only its own
    guest = login(jump, ip)
    assert guest.ok("hostname") == "web\n"
    assert guest.ok("whoami") == "ubuntu\n"
    boot_id = guest.ok("cat /proc/sys/kernel/random/boot_id").strip()
    assert re.fullmatch(r"[0-9a-f-]{36}", boot_id)
    written = guest.ok(f"head -c {MIB} /dev/urandom > data.bin && md5sum data.bin; sync")
    md5 = written.split()[0]
    assert written == f"{md5}  data.bin\n" and re.fullmatch(r"[0-9a-f]{32}", md5)
    sha = guest.ok("sha256sum data.bin").split()[0]
    assert guest.ok("ls") == "data.bin\n"
    assert guest.ok("ls -l data.bin").split()[2:5] == ["ubuntu", "ubuntu", str(MIB)]
    assert guest.ok("echo hello > note.txt; cat note.txt") == "hello\n"
    assert guest.run("cat /etc/shadow")[0] == 1, "the user may not read the shadow file"
    assert guest.ok("sudo -n cat /etc/shadow").startswith("root:")
    assert guest.run("frobnicate --now") == (127, "", "sh: frobnicate: not found\n")
    assert guest.ok("rm note.txt && ls") == "data.bin\n"
    host_key = guest.host_key

    # a live migration: the guest pauses at the switch-over, then runs on the target with the same boot and files.
    # The pause lasts ~50 ms here: on a loaded machine no command may be in flight then, so up to three migrations
    # are watched until one shows a held command and a held login; what must never happen is checked on each.
    for attempt in range(3):
        timings: list[tuple[float, float, int]] = []          # commands on the open session
        logins: list[tuple[float, float]] = []                 # new connections, login and one command each
        stop = threading.Event()

        def hammer() -> None:
            while not stop.is_set():
                began = time.time()
                status = guest.run("true", timeout=10)[0]
                timings.append((began, time.time(), status))

        def connect() -> None:
            while not stop.is_set():
                began = time.time()
                fresh = Guest(jump, ip)
                fresh.ok("true")
                logins.append((began, time.time()))
                fresh.close()
        workers = [threading.Thread(target=hammer, daemon=True), threading.Thread(target=connect, daemon=True)]
        before_move = c.get(ns, "virtualmachineinstances", "web")["status"]["nodeName"]
        for worker in workers:
            worker.start()
        try:
            migrate(c, ns, "web", f"web-move-{attempt}")
            assert finished_migration(c, ns, f"web-move-{attempt}", 30)["status"]["phase"] == "Succeeded"
            time.sleep(0.2)
        finally:
            stop.set()
            for worker in workers:
                worker.join(20)
        after = c.get(ns, "virtualmachineinstances", "web")
        target = after["status"]["nodeName"]
        assert target != before_move and address(after) == ip, "a VLAN address stays with the guest"
        pause = json.loads(after["metadata"]["annotations"][SWITCHOVER])
        paused, resumed = micro(pause["pausedAt"]), micro(pause["resumedAt"])
        assert all(status == 0 for _, _, status in timings), "the session rode through the migration"
        # Times are the client's: an answer sent just before the pause may arrive during it on a loaded machine,
        # so what is checked is that nothing sent during the pause was answered before the guest resumed.
        slack = 0.002                                # pausedAt is stamped just before the guest stops
        assert all(ended >= resumed for began, ended, _ in timings if paused + slack <= began < resumed), \
            "a command sent during the pause was answered before the guest resumed"
        assert logins and all(ended >= resumed for began, ended in logins if paused + slack <= began < resumed), \
            "a new login started during the pause got in before the guest resumed"
        held = [(began, ended) for began, ended, _ in timings if began <= paused + slack and ended >= resumed]
        waited = [t for t in logins if t[0] < resumed and t[1] >= resumed]
        if held and waited:
            break
    assert held, f"no command was held by the {resumed - paused:.3f} s pause in 3 migrations (hammered {len(timings)})"
    assert waited, "no new connection waited for the resume in 3 migrations"

    assert guest.ok("cat /proc/sys/kernel/random/boot_id").strip() == boot_id, "the same session, the same boot"
    guest.close()
    moved = login(nodes[target] if target != jump.name else other_node(nodes, jump.name), ip)
    assert moved.host_key == host_key
    assert moved.ok("md5sum data.bin").split()[0] == md5 and moved.ok("sha256sum data.bin").split()[0] == sha
    assert moved.ok("cat /proc/sys/kernel/random/boot_id").strip() == boot_id, "a migration is no reboot"
    wait_until(lambda: volume_state(c, ns, "web-disk-0") == ("attached", "healthy", target), 10,
               "the volume follows the VMI to its new node")

    # a stop: nothing answers; a start: a new boot of the same disk
    c.patch(ns, "virtualmachines", "web", {"spec": {"runStrategy": "Halted"}})
    wait_until(lambda: dropped(moved), 10, "the session drops with the guest")
    wait_until(lambda: c.get(ns, "virtualmachineinstances", "web") is None, 20, "the VMI is gone")
    assert refused(jump, ip), "a stopped VM answers nothing"
    wait_until(lambda: volume_state(c, ns, "web-disk-0")[0] == "detached", 10, "the volume detached")
    c.patch(ns, "virtualmachines", "web", {"spec": {"runStrategy": "Always"}})
    again = running_vmi(c, ns, "web")
    restarted = login(jump, address(again))
    assert restarted.host_key == host_key, "the host key lives on the disk"
    new_boot = restarted.ok("cat /proc/sys/kernel/random/boot_id").strip()
    assert new_boot != boot_id, "a restart is a new boot"
    assert restarted.ok("md5sum data.bin").split()[0] == md5, "the files are on the disk"
    assert restarted.ok("ls") == "data.bin\n"
    restarted.close()


def test_a_masquerade_guest_answers_at_its_new_pod_address_after_a_migration(
        c: Clients, ns: str, nodes: dict[str, Node]) -> None:
    klass = image(c, ns)
    disk(c, ns, "api-disk-0", klass, f"{ns}/{IMAGE}")
    vm(c, ns, "api", "api-disk-0", network="pod", user_data=cloud_config(keys=[GUEST_PUBLIC]))
    before = running_vmi(c, ns, "api")
    old_ip = address(before)
    [pod] = c.pods(ns)
    assert pod.status.pod_ip == old_ip and re.fullmatch(r"10\.52\.\d+\.\d+", old_ip)
    jump = other_node(nodes)
    guest = login(jump, old_ip)
    boot_id = guest.ok("cat /proc/sys/kernel/random/boot_id").strip()
    md5 = guest.ok("dd if=/dev/urandom of=blob bs=64K count=4 status=none && md5sum blob").split()[0]

    migrate(c, ns, "api", "api-move")
    assert finished_migration(c, ns, "api-move", 30)["status"]["phase"] == "Succeeded"
    after = c.get(ns, "virtualmachineinstances", "api")
    new_ip = address(after)
    target_pod = next(p for p in c.pods(ns) if p.status.phase == "Running")
    assert new_ip == target_pod.status.pod_ip != old_ip, "the pod network address is the target pod's"
    wait_until(lambda: dropped(guest), 10, "the session through the old pod's address breaks")
    assert refused(jump, old_ip), "nothing answers at the source pod's address"
    moved = login(other_node(nodes, after["status"]["nodeName"]), new_ip)
    assert moved.ok("cat /proc/sys/kernel/random/boot_id").strip() == boot_id
    assert moved.ok("md5sum blob").split()[0] == md5
    moved.close()


def test_only_the_cloud_init_key_logs_in_and_only_running_guests_answer(
        c: Clients, ns: str, nodes: dict[str, Node], simulator: SimulatorProcess) -> None:
    klass = image(c, ns)
    disk(c, ns, "db-disk-0", klass, f"{ns}/{IMAGE}")
    vm(c, ns, "db", "db-disk-0", user_data=cloud_config(keys=[GUEST_PUBLIC]))
    ip = address(running_vmi(c, ns, "db"))
    jump = other_node(nodes)
    login(jump, ip).close()
    with pytest.raises(paramiko.AuthenticationException):
        Guest(jump, ip, key=WRONG_KEY)
    with pytest.raises(paramiko.AuthenticationException):
        Guest(jump, ip, user="root")
    with pytest.raises(paramiko.AuthenticationException):
        Guest(jump, ip, password="anything")
    assert refused(jump, ip, 80), "only sshd listens"
    assert refused(jump, "10.52.254.254"), "no VMI has that address"
    own = next(n for n in simulator.info["nodes"] if n["name"] == jump.name)
    assert refused(jump, "127.0.0.1", own["sshPort"]), "the node opens no socket of its own"
    with pytest.raises(paramiko.ChannelException) as refusal:
        jump.channel("example.com", 22)
    assert refusal.value.code == paramiko.OPEN_FAILED_CONNECT_FAILED


def test_a_disk_not_made_from_the_image_class_is_blank_and_boots_nothing(
        c: Clients, ns: str, nodes: dict[str, Node]) -> None:
    """As on Longhorn: the content comes from the class's backingImage, not from the imageId annotation."""
    image(c, ns)
    disk(c, ns, "blank-disk-0", "harvester-longhorn", f"{ns}/{IMAGE}")
    vm(c, ns, "blank", "blank-disk-0", user_data=cloud_config(keys=[GUEST_PUBLIC]))
    ip = address(running_vmi(c, ns, "blank"))
    volume = longhorn_volume(c, ns, "blank-disk-0")
    assert volume["spec"]["backingImage"] == ""
    time.sleep(2.0)                              # well past when a guest's sshd would answer (0.8 s)
    assert refused(other_node(nodes), ip)


def test_cloud_init_users_from_a_secret_with_sudo_rules_and_a_password(
        c: Clients, ns: str, nodes: dict[str, Node]) -> None:
    klass = image(c, ns)
    disk(c, ns, "app-disk-0", klass, f"{ns}/{IMAGE}")
    user_data = cloud_config(extra=(
        "ssh_pwauth: true\n"
        "users:\n"
        "  - name: alice\n"
        f"    ssh_authorized_keys: [\"{GUEST_PUBLIC}\"]\n"
        "  - name: bob\n"
        "    sudo: ALL=(ALL) ALL\n"
        "    lock_passwd: false\n"
        "    plain_text_passwd: s3cret-bob\n"))
    c.core.create_namespaced_secret(ns, {"metadata": {"name": "app-cloudinit"}, "type": "secret",
                                         "data": {"userdata": base64.b64encode(user_data.encode()).decode()}})
    vm(c, ns, "app", "app-disk-0", secret="app-cloudinit")
    ip = address(running_vmi(c, ns, "app"))
    jump = other_node(nodes)
    alice = login(jump, ip, user="alice")
    assert alice.ok("id -un") == "alice\n"
    status, _, err = alice.run("sudo -n true")
    assert status == 1 and "alice is not in the sudoers file" in err
    with pytest.raises(paramiko.AuthenticationException):
        Guest(jump, ip, user="ubuntu")           # `users` without `default`: no default user
    bob = Guest(jump, ip, user="bob", password="s3cret-bob")
    assert bob.run("sudo -n true")[0] == 1, "a rule without NOPASSWD needs the password"
    assert bob.run("sudo -S -p '' whoami", stdin=b"s3cret-bob\n")[1] == "root\n"
    with pytest.raises(paramiko.AuthenticationException):
        Guest(jump, ip, user="bob", password="wrong")
    alice.close()
    bob.close()


# ---- the disk and the shell, in process ---------------------------------------------------------------------------

def test_the_guest_filesystem_lives_in_the_volume_bytes_and_copies_with_them() -> None:
    contents = VolumeContents()
    files = base_files(profile_of({"metadata": {"name": "x", "labels": {"harvesterhci.io/os-type": "debian"}}}))
    contents.write_bytes("pvc-a", files.dump())
    disk_a = GuestDisk("pvc-a", 1 << 30, contents.read_bytes, contents.write_bytes)
    loaded = disk_a.files()
    assert loaded is not None
    CloudInit(loaded, parse_cloud_config(cloud_config(keys=[GUEST_PUBLIC])), "a.ns", "a").run()
    disk_a.dirty = True
    disk_a.commit()
    assert "debian" in users(loaded)
    shell = GuestShell(GuestIdentity(disk_a, "boot-1", lambda: 90.0, dt.datetime.now(), "a"))
    uid = users(loaded)["debian"].uid
    out = shell.run("head -c 1000 /dev/zero > zeros; md5sum zeros; cd /tmp; echo x > y; cat /tmp/y", lambda: "",
                    uid, lambda: False)
    assert out.stdout == "ede3d3b685b4e137ba4cb2521329a75e  zeros\nx\n", out.stderr
    disk_a.commit()

    contents.copy_bytes("pvc-a", "pvc-b")          # a clone, a restore: the bytes carry the files
    disk_b = GuestDisk("pvc-b", 1 << 30, contents.read_bytes, contents.write_bytes)
    copied = disk_b.files()
    assert copied is not None
    assert copied.read("/home/debian/zeros") == bytes(1000) and copied.read("/tmp/y") == b"x\n"
    assert copied.entries["/home/debian/zeros"].uid == uid

    contents.write_bytes("pvc-a", b"")             # the volume wiped under the guest: it sees it at once
    assert disk_a.files() is None
    assert GuestFiles.load(b"\0" * 4096) is None, "zeros are a blank disk"

    small = GuestDisk("pvc-c", 20_000, contents.read_bytes, contents.write_bytes)
    contents.write_bytes("pvc-c", base_files(profile_of(None)).dump())
    tight = GuestShell(GuestIdentity(small, "boot-2", lambda: 1.0, dt.datetime.now(), "c"))
    full = tight.run("head -c 100000 /dev/urandom > /root/big", lambda: "", 0, lambda: False)
    assert full.status == 0
    with pytest.raises(OSError, match="No space left"):
        small.commit()


def test_shell_details_a_harness_leans_on() -> None:
    contents = VolumeContents()
    contents.write_bytes("v", base_files(profile_of(None)).dump())
    disk_ = GuestDisk("v", 0, contents.read_bytes, contents.write_bytes)
    files = disk_.files()
    assert files is not None
    CloudInit(files, parse_cloud_config(cloud_config(keys=[GUEST_PUBLIC], extra="hostname: custom\n")),
              "i.ns", "vm-name").run()
    disk_.dirty = True
    disk_.commit()
    shell = GuestShell(GuestIdentity(disk_, str(uuid.uuid4()), lambda: 3700.0, dt.datetime.now(), "vm-name"))
    uid = users(files)["ubuntu"].uid

    def run(line: str) -> tuple[int, str, str]:
        out = shell.run(line, lambda: "", uid, lambda: False)
        return out.status, out.stdout, out.stderr
    assert run("hostname") == (0, "custom\n", "")
    assert run("false && echo no; echo yes") == (0, "yes\n", "")
    assert run("uptime -p") == (0, "up 1 hour, 1 minute\n", "")
    assert run("cat /dev/urandom")[0] == 1
    assert run("echo x > /etc/motd")[2] == "sh: can't create /etc/motd: Permission denied\n"
    assert run("sudo -n sh -c 'echo x > /etc/motd' && cat /etc/motd") == (0, "x\n", "")
    assert run("rm nothing-here")[0] == 1 and run("rm -f nothing-here")[0] == 0
    assert run("mkdir -p a/b && touch a/b/c && ls a/b && rm -r a && ls")[1] == "c\n"
    assert run("cloud-init status --wait") == (0, "status: done\n", "")
