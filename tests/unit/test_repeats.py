"""`--repeat N`: the JUnit file pytest-repeat really writes is read back one verdict per run, and a verdict
that changes between runs is a flake; one that is the same every time (a known issue included) is not."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from infra.cli import main
from infra.report.repeats import junit_verdicts, summarise, unrepeated

TESTS = '''
import pytest
from pathlib import Path

COUNTER = Path(__file__).with_name("runs")

def test_steady():
    pass

@pytest.mark.parametrize("row", ["a-1", "b"])
def test_rows(row):
    pass

@pytest.mark.xfail(reason="known issue 8001", strict=True)
def test_known_issue():
    raise AssertionError("stalled")

def test_flaky():
    runs = int(COUNTER.read_text()) + 1 if COUNTER.exists() else 1
    COUNTER.write_text(str(runs))
    assert runs != 2, "the second run fails"
'''


def test_a_verdict_that_changes_between_repeats_is_the_only_flake(tmp_path: Path) -> None:
    (tmp_path / "test_story.py").write_text(TESTS)
    junit = tmp_path / "junit.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--count=3",
                    f"--junitxml={junit}", "--rootdir", str(tmp_path), str(tmp_path / "test_story.py")],
                   cwd=tmp_path, capture_output=True, timeout=120, check=False)
    summary = summarise(junit, 3)
    verdicts = {s.scenario.split("::")[-1]: dict(s.verdicts) for s in summary.scenarios}
    assert verdicts == {"test_steady": {"passed": 3}, "test_rows[a-1]": {"passed": 3},
                        "test_rows[b]": {"passed": 3}, "test_known_issue": {"known issue": 3},
                        "test_flaky": {"passed": 2, "failed": 1}}
    assert [s.scenario.split("::")[-1] for s in summary.flakes] == ["test_flaky"]
    assert summary.lines()[0].startswith("repeat: 5 scenario(s) x 3 = 15 run(s); 1 flaky")
    assert "FLAKY" in summary.lines()[1] and "failed x1, passed x2" in summary.lines()[1]


@pytest.mark.parametrize(("name", "scenario"), [("t[2-20]", "t"), ("t[a-1-3-20]", "t[a-1]"), ("t[a-1]", "t[a-1]"),
                                                ("t", "t")])
def test_the_repeat_counter_is_taken_off_the_id_and_nothing_else(name: str, scenario: str) -> None:
    assert unrepeated(name) == scenario


@pytest.mark.parametrize("value", ["0", "x", "-3", "2.5"])
def test_a_repeat_that_is_not_a_count_is_refused_in_one_line(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--repeat", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --repeat:") and "at least 1" in err[0]


def test_the_case_pytest_writes_for_an_interrupted_test_is_not_a_pass(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"          # what pytest's junitxml wrote when a run got SIGINT mid-test
    junit.write_text('<?xml version="1.0" encoding="utf-8"?><testsuites name="pytest tests"><testsuite name="pytest" '
                     'errors="0" failures="0" skipped="0" tests="0" time="7.1"><testcase time="0.001" />'
                     '</testsuite></testsuites>')
    assert list(junit_verdicts(junit).values()) == ["interrupted"]
