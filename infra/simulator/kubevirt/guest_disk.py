"""A VM guest's root filesystem, kept as bytes on its root disk (a Longhorn volume's byte store).

The filesystem is a tar archive (POSIX pax) written at the start of the block volume: every file and
directory with its owner, group, mode and mtime. Copying a volume's bytes copies the guest's files; a disk
that holds no archive is blank (no OS: the VM boots nothing). The guest reads the archive into `GuestFiles`
once and writes it back after every change (`GuestDisk.commit`), so what a command wrote is on the volume
when the command returns, survives a restart and travels with a migration. Writing more than the volume's
size fails with ENOSPC, as a full disk does.

Permissions follow the usual rules, simplified: root may do anything; others need the read/write bit
for them on the file, the write bit on the directory to create or remove an entry, and the search bit on
every directory on the way (no ACLs, no sticky-bit subtleties beyond /tmp being writable by all).
"""
from __future__ import annotations

import errno
import io
import os
import tarfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from ..shell import normalise

ROOT_UID = 0


def _error(code: int, path: str) -> OSError:
    return OSError(code, os.strerror(code), path)


@dataclass
class Entry:
    kind: str                       # "file" or "dir"
    uid: int = ROOT_UID
    gid: int = ROOT_UID
    mode: int = 0o644
    data: bytes = b""
    mtime: float = field(default_factory=time.time)


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


class GuestFiles:
    """Absolute path -> Entry; "/" always exists."""

    def __init__(self, entries: dict[str, Entry] | None = None) -> None:
        self.entries: dict[str, Entry] = entries if entries is not None else {}
        self.entries.setdefault("/", Entry("dir", mode=0o755))

    # --- (de)serialisation ------------------------------------------------------------------------
    @classmethod
    def load(cls, data: bytes) -> "GuestFiles | None":
        """The filesystem the bytes hold, or None for a blank (or unreadable) disk."""
        if not data.strip(b"\0"):
            return None
        try:
            archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        except tarfile.TarError:
            return None
        entries: dict[str, Entry] = {}
        with archive:
            for member in archive:
                path = normalise(member.name)
                if member.isdir():
                    entries[path] = Entry("dir", member.uid, member.gid, member.mode, b"", member.mtime)
                elif member.isfile():
                    handle = archive.extractfile(member)
                    content = handle.read() if handle is not None else b""
                    entries[path] = Entry("file", member.uid, member.gid, member.mode, content, member.mtime)
        return cls(entries)

    def dump(self) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:", format=tarfile.PAX_FORMAT) as archive:
            for path in sorted(self.entries):
                entry = self.entries[path]
                info = tarfile.TarInfo("." if path == "/" else path.lstrip("/"))
                info.uid, info.gid, info.mode, info.mtime = entry.uid, entry.gid, entry.mode, int(entry.mtime)
                if entry.kind == "dir":
                    info.type = tarfile.DIRTYPE
                    archive.addfile(info)
                else:
                    info.size = len(entry.data)
                    archive.addfile(info, io.BytesIO(entry.data))
        return buffer.getvalue()

    # --- permissions --------------------------------------------------------------------------------
    @staticmethod
    def _allowed(entry: Entry, uid: int, gids: set[int], bit: int) -> bool:
        """bit: 4 read, 2 write, 1 search/execute."""
        if uid == ROOT_UID:
            return True
        if entry.uid == uid:
            return bool(entry.mode & (bit << 6))
        if entry.gid in gids:
            return bool(entry.mode & (bit << 3))
        return bool(entry.mode & bit)

    def _walk(self, path: str, uid: int, gids: set[int]) -> None:
        """Every directory above `path` exists and may be searched."""
        current = ""
        for part in path.strip("/").split("/")[:-1]:
            current += "/" + part
            entry = self.entries.get(current)
            if entry is None:
                raise _error(errno.ENOENT, path)
            if entry.kind != "dir":
                raise _error(errno.ENOTDIR, path)
            if not self._allowed(entry, uid, gids, 1):
                raise _error(errno.EACCES, path)
        if path != "/" and not self._allowed(self.entries["/"], uid, gids, 1):
            raise _error(errno.EACCES, path)

    # --- reads --------------------------------------------------------------------------------------
    def stat(self, path: str, uid: int = ROOT_UID, gids: set[int] | None = None) -> Entry | None:
        try:
            self._walk(path, uid, gids or set())
        except OSError:
            return None
        return self.entries.get(path)

    def read(self, path: str, uid: int = ROOT_UID, gids: set[int] | None = None) -> bytes:
        gids = gids or set()
        self._walk(path, uid, gids)
        entry = self.entries.get(path)
        if entry is None:
            raise _error(errno.ENOENT, path)
        if entry.kind == "dir":
            raise _error(errno.EISDIR, path)
        if not self._allowed(entry, uid, gids, 4):
            raise _error(errno.EACCES, path)
        return entry.data

    def children(self, path: str, uid: int = ROOT_UID, gids: set[int] | None = None) -> list[str]:
        gids = gids or set()
        self._walk(path, uid, gids)
        entry = self.entries.get(path)
        if entry is None:
            raise _error(errno.ENOENT, path)
        if entry.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        if not self._allowed(entry, uid, gids, 4):
            raise _error(errno.EACCES, path)
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix):] for p in self.entries if p.startswith(prefix) and p != prefix
                      and "/" not in p[len(prefix):])

    # --- writes -------------------------------------------------------------------------------------
    def _creatable(self, path: str, uid: int, gids: set[int]) -> None:
        self._walk(path, uid, gids)
        parent = self.entries.get(parent_of(path))
        if parent is None:
            raise _error(errno.ENOENT, path)
        if parent.kind != "dir":
            raise _error(errno.ENOTDIR, path)
        if not self._allowed(parent, uid, gids, 2):
            raise _error(errno.EACCES, path)

    def write(self, path: str, data: bytes, *, append: bool = False, uid: int = ROOT_UID,
              gids: set[int] | None = None, gid: int | None = None, mode: int = 0o644) -> None:
        gids = gids or set()
        if path == "/":
            raise _error(errno.EISDIR, path)
        entry = self.entries.get(path)
        if entry is None:
            self._creatable(path, uid, gids)
            self.entries[path] = Entry("file", uid, gid if gid is not None else uid, mode, bytes(data))
            return
        self._walk(path, uid, gids)
        if entry.kind == "dir":
            raise _error(errno.EISDIR, path)
        if not self._allowed(entry, uid, gids, 2):
            raise _error(errno.EACCES, path)
        entry.data = entry.data + bytes(data) if append else bytes(data)
        entry.mtime = time.time()

    def mkdir(self, path: str, *, uid: int = ROOT_UID, gids: set[int] | None = None, gid: int | None = None,
              mode: int = 0o755, parents: bool = False) -> None:
        gids = gids or set()
        if path in self.entries:
            if parents and self.entries[path].kind == "dir":
                return
            raise _error(errno.EEXIST, path)
        if parents and parent_of(path) not in self.entries:
            self.mkdir(parent_of(path), uid=uid, gids=gids, gid=gid, mode=mode, parents=True)
        self._creatable(path, uid, gids)
        self.entries[path] = Entry("dir", uid, gid if gid is not None else uid, mode)

    def remove(self, path: str, *, uid: int = ROOT_UID, gids: set[int] | None = None,
               recursive: bool = False) -> None:
        gids = gids or set()
        if path == "/":
            raise _error(errno.EBUSY, path)
        self._walk(path, uid, gids)
        entry = self.entries.get(path)
        if entry is None:
            raise _error(errno.ENOENT, path)
        parent = self.entries[parent_of(path)]
        if not self._allowed(parent, uid, gids, 2):
            raise _error(errno.EACCES, path)
        if entry.kind == "dir":
            if not recursive:
                raise _error(errno.EISDIR, path)
            for inner in [p for p in self.entries if p.startswith(path + "/")]:
                del self.entries[inner]
        del self.entries[path]

    def chown(self, path: str, uid: int, gid: int, mode: int | None = None) -> None:
        """As root (cloud-init's own writes)."""
        entry = self.entries[path]
        entry.uid, entry.gid = uid, gid
        if mode is not None:
            entry.mode = mode

    def paths(self) -> Iterator[str]:
        return iter(sorted(self.entries))


class GuestDisk:
    """One root disk as its running guest sees it: the decoded filesystem, reloaded when the volume's bytes
    were replaced under it, written back by `commit` (ENOSPC beyond the volume's size)."""

    def __init__(self, volume: str, capacity: int, read: Callable[[str], tuple[int, bytes]],
                 write: Callable[[str, bytes], int]) -> None:
        self.volume = volume
        self.capacity = capacity
        self._read, self._write = read, write
        self.lock = threading.RLock()
        self._files: GuestFiles | None = None
        self._generation = -1
        self.dirty = False

    def files(self) -> GuestFiles | None:
        """The filesystem as the volume holds it now (None: a blank disk)."""
        with self.lock:
            generation, data = self._read(self.volume)
            if generation != self._generation:
                self._files = GuestFiles.load(data)
                self._generation = generation
                self.dirty = False
            return self._files

    def commit(self) -> None:
        """Write the filesystem back to the volume (nothing to do unless something changed)."""
        with self.lock:
            if not self.dirty or self._files is None:
                return
            data = self._files.dump()
            if self.capacity and len(data) > self.capacity:
                self._generation = -1                 # forget the change that did not fit: reread the volume
                self.dirty = False
                raise _error(errno.ENOSPC, self.volume)
            self._generation = self._write(self.volume, data)
            self.dirty = False
