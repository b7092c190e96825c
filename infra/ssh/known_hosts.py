"""Host keys: one known_hosts file per run (never the user's ~/.ssh), strict about changes.

A key is trusted because provisioning told the harness what it is (pinned), or because it was
recorded the first time the harness saw the host in this run (trust on first use; can be turned
off). A host presenting any other key is refused with `HostKeyChanged`, naming both fingerprints.
The file uses OpenSSH's format, so `ssh -o UserKnownHostsFile=<it>` reads it too.
"""
from __future__ import annotations

import base64
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paramiko

log = logging.getLogger("harvester_e2e.ssh")

PINNED = "pinned from provisioning"
FIRST_USE = "recorded on first use"
_FILE_LOCKS: dict[Path, threading.RLock] = {}     # one per file: every KnownHosts on it shares it
_FILE_LOCKS_GUARD = threading.Lock()


def _lock_for(path: Path) -> threading.RLock:
    with _FILE_LOCKS_GUARD:
        return _FILE_LOCKS.setdefault(path.resolve(), threading.RLock())


def entry_name(host: str, port: int) -> str:
    """How OpenSSH (and paramiko) name a host in known_hosts: `host`, or `[host]:port` off port 22."""
    return host if port == 22 else f"[{host}]:{port}"


def public_key(text: str) -> paramiko.PKey:
    """A public key from its OpenSSH one-line form, `ssh-ed25519 AAAA... [comment]`."""
    parts = text.split()
    if len(parts) < 2:
        raise ValueError(f"not an OpenSSH public key line: {text[:40]!r}")
    return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))


def describe(key: paramiko.PKey) -> str:
    """`ssh-ed25519 SHA256:...`: the fingerprint as `ssh-keygen -l` and OpenSSH's own warnings print it."""
    return f"{key.get_name()} {key.fingerprint}"


@dataclass
class UnknownHostKey(Exception):
    """Trust on first use is off and nothing pinned or recorded a key for this host."""

    node: str
    host: str
    port: int
    offered: str
    known_hosts: Path

    def __str__(self) -> str:
        return (f"refusing {self.node} at {entry_name(self.host, self.port)}: its host key ({self.offered}) is not "
                f"in the run's known_hosts {self.known_hosts}, and trust on first use is off; pin the key from "
                f"provisioning or add it to that file")


@dataclass
class HostKeyChanged(Exception):
    """The host offered a different key than the one pinned or recorded for it in this run."""

    node: str
    host: str
    port: int
    expected: str          # "ssh-ed25519 SHA256:..."
    offered: str
    source: str            # PINNED or FIRST_USE (or where the entry came from)
    known_hosts: Path
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.evidence = {"host": entry_name(self.host, self.port), "expected key": self.expected,
                         "offered key": self.offered, "trusted because": self.source,
                         "known_hosts": str(self.known_hosts)}

    def __str__(self) -> str:
        name = entry_name(self.host, self.port)
        return (f"host key of {self.node} at {name} has CHANGED: expected {self.expected} ({self.source}), "
                f"the server offered {self.offered}. The connection is refused: the node may have been "
                f"reinstalled, or something is intercepting it. If the change is expected, delete the line "
                f"for {name} from {self.known_hosts}.")


class KnownHosts:
    """The run's known_hosts file. Thread-safe; every check re-reads the file, so an edit takes effect."""

    def __init__(self, path: Path, *, trust_on_first_use: bool = True) -> None:
        self.path = Path(path)
        self.trust_on_first_use = trust_on_first_use
        self._lock = _lock_for(self.path)
        self._sources: dict[str, str] = {}

    # --- reading and writing the file ---------------------------------------------------------------
    def _load(self) -> paramiko.HostKeys:
        keys = paramiko.HostKeys()
        if self.path.is_file():
            keys.load(str(self.path))
        return keys

    def _save(self, keys: paramiko.HostKeys) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lines = [entry.to_line() for entry in keys._entries]  # noqa: SLF001 - HostKeys keeps entries in order here
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(line for line in lines if line))
        tmp.replace(self.path)

    def _put(self, name: str, key: paramiko.PKey, source: str) -> None:
        keys = self._load()
        entries = keys._entries  # noqa: SLF001
        entries[:] = [e for e in entries if name not in e.hostnames]
        keys.add(name, key.get_name(), key)
        self._save(keys)
        self._sources[name] = source

    # --- the policy ---------------------------------------------------------------------------------
    def known_key(self, host: str, port: int) -> paramiko.PKey | None:
        with self._lock:
            found = self._load().lookup(entry_name(host, port))
        if not found:
            return None
        return next(iter(found.values()))

    def pin(self, host: str, port: int, key: paramiko.PKey | str) -> None:
        """Trust exactly this key for host:port (provisioning knows it), replacing what was recorded."""
        key = public_key(key) if isinstance(key, str) else key
        name = entry_name(host, port)
        with self._lock:
            old = self.known_key(host, port)
            if old is not None and old != key:
                log.info("known_hosts: provisioning replaces the key of %s (%s -> %s)", name, describe(old),
                         describe(key))
            self._put(name, key, PINNED)

    def verify(self, node: str, host: str, port: int, offered: paramiko.PKey) -> str:
        """How the offered key is trusted (PINNED, FIRST_USE...), or raise HostKeyChanged / UnknownHostKey."""
        name = entry_name(host, port)
        with self._lock:
            expected = self.known_key(host, port)
            if expected is None:
                if not self.trust_on_first_use:
                    raise UnknownHostKey(node, host, port, describe(offered), self.path)
                self._put(name, offered, FIRST_USE)
                log.info("known_hosts: recorded %s for %s (%s) on first use in %s", describe(offered), node, name,
                         self.path)
                return FIRST_USE
            source = self._sources.get(name, f"recorded in {self.path}")
            if expected != offered:
                raise HostKeyChanged(node, host, port, describe(expected), describe(offered), source, self.path)
            return source

    def policy(self, node: str, host: str, port: int) -> paramiko.MissingHostKeyPolicy:
        """A paramiko policy that sends every connection's key through `verify`."""
        return _Verify(self, node, host, port)


class _Verify(paramiko.MissingHostKeyPolicy):
    """The SSH client keeps no keys of its own, so paramiko calls this policy on every connection."""

    def __init__(self, known_hosts: KnownHosts, node: str, host: str, port: int) -> None:
        self.known_hosts, self.node, self.host, self.port = known_hosts, node, host, port

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        self.known_hosts.verify(self.node, self.host, self.port, key)
