"""The picture of what users felt: one row per probe, outages as red bars, the upgrade's phases shaded behind
them on the same time axis as the phase timeline (the start of the first phase is zero), and the report's
attachments: the text table, the picture, and the longest outages as Allure parameters.

matplotlib is imported only when drawing (Agg canvas: no display needed, safe in threads), as in
infra.report.timeline. The figure's artists carry gids the tests count: ``probe:<name>`` (the watched window
of a probe's row), ``outage:<name>:<i>`` (its i-th outage), ``phase:<name>`` (a phase's shading).
"""
from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import Any

import allure

from infra.report.attach import allure_active, attach_png, attach_text

from .outages import PhaseLike, PhaseWindow
from .report import ProbeReport, seconds_text

log = logging.getLogger("harvester_e2e.probes")

_OUTAGE_COLOUR = "#e53935"
_WATCHED_COLOUR = "#c8e6c9"
_PHASE_SHADES = ("#eceff1", "#cfd8dc")
_SECONDS_UP_TO = 300.0        # a window up to five minutes is drawn in seconds, a longer one in minutes


def build_probe_timeline_figure(report: ProbeReport, phases: Sequence[PhaseLike] | None = None, *,
                                title: str = "probes while upgrading: outages") -> Any:
    """The figure (matplotlib.figure.Figure); `phases` default to the report's own."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    windows = sorted((PhaseWindow(*p) for p in (report.phases if phases is None else phases)),
                     key=lambda p: p.start)
    origin = windows[0].start if windows else report.started
    first = min([report.started, *(p.start for p in windows)])
    last = max([report.ended, *(p.end for p in windows)])
    unit, per_unit = ("s", 1.0) if last - first <= _SECONDS_UP_TO else ("min", 60.0)

    def x(moment: float) -> float:
        return (moment - origin) / per_unit

    rows = len(report.probes)
    figure = Figure(figsize=(11, 2.2 + 0.42 * max(rows, 1)), dpi=100, layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, loc="left", fontsize=11)
    for index, phase in enumerate(windows):
        shade = axes.axvspan(x(phase.start), x(phase.end), color=_PHASE_SHADES[index % 2], zorder=0, linewidth=0)
        shade.set_gid(f"phase:{phase.name}")
    if windows:     # phase names along the top, at their starts (the layout makes room for them)
        names = axes.secondary_xaxis("top")
        names.set_xticks([x(p.start) for p in windows], labels=[p.name for p in windows], rotation=30,
                         ha="left", rotation_mode="anchor", fontsize=7, color="#455a64")
    min_width = (x(last) - x(first)) * 0.003        # a one-sample outage stays visible on a two-hour axis
    for row, probe in enumerate(report.probes):
        [watched] = axes.barh(row, x(report.ended) - x(report.started), left=x(report.started), height=0.5,
                              color=_WATCHED_COLOUR, zorder=1)
        watched.set_gid(f"probe:{probe.name}")
        for index, outage in enumerate(probe.outages):
            [bar] = axes.barh(row, max(x(outage.end) - x(outage.start), min_width), left=x(outage.start),
                              height=0.5, color=_OUTAGE_COLOUR, zorder=2, hatch="//" if outage.open_at_stop else None)
            bar.set_gid(f"outage:{probe.name}:{index}")
    axes.set_yticks(range(rows), labels=[p.name for p in report.probes], fontsize=9)
    axes.set_ylim(max(rows, 1) - 0.5, -0.5)       # first probe on top
    summaries = axes.secondary_yaxis("right")       # each row's figures on its right
    summaries.set_yticks(range(rows), labels=[f"longest {seconds_text(p.longest_outage_s)}, "
                                              f"{p.availability_pct:.1f} % answered" for p in report.probes],
                         fontsize=8)
    pad = (x(last) - x(first)) * 0.01
    axes.set_xlim(x(first) - pad, x(last) + pad)
    zero = f"the start of {windows[0].name}" if windows else "the start of probing"
    axes.set_xlabel(f"{'seconds' if unit == 's' else 'minutes'} since {zero}")
    axes.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    figure.legend(handles=[Patch(facecolor=_WATCHED_COLOUR, label="watched, answering"),
                           Patch(facecolor=_OUTAGE_COLOUR, label="outage (last success before to first success "
                                                                 "after; hatched: still out at the end)")],
                  loc="outside lower left", fontsize=8, frameon=False, ncols=2)
    return figure


def draw_probe_timeline(report: ProbeReport, phases: Sequence[PhaseLike] | None = None, *,
                        title: str = "probes while upgrading: outages") -> bytes:
    """The picture as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(build_probe_timeline_figure(report, phases, title=title)).print_png(buffer)
    return buffer.getvalue()


def attach_probe_report(report: ProbeReport, phases: Sequence[PhaseLike] | None = None, *,
                        name: str = "probes while upgrading") -> bool:
    """Attach the table and the picture to the running Allure test and set its longest-outage parameters.

    The parameters are `excluded` from the test's identity: they are measurements that differ run to run,
    and must not make Allure treat every run as a different test (history, retries). A drawing that fails
    is noted in the report and logged, never raised: evidence must not replace the test's own outcome.
    Returns False when no Allure report is active (nothing is drawn then).
    """
    if not allure_active():
        return False
    attach_text(f"{name}: outages", report.as_text())
    for parameter, value in report.allure_parameters():
        allure.dynamic.parameter(parameter, value, excluded=True)
    try:
        picture = draw_probe_timeline(report, phases)
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.warning("the probe timeline could not be drawn: %s", exc)
        return attach_text(f"{name}: timeline (not drawn)", f"{type(exc).__name__}: {exc}")
    return attach_png(f"{name}: timeline", picture)
