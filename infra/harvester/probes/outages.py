"""From samples to outages, and outages cut by upgrade phase.

An outage of a probe begins with the first failed sample after a success (or with the first sample, if
the probe never succeeded before) and ends with the next success. Its *length* is measured from the last
success before it to the first success after it, because that is what a user feels: between those two
moments nothing they tried worked, and a probe sampling once a second cannot place the edges any closer.
(So one lone failed sample between two successes one interval apart counts two intervals.) An outage with
no success before it starts at its first failed sample; one still open when probing stopped counts to
that stop.

Phases are ``(name, start, end)`` spans in ``time.monotonic()`` seconds, the clock the samples use.
The upgrade tracker records its phases as UTC datetimes (`PhaseRecord.started`/`.ended`);
`phase_windows_from_records` converts them with one anchor taken when it is called (a wall-clock step
during the upgrade, e.g. an NTP correction, shifts them by that step).
"""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from infra.harvester.upgrade.tracker import PhaseRecord
    from infra.report.timeline import PhaseSpan


class SampleLike(Protocol):
    @property
    def probe(self) -> str: ...
    @property
    def started_monotonic(self) -> float: ...
    @property
    def ok(self) -> bool: ...
    @property
    def error(self) -> str | None: ...


class PhaseWindow(NamedTuple):
    """One upgrade phase in monotonic seconds; a plain ``(name, start, end)`` tuple works wherever this does."""

    name: str
    start: float
    end: float


PhaseLike = tuple[str, float, float]


@dataclass(frozen=True)
class Outage:
    """One outage of one probe (times in monotonic seconds; `seconds` is what a user felt, see the module)."""

    probe: str
    start: float               # the last success before it (its first failed sample when there was none)
    end: float                 # the first success after it (the end of probing when there was none)
    first_failure: float       # the first failed sample
    failures: int              # failed samples in it
    open_at_stop: bool         # no success came before probing stopped
    first_error: str = ""

    @property
    def seconds(self) -> float:
        return max(0.0, self.end - self.start)


def outages(samples: Iterable[SampleLike], *, until: float | None = None) -> dict[str, list[Outage]]:
    """Outage spans per probe, in time order. Every probe that has samples is a key (no outages: []).

    `until` is when probing stopped (an outage still open counts to it); default: the last sample's start.
    """
    by_probe: dict[str, list[SampleLike]] = {}
    for sample in samples:
        by_probe.setdefault(sample.probe, []).append(sample)
    found: dict[str, list[Outage]] = {}
    for probe, seen in by_probe.items():
        seen.sort(key=lambda s: s.started_monotonic)
        end_of_probing = until if until is not None else seen[-1].started_monotonic
        spans: list[Outage] = []
        last_success: float | None = None
        first_failure: float | None = None
        failures, first_error = 0, ""
        for sample in seen:
            if not sample.ok:
                if first_failure is None:
                    first_failure, first_error = sample.started_monotonic, sample.error or "failed"
                failures += 1
                continue
            if first_failure is not None:
                start = last_success if last_success is not None else first_failure
                spans.append(Outage(probe, start, sample.started_monotonic, first_failure, failures, False,
                                    first_error))
                first_failure, failures, first_error = None, 0, ""
            last_success = sample.started_monotonic
        if first_failure is not None:
            start = last_success if last_success is not None else first_failure
            spans.append(Outage(probe, start, max(end_of_probing, first_failure), first_failure, failures, True,
                                first_error))
        found[probe] = spans
    return found


def longest(spans: Iterable[Outage]) -> Outage | None:
    return max(spans, key=lambda o: o.seconds, default=None)


def overlap(outage: Outage, phase: PhaseLike) -> float:
    """How much of `outage` lies within `phase` (seconds; 0.0 when they do not meet)."""
    _, start, end = phase
    return max(0.0, min(outage.end, end) - max(outage.start, start))


def by_phase(spans: Mapping[str, Sequence[Outage]], phases: Sequence[PhaseLike]) -> dict[str, dict[str, float]]:
    """The longest outage per probe per phase, in seconds (every phase named; 0.0 when none).

    An outage crossing a phase boundary is cut there: each phase counts only its own part (the overall
    longest, `longest`, counts the whole span). Outages before the first or after the last phase belong to
    no phase.
    """
    return {probe: {name: max((overlap(o, (name, start, end)) for o in probe_spans), default=0.0)
                    for name, start, end in phases}
            for probe, probe_spans in spans.items()}


def phase_windows_from_records(records: Sequence["PhaseRecord"], *, now: dt.datetime | None = None,
                               now_monotonic: float | None = None) -> list[PhaseWindow]:
    """The tracker's phases (UTC datetimes) on the monotonic clock; a phase still running ends now."""
    return _windows([(r.name, r.started, r.ended) for r in records], now, now_monotonic)


def phase_windows_from_spans(spans: Sequence["PhaseSpan"], *, now: dt.datetime | None = None,
                             now_monotonic: float | None = None) -> list[PhaseWindow]:
    """The phase timeline's spans (infra.report.timeline.PhaseSpan) on the monotonic clock."""
    return _windows([(s.name, s.started_at, s.ended_at) for s in spans], now, now_monotonic)


def _windows(phases: list[tuple[str, dt.datetime, dt.datetime | None]], now: dt.datetime | None,
             now_monotonic: float | None) -> list[PhaseWindow]:
    # One anchor, both clocks read together: monotonic = anchor_mono - (anchor_wall - wall).
    anchor_wall = _utc(now) if now is not None else dt.datetime.now(dt.timezone.utc)
    anchor_mono = now_monotonic if now_monotonic is not None else time.monotonic()

    def mono(moment: dt.datetime) -> float:
        return anchor_mono - (anchor_wall - _utc(moment)).total_seconds()

    return [PhaseWindow(name, mono(started), mono(ended) if ended is not None else anchor_mono)
            for name, started, ended in phases]


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.timezone.utc) if moment.tzinfo is None else moment.astimezone(dt.timezone.utc)
