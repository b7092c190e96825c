"""`harvester-e2e`: run scenarios, run a simulated Harvester, show the effective configuration.

  harvester-e2e sim up [--version V] [--kubeconfig PATH] [--time-scale X] [--nodes N] [--port P]
  harvester-e2e sim up --lab-dir DIR [--version V] [--time-scale X] [--nodes N]   (a lab: DIR/lab.yaml for --backend existing)
  harvester-e2e lab run [--version V] [--lab-dir DIR] [-- run args...]   (a lab for one suite run as --backend existing)
  harvester-e2e sim down RUN_ID      (stop the simulated clusters a --keep-on-failure run kept)
  harvester-e2e repro ISSUE [--backend B] [--config FILE]   (or --list)
  harvester-e2e waits                (every wait the harness makes: budget, config key, default, why)
  harvester-e2e run [--backend B] [--config FILE] [--harvester-version V] [--repeat N] [pytest args...]
  harvester-e2e config show [--config FILE] [--backend B] ...
  harvester-e2e matrix MATRIX.yaml [--parallel N] [--backend B] [--config FILE] [--list] ...
  harvester-e2e gate RESULTS_DIR [--policy ci/gate.yaml] [--markdown FILE] [--release-version V]
  harvester-e2e cleanup --run-id ID [--uri URI | --config FILE] [--dry-run]   (or --list)
  harvester-e2e chaos [--runs N] [--seed S] [--stories upgrade,precheck,ippool] [--interrupts N]   (faults, interrupts)
  harvester-e2e appliance run [--version V] [--passes install,restore,failing,sigint,sigterm,sigkill] [--uri URI] [-- pytest args]
                                     (the stories on Harvester appliance VMs the libvirt backend installs)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from infra.config import SIMULATED_VERSIONS, ConfigError, describe, load_config

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML run configuration")
    parser.add_argument("--backend", help="simulated | libvirt | existing")
    parser.add_argument("--harvester-version", help="the version the cluster runs")


def _cli_overrides(args: argparse.Namespace) -> dict[str, object]:
    return {"backend": args.backend, "harvester_version": args.harvester_version}


def _is_simulated(version: str) -> bool:
    """A version the simulator runs; otherwise say so in one line naming the valid ones."""
    if version in SIMULATED_VERSIONS:
        return True
    print(f"error: --version: {version!r} is not simulated; valid: {', '.join(SIMULATED_VERSIONS)}", file=sys.stderr)
    return False


def _sim_up(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e sim up",
                                     description="Run a simulated Harvester in the foreground until Ctrl-C.")
    parser.add_argument("--version", default="v1.4.2", help=f"one of: {', '.join(SIMULATED_VERSIONS)}")
    parser.add_argument("--kubeconfig", type=Path, default=Path.cwd() / "simulator.kubeconfig")
    parser.add_argument("--time-scale", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--lab-dir", type=Path, help="write what a lab hands out (kubeconfig with several "
                        "contexts, SSH inventory, guest kubeconfig, CAs, lab.yaml) into DIR")
    args = parser.parse_args(argv)
    if not _is_simulated(args.version):
        return 2
    if args.time_scale <= 0:
        print("error: --time-scale: must be greater than 0 (e.g. 60 runs a simulated minute per second)",
              file=sys.stderr)
        return 2
    if args.lab_dir is not None:
        from infra.lab import serve_foreground

        return serve_foreground(args.lab_dir, args.version, nodes=args.nodes, time_scale=args.time_scale)
    from infra.backends.simulated import run_foreground

    return run_foreground(["--version", args.version, "--kubeconfig", str(args.kubeconfig.resolve()),
                           "--time-scale", str(args.time_scale), "--nodes", str(args.nodes),
                           "--port", str(args.port)])


def _sim_down(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e sim down",
                                     description="Stop the simulated clusters a --keep-on-failure run kept.")
    parser.add_argument("run_id")
    parser.add_argument("--artifacts-dir", type=Path, default=PROJECT_ROOT / "artifacts")
    args = parser.parse_args(argv)
    from infra.backends.simulated import stop_kept

    stopped = stop_kept(args.artifacts_dir, args.run_id)
    for line in stopped:
        print(line)
    if not stopped:
        print(f"run {args.run_id} kept no simulated cluster (nothing under {args.artifacts_dir / args.run_id})")
    return 0


def _waits(argv: list[str]) -> int:
    from infra.waits.catalogue import catalogue

    print(catalogue())
    return 0


def _run(argv: list[str]) -> int:
    """Run the scenarios with pytest; unknown options go to pytest untouched."""
    parser = argparse.ArgumentParser(prog="harvester-e2e run", add_help=False)
    _config_options(parser)
    parser.add_argument("--alluredir", default="allure-results")
    parser.add_argument("--repeat", default="1")
    args, pytest_args = parser.parse_known_args(argv)
    repeats = _repeat_count(args.repeat)
    if repeats is None:
        return 2
    try:
        config = load_config(args.config, cli=_cli_overrides(args))      # fail fast, before pytest starts
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    parallel = any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in pytest_args)
    wants_person = bool({"--pause-on-failure", "--keep-on-failure"} & set(pytest_args)) or config.keep_on_failure
    if parallel and wants_person:
        print("error: -n: --pause-on-failure and --keep-on-failure need the scenarios in this process (a worker "
              "has no terminal and keeps nothing for you); drop -n", file=sys.stderr)
        return 2
    junit = PROJECT_ROOT / "artifacts" / "junit-scenarios.xml"
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--alluredir={args.alluredir}",
               f"--junitxml={junit}"]
    if repeats > 1:
        command.append(f"--count={repeats}")          # pytest-repeat: each scenario N times, as N test ids
    for flag, value in (("--config", args.config), ("--backend", args.backend),
                        ("--harvester-version", args.harvester_version)):
        if value:
            command += [flag, str(value)]
    if not any(not a.startswith("-") and _names_a_path(a) for a in pytest_args):
        command.append("steps")
    command += pytest_args
    os.chdir(PROJECT_ROOT)
    status = _exec(command)
    return status if repeats == 1 else _report_flakes(junit, repeats, status)


def _repeat_count(value: str) -> int | None:
    if value.isdigit() and int(value) >= 1:
        return int(value)
    print(f"error: --repeat: {value!r} is not a number of runs; give a whole number of at least 1 (e.g. "
          "--repeat 20)", file=sys.stderr)
    return None


def _report_flakes(junit: Path, repeats: int, status: int) -> int:
    """After a repeated run: the scenarios whose verdict changed between runs. A flake fails the run."""
    import xml.etree.ElementTree as ET

    from infra.report.repeats import summarise

    try:
        summary = summarise(junit, repeats)
    except (OSError, ET.ParseError) as exc:
        print(f"repeat: no flake summary, the JUnit file {junit} could not be read ({exc})", file=sys.stderr)
        return status or 1
    for line in summary.lines():
        print(line)
    return max(status, 1) if summary.flakes else status


def _names_a_path(argument: str) -> bool:
    """A test path given to pytest (`steps/x.py::test`), not an option's value such as a -k expression."""
    try:
        return Path(argument.split("::")[0]).exists()
    except OSError:                     # e.g. a long -k expression is no file name at all
        return False


def _exec(command: list[str]) -> int:
    """Run pytest; an interrupt is passed on to it and waited for, so its cleanup stacks run to the end."""
    import signal
    import subprocess

    # Its own session: a terminal's Ctrl-C reaches only us, and we pass it on exactly once (a second
    # SIGINT arriving while the child's cleanup runs would cut the cleanup short).
    child = subprocess.Popen(command, start_new_session=True)
    forward = lambda signum, _frame: child.send_signal(signum)  # noqa: E731
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                return child.wait()
            except KeyboardInterrupt:       # a second Ctrl-C while the handler was being installed
                child.send_signal(signal.SIGINT)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _config_show(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="harvester-e2e config show")
    _config_options(parser)
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config, cli=_cli_overrides(args))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    yaml.safe_dump(describe(config), sys.stdout, sort_keys=False)
    return 0


def _lab_run(argv: list[str]) -> int:
    run_args: list[str] = []
    if "--" in argv:
        argv, run_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(prog="harvester-e2e lab run",
                                     description="Start a lab (a simulated Harvester handed out as a lab), run the "
                                                 "suite against it with --backend existing, stop the lab.")
    parser.add_argument("--version", default="v1.5.1", help=f"one of: {', '.join(SIMULATED_VERSIONS)}")
    parser.add_argument("--lab-dir", type=Path, default=Path("artifacts") / "lab")
    args = parser.parse_args(argv)
    if not _is_simulated(args.version):
        return 2
    from infra.lab import run_suite

    return run_suite(args.lab_dir, args.version, run_args)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {("sim", "up"): _sim_up, ("sim", "down"): _sim_down, ("lab", "run"): _lab_run, ("run",): _run, ("config", "show"): _config_show,
                ("waits",): _waits,
                ("repro",): lambda rest: __import__("infra.repro", fromlist=["main"]).main(rest),
                ("matrix",): lambda rest: __import__("infra.matrix.cli", fromlist=["main"]).main(rest),
                ("gate",): lambda rest: __import__("infra.gate", fromlist=["main"]).main(rest),
                ("cleanup",): lambda rest: __import__("infra.provision.cleanup_cli", fromlist=["main"]).main(rest),
                ("chaos",): lambda rest: __import__("infra.chaos.cli", fromlist=["main"]).main(rest),
                ("appliance", "run"): lambda rest: __import__("infra.appliance.campaign", fromlist=["main"]).main(rest)}
    for words, handler in commands.items():
        if tuple(argv[:len(words)]) == words:
            return handler(argv[len(words):])
    print(__doc__.strip(), file=sys.stderr)
    return 0 if argv[:1] in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main())
