"""The upgrade timeline picture: a real PNG, one bar per phase and per node state, budget marks."""
from __future__ import annotations

import datetime as dt
import io

import pytest

from infra.report.timeline import (
    NodeSpan,
    PhaseSpan,
    build_upgrade_timeline_figure,
    draw_upgrade_timeline,
)

T0 = dt.datetime(2026, 11, 22, 10, 0, tzinfo=dt.timezone.utc)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


PHASES = [
    PhaseSpan("LogReady", at(0), at(1), 300, "passed"),
    PhaseSpan("ImageReady", at(1), at(4), 300, "passed"),
    PhaseSpan("NodesPrepared", at(4), at(20), 1800, "passed"),
    PhaseSpan("SystemServicesUpgraded", at(20), at(57), 1800, "stalled"),  # 7 minutes past its budget
    PhaseSpan("NodesUpgraded", at(57), None, None, "running"),
]
NODE_STATES: dict[str, list[tuple[str, float, float | None]]] = {
    "harvester-node-0": [("Images preloaded", 4, 57), ("Pre-drained", 57, 60), ("Succeeded", 60, 70)],
    "harvester-node-1": [("Images preloaded", 4, 57), ("Waiting Reboot", 60, None)],
}
NODE_SPANS = [
    NodeSpan(node, state, at(start), at(end) if end is not None else None)
    for node, spans in NODE_STATES.items()
    for state, start, end in spans
]


def _gids(artists: list) -> list[str]:
    return [artist.get_gid() for artist in artists if artist.get_gid()]


def test_one_bar_per_phase_and_per_node_state_with_budget_marks() -> None:
    figure = build_upgrade_timeline_figure(PHASES, NODE_SPANS, "v1.4.2 -> master-ce188325-head", now=at(75))
    [axes] = figure.axes
    bars = _gids(axes.patches)

    assert sorted(g for g in bars if g.startswith("phase:")) == sorted(f"phase:{p.name}" for p in PHASES)
    assert sorted(g for g in bars if g.startswith("node:")) == sorted(f"node:{s.node}:{s.state}" for s in NODE_SPANS)
    assert [g for g in bars if g.startswith("overrun:")] == ["overrun:SystemServicesUpgraded"]
    budget_marks = {line.get_gid(): line for line in axes.lines if line.get_gid()}
    assert set(budget_marks) == {f"budget:{p.name}" for p in PHASES if p.budget_seconds is not None}
    assert budget_marks["budget:SystemServicesUpgraded"].get_xdata()[0] == pytest.approx(20 + 30)  # start + budget
    assert [t.get_text() for t in axes.get_yticklabels()] == [p.name for p in PHASES] + ["harvester-node-0",
                                                                                        "harvester-node-1"]


def test_running_phase_runs_to_now() -> None:
    figure = build_upgrade_timeline_figure(PHASES, NODE_SPANS, "t", now=at(75))
    [running] = [p for p in figure.axes[0].patches if p.get_gid() == "phase:NodesUpgraded"]

    assert running.get_x() == pytest.approx(57) and running.get_width() == pytest.approx(75 - 57)
    assert running.get_hatch() == "//"


def test_png_is_a_real_image_that_grows_with_the_rows() -> None:
    from PIL import Image

    small = Image.open(io.BytesIO(draw_upgrade_timeline(PHASES[:2], [], "two phases", now=at(5))))
    large = Image.open(io.BytesIO(draw_upgrade_timeline(PHASES, NODE_SPANS, "all", now=at(75))))

    assert small.format == large.format == "PNG"
    assert large.width == small.width and large.height > small.height
    assert len(large.convert("RGB").getcolors(maxcolors=1 << 20)) > 20  # something was drawn, not a blank canvas


def test_nothing_recorded_still_draws_a_picture_that_says_so() -> None:
    figure = build_upgrade_timeline_figure([], [], "empty")

    assert [t.get_text() for t in figure.axes[0].texts] == ["no phases or node states were recorded"]
    assert draw_upgrade_timeline([], [], "empty").startswith(b"\x89PNG")


def test_a_span_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError, match="phase LogReady ends .* before it starts"):
        build_upgrade_timeline_figure([PhaseSpan("LogReady", at(5), at(1), 300, "passed")], [], "bad")
