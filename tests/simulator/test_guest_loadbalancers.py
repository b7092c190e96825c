"""Guest LoadBalancer Services get host LoadBalancers and addresses from DHCP or an IPPool, give them
back when deleted, and only while the cloud provider runs; a changed address is noticed."""
from __future__ import annotations

import zlib
from typing import Iterator, cast

import pytest

from infra.harvester.guest import charts
from infra.harvester.guest import cluster as guests
from infra.cluster import AddressRange
from infra.harvester import ippool
from infra.harvester.guest import loadbalancers as lbs
from infra.kube import Kube
from infra.waits.budget import Budget, WaitTimeout

from .guest_support import host_kube, BUDGET, RUN_ID, LabHost, a_guest, installer

POOL_BLOCKS: dict[str, ippool.AddressBlock] = {}      # guest name -> the block of the lab's range its pool lends


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabHost]:
    with host_kube(tmp_path_factory.mktemp("guest-lb-simulator")) as kube:
        yield kube


@pytest.fixture(scope="module")
def guest(host: LabHost) -> Iterator[guests.GuestCluster]:
    with a_guest(host, "v1.31.5+rke2r1", "2.10") as found:
        pool = f"{found.name}-pool"
        reserved = host.lab.info["lab"]["loadBalancerRange"]
        block = ippool.free_block(host, AddressRange.parse(f"{reserved['start']}-{reserved['end']}"), 3)
        host.create(lbs.ippool_manifest(pool, found.name, found.host_namespace, RUN_ID, block))
        POOL_BLOCKS[found.name] = block
        installer(found).install(charts.Chart("harvester-cloud-provider", "0.2.8",
                                              values={"global": {"cattle": {"clusterName": found.name}}}))
        found.kube().create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}})
        yield found
        host.delete(lbs.LB_API, "IPPool", pool)


def test_the_load_balancer_name_is_the_cloud_providers() -> None:
    base = "g1-web-svc-"
    assert lbs.expected_lb_name("g1", "web", "svc", "uid-1") == base + f"{zlib.crc32(b'g1-web-svc-uid-1'):08x}"
    long = lbs.expected_lb_name("c" * 40, "namespace", "service-with-a-long-name", "u")
    assert len(long) == 63 and long.startswith("c" * 40)
    assert lbs.expected_lb_name("1cluster", "ns", "s", "u").startswith("a1cluster-ns-s-")


def test_dhcp_and_pool_addresses_show_their_source_and_come_back(guest: guests.GuestCluster) -> None:
    kube = guest.kube()
    for name, ipam in (("dhcp-svc", "dhcp"), ("pool-svc", "pool")):
        kube.create(lbs.service_manifest("web", name, ipam, RUN_ID))
    served = {}
    for name in ("dhcp-svc", "pool-svc"):
        service = lbs.wait_service_address(kube, "web", name, BUDGET)
        served[name] = lbs.served_address(guest, guest.name, service, BUDGET)
    network = lbs.guest_vm_network(guest)
    assert network.subnet is not None, f"the lab's VM network declares its subnet: {network}"
    first = POOL_BLOCKS[guest.name].start
    assert served["dhcp-svc"].source == "DHCP on the VM network"
    assert lbs.in_network(served["dhcp-svc"].address, network.subnet)
    assert served["pool-svc"].source == f"IPPool {guest.name}-pool" and served["pool-svc"].address == first
    lb = guest.host.get(lbs.LB_API, "LoadBalancer", served["dhcp-svc"].host_lb, guest.host_namespace)
    assert lb["metadata"]["labels"] == {"cloudprovider.harvesterhci.io/cluster": guest.name,
                                        "cloudprovider.harvesterhci.io/serviceNamespace": "web",
                                        "cloudprovider.harvesterhci.io/serviceName": "dhcp-svc"}
    lab = cast(LabHost, guest.host).lab.info["lab"]      # a_guest() made it from the LabHost fixture
    dhcp_range, reserved = lab["vmNetwork"]["dhcpRange"], lab["loadBalancerRange"]
    last = int(served["dhcp-svc"].address.rsplit(".", 1)[1])
    assert int(dhcp_range["start"].rsplit(".", 1)[1]) <= last <= int(dhcp_range["end"].rsplit(".", 1)[1])
    assert not int(reserved["start"].rsplit(".", 1)[1]) <= last <= int(reserved["end"].rsplit(".", 1)[1])

    for name in ("dhcp-svc", "pool-svc"):
        kube.delete("v1", "Service", name, "web")
        kube.wait_for_gone("v1", "Service", name, namespace="web", budget=BUDGET)
    lbs.wait_no_host_lbs(guest, guest.name, BUDGET)
    lbs.wait_pool_released(guest.host, f"{guest.name}-pool", [first], BUDGET)


def test_a_pool_load_balancer_without_a_matching_pool_says_why(host: Kube) -> None:
    with a_guest(host) as lonely:
        installer(lonely).install(charts.Chart("harvester-cloud-provider", "0.2.9",
                                               values={"global": {"cattle": {"clusterName": lonely.name}}}))
        lonely.kube().create(lbs.service_manifest("default", "nowhere", "pool", RUN_ID))
        lb = host.wait_for_all(lbs.LB_API, "LoadBalancer", lambda found: any(
            c.get("type") == "Ready" and c.get("status") == "False" for lb in found
            for c in (lb.get("status") or {}).get("conditions") or []), budget=BUDGET, namespace=lonely.host_namespace,
            label_selector=f"cloudprovider.harvesterhci.io/cluster={lonely.name}", awaited="a not-Ready LoadBalancer")[0]
        ready = next(c for c in lb["status"]["conditions"] if c["type"] == "Ready")
        assert ready["message"].startswith("no matched IPPool")
        with pytest.raises(WaitTimeout):
            lbs.wait_service_address(lonely.kube(), "default", "nowhere", Budget("short", 1.5))
        lonely.kube().delete("v1", "Service", "nowhere", "default")
        lbs.wait_no_host_lbs(lonely, lonely.name, BUDGET)


def test_nothing_happens_on_the_host_without_the_cloud_provider(host: Kube) -> None:
    with a_guest(host) as bare:
        bare.kube().create(lbs.service_manifest("default", "idle", "dhcp", RUN_ID))
        with pytest.raises(WaitTimeout, match="to get an ingress address"):
            lbs.wait_service_address(bare.kube(), "default", "idle", Budget("short", 1.5))
        assert lbs.host_load_balancers(bare, bare.name) == []
        bare.kube().delete("v1", "Service", "idle", "default")


def test_the_address_watch_notices_a_changed_address(guest: guests.GuestCluster) -> None:
    kube = guest.kube()
    kube.create(lbs.service_manifest("web", "watched", "pool", RUN_ID))
    service = lbs.wait_service_address(kube, "web", "watched", BUDGET)
    address = lbs.ingress_ip(service)
    with lbs.AddressWatch(kube, "web", {"watched": address}, window=5) as watch:
        kube.patch("v1", "Service", "watched", {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.99"}]}}},
                   namespace="web", subresource="status")
        kube.wait_for("v1", "Service", "watched", lambda s: lbs.ingress_ip(s) == address, budget=BUDGET,
                      namespace="web", awaited="kube-vip to restore the address")
    assert ("watched", address, "203.0.113.99") in [(c.service, c.before, c.after) for c in watch.changes]
    kube.delete("v1", "Service", "watched", "web")
    kube.wait_for_gone("v1", "Service", "watched", namespace="web", budget=BUDGET)
