"""An upgrade's cleanup removes the Upgrade it created (found by the run's label), so the leak audit is clean.

Found by `harvester-e2e chaos`: every upgrade run, the fault-free one too, left its Upgrade in
harvester-system labelled with the run id.
"""
from __future__ import annotations

from typing import Any

from infra.cleanup import CleanupStack
from infra.cluster import Release
from infra.harvester.names import HARVESTER, RUN_ID_LABEL
from infra.harvester.upgrade.run import UpgradeRun
from infra.waits.budget import Budget

RUN = "e2e-unit-upgrade"


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[str] = []

    def find(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        return self.objects.get((kind, name))

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        name = meta.get("name") or f"{meta['generateName']}abcde"
        stored = {**obj, "metadata": {**meta, "name": name}}
        self.objects[(obj["kind"], name)] = stored
        self.calls.append(f"create {obj['kind']} {name}")
        return stored

    def list(self, api_version: str, kind: str, namespace: str | None = None, *, label_selector: str | None = None,
             **_: Any) -> list[dict[str, Any]]:
        key, _, value = (label_selector or "").partition("=")
        return [o for (k, _n), o in self.objects.items() if k == kind and
                (not key or (o["metadata"].get("labels") or {}).get(key) == value)]

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
        self.calls.append(f"delete {kind} {name}")
        return self.objects.pop((kind, name), None) is not None

    def wait_for_gone(self, api_version: str, kind: str, name: str, **_: Any) -> None:
        assert (kind, name) not in self.objects


def test_the_upgrade_a_run_started_is_deleted_by_its_cleanup_and_only_it() -> None:
    kube = FakeKube()
    other = kube.create({"apiVersion": HARVESTER, "kind": "Upgrade",
                         "metadata": {"name": "hvst-upgrade-other", "labels": {RUN_ID_LABEL: "someone-else"}}})
    cleanup = CleanupStack()
    release = Release("v1.5.2", "https://mirror.example/harvester-v1.5.2-amd64.iso", "0" * 128)
    run = UpgradeRun.start(kube, release, run_id=RUN, cleanup=cleanup,  # type: ignore[arg-type]
                           budget=Budget("gone", 1))
    assert ("Upgrade", run.name) in kube.objects
    assert cleanup.run() == []
    assert ("Upgrade", run.name) not in kube.objects, "the run's Upgrade is left behind"
    assert ("Version", "v1.5.2") not in kube.objects
    assert ("Upgrade", other["metadata"]["name"]) in kube.objects, "another run's Upgrade is not touched"
    assert kube.calls.index(f"delete Upgrade {run.name}") < kube.calls.index("delete Version v1.5.2")


def test_while_nodes_upgrade_the_cleanup_waits_for_them_then_deletes() -> None:
    from infra.kube import ApiFailure

    class Refusing(FakeKube):
        refusals = 1
        awaited: list[str] = []

        def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None, **_: Any) -> bool:
            if kind == "Upgrade" and self.refusals:
                self.refusals -= 1
                raise ApiFailure(400, "BadRequest", 'admission webhook "validator.harvesterhci.io" denied the '
                                 "request: node upgrade is in progressing, please wait for it to be provisioned")
            return super().delete(api_version, kind, name, namespace)

        def wait_for(self, api_version: str, kind: str, name: str, predicate: Any, **options: Any) -> None:
            upgrade = self.objects[(kind, name)]
            upgrade["status"] = {"conditions": [{"type": "NodesUpgraded", "status": "Unknown"}]}
            assert not predicate(upgrade), "nodes still upgrading: not done"
            upgrade["status"]["conditions"][0]["status"] = "True"
            assert predicate(upgrade)
            self.awaited.append(options["awaited"])

    kube = Refusing()
    cleanup = CleanupStack()
    release = Release("v1.5.2", "https://mirror.example/harvester-v1.5.2-amd64.iso", "0" * 128)
    run = UpgradeRun.start(kube, release, run_id=RUN, cleanup=cleanup,  # type: ignore[arg-type]
                           budget=Budget("gone", 1))
    assert cleanup.run() == []
    assert ("Upgrade", run.name) not in kube.objects
    assert kube.awaited and "finish upgrading" in kube.awaited[0]
