"""The few files a simulated node has, shared by `cat` and SFTP. Everything else does not exist.

`/etc/rancher/rke2/rke2.yaml` is root's only (RKE2 writes it 0600), so a plain `cat` of it is refused
and `sudo cat` works, as on a Harvester node.
"""
from __future__ import annotations

import posixpath
import stat
from dataclasses import dataclass
from typing import Callable

from .system import NodeSystem

RKE2_KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
ROOT_UID, RANCHER_UID = 0, 1000


@dataclass(frozen=True)
class NodeFile:
    path: str
    content: Callable[[NodeSystem], str]
    mode: int = 0o644
    owner: int = ROOT_UID

    def readable_by(self, uid: int) -> bool:
        return uid == ROOT_UID or uid == self.owner or bool(self.mode & 0o004)


class FileError(OSError):
    """Carries the message `cat`/SFTP report: "No such file or directory", "Permission denied"..."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


class NodeFiles:
    def __init__(self, kubeconfig_text: str) -> None:
        files = [
            NodeFile("/etc/os-release", lambda node: node.os_release),
            NodeFile("/etc/hostname", lambda node: node.name + "\n"),
            NodeFile("/proc/sys/kernel/random/boot_id", lambda node: node.boot_id + "\n", mode=0o444),
            NodeFile(RKE2_KUBECONFIG, lambda node: kubeconfig_text, mode=0o600),
        ]
        self._files = {f.path: f for f in files}
        self._dirs = {"/"}
        for path in self._files:
            parent = posixpath.dirname(path)
            while parent not in self._dirs:
                self._dirs.add(parent)
                parent = posixpath.dirname(parent)

    @staticmethod
    def normalize(path: str) -> str:
        return posixpath.normpath(posixpath.join("/home/rancher", path))

    def is_dir(self, path: str) -> bool:
        return self.normalize(path) in self._dirs

    def lookup(self, path: str) -> NodeFile:
        path = self.normalize(path)
        if path in self._dirs:
            raise FileError(path, "Is a directory")
        found = self._files.get(path)
        if found is None:
            raise FileError(path, "No such file or directory")
        return found

    def read(self, node: NodeSystem, path: str, uid: int) -> str:
        found = self.lookup(path)
        if not found.readable_by(uid):
            raise FileError(found.path, "Permission denied")
        return found.content(node)

    def listing(self, path: str) -> list[str]:
        path = self.normalize(path)
        if path not in self._dirs:
            raise FileError(path, "No such file or directory")
        children = {p for p in (*self._files, *self._dirs) if p != path and posixpath.dirname(p) == path}
        return sorted(posixpath.basename(p) for p in children)

    def mode(self, path: str) -> int:
        path = self.normalize(path)
        if path in self._dirs:
            return stat.S_IFDIR | 0o755
        return stat.S_IFREG | self.lookup(path).mode
