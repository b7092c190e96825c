"""The picture of an upgrade: one bar per phase and per node state, with each phase's budget marked.

Input types (stable; the upgrade tracker builds them):

``PhaseSpan(name, started_at, ended_at, budget_seconds, outcome)``
    One upgrade phase (LogReady, ImageReady, ..., Completed). ``started_at``/``ended_at`` are
    ``datetime`` (naive values are taken as UTC); ``ended_at=None`` means still running when drawn (the bar
    runs to ``now`` and is hatched). ``budget_seconds`` is the phase's budget, drawn as a mark at
    ``started_at + budget`` (``None``: no mark); time past the budget is overlaid in red. ``outcome`` is
    one of ``OUTCOMES`` ("passed", "failed", "stalled", "over-budget", "running", "skipped", as the
    upgrade tracker's PhaseRecord.outcome); another value is drawn in grey.
``NodeSpan(node, state, started_at, ended_at)``
    One node in one upgrade state (e.g. "Pre-drained", "Waiting Reboot", "Succeeded") for a while. A node
    has as many spans as states it went through; all of them share the node's row.

Functions:

``draw_upgrade_timeline(phases, node_spans, title, *, now=None) -> bytes``
    A PNG (matplotlib, Agg; no display needed, safe in threads).
``attach_upgrade_timeline(phases, node_spans, title, *, name="upgrade timeline", now=None) -> bool``
    Draw it and attach it to the running Allure step/test (``attach_png``); False when no report is active.
``build_upgrade_timeline_figure(...) -> matplotlib.figure.Figure``
    The figure itself (tests count its bars: patches with gid ``phase:<name>`` / ``node:<node>:<state>``,
    lines with gid ``budget:<phase>``).

matplotlib is imported only when drawing, so importing the types costs nothing.
"""
from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from infra.report.attach import attach_png

OUTCOMES = ("passed", "failed", "stalled", "over-budget", "running", "skipped")
_OUTCOME_COLOURS = {
    "passed": "#4caf50", "failed": "#e53935", "stalled": "#fb8c00", "over-budget": "#b71c1c",
    "running": "#1e88e5", "skipped": "#bdbdbd",
}
_UNKNOWN_COLOUR = "#9e9e9e"
_OVERRUN_COLOUR = "#c62828"
_BUDGET_COLOUR = "#6a1b9a"
# Node-state colours: a fixed qualitative palette, assigned in order of first appearance.
_STATE_PALETTE = ("#80cbc4", "#ffcc80", "#b39ddb", "#f48fb1", "#a5d6a7", "#90caf9", "#ffe082", "#bcaaa4",
                  "#ef9a9a", "#c5e1a5")
_TERMINAL_STATE_COLOURS = {"succeeded": "#2e7d32", "failed": "#c62828"}


@dataclass(frozen=True)
class PhaseSpan:
    name: str
    started_at: dt.datetime
    ended_at: dt.datetime | None
    budget_seconds: float | None
    outcome: str


@dataclass(frozen=True)
class NodeSpan:
    node: str
    state: str
    started_at: dt.datetime
    ended_at: dt.datetime | None


def draw_upgrade_timeline(phases: Sequence[PhaseSpan], node_spans: Sequence[NodeSpan], title: str, *,
                          now: dt.datetime | None = None) -> bytes:
    """The timeline as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = build_upgrade_timeline_figure(phases, node_spans, title, now=now)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)
    return buffer.getvalue()


def attach_upgrade_timeline(phases: Sequence[PhaseSpan], node_spans: Sequence[NodeSpan], title: str, *,
                            name: str = "upgrade timeline", now: dt.datetime | None = None) -> bool:
    return attach_png(name, draw_upgrade_timeline(phases, node_spans, title, now=now))


def build_upgrade_timeline_figure(phases: Sequence[PhaseSpan], node_spans: Sequence[NodeSpan], title: str, *,
                                  now: dt.datetime | None = None) -> Any:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    phases, node_spans = list(phases), list(node_spans)
    _check_spans(phases, node_spans)
    nodes = list(dict.fromkeys(span.node for span in node_spans))
    rows = len(phases) + len(nodes)
    figure = Figure(figsize=(11, 1.6 + 0.38 * max(rows, 1)), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11)
    if rows == 0:
        axes.text(0.5, 0.5, "no phases or node states were recorded", ha="center", va="center",
                  transform=axes.transAxes)
        axes.set_axis_off()
        return figure

    spans: list[PhaseSpan | NodeSpan] = [*phases, *node_spans]
    starts = [_utc(s.started_at) for s in spans]
    ends = [_utc(s.ended_at) for s in spans if s.ended_at is not None]
    origin = min(starts)
    end_of_drawing = _utc(now) if now is not None else max([*ends, *starts])
    if any(s.ended_at is None for s in spans) and now is None:
        end_of_drawing = max(end_of_drawing, dt.datetime.now(dt.timezone.utc))

    def minutes(moment: dt.datetime) -> float:
        return (_utc(moment) - origin).total_seconds() / 60.0

    labels: list[str] = []
    legend: dict[str, Any] = {}
    for row, phase in enumerate(phases):
        left = minutes(phase.started_at)
        right = minutes(phase.ended_at) if phase.ended_at is not None else minutes(end_of_drawing)
        colour = _OUTCOME_COLOURS.get(phase.outcome, _UNKNOWN_COLOUR)
        running = phase.ended_at is None
        [bar] = axes.barh(row, max(right - left, 0.0), left=left, height=0.6, color=colour,
                          edgecolor="#424242", linewidth=0.6, hatch="//" if running else None,
                          alpha=0.75 if running else 1.0)
        bar.set_gid(f"phase:{phase.name}")
        legend.setdefault(f"phase {phase.outcome}", Patch(facecolor=colour, edgecolor="#424242",
                                                          label=f"phase {phase.outcome}"))
        duration_s = (right - left) * 60.0
        axes.text(right, row, f" {_format_duration(duration_s)}{' …' if running else ''}", va="center",
                  ha="left", fontsize=8)
        if phase.budget_seconds is not None:
            budget_at = left + phase.budget_seconds / 60.0
            if right > budget_at:
                [overrun] = axes.barh(row, right - budget_at, left=budget_at, height=0.6, color=_OVERRUN_COLOUR,
                                      alpha=0.45, edgecolor="none")
                overrun.set_gid(f"overrun:{phase.name}")
                legend.setdefault("overrun", Patch(facecolor=_OVERRUN_COLOUR, alpha=0.45, label="past budget"))
            [mark] = axes.plot([budget_at, budget_at], [row - 0.42, row + 0.42], color=_BUDGET_COLOUR,
                               linewidth=2.0, solid_capstyle="butt")
            mark.set_gid(f"budget:{phase.name}")
            legend.setdefault("budget", Line2D([], [], color=_BUDGET_COLOUR, linewidth=2.0, label="budget"))
        labels.append(phase.name)

    state_colours = _state_colours(node_spans)
    for offset, node in enumerate(nodes):
        row = len(phases) + offset
        for span in (s for s in node_spans if s.node == node):
            left = minutes(span.started_at)
            right = minutes(span.ended_at) if span.ended_at is not None else minutes(end_of_drawing)
            colour = state_colours[span.state]
            [bar] = axes.barh(row, max(right - left, 0.0), left=left, height=0.5, color=colour,
                              edgecolor="#616161", linewidth=0.5, hatch="//" if span.ended_at is None else None)
            bar.set_gid(f"node:{span.node}:{span.state}")
            legend.setdefault(f"state {span.state}", Patch(facecolor=colour, edgecolor="#616161",
                                                           label=f"node {span.state}"))
        labels.append(node)

    if phases and nodes:
        axes.axhline(len(phases) - 0.5, color="#9e9e9e", linewidth=0.8, linestyle="--")
    axes.set_yticks(range(rows), labels=labels, fontsize=9)
    axes.set_ylim(rows - 0.5, -0.5)  # first phase on top
    axes.set_xlim(left=0.0, right=max(minutes(end_of_drawing), max(_budget_ends(phases, minutes), default=0.0))
                  * 1.08 + 0.05)
    axes.set_xlabel(f"minutes since {origin.strftime('%Y-%m-%d %H:%M:%S')} UTC")
    axes.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    axes.set_axisbelow(True)
    axes.legend(handles=list(legend.values()), loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                frameon=False)
    return figure


def _budget_ends(phases: list[PhaseSpan], minutes: Any) -> list[float]:
    return [minutes(p.started_at) + p.budget_seconds / 60.0 for p in phases if p.budget_seconds is not None]


def _state_colours(node_spans: list[NodeSpan]) -> dict[str, str]:
    colours: dict[str, str] = {}
    palette = iter(_STATE_PALETTE * (len(node_spans) // len(_STATE_PALETTE) + 1))
    for span in node_spans:
        if span.state not in colours:
            colours[span.state] = _TERMINAL_STATE_COLOURS.get(span.state.lower()) or next(palette)
    return colours


def _check_spans(phases: list[PhaseSpan], node_spans: list[NodeSpan]) -> None:
    spans: list[PhaseSpan | NodeSpan] = [*phases, *node_spans]
    for span in spans:
        if span.ended_at is not None and _utc(span.ended_at) < _utc(span.started_at):
            what = f"phase {span.name}" if isinstance(span, PhaseSpan) else f"node {span.node} ({span.state})"
            raise ValueError(f"{what} ends ({span.ended_at.isoformat()}) before it starts "
                             f"({span.started_at.isoformat()})")
    for phase in phases:
        if phase.budget_seconds is not None and phase.budget_seconds <= 0:
            raise ValueError(f"phase {phase.name}: budget_seconds must be positive, got {phase.budget_seconds}")


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)


def _format_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"
