"""Kernel parameters as harvester-installer reads them (pkg/util/cmdline.go, `parseCmdLine`).

Every `harvester.`-prefixed item becomes a nested key: `harvester.install.config_url=http://...` is
`{"install": {"config_url": "http://..."}}`; an item without `=` is "true"; a key given twice becomes a list;
double quotes group a value with spaces (`harvester.os.ssh_authorized_keys="ssh-ed25519 AAAA..."`).
`install.management_interface.interfaces` items are `name: ens3`, `hwAddr: 52:54:...`, a bare name or a bare
MAC; `scheme_version` is a number.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PREFIX = "harvester"
# The regex harvester-installer uses (https://regexr.com/4mq0s): a quoted item, or key=value with a quoted
# or unquoted value.
_ITEM = re.compile(r'("[^"]+")|([^\s]+=("[^"]+")|([^\s]+))')


class CmdlineError(ValueError):
    """A harvester.* parameter harvester-installer would refuse (its words)."""


def parse_cmdline(cmdline: str, prefix: str = PREFIX) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for match in _ITEM.finditer(cmdline):
        item = match.group(0)
        parts = item.split("=", 1)
        value = parts[1].strip('"') if len(parts) > 1 else "true"
        keys = parts[0].strip('"').split(".")
        if prefix:
            if keys[0] != prefix:
                continue
            keys = keys[1:]
        if not keys or not all(keys):
            continue
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = node[key] = {}
            node = child
        existing = node.get(keys[-1])
        if isinstance(existing, str):
            node[keys[-1]] = [existing, value]
        elif isinstance(existing, list):
            existing.append(value)
        elif existing is None:
            node[keys[-1]] = value
    _to_network_interfaces(data)
    _to_scheme_version(data)
    return data


def read_cmdline(path: Path = Path("/proc/cmdline"), prefix: str = PREFIX) -> dict[str, Any]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return parse_cmdline(text, prefix)


def parse_interface_details(details: str) -> dict[str, str]:
    """`hwAddr: ab:cd:..`, `ab:cd:..`, `name: ens3` or `ens3` (harvester-installer `parseIfDetails`)."""
    parts = [part.strip() for part in details.split(":")]
    if len(parts) == 7:
        if parts[0] != "hwAddr":
            raise CmdlineError(f"could not parse interface details {details}")
        return {"hwAddr": ":".join(parts[1:])}
    if len(parts) == 6:
        return {"hwAddr": ":".join(parts)}
    if len(parts) == 2:
        if parts[0] != "name":
            raise CmdlineError(f"could not parse interface details {details}")
        return {"name": parts[1]}
    if len(parts) == 1:
        return {"name": parts[0]}
    raise CmdlineError(f"could not parse interface details {details}")


def _to_network_interfaces(data: dict[str, Any]) -> None:
    install = data.get("install")
    if not isinstance(install, dict):
        return
    management = install.get("management_interface")
    if not isinstance(management, dict) or "interfaces" not in management:
        return
    raw = management["interfaces"]
    items = [raw] if isinstance(raw, str) else list(raw)
    management["interfaces"] = [parse_interface_details(item) for item in items]


def _to_scheme_version(data: dict[str, Any]) -> None:
    if "scheme_version" not in data:
        return
    value = data["scheme_version"]
    try:
        number = int(value)
        if not 0 <= number < 2 ** 32:
            raise ValueError
    except (TypeError, ValueError):
        raise CmdlineError(f'strconv.ParseUint: parsing "{value}": invalid syntax') from None
    data["scheme_version"] = number
