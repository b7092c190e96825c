"""A controller sees store events through a queue (never inside the write that caused them)."""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from ..apiserver.clock import rfc3339
from ..apiserver.objects import ObjectApi
from ..apiserver.store import StoredEvent

log = logging.getLogger(__name__)


class Controller:
    watches: tuple[tuple[str, str], ...] = ()     # (group, plural) pairs this controller reacts to

    def __init__(self, api: ObjectApi) -> None:
        self.api = api
        self.queue: asyncio.Queue[StoredEvent] = asyncio.Queue()
        api.store.listeners.append(self._offer)

    def _offer(self, event: StoredEvent) -> None:
        if event.type_key in self.watches:
            self.queue.put_nowait(event)

    async def run(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.handle(event)
            except Exception:  # noqa: BLE001 - a controller bug must not stop the simulator
                log.exception("%s failed handling %s", type(self).__name__, event.type)

    async def handle(self, event: StoredEvent) -> None:
        raise NotImplementedError

    def record_event(self, obj: dict[str, Any], event_type: str, reason: str, message: str,
                     component: str) -> None:
        """A core/v1 Event about `obj`, as a controller's event recorder writes it."""
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        events = self.api.lookup("", "v1", "events")
        now = rfc3339()
        self.api.create(events, {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": namespace},
            "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                               "namespace": meta.get("namespace", ""), "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": event_type, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now, "source": {"component": component},
            "reportingComponent": component,
        })

    def log_to_pod(self, namespace: str, labels: dict[str, str], container: str, line: str) -> None:
        """Append a line to that container's log in every pod carrying these labels."""
        for pod in self.api.store.iter_raw(("", "pods"), namespace):
            pod_labels = pod["metadata"].get("labels") or {}
            containers = {c["name"] for c in (pod.get("spec") or {}).get("containers", [])}
            if container in containers and all(pod_labels.get(k) == v for k, v in labels.items()):
                self.api.logs.append(namespace, pod["metadata"]["name"], container, f"{rfc3339()} {line}")
