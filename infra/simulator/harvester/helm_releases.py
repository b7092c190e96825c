"""Helm releases in the simulator's store: read the history, and upgrade a release as `helm upgrade` does
(the new revision deployed, the previous one superseded). Used by the simulator's Rancher and by the
simulated nodes' `helm` command."""
from __future__ import annotations

import datetime as dt
from typing import Any

from ..apiserver.objects import ObjectApi
from . import chart_repo, helm_storage


class HelmReleases:
    def __init__(self, api: ObjectApi) -> None:
        self.api = api
        self.secrets = api.lookup("", "v1", "secrets")

    def records(self, namespace: str, release: str) -> list[dict[str, Any]]:
        result = self.api.list(self.secrets, namespace, label_selector=f"owner=helm,name={release}")
        return sorted((helm_storage.decode_release_secret(s) for s in result.items), key=lambda r: r["version"])

    def latest(self, namespace: str, release: str) -> dict[str, Any] | None:
        records = self.records(namespace, release)
        return records[-1] if records else None

    @staticmethod
    def chart_string(record: dict[str, Any]) -> str:
        metadata = record["chart"]["metadata"]
        return f"{metadata['name']}-{metadata['version']}"

    def upgrade(self, namespace: str, release: str, chart_version: str, app_version: str, *,
                chart_name: str | None = None, values: dict[str, Any] | None = None,
                description: str = "Upgrade complete") -> dict[str, Any]:
        """Write the next revision (deployed) and mark the previous deployed one superseded."""
        records = self.records(namespace, release)
        now = dt.datetime.now(dt.timezone.utc)
        previous = records[-1] if records else None
        for record in records:
            if record["info"]["status"] == "deployed":
                self._set_status(namespace, record, "superseded")
        name = chart_name or (previous["chart"]["metadata"]["name"] if previous else release)
        known = chart_repo.find_chart(name, chart_version)
        record = helm_storage.release_record(
            release, namespace, name, chart_version, app_version, (previous["version"] + 1) if previous else 1,
            "deployed", now, values if values is not None else (previous or {}).get("config"),
            first_deployed=_parse_go_time(previous["info"]["first_deployed"]) if previous else now,
            description=description if previous else "Install complete",
            chart=chart_repo.release_chart(known) if known else None,
            manifest=chart_repo.manifest(known, namespace) if known else "")
        self.api.create(self.secrets, helm_storage.secret_for_record(record, created_at=now))
        return record

    def _set_status(self, namespace: str, record: dict[str, Any], status: str) -> None:
        name = helm_storage.secret_name(record["name"], record["version"])
        updated = dict(record, info=dict(record["info"], status=status))
        replacement = helm_storage.secret_for_record(updated)

        def change(secret: dict[str, Any]) -> None:
            secret["data"] = replacement["data"]
            secret["metadata"].setdefault("labels", {})["status"] = status

        self.api.mutate(self.secrets, namespace, name, change)


def _parse_go_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
