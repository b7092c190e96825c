"""`--state-dir`: what a real cluster keeps in etcd and on disk, so the simulator comes back after a reboot.

One file, DIR/state.json (0600, in a 0700 DIR): the Harvester version, the TLS material (server CA and key,
server certificate, client CA; the VIP's too), the bearer token, the VIP's API keys and the object store
(`Store.dump()`: every object with its status, uid, creationTimestamp, and the resourceVersion counter).
It is rewritten whole and atomically (tmp file, fsync, rename): at most SAVE_DELAY after a change, and at a
clean stop. A crash loses at most the last second; a torn file cannot happen. Watch history is not kept
(see `Store.load`: watches from before the restart get 410 Gone).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .apiserver.store import Store, StoredEvent
from .apiserver.tls import TlsMaterial
from .rancher.front import ApiKey

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
FORMAT = 1
SAVE_DELAY = 0.5          # seconds from a change to its snapshot (plus the write itself)


class StateError(Exception):
    """The state directory holds a state this simulator must not start from (unreadable, or another cluster's)."""


@dataclass
class SavedState:
    harvester_version: str
    token: str
    tls: TlsMaterial
    vip_tls: TlsMaterial
    vip_keys: list[ApiKey]
    store: dict[str, Any]
    this_machine: str = ""        # --this-machine: the Node that is the machine; "" for simulated nodes

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "harvesterVersion": self.harvester_version, "thisMachine": self.this_machine,
                "token": self.token, "tls": self.tls.to_json(), "vipTls": self.vip_tls.to_json(),
                "vipKeys": [{"name": k.name, "secret": k.secret} for k in self.vip_keys], "store": self.store}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SavedState":
        return cls(harvester_version=str(data["harvesterVersion"]), token=str(data["token"]),
                   tls=TlsMaterial.from_json(data["tls"]), vip_tls=TlsMaterial.from_json(data["vipTls"]),
                   vip_keys=[ApiKey(str(k["name"]), str(k["secret"])) for k in data["vipKeys"]],
                   store=data["store"], this_machine=str(data.get("thisMachine", "")))


def state_path(directory: Path) -> Path:
    return directory / STATE_FILE


def read_state(directory: Path) -> SavedState | None:
    """The saved state, or None when DIR holds none yet (a first start)."""
    path = state_path(directory)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc}") from None
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise StateError(f"{path}: format {data.get('format')!r}, this simulator reads format {FORMAT}")
        return SavedState.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StateError(f"{path} is not a simulator state ({type(exc).__name__}: {exc}); move it away to start "
                         "a fresh cluster") from None


def mismatch(saved: SavedState, directory: Path, version: str, this_machine: str) -> str | None:
    """Why this start may not continue the saved cluster (None: it may). A node keeps its version and name."""
    path = state_path(directory)
    if saved.harvester_version != version:
        return (f"--version {version} differs from the saved state's harvesterVersion {saved.harvester_version} "
                f"({path}): a node does not change version by a restart")
    if saved.this_machine != this_machine:
        if not this_machine:
            return (f"the saved state in {path} is of --this-machine (thisMachine {saved.this_machine}); "
                    "start with --this-machine")
        if not saved.this_machine:
            return f"the saved state in {path} has simulated nodes (thisMachine is empty); --this-machine needs its own"
        return (f"this machine's hostname is {this_machine}, but the saved state's thisMachine is "
                f"{saved.this_machine} ({path})")
    return None


def prepare_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)


def write_state_file(directory: Path, text: str) -> None:
    """Replace DIR/state.json atomically: a crash leaves the old file or the new one, never a torn one."""
    final = state_path(directory)
    tmp = final.with_name(final.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(text.encode())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)                 # the rename itself survives a power cut
    finally:
        os.close(dir_fd)


class Persister:
    """Keeps DIR/state.json current: a snapshot SAVE_DELAY after the first unsaved change, one at close().

    The snapshot is taken on the loop (so it is consistent: writes run on the loop too) and written in a
    thread, one write at a time."""

    def __init__(self, directory: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.directory = directory
        self.snapshot = snapshot
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Future[None] | None = None
        self._dirty_while_writing = False
        self._closed = False
        self.saves = 0

    def save_now(self) -> None:
        """Write the current state synchronously (first start, clean stop)."""
        write_state_file(self.directory, self._serialise())
        self.saves += 1

    def start(self, store: Store) -> None:
        self._loop = asyncio.get_running_loop()
        store.listeners.append(self._changed)

    def _serialise(self) -> str:
        return json.dumps(self.snapshot(), separators=(",", ":"))

    def _changed(self, event: StoredEvent | None = None) -> None:
        if self._closed or self._timer is not None or self._loop is None:
            return
        if self._writing is not None:
            self._dirty_while_writing = True
            return
        self._timer = self._loop.call_later(SAVE_DELAY, self._save)

    def _save(self) -> None:
        self._timer = None
        assert self._loop is not None
        text = self._serialise()
        self._writing = self._loop.run_in_executor(None, write_state_file, self.directory, text)
        self._writing.add_done_callback(self._written)

    def _written(self, future: "asyncio.Future[None]") -> None:
        self._writing = None
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("saving the state to %s failed", state_path(self.directory), exc_info=future.exception())
        else:
            self.saves += 1
        if self._dirty_while_writing:
            self._dirty_while_writing = False
            self._changed()

    async def close(self) -> None:
        """Stop saving on changes and write the final state (call once nothing writes any more)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            try:
                await asyncio.shield(self._writing)
            except Exception:  # noqa: BLE001 - logged by _written; the final save below still runs
                pass
        self.save_now()
        log.info("state saved to %s", state_path(self.directory))
