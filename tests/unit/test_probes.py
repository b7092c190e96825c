"""Probes while the upgrade runs: outages measured against real targets on 127.0.0.1 (a TCP socket closed and
reopened; a simulated Harvester whose API server refuses connections and then answers 503, and whose node reboots
under an SSH probe), and the analysis (outages, per-phase cuts, budgets, the picture, the Allure attachments) on
synthetic samples. About 11 s on two cores (the simulator test is most of it)."""
from __future__ import annotations

import io
import socket
import threading
import time
from pathlib import Path

import allure_commons
import pytest

from infra.harvester.probes import (
    ApiProbe,
    CallableProbe,
    PhaseWindow,
    ProbeReport,
    ProbeSet,
    Sample,
    SshProbe,
    TcpProbe,
    attach_probe_report,
    build_probe_timeline_figure,
    by_phase,
    draw_probe_timeline,
    outages,
    phase_windows_from_records,
)
from infra.waits.poll import poll_until
from infra.waits.budget import Budget

INTERVAL = 0.25           # finer than the default second: tighter edges, and a shorter test


def samples(probe: str, pattern: str, *, start: float = 100.0, step: float = 1.0) -> list[Sample]:
    """One sample per character, `step` apart: "." answered, "x" failed."""
    return [Sample(probe, start + i * step, c == ".", 0.01, None if c == "." else f"fail {i}")
            for i, c in enumerate(pattern)]


def hold(seconds: float) -> None:
    """A fault's fixed duration (not a wait for a condition: nothing is awaited)."""
    threading.Event().wait(seconds)


def seen_since(running: ProbeSet, probe: str, since: float, *, ok: bool) -> bool:
    return any(s.probe == probe and s.ok is ok and s.started_monotonic >= since for s in running.samples())


# --- outages from samples ----------------------------------------------------------------------------------
def test_no_failures_no_outages() -> None:
    assert outages(samples("api", "......")) == {"api": []}


def test_an_outage_is_measured_from_the_last_success_before_it_to_the_first_success_after_it() -> None:
    [outage] = outages(samples("api", "..xxx..", start=100.0))["api"]

    assert (outage.start, outage.first_failure, outage.end) == (101.0, 102.0, 105.0)
    assert outage.seconds == 4.0 and outage.failures == 3 and not outage.open_at_stop
    assert outage.first_error == "fail 2"


def test_an_outage_at_the_start_begins_with_the_first_failed_sample() -> None:
    [outage] = outages(samples("api", "xx...", start=100.0))["api"]

    assert (outage.start, outage.end, outage.failures) == (100.0, 102.0, 2)


def test_an_outage_still_open_at_stop_counts_to_the_stop() -> None:
    [first, second] = outages(samples("api", ".x..xx", start=100.0), until=107.5)["api"]

    assert (first.start, first.end, first.open_at_stop) == (100.0, 102.0, False)
    assert (second.start, second.end, second.open_at_stop, second.seconds) == (103.0, 107.5, True, 4.5)
    # Without a stop time, an open outage ends at the last sample.
    assert outages(samples("api", ".xx"))["api"][0].end == 102.0


def test_probes_are_told_apart_and_samples_may_come_in_any_order() -> None:
    mixed = [*samples("api", "..x.."), *samples("vm default/vm-a", ".....")]
    found = outages(list(reversed(mixed)))

    assert found["vm default/vm-a"] == [] and [o.seconds for o in found["api"]] == [2.0]


# --- per phase ---------------------------------------------------------------------------------------------
PHASES = [PhaseWindow("ImageReady", 100.0, 110.0), ("NodesUpgraded", 110.0, 130.0)]


def test_an_outage_crossing_phases_is_cut_at_the_boundary_and_counts_whole_overall() -> None:
    # Last success at 107, first success after at 115: 8 s overall, 3 s in ImageReady, 5 s in NodesUpgraded.
    spans = outages(samples("api", "." * 8 + "x" * 7 + "." * 10, start=100.0))
    report = ProbeReport.from_samples(samples("api", "." * 8 + "x" * 7 + "." * 10, start=100.0), probes=["api"],
                                      started=100.0, ended=125.0, phases=PHASES)

    assert by_phase(spans, PHASES) == {"api": {"ImageReady": 3.0, "NodesUpgraded": 5.0}}
    assert report.probe("api").longest_outage_s == 8.0
    assert report.probe("api").longest_by_phase == {"ImageReady": 3.0, "NodesUpgraded": 5.0}


def test_outages_outside_every_phase_and_probes_without_outages_count_zero_per_phase() -> None:
    spans = outages([*samples("api", ".x.", start=90.0), *samples("lb default/lb-1 10.0.0.5:80", "...")])

    assert by_phase(spans, PHASES) == {"api": {"ImageReady": 0.0, "NodesUpgraded": 0.0},
                                       "lb default/lb-1 10.0.0.5:80": {"ImageReady": 0.0, "NodesUpgraded": 0.0}}


def test_the_trackers_utc_phases_are_put_on_the_monotonic_clock() -> None:
    import datetime as dt

    from infra.harvester.upgrade.tracker import PhaseRecord

    now = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)
    records = [PhaseRecord("ImageReady", now - dt.timedelta(seconds=30), Budget("b", 60),
                           now - dt.timedelta(seconds=10), "passed"),
               PhaseRecord("NodesUpgraded", now - dt.timedelta(seconds=10), Budget("b", 60))]

    assert phase_windows_from_records(records, now=now, now_monotonic=1000.0) == [
        PhaseWindow("ImageReady", 970.0, 990.0), PhaseWindow("NodesUpgraded", 990.0, 1000.0)]


# --- the report ----------------------------------------------------------------------------------------------
def _report(*, stopped_by_budget: bool = False) -> ProbeReport:
    seen = [*samples("api", "." * 8 + "x" * 7 + "." * 10, start=100.0),
            *samples("vm default/vm-a", "." * 20 + "xx" + "...", start=100.0),
            *samples("vm default/vm-b", "." * 25, start=100.0),
            *samples("lb default/lb-1 10.0.0.5:80", "x" + "." * 24, start=100.0)]
    return ProbeReport.from_samples(seen, probes=["api", "vm default/vm-a", "vm default/vm-b",
                                                  "lb default/lb-1 10.0.0.5:80"],
                                    started=99.5, ended=125.0, phases=PHASES, stopped_by_budget=stopped_by_budget)


def test_report_counts_samples_failures_and_availability() -> None:
    report = _report()
    api, vm_a = report.probe("api"), report.probe("vm default/vm-a")

    assert (api.samples, api.failures, api.availability_pct) == (25, 7, pytest.approx(72.0))
    assert (vm_a.longest_outage_s, vm_a.longest_by_phase) == (3.0, {"ImageReady": 0.0, "NodesUpgraded": 3.0})
    text = report.as_text()
    assert "vm default/vm-a" in text and "72.0 %" in text and "fail 8" in text and "NodesUpgraded" in text
    assert "+00:07" in text        # the api outage starts 7 s into the first phase


def test_allure_parameters_name_the_longest_outage_overall_and_per_phase() -> None:
    parameters = dict(_report().allure_parameters())

    assert parameters["longest outage vm default/vm-a"] == "3.0 s"
    assert parameters["longest outage api"] == "8.0 s"
    assert parameters["longest outage api in ImageReady"] == "3.0 s"
    assert parameters["longest outage api in NodesUpgraded"] == "5.0 s"
    assert "longest outage vm default/vm-b in ImageReady" not in parameters   # phases without an outage: left out


def test_check_holds_every_probe_a_prefix_names_to_its_budget() -> None:
    report = _report()

    assert report.check({"vm ": 3.0, "api": 8.0}) == []
    [violation] = report.check({"vm ": 2.5})
    assert violation.startswith("vm default/vm-a: longest outage 3.0 s exceeds its budget 2.5 s")
    assert "NodesUpgraded" in violation and "fail 20" in violation
    [unmatched] = report.check({"ssh ": 1.0})
    assert "no probe's name starts with 'ssh '" in unmatched
    assert any("was not watched" in v for v in _report(stopped_by_budget=True).check({"vm ": 60.0}))


# --- the picture ---------------------------------------------------------------------------------------------
def test_the_picture_has_a_row_per_probe_red_bars_for_outages_and_the_phases_shaded() -> None:
    report = _report()
    figure = build_probe_timeline_figure(report)
    [axes] = figure.axes
    gids = [p.get_gid() for p in axes.patches if p.get_gid()]

    assert [t.get_text() for t in axes.get_yticklabels()] == [p.name for p in report.probes]
    assert sorted(g for g in gids if g.startswith("probe:")) == sorted(f"probe:{p.name}" for p in report.probes)
    assert sorted(g for g in gids if g.startswith("outage:")) == [
        "outage:api:0", "outage:lb default/lb-1 10.0.0.5:80:0", "outage:vm default/vm-a:0"]
    assert [g for g in gids if g.startswith("phase:")] == ["phase:ImageReady", "phase:NodesUpgraded"]
    [api_outage] = [p for p in axes.patches if p.get_gid() == "outage:api:0"]
    assert (api_outage.get_x(), api_outage.get_width()) == (pytest.approx(7.0), pytest.approx(8.0))  # 0 = ImageReady

    from PIL import Image

    image = Image.open(io.BytesIO(draw_probe_timeline(report)))
    assert image.format == "PNG" and image.width > 500
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


class _AllureRecorder:
    def __init__(self) -> None:
        self.attached: list[tuple[str, str]] = []
        self.parameters: list[tuple[str, str, bool]] = []

    @allure_commons.hookimpl
    def attach_data(self, body, name, attachment_type, extension) -> None:  # type: ignore[no-untyped-def]
        self.attached.append((name, attachment_type.mime_type if hasattr(attachment_type, "mime_type")
                              else str(attachment_type)))

    @allure_commons.hookimpl
    def add_parameter(self, name, value, excluded, mode) -> None:  # type: ignore[no-untyped-def]
        self.parameters.append((name, value, bool(excluded)))


def test_the_report_is_attached_as_a_table_and_a_picture_with_its_parameters() -> None:
    report = _report()
    assert attach_probe_report(report) is False        # no Allure reporter: nothing attached, nothing drawn

    recorder = _AllureRecorder()
    allure_commons.plugin_manager.register(recorder)
    try:
        assert attach_probe_report(report) is True
    finally:
        allure_commons.plugin_manager.unregister(recorder)
    assert recorder.attached == [("probes while upgrading: outages", "text/plain"),
                                 ("probes while upgrading: timeline", "image/png")]
    assert ("longest outage api in NodesUpgraded", "5.0 s", True) in recorder.parameters


# --- the ProbeSet, bounded -----------------------------------------------------------------------------------
def test_a_probe_that_hangs_still_yields_a_failed_sample_per_timeout_and_the_set_ends_with_its_budget() -> None:
    release = threading.Event()
    hangs = CallableProbe("hangs", lambda timeout: release.wait(30), interval_s=0.1, timeout_s=0.3)
    running = ProbeSet([hangs], budget=Budget("probes in this test", 1.2)).start()
    try:
        poll_until(lambda: not running.is_running, Budget("the probes end with their budget", 3), "probes ended",
                   interval_s=0.05)
        taken = running.samples()
        running.stop()
    finally:
        release.set()

    assert not running.unjoined and running.stopped_by_budget
    assert 3 <= len(taken) <= 13 and not any(s.ok for s in taken)
    assert taken[0].error == "no answer within 0.3 s"
    assert any("previous attempt has still not returned" in (s.error or "") for s in taken)
    report = running.report()
    assert report.probe("hangs").outages[0].open_at_stop
    assert any("was not watched" in v for v in report.check({"hangs": 60.0}))


def test_stop_returns_within_its_bound_even_while_an_attempt_hangs() -> None:
    release = threading.Event()
    probe = CallableProbe("hangs", lambda timeout: release.wait(30), interval_s=0.1, timeout_s=0.5)
    with ProbeSet([probe], budget=Budget("probes in this test", 30)) as running:
        poll_until(lambda: running.samples(), Budget("a first sample", 3), "a sample", interval_s=0.05)
        asked = time.monotonic()
    took = time.monotonic() - asked
    release.set()

    assert took < 0.5 + 1.0 and not running.unjoined and not running.is_running and not running.stopped_by_budget


# --- real targets ----------------------------------------------------------------------------------------------
class _Listener:
    """A TCP listener on 127.0.0.1 that accepts (and drops) connections, and can close and reopen on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._open()

    def _open(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # the port again, past TIME_WAIT
        self._sock.bind(("127.0.0.1", self.port))
        self.port = self._sock.getsockname()[1]
        self._sock.listen(64)
        self._sock.settimeout(0.05)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(self._sock, self._closing), daemon=True)
        self._thread.start()

    @staticmethod
    def _accept(sock: socket.socket, closing: threading.Event) -> None:
        while not closing.is_set():
            try:
                sock.accept()[0].close()
            except TimeoutError:
                continue

    def close(self) -> None:
        self._closing.set()
        self._thread.join(2)
        self._sock.close()

    def reopen(self) -> None:
        self._open()


def test_tcp_probe_measures_a_listener_closed_for_two_seconds() -> None:
    listener = _Listener()
    probe = TcpProbe("127.0.0.1", listener.port, name="lb test/lb-1", interval_s=INTERVAL, timeout_s=1.0)
    try:
        with ProbeSet([probe], budget=Budget("probes in this test", 20)) as running:
            poll_until(lambda: seen_since(running, probe.name, 0.0, ok=True), Budget("a first answer", 5),
                       "the listener to answer", interval_s=0.05)
            closed_at = time.monotonic()
            listener.close()
            hold(2.0)
            reopened_at = time.monotonic()
            listener.reopen()
            poll_until(lambda: seen_since(running, probe.name, reopened_at, ok=True),
                       Budget("an answer after the listener reopened", 5), "an answer", interval_s=0.05)
    finally:
        listener.close()
    report = running.report()
    [outage] = report.probe(probe.name).outages

    print(f"\nTCP listener closed {reopened_at - closed_at:.2f} s: measured outage {outage.seconds:.2f} s "
          f"({outage.failures} failed samples, first error {outage.first_error!r})")
    # The last answer came before the close; the first one after it, after the reopening (a sample stamps its
    # start a moment before it connects: hence the 50 ms).
    assert outage.start <= closed_at and outage.end >= reopened_at - 0.05
    assert reopened_at - closed_at - 0.05 <= outage.seconds <= reopened_at - closed_at + 2 * INTERVAL + 0.3
    assert "refused" in outage.first_error.lower()
    assert report.check({"lb ": 1.0}) and not report.check({"lb ": 3.0})


@pytest.mark.slow
def test_api_and_ssh_probes_see_a_simulated_api_server_restart_and_a_node_reboot(tmp_path: Path) -> None:
    """The API server refuses connections for 3 s and answers 503 until 4 s; meanwhile a node reboots (its sshd
    refuses until it is back: about 2 s at this time scale). Each probe sees its own outage, and only that."""
    from infra.backends.simulated import start_simulator_process
    from infra.backends.simulator_client import SimulatorClient
    from infra.https import Endpoint
    from infra.ssh import KnownHosts, SshNode, SshTarget, generate_keypair

    keys = generate_keypair(tmp_path / "ssh")
    simulator = start_simulator_process("v1.5.1", time_scale=60, nodes=1, budget=Budget("simulator starts", 60),
                                        workdir=tmp_path / "simulator", ssh_authorized_key=keys.public_key_file)
    node = simulator.info["nodes"][0]
    session = SshNode(SshTarget(node["name"], node["sshHost"], node["sshPort"], user=node["sshUser"],
                                key_file=keys.private_key_file, host_key=node["hostKey"]),
                      KnownHosts(tmp_path / "known_hosts"))
    try:
        endpoint = Endpoint.from_kubeconfig(simulator.kubeconfig)
        # /readyz (the default), and a resource GET: the simulator answers /readyz even while its API is 503.
        probes = [ApiProbe.for_endpoint(endpoint, name="api", interval_s=INTERVAL, timeout_s=1.0),
                  ApiProbe.for_endpoint(endpoint, "/api/v1/namespaces/default", name="api namespaces",
                                        interval_s=INTERVAL, timeout_s=1.0),
                  SshProbe.for_session(session, name=f"node {node['name']}", interval_s=2 * INTERVAL,
                                       timeout_s=1.0)]
        with ProbeSet(probes, budget=Budget("probes in this test", 30)) as running:
            poll_until(lambda: all(seen_since(running, p.name, 0.0, ok=True) for p in probes),
                       Budget("first answers", 10), "every probe answered", interval_s=0.05)
            client = SimulatorClient(simulator.kubeconfig)
            rebooted_at = time.monotonic()
            client.power(node["name"], "reboot")
            injected_at = time.monotonic()
            client.inject(refuseConnectionsSeconds=3.0, unavailableSeconds=4.0)

            def back() -> bool:
                return all(seen_since(running, p.name, rebooted_at, ok=False) and
                           seen_since(running, p.name, injected_at + 4.0, ok=True) for p in probes)

            poll_until(back, Budget("the API and the node back", 15), "answers again", interval_s=0.1)
    finally:
        session.close()
        simulator.stop()
    report = running.report()
    [readyz] = report.probe("api").outages
    [resources] = report.probe("api namespaces").outages
    [ssh] = report.probe(f"node {node['name']}").outages

    print(f"\nAPI refused 3 s then 503 to 4 s: /readyz outage {readyz.seconds:.2f} s ({readyz.failures} failed), "
          f"namespaces outage {resources.seconds:.2f} s ({resources.failures} failed); node reboot (125 simulated "
          f"s at 60x): SSH outage {ssh.seconds:.2f} s ({ssh.failures} failed, first error {ssh.first_error!r})")
    assert 3.0 - 0.1 <= readyz.seconds <= 4.0 + 2 * INTERVAL + 1.0
    assert 4.0 - 0.2 <= resources.seconds <= 4.0 + 2 * INTERVAL + 1.0
    errors = [s.error or "" for s in running.samples() if s.probe == "api namespaces" and not s.ok]
    assert any("refused" in e.lower() for e in errors) and any("HTTP 503" in e for e in errors)
    assert 125 / 60 - 0.3 <= ssh.seconds <= 125 / 60 + 2 * 2 * INTERVAL + 1.5
    assert ssh.start <= rebooted_at + 0.2
