"""Object storage with one resourceVersion sequence and a bounded event history for watches.

Single-threaded by design: everything runs on the server's asyncio loop, so a write and the
events it produces are atomic. Threads (SSH sessions) reach it through the loop.
"""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from infra.simulator.apimachinery.jsontree import clone

Key = tuple[str, str]          # (namespace or "", name)
TypeKey = tuple[str, str]      # (group, plural)


@dataclass(frozen=True)
class StoredEvent:
    resource_version: int
    type_key: TypeKey
    type: str                  # ADDED | MODIFIED | DELETED
    object: dict[str, Any]
    old_object: dict[str, Any] | None


class TooOldResourceVersion(Exception):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested = requested
        self.oldest = oldest


class Watcher:
    """One client's watch: a queue of matching events; `None` marks the end of the stream."""

    def __init__(self, type_key: TypeKey, accepts: Callable[[StoredEvent], bool]):
        self.type_key = type_key
        self.accepts = accepts
        self.queue: asyncio.Queue[StoredEvent | None] = asyncio.Queue()
        self.closed = False

    def offer(self, event: StoredEvent) -> None:
        if not self.closed and event.type_key == self.type_key and self.accepts(event):
            self.queue.put_nowait(event)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class Store:
    def __init__(self, history_size: int = 20000) -> None:
        self._objects: dict[TypeKey, dict[Key, dict[str, Any]]] = {}
        self._rv = 1
        self._history: deque[StoredEvent] = deque(maxlen=history_size)
        self._compacted_through = 0
        self._watchers: set[Watcher] = set()
        self.listeners: list[Callable[[StoredEvent], None]] = []   # in-process controllers

    @property
    def resource_version(self) -> int:
        return self._rv

    def next_resource_version(self) -> int:
        self._rv += 1
        return self._rv

    # --- reads -------------------------------------------------------------------------------
    def get(self, type_key: TypeKey, key: Key) -> dict[str, Any] | None:
        obj = self._objects.get(type_key, {}).get(key)
        return clone(obj) if obj is not None else None

    def peek(self, type_key: TypeKey, key: Key) -> dict[str, Any] | None:
        """The stored object itself, not a copy: only for read-only checks on the hot path."""
        return self._objects.get(type_key, {}).get(key)

    def list(self, type_key: TypeKey, namespace: str | None = None) -> list[dict[str, Any]]:
        bucket = self._objects.get(type_key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [clone(bucket[k]) for k in keys]

    def iter_raw(self, type_key: TypeKey, namespace: str | None = None) -> Iterable[dict[str, Any]]:
        bucket = self._objects.get(type_key, {})
        for key in sorted(bucket):
            if namespace is None or key[0] == namespace:
                yield bucket[key]

    def type_keys(self) -> list[TypeKey]:
        return list(self._objects)

    # --- writes ------------------------------------------------------------------------------
    def put(self, type_key: TypeKey, key: Key, obj: dict[str, Any], event_type: str,
            old: dict[str, Any] | None) -> dict[str, Any]:
        """Store `obj` with a fresh resourceVersion and emit the event."""
        rv = self.next_resource_version()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._objects.setdefault(type_key, {})[key] = obj
        self._emit(StoredEvent(rv, type_key, event_type, clone(obj), old))
        return clone(obj)

    def remove(self, type_key: TypeKey, key: Key) -> dict[str, Any] | None:
        obj = self._objects.get(type_key, {}).pop(key, None)
        if obj is None:
            return None
        rv = self.next_resource_version()
        obj["metadata"]["resourceVersion"] = str(rv)
        self._emit(StoredEvent(rv, type_key, "DELETED", clone(obj), None))
        return clone(obj)

    def drop_type(self, type_key: TypeKey) -> None:
        self._objects.pop(type_key, None)
        for watcher in [w for w in self._watchers if w.type_key == type_key]:
            watcher.close()

    def _emit(self, event: StoredEvent) -> None:
        if len(self._history) == self._history.maxlen:
            self._compacted_through = self._history[0].resource_version
        self._history.append(event)
        for watcher in list(self._watchers):
            watcher.offer(event)
        for listener in list(self.listeners):
            listener(event)

    # --- persistence (what etcd keeps across a restart) -----------------------------------------
    DUMP_FORMAT = 1

    def dump(self) -> dict[str, Any]:
        """Every object and the resourceVersion counter, JSON-ready; not the event history.

        The objects are the stored ones, not copies: serialise the result before the loop runs again."""
        return {"format": self.DUMP_FORMAT, "resourceVersion": self._rv,
                "types": [{"group": group, "plural": plural,
                           "objects": [{"namespace": key[0], "name": key[1], "object": obj}
                                       for key, obj in sorted(bucket.items())]}
                          for (group, plural), bucket in sorted(self._objects.items()) if bucket]}

    def load(self, dump: dict[str, Any]) -> None:
        """Replace everything with a `dump()`: the objects as they were, the counter past the saved one.

        The history is gone, as after an etcd compaction at the saved revision: a watch from any
        resourceVersion handed out before the restart gets 410 Gone and re-lists. The counter moves one
        past the saved value so a list right after the restart returns a version a watch may start from."""
        if dump.get("format") != self.DUMP_FORMAT:
            raise ValueError(f"unknown store dump format {dump.get('format')!r} (this simulator writes "
                             f"{self.DUMP_FORMAT})")
        objects: dict[TypeKey, dict[Key, dict[str, Any]]] = {}
        for entry in dump["types"]:
            bucket = objects.setdefault((str(entry["group"]), str(entry["plural"])), {})
            for item in entry["objects"]:
                bucket[(str(item["namespace"]), str(item["name"]))] = item["object"]
        newest = max((int(obj["metadata"].get("resourceVersion") or 0)
                      for bucket in objects.values() for obj in bucket.values()), default=0)
        for watcher in list(self._watchers):
            self.unwatch(watcher)
        self._objects = objects
        self._rv = max(int(dump["resourceVersion"]), newest) + 1     # only ever grows
        self._history.clear()
        self._compacted_through = self._rv

    # --- watches -----------------------------------------------------------------------------
    def compact(self) -> None:
        """Forget the event history, as etcd compaction does; older watches then get 410 Gone."""
        if self._history:
            self._compacted_through = self._history[-1].resource_version
        self._history.clear()

    def watch(self, type_key: TypeKey, since: int | None,
              accepts: Callable[[StoredEvent], bool]) -> tuple[Watcher, list[StoredEvent]]:
        """Register a watcher; return it with the history it must replay first (events after `since`)."""
        replay: list[StoredEvent] = []
        if since is not None:
            if since < self._compacted_through:
                raise TooOldResourceVersion(since, self._compacted_through + 1)
            replay = [e for e in self._history
                      if e.resource_version > since and e.type_key == type_key and accepts(e)]
        watcher = Watcher(type_key, accepts)
        self._watchers.add(watcher)
        return watcher, replay

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)
        watcher.close()

    def open_watches(self) -> int:
        """How many watches are open now (the simulator's info: a test knows when a client is watching)."""
        return len(self._watchers)

    def close_all_watches(self) -> int:
        """Drop every open watch (a fault the harness must survive). Returns how many were dropped."""
        watchers = list(self._watchers)
        for watcher in watchers:
            self.unwatch(watcher)
        return len(watchers)
