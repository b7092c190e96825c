"""`harvester-e2e repro ISSUE`: reproduce a product issue from its number, in one command.

It finds the scenarios tagged `@issue_<N>` in features/, takes the versions `ci/known-issues.yaml` says
the issue affects (the cluster's version and the upgrade target, where it names one of each), runs them
(on the simulated backend unless told otherwise), and says in a few lines what happened, the diagnosis,
and where the report is. `harvester-e2e repro --list` lists the issues it can reproduce.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from typing import Any
from dataclasses import dataclass, field
from pathlib import Path

from infra.report.known_issues import KNOWN_ISSUES_FILE, KnownIssue, KnownIssuesError, issue_ref, load_known_issues

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEATURES = PROJECT_ROOT / "features"
_TAG = re.compile(r"@issue_(\d+)\b")


@dataclass
class IssueScenarios:
    number: int
    scenarios: list[str] = field(default_factory=list)     # "<feature>: <scenario>"
    known: KnownIssue | None = None


def issues_in_features(features: Path = FEATURES) -> dict[int, IssueScenarios]:
    """Every `@issue_N` tag on a feature, scenario or Examples table, with the scenarios it covers."""
    from gherkin.parser import Parser
    from gherkin.token_scanner import TokenScanner

    found: dict[int, IssueScenarios] = {}
    for path in sorted(features.glob("*.feature")):
        document: Any = Parser().parse(TokenScanner(path.read_text(encoding="utf-8")))
        feature = document.get("feature") or {}
        feature_tags = _numbers(feature.get("tags", []))
        for child in feature.get("children", []):
            scenario = child.get("scenario")
            if scenario is None:
                continue
            numbers = feature_tags | _numbers(scenario.get("tags", []))
            for examples in scenario.get("examples", []):
                numbers |= _numbers(examples.get("tags", []))
            for number in numbers:
                entry = found.setdefault(number, IssueScenarios(number))
                entry.scenarios.append(f"{feature.get('name', path.stem)}: {scenario['name']}")
    return found


def _numbers(tags: list[Any]) -> set[int]:
    return {int(match.group(1)) for tag in tags if (match := _TAG.match(tag.get("name", "")))}


def _single(constraints: list[str] | None) -> str | None:
    """An exact version, when the issue names exactly one (a range cannot pick a cluster to start)."""
    if constraints and len(constraints) == 1 and not re.search(r"[<>=*?\[]", constraints[0]):
        return constraints[0]
    return None


def _list(known_file: Path) -> int:
    issues = issues_in_features()
    try:
        known = load_known_issues(known_file)
    except KnownIssuesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'issue':<28} {'state':<7} {'affects':<60} scenarios")
    for number in sorted(issues):
        issue = known.get(number)
        affects = "; ".join(f"{k} {', '.join(v)}" for k, v in issue.affects.items()) if issue else "(not a known issue)"
        state = issue.state if issue else "-"
        print(f"{issue_ref(number, issue.repo if issue else 'harvester/harvester'):<28} {state:<7} {affects:<60} "
              f"{len(issues[number].scenarios)}")
    return 0


def _summarise(results: Path) -> list[tuple[str, str, str]]:
    """(status, scenario, message) of every result the run wrote."""
    rows = []
    for path in sorted(results.glob("*-result.json")):
        result = json.loads(path.read_text())
        parameters = ", ".join(f"{p['name']}={p['value'].strip(chr(39))}" for p in result.get("parameters", [])
                               if not p["name"].startswith("cell") and p["name"] not in ("backend",))
        name = result["name"] + (f" [{parameters}]" if parameters else "")
        message = ((result.get("statusDetails") or {}).get("message") or "").strip()
        rows.append((result["status"], name, message))
    return rows


_SHOWN = {"passed": "passed", "failed": "FAILED", "broken": "BROKEN", "skipped": "skipped"}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e repro", description=__doc__.split("\n\n")[0])
    parser.add_argument("issue", nargs="?", type=int, help="the issue number, e.g. 8001")
    parser.add_argument("--list", action="store_true", help="the issues the features can reproduce")
    parser.add_argument("--backend", default=None, help="simulated (default) | existing | libvirt")
    parser.add_argument("--config", type=Path, help="run configuration (for --backend existing: the lab's)")
    parser.add_argument("--known-issues", type=Path, default=KNOWN_ISSUES_FILE)
    args, pytest_args = parser.parse_known_args(argv)
    if args.list:
        return _list(args.known_issues)
    if args.issue is None:
        parser.print_usage(sys.stderr)
        print("error: name an issue number (e.g. 8001), or --list", file=sys.stderr)
        return 2
    issues = issues_in_features()
    if args.issue not in issues:
        known = ", ".join(f"#{n}" for n in sorted(issues)) or "none"
        print(f"error: no scenario in features/ is tagged @issue_{args.issue}; issues with scenarios: {known} "
              f"(harvester-e2e repro --list)", file=sys.stderr)
        return 2
    try:
        issue = load_known_issues(args.known_issues).get(args.issue)
    except KnownIssuesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    ref = issue_ref(args.issue, issue.repo if issue else "harvester/harvester")
    out = PROJECT_ROOT / "artifacts" / f"repro-{args.issue}"
    results, report = out / "allure-results", out / "allure-report"
    command = [sys.executable, "-m", "infra.cli", "run", "-m", f"issue_{args.issue}", f"--alluredir={results}",
               "-q"]
    env_overrides: dict[str, str] = {}
    version = _single(issue.affects.get("harvester_from")) if issue else None
    target = _single(issue.affects.get("harvester_to")) if issue else None
    if args.backend:
        command += ["--backend", args.backend]
    if args.config:
        command += ["--config", str(args.config)]
    if version and (args.backend in (None, "simulated")):
        command += ["--harvester-version", version]
    if target:
        env_overrides["HARVESTER_E2E_UPGRADE__TARGET"] = target
    print(f"Reproducing {ref}" + (f" ({issue.state}): {issue.title.split(':')[0]}" if issue else ""))
    if issue:
        print("  affects: " + "; ".join(f"{k} {', '.join(v)}" for k, v in issue.affects.items()))
    print(f"  runs:    {len(issues[args.issue].scenarios)} scenario(s) tagged @issue_{args.issue} on the "
          f"{args.backend or 'simulated'} backend" + (f" at {version}" if version else "")
          + (f", target {target}" if target else ""))
    import os

    completed = subprocess.run([*command, *pytest_args], cwd=PROJECT_ROOT, env={**os.environ, **env_overrides},
                               capture_output=True, text=True)
    rows = _summarise(results) if results.is_dir() else []
    for status, name, message in rows:
        verdict = "known issue" if status == "skipped" and message.startswith("known issue") else _SHOWN.get(status, status)
        print(f"  {verdict:<12} {name}")
        if message and status != "passed":
            for line in message.splitlines()[:4]:
                if line.strip():
                    print(f"               {line.strip()[:300]}")
    if not rows:
        tail = "\n".join((completed.stdout + completed.stderr).strip().splitlines()[-15:])
        print(f"  no results were written; the run said:\n{tail}")
    try:
        from infra.report import html

        html.generate_report(results, report)
        print(f"  report:  {report / 'index.html'}")
    except Exception as exc:  # noqa: BLE001 - the results are still there to read
        print(f"  report:  not generated ({exc}); raw results in {results}")
    return completed.returncode
