"""What the report shows of an upgrade: a phase table (timings against budgets) and, where the
plotting is available, the phase timeline picture; on a problem, the evidence."""
from __future__ import annotations

from typing import TYPE_CHECKING

from infra.report.attach import attach_text
from infra.report.timeline import NodeSpan, PhaseSpan, attach_upgrade_timeline
from infra.waits.budget import format_seconds

if TYPE_CHECKING:
    from .follow import UpgradeAttempt


def phase_table(attempt: "UpgradeAttempt") -> str:
    rows = [("phase", "took", "budget", "outcome")]
    for record in attempt.tracker.phases:
        rows.append((record.name, format_seconds(record.seconds), format_seconds(record.budget.seconds),
                     record.outcome))
    rows.append(("", "", "", ""))
    rows.append(("node", "state", "since", ""))
    for state in attempt.tracker.node_states:
        rows.append((state.node, state.state, state.started.strftime("%H:%M:%S"), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def attach_upgrade_record(attempt: "UpgradeAttempt") -> None:
    """The phase table, and the timeline picture: one bar per phase and per node state, budgets marked."""
    attach_text(f"upgrade {attempt.run.name}: phases", phase_table(attempt))
    phases = [PhaseSpan(r.name, r.started, r.ended, r.budget.seconds,
                        "passed" if r.outcome.startswith("passed") else r.outcome)
              for r in attempt.tracker.phases]
    nodes = [NodeSpan(r.node, r.state, r.started, r.ended) for r in attempt.tracker.node_states]
    if phases:
        attach_upgrade_timeline(phases, nodes, f"upgrade {attempt.run.name} to {attempt.run.target_version}")
    if attempt.probes is not None:        # what users felt: outages per probe and phase, beside the phases
        from ..probes import attach_probe_report, phase_windows_from_records

        attach_probe_report(attempt.probes, phase_windows_from_records(attempt.tracker.phases))
