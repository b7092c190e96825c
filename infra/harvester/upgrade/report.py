"""What the report shows of an upgrade: a phase table (timings against budgets) and, where the
plotting is available, the phase timeline picture; on a problem, the evidence."""
from __future__ import annotations

from typing import TYPE_CHECKING

from infra.report.attach import attach_text
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
    for record in attempt.tracker.node_states:
        rows.append((record.node, record.state, record.started.strftime("%H:%M:%S"), ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def attach_upgrade_record(attempt: "UpgradeAttempt") -> None:
    attach_text(f"upgrade {attempt.run.name}: phases", phase_table(attempt))
    try:
        from .timeline import attach_timeline
    except ImportError:          # the timeline picture arrives with the reporting work
        return
    attach_timeline(attempt)
