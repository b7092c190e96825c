"""One story selection run as `harvester-e2e run --backend existing` against a fresh lab, and what it left.

Each run gets a lab of its own (`infra.lab.build`: a simulated Harvester posing as a lab; an upgrade changes
the cluster, and no run may inherit another's state), its own run id, its own TMPDIR (so the scratch files
the run writes, credentials included, are told apart from everyone else's) and its own artifacts directory.
Afterwards:

- verdicts: from the run's JUnit XML, per scenario: passed, failed, xfailed (a known issue), skipped; a
  scenario the XML does not name is `missing`;
- leftovers: the leak audit (`infra.harvester.leaks`) for the run id against the lab; processes still alive
  that carry the run id in their environment (the run's pytest, kubectl, helm, ssh, simulated clusters:
  every process the run started inherits it); files left in the run's TMPDIR (those holding credentials
  are named as such). libvirt objects cannot be left: a lab has no libvirt, and the simulated nodes' libvirt
  (`test:///default`) lives inside the run's own process.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from infra.harvester import leaks
from infra.kube import Kube
from infra.lab import CONTEXT, Lab
from infra.lab import running as running_lab
from infra.report.repeats import junit_verdicts
from infra.waits.budget import Budget

log = logging.getLogger("harvester_e2e.chaos")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VERSION = "v1.5.1"
RUN_BUDGET = Budget("one chaos run of a story", 15 * 60)
EXIT_AFTER_RUN = Budget("the processes a run started exit after it", 15)
CREDENTIAL = re.compile(r"PRIVATE KEY-----|client-key-data|\btoken:\s*\S|BEGIN CERTIFICATE-----")


@dataclass(frozen=True)
class Story:
    name: str
    marker: str

    def selection(self, keyword: str | None = None) -> list[str]:
        return ["-m", self.marker] + (["-k", keyword] if keyword else [])


STORIES = {name: Story(name, marker) for name, marker in
           (("upgrade", "upgrade"), ("precheck", "precheck"), ("ippool", "ippool"))}


@dataclass
class Leftovers:
    leaks: list[str] = field(default_factory=list)          # objects labelled with the run id
    processes: list[str] = field(default_factory=list)      # still alive after the run, killed by us afterwards
    credentials: list[str] = field(default_factory=list)    # files with credentials left in the run's TMPDIR
    other_files: list[str] = field(default_factory=list)    # other files left there (reported, not counted)
    audit_error: str | None = None                          # the leak audit could not run (counted)

    @property
    def count(self) -> int:
        return len(self.leaks) + len(self.processes) + len(self.credentials) + (1 if self.audit_error else 0)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "leaks": self.leaks, "processes": self.processes,
                "credential_files": self.credentials, "other_temporary_files": self.other_files,
                "audit_error": self.audit_error}


@dataclass
class RunOutcome:
    run_id: str
    exit_code: int | None
    wall_s: float
    verdicts: dict[str, str]
    leftovers: Leftovers
    directory: Path
    output_tail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# --- verdicts ------------------------------------------------------------------------------------------------
def read_verdicts(junit: Path) -> dict[str, str]:
    """Scenario -> passed | failed | xfailed | skipped, from pytest's JUnit XML ({} when there is none); the
    verdicts are the release gate's (infra.report.repeats), a known issue named as pytest names it."""
    try:
        verdicts = junit_verdicts(junit, qualified=False)
    except (OSError, ET.ParseError):
        return {}
    return {name: "xfailed" if verdict == "known issue" else verdict for name, verdict in verdicts.items()}


def differences(baseline: dict[str, str], verdicts: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Scenario -> (fault-free verdict, this run's verdict), for every scenario where they differ."""
    return {name: (want, verdicts.get(name, "missing")) for name, want in baseline.items()
            if verdicts.get(name, "missing") != want} | \
           {name: ("missing", got) for name, got in verdicts.items() if name not in baseline}


# --- processes -----------------------------------------------------------------------------------------------
def processes_of(run_id: str) -> dict[int, str]:
    """Live processes (pid -> command line) whose environment carries HARVESTER_E2E_RUN_ID=run_id."""
    marker = f"HARVESTER_E2E_RUN_ID={run_id}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            status = (entry / "status").read_text()
            if "\nState:\tZ" in status:          # a zombie is already dead; its parent has not reaped it yet
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:                          # gone meanwhile, or not ours
            continue
    return found


def kill_run(run_id: str) -> None:
    """Every process of the run, at once (the driver itself is interrupted: its lab is about to go)."""
    for pid in processes_of(run_id):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def surviving_processes(run_id: str, budget: Budget = EXIT_AFTER_RUN) -> list[str]:
    """The run's processes still alive once `budget` has passed (they may take a moment after their parent);
    each is named, then killed so that the next run starts clean."""
    deadline = budget.start()
    alive = processes_of(run_id)
    while alive and not deadline.expired():
        threading.Event().wait(0.2)         # bounded by the budget: children exit shortly after their parent
        alive = processes_of(run_id)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return [f"pid {pid}: {cmdline[:160]}" for pid, cmdline in sorted(alive.items())]


# --- files ---------------------------------------------------------------------------------------------------
def files_left(tmpdir: Path) -> tuple[list[str], list[str]]:
    """(files holding credentials, other files) left under the run's TMPDIR."""
    credentials: list[str] = []
    other: list[str] = []
    for path in sorted(p for p in tmpdir.rglob("*") if p.is_file() or p.is_symlink()):
        try:
            text = path.read_bytes()[:1 << 20].decode(errors="replace")
        except OSError:
            text = ""
        (credentials if CREDENTIAL.search(text) else other).append(str(path.relative_to(tmpdir)))
    return credentials, other


def audit_leaks(lab: Lab, run_id: str) -> tuple[list[str], str | None]:
    try:
        report = leaks.audit(Kube(lab.directory / "kubeconfig", context=CONTEXT, unavailable_budget=30), run_id)
    except Exception as exc:  # noqa: BLE001 - an audit that cannot run is reported as such (and counted)
        return [], f"{type(exc).__name__}: {exc}"
    return [str(leak) for leak in report.leaks], None


def check_leftovers(run_id: str, tmpdir: Path, lab: Lab | None) -> Leftovers:
    left = Leftovers()
    left.processes = surviving_processes(run_id)
    left.credentials, left.other_files = files_left(tmpdir)
    if lab is not None:
        left.leaks, left.audit_error = audit_leaks(lab, run_id)
    return left


# --- the run -------------------------------------------------------------------------------------------------
def run_command(config: Path | None, story: Story, directory: Path, *, keyword: str | None = None,
                backend_args: tuple[str, ...] = ()) -> list[str]:
    """`harvester-e2e run` for the story, its results in `directory`; live INFO logs name the phases."""
    command = [sys.executable, "-m", "infra.cli", "run"]
    if config is not None:
        command += ["--config", str(config)]
    return command + [*backend_args, f"--alluredir={directory / 'allure-results'}",
                      f"--junitxml={directory / 'junit.xml'}", "-v", "-o", "log_cli=true",
                      "--log-cli-level=INFO", "-p", "no:cacheprovider", *story.selection(keyword)]


def run_environment(run_id: str, directory: Path, tmpdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HARVESTER_E2E_") and k != "PYTEST_ADDOPTS"}
    env.update(HARVESTER_E2E_RUN_ID=run_id, HARVESTER_E2E_ARTIFACTS_DIR=str(directory / "artifacts"),
               TMPDIR=str(tmpdir), PYTHONUNBUFFERED="1")
    return env


@dataclass
class RunningStory:
    """A started run: its process, and its output as it comes (also written to `output.log`). `on_output`
    sees every complete line and the line being written (pytest -v prints a scenario's name before its
    set-up and its verdict only after it)."""

    process: subprocess.Popen[bytes]
    started: float
    output: Path
    on_output: Callable[[str, bool], None] = lambda text, complete: None
    lines: list[str] = field(default_factory=list)
    _reader: threading.Thread | None = None

    def start_reading(self) -> None:
        self._reader = threading.Thread(target=self._read, name="chaos-run-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        fd, pending = self.process.stdout.fileno(), ""
        with open(self.output, "w") as log_file:
            while chunk := os.read(fd, 65536):         # until the run (and every holder of the pipe) is gone
                text = chunk.decode(errors="replace")
                log_file.write(text)
                log_file.flush()
                pending += text
                *complete, pending = pending.split("\n")
                for line in complete:
                    self.lines.append(line)
                    self.on_output(line, True)
                if pending:
                    self.on_output(pending, False)
            if pending:
                self.lines.append(pending)
                self.on_output(pending, True)

    def wait(self, budget: Budget) -> int | None:
        """The exit status; None when it outlived `budget` (then its whole session is killed)."""
        try:
            code: int | None = self.process.wait(budget.seconds)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            code = None
        if self._reader is not None:
            self._reader.join(10)      # a child that outlived the run may hold the pipe: do not wait for it
        return code

    def tail(self, count: int = 30) -> str:
        return "\n".join(self.lines[-count:])


def start_run(command: list[str], env: dict[str, str], directory: Path,
              on_output: Callable[[str, bool], None] = lambda text, complete: None) -> RunningStory:
    # Its own session, as a terminal's job would be: SIGINT to the group reaches the CLI, which hands it
    # to pytest once (infra.cli._exec); nothing we send reaches this driver.
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    running = RunningStory(process, time.monotonic(), directory / "output.log", on_output)
    running.start_reading()
    return running


@dataclass
class Workspace:
    """One run's places: results directory (kept), lab directory and TMPDIR (removed afterwards)."""

    directory: Path
    lab_dir: Path
    tmpdir: Path

    @classmethod
    def make(cls, directory: Path) -> "Workspace":
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, Path(tempfile.mkdtemp(prefix="chaos-lab-")), Path(tempfile.mkdtemp(prefix="chaos-tmp-")))

    def remove_temporary(self) -> None:
        shutil.rmtree(self.lab_dir, ignore_errors=True)
        shutil.rmtree(self.tmpdir, ignore_errors=True)


LAB_START = Budget("lab start", 180)
LAB_TIME_SCALE = 60.0         # simulated seconds per real second in a lab (its stall window follows it)


def run_story(story: Story, run_id: str, directory: Path, *, version: str = DEFAULT_VERSION,
              keyword: str | None = None, time_scale: float = LAB_TIME_SCALE,
              during: Callable[[Lab, RunningStory], Callable[[], dict[str, Any]]] | None = None) -> RunOutcome:
    """Run the story against a fresh lab. `during(lab, run)` is called once the run has started and returns
    a function called after it ended (the fault injector's start and stop); its result goes into `extra`."""
    workspace = Workspace.make(directory)
    try:
        with running_lab(workspace.lab_dir, version, budget=LAB_START, time_scale=time_scale) as lab:
            env = run_environment(run_id, directory, workspace.tmpdir)
            running = start_run(run_command(lab.config, story, directory, keyword=keyword), env, directory)
            finish = during(lab, running) if during is not None else (lambda: {})
            code = running.wait(RUN_BUDGET)
            wall = time.monotonic() - running.started
            extra = finish()
            left = check_leftovers(run_id, workspace.tmpdir, lab)
            return RunOutcome(run_id, code, wall, read_verdicts(directory / "junit.xml"), left, directory,
                              running.tail(), extra)
    except BaseException:
        kill_run(run_id)          # the driver was interrupted (or failed): the run must not outlive its lab
        raise
    finally:
        workspace.remove_temporary()


def new_run_id(prefix: str, index: int) -> str:
    """A run id that is a label value and says what it was: chaos-<prefix>-<index>-<random>."""
    import secrets

    return f"chaos-{prefix}-{index}-{secrets.token_hex(3)}"[:63].rstrip("-")
