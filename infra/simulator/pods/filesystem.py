"""A pod's filesystem as its processes see it: an in-memory root, with volumes mounted over it.

A volume is a `FileTree` (files and directories by path inside the volume). What backs a mount is
asked for at every access (`Mount.tree`), so a volume whose storage went away (a CSI volume detached
from the node) answers EIO instead of bytes, as a block device gone from under a mount does.
"""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class FileTree:
    """Files by relative path ("a/b.txt"), and the directories that exist beside the implied ones."""

    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)

    def is_dir(self, rel: str) -> bool:
        if rel == "" or rel in self.dirs:
            return True
        prefix = rel + "/"
        return any(p.startswith(prefix) for p in self.files) or any(d.startswith(prefix) for d in self.dirs)

    def children(self, rel: str) -> list[str]:
        prefix = rel + "/" if rel else ""
        names = {p[len(prefix):].split("/", 1)[0] for p in (*self.files, *self.dirs) if p.startswith(prefix)}
        names.discard("")
        return sorted(names)


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass
class Mount:
    path: str                                  # "/data"
    tree: Callable[[], FileTree]               # raises OSError (EIO) while the storage is not there
    read_only: bool = False


class PodFilesystem:
    def __init__(self, root: FileTree, mounts: list[Mount]) -> None:
        self.root = root
        self.mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)

    def _resolve(self, path: str) -> tuple[FileTree, str, Mount | None]:
        for mount in self.mounts:
            base = mount.path.rstrip("/")
            if path == base or path.startswith(base + "/"):
                return mount.tree(), path[len(base) + 1:], mount
        return self.root, path.lstrip("/"), None

    def stat(self, path: str) -> tuple[str, int] | None:
        tree, rel, _ = self._resolve(path)
        if rel in tree.files:
            return ("file", len(tree.files[rel]))
        return ("dir", 4096) if tree.is_dir(rel) else None

    def read(self, path: str) -> bytes:
        tree, rel, _ = self._resolve(path)
        if rel in tree.files:
            return tree.files[rel]
        raise _error(errno.EISDIR if tree.is_dir(rel) else errno.ENOENT, path)

    def _writable(self, path: str) -> tuple[FileTree, str]:
        tree, rel, mount = self._resolve(path)
        if mount is not None and mount.read_only:
            raise _error(errno.EROFS, path)
        if rel == "" or tree.is_dir(rel) and rel not in tree.files:
            raise _error(errno.EISDIR, path)
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if parent in tree.files:
            raise _error(errno.ENOTDIR, path)
        if not tree.is_dir(parent):
            raise _error(errno.ENOENT, path)
        return tree, rel

    def write(self, path: str, data: bytes, append: bool = False) -> None:
        tree, rel = self._writable(path)
        tree.files[rel] = (tree.files.get(rel, b"") + data) if append else bytes(data)

    def mkdir(self, path: str, parents: bool = False) -> None:
        tree, rel, mount = self._resolve(path)
        if mount is not None and mount.read_only:
            raise _error(errno.EROFS, path)
        if rel in tree.files:
            raise _error(errno.EEXIST, path)
        if tree.is_dir(rel):
            if parents:
                return
            raise _error(errno.EEXIST, path)
        parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
        if not tree.is_dir(parent):
            if not parents:
                raise _error(errno.ENOENT, path)
            self.mkdir("/" + "/".join(p for p in path.split("/")[:-1] if p), parents=True)
        tree.dirs.add(rel)

    def remove(self, path: str, recursive: bool = False) -> None:
        tree, rel, mount = self._resolve(path)
        if mount is not None and mount.read_only:
            raise _error(errno.EROFS, path)
        if rel in tree.files:
            del tree.files[rel]
            return
        if not tree.is_dir(rel):
            raise _error(errno.ENOENT, path)
        if not recursive:
            raise _error(errno.EISDIR, path)
        if rel == "":
            raise _error(errno.EBUSY, path)
        prefix = rel + "/"
        for name in [p for p in tree.files if p.startswith(prefix)]:
            del tree.files[name]
        tree.dirs = {d for d in tree.dirs if d != rel and not d.startswith(prefix)}

    def listdir(self, path: str) -> list[str]:
        tree, rel, _ = self._resolve(path)
        if rel in tree.files:
            raise _error(errno.ENOTDIR, path)
        if not tree.is_dir(rel):
            raise _error(errno.ENOENT, path)
        names = set(tree.children(rel))
        base = path.rstrip("/")
        for mount in self.mounts:                   # a mount point shows in its parent directory
            parent, _, name = mount.path.rstrip("/").rpartition("/")
            if (parent or "/") == (base or "/") and name:
                names.add(name)
        return sorted(names)


def base_root(hostname: str, env: dict[str, str]) -> FileTree:
    """What a busybox-like image and the kubelet put in a container's root."""
    tree = FileTree()
    tree.dirs.update({"bin", "dev", "etc", "home", "proc", "root", "sys", "tmp", "usr", "var", "var/run"})
    tree.files["etc/hostname"] = (hostname + "\n").encode()
    tree.files["etc/hosts"] = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".encode()
    tree.files["etc/passwd"] = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
    tree.files["etc/os-release"] = b'NAME="BusyBox"\nID=busybox\n'
    return tree
