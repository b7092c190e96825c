"""``harvester-e2e gate RESULTS_DIR``: may this build ship? A verdict from Allure results and ``ci/gate.yaml``.

    harvester-e2e gate RESULTS_DIR [--policy ci/gate.yaml] [--release-version V] [--as-of YYYY-MM-DD]
                       [--markdown FILE] [--all]

Reads every ``*-result.json`` (the latest attempt of each test), files each failure in the same category
the report shows (``ci/allure/categories.json``), and decides per result: passed; a known product issue
accepted by the policy until a date or a version; or blocking. Prints a short table (cell, scenario,
outcome, category, link, verdict) and, with ``--markdown``, writes the same for a pull-request comment.

Exit status: 0 pass, 1 fail, 2 a policy file that cannot be used. A missing or empty results folder,
unreadable results, or a required feature without results is a failure, never a pass.
"""
from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import json
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from infra import versions
from infra.report import categories as cat
from infra.report.known_issues import ISSUE_REPO
from infra.report.matrix_cell import CELL_PARAMETER_PREFIX
from infra.validation import InputError, load_mapping, one_line

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = REPO_ROOT / "ci" / "gate.yaml"
_ISSUE_URL = re.compile(r"/issues/(\d+)/?$")


class GatePolicyError(ValueError):
    """The policy file cannot be used; the message names the file and the field."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcceptedIssue(_Model):
    issue: int
    reason: str
    until: dt.date | None = Field(None, description="accepted up to and including this day")
    until_version: str | None = Field(None, description="accepted for releases before this Harvester version")


class Blocking(_Model):
    features: list[str] = ["*"]
    cells: list[dict[str, str]] = [{}]


class GatePolicy(_Model):
    release: str | None = None
    blocking: Blocking = Blocking()
    non_blocking_features: list[str] = []
    known_issue_passes: Literal["block", "warn"] = "block"
    accepted_known_issues: list[AcceptedIssue] = []


def load_policy(path: Path = DEFAULT_POLICY) -> GatePolicy:
    try:
        data = load_mapping(Path(path), "gate policy", "`blocking:` or `accepted_known_issues:`")
    except InputError as error:
        raise GatePolicyError(str(error)) from None
    try:
        return GatePolicy.model_validate(data)
    except ValidationError as error:
        raise GatePolicyError(one_line(error, GatePolicy, f"{path}: ")) from None


# --- results ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultRecord:
    """What the gate needs of one Allure result."""

    name: str
    feature: str
    status: str
    category: str | None
    cell: str
    cell_parameters: dict[str, str]
    issues: tuple[int, ...]
    links: tuple[str, ...]
    message: str


class GateInputError(Exception):
    """No usable results: the gate fails with this message."""


def read_results(results_dir: Path) -> tuple[list[ResultRecord], list[str]]:
    """The latest attempt of each test (by historyId), and problems reading the folder."""
    if not results_dir.is_dir():
        raise GateInputError(f"results folder {results_dir} does not exist: nothing ran, so nothing may ship")
    latest: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for path in sorted(results_dir.glob("*-result.json")):
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{path.name} cannot be read ({error})")
            continue
        key = str(result.get("historyId") or result.get("uuid") or path.name)
        if key not in latest or int(result.get("stop") or 0) >= int(latest[key].get("stop") or 0):
            latest[key] = result
    if not latest and not problems:
        raise GateInputError(f"results folder {results_dir} holds no results: nothing ran, so nothing may ship")
    return [_record(result) for result in latest.values()], problems


def _record(result: Mapping[str, Any]) -> ResultRecord:
    labels = result.get("labels") or []
    feature = next((str(label.get("value")) for label in labels if label.get("name") == "feature"), "")
    parameters = {str(p.get("name")): _unquote(p.get("value")) for p in result.get("parameters") or []}
    cell_parameters = {name[len(CELL_PARAMETER_PREFIX):]: value for name, value in parameters.items()
                       if name.startswith(CELL_PARAMETER_PREFIX)}
    links = tuple(str(link.get("url")) for link in result.get("links") or [] if link.get("url"))
    issues = tuple(sorted({int(m.group(1)) for link in result.get("links") or []
                           if link.get("type") == "issue" and (m := _ISSUE_URL.search(str(link.get("url", ""))))}))
    return ResultRecord(
        name=str(result.get("name") or result.get("fullName") or "?"),
        feature=feature,
        status=str(result.get("status") or "unknown"),
        category=cat.classify_result(result),
        cell=parameters.get("cell", ""),
        cell_parameters=cell_parameters,
        issues=issues,
        links=links,
        message=str((result.get("statusDetails") or {}).get("message") or ""),
    )


def _unquote(value: Any) -> str:
    # allure-pytest stores parameter values as Python reprs ("'v1.4.2'").
    text = str(value)
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


# --- verdict ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    cell: str
    scenario: str
    outcome: str
    category: str
    links: tuple[str, ...]
    verdict: str  # "ok" | "accepted ..." | "BLOCKS: ..." | "warn: ..." | "skipped"
    blocks: bool


@dataclass
class GateVerdict:
    passed: bool
    rows: list[Row]
    problems: list[str] = field(default_factory=list)
    cells: int = 0
    policy: str = ""


def evaluate(records: Sequence[ResultRecord], policy: GatePolicy, *, today: dt.date,
             release_version: str | None = None, read_problems: Sequence[str] = (),
             policy_name: str = "") -> GateVerdict:
    rows: list[Row] = []
    problems = list(read_problems)
    ran_in_scope = 0
    for record in records:
        in_scope = _in_scope(record, policy)
        outcome = _outcome(record)
        verdict, blocks = _decide(record, outcome, in_scope, policy, today, release_version or policy.release)
        if (in_scope and record.status != "skipped") or verdict.startswith("accepted"):
            ran_in_scope += 1
        rows.append(Row(compact_cell(record), record.name, outcome, record.category or "-", record.links, verdict,
                        blocks))
    for feature in (f for f in policy.blocking.features if not _is_pattern(f)):
        if not any(r.feature == feature and r.status != "skipped" for r in records):
            problems.append(f"blocking feature {feature!r} has no results that ran")
    if records and ran_in_scope == 0:
        problems.append("no result in the blocking scope ran (everything skipped or out of scope)")
    passed = not problems and not any(row.blocks for row in rows)
    return GateVerdict(passed, rows, problems, len({r.cell for r in records}), policy_name)


def compact_cell(record: ResultRecord) -> str:
    """``v1.4.2→master-ce188325-head rancher v2.10 rke2 v1.31`` from the cell's parameters ("-" outside a matrix)."""
    params = record.cell_parameters
    if not params:
        return record.cell or "-"
    parts = [params.get("harvester_from", "") + (f"→{params['harvester_to']}" if params.get("harvester_to") else "")]
    parts += [f"{name} {params[name]}" for name in ("rancher", "rke2") if params.get(name)]
    return " ".join(part for part in parts if part) or record.cell or "-"


def _outcome(record: ResultRecord) -> str:
    if record.category == cat.KNOWN_PRODUCT_ISSUE:
        return "xfail"
    if record.category == cat.KNOWN_ISSUE_PASSES:
        return "xpass"
    return record.status


def _in_scope(record: ResultRecord, policy: GatePolicy) -> bool:
    if any(fnmatch.fnmatchcase(record.feature, pattern) for pattern in policy.non_blocking_features) \
            and record.feature not in policy.blocking.features:
        return False
    if not any(fnmatch.fnmatchcase(record.feature, pattern) for pattern in policy.blocking.features):
        return False
    return any(_cell_matches(record.cell_parameters, rule) for rule in policy.blocking.cells)


def _cell_matches(parameters: Mapping[str, str], rule: Mapping[str, str]) -> bool:
    return all(name in parameters and fnmatch.fnmatchcase(parameters[name], str(pattern))
               for name, pattern in rule.items())


def _decide(record: ResultRecord, outcome: str, in_scope: bool, policy: GatePolicy, today: dt.date,
            release_version: str | None) -> tuple[str, bool]:
    if record.status == "passed":
        return "ok", False
    if outcome == "xfail":
        target = release_version or record.cell_parameters.get("harvester_to")
        accepted, why = _acceptance(record, policy, today, target)
        if accepted:
            return f"accepted {why}", False
        return (f"BLOCKS: {why}", True) if in_scope else (f"warn: {why}", False)
    if record.status == "skipped":
        return "skipped", False
    if outcome == "xpass" and policy.known_issue_passes == "warn":
        return "warn: known issue no longer reproduces; update ci/known-issues.yaml", False
    reason = "known issue no longer reproduces; update ci/known-issues.yaml" if outcome == "xpass" \
        else (record.category or "failed")
    return (f"BLOCKS: {reason}", True) if in_scope else (f"warn: {reason} (not blocking)", False)


def _acceptance(record: ResultRecord, policy: GatePolicy, today: dt.date, version: str | None) -> tuple[bool, str]:
    if not record.issues:
        return False, "a known issue with no linked issue cannot be accepted"
    expired: list[str] = []
    for entry in (e for e in policy.accepted_known_issues if e.issue in record.issues):
        ref = f"#{entry.issue}"
        if entry.until is not None and today > entry.until:
            expired.append(f"acceptance of {ref} expired on {entry.until.isoformat()}")
        elif entry.until_version is not None and version is None:
            expired.append(f"acceptance of {ref} holds until {entry.until_version}, and the release version is "
                           "unknown (pass --release-version)")
        elif entry.until_version is not None and version is not None and \
                version_key(version) >= version_key(entry.until_version):
            expired.append(f"acceptance of {ref} ended at {entry.until_version} (release {version})")
        else:
            bounds = [b for b in (entry.until and f"until {entry.until.isoformat()}",
                                  entry.until_version and f"before {entry.until_version}") if b]
            return True, f"{ref} {' and '.join(bounds) or '(no end)'}"
    if expired:
        return False, "; ".join(expired)
    refs = ", ".join(f"{ISSUE_REPO}#{n}" for n in record.issues)
    return False, f"known issue {refs} is not accepted for release in the gate policy"


def version_key(version: str) -> tuple[int, Any]:
    """Order Harvester versions: v1.5.0-rc2 < v1.5.0 < v1.5.1; a dev build (master-ce188325-head) after every release."""
    try:
        return versions.order_key(version)
    except ValueError:
        return 2, (version,)


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


# --- output ----------------------------------------------------------------------------------------

def _short_link(url: str) -> str:
    match = re.match(r"https://github\.com/([^/]+/[^/]+)/(?:issues|pull)/(\d+)", url)
    if not match:
        return url
    return f"#{match.group(2)}" if match.group(1) == ISSUE_REPO else f"{match.group(1)}#{match.group(2)}"


def _shown_rows(verdict: GateVerdict, show_all: bool) -> list[Row]:
    """Every result that did not simply pass, plus one line per cell for the ones that did."""
    rows = [row for row in verdict.rows if show_all or row.verdict != "ok"]
    if not show_all:
        passed = Counter(row.cell for row in verdict.rows if row.verdict == "ok")
        rows += [Row(cell, f"{n} scenario{'s' if n != 1 else ''}", "passed", "-", (), "ok", False)
                 for cell, n in sorted(passed.items())]
    return sorted(rows, key=lambda r: (not r.blocks, r.verdict == "ok", r.cell, r.scenario))


def _headline(verdict: GateVerdict) -> str:
    word = "PASS" if verdict.passed else "FAIL"
    blocking = sum(row.blocks for row in verdict.rows)
    accepted = sum(row.verdict.startswith("accepted") for row in verdict.rows)
    passed = sum(row.verdict == "ok" for row in verdict.rows)
    return (f"Release gate: {word} ({len(verdict.rows)} results in {verdict.cells} cell(s): {passed} passed, "
            f"{accepted} accepted known issue(s), {blocking} blocking; policy {verdict.policy})")


def render_text(verdict: GateVerdict, *, show_all: bool = False, width: int = 56) -> str:
    header = ("cell", "scenario", "outcome", "category", "link", "verdict")
    body = [(_cut(r.cell, width), _cut(r.scenario, width), r.outcome, r.category,
             " ".join(_short_link(u) for u in r.links) or "-", r.verdict) for r in _shown_rows(verdict, show_all)]
    lines = [_headline(verdict)]
    lines += [f"problem: {problem}" for problem in verdict.problems]
    if body:
        table = [header, *body]
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        lines.append("")
        lines += ["  ".join(c.ljust(widths[i]) for i, c in enumerate(row[:-1])) + "  " + row[-1] for row in table]
    return "\n".join(lines) + "\n"


def render_markdown(verdict: GateVerdict, *, show_all: bool = False) -> str:
    icon = "✅" if verdict.passed else "❌"
    lines = [f"### {icon} {_headline(verdict)}", ""]
    lines += [f"- **problem:** {_md(problem)}" for problem in verdict.problems]
    if verdict.problems:
        lines.append("")
    lines += ["| cell | scenario | outcome | category | link | verdict |", "|---|---|---|---|---|---|"]
    for row in _shown_rows(verdict, show_all):
        links = ", ".join(f"[{_short_link(u)}]({u})" for u in row.links) or "-"
        verdict_text = f"**{_md(row.verdict)}**" if row.blocks else _md(row.verdict)
        lines.append(f"| {_md(row.cell)} | {_md(row.scenario)} | {row.outcome} | {_md(row.category)} | {links} | "
                     f"{verdict_text} |")
    return "\n".join(lines) + "\n"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# --- command -----------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=Path, help="Allure results folder (a run's or a matrix's merged one)")
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY, help=f"gate policy (default: {DEFAULT_POLICY})")
    parser.add_argument("--release-version", help="the Harvester version being released (for until_version)")
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=None,
                        help="judge accepted known issues as of this day (default: today)")
    parser.add_argument("--markdown", type=Path, help="also write the verdict as Markdown to this file")
    parser.add_argument("--all", action="store_true", help="list passed results one by one too")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    policy_name = _display_path(args.policy)
    try:
        policy = load_policy(args.policy)
    except GatePolicyError as error:
        print(f"gate policy error: {error}", file=sys.stderr)
        return 2
    try:
        records, problems = read_results(args.results)
        problems = [*problems, *_missing_cells(args.results)]
    except GateInputError as error:
        verdict = GateVerdict(False, [], [str(error)], policy=policy_name)
    else:
        verdict = evaluate(records, policy, today=args.as_of or dt.date.today(), release_version=args.release_version,
                           read_problems=problems, policy_name=policy_name)
    sys.stdout.write(render_text(verdict, show_all=args.all))
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render_markdown(verdict, show_all=args.all), encoding="utf-8")
    return 0 if verdict.passed else 1


def _missing_cells(results: Path) -> list[str]:
    """A merged matrix's summary (beside its results) names the cells no shard reported: each is a problem."""
    summary = results.parent / "matrix.json"
    try:
        missing = json.loads(summary.read_text(encoding="utf-8")).get("missing") or [] if summary.is_file() else []
    except (OSError, ValueError):
        return [f"{summary}: unreadable matrix summary"]
    return [f"cells {', '.join(missing)} never reported: their shard produced no results"] if missing else []


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
