"""The simulator behaves like kube-apiserver for the `kubernetes` Python client (dynamic and typed)."""
from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from typing import Any, cast

import kubernetes
import pytest
import urllib3
import yaml
from kubernetes.client.exceptions import ApiException

from infra.kube import ApiFailure, Kube, NotFound
from infra.waits.budget import Budget, WaitTimeout

from .crd_fixtures import GADGETS, WIDGETS

W = "e2e.example.com/v1"


@pytest.fixture(scope="module")
def test_kinds(kube: Kube) -> None:
    for crd in (WIDGETS, GADGETS):
        if kube.find(crd["apiVersion"], crd["kind"], crd["metadata"]["name"]) is None:
            kube.create(crd)


def widget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": W, "kind": "Widget", "metadata": {"name": name, "namespace": namespace},
            "spec": spec or {"size": 1, "color": "red"}}


def gadget(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {**widget(name, namespace, **spec), "kind": "Gadget"}


# --- transport and auth -------------------------------------------------------------------------
def _cluster(simulator) -> dict[str, Any]:  # noqa: ANN001
    return yaml.safe_load(simulator.kubeconfig.read_text())


def test_server_certificate_is_verified_against_the_run_ca(simulator) -> None:  # noqa: ANN001
    server = _cluster(simulator)["clusters"][0]["cluster"]["server"]
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(server + "/version", context=ssl.create_default_context(), timeout=5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)


def test_requests_without_the_token_get_401(simulator, kube: Kube) -> None:  # noqa: ANN001
    config = kubernetes.client.Configuration()
    config.host = kube.api_client.configuration.host
    config.ssl_ca_cert = kube.api_client.configuration.ssl_ca_cert
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(config))
    with pytest.raises(ApiException) as caught:
        core.list_node()
    assert caught.value.status == 401
    assert json.loads(caught.value.body)["reason"] == "Unauthorized"


# --- discovery ----------------------------------------------------------------------------------
def test_discovery_lists_core_kinds_and_harvester_crds_with_short_names(kube: Kube) -> None:
    assert kube.resource("v1", "Node").namespaced is False
    pools = kube.resource("loadbalancer.harvesterhci.io/v1beta1", "IPPool")
    assert pools.namespaced is False and {"pool", "pools"} <= set(pools.short_names)
    assert kube.resource("harvesterhci.io/v1beta1", "Upgrade").namespaced is True
    assert kube.server_version()["major"] == "1"


def test_a_crd_registered_at_run_time_is_discovered(kube: Kube, test_kinds: None) -> None:
    widgets = kube.resource(W, "Widget")
    assert widgets.short_names == ["wid"]
    crd = kube.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.e2e.example.com")
    established = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert established["Established"] == "True"


# --- CRUD, concurrency, generation --------------------------------------------------------------
def test_create_get_update_delete_a_namespaced_custom_object(kube: Kube, namespace: str, test_kinds: None) -> None:
    created = kube.create(widget("w1", namespace))
    assert created["metadata"]["uid"] and created["metadata"]["generation"] == 1
    assert created["metadata"]["creationTimestamp"].endswith("Z")
    got = kube.get(W, "Widget", "w1", namespace)
    got["spec"]["size"] = 2
    updated = kube.replace(got)
    assert updated["spec"]["size"] == 2 and updated["metadata"]["generation"] == 2
    assert int(updated["metadata"]["resourceVersion"]) > int(got["metadata"]["resourceVersion"])
    assert kube.delete(W, "Widget", "w1", namespace) is True
    assert kube.find(W, "Widget", "w1", namespace) is None
    assert kube.delete(W, "Widget", "w1", namespace) is False


def test_cluster_scoped_objects_have_no_namespace(kube: Kube) -> None:
    setting = kube.get("harvesterhci.io/v1beta1", "Setting", "server-version")
    assert "namespace" not in setting["metadata"]


def test_a_stale_update_is_a_409_conflict_with_a_status_body(kube: Kube, namespace: str, test_kinds: None) -> None:
    first = kube.create(widget("w2", namespace))
    stale = dict(first)
    first["spec"]["size"] = 5
    kube.replace(first)
    stale["spec"] = {"size": 6, "color": "red"}
    with pytest.raises(ApiFailure) as caught:
        kube.replace(stale)
    assert caught.value.status == 409 and caught.value.reason == "Conflict"
    assert "the object has been modified" in caught.value.message


def test_generation_moves_on_spec_changes_only(kube: Kube, namespace: str, test_kinds: None) -> None:
    kube.create(widget("w3", namespace))
    labelled = kube.patch(W, "Widget", "w3", {"metadata": {"labels": {"a": "b"}}}, namespace=namespace)
    assert labelled["metadata"]["generation"] == 1
    respec = kube.patch(W, "Widget", "w3", {"spec": {"size": 9}}, namespace=namespace)
    assert respec["metadata"]["generation"] == 2


def test_create_of_an_existing_name_is_409_already_exists(kube: Kube, namespace: str, test_kinds: None) -> None:
    kube.create(widget("w4", namespace))
    with pytest.raises(ApiFailure) as caught:
        kube.create(widget("w4", namespace))
    assert caught.value.reason == "AlreadyExists" and caught.value.status == 409


def test_missing_objects_are_404_not_found_status(kube: Kube) -> None:
    with pytest.raises(NotFound) as caught:
        kube.get("v1", "ConfigMap", "nope", "default")
    assert caught.value.message == 'configmaps "nope" not found'


def test_schema_rejects_an_invalid_enum_value(kube: Kube, namespace: str, test_kinds: None) -> None:
    with pytest.raises(ApiFailure) as caught:
        kube.create(widget("w5", namespace, size=1, color="green"))
    assert caught.value.status == 422 and "spec.color" in caught.value.message


# --- the status subresource rule, both ways -----------------------------------------------------
def test_with_a_status_subresource_a_put_cannot_change_status(kube: Kube, namespace: str, test_kinds: None) -> None:
    kube.create(widget("ws", namespace))
    current = kube.get(W, "Widget", "ws", namespace)
    current["status"] = {"phase": "Forged"}
    after = kube.replace(current)
    assert "status" not in after or after["status"].get("phase") != "Forged"
    with_status = kube.patch(W, "Widget", "ws", {"status": {"phase": "Ready"}}, namespace=namespace,
                             subresource="status")
    assert with_status["status"]["phase"] == "Ready"
    respec = kube.get(W, "Widget", "ws", namespace)
    respec["spec"]["size"] = 3
    respec["status"] = {}
    kept = kube.replace(respec)
    assert kept["status"]["phase"] == "Ready", "a PUT to the main resource must keep status"


def test_without_a_status_subresource_a_put_replaces_status(kube: Kube, namespace: str, test_kinds: None) -> None:
    kube.create({**gadget("gs", namespace), "status": {"phase": "Ready"}})
    current = kube.get(W, "Gadget", "gs", namespace)
    assert current["status"]["phase"] == "Ready", "status is stored on create when it is not a subresource"
    del current["status"]
    stripped = kube.replace(current)
    assert "status" not in stripped, "a PUT without status wipes it: this is what the dashboard save does"
    with pytest.raises(NotFound):
        kube.patch(W, "Gadget", "gs", {"status": {"phase": "x"}}, namespace=namespace, subresource="status")


# --- patches ------------------------------------------------------------------------------------
def test_merge_json_and_strategic_patches(kube: Kube, namespace: str, test_kinds: None) -> None:
    kube.create(widget("wp", namespace, size=1, color="red", tags=["a", "b"]))
    merged = kube.patch(W, "Widget", "wp", {"spec": {"color": "blue", "tags": None}}, namespace=namespace)
    assert merged["spec"] == {"size": 1, "color": "blue"}
    ops = [{"op": "test", "path": "/spec/size", "value": 1}, {"op": "replace", "path": "/spec/size", "value": 7}]
    assert kube.patch(W, "Widget", "wp", ops, namespace=namespace, patch_type="json")["spec"]["size"] == 7
    with pytest.raises(ApiFailure) as failed_test:
        kube.patch(W, "Widget", "wp", [{"op": "test", "path": "/spec/size", "value": 1}], namespace=namespace,
                   patch_type="json")
    assert failed_test.value.status == 422
    with pytest.raises(ApiFailure) as smp:
        kube.patch(W, "Widget", "wp", {"spec": {"size": 2}}, namespace=namespace, patch_type="strategic")
    assert smp.value.status == 415


def test_strategic_merge_patch_merges_containers_by_name(kube: Kube, namespace: str) -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": namespace},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                           "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
                               {"name": "app", "image": "app:1"}, {"name": "sidecar", "image": "side:1"}]}}}}
    kube.create(deployment)
    patched = kube.patch("apps/v1", "Deployment", "web", {"spec": {"template": {"spec": {"containers": [
        {"name": "sidecar", "image": "side:2"}]}}}}, namespace=namespace, patch_type="strategic")
    images = {c["name"]: c["image"] for c in patched["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "app:1", "sidecar": "side:2"}


# --- dry run ------------------------------------------------------------------------------------
def test_server_side_dry_run_stores_nothing(kube: Kube, namespace: str, test_kinds: None) -> None:
    answer = kube.create(widget("dry", namespace), dry_run=True)
    assert answer["metadata"]["name"] == "dry"
    assert kube.find(W, "Widget", "dry", namespace) is None


# --- selectors and paging -----------------------------------------------------------------------
def test_label_selectors_of_every_operator(kube: Kube, namespace: str) -> None:
    for name, labels in {"a": {"tier": "web", "env": "prod"}, "b": {"tier": "db", "env": "dev"},
                         "c": {"tier": "web"}}.items():
        kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": name, "namespace": namespace, "labels": labels}})

    def names(selector: str) -> list[str]:
        return sorted(o["metadata"]["name"] for o in kube.list("v1", "ConfigMap", namespace, label_selector=selector))

    assert names("tier=web") == ["a", "c"]
    assert names("tier!=web") == ["b"]
    assert names("env in (prod,dev)") == ["a", "b"]
    assert names("env notin (prod)") == ["b", "c"]
    assert names("env") == ["a", "b"]
    assert names("!env") == ["c"]
    assert names("tier=web,env=prod") == ["a"]


def test_field_selectors_on_name_and_namespace(kube: Kube, namespace: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f1", "namespace": namespace}})
    found = kube.list("v1", "ConfigMap", None, field_selector=f"metadata.namespace={namespace},metadata.name=f1")
    assert [o["metadata"]["name"] for o in found] == ["f1"]
    with pytest.raises(ApiFailure) as caught:
        kube.list("v1", "ConfigMap", namespace, field_selector="spec.nothing=1")
    assert caught.value.status == 400 and "field label not supported" in caught.value.message


def test_limit_and_continue_page_through_a_list(kube: Kube, namespace: str) -> None:
    for i in range(7):
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"p{i}", "namespace": namespace}})
    core = kubernetes.client.CoreV1Api(kube.api_client)
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=3, _continue=token)
        seen += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3 and seen == [f"p{i}" for i in range(7)]


# --- watch --------------------------------------------------------------------------------------
def test_watch_from_a_resource_version_sees_later_events_in_order(kube: Kube, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    for i in range(3):
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"w{i}", "namespace": namespace}})
    kube.delete("v1", "ConfigMap", "w0", namespace)
    events = []
    for event in kubernetes.watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                                 timeout_seconds=2):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 4:
            break
    assert events == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2"), ("DELETED", "w0")]


def test_watch_sends_bookmarks_when_asked(kube: Kube, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    watcher = kubernetes.watch.Watch()
    kinds = [e["type"] for e in watcher.stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                               allow_watch_bookmarks=True, timeout_seconds=7)]
    assert "BOOKMARK" in kinds


def test_a_too_old_resource_version_is_410_gone(kube: Kube, simulator, namespace: str) -> None:  # noqa: ANN001
    core = kubernetes.client.CoreV1Api(kube.api_client)
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "old", "namespace": namespace}})
    from ..conftest import simulator_request as _simulator_request
    _simulator_request(simulator.kubeconfig, "/simulator/v1/faults", {"compact": True})
    with pytest.raises(ApiException) as caught:
        list(kubernetes.watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=rv,
                                             timeout_seconds=2))
    assert caught.value.status == 410


# --- finalizers and namespaces ------------------------------------------------------------------
def test_finalizers_hold_deletion_until_removed(kube: Kube, namespace: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "held", "namespace": namespace, "finalizers": ["e2e.example.com/hold"]}})
    kube.delete("v1", "ConfigMap", "held", namespace)
    held = kube.get("v1", "ConfigMap", "held", namespace)
    assert held["metadata"]["deletionTimestamp"]
    kube.patch("v1", "ConfigMap", "held", {"metadata": {"finalizers": None}}, namespace=namespace)
    assert kube.find("v1", "ConfigMap", "held", namespace) is None


def test_deleting_a_namespace_removes_what_is_in_it(kube: Kube) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}})
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "doomed"}})
    kube.delete("v1", "Namespace", "doomed")
    kube.wait_for_gone("v1", "Namespace", "doomed", budget=Budget("namespace deletion", 10))
    assert kube.find("v1", "ConfigMap", "x", "doomed") is None


# --- wait_for -----------------------------------------------------------------------------------
def test_wait_for_returns_when_the_state_holds(kube: Kube, namespace: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late", "namespace": namespace}})
    timer = threading.Timer(0.3, lambda: kube.patch("v1", "ConfigMap", "late", {"data": {"ready": "yes"}},
                                                    namespace=namespace))
    timer.start()
    obj = kube.wait_for("v1", "ConfigMap", "late", lambda o: (o or {}).get("data", {}).get("ready") == "yes",
                        budget=Budget("configmap ready", 10), awaited="data.ready=yes", namespace=namespace)
    timer.join()
    assert obj is not None and obj["data"]["ready"] == "yes"


def test_wait_for_names_the_budget_and_the_last_seen_state_when_it_runs_out(kube: Kube, namespace: str) -> None:
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "never", "namespace": namespace}})
    with pytest.raises(WaitTimeout) as caught:
        kube.wait_for("v1", "ConfigMap", "never", lambda o: False, budget=Budget("never ready", 1.5),
                      awaited="something that never happens", namespace=namespace)
    text = str(caught.value)
    assert "never ready" in text and "something that never happens" in text and "ConfigMap" in text
    assert caught.value.evidence


def test_wait_for_survives_dropped_watches(kube: Kube, simulator, namespace: str) -> None:  # noqa: ANN001
    from ..conftest import simulator_request as _simulator_request
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "drop", "namespace": namespace}})

    def drop_then_change() -> None:
        _simulator_request(simulator.kubeconfig, "/simulator/v1/faults", {"dropWatches": True, "compact": True})
        kube.patch("v1", "ConfigMap", "drop", {"data": {"k": "v"}}, namespace=namespace)

    timer = threading.Timer(0.5, drop_then_change)
    timer.start()
    obj = kube.wait_for("v1", "ConfigMap", "drop", lambda o: bool((o or {}).get("data")),
                        budget=Budget("survive drop", 15), awaited="data to appear", namespace=namespace)
    timer.join()
    assert obj is not None and obj["data"] == {"k": "v"}


def test_wait_for_rides_through_an_unavailable_api(kube: Kube, simulator, namespace: str) -> None:  # noqa: ANN001
    from ..conftest import simulator_request as _simulator_request
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "outage", "namespace": namespace}})
    _simulator_request(simulator.kubeconfig, "/simulator/v1/faults", {"errorBurst": {"count": 4, "code": 503}, "dropWatches": True})
    obj = kube.wait_for("v1", "ConfigMap", "outage", lambda o: o is not None, budget=Budget("ride outage", 20),
                        awaited="the configmap", namespace=namespace)
    assert obj is not None


# --- logs and events ----------------------------------------------------------------------------
def test_pod_logs_follow_and_tail_lines(kube: Kube) -> None:
    pods = kube.list("v1", "Pod", "harvester-system", label_selector="app.kubernetes.io/component=apiserver")
    name = pods[0]["metadata"]["name"]
    core = kubernetes.client.CoreV1Api(kube.api_client)
    # With _preload_content=False the client returns the raw urllib3 response, not the str its stubs declare.
    stream = cast(urllib3.HTTPResponse,
                  core.read_namespaced_pod_log(name, "harvester-system", container="apiserver", follow=True,
                                               tail_lines=0, _preload_content=False, _request_timeout=15))
    for value in ("info", "debug", "info"):
        kube.patch("harvesterhci.io/v1beta1", "Setting", "log-level", {"value": value})
    followed = b""
    for chunk in stream.stream(64):
        followed += chunk
        if followed.count(b"log-level") >= 3:
            break
    stream.release_conn()
    assert followed.count(b"setting log-level updated") == 3
    tail = kube.pod_log(name, "harvester-system", container="apiserver", tail_lines=2)
    assert len(tail.splitlines()) == 2 and 'value="info"' in tail.splitlines()[-1]
    events = kube.list("v1", "Event", "default", field_selector="involvedObject.name=log-level")
    assert events and events[0]["reason"] == "SettingUpdated"


# --- services/proxy -----------------------------------------------------------------------------
def test_service_proxy_answers_as_kube_apiserver_without_endpoints(kube: Kube, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(kube.api_client)
    with pytest.raises(ApiException) as missing:
        core.connect_get_namespaced_service_proxy_with_path("nosuch:80", namespace, "index.html")
    assert missing.value.status == 404
    assert json.loads(missing.value.body)["message"] == 'services "nosuch" not found'
    kube.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
                 "spec": {"ports": [{"port": 80}], "selector": {"app": "web"}}})
    with pytest.raises(ApiException) as unserved:
        core.connect_get_namespaced_service_proxy_with_path("http:web:80", namespace, "index.html")
    assert unserved.value.status == 503
    assert json.loads(unserved.value.body)["message"] == 'no endpoints available for service "web"'
