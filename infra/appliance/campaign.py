"""`make e2e-libvirt`: the stories on Harvester appliance VMs that the libvirt backend installs and drives.

`harvester-e2e appliance run` builds the appliance (infra.appliance.build), starts a private libvirtd where
the machine has none (infra.provision.local_libvirtd; `--uri` names a lab's own), serves the appliance ISOs
as the lab's release mirror on 127.0.0.1 (the guests see it at 10.0.2.2), and runs `harvester-e2e run
--backend libvirt` in passes, each a run of its own:

  install  - an empty golden-image directory: the installer boots, installs to disk, the node boots from it;
             the disks are then kept as the version's golden image; cluster_health, precheck and node_power;
  restore  - the same golden directory: the node's disk is a linked clone of the golden image; cluster_health
             and node_power again;
  failing  - node_power restored from the golden image with a node-back budget far shorter than a reboot
             takes, so its scenarios fail as a run on a slow node would: it must leave nothing behind;
  sigint / sigterm - a run signalled while its installer copies to disk / while its node boots from disk
             (fresh golden directory): it must leave nothing behind;
  sigkill  - a run killed outright while its installer runs: it cannot clean up, so the leak audit must
             find what it left, and `harvester-e2e cleanup --run-id` must remove all of it.

After every pass the leak audit lists what carries the pass's run id in libvirt, plus its qemu processes and
its pool directory; anything left fails the campaign (and `harvester-e2e cleanup --run-id` removes it).
Figures go to artifacts/e2e-libvirt/<stamp>/summary.json and are printed.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from infra.report.repeats import junit_verdicts
from infra.scratch import write_private
from infra.ssh import generate_keypair
from infra.waits.budget import Budget
from infra.waits.poll import poll_until

log = logging.getLogger("harvester_e2e.appliance")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
STORIES = "smoke or precheck or nodes"           # cluster_health, precheck_orphan_machine, node_power
RESTORE_STORIES = "smoke or nodes"
PASSES = ("install", "restore", "failing", "sigint", "sigterm", "sigkill")
# Where each interrupted pass is signalled: the console line the appliance prints at that moment.
INTERRUPTS = {
    "sigint": (signal.SIGINT, ("installer: copying the system", "provisioning: the installer copying to disk")),
    "sigterm": (signal.SIGTERM, ("booting Harvester", "provisioning: the node booting from its disk")),
    "sigkill": (signal.SIGKILL, ("installer: copying the system", "provisioning: the installer copying to disk")),
}
GUEST_HOST = "10.0.2.2"                          # the host's 127.0.0.1, as qemu's user network shows it to guests


@dataclass
class PassResult:
    name: str
    run_id: str
    wall_s: float
    exit_status: int
    verdicts: dict[str, int] = field(default_factory=dict)       # passed/failed/skipped/... -> count
    provisioning: dict[str, Any] = field(default_factory=dict)   # the run's provisioning.json
    leftovers_before: list[str] = field(default_factory=list)
    leftovers_after: list[str] = field(default_factory=list)
    reboot_s: dict[str, float] = field(default_factory=dict)    # step -> seconds, from the steps' attachments
    signal: str | None = None
    signalled_in: str | None = None
    cleanup: str | None = None          # sigkill: what `harvester-e2e cleanup --run-id` said
    leftovers_after_cleanup: list[str] = field(default_factory=list)


class ReleaseMirror:
    """The appliance ISOs over HTTP on 127.0.0.1, as a lab's release mirror serves Harvester ISOs."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietFiles, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="release-mirror", daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://{GUEST_HOST}:{self._server.server_address[1]}/{name}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.info("release mirror: %s", format % args)


def sha512_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_config(*, run_id: str, version: str, uri: str, appliance: Any, key_file: Path, golden_dir: Path | None,
               pools_dir: Path, artifacts_dir: Path, releases: list[dict[str, str]], target: str | None,
               memory_gib: float) -> dict[str, Any]:
    """The run configuration a lab engineer would write for these VMs (README: libvirt backend)."""
    return {
        "backend": "libvirt",
        "run_id": run_id,
        "harvester_version": version,
        "artifacts_dir": str(artifacts_dir),
        "libvirt": {
            "uri": uri, "nodes": 1, "vcpus": 1, "memory_gib": memory_gib, "disk_gib": 4,
            "install": "iso", "iso_url": str(appliance.iso(version)), "kernel_url": str(appliance.kernel),
            "initrd_url": str(appliance.initrd), "boot_mode": "bios", "network_mode": "user",
            "install_skipchecks": True, "domain_type": "auto", "storage_pool_dir": str(pools_dir),
            "golden_image_dir": str(golden_dir) if golden_dir else None, "ssh_user": "rancher",
            "ssh_key_file": str(key_file),
            "install_timeout_min": 20, "boot_timeout_min": 10, "api_timeout_min": 10,
        },
        "upgrade": {"target": target or None, "releases": releases},
    }


def leftovers(uri: str, run_id: str, pools_dir: Path) -> list[str]:
    """What a run left: libvirt objects carrying its id, qemu processes naming it, its pool directory."""
    from infra.provision import leak_audit, open_connection

    found: list[str] = []
    conn = open_connection(uri)
    try:
        found += [str(o) for o in leak_audit(conn, run_id)]
    finally:
        conn.close()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "qemu-system" in cmdline and run_id in cmdline:
            found.append(f"qemu process {proc.name}")
    if (pools_dir / run_id).exists():
        found.append(f"pool directory {pools_dir / run_id}")
    return found


def _verdict_counts(junit: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        verdicts = junit_verdicts(junit)
    except (OSError, ET.ParseError):      # no JUnit file, or half a one (a killed run): no verdicts
        return counts
    for verdict in verdicts.values():
        counts[verdict] = counts.get(verdict, 0) + 1
    return counts


def _reboot_times(results: Path) -> dict[str, float]:
    """Seconds from the reboot / power-cycle steps' attachments (`...: 12.3s`)."""
    times: dict[str, float] = {}
    for attachment in sorted(results.glob("*-attachment*")) if results.is_dir() else []:
        try:
            text = attachment.read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            for label in ("reboot to SSH with a new boot id", "power cycle to Ready with a new boot id"):
                if line.startswith(label + ": ") and line.endswith("s"):
                    times[label] = float(line.split(": ", 1)[1].rstrip("s"))
    return times


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.directory = (args.artifacts_dir / "e2e-libvirt" / self.stamp).resolve()
        self.pools_dir = self.directory / "pools"
        self.results: list[PassResult] = []

    def _write_config(self, name: str, run_id: str, golden_dir: Path, uri: str, appliance: Any,
                      mirror: ReleaseMirror, key_file: Path, timeouts: dict[str, float] | None = None) -> Path:
        version, target = self.args.version, self.args.target
        golden: Path | None = None if self.args.no_golden else golden_dir
        releases = []
        if target:
            iso = appliance.iso(target)
            releases.append({"version": target, "iso_url": mirror.url(iso.name), "iso_checksum": sha512_of(iso)})
        config = run_config(run_id=run_id, version=version, uri=uri, appliance=appliance, key_file=key_file,
                            golden_dir=golden, pools_dir=self.pools_dir, artifacts_dir=self.directory / "runs",
                            releases=releases, target=target, memory_gib=self.args.memory_gib)
        if timeouts:
            config["timeouts"] = timeouts
        return write_private(self.directory / name / "run.yaml", yaml.safe_dump(config, sort_keys=False))

    def _command(self, config: Path, name: str, stories: str) -> list[str]:
        return [sys.executable, "-m", "infra.cli", "run", "--config", str(config),
                f"--alluredir={self.directory / name / 'allure-results'}", "-m", stories,
                f"--junitxml={self.directory / name / 'junit.xml'}", *self.args.pytest_args]

    def run_pass(self, name: str, run_id: str, config: Path, stories: str, uri: str,
                 interrupt: tuple[signal.Signals, tuple[str, str]] | None = None) -> PassResult:
        before = leftovers(uri, run_id, self.pools_dir)
        started = time.monotonic()
        log_file = self.directory / name / "run.log"
        with log_file.open("wb") as out:
            process = subprocess.Popen(self._command(config, name, stories), cwd=PROJECT_ROOT, stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            signalled_in = None
            try:
                if interrupt is not None:
                    signalled_in = self._signal_at(process, run_id, *interrupt)
                status = process.wait(timeout=self.args.pass_timeout_min * 60)
            except BaseException:
                os.killpg(process.pid, signal.SIGTERM)     # our own run: never leave it running
                process.wait(60)
                raise
        result = PassResult(name, run_id, round(time.monotonic() - started, 1), status,
                            verdicts=_verdict_counts(self.directory / name / "junit.xml"),
                            leftovers_before=before, leftovers_after=leftovers(uri, run_id, self.pools_dir),
                            reboot_s=_reboot_times(self.directory / name / "allure-results"),
                            signal=interrupt[0].name if interrupt else None, signalled_in=signalled_in)
        record = self.directory / "runs" / run_id / "libvirt" / "provisioning.json"
        if record.is_file():
            result.provisioning = json.loads(record.read_text())
        self.results.append(result)
        log.info("pass %s: exit %s in %.0fs; verdicts %s; left %s", name, status, result.wall_s, result.verdicts,
                 result.leftovers_after or "nothing")
        return result

    def _signal_at(self, process: subprocess.Popen[bytes], run_id: str, signum: signal.Signals,
                   moment: tuple[str, str]) -> str:
        """Signal the run once its node's console shows `moment` (a line the appliance prints), as a person's
        Ctrl-C or a CI job's cancel would land: in the middle of provisioning."""
        marker, described = moment
        consoles = self.directory / "runs" / run_id / "libvirt" / "consoles"

        def reached() -> bool | None:
            if process.poll() is not None:
                raise RuntimeError(f"the run ended (exit {process.returncode}) before {described}")
            return any(marker in f.read_text(errors="replace") for f in consoles.glob("*.log")) or None

        poll_until(reached, Budget.minutes(f"the node's console shows {marker!r}", 15), described, interval_s=0.5)
        if signum is signal.SIGKILL:          # the whole run at once, pytest too: nothing of it may run on
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        return described

    def clean_up_after(self, result: PassResult, uri: str) -> None:
        """What a killed run left, removed by the command a person would run, then audited again."""
        done = subprocess.run([sys.executable, "-m", "infra.cli", "cleanup", "--run-id", result.run_id, "--uri", uri],
                              cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
        result.cleanup = f"exit {done.returncode}: " + " ".join((done.stdout + done.stderr).split())[-300:]
        result.leftovers_after_cleanup = leftovers(uri, result.run_id, self.pools_dir)

    def summary(self) -> dict[str, Any]:
        return {"stamp": self.stamp, "version": self.args.version, "passes": [asdict(r) for r in self.results]}


def _print_summary(campaign: Campaign) -> None:
    print(f"\ne2e-libvirt {campaign.stamp}: Harvester appliance {campaign.args.version}")
    for r in campaign.results:
        verdicts = ", ".join(f"{n} {v}" for v, n in sorted(r.verdicts.items())) or "no verdicts"
        print(f"  {r.name:<18} exit {r.exit_status:<4} {r.wall_s:7.1f}s  {verdicts}")
        if r.provisioning:
            print(f"    provisioning: {r.provisioning.get('how')} as {r.provisioning.get('domain_type')}; "
                  + "; ".join(f"{k} {v}s" for k, v in r.provisioning.get("timings_s", {}).items()))
        for label, seconds in r.reboot_s.items():
            print(f"    {label}: {seconds}s")
        if r.signal:
            print(f"    {r.signal} in {r.signalled_in}")
        print(f"    leak audit before: {r.leftovers_before or 'nothing'}; after: {r.leftovers_after or 'nothing'}")
        if r.cleanup is not None:
            print(f"    harvester-e2e cleanup --run-id {r.run_id}: {r.cleanup}")
            print(f"    leak audit after the cleanup: {r.leftovers_after_cleanup or 'nothing'}")
    print(f"summary: {campaign.directory / 'summary.json'}")


def _ok(result: PassResult, interrupted: bool) -> bool:
    if result.leftovers_after:
        return False
    if interrupted:
        return result.exit_status != 0          # it stopped; a pass would mean the signal never landed
    return result.exit_status == 0 and result.verdicts.get("failed", 0) == 0 and result.verdicts.get("passed", 0) > 0


@functools.cache
def _appliance(versions: tuple[str, ...]) -> Any:
    from infra.appliance import build_appliance

    return build_appliance(list(versions))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    campaign = Campaign(args)
    campaign.directory.mkdir(parents=True, exist_ok=True)
    versions = tuple(v for v in (args.version, args.target) if v)
    started = time.monotonic()
    from infra.appliance import ApplianceUnavailable

    try:
        appliance = _appliance(versions)
    except ApplianceUnavailable as exc:
        print(f"appliance unavailable: {exc}", file=sys.stderr)
        return 3
    log.info("appliance ready in %.0fs", time.monotonic() - started)
    key = generate_keypair(campaign.directory / "ssh", comment="harvester-e2e-libvirt")
    daemon = None
    uri = args.uri
    if uri is None:
        from infra.provision.local_libvirtd import LibvirtdUnavailable, start_libvirtd

        try:
            daemon = start_libvirtd()
        except LibvirtdUnavailable as exc:
            print(f"libvirtd unavailable: {exc} (or name a libvirt host's with --uri)", file=sys.stderr)
            return 3
        uri = daemon.uri
    mirror = ReleaseMirror(appliance.iso(args.version).parent)
    ok = True
    try:
        passes = [p.strip() for p in args.passes.split(",") if p.strip()]
        golden = campaign.directory / "golden"
        for name in passes:
            run_id = f"e2e-lv-{campaign.stamp[-6:]}-{name[:4]}"
            if name == "install":
                config = campaign._write_config(name, run_id, golden, uri, appliance, mirror, key.private_key_file)
                result = campaign.run_pass(name, run_id, config, args.stories, uri)
                ok &= _ok(result, False)
            elif name == "restore":
                config = campaign._write_config(name, run_id, golden, uri, appliance, mirror, key.private_key_file)
                result = campaign.run_pass(name, run_id, config, RESTORE_STORIES, uri)
                ok &= _ok(result, False) and "restored" in str(result.provisioning.get("how"))
            elif name == "failing":
                # 0.1 min: the reboot and the power cycle cannot bring the node back in 6 s
                config = campaign._write_config(name, run_id, golden, uri, appliance, mirror, key.private_key_file,
                                                timeouts={"node_ready_min": 0.1})
                result = campaign.run_pass(name, run_id, config, "nodes", uri)
                ok &= not result.leftovers_after and result.verdicts.get("failed", 0) > 0
            elif name in INTERRUPTS:
                config = campaign._write_config(name, run_id, campaign.directory / name / "golden", uri, appliance,
                                                mirror, key.private_key_file)
                result = campaign.run_pass(name, run_id, config, args.stories, uri, interrupt=INTERRUPTS[name])
                if name == "sigkill":
                    campaign.clean_up_after(result, uri)
                    ok &= bool(result.leftovers_after) and not result.leftovers_after_cleanup
                else:
                    ok &= _ok(result, True)
            else:
                raise AssertionError(f"unknown pass {name!r}")      # parse_args refused it already
    finally:
        mirror.stop()
        (campaign.directory / "summary.json").write_text(json.dumps(campaign.summary(), indent=2) + "\n")
        if daemon is not None:
            daemon.stop()
    _print_summary(campaign)
    print(f"e2e-libvirt: {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s")
    return 0 if ok else 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    pytest_args: list[str] = []
    if "--" in argv:
        argv, pytest_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    parser = argparse.ArgumentParser(prog="harvester-e2e appliance run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="v1.5.1", help="the Harvester version the appliance installs")
    parser.add_argument("--target", default="v1.5.2", help="the release the precheck asks admission for "
                                                           "(served by the release mirror); '' for none")
    parser.add_argument("--passes", default=",".join(PASSES))
    parser.add_argument("--stories", default=STORIES, help="pytest -m expression for the install pass")
    parser.add_argument("--uri", help="a libvirt URI; default: a private libvirtd started for the campaign")
    parser.add_argument("--no-golden", action="store_true", help="keep no golden image (the install pass alone)")
    parser.add_argument("--memory-gib", type=float, default=1.0)
    parser.add_argument("--pass-timeout-min", type=float, default=45.0)
    parser.add_argument("--artifacts-dir", type=Path, default=PROJECT_ROOT / "artifacts")
    args = parser.parse_args(argv)
    unknown = [p for p in args.passes.split(",") if p.strip() and p.strip() not in PASSES]
    if unknown:
        parser.error(f"--passes: unknown pass {unknown[0]!r}; known: {', '.join(PASSES)}")
    args.pytest_args = pytest_args
    return args


def main(argv: list[str]) -> int:
    return run(parse_args(argv))
