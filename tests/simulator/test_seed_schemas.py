"""Every object the simulator seeds satisfies the CRD schema it claims: the upstream CRDs in tests/data and the
simulator's own. A real cluster's objects passed its API server's validation; a seeded one must too, or a client
that replaces it (`kubectl replace` of a Machine) fails where it would not on a real cluster."""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.simulator.apimachinery import schema as crd_schema
from infra.simulator.harvester import seed
from infra.simulator.harvester.versions import VERSIONS

from ..conftest import UPSTREAM_CRDS

SIMULATOR_CRDS = Path(seed.__file__).resolve().parent / "crds"


def _schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            for version in doc["spec"]["versions"]:
                key = (f"{doc['spec']['group']}/{version['name']}", doc["spec"]["names"]["kind"])
                schemas[key] = (version.get("schema") or {}).get("openAPIV3Schema") or {}
    return schemas


@pytest.mark.parametrize("source", [UPSTREAM_CRDS, SIMULATOR_CRDS], ids=["upstream", "simulator"])
@pytest.mark.parametrize("version", sorted(VERSIONS))
def test_seeded_objects_satisfy_their_crd_schema(version: str, source: Path) -> None:
    schemas = _schemas(source)
    objects = seed.initial_objects(VERSIONS[version], node_count=3, now=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    checked, failures = 0, []
    for obj in objects:
        schema = schemas.get((obj["apiVersion"], obj["kind"]))
        if schema is None:
            continue
        checked += 1
        _, problems, unknown = crd_schema.validate_custom_object(obj, schema)
        if problems or unknown:
            failures.append(f"{obj['kind']} {obj['metadata']['name']}: {problems[:3]} unknown {unknown[:3]}")
    assert checked, f"no seeded object has a CRD in {source}"
    assert not failures, "\n".join(failures)


def test_a_machine_carries_its_nodes_node_info() -> None:
    objects = seed.initial_objects(VERSIONS["v1.5.1"], node_count=3, now=dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc))
    nodes = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Node"}
    for machine in (o for o in objects if o["kind"] == "Machine"):
        node = nodes[machine["status"]["nodeRef"]["name"]]
        assert machine["status"]["nodeInfo"] == node["status"]["nodeInfo"]
