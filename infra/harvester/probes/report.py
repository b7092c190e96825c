"""`ProbeReport`: per probe, samples, failures, availability and the longest outage overall and per phase;
as a text table, as Allure parameters, and judged against outage budgets (`check`) for a Then step."""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .outages import Outage, PhaseLike, PhaseWindow, SampleLike, by_phase, longest, outages


def seconds_text(seconds: float) -> str:
    return f"{seconds:.1f} s"


@dataclass(frozen=True)
class ProbeSummary:
    name: str
    samples: int
    failures: int
    outages: tuple[Outage, ...]
    longest_outage_s: float                 # the whole span of the longest outage
    longest_by_phase: dict[str, float]      # every phase, its own part of the longest outage in it (0.0: none)
    availability_pct: float                 # share of attempts answered in time (0.0 when there were none)

    @property
    def longest_outage(self) -> Outage | None:
        return longest(self.outages)


@dataclass(frozen=True)
class ProbeReport:
    probes: tuple[ProbeSummary, ...]
    phases: tuple[PhaseWindow, ...]
    started: float                          # the watched window, monotonic seconds
    ended: float
    stopped_by_budget: bool = False         # the probes' budget ended before stop(): the end was not watched
    origin: float = field(init=False)       # time zero of tables and pictures: the first phase's start

    def __post_init__(self) -> None:
        object.__setattr__(self, "origin", min((p.start for p in self.phases), default=self.started))

    @classmethod
    def from_samples(cls, samples: Iterable[SampleLike], *, probes: Sequence[str], started: float, ended: float,
                     phases: Sequence[PhaseLike] = (), stopped_by_budget: bool = False) -> "ProbeReport":
        """`probes` names every probe in report order (one that took no sample still gets its row)."""
        seen = list(samples)
        windows = tuple(sorted((PhaseWindow(*p) for p in phases), key=lambda p: p.start))
        spans = outages(seen, until=ended)
        cut = by_phase(spans, windows)
        summaries = []
        for name in probes:
            mine = [s for s in seen if s.probe == name]
            failures = sum(1 for s in mine if not s.ok)
            probe_spans = tuple(spans.get(name, []))
            whole = longest(probe_spans)
            summaries.append(ProbeSummary(
                name, len(mine), failures, probe_spans, whole.seconds if whole else 0.0,
                cut.get(name, {p.name: 0.0 for p in windows}),
                100.0 * (len(mine) - failures) / len(mine) if mine else 0.0))
        return cls(tuple(summaries), windows, started, ended, stopped_by_budget)

    def probe(self, name: str) -> ProbeSummary:
        found = next((p for p in self.probes if p.name == name), None)
        if found is None:
            raise KeyError(f"no probe {name!r}; probes: {', '.join(p.name for p in self.probes)}")
        return found

    # --- where in the upgrade ---------------------------------------------------------------------------
    def offset(self, moment: float) -> str:
        """A moment as ``+mm:ss`` from the start of the first phase (``-mm:ss`` before the upgrade)."""
        delta = moment - self.origin
        sign = "-" if delta < 0 else "+"
        minutes, seconds = divmod(int(round(abs(delta))), 60)
        return f"{sign}{minutes:02d}:{seconds:02d}"

    def phase_at(self, moment: float) -> str:
        inside = [p.name for p in self.phases if p.start <= moment < p.end]
        if inside:
            return inside[-1]
        if self.phases and moment < self.phases[0].start:
            return "before the upgrade"
        return "after the upgrade" if self.phases else ""

    # --- renderings --------------------------------------------------------------------------------------
    def as_text(self) -> str:
        zero = f"the start of {self.phases[0].name}" if self.phases else "the start of probing"
        lines = [f"probed {self.offset(self.started)} to {self.offset(self.ended)} (mm:ss from {zero}); "
                 "an outage is measured from the last success before it to the first success after it"]
        if self.stopped_by_budget:
            lines.append("NOTE: the probes' budget ended before they were stopped: what came after was not watched")
        lines.append("")
        rows = [("probe", "samples", "failures", "available", "longest outage", "where")]
        for p in self.probes:
            where = ""
            if p.longest_outage is not None:
                where = f"{self.offset(p.longest_outage.start)} ({self.phase_at(p.longest_outage.first_failure)})"
            rows.append((p.name, str(p.samples), str(p.failures), f"{p.availability_pct:.1f} %",
                         seconds_text(p.longest_outage_s), where))
        lines += _table(rows)
        if self.phases:
            lines += ["", "longest outage per phase (a span crossing phases is cut at the boundary)"]
            header = ("probe", *(p.name for p in self.phases))
            lines += _table([header, *((p.name, *(seconds_text(p.longest_by_phase.get(ph.name, 0.0))
                                                  if p.longest_by_phase.get(ph.name, 0.0) > 0 else "-"
                                                  for ph in self.phases)) for p in self.probes)])
        outage_rows = [("probe", "from", "to", "length", "failed samples", "first error")]
        for p in self.probes:
            for o in p.outages:
                outage_rows.append((p.name, self.offset(o.start), self.offset(o.end) + (" (open)" if o.open_at_stop
                                                                                      else ""),
                                    seconds_text(o.seconds), str(o.failures), o.first_error))
        lines += ["", "outages" if len(outage_rows) > 1 else "outages: none"]
        if len(outage_rows) > 1:
            lines += _table(outage_rows)
        return "\n".join(lines) + "\n"

    def allure_parameters(self) -> list[tuple[str, str]]:
        """``("longest outage <probe>", "3.2 s")`` for every probe, and ``("longest outage <probe> in <phase>",
        ...)`` for every phase that had one (phases without an outage are left out to keep the header short)."""
        parameters = [(f"longest outage {p.name}", seconds_text(p.longest_outage_s)) for p in self.probes]
        for p in self.probes:
            parameters += [(f"longest outage {p.name} in {phase.name}", seconds_text(p.longest_by_phase[phase.name]))
                           for phase in self.phases if p.longest_by_phase.get(phase.name, 0.0) > 0]
        return parameters

    def check(self, budgets: Mapping[str, float]) -> list[str]:
        """Violations of outage budgets, one sentence each ([] when all hold).

        `budgets` maps a probe-name prefix to the longest outage allowed, in seconds: {"vm ": 5.0} means every
        probe whose name starts with "vm " had no outage longer than 5 s. A prefix matching no probe, a matching
        probe that took no sample, and probing that ended by its budget before it was stopped are violations
        too: each would otherwise pass a budget that was never measured.
        """
        violations: list[str] = []
        for prefix, allowed in budgets.items():
            matching = [p for p in self.probes if p.name.startswith(prefix)]
            if not matching:
                violations.append(f"no probe's name starts with {prefix!r} (probes: "
                                  f"{', '.join(p.name for p in self.probes)}): its budget "
                                  f"{seconds_text(allowed)} measured nothing")
            for p in matching:
                worst = p.longest_outage
                if p.samples == 0:
                    violations.append(f"{p.name}: took no sample, so its outage budget {seconds_text(allowed)} "
                                      "measured nothing")
                elif worst is not None and worst.seconds > allowed:
                    violations.append(
                        f"{p.name}: longest outage {seconds_text(worst.seconds)} exceeds its budget "
                        f"{seconds_text(allowed)} (budget for {prefix!r}): from {self.offset(worst.start)} to "
                        f"{self.offset(worst.end)}{' (still out when probing stopped)' if worst.open_at_stop else ''}"
                        f", starting in {self.phase_at(worst.first_failure) or 'the probed window'}, "
                        f"{worst.failures} failed samples, first error: {worst.first_error}")
        if self.stopped_by_budget and budgets:
            violations.append(f"the probes' budget ended at {self.offset(self.ended)}, before they were stopped: "
                              "the rest was not watched (raise the ProbeSet's budget)")
        return violations


def _table(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
