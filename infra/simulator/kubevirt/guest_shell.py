"""The commands a VM guest answers over SSH: the simulator's one shell (`infra/simulator/shell.py`) over the
guest's root filesystem (`guest_disk.py`), as a small cloud image's `sh` would run them.

Files: `cat`, `head`/`tail`, `md5sum`, `sha256sum`, `grep`, `wc`, `base64`, `echo`/`printf`, `test`, redirections
(`>`, `>>`, `<`) and pipelines from the shared shell; `ls [-la1]`, `rm [-rf]`, `mkdir [-p]`, `touch`, `cp`, `mv`,
`dd if= of= bs= count=` and `head -c N` of `/dev/urandom`, `/dev/random` or `/dev/zero` here (those devices are
endless: `cat` of them fails rather than never ending), `sync`. Identity: `hostname`, `whoami`, `id`,
`cat /proc/sys/kernel/random/boot_id` (this boot's id: new at every start of the VM, kept by a live
migration), `/proc/uptime`, `uptime [-p|-s]`, `cloud-init status [--wait]` (done: the guest answers only
once cloud-init ran). `sudo [-n] [-S] [-u root] CMD` by the sudoers rules on the disk (cloud-init's
`NOPASSWD:ALL` for the default user; a rule without NOPASSWD asks for the password: `-S` reads it from stdin,
`-n` fails). Every command runs as the logged-in user in their home directory; an unknown one is
`sh: CMD: not found`, exit 127.
"""
from __future__ import annotations

import datetime as dt
import errno
import os
import secrets
from dataclasses import dataclass
from typing import Callable

from ..shell import TEXT_TOOLS, Call, Output, Shell, parse_sudo, to_bytes, to_text
from .guest_disk import ROOT_UID, Entry, GuestDisk, GuestFiles, normalise, parent_of
from .guest_os import group_names, groups_of, password_matches, shadow_entry, sudo_rules, user_by_uid, users

BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"
ENDLESS = {"/dev/urandom": "random", "/dev/random": "random", "/dev/zero": "zero"}
DD_LIMIT = 1 << 30                  # what one dd or head of a device may produce here


@dataclass
class GuestIdentity:
    """What the shell knows of the machine it runs on besides its disk."""

    disk: GuestDisk
    boot_id: str
    uptime: Callable[[], float]            # seconds since this boot (simulated)
    booted_at: dt.datetime                 # wall clock of this boot
    fallback_hostname: str


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


def _reason(exc: OSError) -> str:
    return str(exc.strerror or exc)


def device_bytes(path: str, count: int) -> bytes:
    return secrets.token_bytes(count) if ENDLESS[path] == "random" else bytes(count)


class GuestShell:
    def __init__(self, identity: GuestIdentity) -> None:
        self.identity = identity
        self.disk = identity.disk
        self.shell = Shell(read_file=self._read_text, write_file=self._write_text, stat_file=self._stat,
                           not_found="{shell}: {command}: not found")
        self.shell.commands.update({
            "hostname": self.hostname, "whoami": self.whoami, "id": self.id, "sudo": self.sudo,
            "bash": TEXT_TOOLS["sh"], "head": self.head, "dd": self.dd, "ls": self.ls, "rm": self.rm,
            "mkdir": self.mkdir, "touch": self.touch, "cp": self.cp, "mv": self.mv, "sync": self.sync,
            "uptime": self.uptime, "cloud-init": self.cloud_init,
        })

    def run(self, line: str, stdin: Callable[[], str], uid: int, hung_up: Callable[[], bool]) -> Output:
        files = self._files()
        user = user_by_uid(files, uid)
        home = user.home if user is not None and user.home in files.entries else "/"
        name = user.name if user is not None else str(uid)
        env = {"HOME": home, "USER": name, "LOGNAME": name, "SHELL": "/bin/sh",
               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
        return self.shell.run(line, stdin, uid, shell_name="sh", hung_up=hung_up, env=env, cwd=home)

    # --- the filesystem the shell sees ----------------------------------------------------------------
    def _files(self) -> GuestFiles:
        files = self.disk.files()
        if files is None:
            raise _error(errno.EIO, self.disk.volume)
        return files

    def _gids(self, files: GuestFiles, uid: int) -> set[int]:
        user = user_by_uid(files, uid)
        return groups_of(files, user) if user is not None else set()

    def hostname_text(self) -> str:
        with self.disk.lock:
            entry = self._files().entries.get("/etc/hostname")
            name = entry.data.decode(errors="replace").strip() if entry is not None else ""
        return name or self.identity.fallback_hostname

    def read_bytes(self, path: str, uid: int) -> bytes:
        if path == BOOT_ID_PATH:
            return (self.identity.boot_id + "\n").encode()
        if path == "/proc/uptime":
            up = self.identity.uptime()
            return f"{up:.2f} {up * 0.9:.2f}\n".encode()
        if path == "/proc/sys/kernel/hostname":
            return (self.hostname_text() + "\n").encode()
        if path in ENDLESS:
            raise OSError(errno.EFBIG, "endless device: read a bounded amount (head -c N, dd count=N)", path)
        if path.startswith(("/proc/", "/sys/", "/dev/")):
            raise _error(errno.ENOENT, path)
        with self.disk.lock:
            files = self._files()
            return files.read(path, uid, self._gids(files, uid))

    def write_bytes(self, path: str, data: bytes, append: bool, uid: int) -> None:
        if path.startswith(("/proc/", "/sys/", "/dev/")):
            raise _error(errno.EACCES, path)
        with self.disk.lock:
            files = self._files()
            files.write(path, data, append=append, uid=uid, gids=self._gids(files, uid),
                        mode=0o664 if uid != ROOT_UID else 0o644)
            self.disk.dirty = True

    def _read_text(self, path: str, uid: int) -> str:
        return to_text(self.read_bytes(path, uid))

    def _write_text(self, path: str, text: str, append: bool, uid: int) -> None:
        self.write_bytes(path, to_bytes(text), append, uid)

    def _stat(self, path: str, uid: int) -> tuple[str, int] | None:
        if path in (BOOT_ID_PATH, "/proc/uptime", "/proc/sys/kernel/hostname") or path in ENDLESS:
            return ("file", 0)
        with self.disk.lock:
            files = self._files()
            entry = files.stat(path, uid, self._gids(files, uid))
        if entry is None:
            return None
        return (entry.kind, len(entry.data))

    # --- identity -------------------------------------------------------------------------------------
    def hostname(self, call: Call) -> Output:
        return Output(0, self.hostname_text() + "\n")

    def whoami(self, call: Call) -> Output:
        user = user_by_uid(self._files(), call.uid)
        return Output(0, (user.name if user else str(call.uid)) + "\n")

    def id(self, call: Call) -> Output:
        files = self._files()
        user = user_by_uid(files, call.uid)
        if user is None:
            return Output(0, f"uid={call.uid} gid={call.uid} groups={call.uid}\n")
        options = "".join(a.lstrip("-") for a in call.argv[1:])
        if options in ("u",):
            return Output(0, f"{user.uid}\n")
        if options in ("un", "nu"):
            return Output(0, f"{user.name}\n")
        names = group_names(files)
        groups = ",".join(f"{g}({names.get(g, g)})" for g in sorted(groups_of(files, user)))
        return Output(0, f"uid={user.uid}({user.name}) gid={user.gid}({names.get(user.gid, user.gid)}) "
                         f"groups={groups}\n")

    def uptime(self, call: Call) -> Output:
        up = self.identity.uptime()
        args = call.argv[1:]
        if "-s" in args or "--since" in args:
            return Output(0, self.identity.booted_at.strftime("%Y-%m-%d %H:%M:%S") + "\n")
        minutes = int(up // 60)
        if "-p" in args or "--pretty" in args:
            hours, mins = divmod(minutes, 60)
            parts = ([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []) + \
                [f"{mins} minute{'s' if mins != 1 else ''}"]
            return Output(0, "up " + ", ".join(parts) + "\n")
        now = dt.datetime.now().strftime("%H:%M:%S")
        span = f"{minutes // 60}:{minutes % 60:02d}" if minutes >= 60 else f"{minutes} min"
        return Output(0, f" {now} up {span},  1 user,  load average: 0.00, 0.00, 0.00\n")

    def cloud_init(self, call: Call) -> Output:
        args = call.argv[1:]
        if args[:1] != ["status"]:
            return Output(1, "", "cloud-init: the simulated guest answers `cloud-init status [--wait]` only\n")
        if "--long" in args:
            return Output(0, "status: done\nextended_status: done\nboot_status_code: enabled-by-generator\n"
                             "detail:\nDataSourceNoCloud [seed=/dev/vdb][dsmode=net]\nerrors: []\n")
        return Output(0, "status: done\n")

    def sudo(self, call: Call) -> Output:
        parsed = parse_sudo(call.argv[1:])
        if isinstance(parsed, Output):
            return parsed
        args, read_password, non_interactive = parsed.command, parsed.read_password, parsed.non_interactive
        stdin = call.stdin
        if call.uid != ROOT_UID:
            files = self._files()
            user = user_by_uid(files, call.uid)
            rules = sudo_rules(files, user) if user is not None else []
            if not rules:
                name = user.name if user is not None else str(call.uid)
                return Output(1, "", f"{name} is not in the sudoers file.  This incident will be reported.\n")
            if not any("NOPASSWD" in rule for rule in rules):
                assert user is not None
                if read_password:
                    given, _, rest = call.stdin().partition("\n")
                    if not password_matches(shadow_entry(files, user.name), given):
                        return Output(1, "", "Sorry, try again.\nsudo: 1 incorrect password attempt\n")
                    stdin = (lambda text: lambda: text)(rest)
                elif non_interactive:
                    return Output(1, "", "sudo: a password is required\n")
                else:
                    return Output(1, "", "sudo: a terminal is required to read the password; either use the -S "
                                         "option to read from standard input or configure an askpass helper\n"
                                         "sudo: a password is required\n")
        if not call.shell.knows(args[0]):
            return Output(1, "", f"sudo: {args[0]}: command not found\n")
        return call.shell.execute(args, stdin, ROOT_UID, call.shell_name, call.hung_up, env=call.env, cwd=call.cwd)

    # --- files ----------------------------------------------------------------------------------------
    def head(self, call: Call) -> Output:
        operands = [a for a in call.argv[1:] if a in ENDLESS]
        if not operands:
            return TEXT_TOOLS["head"](call)
        args = [a for a in call.argv[1:] if a not in ENDLESS]
        count = None
        for index, arg in enumerate(args):
            if arg == "-c" and index + 1 < len(args):
                count = args[index + 1]
            elif arg.startswith("-c") and len(arg) > 2:
                count = arg[2:]
            elif arg.startswith("--bytes="):
                count = arg.split("=", 1)[1]
        if count is None:
            return Output(1, "", f"head: {operands[0]}: an endless device: give a byte count (head -c N)\n")
        size = _size(count)
        if size is None or size > DD_LIMIT:
            return Output(1, "", f"head: invalid number of bytes: '{count}'\n")
        return Output(0, to_text(device_bytes(operands[0], size)))

    def dd(self, call: Call) -> Output:
        options = {}
        for arg in call.argv[1:]:
            key, eq, value = arg.partition("=")
            if not eq:
                return Output(1, "", f"dd: unrecognized operand '{arg}'\n")
            options[key] = value
        block = _size(options.get("bs", "512"))
        count = _size(options["count"]) if "count" in options else None
        if block is None or block <= 0 or ("count" in options and count is None):
            return Output(1, "", "dd: invalid number\n")
        source = options.get("if", "")
        try:
            if source in ENDLESS:
                if count is None:
                    return Output(1, "", f"dd: {source}: an endless device: give count=N\n")
                if block * count > DD_LIMIT:
                    return Output(1, "", "dd: memory exhausted by the simulated guest's limit\n")
                data = device_bytes(source, block * count)
            elif source:
                data = self.read_bytes(call.path(source), call.uid)
            else:
                data = to_bytes(call.stdin())
        except OSError as exc:
            return Output(1, "", f"dd: failed to open '{source}': {_reason(exc)}\n")
        if count is not None:
            data = data[:block * count]
        target = options.get("of", "")
        out = ""
        if target:
            try:
                self.write_bytes(call.path(target), data, "append" in options.get("oflag", ""), call.uid)
            except OSError as exc:
                return Output(1, "", f"dd: failed to open '{target}': {_reason(exc)}\n")
        else:
            out = to_text(data)
        records = -(-len(data) // block)
        full = len(data) // block
        partial = records - full
        report = "" if options.get("status") == "none" else (
            f"{records if source in ENDLESS else full}+{0 if source in ENDLESS else partial} records in\n"
            f"{full}+{partial} records out\n{len(data)} bytes copied, 0.01 s, {len(data) / 0.01 / 1e6:.0f} MB/s\n")
        return Output(0, out, report)

    def ls(self, call: Call) -> Output:
        flags = "".join(a[1:] for a in call.argv[1:] if a.startswith("-") and a != "-")
        operands = [a for a in call.argv[1:] if not a.startswith("-") or a == "-"] or ["."]
        out, errors = [], []
        with self.disk.lock:
            files = self._files()
            gids = self._gids(files, call.uid)
            names = {u.uid: u.name for u in users(files).values()}
            groups = group_names(files)
            for operand in operands:
                path = call.path(operand)
                entry = files.stat(path, call.uid, gids)
                if entry is None:
                    errors.append(f"ls: cannot access '{operand}': No such file or directory\n")
                    continue
                if entry.kind == "dir" and "d" not in flags:
                    try:
                        children = files.children(path, call.uid, gids)
                    except OSError as exc:
                        errors.append(f"ls: cannot open directory '{operand}': {_reason(exc)}\n")
                        continue
                    if "a" in flags:
                        children = [".", ".."] + children
                    else:
                        children = [c for c in children if not c.startswith(".")]
                    if len(operands) > 1:
                        out.append(f"{operand}:\n")
                    for child in children:
                        target = path if child == "." else parent_of(path) if child == ".." else \
                            normalise(f"{path}/{child}")
                        out.append(self._ls_line(files.entries.get(target), child, flags, names, groups))
                else:
                    out.append(self._ls_line(entry, operand, flags, names, groups))
        return Output(2 if errors and not out else (1 if errors else 0), "".join(out), "".join(errors))

    @staticmethod
    def _ls_line(entry: Entry | None, name: str, flags: str, names: dict[int, str], groups: dict[int, str]) -> str:
        if "l" not in flags or entry is None:
            return name + "\n"
        kind = "d" if entry.kind == "dir" else "-"
        bits = "".join(c if entry.mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
        if entry.mode & 0o1000:
            bits = bits[:-1] + ("t" if entry.mode & 1 else "T")
        size = len(entry.data) if entry.kind == "file" else 4096
        when = dt.datetime.fromtimestamp(entry.mtime).strftime("%b %e %H:%M")
        return (f"{kind}{bits} 1 {names.get(entry.uid, entry.uid)} {groups.get(entry.gid, entry.gid)} "
                f"{size} {when} {name}\n")

    def rm(self, call: Call) -> Output:
        flags = "".join(a[1:] for a in call.argv[1:] if a.startswith("-") and a not in ("-", "--"))
        operands = [a for a in call.argv[1:] if not a.startswith("-") or a == "-"]
        force, recursive = "f" in flags, bool(set(flags) & {"r", "R"})
        if not operands:
            return Output(0) if force else Output(1, "", "rm: missing operand\n")
        errors = []
        with self.disk.lock:
            files = self._files()
            gids = self._gids(files, call.uid)
            for operand in operands:
                try:
                    files.remove(call.path(operand), uid=call.uid, gids=gids, recursive=recursive)
                    self.disk.dirty = True
                except OSError as exc:
                    if force and exc.errno == errno.ENOENT:
                        continue
                    errors.append(f"rm: cannot remove '{operand}': {_reason(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def mkdir(self, call: Call) -> Output:
        parents = any(a in ("-p", "--parents") for a in call.argv[1:])
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        if not operands:
            return Output(1, "", "mkdir: missing operand\n")
        errors = []
        with self.disk.lock:
            files = self._files()
            gids = self._gids(files, call.uid)
            user = user_by_uid(files, call.uid)
            for operand in operands:
                try:
                    files.mkdir(call.path(operand), uid=call.uid, gids=gids,
                                gid=user.gid if user is not None else call.uid, mode=0o775 if call.uid else 0o755,
                                parents=parents)
                    self.disk.dirty = True
                except OSError as exc:
                    errors.append(f"mkdir: cannot create directory '{operand}': {_reason(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def touch(self, call: Call) -> Output:
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        errors = []
        for operand in operands:
            try:
                self.write_bytes(call.path(operand), b"", True, call.uid)
            except OSError as exc:
                errors.append(f"touch: cannot touch '{operand}': {_reason(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def cp(self, call: Call) -> Output:
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        if len(operands) != 2:
            return Output(1, "", "cp: the simulated guest copies one file: cp SOURCE DEST\n")
        source, target = call.path(operands[0]), call.path(operands[1])
        try:
            data = self.read_bytes(source, call.uid)
        except OSError as exc:
            return Output(1, "", f"cp: cannot stat '{operands[0]}': {_reason(exc)}\n")
        if self._stat(target, call.uid) == ("dir", 0):
            target = normalise(f"{target}/{source.rsplit('/', 1)[-1]}")
        try:
            self.write_bytes(target, data, False, call.uid)
        except OSError as exc:
            return Output(1, "", f"cp: cannot create regular file '{operands[1]}': {_reason(exc)}\n")
        return Output(0)

    def mv(self, call: Call) -> Output:
        copied = self.cp(call)
        if copied.status != 0:
            return Output(copied.status, "", copied.stderr.replace("cp:", "mv:"))
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        with self.disk.lock:
            files = self._files()
            try:
                files.remove(call.path(operands[0]), uid=call.uid, gids=self._gids(files, call.uid))
                self.disk.dirty = True
            except OSError as exc:
                return Output(1, "", f"mv: cannot remove '{operands[0]}': {_reason(exc)}\n")
        return Output(0)

    def sync(self, call: Call) -> Output:
        try:
            self.disk.commit()
        except OSError as exc:
            return Output(1, "", f"sync: error syncing: {_reason(exc)}\n")
        return Output(0)


def _size(text: str) -> int | None:
    units = {"": 1, "c": 1, "w": 2, "b": 512, "K": 1024, "k": 1024, "KB": 1000, "M": 1 << 20, "MB": 10**6,
             "G": 1 << 30, "GB": 10**9, "KiB": 1024, "MiB": 1 << 20, "GiB": 1 << 30}
    number = text.rstrip("".join(sorted({c for u in units for c in u})))
    unit = text[len(number):]
    if not number.isdigit() or unit not in units:
        return None
    return int(number) * units[unit]
