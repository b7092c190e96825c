"""pods/exec, pods/attach and pods/portforward on a simulated guest RKE2 cluster (and the Harvester host), for
the clients that use them: the `kubernetes` Python client's stream(), a raw WebSocket client speaking each
channel protocol, and real kubectl (exec, cp, attach, port-forward)."""
from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import websocket
from kubernetes.client import CoreV1Api
from kubernetes.stream import portforward, stream

from infra.harvester.guest import charts, volumes, volume_data
from infra.harvester.guest import cluster as guests
from infra.kube import Kube

from .guest_support import BUDGET, RUN_ID, a_guest, host_kube, installer

NS = "apps"
KUBECTL = os.environ.get("KUBECTL") or shutil.which("kubectl")
_EXTRA_KUBECTLS = [Path(f"/usr/lib/google-cloud-sdk/bin/kubectl.1.{minor}") for minor in (30, 33)]
KUBECTLS = [k for k in dict.fromkeys([KUBECTL, *(str(p) for p in _EXTRA_KUBECTLS if p.exists())]) if k]
needs_kubectl = pytest.mark.skipif(not KUBECTLS, reason="kubectl is not installed (see README: system packages)")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kube]:
    with host_kube(tmp_path_factory.mktemp("pod-streams-simulator")) as kube:
        yield kube


@pytest.fixture(scope="module")
def guest(host: Kube) -> Iterator[guests.GuestCluster]:
    with a_guest(host, "v1.31.6+rke2r1", "2.10") as found:
        installer(found).install(charts.Chart("harvester-csi-driver", "0.1.21"))
        found.kube().create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield found


def _running(kube: Kube, manifest: dict[str, Any]) -> str:
    kube.create(manifest)
    name = manifest["metadata"]["name"]
    kube.wait_for("v1", "Pod", name, lambda p: bool(p) and (p.get("status") or {}).get("phase") == "Running",
                  budget=BUDGET, awaited=f"pod {name} to run", namespace=NS)
    return name


def _pod(name: str, *, command: list[str] | None = None, stdin: bool = False, containers: int = 1,
         ports: list[int] | None = None) -> dict[str, Any]:
    spec = [{"name": "main" if i == 0 else f"side{i}", "image": "busybox:1.36",
             "command": command or ["sh", "-c", "sleep infinity"], "stdin": stdin,
             "env": [{"name": "GREETING", "value": "hello there"}],
             **({"ports": [{"containerPort": p} for p in ports]} if ports and i == 0 else {})}
            for i in range(containers)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
            "spec": {"containers": spec}}


@pytest.fixture(scope="module")
def data_pod(guest: guests.GuestCluster) -> str:
    """The CSI story's data workload: busybox `sh -c "sleep infinity"` with a PVC at /data."""
    kube = guest.kube()
    kube.create(volume_data.claim_manifest(NS, "streams-data", RUN_ID))
    data = volume_data.DataWorkload(NS, "streams-writer", "streams-data")
    kube.create(data.manifest(RUN_ID))
    return str(volume_data.scale(kube, data, 1, BUDGET)[0]["metadata"]["name"])


@pytest.fixture(scope="module")
def core(guest: guests.GuestCluster) -> CoreV1Api:
    return CoreV1Api(guest.kube().api_client)


def _exec(core: CoreV1Api, pod: str, script: str, **options: Any) -> Any:
    client = stream(core.connect_get_namespaced_pod_exec, pod, NS, command=["sh", "-c", script], stderr=True,
                    stdin=options.pop("stdin", False), stdout=True, tty=False, _preload_content=False, **options)
    return client


def _finish(client: Any, timeout: float = 20) -> tuple[str, str, int | None, Any]:
    client.run_forever(timeout=timeout)
    out, err = client.read_stdout(), client.read_stderr()
    raw_status = client.peek_channel(3)
    code = client.returncode
    client.close()
    return out, err, code, json.loads(raw_status) if raw_status else None


# --- the Python client ----------------------------------------------------------------------------------------
def test_exec_keeps_stdout_and_stderr_apart_and_reports_the_exit_code(core: CoreV1Api, data_pod: str) -> None:
    out, err, code, status = _finish(_exec(core, data_pod, "echo to-out; echo to-err >&2; printf '%s-%d' x 7; exit 3"))
    assert (out, err, code) == ("to-out\nx-7", "to-err\n", 3)
    assert status == {"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                      "message": "command terminated with non-zero exit code: error executing command "
                                 "[sh -c echo to-out; echo to-err >&2; printf '%s-%d' x 7; exit 3], exit code 3",
                      "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}}
    out, err, code, status = _finish(_exec(core, data_pod, "true"))
    assert (out, err, code, status) == ("", "", 0, {"metadata": {}, "status": "Success"})


def test_the_shell_in_a_pod(core: CoreV1Api, data_pod: str) -> None:
    script = ("mkdir -p /tmp/a/b && echo one > /tmp/a/b/f && echo two >> /tmp/a/b/f && cat < /tmp/a/b/f | wc -l; "
              "ls /tmp/a; test -d /tmp/a && [ -f /tmp/a/b/f ] && echo tests; hostname; env | grep ^HOME=; "
              "nosuch --flag; echo status=$?; false || echo or; true && echo and; "
              "dd if=/dev/urandom of=/tmp/r bs=1K count=3 2>/dev/null; wc -c < /tmp/r; "
              "head -c 5 /tmp/a/b/f; echo; tail -n 1 /tmp/a/b/f; rm -r /tmp/a; ls /tmp/a")
    out, err, code, _ = _finish(_exec(core, data_pod, script))
    assert out == (f"2\nb\ntests\n{data_pod}\nHOME=/root\nstatus=127\nor\nand\n3072\none\nt\ntwo\n")
    assert err == "sh: nosuch: not found\nls: /tmp/a: No such file or directory\n"
    assert code == 1


def test_binary_data_round_trips_through_base64_and_sha256sum(core: CoreV1Api, data_pod: str) -> None:
    payload = bytes(range(256)) * 64
    encoded = base64.b64encode(payload).decode()
    out, err, code, _ = _finish(_exec(core, data_pod, f"printf '%s' '{encoded}' | base64 -d > /data/bin && sync && "
                                                      "sha256sum /data/bin && md5sum /data/bin && base64 -w0 /data/bin"))
    assert (err, code) == ("", 0)
    lines = out.split("\n")
    assert lines[0] == f"{hashlib.sha256(payload).hexdigest()}  /data/bin"
    assert lines[1] == f"{hashlib.md5(payload).hexdigest()}  /data/bin"  # noqa: S324 - what md5sum prints
    assert base64.b64decode(lines[2]) == payload


def test_stdin_reaches_the_command_and_v5_closes_it(core: CoreV1Api, data_pod: str) -> None:
    client = _exec(core, data_pod, "cat > /tmp/in; wc -c < /tmp/in; cat /tmp/in", stdin=True)
    assert client.subprotocol == "v5.channel.k8s.io"
    client.write_stdin("line one\nline two\n")
    client.close_channel(0)
    out, err, code, _ = _finish(client)
    assert (out, err, code) == ("18\nline one\nline two\n", "", 0)


def test_exec_in_a_host_pod(host: Kube) -> None:
    core = CoreV1Api(host.api_client)
    pod = core.list_namespaced_pod("harvester-system").items[0]
    client = stream(core.connect_get_namespaced_pod_exec, pod.metadata.name, "harvester-system",
                    command=["hostname"], stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    client.run_forever(timeout=20)
    assert (client.read_stdout(), client.returncode) == (pod.metadata.name + "\n", 0)


# --- errors before the upgrade, as kube-apiserver and the kubelet answer ------------------------------------
def _raw(kube: Kube, path: str, protocols: list[str]) -> websocket.WebSocket:
    config = kube.api_client.configuration
    url = config.host.replace("https://", "wss://") + path
    ws = websocket.WebSocket(sslopt={"cert_reqs": ssl.CERT_REQUIRED, "ca_certs": config.ssl_ca_cert})
    headers = [f"Authorization: {config.auth_settings()['BearerToken']['value']}"]
    ws.connect(url, header=headers, subprotocols=protocols or None, timeout=20)
    return ws


def _handshake_refusal(kube: Kube, path: str, protocols: list[str]) -> tuple[int, str]:
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        _raw(kube, path, protocols)
    body = refused.value.resp_body
    return refused.value.status_code, body.decode() if isinstance(body, bytes) else str(body or "")


def test_errors_before_the_upgrade(guest: guests.GuestCluster, data_pod: str) -> None:
    kube = guest.kube()
    base = f"/api/v1/namespaces/{NS}/pods"
    code, body = _handshake_refusal(kube, f"{base}/nope/exec?command=true&stdout=true", ["v4.channel.k8s.io"])
    assert code == 404 and json.loads(body)["message"] == 'pods "nope" not found'
    code, body = _handshake_refusal(kube, f"{base}/{data_pod}/exec?command=true&stdout=true&container=bogus",
                                    ["v4.channel.k8s.io"])
    assert code == 400 and json.loads(body)["message"] == f"container bogus is not valid for pod {data_pod}"
    code, body = _handshake_refusal(kube, f"{base}/{data_pod}/exec?command=true", ["v4.channel.k8s.io"])
    assert code == 400 and json.loads(body)["message"] == "you must specify at least 1 of stdin, stdout, stderr"
    code, _ = _handshake_refusal(kube, f"{base}/{data_pod}/exec?command=true&stdout=true", ["v9.channel.k8s.io"])
    assert code == 403

    _running(kube, _pod("two-containers", containers=2))
    code, body = _handshake_refusal(kube, f"{base}/two-containers/exec?command=true&stdout=true",
                                    ["v4.channel.k8s.io"])
    assert json.loads(body)["message"] == ("a container name must be specified for pod two-containers, "
                                           "choose one of: [main side1]")

    kube.create({**_pod("unschedulable"), "spec": {**_pod("unschedulable")["spec"],
                                                   "nodeSelector": {"no-such": "node"}}})
    code, body = _handshake_refusal(kube, f"{base}/unschedulable/exec?command=true&stdout=true",
                                    ["v4.channel.k8s.io"])
    assert code == 400 and json.loads(body)["message"] == "pod unschedulable does not have a host assigned"


def test_a_container_that_is_not_running_has_no_process(host: Kube) -> None:
    """A pod bound to a node whose container has not started (the host simulator runs no kubelet for new pods)."""
    pod = _pod("waiting")
    pod["metadata"]["namespace"] = "default"
    pod["spec"]["nodeName"] = "harvester-node-0"
    host.create(pod)
    path = "/api/v1/namespaces/default/pods/waiting/exec?command=true&stdout=true"
    try:
        code, body = _handshake_refusal(host, path, ["v4.channel.k8s.io"])     # proxied to the kubelet: refused
        assert (code, body) == (500, 'container not found ("main")')
        ws = _raw(host, path, ["v5.channel.k8s.io"])                          # translated by the API server
        assert ws.recv() == b"\x01"
        status = json.loads(ws.recv()[1:])
        ws.close()
    finally:
        host.delete("v1", "Pod", "waiting", "default")
    message = 'unable to upgrade connection: container not found ("main")'
    assert status == {"metadata": {}, "status": "Failure", "code": 500, "reason": "InternalError",
                      "message": f"Internal error occurred: {message}", "details": {"causes": [{"message": message}]}}


# --- the channel protocols byte by byte ------------------------------------------------------------------------
def _frames(ws: websocket.WebSocket) -> list[Any]:
    frames = []
    while True:
        try:
            opcode, data = ws.recv_data(control_frame=False)
        except websocket.WebSocketConnectionClosedException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            break
        frames.append(data)
    return frames


@pytest.mark.parametrize("protocol", ["v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                                      "base64.channel.k8s.io", ""])
def test_each_channel_protocol(guest: guests.GuestCluster, data_pod: str, protocol: str) -> None:
    ws = _raw(guest.kube(), f"/api/v1/namespaces/{NS}/pods/{data_pod}/exec?command=sh&command=-c"
                            "&command=echo+out%3B+echo+err+%3E%262%3B+exit+2&stdout=true&stderr=true",
              [protocol] if protocol else [])
    assert (ws.getsubprotocol() or "") == protocol
    frames = _frames(ws)
    if "base64" in protocol:
        frames = [bytes([f[0] - ord("0")]) + base64.b64decode(f[1:]) for f in frames]
    assert frames[:3] == [b"\x01", b"\x01out\n", b"\x02err\n"]
    if protocol.startswith("v4."):
        assert json.loads(frames[3][1:])["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
    else:                                                       # v1 writes the message of a failure only
        assert frames[3] == b"\x03command terminated with non-zero exit code: error executing command " \
                            b"[sh -c echo out; echo err >&2; exit 2], exit code 2"
    assert len(frames) == 4


# --- ExecPodFiles (the harness's data path) --------------------------------------------------------------------
def test_exec_pod_files_keeps_stderr_out_of_the_data_and_reports_failures(guest: guests.GuestCluster,
                                                                          data_pod: str) -> None:
    files = volume_data.ExecPodFiles(guest.kube())
    payload = os.urandom(300 * 1024)                    # more than one chunk
    files.write(NS, data_pod, "/data/files.bin", payload)
    assert files.read(NS, data_pod, "/data/files.bin") == payload
    with pytest.raises(volume_data.PodCommandFailed) as failed:
        files.write(NS, data_pod, "/data/no/such/dir/x", b"data")
    assert failed.value.exit_code == 1
    assert "can't create /data/no/such/dir/x: No such file or directory" in failed.value.stderr
    assert str(failed.value).startswith(f"writing /data/no/such/dir/x (part 1 of 1) in pod {NS}/{data_pod} exited 1")
    with pytest.raises(volume_data.PodCommandFailed) as unreadable:
        files.read(NS, data_pod, "/data/never")
    assert unreadable.value.exit_code == 1 and "No such file or directory" in unreadable.value.stderr


# --- attach --------------------------------------------------------------------------------------------------------
def test_attach_to_a_shell_reading_stdin(guest: guests.GuestCluster, core: CoreV1Api) -> None:
    name = _running(guest.kube(), _pod("interactive", command=["sh"], stdin=True))
    client = stream(core.connect_get_namespaced_pod_attach, name, NS, stdin=True, stdout=True, stderr=True,
                    tty=False, _preload_content=False)
    client.write_stdin("echo attached; echo $GREETING >&2\n")
    deadline = time.monotonic() + 20
    out = err = ""
    while time.monotonic() < deadline and ("attached" not in out or "hello" not in err):
        client.update(timeout=1)
        out += client.read_stdout() if client.peek_stdout() else ""
        err += client.read_stderr() if client.peek_stderr() else ""
    client.close()
    assert (out, err) == ("attached\n", "hello there\n")
    assert "attached" in guest.kube().pod_log(name, NS)


# --- port forwarding -----------------------------------------------------------------------------------------------
def test_portforward_reaches_what_the_pod_serves(guest: guests.GuestCluster, core: CoreV1Api) -> None:
    name = _running(guest.kube(), _pod("web", command=["httpd", "-f", "-p", "8080", "-h", "/www"],
                                        ports=[8080]))
    client = stream(core.connect_get_namespaced_pod_exec, name, NS, command=["sh", "-c", "mkdir -p /www && echo served > /www/a.txt"],
                    stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
    client.run_forever(timeout=20)
    assert client.returncode == 0
    forward = portforward(core.connect_get_namespaced_pod_portforward, name, NS, ports="8080,9090")
    sock = forward.socket(8080)
    sock.settimeout(20)
    sock.sendall(b"GET /a.txt HTTP/1.0\r\nHost: web\r\n\r\n")
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nserved\n")
    assert forward.error(8080) is None
    idle = forward.socket(9090)
    idle.settimeout(20)
    assert idle.recv(100) == b""
    assert "connect: connection refused" in (forward.error(9090) or "")
    assert (forward.error(9090) or "").startswith("error forwarding port 9090 to pod ")


# --- kubectl ---------------------------------------------------------------------------------------------------------
def _kubectl(binary: str, guest: guests.GuestCluster, *args: str, input: bytes | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "KUBECONFIG": str(guest.kubeconfig), "HOME": str(Path(guest.kubeconfig).parent)}
    return subprocess.run([binary, "-n", NS, *args], input=input, capture_output=True, env=env, timeout=timeout)


@needs_kubectl
@pytest.mark.parametrize("transport", ["websocket", "spdy"])
@pytest.mark.parametrize("binary", KUBECTLS)
def test_kubectl_exec(binary: str, transport: str, guest: guests.GuestCluster, data_pod: str,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    """kubectl >= 1.30 speaks RemoteCommand over WebSockets (v5.channel.k8s.io); with the feature turned off
    (as kubectl < 1.30 always is) it upgrades the request to SPDY/3.1 and speaks v4.channel.k8s.io there."""
    monkeypatch.setenv("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "true" if transport == "websocket" else "false")
    done = _kubectl(binary, guest, "exec", data_pod, "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (done.returncode, done.stdout, done.stderr) == (7, b"out\n", b"err\ncommand terminated with exit code 7\n")
    given = b"\x00\xffbinary\n"
    done = _kubectl(binary, guest, "exec", "-i", data_pod, "--", "sh", "-c", "cat > /data/k; sha256sum /data/k",
                    input=given)
    assert (done.returncode, done.stdout) == (0, f"{hashlib.sha256(given).hexdigest()}  /data/k\n".encode())
    done = _kubectl(binary, guest, "exec", data_pod, "-c", "bogus", "--", "true")
    assert done.returncode == 1
    assert done.stderr.decode().strip().endswith(f"container bogus is not valid for pod {data_pod}")
    done = _kubectl(binary, guest, "exec", "nope", "--", "true")
    assert done.stderr == b'Error from server (NotFound): pods "nope" not found\n'


@needs_kubectl
def test_kubectl_cp_both_ways(guest: guests.GuestCluster, data_pod: str, tmp_path: Path) -> None:
    source = tmp_path / "up"
    (source / "inner").mkdir(parents=True)
    (source / "a.bin").write_bytes(os.urandom(70000))
    (source / "inner" / "b.txt").write_text("bee\n")
    assert KUBECTL is not None
    done = _kubectl(KUBECTL, guest, "cp", str(source), f"{data_pod}:/data/up")
    assert done.returncode == 0, done.stderr
    done = _kubectl(KUBECTL, guest, "exec", data_pod, "--", "sh", "-c", "cat /data/up/inner/b.txt; wc -c < /data/up/a.bin")
    assert done.stdout == b"bee\n70000\n"
    back = tmp_path / "down"
    done = _kubectl(KUBECTL, guest, "cp", f"{data_pod}:/data/up", str(back))
    assert done.returncode == 0, done.stderr
    assert (back / "a.bin").read_bytes() == (source / "a.bin").read_bytes()
    assert (back / "inner" / "b.txt").read_text() == "bee\n"


@needs_kubectl
def test_kubectl_attach(guest: guests.GuestCluster) -> None:
    name = _running(guest.kube(), _pod("attach-me", command=["sh"], stdin=True))
    assert KUBECTL is not None
    env = {**os.environ, "KUBECONFIG": str(guest.kubeconfig), "HOME": str(Path(guest.kubeconfig).parent)}
    process = subprocess.Popen([KUBECTL, "-n", NS, "attach", "-i", name, "-c", "main"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        out, _ = process.communicate(b"echo via-kubectl-attach\n", timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        out, _ = process.communicate()
    assert b"via-kubectl-attach\n" in out



@needs_kubectl
@pytest.mark.parametrize("binary", KUBECTLS)
def test_kubectl_port_forward(binary: str, guest: guests.GuestCluster, core: CoreV1Api) -> None:
    """kubectl >= 1.31 tunnels SPDY through a WebSocket (`SPDY/3.1+portforward.k8s.io`); older ones upgrade
    the request to SPDY/3.1."""
    _port_forward_with_kubectl(binary, guest, core)


def _port_forward_with_kubectl(binary: str, guest: guests.GuestCluster, core: CoreV1Api) -> None:
    name = "kubectl-web"
    if guest.kube().find("v1", "Pod", name, NS) is None:
        _running(guest.kube(), _pod(name, command=["httpd", "-f", "-p", "8080", "-h", "/www"], ports=[8080]))
        client = stream(core.connect_get_namespaced_pod_exec, name, NS,
                        command=["sh", "-c", "mkdir -p /www && echo via-port-forward > /www/index.html"],
                        stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False)
        client.run_forever(timeout=20)
        assert client.returncode == 0
    env = {**os.environ, "KUBECONFIG": str(guest.kubeconfig), "HOME": str(Path(guest.kubeconfig).parent)}
    process = subprocess.Popen([binary, "-n", NS, "port-forward", f"pod/{name}", ":8080"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()                  # "Forwarding from 127.0.0.1:NNNNN -> 8080"
        assert line.startswith("Forwarding from 127.0.0.1:"), line
        local = int(line.split("127.0.0.1:", 1)[1].split(" ", 1)[0])
        with socket.create_connection(("127.0.0.1", local), timeout=20) as connection:
            connection.sendall(b"GET / HTTP/1.0\r\n\r\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"\r\n\r\nvia-port-forward\n")
    finally:
        process.terminate()
        process.wait(timeout=10)


@needs_kubectl
def test_a_kubernetes_1_30_api_server_has_no_port_forward_tunnel(host: Kube, guest: guests.GuestCluster) -> None:
    """PortForwardWebsockets is on from Kubernetes 1.31: before, the kubelet refuses the tunnel's protocol and
    kubectl falls back to SPDY/3.1; 1.30 already translates RemoteCommand v5."""
    path = f"/api/v1/namespaces/{NS}/pods/tunnel-target/portforward?ports=80"
    with a_guest(host, "v1.30.10+rke2r1", "2.9") as older:
        older.kube().create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        _running(older.kube(), _pod("tunnel-target"))
        assert _handshake_refusal(older.kube(), path, ["SPDY/3.1+portforward.k8s.io"])[0] == 403
        _port_forward_with_kubectl(KUBECTLS[-1], older, CoreV1Api(older.kube().api_client))
        client = _exec(CoreV1Api(older.kube().api_client), "tunnel-target", "true")
        assert client.subprotocol == "v5.channel.k8s.io"
        client.close()
    if guest.kube().find("v1", "Pod", "tunnel-target", NS) is None:
        _running(guest.kube(), _pod("tunnel-target"))
    tunnel = _raw(guest.kube(), path, ["SPDY/3.1+portforward.k8s.io"])
    assert (tunnel.getsubprotocol() or "").lower() == "spdy/3.1+portforward.k8s.io"     # websocket-client lowercases
    tunnel.close()


def test_volume_bytes_are_there_only_while_the_volume_is_attached(guest: guests.GuestCluster) -> None:
    """The hotplug pod going away on the host detaches the Longhorn volume under a running guest pod: its
    mount answers EIO, as a disk gone from under a mount does."""
    kube, files = guest.kube(), volume_data.ExecPodFiles(guest.kube())
    kube.create(volume_data.claim_manifest(NS, "detach-data", RUN_ID))
    data = volume_data.DataWorkload(NS, "detach-me", "detach-data")
    kube.create(data.manifest(RUN_ID))
    pod = volume_data.scale(kube, data, 1, BUDGET)[0]["metadata"]["name"]
    files.write(NS, pod, "/data/kept", b"while attached")
    chain = volumes.volume_chain(guest, NS, data.claim, BUDGET)
    for hotplug in guest.host.list("v1", "Pod", guest.host_namespace, label_selector="kubevirt.io=hotplug-disk"):
        if any((v.get("persistentVolumeClaim") or {}).get("claimName") == chain.host_pvc
               for v in hotplug["spec"].get("volumes") or []):
            guest.host.delete("v1", "Pod", hotplug["metadata"]["name"], guest.host_namespace)
    guest.host.wait_for("longhorn.io/v1beta2", "Volume", chain.longhorn_volume,
                        lambda v: ((v or {}).get("status") or {}).get("state") == "detached", budget=BUDGET,
                        awaited="the Longhorn volume to detach", namespace="longhorn-system")
    with pytest.raises(volume_data.PodCommandFailed) as gone:
        files.read(NS, pod, "/data/kept")
    assert gone.value.exit_code == 1 and "Input/output error" in gone.value.stderr
    assert files.read(NS, pod, "/etc/hostname") == f"{pod}\n".encode()     # the root is still there
