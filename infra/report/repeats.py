"""Flakes across repeats: `harvester-e2e run --repeat N` runs every selected scenario N times (pytest-repeat's
`--count`) and this module reads the JUnit file back, one verdict per run, to name the scenarios whose
verdict changed between runs of the same code against the same cluster kind.

A verdict is what a release gate acts on: passed, failed (an assertion or an error), known issue (xfail),
skipped. A scenario that is a known issue every time is not a flake; one that passes once and hits its
known issue once is.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# pytest-repeat appends "-<run>-<count>" inside the id's brackets, or "[<run>-<count>]" when there were none
_REPEAT_SUFFIX = re.compile(r"(?:\[(\d+)-(\d+)\]|-(\d+)-(\d+)\])$")


@dataclass(frozen=True)
class ScenarioVerdicts:
    scenario: str                         # classname::name without the repeat suffix
    verdicts: Counter[str] = field(default_factory=Counter)

    @property
    def flaky(self) -> bool:
        return len(self.verdicts) > 1

    def describe(self) -> str:
        return ", ".join(f"{verdict} x{count}" for verdict, count in sorted(self.verdicts.items()))


@dataclass(frozen=True)
class RepeatSummary:
    repeats: int
    scenarios: list[ScenarioVerdicts]

    @property
    def flakes(self) -> list[ScenarioVerdicts]:
        return [s for s in self.scenarios if s.flaky]

    def lines(self) -> list[str]:
        runs = sum(sum(s.verdicts.values()) for s in self.scenarios)
        head = (f"repeat: {len(self.scenarios)} scenario(s) x {self.repeats} = {runs} run(s); "
                f"{len(self.flakes)} flaky (a verdict that changed between runs)")
        return [head] + [f"  FLAKY {s.scenario}: {s.describe()}" for s in self.flakes]


def verdict_of(case: ET.Element) -> str:
    """The gate's verdict of one JUnit test case. pytest writes a case with no name for the test a Ctrl-C or
    SIGTERM cut short: that is "interrupted", never a pass."""
    if case.get("name") is None:
        return "interrupted"
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    skipped = case.find("skipped")
    if skipped is not None:
        return "known issue" if (skipped.get("type") or "").endswith("xfail") else "skipped"
    return "passed"


def unrepeated(name: str) -> str:
    """A test id without pytest-repeat's run counter: `t[a-1-20]` -> `t[a]`, `t[3-20]` -> `t`."""
    match = _REPEAT_SUFFIX.search(name)
    if match is None:
        return name
    return name[:match.start()] + ("]" if match.group(3) else "")


def junit_verdicts(junit: Path, *, qualified: bool = True) -> dict[str, str]:
    """Test id (`classname::name`, or the name alone) -> its verdict. A teardown error after a pass is a second
    entry for the same id: failed wins. A file that cannot be read raises OSError or ET.ParseError."""
    verdicts: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = case.get("name", "?")
        key = f"{case.get('classname', '')}::{name}" if qualified else name
        if verdicts.get(key) != "failed":
            verdicts[key] = verdict_of(case)
    return verdicts


def summarise(junit: Path, repeats: int) -> RepeatSummary:
    """Every scenario's verdicts across its repeats; a JUnit file that cannot be read raises OSError or
    ET.ParseError (the caller says so: no summary is better than a false "0 flaky")."""
    by_scenario: dict[str, Counter[str]] = {}
    for test_id, verdict in junit_verdicts(junit).items():
        by_scenario.setdefault(unrepeated(test_id), Counter())[verdict] += 1
    return RepeatSummary(repeats, [ScenarioVerdicts(k, v) for k, v in sorted(by_scenario.items())])
