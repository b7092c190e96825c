"""Harvester-specific data of the simulator: simulated versions, seed objects, Helm records and CRDs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CRD_DIR = Path(__file__).with_name("crds")


def load_crds() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in crds/ (one per file), sorted by file name.

    Each is a plain JSON-compatible dict: YAML anchors (shared version schemas) become
    independent copies, so mutating one CRD version never changes another.
    """
    crds = []
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)     # libyaml: the same documents, ten times faster
    for path in sorted(CRD_DIR.glob("*.yaml")):
        for doc in yaml.load_all(path.read_text(), Loader=loader):
            if doc:
                crds.append(json.loads(json.dumps(doc)))
    return crds
