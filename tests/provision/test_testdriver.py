"""Provisioning against libvirt's test driver (`test:///default`): everything but running a real guest.

Networks, pools, volumes and domains are created with the run id in their names and metadata; teardown
removes exactly those, newest first, on success, failure and interrupt; the leak audit and the cleanup by
run id find and remove only the run's objects.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.cleanup import CleanupStack
from infra.provision import (
    ClusterProvisioner,
    GoldenStore,
    InstallConfigServer,
    PlanRefused,
    leak_audit,
    owned_objects,
    plan_cluster,
    remove_run,
)
from infra.provision.ownership import METADATA_NAMESPACE, mark_of
from infra.waits.budget import Budget, WaitTimeout

from .conftest import guest_settings, harvester_settings


def provision_guests(conn: Any, tmp_path: Path, run_id: str, stack: CleanupStack, **overrides: Any) -> ClusterProvisioner:
    plan = plan_cluster(guest_settings(tmp_path, **overrides), run_id, "none", tmp_path / run_id)
    provisioner = ClusterProvisioner(conn, plan, stack)
    provisioner.create_infrastructure()
    provisioner.boot_all()
    return provisioner


def kinds(objects: list[Any]) -> list[tuple[str, str]]:
    return [(o.kind, o.name) for o in objects]


def test_a_run_creates_its_objects_marked_with_its_id_and_teardown_removes_them_newest_first(
        conn: Any, tmp_path: Path, run_id: str, caplog: pytest.LogCaptureFixture) -> None:
    stack = CleanupStack()
    provisioner = provision_guests(conn, tmp_path, run_id, stack)
    assert kinds(leak_audit(conn, run_id)) == [
        ("domain", f"{run_id}-node0"), ("domain", f"{run_id}-node1"),
        ("volume", f"{run_id}-node0.qcow2"), ("volume", f"{run_id}-node1.qcow2"),
        ("pool", f"{run_id}-pool"), ("network", f"{run_id}-net")]
    for node in provisioner.plan.nodes:
        domain = conn.lookupByName(node.domain)
        assert domain.isActive()
        assert mark_of(domain.XMLDesc(0)) == {"id": run_id, "node": node.hostname}
        assert domain.metadata(2, METADATA_NAMESPACE) == f'<run id="{run_id}" node="{node.hostname}"/>'
    assert mark_of(conn.networkLookupByName(f"{run_id}-net").XMLDesc(0)) == {"id": run_id}
    assert conn.networkLookupByName(f"{run_id}-net").isActive()

    with caplog.at_level(logging.INFO, logger="harvester_e2e.cleanup"):
        assert stack.run() == []
    removed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cleaned up: ")]
    first_of = {kind: next(i for i, m in enumerate(removed) if kind in m)
                for kind in ("domain", "volume", "storage pool", "network")}
    assert first_of["domain"] < first_of["volume"] < first_of["storage pool"] < first_of["network"]
    assert leak_audit(conn, run_id) == []


def test_nothing_foreign_is_touched(conn: Any, tmp_path: Path, run_id: str) -> None:
    before = {d.name() for d in conn.listAllDomains()} | {n.name() for n in conn.listAllNetworks()} \
        | {p.name() for p in conn.listAllStoragePools()}
    stack = CleanupStack()
    provision_guests(conn, tmp_path, run_id, stack)
    assert stack.run() == []
    after = {d.name() for d in conn.listAllDomains()} | {n.name() for n in conn.listAllNetworks()} \
        | {p.name() for p in conn.listAllStoragePools()}
    assert after == before and {"test", "default", "default-pool"} <= after


def test_a_clashing_subnet_is_refused_before_anything_is_created(conn: Any, tmp_path: Path, run_id: str) -> None:
    # The test driver's own "default" network holds 192.168.122.0/24, as on many libvirt hosts.
    plan = plan_cluster(guest_settings(tmp_path, network_cidr="192.168.122.0/24"), run_id, "none", tmp_path)
    with pytest.raises(PlanRefused) as caught:
        ClusterProvisioner(conn, plan, CleanupStack()).create_infrastructure()
    message = str(caught.value)
    assert message.startswith("refused before creating anything: ")
    assert "libvirt.network_cidr: 192.168.122.0/24 overlaps libvirt network 'default' (192.168.122.0/24)" in message
    assert "choose a free subnet, e.g. 192.168.100.0/24" in message
    assert owned_objects(conn, run_id) == []


def test_a_run_id_still_in_use_is_refused(conn: Any, tmp_path: Path, run_id: str) -> None:
    stack = CleanupStack()
    provision_guests(conn, tmp_path, run_id, stack)
    try:
        plan = plan_cluster(guest_settings(tmp_path), run_id, "none", tmp_path)
        with pytest.raises(PlanRefused, match=f"run id '{run_id}' is in use; run `harvester-e2e cleanup --run-id"):
            ClusterProvisioner(conn, plan, CleanupStack()).create_infrastructure()
    finally:
        stack.run()


def test_power_operations_change_the_domain_state(conn: Any, tmp_path: Path, run_id: str) -> None:
    stack = CleanupStack()
    provisioner = provision_guests(conn, tmp_path, run_id, stack, nodes=1)
    try:
        control = provisioner.result.control("harvester-node-0")
        assert control.state() == "running"
        control.power("destroy")
        assert control.state() == "shut off"
        control.power("start")
        assert control.state() == "running"
        control.power("reboot")
        assert control.state() == "running"
        control.power("shutdown", Budget("test shutdown", 10))
        assert control.state() == "shut off"
        with pytest.raises(ValueError, match="unknown power action 'hibernate'; valid: reboot, shutdown"):
            control.power("hibernate")
    finally:
        stack.run()


def test_snapshot_and_revert(conn: Any, tmp_path: Path, run_id: str) -> None:
    stack = CleanupStack()
    provisioner = provision_guests(conn, tmp_path, run_id, stack, nodes=1)
    try:
        control = provisioner.result.control("harvester-node-0")
        snapshot = control.snapshot("before-upgrade", run_id)
        assert ET.fromstring(snapshot.getXMLDesc(0)).findtext("description") == f"taken by harvester-e2e run {run_id}"
        control.power("destroy")
        control.revert("before-upgrade")
        assert control.state() == "running"           # a snapshot of a running domain reverts to running
        assert control.snapshots() == ["before-upgrade"]
    finally:
        stack.run()
    assert leak_audit(conn, run_id) == []               # the snapshot went with its domain


def test_cleanup_by_run_id_removes_only_that_run(conn: Any, tmp_path: Path, run_id: str) -> None:
    other = run_id + "-other"
    aborted, survivor = CleanupStack(), CleanupStack()
    provision_guests(conn, tmp_path, run_id, aborted)
    provision_guests(conn, tmp_path, other, survivor, network_cidr="10.232.0.0/24")
    try:
        # the process running `aborted` "died": its teardown stack never runs
        report = remove_run(conn, run_id)
        assert report.failed == [] and report.left == []
        assert len(report.removed) == 6
        assert [o.kind for o in report.removed] == ["domain", "domain", "volume", "volume", "pool", "network"]
        assert len(leak_audit(conn, other)) == 6
    finally:
        survivor.run()
    assert leak_audit(conn, other) == []


def test_cleanup_command_removes_an_aborted_run_and_lists_runs(conn: Any, tmp_path: Path, run_id: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from infra.provision.cleanup_cli import main

    stack = CleanupStack()
    provision_guests(conn, tmp_path, run_id, stack)
    # the run was aborted: its teardown stack never runs
    assert main(["--list", "--uri", "test:///default"]) == 0
    assert f"{run_id}: 2 domains, 2 volumes, 1 pool, 1 network" in capsys.readouterr().out
    assert main(["--run-id", run_id, "--uri", "test:///default", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would remove domain {run_id}-node0" in out and leak_audit(conn, run_id) != []
    assert main(["--run-id", run_id, "--uri", "test:///default"]) == 0
    out = capsys.readouterr().out
    assert f"removed 6 objects of run {run_id}; nothing left" in out
    assert leak_audit(conn, run_id) == []
    assert main(["--run-id", run_id, "--uri", "test:///default"]) == 0
    assert f"nothing of run {run_id} in test:///default" in capsys.readouterr().out


def test_cleanup_command_refuses_a_bad_run_id(capsys: pytest.CaptureFixture[str]) -> None:
    from infra.provision.cleanup_cli import main

    assert main(["--run-id", "Not A Run", "--uri", "test:///default"]) == 2
    assert "--run-id: 'Not A Run' is not a run id" in capsys.readouterr().err


def _install_stand_in(conn: Any, domain_name: str, fetched: list[dict[str, Any]], stop: threading.Event) -> None:
    """Plays the installer's part that the test driver cannot: fetch the config named on the kernel command
    line, then power the machine off (as `install.poweroff: true` does)."""
    while not stop.is_set():
        try:
            domain = conn.lookupByName(domain_name)
            root = ET.fromstring(domain.XMLDesc(0))
        except Exception:
            stop.wait(0.1)
            continue
        cmdline = root.findtext("os/cmdline") or ""
        if domain.isActive() and "harvester.install.automatic=true" in cmdline:
            url = next(a.split("=", 1)[1] for a in cmdline.split() if a.startswith("harvester.install.config_url="))
            with urllib.request.urlopen(url, timeout=10) as response:
                fetched.append(yaml.safe_load(response.read()))
            domain.shutdown()
            return
        stop.wait(0.1)


def test_first_node_installs_from_its_served_config_then_boots_from_disk(
        conn: Any, tmp_path: Path, run_id: str) -> None:
    settings = harvester_settings(tmp_path, nodes=2, network_cidr="10.233.0.0/24")
    plan = plan_cluster(settings, run_id, "v1.4.2", tmp_path / run_id)
    stack = CleanupStack()
    provisioner = ClusterProvisioner(conn, plan, stack)
    server = InstallConfigServer("127.0.0.1")
    stack.defer("stop the install-config server", server.stop)
    server.start()
    fetched: list[dict[str, Any]] = []
    stop = threading.Event()
    try:
        provisioner.create_infrastructure()
        from infra.provision.install_config import publish_cluster_configs

        urls = publish_cluster_configs(server, plan, provisioner.node_secrets)
        first = plan.nodes[0]
        helper = threading.Thread(target=_install_stand_in, args=(conn, first.domain, fetched, stop), daemon=True)
        helper.start()
        installing = provisioner.start_installers([first], urls)
        provisioner.finish_installs(installing)
        helper.join(10)
        assert len(fetched) == 1
        create = fetched[0]
        assert create["install"]["mode"] == "create" and create["install"]["vip"] == "10.233.0.10"
        assert create["install"]["automatic"] is True and create["install"]["device"] == "/dev/vda"
        assert create["token"] == "a-cluster-token-1" and create["os"]["password"] == "a-node-password-1"
        assert create["os"]["hostname"] == "harvester-node-0"
        assert create["install"]["management_interface"]["interfaces"] == [{"name": "ens3", "hwAddr": first.mac}]
        root = ET.fromstring(conn.lookupByName(first.domain).XMLDesc(0))
        assert root.find("os/kernel") is None and root.findtext("on_reboot") == "restart"
        assert conn.lookupByName(first.domain).isActive()
        with urllib.request.urlopen(urls["harvester-node-1"], timeout=10) as response:
            join = yaml.safe_load(response.read())
        assert join["install"]["mode"] == "join" and join["server_url"] == "https://10.233.0.10:443"
        assert "vip" not in join["install"]
        assert server.fetched == [f"/{run_id}/harvester-node-0.yaml", f"/{run_id}/harvester-node-1.yaml"]
        assert "a-cluster-token-1" not in repr(provisioner.node_secrets)
    finally:
        stop.set()
        assert stack.run() == []
    assert leak_audit(conn, run_id) == []


def test_an_install_that_never_finishes_fails_with_evidence_and_leaves_nothing(
        conn: Any, tmp_path: Path, run_id: str) -> None:
    settings = harvester_settings(tmp_path, nodes=1, network_cidr="10.234.0.0/24", install_timeout_min=0.05)
    plan = plan_cluster(settings, run_id, "v1.4.2", tmp_path / run_id)
    stack = CleanupStack()
    provisioner = ClusterProvisioner(conn, plan, stack)
    with pytest.raises(WaitTimeout) as caught:
        try:
            provisioner.run()
        finally:
            assert stack.run() == []
    assert "budget 'Harvester installs on a node' (3.0s) ran out" in str(caught.value)
    assert f"domain {run_id}-node0 to be shut off" in str(caught.value)
    assert caught.value.evidence["state"] == "running"
    assert leak_audit(conn, run_id) == []


def test_an_interrupt_during_provisioning_still_tears_everything_down(conn: Any, tmp_path: Path, run_id: str) -> None:
    settings = harvester_settings(tmp_path, nodes=1, network_cidr="10.235.0.0/24", install_timeout_min=1)
    plan = plan_cluster(settings, run_id, "v1.4.2", tmp_path / run_id)
    stack = CleanupStack()
    provisioner = ClusterProvisioner(conn, plan, stack)
    timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            try:
                provisioner.run()            # waits for the installer, which never finishes here
            finally:
                assert leak_audit(conn, run_id) != []
                assert stack.run() == []
    finally:
        timer.cancel()
    assert leak_audit(conn, run_id) == []


def test_golden_image_is_saved_per_version_and_restored_as_linked_clones(
        conn: Any, tmp_path: Path, run_id: str) -> None:
    golden_dir = tmp_path / "golden"
    settings = harvester_settings(tmp_path, nodes=2, network_cidr="10.236.0.0/24", golden_image_dir=golden_dir)
    store = GoldenStore(conn, golden_dir)
    assert store.find("v1.4.2", settings) is None

    first_run = CleanupStack()
    plan = plan_cluster(settings, run_id, "v1.4.2", tmp_path / run_id)
    provisioner = ClusterProvisioner(conn, plan, first_run, golden=store)
    provisioner.create_infrastructure()
    for node in plan.nodes:                      # an installed cluster, booted from its disks
        provisioner._start(node, provisioner._disk_boot(node))
    for provisioned in provisioner.result.nodes:
        provisioned.control.power("destroy")
    image = store.save(provisioner.objects, plan)
    assert first_run.run() == []
    assert leak_audit(conn, run_id) == []

    second = run_id + "-again"
    found = store.find("v1.4.2", settings)
    assert found is not None and found.key == image.key == "v1.4.2-2n-uefi-nat"
    assert store.find("v1.5.0", settings) is None                       # keyed by version
    assert [(a.mac, a.ip) for a in found.layout.nodes] == [(n.mac, n.ip) for n in plan.nodes]
    backing = store.backing_files(found)
    restored_plan = plan_cluster(settings, second, "v1.4.2", tmp_path / second, layout=found.layout,
                                 golden_backing=backing)
    assert [n.mac for n in restored_plan.nodes] == [n.mac for n in plan.nodes]   # what the install baked in
    assert str(restored_plan.vip) == str(plan.vip)
    second_run = CleanupStack()
    restorer = ClusterProvisioner(conn, restored_plan, second_run, golden=store, restore=found)
    try:
        restorer.create_infrastructure()
        restorer.boot_all()
        pool = conn.storagePoolLookupByName(restored_plan.pool.name)
        for node in restored_plan.nodes:
            volume = ET.fromstring(pool.storageVolLookupByName(node.volume).XMLDesc(0))
            assert volume.findtext("backingStore/path") == str(backing[node.hostname])
            assert conn.lookupByName(node.domain).isActive()
    finally:
        assert second_run.run() == []
    assert leak_audit(conn, second) == []
    golden_volumes = {v.name() for v in store.pool().listAllVolumes()}
    assert golden_volumes == {"v1.4.2-2n-uefi-nat-harvester-node-0.qcow2", "v1.4.2-2n-uefi-nat-harvester-node-1.qcow2"}


def test_the_libvirt_backend_refuses_a_clashing_config_and_creates_nothing(
        conn: Any, tmp_path: Path, run_id: str) -> None:
    from infra.backends import backend_for
    from infra.backends.libvirt import LibvirtBackend
    from infra.config import RunConfig

    settings = guest_settings(tmp_path, network_cidr="192.168.122.0/24")
    backend = backend_for(RunConfig(backend="libvirt", run_id=run_id, artifacts_dir=tmp_path, libvirt=settings,
                                    harvester_version="none"))
    assert isinstance(backend, LibvirtBackend)
    with pytest.raises(PlanRefused, match="overlaps libvirt network 'default'"):
        backend.acquire("none")
    assert leak_audit(conn, run_id) == []
    backend.release_all()


def test_harvester_e2e_cleanup_is_a_cli_command(capsys: pytest.CaptureFixture[str]) -> None:
    from infra.cli import main

    assert main(["cleanup", "--run-id", "e2e-never-ran", "--uri", "test:///default"]) == 0
    assert "nothing of run e2e-never-ran in test:///default" in capsys.readouterr().out
