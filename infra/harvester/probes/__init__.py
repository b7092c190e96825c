"""Probes while the upgrade runs: what users feel as outages (their VMs over SSH, the Kubernetes API, a
LoadBalancer's address), sampled about once a second from before the upgrade to after it, reported as the
longest outage per target, overall and per upgrade phase.

    probes = [ApiProbe.for_cluster(cluster), SshProbe.for_session(own_session, name="vm default/vm-a"),
              TcpProbe.for_load_balancer("default", "lb-1", "10.0.0.5", 80)]
    with ProbeSet(probes, budget=Budget("probes while upgrading", 3 * 3600)) as running:
        attempt = follow(run, config)                      # the upgrade
    report = running.report(phase_windows_from_records(attempt.tracker.phases))
    attach_probe_report(report)
    assert not report.check({"vm ": 5.0, "api": 60.0})

Parts: `probe` (the kinds), `runner` (ProbeSet, Sample), `outages` (outages, by_phase, phase windows),
`report` (ProbeReport), `picture` (the PNG and the Allure attachments).
"""
from .outages import (Outage, PhaseWindow, by_phase, longest, outages, phase_windows_from_records,
                      phase_windows_from_spans)
from .picture import attach_probe_report, build_probe_timeline_figure, draw_probe_timeline
from .probe import ApiProbe, Attempt, CallableProbe, Probe, ProbeFailed, SshProbe, TcpProbe
from .report import ProbeReport, ProbeSummary
from .runner import ProbeSet, Sample

__all__ = ["ApiProbe", "Attempt", "CallableProbe", "Outage", "PhaseWindow", "Probe", "ProbeFailed", "ProbeReport",
           "ProbeSet", "ProbeSummary", "Sample", "SshProbe", "TcpProbe", "attach_probe_report",
           "build_probe_timeline_figure", "by_phase", "draw_probe_timeline", "longest", "outages",
           "phase_windows_from_records", "phase_windows_from_spans"]
