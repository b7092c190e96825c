"""Server-side printing (meta.k8s.io/v1 Table), which `kubectl get` asks for.

CRD kinds print their additionalPrinterColumns; built-in kinds print the columns kube-apiserver's
own printers give them, for the kinds a harness looks at.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from . import apiservices
from .clock import age, human_duration, parse_rfc3339, utcnow
from .registry import ResourceType

Cell = Callable[[dict[str, Any]], Any]


def _get(obj: Any, *path: str, default: Any = None) -> Any:
    for part in path:
        if not isinstance(obj, dict):
            return default
        obj = obj.get(part)
    return default if obj is None else obj


def _condition(obj: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in _get(obj, "status", "conditions", default=[]):
        if cond.get("type") == ctype:
            return cond
    return {}


def _node_status(node: dict[str, Any]) -> str:
    ready = _condition(node, "Ready").get("status")
    status = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
    if _get(node, "spec", "unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_roles(node: dict[str, Any]) -> str:
    roles = sorted(k.split("/", 1)[1] for k in (_get(node, "metadata", "labels", default={}))
                   if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


def _node_address(node: dict[str, Any], kind: str) -> str:
    for addr in _get(node, "status", "addresses", default=[]):
        if addr.get("type") == kind:
            return addr.get("address", "")
    return "<none>"


def _pod_ready(pod: dict[str, Any]) -> str:
    statuses = _get(pod, "status", "containerStatuses", default=[])
    total = len(_get(pod, "spec", "containers", default=[]))
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: dict[str, Any]) -> str:
    if _get(pod, "metadata", "deletionTimestamp"):
        return "Terminating"
    for status in _get(pod, "status", "containerStatuses", default=[]):
        waiting = _get(status, "state", "waiting", "reason")
        if waiting:
            return waiting
    return _get(pod, "status", "reason") or _get(pod, "status", "phase", default="Unknown")


def _ports(svc: dict[str, Any]) -> str:
    parts = []
    for port in _get(svc, "spec", "ports", default=[]):
        text = str(port.get("port"))
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _lb_ingress(svc: dict[str, Any]) -> str:
    ingress = _get(svc, "status", "loadBalancer", "ingress", default=[])
    ips = [i.get("ip") or i.get("hostname") for i in ingress]
    if ips:
        return ",".join(ips)
    return "<pending>" if _get(svc, "spec", "type") == "LoadBalancer" else "<none>"


def _job_status(job: dict[str, Any]) -> str:
    for ctype in ("Complete", "Failed", "Suspended"):
        if _condition(job, ctype).get("status") == "True":
            return ctype
    return "Running"


def _job_duration(job: dict[str, Any]) -> str:
    start = _get(job, "status", "startTime")
    if not start:
        return ""
    end = _get(job, "status", "completionTime")
    finish = parse_rfc3339(end) if end else utcnow()
    return human_duration((finish - parse_rfc3339(start)).total_seconds())


def _event_object(event: dict[str, Any]) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _count(path: str) -> Cell:
    return lambda o: len(o.get(path) or {})


_AGE: tuple[str, str, int, Cell] = ("Age", "string", 0, lambda o: age(_get(o, "metadata", "creationTimestamp")))

# kind -> [(column, type, priority, cell)]; priority 1 columns show with `-o wide`.
BUILTIN_COLUMNS: dict[str, list[tuple[str, str, int, Cell]]] = {
    "Node": [("Status", "string", 0, _node_status), ("Roles", "string", 0, _node_roles), _AGE,
             ("Version", "string", 0, lambda o: _get(o, "status", "nodeInfo", "kubeletVersion", default="")),
             ("Internal-IP", "string", 1, lambda o: _node_address(o, "InternalIP")),
             ("External-IP", "string", 1, lambda o: _node_address(o, "ExternalIP")),
             ("OS-Image", "string", 1, lambda o: _get(o, "status", "nodeInfo", "osImage", default="")),
             ("Kernel-Version", "string", 1, lambda o: _get(o, "status", "nodeInfo", "kernelVersion", default="")),
             ("Container-Runtime", "string", 1,
              lambda o: _get(o, "status", "nodeInfo", "containerRuntimeVersion", default=""))],
    "Pod": [("Ready", "string", 0, _pod_ready), ("Status", "string", 0, _pod_status),
            ("Restarts", "string", 0, lambda o: str(sum(s.get("restartCount", 0) for s in
                                                        _get(o, "status", "containerStatuses", default=[])))),
            _AGE,
            ("IP", "string", 1, lambda o: _get(o, "status", "podIP", default="<none>")),
            ("Node", "string", 1, lambda o: _get(o, "spec", "nodeName", default="<none>")),
            ("Nominated Node", "string", 1, lambda o: _get(o, "status", "nominatedNodeName", default="<none>")),
            ("Readiness Gates", "string", 1, lambda o: "<none>")],
    "Namespace": [("Status", "string", 0, lambda o: _get(o, "status", "phase", default="")), _AGE],
    "Deployment": [("Ready", "string", 0, lambda o: f"{_get(o, 'status', 'readyReplicas', default=0)}/"
                                                     f"{_get(o, 'spec', 'replicas', default=1)}"),
                   ("Up-to-date", "integer", 0, lambda o: _get(o, "status", "updatedReplicas", default=0)),
                   ("Available", "integer", 0, lambda o: _get(o, "status", "availableReplicas", default=0)), _AGE],
    "DaemonSet": [("Desired", "integer", 0, lambda o: _get(o, "status", "desiredNumberScheduled", default=0)),
                  ("Current", "integer", 0, lambda o: _get(o, "status", "currentNumberScheduled", default=0)),
                  ("Ready", "integer", 0, lambda o: _get(o, "status", "numberReady", default=0)),
                  ("Up-to-date", "integer", 0, lambda o: _get(o, "status", "updatedNumberScheduled", default=0)),
                  ("Available", "integer", 0, lambda o: _get(o, "status", "numberAvailable", default=0)), _AGE],
    "Job": [("Status", "string", 0, _job_status),
            ("Completions", "string", 0, lambda o: f"{_get(o, 'status', 'succeeded', default=0)}/"
                                                   f"{_get(o, 'spec', 'completions', default=1)}"),
            ("Duration", "string", 0, _job_duration), _AGE],
    "Service": [("Type", "string", 0, lambda o: _get(o, "spec", "type", default="ClusterIP")),
                ("Cluster-IP", "string", 0, lambda o: _get(o, "spec", "clusterIP", default="<none>")),
                ("External-IP", "string", 0, _lb_ingress), ("Port(s)", "string", 0, _ports), _AGE],
    "Secret": [("Type", "string", 0, lambda o: o.get("type", "Opaque")), ("Data", "integer", 0, _count("data")), _AGE],
    "ConfigMap": [("Data", "integer", 0, _count("data")), _AGE],
    "Event": [("Last Seen", "string", 0, lambda o: age(o.get("lastTimestamp") or o.get("eventTime")
                                                          or _get(o, "metadata", "creationTimestamp"))),
              ("Type", "string", 0, lambda o: o.get("type", "")),
              ("Reason", "string", 0, lambda o: o.get("reason", "")),
              ("Object", "string", 0, _event_object), ("Message", "string", 0, lambda o: o.get("message") or o.get("note", ""))],
    "PersistentVolumeClaim": [
        ("Status", "string", 0, lambda o: _get(o, "status", "phase", default="Pending")),
        ("Volume", "string", 0, lambda o: _get(o, "spec", "volumeName", default="")),
        ("Capacity", "string", 0, lambda o: _get(o, "status", "capacity", "storage", default="")),
        ("Access Modes", "string", 0, lambda o: ",".join(
            {"ReadWriteOnce": "RWO", "ReadWriteMany": "RWX", "ReadOnlyMany": "ROX"}.get(m, m)
            for m in _get(o, "status", "accessModes", default=[]))),
        ("StorageClass", "string", 0, lambda o: _get(o, "spec", "storageClassName", default="")), _AGE],
    "StorageClass": [("Provisioner", "string", 0, lambda o: o.get("provisioner", "")),
                     ("ReclaimPolicy", "string", 0, lambda o: o.get("reclaimPolicy", "Delete")),
                     ("VolumeBindingMode", "string", 0, lambda o: o.get("volumeBindingMode", "Immediate")),
                     ("AllowVolumeExpansion", "string", 0, lambda o: str(bool(o.get("allowVolumeExpansion"))).lower()),
                     _AGE],
    "CustomResourceDefinition": [("Created At", "date", 0, lambda o: _get(o, "metadata", "creationTimestamp"))],
    # kube-aggregator's printer (pkg/registry/apiservice/rest): SERVICE, AVAILABLE, AGE.
    "APIService": [("Service", "string", 0, apiservices.service_column),
                   ("Available", "string", 0, apiservices.available_column), _AGE],
}


# --- a JSONPath subset for CRD printer columns ---------------------------------------------------
_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]([^'\"]*)['\"]\)\]")


def json_path(obj: Any, expression: str) -> list[Any]:
    """Evaluate the JSONPath forms CRDs use in printer columns (`.a.b`, `[0]`, `[*]`, `[?(@.t=="x")]`)."""
    expression = expression.strip().strip("{}")
    current = [obj]
    position = 0
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if not match:
            return []
        position = match.end()
        field, index, filter_key, filter_value = match.groups()
        nxt: list[Any] = []
        for item in current:
            if field is not None and isinstance(item, dict) and field in item:
                nxt.append(item[field])
            elif index is not None and isinstance(item, list):
                if index == "*":
                    nxt.extend(item)
                elif int(index) < len(item):
                    nxt.append(item[int(index)])
            elif filter_key is not None and isinstance(item, list):
                for element in item:
                    if str(_get(element, *filter_key.split("."), default="")) == filter_value:
                        nxt.append(element)
        current = nxt
    return current


def _format_cell(values: list[Any], column_type: str) -> Any:
    if not values:
        return None
    value = values[0] if len(values) == 1 else ",".join(str(v) for v in values)
    if column_type == "date" and isinstance(value, str):
        try:
            return age(value)
        except ValueError:
            return value
    if isinstance(value, (dict, list)):
        import json
        return json.dumps(value, separators=(",", ":"))
    return value


def _partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def to_table(rtype: ResourceType, printer_columns: list[dict[str, Any]], objects: list[dict[str, Any]],
             resource_version: str, include_object: str = "Metadata", continue_token: str = "") -> dict[str, Any]:
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name must be unique within a namespace."}]
    cells: list[Callable[[dict[str, Any]], Any]] = []
    if rtype.custom:
        columns = printer_columns or [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
        for column in columns:
            definitions.append({"name": column["name"], "type": column.get("type", "string"),
                                "format": column.get("format", ""), "priority": column.get("priority", 0),
                                "description": column.get("description", "")})
            cells.append(lambda o, c=column: _format_cell(json_path(o, c["jsonPath"]), c.get("type", "string")))
    else:
        for name, ctype, priority, cell in BUILTIN_COLUMNS.get(rtype.kind, [_AGE]):
            definitions.append({"name": name, "type": ctype, "format": "", "priority": priority, "description": ""})
            cells.append(cell if ctype != "date" else (lambda o, c=cell: age(c(o))))
    rows = []
    for obj in objects:
        row: dict[str, Any] = {"cells": [obj["metadata"]["name"]] + [cell(obj) for cell in cells]}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = _partial_metadata(obj)
        rows.append(row)
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if continue_token:
        metadata["continue"] = continue_token
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": metadata,
            "columnDefinitions": definitions, "rows": rows}
