"""Which libvirt objects belong to which run.

Every object a run creates has the run id as the prefix of its name; domains and networks also carry it
in their `<metadata>` (`<e2e:run xmlns:e2e=".../run" id="RUN"/>`). Storage pools and volumes have no
metadata element in libvirt, so for them the name is the mark. Nothing without the mark is ever touched.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET

METADATA_NAMESPACE = "https://harvesterhci.io/e2e/run"
METADATA_PREFIX = "e2e"
# The roles a run's objects have; a name is the run's only if it is exactly `<run id>-<role>`, so run
# `e2e-1` never claims `e2e-1-b-pool` of run `e2e-1-b`.
OWNED_ROLES = r"(net|pool|node\d+|node\d+\.qcow2)"
ET.register_namespace(METADATA_PREFIX, METADATA_NAMESPACE)


def owned_name(run_id: str, role: str) -> str:
    """`<run id>-<role>`: the name of an object the run creates (e.g. `e2e-2026...-node0`)."""
    return f"{run_id}-{role}"


def is_owned_name(name: str, run_id: str) -> bool:
    return re.fullmatch(re.escape(run_id) + "-" + OWNED_ROLES, name) is not None


def run_mark(run_id: str, **attributes: str) -> ET.Element:
    """The `<e2e:run id=...>` element that goes inside an object's `<metadata>`."""
    element = ET.Element(f"{{{METADATA_NAMESPACE}}}run", {"id": run_id, **attributes})
    return element


def mark_of(xml_text: str) -> dict[str, str] | None:
    """The run mark's attributes from an object's XML description, or None when it has none."""
    root = ET.fromstring(xml_text)
    found = root.find(f"metadata/{{{METADATA_NAMESPACE}}}run")
    return dict(found.attrib) if found is not None else None


def run_id_of(xml_text: str) -> str | None:
    mark = mark_of(xml_text)
    return mark.get("id") if mark else None


def stable_mac(run_id: str, index: int) -> str:
    """A locally administered MAC per (run, node): stable across reruns of the same run id."""
    digest = hashlib.sha256(run_id.encode()).digest()
    return f"52:54:00:{digest[0]:02x}:{digest[1]:02x}:{index:02x}"


def bridge_name_for(run_id: str) -> str:
    """A bridge name that fits Linux's 15 characters and still identifies the run."""
    return "e2ebr" + hashlib.sha256(run_id.encode()).hexdigest()[:8]
