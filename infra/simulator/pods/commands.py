"""The commands of a pod's image (busybox-like) that touch its filesystem, on top of the shared shell's tools.

`ls`, `mkdir [-p]`, `rm [-rf]`, `rmdir`, `touch`, `cp`, `mv`, `sync`, `dd`, `tar` (c/x/t with f, C, z, v:
what `kubectl cp` runs), `hostname`, `id`, `whoami`, `pwd`, `uname`. Messages follow busybox's wording.
"""
from __future__ import annotations

import io
import os
import tarfile
import time

from ..shell import Call, Command, Output, Shell, normalise, to_bytes, to_text
from .filesystem import PodFilesystem

_SIZES = {"c": 1, "w": 2, "b": 512, "kB": 1000, "K": 1024, "k": 1024, "MB": 1000 ** 2, "M": 1024 ** 2,
          "GB": 1000 ** 3, "G": 1024 ** 3}
DD_LIMIT_BYTES = 256 * 1024 * 1024     # the simulator keeps volumes in memory: a bigger dd is refused, not swapped


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def pod_shell(fs: PodFilesystem, hostname: str, env: dict[str, str]) -> Shell:
    shell = Shell(read_file=lambda path, uid: to_text(fs.read(path)),
                  write_file=lambda path, text, append, uid: fs.write(path, to_bytes(text), append),
                  stat_file=lambda path, uid: fs.stat(path),
                  not_found="{shell}: {command}: not found", env=dict(env))
    shell.commands.update(PodCommands(fs, hostname).table())
    return shell


class PodCommands:
    def __init__(self, fs: PodFilesystem, hostname: str) -> None:
        self.fs = fs
        self.hostname = hostname

    def table(self) -> dict[str, Command]:
        return {"ls": self.ls, "mkdir": self.mkdir, "rm": self.rm, "rmdir": self.rmdir, "touch": self.touch,
                "cp": self.cp, "mv": self.mv, "sync": lambda call: Output(0), "dd": self.dd, "tar": self.tar,
                "hostname": lambda call: Output(0, self.hostname + "\n"),
                "id": lambda call: Output(0, "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"),
                "whoami": lambda call: Output(0, "root\n"), "pwd": lambda call: Output(0, call.cwd + "\n"),
                "uname": self.uname}

    # --- files and directories -----------------------------------------------------------------------
    def ls(self, call: Call) -> Output:
        flags = "".join(a[1:] for a in call.argv[1:] if a.startswith("-") and len(a) > 1)
        operands = [a for a in call.argv[1:] if not a.startswith("-") or a == "-"] or ["."]
        out, errors = [], []
        for operand in operands:
            path = call.path(operand)
            try:
                found = self.fs.stat(path)
            except OSError as exc:
                errors.append(f"ls: {operand}: {_why(exc)}\n")
                continue
            if found is None:
                errors.append(f"ls: {operand}: No such file or directory\n")
                continue
            if found[0] == "file" or "d" in flags:
                names = [(operand, path)]
            else:
                try:
                    names = [(n, normalise(f"{path}/{n}")) for n in self.fs.listdir(path)
                             if "a" in flags or not n.startswith(".")]
                except OSError as exc:
                    errors.append(f"ls: {operand}: {_why(exc)}\n")
                    continue
                if len(operands) > 1:
                    out.append(f"{operand}:\n")
            for name, full in names:
                out.append(self._long(name, full) if "l" in flags else name + "\n")
        return Output(1 if errors else 0, "".join(out), "".join(errors))

    def _long(self, name: str, path: str) -> str:
        kind, size = self.fs.stat(path) or ("file", 0)
        mode = "drwxr-xr-x" if kind == "dir" else "-rw-r--r--"
        stamp = time.strftime("%b %e %H:%M", time.gmtime())
        return f"{mode}    1 root     root     {size:>9} {stamp} {name}\n"

    def mkdir(self, call: Call) -> Output:
        parents = any(a in ("-p", "--parents") for a in call.argv[1:])
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        if not operands:
            return Output(1, "", "BusyBox: mkdir: missing operand\n")
        errors = []
        for operand in operands:
            try:
                self.fs.mkdir(call.path(operand), parents)
            except OSError as exc:
                errors.append(f"mkdir: can't create directory '{operand}': {_why(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def rm(self, call: Call) -> Output:
        flags = "".join(a[1:] for a in call.argv[1:] if a.startswith("-") and len(a) > 1)
        recursive, force = bool(set(flags) & set("rR")), "f" in flags
        errors = []
        for operand in [a for a in call.argv[1:] if not a.startswith("-")]:
            path = call.path(operand)
            try:
                self.fs.remove(path, recursive)
            except OSError as exc:
                if force and exc.errno == 2:
                    continue
                errors.append(f"rm: can't remove '{operand}': {_why(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def rmdir(self, call: Call) -> Output:
        errors = []
        for operand in [a for a in call.argv[1:] if not a.startswith("-")]:
            path = call.path(operand)
            found = self.fs.stat(path)
            if found is None or found[0] != "dir":
                errors.append(f"rmdir: '{operand}': {'Not a directory' if found else 'No such file or directory'}\n")
            elif self.fs.listdir(path):
                errors.append(f"rmdir: '{operand}': Directory not empty\n")
            else:
                self.fs.remove(path, recursive=True)
        return Output(1 if errors else 0, "", "".join(errors))

    def touch(self, call: Call) -> Output:
        errors = []
        for operand in [a for a in call.argv[1:] if not a.startswith("-")]:
            path = call.path(operand)
            try:
                if self.fs.stat(path) is None:
                    self.fs.write(path, b"")
            except OSError as exc:
                errors.append(f"touch: {operand}: {_why(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def _copy(self, call: Call, move: bool) -> Output:
        recursive = any(a.startswith("-") and set(a[1:]) & set("rRa") for a in call.argv[1:])
        operands = [a for a in call.argv[1:] if not a.startswith("-")]
        if len(operands) < 2:
            return Output(1, "", f"BusyBox: {call.name}: missing file operand\n")
        *sources, target = operands
        target_path = call.path(target)
        into = (self.fs.stat(target_path) or ("", 0))[0] == "dir"
        errors = []
        for source in sources:
            src = call.path(source)
            dest = normalise(f"{target_path}/{src.rsplit('/', 1)[-1]}") if into else target_path
            try:
                self._copy_one(src, dest, recursive or move)
                if move:
                    self.fs.remove(src, recursive=True)
            except OSError as exc:
                errors.append(f"{call.name}: can't {'rename' if move else 'stat'} '{source}': {_why(exc)}\n")
        return Output(1 if errors else 0, "", "".join(errors))

    def _copy_one(self, src: str, dest: str, recursive: bool) -> None:
        found = self.fs.stat(src)
        if found is None:
            raise OSError(2, "No such file or directory", src)
        if found[0] == "file":
            self.fs.write(dest, self.fs.read(src))
            return
        if not recursive:
            raise OSError(21, "Is a directory", src)
        self.fs.mkdir(dest, parents=True)
        for name in self.fs.listdir(src):
            self._copy_one(f"{src}/{name}", f"{dest}/{name}", True)

    def cp(self, call: Call) -> Output:
        return self._copy(call, move=False)

    def mv(self, call: Call) -> Output:
        return self._copy(call, move=True)

    def uname(self, call: Call) -> Output:
        if "-a" in call.argv[1:]:
            return Output(0, f"Linux {self.hostname} 5.14.21-150500.55.65-default #1 SMP x86_64 GNU/Linux\n")
        return Output(0, "Linux\n")

    # --- dd -------------------------------------------------------------------------------------------
    def dd(self, call: Call) -> Output:
        options: dict[str, str] = {}
        for arg in call.argv[1:]:
            key, eq, value = arg.partition("=")
            if not eq or key not in ("if", "of", "bs", "count", "skip", "seek", "conv", "status", "iflag", "oflag"):
                return Output(1, "", f"dd: invalid argument '{arg}'\n")
            options[key] = value
        try:
            block = _size(options.get("bs", "512"))
            count = _size(options["count"]) if "count" in options else None
            skip = _size(options.get("skip", "0"))
        except ValueError as exc:
            return Output(1, "", f"dd: invalid number '{exc}'\n")
        source = options.get("if", "-")
        wanted = None if count is None else block * count
        if wanted is not None and wanted > DD_LIMIT_BYTES or wanted is None and source in ("/dev/urandom",
                                                                                        "/dev/zero"):
            return Output(1, "", f"dd: the simulated pod refuses more than {DD_LIMIT_BYTES} bytes\n")
        if source == "/dev/urandom":
            data = os.urandom(wanted or 0)
        elif source == "/dev/zero":
            data = bytes(wanted or 0)
        else:
            try:
                whole = to_bytes(call.stdin()) if source == "-" else self.fs.read(call.path(source))
            except OSError as exc:
                return Output(1, "", f"dd: can't open '{source}': {_why(exc)}\n")
            data = whole[skip * block:][:wanted] if wanted is not None else whole[skip * block:]
        stdout = ""
        target = options.get("of", "-")
        if target == "-":
            stdout = to_text(data)
        else:
            try:
                self.fs.write(call.path(target), data)
            except OSError as exc:
                return Output(1, "", f"dd: can't open '{target}': {_why(exc)}\n")
        full, partial = divmod(len(data), block)
        report = "" if options.get("status") == "none" else (
            f"{full}+{1 if partial else 0} records in\n{full}+{1 if partial else 0} records out\n"
            f"{len(data)} bytes ({_human(len(data))}) copied, 0.001000 seconds, {_human(len(data) * 1000)}/s\n")
        return Output(0, stdout, report)

    # --- tar ------------------------------------------------------------------------------------------
    def tar(self, call: Call) -> Output:
        args = call.argv[1:]
        mode, archive, directory, gzip, verbose, members = "", "", call.cwd, False, False, []
        if args and not args[0].startswith("-") and set(args[0]) <= set("cxtfvzmCpo"):
            args = ["-" + args[0], *args[1:]]           # old style: `tar cf - x` is `tar -cf - x`
        while args:
            arg = args.pop(0)
            if arg.startswith("--"):
                if arg.startswith("--directory="):
                    directory = call.path(arg.split("=", 1)[1])
                elif arg.startswith("--file="):
                    archive = arg.split("=", 1)[1]
                elif arg not in ("--no-same-permissions", "--no-same-owner", "--touch", "--overwrite"):
                    return Output(1, "", f"tar: unrecognized option '{arg}'\n")
                continue
            if arg.startswith("-") and len(arg) > 1:
                letters = arg[1:]
                for index, letter in enumerate(letters):
                    if letter in "cxt":
                        mode = letter
                    elif letter == "z":
                        gzip = True
                    elif letter == "v":
                        verbose = True
                    elif letter in "mpo":
                        continue
                    elif letter in "fC":
                        rest = letters[index + 1:]
                        value = rest if rest else (args.pop(0) if args else "")
                        if letter == "f":
                            archive = value
                        else:
                            directory = call.path(value)
                        break
                    else:
                        return Output(1, "", f"tar: invalid option -- '{letter}'\n")
                continue
            members.append(arg)
        if not mode:
            return Output(1, "", "tar: need to specify one of -c, -t, -x\n")
        if mode == "c":
            return self._tar_create(call, archive or "-", directory, members, gzip, verbose)
        return self._tar_read(call, archive or "-", directory, mode, gzip, verbose)

    def _tar_create(self, call: Call, archive: str, directory: str, members: list[str], gzip: bool,
                    verbose: bool) -> Output:
        if not members:
            return Output(1, "", "tar: empty archive\n")
        buffer = io.BytesIO()
        notes: list[str] = []
        listing: list[str] = []
        with tarfile.open(fileobj=buffer, mode="w:gz" if gzip else "w", format=tarfile.GNU_FORMAT) as out:
            for member in members:
                path = member if member.startswith("/") else normalise(f"{directory}/{member}")
                name = member.lstrip("/")
                if member.startswith("/") and "tar: removing leading '/' from member names\n" not in notes:
                    notes.append("tar: removing leading '/' from member names\n")
                try:
                    self._tar_add(out, path, normalise("/" + name).lstrip("/") or ".", listing)
                except OSError as exc:
                    notes.append(f"tar: {member}: {_why(exc)}\n")
        status = 1 if any(": " in n and "leading" not in n for n in notes) else 0
        data = buffer.getvalue()
        stderr = "".join(notes) + ("".join(n + "\n" for n in listing) if verbose and archive == "-" else "")
        stdout = "".join(n + "\n" for n in listing) if verbose and archive != "-" else ""
        if archive == "-":
            return Output(status, to_text(data), stderr)
        try:
            self.fs.write(call.path(archive), data)
        except OSError as exc:
            return Output(1, "", f"tar: can't open '{archive}': {_why(exc)}\n")
        return Output(status, stdout, stderr)

    def _tar_add(self, out: tarfile.TarFile, path: str, name: str, listing: list[str]) -> None:
        found = self.fs.stat(path)
        if found is None:
            raise OSError(2, "No such file or directory", path)
        info = tarfile.TarInfo(name)
        info.mtime = int(time.time())
        info.uname = info.gname = "root"
        if found[0] == "dir":
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            out.addfile(info)
            listing.append(name + "/")
            for child in self.fs.listdir(path):
                self._tar_add(out, f"{path.rstrip('/')}/{child}", f"{name}/{child}", listing)
            return
        data = self.fs.read(path)
        info.size, info.mode = len(data), 0o644
        out.addfile(info, io.BytesIO(data))
        listing.append(name)

    def _tar_read(self, call: Call, archive: str, directory: str, mode: str, gzip: bool,
                  verbose: bool) -> Output:
        try:
            data = to_bytes(call.stdin()) if archive == "-" else self.fs.read(call.path(archive))
        except OSError as exc:
            return Output(1, "", f"tar: can't open '{archive}': {_why(exc)}\n")
        listing, errors = [], []
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as source:
                for info in source:
                    listing.append(info.name)
                    if mode == "t":
                        continue
                    target = normalise(f"{directory}/{info.name}")
                    try:
                        if info.isdir():
                            self.fs.mkdir(target, parents=True)
                        elif info.isfile():
                            parent = target.rsplit("/", 1)[0] or "/"
                            self.fs.mkdir(parent, parents=True)
                            extracted = source.extractfile(info)
                            self.fs.write(target, extracted.read() if extracted else b"")
                    except OSError as exc:
                        errors.append(f"tar: can't create '{info.name}': {_why(exc)}\n")
        except (tarfile.TarError, EOFError, OSError):
            if not data:
                return Output(1, "", "tar: short read\n")
            return Output(1, "", "tar: invalid tar magic\n")
        shown = "".join(n + "\n" for n in listing) if mode == "t" or verbose else ""
        return Output(1 if errors else 0, shown, "".join(errors))


def _size(text: str) -> int:
    for suffix in sorted(_SIZES, key=len, reverse=True):
        if text.endswith(suffix) and text[:-len(suffix)].isdigit():
            return int(text[:-len(suffix)]) * _SIZES[suffix]
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.1f}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1024
    return f"{size}B"

