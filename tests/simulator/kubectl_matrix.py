"""The kubectl conformance table: verb x (Harvester version, kubectl minor) -> pass / FAIL.

    python -m tests.simulator.kubectl_matrix                  # runs test_conformance_kubectl.py, then prints
    python -m tests.simulator.kubectl_matrix --junit FILE     # prints the table of an earlier run's JUnit XML

Cells come from the test ids (`test_get_wide[v1.5.0-kubectl-1.32]`); a verb a cell did not run is "-".
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

MODULE = Path(__file__).with_name("test_conformance_kubectl.py")
_CASE = re.compile(r"^(?P<test>test_\w+)\[(?P<version>.+)-kubectl-(?P<minor>\d+\.\d+)\]$")

# What QA types, per test (the table's row labels).
VERBS = {
    "test_kubectl_is_the_minor_asked_for": "version",
    "test_api_resources": "api-resources",
    "test_get_table": "get",
    "test_get_wide": "get -o wide",
    "test_get_yaml": "get -o yaml",
    "test_get_jsonpath": "get -o jsonpath",
    "test_get_custom_columns": "get -o custom-columns",
    "test_get_raw": "get --raw",
    "test_describe": "describe",
    "test_explain": "explain",
    "test_auth_can_i": "auth can-i",
    "test_events": "events",
    "test_logs": "logs",
    "test_exec": "exec",
    "test_wait_for_condition": "wait --for=condition",
    "test_wait_for_jsonpath": "wait --for=jsonpath",
    "test_wait_for_delete": "wait --for=delete",
    "test_get_watch": "get -w",
    "test_create": "create (typed)",
    "test_label": "label",
    "test_annotate": "annotate",
    "test_patch_merge_json_strategic": "patch merge/json/strategic",
    "test_replace": "replace",
    "test_delete": "delete",
    "test_apply_client_side": "apply",
    "test_apply_custom_resource_rejects_unknown_field": "apply (CR, field validation)",
    "test_apply_server_side": "apply --server-side",
    "test_dry_run_server": "--dry-run=server",
}


def read_junit(path: Path) -> dict[tuple[str, str, str], str]:
    """(test, version, minor) -> "pass" | "FAIL" | "skip"."""
    results: dict[tuple[str, str, str], str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        match = _CASE.match(case.get("name", ""))
        if not match:
            continue
        outcome = "pass"
        if case.find("failure") is not None or case.find("error") is not None:
            outcome = "FAIL"
        elif case.find("skipped") is not None:
            outcome = "skip"
        results[(match["test"], match["version"], match["minor"])] = outcome
    return results


def table(results: dict[tuple[str, str, str], str]) -> str:
    cells = list(dict.fromkeys((version, minor) for _, version, minor in results))
    tests = list(dict.fromkeys(test for test, _, _ in results))
    order = {name: i for i, name in enumerate(VERBS)}
    tests.sort(key=lambda t: order.get(t, len(order)))
    header = ["verb"] + [f"{version.lstrip('v')} / {minor}" for version, minor in cells]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for test in tests:
        row = [VERBS.get(test, test)] + [results.get((test, version, minor), "-") for version, minor in cells]
        lines.append("| " + " | ".join(row) + " |")
    totals = ["**passed**"]
    for version, minor in cells:
        outcomes = [results[(t, version, minor)] for t in tests if (t, version, minor) in results]
        totals.append(f"{outcomes.count('pass')}/{len(outcomes)}")
    lines.append("| " + " | ".join(totals) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.simulator.kubectl_matrix", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--junit", type=Path, help="JUnit XML of a run of test_conformance_kubectl.py")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression for the run (e.g. 'v1.5.0-rc2')")
    args = parser.parse_args(argv)
    junit = args.junit
    if junit is None:
        junit = Path(tempfile.mkdtemp(prefix="kubectl-matrix-")) / "junit.xml"
        command = [sys.executable, "-m", "pytest", str(MODULE), "-q", "-p", "no:cacheprovider", f"--junitxml={junit}"]
        if args.keyword:
            command += ["-k", args.keyword]
        subprocess.run(command, stdout=subprocess.DEVNULL, check=False, timeout=3600)
    if not junit.is_file():
        print(f"kubectl_matrix: no JUnit XML at {junit}", file=sys.stderr)
        return 1
    results = read_junit(junit)
    if not results:
        print(f"kubectl_matrix: {junit} has no test_conformance_kubectl cells", file=sys.stderr)
        return 1
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
