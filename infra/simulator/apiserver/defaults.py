"""Defaulting of built-in kinds, as kube-apiserver fills in what a client left out.

Modelled on kubernetes v1.32: pkg/apis/core/v1/defaults.go, pkg/apis/apps/v1/defaults.go,
pkg/apis/batch/v1/defaults.go, the Service REST storage's IP and node-port allocators
(pkg/registry/core/service) and the admission plugins RKE2 enables for Pods (ServiceAccount, Priority,
DefaultTolerationSeconds). Service IPs come from RKE2's default service CIDR 10.43.0.0/16
(`--service-cidr`), node ports from the default 30000-32767 range.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any, Iterable

SERVICE_CIDR = ipaddress.ip_network("10.43.0.0/16")
NODE_PORTS = range(30000, 32768)
Obj = dict[str, Any]


def _spec(obj: Obj) -> Obj:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        spec = obj["spec"] = {}
    return spec


# --- core/v1 ---------------------------------------------------------------------------------------------

def _probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        probe.setdefault(key, value)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _image_pull_policy(image: str) -> str:
    """Always for `:latest` or no tag, IfNotPresent for a tag or digest (SetDefaults_Container)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    tag = last.partition(":")[2]
    return "Always" if not tag or tag == "latest" else "IfNotPresent"


def _container(container: Any) -> None:
    if not isinstance(container, dict):
        return
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if container.get("image") and not container.get("imagePullPolicy"):
        container["imagePullPolicy"] = _image_pull_policy(container["image"])
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = ((env or {}).get("valueFrom") or {}).get("fieldRef")
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        _probe(container.get(probe))


def _volume(volume: Any) -> None:
    if not isinstance(volume, dict):
        return
    for source in ("secret", "configMap", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", 420)
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")


def pod_spec(spec: Any) -> None:
    """SetDefaults_PodSpec and the containers in it (pods and pod templates alike)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    if spec.get("hostNetwork"):
        for container in spec.get("containers") or []:
            for port in (container or {}).get("ports") or []:
                if isinstance(port, dict) and "hostPort" not in port and "containerPort" in port:
                    port["hostPort"] = port["containerPort"]
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            _container(container)
    for volume in spec.get("volumes") or []:
        _volume(volume)


def _template(obj: Obj) -> None:
    template = _spec(obj).get("template")
    if isinstance(template, dict):
        pod_spec(template.get("spec"))


def pod(obj: Obj) -> None:
    """Pod defaults plus what the admission plugins of an RKE2 API server add on create."""
    spec = _spec(obj)
    pod_spec(spec)
    if not spec.get("serviceAccountName"):
        spec["serviceAccountName"] = spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccount", spec["serviceAccountName"])          # the deprecated alias kube keeps
    if "priorityClassName" not in spec:
        spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tolerations = spec.setdefault("tolerations", [])
    for taint in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if not any(t.get("key") == taint and t.get("effect", "NoExecute") == "NoExecute" for t in tolerations):
            tolerations.append({"key": taint, "operator": "Exists", "effect": "NoExecute",
                                "tolerationSeconds": 300})


def namespace(obj: Obj) -> None:
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj["metadata"]["name"]


def secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def pvc(obj: Obj) -> None:
    _spec(obj).setdefault("volumeMode", "Filesystem")
    status = obj.get("status")
    if not isinstance(status, dict):
        status = obj["status"] = {}
    status.setdefault("phase", "Pending")


def pv(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    status = obj.get("status")
    if not isinstance(status, dict):
        status = obj["status"] = {}
    status.setdefault("phase", "Pending")


def endpoints(obj: Obj) -> None:
    for subset in obj.get("subsets") or []:
        for port in (subset or {}).get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def service(obj: Obj) -> None:
    """SetDefaults_Service (the allocators run separately, see `ServiceAllocator`)."""
    spec = _spec(obj)
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if spec["sessionAffinity"] == "ClientIP":
        spec.setdefault("sessionAffinityConfig", {}).setdefault("clientIP", {}).setdefault("timeoutSeconds", 10800)
    for port in spec.get("ports") or []:
        if not isinstance(port, dict):
            continue
        port.setdefault("protocol", "TCP")
        if port.get("targetPort") in (None, 0, ""):
            port["targetPort"] = port.get("port")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    status = obj.get("status")
    if not isinstance(status, dict):
        status = obj["status"] = {}
    status.setdefault("loadBalancer", {})


# --- apps/v1, batch/v1 ----------------------------------------------------------------------------------

def deployment(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    strategy = spec.get("strategy")
    if not isinstance(strategy, dict) or not strategy:
        strategy = spec["strategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)


def daemonset(obj: Obj) -> None:
    spec = _spec(obj)
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict) or not strategy:
        strategy = spec["updateStrategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", 1)
        rolling.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _template(obj)


def statefulset(obj: Obj) -> None:
    spec = _spec(obj)
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = spec.get("updateStrategy")
    if not isinstance(strategy, dict) or not strategy:
        strategy = spec["updateStrategy"] = {}
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {}).setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    policy = spec.setdefault("persistentVolumeClaimRetentionPolicy", {})
    policy.setdefault("whenDeleted", "Retain")
    policy.setdefault("whenScaled", "Retain")
    for claim in spec.get("volumeClaimTemplates") or []:
        if isinstance(claim, dict):
            claim.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            claim.setdefault("status", {}).setdefault("phase", "Pending")
    _template(obj)


def replicaset(obj: Obj) -> None:
    _spec(obj).setdefault("replicas", 1)
    _template(obj)


def job(obj: Obj) -> None:
    spec = _spec(obj)
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 2147483647 if spec.get("backoffLimitPerIndex") is not None else 6)
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
    if labels and not obj["metadata"].get("labels"):
        obj["metadata"]["labels"] = dict(labels)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podFailurePolicy") is None:
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    else:
        spec.setdefault("podReplacementPolicy", "Failed")
    _template(obj)


DEFAULTERS = {
    ("", "pods"): pod, ("", "namespaces"): namespace, ("", "secrets"): secret, ("", "services"): service,
    ("", "persistentvolumeclaims"): pvc, ("", "persistentvolumes"): pv, ("", "endpoints"): endpoints,
    ("apps", "deployments"): deployment, ("apps", "daemonsets"): daemonset, ("apps", "statefulsets"): statefulset,
    ("apps", "replicasets"): replicaset, ("batch", "jobs"): job,
}
# Admission plugins act on create only; the rest of `pod` is plain defaulting, which every write gets.
CREATE_ONLY = {("", "pods")}


def apply(group: str, plural: str, obj: Obj, *, creating: bool) -> None:
    defaulter = DEFAULTERS.get((group, plural))
    if defaulter is None:
        return
    if (group, plural) in CREATE_ONLY and not creating:
        pod_spec(obj.get("spec"))
        return
    defaulter(obj)


# --- the Service allocators ------------------------------------------------------------------------------

class ServiceAllocator:
    """ClusterIPs and node ports, handed out at random from free addresses as kube's bitmap allocators do."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)

    def allocate(self, obj: Obj, existing: Iterable[Obj]) -> None:
        spec = _spec(obj)
        kind = spec.get("type", "ClusterIP")
        if kind == "ExternalName":
            return
        services = list(existing)
        if not spec.get("clusterIP") and spec.get("clusterIPs"):
            spec["clusterIP"] = spec["clusterIPs"][0]
        if not spec.get("clusterIP"):
            used = {ip for s in services for ip in ((s.get("spec") or {}).get("clusterIPs") or [])}
            spec["clusterIP"] = self._free_ip(used)
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        headless = spec["clusterIP"] == "None"
        if headless and not spec.get("selector"):
            spec.setdefault("ipFamilyPolicy", "RequireDualStack")      # single-stack cluster: one family
        else:
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4"])
        wants_node_ports = kind == "NodePort" or (kind == "LoadBalancer"
                                                 and spec.get("allocateLoadBalancerNodePorts", True))
        used_ports = {p.get("nodePort") for s in services for p in ((s.get("spec") or {}).get("ports") or [])}
        used_ports.add((lambda s: s.get("healthCheckNodePort"))(spec))
        if wants_node_ports:
            for port in spec.get("ports") or []:
                if isinstance(port, dict) and not port.get("nodePort"):
                    port["nodePort"] = self._free_port(used_ports)
                    used_ports.add(port["nodePort"])
        if kind == "LoadBalancer" and spec.get("externalTrafficPolicy") == "Local" \
                and not spec.get("healthCheckNodePort"):
            spec["healthCheckNodePort"] = self._free_port(used_ports)

    @staticmethod
    def keep_allocated(new: Obj, old: Obj) -> None:
        """An update that leaves allocated values out keeps them (patchAllocatedValues in the REST storage)."""
        spec, old_spec = _spec(new), old.get("spec") or {}
        if spec.get("type", "ClusterIP") == "ExternalName":
            return
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "healthCheckNodePort"):
            if key in old_spec and not spec.get(key):
                spec[key] = old_spec[key]
        old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
                     for p in old_spec.get("ports") or [] if isinstance(p, dict)}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                if previous:
                    port["nodePort"] = previous

    def _free_ip(self, used: set[str]) -> str:
        # The lower band (min(max(16, size/16), 256) addresses) is kept for static IPs; dynamic ones come from above.
        hosts = SERVICE_CIDR.num_addresses - 2
        static_band = min(max(16, SERVICE_CIDR.num_addresses // 16), 256)
        for _ in range(64):
            candidate = str(SERVICE_CIDR.network_address + self._random.randrange(static_band, hosts))
            if candidate not in used:
                return candidate
        for offset in range(2, hosts):
            candidate = str(SERVICE_CIDR.network_address + offset)
            if candidate not in used:
                return candidate
        raise RuntimeError("the service CIDR is full")

    def _free_port(self, used: set[Any]) -> int:
        free = [p for p in NODE_PORTS if p not in used]
        if not free:
            raise RuntimeError("the node port range is full")
        return self._random.choice(free)
