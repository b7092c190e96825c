"""kube-apiserver semantics of the simulator beyond CRUD: negotiation, APIServices, self-reviews, Status bodies,
defaulting, server-side apply, CRD ratcheting. Checked with real kubectl and raw HTTP against kube's behaviour.
"""
from __future__ import annotations

import json
import uuid

import pytest

from .apiserver_support import get_json, kubectl_for, proto_simulator, raw_request  # noqa: F401

PARTIAL_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v={v}"
PARTIAL = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v={v}"


@pytest.fixture(scope="module")
def simulator(proto_simulator):  # noqa: ANN001, ANN201, F811
    return proto_simulator


def _ns(simulator, prefix: str) -> str:  # noqa: ANN001
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    status, body = raw_request(simulator, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    assert status == 201, body
    return name


# --- 3. Accept negotiation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1", "v1beta1"])
def test_partial_object_metadata_list_has_only_metadata(simulator, version: str) -> None:  # noqa: ANN001
    ns = _ns(simulator, "pom")
    raw_request(simulator, "POST", f"/api/v1/namespaces/{ns}/configmaps", {"metadata": {"name": "c"}, "data": {"k": "v"}})
    status, body = raw_request(simulator, "GET", f"/api/v1/namespaces/{ns}/configmaps",
                               headers={"Accept": PARTIAL_LIST.format(v=version)})
    assert status == 200
    assert body["kind"] == "PartialObjectMetadataList" and body["apiVersion"] == f"meta.k8s.io/{version}"
    assert body["metadata"]["resourceVersion"]
    item = body["items"][0]
    assert set(item) == {"kind", "apiVersion", "metadata"}
    assert item["kind"] == "PartialObjectMetadata" and item["metadata"]["name"] == "c"
    status, one = raw_request(simulator, "GET", f"/api/v1/namespaces/{ns}/configmaps/c",
                              headers={"Accept": PARTIAL.format(v=version)})
    assert status == 200 and one["kind"] == "PartialObjectMetadata" and "data" not in one


def test_negotiation_falls_back_and_refuses_what_it_cannot_serve(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "GET", "/api/v1/namespaces",
                               headers={"Accept": "application/json;as=Foo;g=meta.k8s.io;v=v1, application/json"})
    assert status == 200 and body["kind"] == "NamespaceList"
    status, body = raw_request(simulator, "GET", "/api/v1/namespaces",
                               headers={"Accept": "application/json;as=Foo;g=meta.k8s.io;v=v1"})
    assert status == 406 and body["reason"] == "NotAcceptable"
    assert body["message"].startswith("only the following media types are accepted: application/json")
    status, body = raw_request(simulator, "GET", "/api/v1/namespaces/default",
                               headers={"Accept": PARTIAL_LIST.format(v="v1")})
    assert status == 406 and "not a list" in body["message"]


def test_table_negotiation_still_works(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "GET", "/api/v1/nodes", headers={
        "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"})
    assert status == 200 and body["kind"] == "Table" and len(body["rows"]) == 3


# --- 6. APIServices ------------------------------------------------------------------------------------------

def test_an_apiservice_per_served_group_version_including_crds(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "GET", "/apis/apiregistration.k8s.io/v1/apiservices")
    assert status == 200
    by_name = {item["metadata"]["name"]: item for item in body["items"]}
    assert {"v1.", "v1.apps", "v1.batch", "v1.apiextensions.k8s.io", "v1beta1.harvesterhci.io",
            "v1beta1.cluster.x-k8s.io"} <= set(by_name)
    core = by_name["v1."]
    assert core["spec"] == {"group": "", "version": "v1", "groupPriorityMinimum": 18000, "versionPriority": 1}
    crd = by_name["v1beta1.harvesterhci.io"]
    assert crd["spec"]["groupPriorityMinimum"] == 1000 and crd["spec"]["versionPriority"] == 100
    condition = crd["status"]["conditions"][0]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Available", "True", "Local")


@pytest.mark.kubectl
def test_kubectl_get_apiservices(simulator) -> None:  # noqa: ANN001
    out = kubectl_for(simulator)("get", "apiservices").stdout.splitlines()
    assert out[0].split() == ["NAME", "SERVICE", "AVAILABLE", "AGE"]
    assert any(line.split()[:3] == ["v1.apps", "Local", "True"] for line in out)


# --- 7. self reviews -----------------------------------------------------------------------------------------

@pytest.mark.kubectl
def test_kubectl_auth_can_i_and_whoami_answer_as_for_cluster_admin(simulator) -> None:  # noqa: ANN001
    kubectl = kubectl_for(simulator)
    assert kubectl("auth", "can-i", "delete", "pods", "-n", "kube-system").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "*", "*").stdout.strip() == "yes"
    assert kubectl("auth", "can-i", "get", "/healthz").stdout.strip() == "yes"
    listed = kubectl("auth", "can-i", "--list", "-n", "default").stdout
    assert listed.splitlines()[1].split()[:1] == ["*.*"]
    whoami = kubectl("auth", "whoami", "-o", "json").stdout
    assert json.loads(whoami)["status"]["userInfo"]["groups"][0] == "system:masters"


def test_reviews_are_create_only(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "GET", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    status, body = raw_request(simulator, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                               {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                                "spec": {"resourceAttributes": {"verb": "get", "resource": "nodes"}}})
    assert status == 201 and body["status"] == {"allowed": True}
    assert body["metadata"] == {"creationTimestamp": None}


# --- 5. Status bodies ----------------------------------------------------------------------------------------

def test_not_found_already_exists_conflict_details_name_the_resource(simulator) -> None:  # noqa: ANN001
    ns = _ns(simulator, "status")
    status, body = raw_request(simulator, "GET", f"/apis/apps/v1/namespaces/{ns}/deployments/nope")
    assert status == 404 and body["message"] == 'deployments.apps "nope" not found'
    assert body["details"] == {"name": "nope", "group": "apps", "kind": "deployments"}
    cm = {"metadata": {"name": "c"}, "data": {}}
    raw_request(simulator, "POST", f"/api/v1/namespaces/{ns}/configmaps", cm)
    status, body = raw_request(simulator, "POST", f"/api/v1/namespaces/{ns}/configmaps", cm)
    assert status == 409 and body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "c", "kind": "configmaps"}
    status, body = raw_request(simulator, "PUT", f"/api/v1/namespaces/{ns}/configmaps/c",
                               {"metadata": {"name": "c", "resourceVersion": "1"}, "data": {}})
    assert status == 409 and body["reason"] == "Conflict" and body["details"] == {"name": "c", "kind": "configmaps"}
    assert body["message"].startswith('Operation cannot be fulfilled on configmaps "c": the object has been modified')


def test_invalid_lists_each_cause_with_reason_and_field(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "POST", "/apis/loadbalancer.harvesterhci.io/v1beta1/ippools",
                               {"apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
                                "metadata": {"name": "bad-pool"}, "spec": {"ranges": "nope"}})
    assert status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('IPPool.loadbalancer.harvesterhci.io "bad-pool" is invalid: ')
    assert body["details"]["name"] == "bad-pool" and body["details"]["kind"] == "IPPool"
    assert body["details"]["group"] == "loadbalancer.harvesterhci.io"
    cause = body["details"]["causes"][0]
    assert cause["field"] == "spec.ranges" and cause["reason"] == "FieldValueInvalid"
    assert cause["message"].startswith('Invalid value: "string": spec.ranges in body must be of type array')


def test_unknown_paths_and_methods_answer_like_kube(simulator) -> None:  # noqa: ANN001
    status, body = raw_request(simulator, "GET", "/apis/nosuch.example.com/v1/things")
    assert status == 404 and body["details"] == {} and body["message"] == "the server could not find the requested resource"
    status, body = raw_request(simulator, "PUT", "/api/v1/namespaces/default/configmaps")
    assert status == 405 and body["reason"] == "MethodNotAllowed" and body["details"] == {}


# --- 4. defaulting ------------------------------------------------------------------------------------------

def _create(simulator, path: str, obj: dict) -> dict:  # noqa: ANN001
    status, body = raw_request(simulator, "POST", path, obj)
    assert status == 201, body
    return body


def test_a_created_service_gets_a_cluster_ip_from_rke2s_service_cidr_and_status(simulator) -> None:  # noqa: ANN001
    import ipaddress

    ns = _ns(simulator, "svc")
    svc = _create(simulator, f"/api/v1/namespaces/{ns}/services", {
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    spec = svc["spec"]
    assert ipaddress.ip_address(spec["clusterIP"]) in ipaddress.ip_network("10.43.0.0/16")
    assert spec["clusterIPs"] == [spec["clusterIP"]]
    assert spec["type"] == "ClusterIP" and spec["sessionAffinity"] == "None"
    assert spec["ipFamilies"] == ["IPv4"] and spec["ipFamilyPolicy"] == "SingleStack"
    assert spec["internalTrafficPolicy"] == "Cluster" and "externalTrafficPolicy" not in spec
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert svc["status"] == {"loadBalancer": {}}
    lb = _create(simulator, f"/api/v1/namespaces/{ns}/services", {
        "metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "targetPort": "https"}]}})
    assert lb["spec"]["externalTrafficPolicy"] == "Cluster" and lb["spec"]["allocateLoadBalancerNodePorts"] is True
    assert 30000 <= lb["spec"]["ports"][0]["nodePort"] <= 32767 and lb["spec"]["ports"][0]["targetPort"] == "https"
    assert lb["spec"]["clusterIP"] != spec["clusterIP"]
    headless = _create(simulator, f"/api/v1/namespaces/{ns}/services", {
        "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})
    assert headless["spec"]["clusterIPs"] == ["None"] and headless["spec"]["ipFamilyPolicy"] == "RequireDualStack"
    # An update that leaves the allocated values out keeps them.
    allocated = svc["spec"].pop("clusterIP")
    svc["spec"].pop("clusterIPs")
    status, updated = raw_request(simulator, "PUT", f"/api/v1/namespaces/{ns}/services/web", svc)
    assert status == 200 and updated["spec"]["clusterIP"] == allocated


def test_workloads_and_pods_are_defaulted_as_kube_defaults_them(simulator) -> None:  # noqa: ANN001
    ns = _ns(simulator, "dflt")
    template = {"metadata": {"labels": {"app": "a"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}, {"name": "d", "image": "busybox:1.36"}]}}
    deploy = _create(simulator, f"/apis/apps/v1/namespaces/{ns}/deployments", {
        "metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}})
    spec = deploy["spec"]
    assert spec["replicas"] == 1 and spec["revisionHistoryLimit"] == 10 and spec["progressDeadlineSeconds"] == 600
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    pod_spec = spec["template"]["spec"]
    assert (pod_spec["restartPolicy"], pod_spec["dnsPolicy"], pod_spec["schedulerName"]) == \
        ("Always", "ClusterFirst", "default-scheduler")
    assert pod_spec["terminationGracePeriodSeconds"] == 30 and pod_spec["securityContext"] == {}
    first, second = pod_spec["containers"]
    assert first["imagePullPolicy"] == "Always" and second["imagePullPolicy"] == "IfNotPresent"
    assert first["terminationMessagePath"] == "/dev/termination-log" and first["terminationMessagePolicy"] == "File"
    assert "serviceAccountName" not in pod_spec, "templates are not admitted: no service account is filled in"
    ds = _create(simulator, f"/apis/apps/v1/namespaces/{ns}/daemonsets", {
        "metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}})
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    sts = _create(simulator, f"/apis/apps/v1/namespaces/{ns}/statefulsets", {
        "metadata": {"name": "a"}, "spec": {"selector": {"matchLabels": {"app": "a"}}, "serviceName": "a",
                                            "template": template}})
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    job_template = {**template, "spec": {**template["spec"], "restartPolicy": "Never"}}
    job = _create(simulator, f"/apis/batch/v1/namespaces/{ns}/jobs", {"metadata": {"name": "j"},
                                                                "spec": {"template": job_template}})
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["backoffLimit"]) == (1, 1, 6)
    assert job["spec"]["completionMode"] == "NonIndexed" and job["spec"]["suspend"] is False
    pod = _create(simulator, f"/api/v1/namespaces/{ns}/pods", {"metadata": {"name": "p"}, "spec": template["spec"]})
    assert pod["spec"]["serviceAccountName"] == "default" and pod["spec"]["enableServiceLinks"] is True
    assert pod["spec"]["priority"] == 0 and pod["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    assert {t["key"] for t in pod["spec"]["tolerations"]} == {"node.kubernetes.io/not-ready",
                                                               "node.kubernetes.io/unreachable"}


def test_namespace_secret_and_pvc_defaults(simulator) -> None:  # noqa: ANN001
    ns = _ns(simulator, "misc")
    status, namespace = raw_request(simulator, "GET", f"/api/v1/namespaces/{ns}")
    assert namespace["spec"] == {"finalizers": ["kubernetes"]} and namespace["status"] == {"phase": "Active"}
    assert namespace["metadata"]["labels"] == {"kubernetes.io/metadata.name": ns}
    assert "generation" not in namespace["metadata"]
    secret = _create(simulator, f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": "s"}, "data": {}})
    assert secret["type"] == "Opaque"
    pvc = _create(simulator, f"/api/v1/namespaces/{ns}/persistentvolumeclaims", {
        "metadata": {"name": "v"}, "spec": {"accessModes": ["ReadWriteOnce"],
                                            "resources": {"requests": {"storage": "1Gi"}}}})
    assert pvc["spec"]["volumeMode"] == "Filesystem" and pvc["status"] == {"phase": "Pending"}


# --- 8. CRD validation ratcheting -----------------------------------------------------------------------------

def _ratchet_crd(max_length: int | None) -> dict:
    name_schema: dict = {"type": "string"}
    if max_length is not None:
        name_schema["maxLength"] = max_length
    spec_schema = {"type": "object", "properties": {"name": name_schema, "size": {"type": "integer"},
                                                    "owner": {"type": "object", "required": ["team"] if max_length
                                                              else [], "properties": {"team": {"type": "string"},
                                                                                      "room": {"type": "string"}}}}}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "ratchets.e2e.example.com"},
            "spec": {"group": "e2e.example.com", "scope": "Cluster",
                     "names": {"plural": "ratchets", "singular": "ratchet", "kind": "Ratchet", "listKind": "RatchetList"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "properties": {"spec": spec_schema}}}}]}}


def test_crd_validation_ratchets_errors_on_unchanged_fields(simulator) -> None:  # noqa: ANN001
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    _create(simulator, crds, _ratchet_crd(None))
    path = "/apis/e2e.example.com/v1/ratchets"
    _create(simulator, path, {"apiVersion": "e2e.example.com/v1", "kind": "Ratchet", "metadata": {"name": "r"},
                         "spec": {"name": "a-name-longer-than-eight", "size": 1, "owner": {"room": "b2"}}})
    _, crd = raw_request(simulator, "GET", f"{crds}/ratchets.e2e.example.com")
    crd["spec"] = _ratchet_crd(8)["spec"]                      # the schema tightens after the object exists
    status, body = raw_request(simulator, "PUT", f"{crds}/ratchets.e2e.example.com", crd)
    assert status == 200, body
    _, obj = raw_request(simulator, "GET", f"{path}/r")
    obj["spec"]["size"] = 2                                    # the too-long name and missing team are unchanged
    status, body = raw_request(simulator, "PUT", f"{path}/r", obj)
    assert status == 200, body
    obj = body
    obj["spec"]["name"] = "still-longer-than-eight"            # a changed value is validated
    status, body = raw_request(simulator, "PUT", f"{path}/r", obj)
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.name"
    status, body = raw_request(simulator, "PATCH", f"{path}/r", {"spec": {"owner": {"room": "c3"}}},
                               headers={"Content-Type": "application/merge-patch+json"})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.owner.team"
    raw_request(simulator, "DELETE", f"{crds}/ratchets.e2e.example.com")


# --- 2. server-side apply and managedFields -------------------------------------------------------------------

def _managed(obj: dict) -> dict:
    return {(e["manager"], e["operation"]): e for e in obj["metadata"].get("managedFields") or []}


@pytest.mark.kubectl
def test_every_write_records_managed_fields(simulator) -> None:  # noqa: ANN001
    kubectl = kubectl_for(simulator)
    ns = _ns(simulator, "mf")
    kubectl("create", "configmap", "c", "-n", ns, "--from-literal=a=1")
    kubectl("label", "configmap", "c", "-n", ns, "tier=web")
    obj = get_json(kubectl, "configmap", "c", "-n", ns, "--show-managed-fields")
    entries = _managed(obj)
    assert entries[("kubectl-create", "Update")]["fieldsV1"] == {"f:data": {".": {}, "f:a": {}}}
    label = entries[("kubectl-label", "Update")]
    assert label["fieldsV1"] == {"f:metadata": {"f:labels": {".": {}, "f:tier": {}}}}
    assert label["fieldsType"] == "FieldsV1" and label["apiVersion"] == "v1" and label["time"].endswith("Z")
    status, body = raw_request(simulator, "POST", f"/api/v1/namespaces/{ns}/configmaps",
                               {"metadata": {"name": "u"}, "data": {"k": "v"}}, headers={"User-Agent": "my-operator/1.2 (linux)"})
    assert status == 201 and body["metadata"]["managedFields"][0]["manager"] == "my-operator"


@pytest.mark.kubectl
def test_kubectl_apply_server_side_creates_updates_conflicts_and_forces(simulator, tmp_path) -> None:  # noqa: ANN001
    kubectl = kubectl_for(simulator)
    ns = _ns(simulator, "ssa")
    manifest = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": ns},
                "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                         "template": {"metadata": {"labels": {"app": "web"}},
                                      "spec": {"containers": [{"name": "web", "image": "nginx:1.25",
                                                               "env": [{"name": "A", "value": "1"},
                                                                       {"name": "B", "value": "2"}]}]}}}}
    out = kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest)).stdout
    assert "serverside-applied" in out
    live = get_json(kubectl, "deployment", "web", "-n", ns, "--show-managed-fields")
    applied = _managed(live)[("kubectl", "Apply")]["fieldsV1"]
    container = applied["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"web"}']
    assert set(container["f:env"]) == {'k:{"name":"A"}', 'k:{"name":"B"}'}
    assert "f:revisionHistoryLimit" not in applied["f:spec"], "defaulted fields are not the applier's"
    # Fields dropped from the configuration go away; the rest stays.
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest))
    env = get_json(kubectl, "deployment", "web", "-n", ns)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "1"}]
    # Another manager takes spec.replicas; applying a different value conflicts, --force-conflicts takes it back.
    kubectl("scale", "deployment", "web", "-n", ns, "--replicas=3")
    kubectl("patch", "deployment", "web", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":4}}',
            "--field-manager=scaler")
    failed = kubectl("apply", "--server-side", "-f", "-", input=json.dumps(manifest), check=False)
    assert failed.returncode != 0
    assert 'Apply failed with 1 conflict: conflict with "scaler" using apps/v1 at ' in failed.stderr
    assert failed.stderr.split("\n")[0].endswith(": .spec.replicas")
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(manifest))
    live = get_json(kubectl, "deployment", "web", "-n", ns, "--show-managed-fields")
    assert live["spec"]["replicas"] == 2
    scaler = _managed(live).get(("scaler", "Update"))
    assert scaler is None or "f:replicas" not in scaler["fieldsV1"].get("f:spec", {})


def test_apply_conflict_status_body(simulator) -> None:  # noqa: ANN001
    ns = _ns(simulator, "ssa409")
    path = f"/api/v1/namespaces/{ns}/configmaps/c"
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "one"}}
    apply = {"Content-Type": "application/apply-patch+yaml"}
    status, body = raw_request(simulator, "PATCH", path, config, headers=apply)
    assert status == 400 and "fieldManager" in body["message"]
    status, body = raw_request(simulator, "PATCH", path + "?fieldManager=first", config, headers=apply)
    assert status == 201
    config["data"]["k"] = "two"
    status, body = raw_request(simulator, "PATCH", path + "?fieldManager=second", config, headers=apply)
    assert status == 409 and body["reason"] == "Conflict"
    assert body["message"] == 'Apply failed with 1 conflict: conflict with "first": .data.k'
    assert body["details"]["causes"] == [{"reason": "FieldManagerConflict", "message": 'conflict with "first"',
                                          "field": ".data.k"}]
    status, body = raw_request(simulator, "PATCH", path + "?fieldManager=second&force=true&dryRun=All", config,
                               headers=apply)
    assert status == 200 and body["data"] == {"k": "two"}
    _, live = raw_request(simulator, "GET", path)
    assert live["data"] == {"k": "one"}, "a server dry run stores nothing"


def test_apply_to_a_custom_resource_uses_the_schema_list_types(simulator) -> None:  # noqa: ANN001
    path = "/apis/loadbalancer.harvesterhci.io/v1beta1/ippools/ssa-pool"
    config = {"apiVersion": "loadbalancer.harvesterhci.io/v1beta1", "kind": "IPPool",
              "metadata": {"name": "ssa-pool"}, "spec": {"ranges": [{"subnet": "192.0.2.0/24"}]}}
    apply = {"Content-Type": "application/apply-patch+yaml"}
    status, body = raw_request(simulator, "PATCH", path + "?fieldManager=tool", config, headers=apply)
    assert status == 201, body
    fields = body["metadata"]["managedFields"][0]
    assert fields["operation"] == "Apply" and "f:ranges" in fields["fieldsV1"]["f:spec"]
    config["spec"]["ranges"] = [{"subnet": "198.51.100.0/24"}]
    status, body = raw_request(simulator, "PATCH", path + "?fieldManager=tool", config, headers=apply)
    assert status == 200 and body["spec"]["ranges"] == [{"subnet": "198.51.100.0/24"}]
    raw_request(simulator, "DELETE", path)


# --- 9. seeded objects against the upstream schema -----------------------------------------------------------

@pytest.mark.kubectl
def test_a_seeded_machine_can_be_replaced_under_the_upstream_capi_crd(simulator) -> None:  # noqa: ANN001
    from ..conftest import UPSTREAM_CRDS

    kubectl = kubectl_for(simulator)
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(UPSTREAM_CRDS / "cluster.x-k8s.io_machines.yaml"))
    machines = get_json(kubectl, "machines", "-n", "fleet-local")["items"]
    assert len(machines) == 3
    machine = machines[0]
    machine["metadata"].setdefault("labels", {})["e2e/replaced"] = "yes"
    kubectl("replace", "-f", "-", input=json.dumps(machine))
    again = get_json(kubectl, "machine", machine["metadata"]["name"], "-n", "fleet-local")
    assert again["metadata"]["labels"]["e2e/replaced"] == "yes"
