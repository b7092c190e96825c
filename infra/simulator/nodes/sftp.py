"""Read-only SFTP over a node's files, as the logged-in user (`rancher`) may read them."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import paramiko
from paramiko.sftp import SFTP_NO_SUCH_FILE, SFTP_OP_UNSUPPORTED, SFTP_PERMISSION_DENIED

from .files import RANCHER_UID, FileError, NodeFiles
from .system import NodeSystem

_ERRORS = {"No such file or directory": SFTP_NO_SUCH_FILE, "Permission denied": SFTP_PERMISSION_DENIED}


@dataclass(frozen=True)
class SftpView:
    node: NodeSystem
    files: NodeFiles
    uid: int = RANCHER_UID


def _attributes(view: SftpView, path: str, size: int) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.st_size = size
    attrs.st_mode = view.files.mode(path)
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_atime = attrs.st_mtime = int(view.node.booted_at.timestamp())
    attrs.filename = path.rsplit("/", 1)[-1] or "/"
    return attrs


class _Handle(paramiko.SFTPHandle):
    def __init__(self, data: bytes, attrs: paramiko.SFTPAttributes) -> None:
        super().__init__(0)
        self.data, self.attrs = data, attrs

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]

    def write(self, offset: int, data: bytes) -> int:
        return SFTP_PERMISSION_DENIED

    def stat(self) -> paramiko.SFTPAttributes:
        return self.attrs


class NodeSftp(paramiko.SFTPServerInterface):
    def __init__(self, server: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(server, *args, **kwargs)
        self.view: SftpView = server.sshd.sftp_view

    def _stat(self, path: str) -> paramiko.SFTPAttributes | int:
        files = self.view.files
        try:
            if files.is_dir(path):
                return _attributes(self.view, files.normalize(path), 4096)
            files.lookup(path)
            size = len(files.read(self.view.node, path, 0).encode())     # stat needs no read permission
            return _attributes(self.view, files.normalize(path), size)
        except FileError as exc:
            return _ERRORS.get(exc.reason, SFTP_NO_SUCH_FILE)

    def stat(self, path: str) -> paramiko.SFTPAttributes | int:
        return self._stat(path)

    def lstat(self, path: str) -> paramiko.SFTPAttributes | int:
        return self._stat(path)

    def canonicalize(self, path: str) -> str:
        return self.view.files.normalize(path)

    def list_folder(self, path: str) -> list[paramiko.SFTPAttributes] | int:
        try:
            names = self.view.files.listing(path)
        except FileError:
            return SFTP_NO_SUCH_FILE
        base = self.view.files.normalize(path).rstrip("/")
        found = [self._stat(f"{base}/{name}") for name in names]
        return [a for a in found if isinstance(a, paramiko.SFTPAttributes)]

    def open(self, path: str, flags: int, attr: Any) -> paramiko.SFTPHandle | int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            return SFTP_PERMISSION_DENIED
        try:
            data = self.view.files.read(self.view.node, path, self.view.uid).encode()
        except FileError as exc:
            return _ERRORS.get(exc.reason, SFTP_OP_UNSUPPORTED if exc.reason == "Is a directory" else SFTP_NO_SUCH_FILE)
        attrs = _attributes(self.view, self.view.files.normalize(path), len(data))
        attrs.st_atime = int(time.time())
        return _Handle(data, attrs)

    def remove(self, path: str) -> int:
        return SFTP_PERMISSION_DENIED

    def rename(self, oldpath: str, newpath: str) -> int:
        return SFTP_PERMISSION_DENIED

    def mkdir(self, path: str, attr: Any) -> int:
        return SFTP_PERMISSION_DENIED

    def rmdir(self, path: str) -> int:
        return SFTP_PERMISSION_DENIED
