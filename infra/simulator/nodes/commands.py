"""The commands a simulated Harvester node answers, backed by the simulator's state.

The shared shell's tools (`infra/simulator/shell.py`) over node files, `whoami`/`id`/`hostname`,
`sudo` (NOPASSWD unless the node has a login password, then `-S` reads it), `bash`, `kubectl` and
`helm` (the real binaries, with the node's kubeconfig; helm with the `rancher-charts` repository
configured), `journalctl -u`, `systemctl is-active`, `reboot`. kubectl and helm read
/etc/rancher/rke2/rke2.yaml, which only root may read.
"""
from __future__ import annotations

import hmac
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..apiserver.objects import ObjectApi
from .bridge import LoopBridge
from .files import RANCHER_UID, RKE2_KUBECONFIG, ROOT_UID, NodeFiles
from .journal import RKE2_SERVER, SYSTEM_AGENT
from ..shell import Call, Output, Shell, parse_sudo, sh
from .system import NodeSystem, Power

CLIENT_TIMEOUT_SECONDS = 120       # kubectl or helm run by one SSH command
_KUBECONFIG_DENIED = (f'error loading config file "{RKE2_KUBECONFIG}": open {RKE2_KUBECONFIG}: permission denied')
_USERS = {ROOT_UID: ("root", 0, "root"), RANCHER_UID: ("rancher", 100, "users")}


@dataclass
class NodeServices:
    """What a node's commands reach: the simulator (through its loop), and where its kubeconfig file is."""

    api: ObjectApi
    bridge: LoopBridge
    files: NodeFiles
    kubeconfig_file: Path
    kubectl_home: Path
    request_power: Callable[[str, str], None]       # (node name, action) -> scheduled on the loop
    sudo_password: str | None = None
    find_kubectl: Callable[[], Path | None] = lambda: None     # RKE2's kubectl for the node's RKE2 version
    find_helm: Callable[[], Path | None] = lambda: None
    helm_env: dict[str, str] = field(default_factory=dict)    # HELM_*_HOME: the node's helm configuration


def node_shell(node: NodeSystem, services: NodeServices) -> Shell:
    commands = NodeCommands(node, services)
    shell = Shell(read_file=lambda path, uid: services.files.read(node, path, uid),
                  installed=lambda name: (services.find_kubectl() if name == "kubectl" else
                                          services.find_helm() if name == "helm" else True) is not None)
    shell.commands.update({
        "whoami": commands.whoami, "id": commands.id, "hostname": commands.hostname,
        "sudo": commands.sudo, "bash": sh, "kubectl": commands.kubectl,
        "helm": commands.helm, "journalctl": commands.journalctl, "systemctl": commands.systemctl,
        "reboot": commands.reboot,
    })
    return shell


class NodeCommands:
    def __init__(self, node: NodeSystem, services: NodeServices) -> None:
        self.node = node
        self.services = services

    # --- identity and files ------------------------------------------------------------------------
    def whoami(self, call: Call) -> Output:
        return Output(0, _USERS[call.uid][0] + "\n")

    def id(self, call: Call) -> Output:
        name, gid, group = _USERS[call.uid]
        options = "".join(a.lstrip("-") for a in call.argv[1:])
        if options in ("u", "ur"):
            return Output(0, f"{call.uid}\n")
        if options in ("un", "nu"):
            return Output(0, f"{name}\n")
        return Output(0, f"uid={call.uid}({name}) gid={gid}({group}) groups={gid}({group})\n")

    def hostname(self, call: Call) -> Output:
        return Output(0, self.node.name + "\n")

    def sudo(self, call: Call) -> Output:
        parsed = parse_sudo(call.argv[1:])
        if isinstance(parsed, Output):
            return parsed
        args, read_password_from_stdin, non_interactive = parsed.command, parsed.read_password, parsed.non_interactive
        stdin = call.stdin
        password = self.services.sudo_password
        if call.uid != ROOT_UID and password is not None:
            if read_password_from_stdin:
                given, _, rest = call.stdin().partition("\n")
                if not hmac.compare_digest(given.encode(), password.encode()):
                    return Output(1, "", "Sorry, try again.\nsudo: 1 incorrect password attempt\n")
                stdin = (lambda text: lambda: text)(rest)
            elif non_interactive:
                return Output(1, "", "sudo: a password is required\n")
            else:
                return Output(1, "", "sudo: a terminal is required to read the password; either use the -S option "
                                     "to read from standard input or configure an askpass helper\n"
                                     "sudo: a password is required\n")
        if not call.shell.knows(args[0]):
            return Output(1, "", f"sudo: {args[0]}: command not found\n")
        return call.shell.execute(args, stdin, ROOT_UID, call.shell_name, call.hung_up)

    # --- Kubernetes ---------------------------------------------------------------------------------
    def kubectl(self, call: Call) -> Output:
        binary = self.services.find_kubectl()
        if binary is None:
            return Output(127, "", f"{call.shell_name}: kubectl: command not found\n")
        if call.uid != ROOT_UID:
            return Output(1, "", f"error: {_KUBECONFIG_DENIED}\n")
        return self._run_client(call, str(binary), {})

    def helm(self, call: Call) -> Output:
        """The real helm 3 with the node's kubeconfig and helm configuration (the rancher-charts repository)."""
        binary = self.services.find_helm()
        if binary is None:
            return Output(127, "", f"{call.shell_name}: helm: command not found\n")
        if call.uid != ROOT_UID:
            return Output(1, "", f"Error: Kubernetes cluster unreachable: {_KUBECONFIG_DENIED}\n")
        return self._run_client(call, str(binary), self.services.helm_env)

    def _run_client(self, call: Call, binary: str, extra_env: dict[str, str]) -> Output:
        """One bounded subprocess; stopped when the SSH session closes or it runs too long."""
        args = call.argv[1:]
        name = call.name
        wants_stdin = "-" in args or any(a in ("--filename=-", "-f-", "--values=-") for a in args)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.services.kubectl_home),
               "KUBECONFIG": str(self.services.kubeconfig_file), **extra_env}
        process = subprocess.Popen([binary, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, env=env)
        give_up = time.monotonic() + CLIENT_TIMEOUT_SECONDS
        pending_input: str | None = call.stdin() if wants_stdin else ""
        while True:
            try:
                stdout, stderr = process.communicate(pending_input, timeout=0.5)
                return Output(process.returncode, stdout, stderr)
            except subprocess.TimeoutExpired:
                pending_input = None             # already handed over; a retry must not send it again
                if call.hung_up() or time.monotonic() > give_up:
                    process.kill()
                    stdout, stderr = process.communicate()
                    return Output(124, stdout, stderr + f"{name} stopped: the session closed or it ran too long\n")

    # --- systemd ------------------------------------------------------------------------------------
    def journalctl(self, call: Call) -> Output:
        units: list[str] = []
        lines: int | None = None
        this_boot = False
        output = "short"
        args = call.argv[1:]
        while args:
            arg = args.pop(0)
            flag, eq, value = arg.partition("=")
            if flag in ("-u", "--unit", "-n", "--lines", "-o", "--output") and not eq:
                if not args:
                    return Output(1, "", f"journalctl: option requires an argument -- '{flag.lstrip('-')}'\n")
                value = args.pop(0)
            elif arg.startswith(("-u", "-n", "-o")) and len(arg) > 2 and not arg.startswith("--"):
                flag, value = arg[:2], arg[2:]
            if flag in ("-u", "--unit"):
                units.append(value.removesuffix(".service"))
            elif flag in ("-n", "--lines"):
                if not value.isdigit():
                    return Output(1, "", f'Failed to parse lines \'{value}\'.\n')
                lines = int(value)
            elif flag in ("-o", "--output"):
                if value not in ("short", "cat"):
                    return Output(1, "", "journalctl: the simulated node supports -o short and -o cat\n")
                output = value
            elif arg in ("--no-pager", "-q", "--quiet", "--no-hostname"):
                continue
            elif arg in ("-b", "--boot"):
                this_boot = True
            else:
                return Output(1, "", f"journalctl: unrecognized option '{arg}'\n")
        text = self.node.journal.render(units, lines, self.node.boot_id if this_boot else None, output)
        return Output(0, text)

    def systemctl(self, call: Call) -> Output:
        args = [a for a in call.argv[1:] if not a.startswith("-")]
        if not args:
            return Output(1, "", "systemctl: the simulated node supports `is-active UNIT...` and `reboot`\n")
        if args[0] == "reboot":
            return self.reboot(call)
        if args[0] != "is-active":
            return Output(1, "", f"Unknown command verb {args[0]}.\n")
        states = [self._unit_state(unit.removesuffix(".service")) for unit in args[1:]]
        return Output(0 if states and all(s == "active" for s in states) else 3, "".join(s + "\n" for s in states))

    def _unit_state(self, unit: str) -> str:
        if unit == RKE2_SERVER:
            return "active" if self.node.rke2_active else "activating"
        if unit in (SYSTEM_AGENT, "sshd"):
            return "active" if self.node.power == Power.RUNNING else "inactive"
        return "inactive"

    def reboot(self, call: Call) -> Output:
        if call.uid != ROOT_UID:
            return Output(1, "", "Failed to reboot system via logind: Interactive authentication required.\n")
        self.services.request_power(self.node.name, "reboot")
        return Output(0)
