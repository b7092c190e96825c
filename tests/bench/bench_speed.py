"""`make bench` (speed figures), each printed beside its goal, measured in this one run on this machine:

- the scenario suite as `make e2e` runs it (pytest-xdist workers, its time scale), and the same suite one
  scenario after another: both wall times and their ratio (goal: the parallel run within 60 s);
- the harness's tests as `make test` runs them, the real-VM tests aside (goal: within 120 s), and the
  real-VM tests on their own (they boot qemu under TCG here; no goal, a figure of their own);
- how long the KVM probe takes to decide (goal: under 2 s);
- the whole suite run BENCH_REPEAT times (default 20; 0 skips it) with the flakes it found (goal: 0).

Set-up (venv, kubectl, Allure) is excluded: run `make setup` first. Figures vary with what else the
machine is doing; the script prints the load average before and after so a reader can tell.

Run: .venv/bin/python tests/bench/bench_speed.py
"""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BIN = ROOT / ".venv" / "bin"
RUN_LIMIT_S = 3600            # no single measured command may run longer than an hour


@dataclass
class Figure:
    name: str
    value: str
    goal: str = ""
    met: bool | None = None

    def row(self) -> str:
        verdict = "" if self.met is None else ("met" if self.met else "MISSED")
        return f"  {self.name:<58} {self.value:>22}  {self.goal:<22} {verdict}"


def make_variable(name: str) -> str:
    """A default from the Makefile (E2E_PARALLEL, E2E_TIME_SCALE, TEST_PARALLEL): the bench measures what
    `make` runs, not a copy of it."""
    for line in (ROOT / "Makefile").read_text().splitlines():
        match = re.match(rf"^{name}\s*\?=\s*(.*)$", line)
        if match:
            return match.group(1).strip()
    raise SystemExit(f"bench: the Makefile defines no {name}")


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                            timeout=RUN_LIMIT_S, check=False)
    return time.monotonic() - started, result


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    """pytest's summary line, after the ids of whatever failed (a figure from a red run is no figure)."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))]
    return "\n".join([*failed, lines[-1] if lines else f"(no output; exit {result.returncode})"])


def scenario_run(parallel: str, extra: list[str], results: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    scale = make_variable("E2E_TIME_SCALE")
    command = [str(BIN / "harvester-e2e"), "run", f"--alluredir={results}", "-q", *shlex.split(parallel), *extra]
    return timed(command, {"HARVESTER_E2E_SIMULATED__TIME_SCALE": scale})


def kvm_probe() -> Figure:
    from infra.provision.accel import quick_kvm_probe
    from tests.provision.tiny_guest import TinyGuestUnavailable, build_tiny_guest

    try:
        kernel = build_tiny_guest().kernel
    except TinyGuestUnavailable as exc:
        return Figure("KVM probe: time to decide", f"not run ({exc})"[:22], "< 2 s")
    started = time.monotonic()
    works = quick_kvm_probe(kernel)
    seconds = time.monotonic() - started
    said = {True: "KVM works", False: "KVM does not run guests", None: "cannot be tried here"}[works]
    return Figure(f"KVM probe: time to decide ({said})", f"{seconds:.2f} s", "< 2 s", seconds < 2)


def main() -> int:
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as scratch:
        parallel = make_variable("E2E_PARALLEL")
        seconds_parallel, run = scenario_run(parallel, [], Path(scratch) / "parallel")
        figures.append(Figure(f"make e2e scenarios ({parallel})", f"{seconds_parallel:.1f} s", "<= 60 s",
                              seconds_parallel <= 60 and run.returncode == 0))
        print(f"  parallel: {last_line(run)}", flush=True)
        seconds_serial, run = scenario_run("", [], Path(scratch) / "serial")
        figures.append(Figure("the same scenarios one after another", f"{seconds_serial:.1f} s"))
        print(f"  serial:   {last_line(run)}", flush=True)
        figures.append(Figure("serial / parallel", f"{seconds_serial / seconds_parallel:.2f}x"))

        tests = [str(BIN / "python"), "-m", "pytest", "tests", "-p", "no:cacheprovider", "-q"]
        seconds, run = timed([*tests, *shlex.split(make_variable("TEST_PARALLEL")), "-m", "not real_vm"])
        figures.append(Figure("make test's pytest, real-VM tests aside", f"{seconds:.1f} s", "<= 120 s",
                              seconds <= 120 and run.returncode == 0))
        print(f"  tests:    {last_line(run)}", flush=True)
        seconds, run = timed([*tests, "-m", "real_vm"])
        figures.append(Figure("the real-VM tests on their own (qemu)", f"{seconds:.1f} s"))
        print(f"  real VM:  {last_line(run)}", flush=True)

        figures.append(kvm_probe())

        repeats = int(os.environ.get("BENCH_REPEAT", "20"))
        if repeats > 0:
            seconds, run = scenario_run(parallel, ["--repeat", str(repeats)], Path(scratch) / "repeat")
            summary = next((line for line in run.stdout.splitlines() if line.startswith("repeat:")), last_line(run))
            flaky = re.search(r"(\d+) flaky", summary)
            figures.append(Figure(f"whole suite x{repeats}: flaky scenarios ({seconds / 60:.0f} min)",
                                  flaky.group(1) if flaky else "?", "0",
                                  bool(flaky) and flaky.group(1) == "0"))
            print(f"  repeat:   {summary}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}\n\nSpeed figures (2 cores; set-up excluded)")
    for figure in figures:
        print(figure.row())
    return 0          # a missed goal is a figure to read, not a failed command: the other benches still run


if __name__ == "__main__":
    sys.exit(main())
