"""Build the HTML report from an Allure results directory with the Allure 3 CLI (npm ``allure``).

    python -m infra.report.html allure-results allure-report [--single-file]

The CLI is pinned in ``package.json``/``package-lock.json`` and installed by ``npm ci`` into
``node_modules`` at the repository root; it needs Node.js only (no Java). The command run is

    node node_modules/.bin/allure generate --config allurerc.mjs --output <staging> <results>

with per-run settings passed to ``allurerc.mjs`` through ``HARVESTER_REPORT_*`` variables.

Trends: Allure 3 keeps history in one JSON-lines file that every generation appends to. It lives
in ``<report>/history/history.jsonl`` so keeping the report directory (CI artifact or cache) is
all it takes for the next report to show trends.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ALLURE_CONFIG = REPO_ROOT / "allurerc.mjs"
HISTORY_DIR_NAME = "history"
HISTORY_FILE_NAME = "history.jsonl"

# The awesome plugin of allure 3.18 always embeds Google Analytics in index.html (it ignores
# ALLURE_NO_ANALYTICS); reports are opened on lab machines and must not call out.
_ANALYTICS_SCRIPTS = re.compile(
    r"[ \t]*<script[^>]*\bsrc=\"https://www\.googletagmanager\.com/[^\"]*\"[^>]*>\s*</script>[ \t]*\n?"
    r"(?:[ \t]*<script>(?:(?!</script>).)*?\bgtag\((?:(?!</script>).)*?</script>[ \t]*\n?)?",
    re.DOTALL,
)
_REPORT_MARKERS = {"index.html", "summary.json", "data", "widgets", HISTORY_DIR_NAME}


class ReportToolMissing(RuntimeError):
    """Node.js or the Allure 3 CLI is not installed; the message says how to install it."""


class ReportGenerationFailed(RuntimeError):
    """The Allure CLI ran but did not produce a report."""


def allure_command(repo_root: Path = REPO_ROOT) -> list[str]:
    """``[node, <repo>/node_modules/.bin/allure]``, or ReportToolMissing naming the fix."""
    node = shutil.which("node")
    if node is None:
        raise ReportToolMissing(
            "Node.js is not installed, and the Allure 3 report generator needs it: run "
            f"`apt-get install nodejs npm` (Debian), then `npm ci` in {repo_root}"
        )
    cli = repo_root / "node_modules" / ".bin" / "allure"
    if not cli.exists():
        raise ReportToolMissing(f"Allure 3 CLI not found at {cli}: run `npm ci` in {repo_root}")
    return [node, str(cli)]


def generate_report(
    results_dir: Path,
    report_dir: Path,
    *,
    single_file: bool = False,
    history_path: Path | None = None,
    report_name: str | None = None,
    repo_root: Path = REPO_ROOT,
    timeout: float = 600,
) -> Path:
    """Generate the HTML report into ``report_dir`` (replacing an older report there).

    Returns the path of ``index.html``. ``single_file`` inlines everything into it, for mailing
    or attaching to an issue.
    """
    results_dir = Path(results_dir).resolve()
    report_dir = Path(report_dir).resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"Allure results directory not found: {results_dir}")
    _refuse_dangerous_report_dir(report_dir, results_dir, repo_root)
    command = allure_command(repo_root)
    history_path = Path(history_path).resolve() if history_path else report_dir / HISTORY_DIR_NAME / HISTORY_FILE_NAME

    report_dir.parent.mkdir(parents=True, exist_ok=True)
    # Allure only writes a flat report into an empty directory, so build it aside and swap it in.
    staging = Path(tempfile.mkdtemp(prefix=f".{report_dir.name}-", dir=report_dir.parent))
    try:
        command += ["generate", "--config", str(repo_root / ALLURE_CONFIG.name),
                    "--output", str(staging), str(results_dir)]
        env = {
            **os.environ,
            "ALLURE_NO_ANALYTICS": "true",
            "NO_COLOR": "1",
            "FORCE_COLOR": "0",
            "HARVESTER_REPORT_HISTORY": str(history_path),
            "HARVESTER_REPORT_SINGLE_FILE": "true" if single_file else "false",
        }
        if report_name:
            env["HARVESTER_REPORT_NAME"] = report_name
        try:
            completed = subprocess.run(command, cwd=repo_root, env=env, capture_output=True, text=True,
                                       timeout=timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise ReportGenerationFailed(f"`{' '.join(command)}` did not finish in {timeout} s") from error
        index = staging / "index.html"
        if completed.returncode != 0 or not index.is_file():
            output = (completed.stdout + completed.stderr).strip()[-4000:]
            raise ReportGenerationFailed(
                f"`{' '.join(command)}` exited with {completed.returncode} and no index.html:\n{output}"
            )
        _strip_analytics(index)
        _replace_report(staging, report_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report_dir / "index.html"


def _refuse_dangerous_report_dir(report_dir: Path, results_dir: Path, repo_root: Path) -> None:
    # The old report is deleted before the new one moves in: never let that hit a source tree.
    forbidden = {Path("/"), Path.home().resolve(), repo_root.resolve()}
    if report_dir in forbidden or report_dir == results_dir or report_dir in results_dir.parents:
        raise ValueError(f"refusing to write the report into {report_dir}")
    if report_dir.is_dir():
        entries = {entry.name for entry in report_dir.iterdir()}
        if entries and not entries & _REPORT_MARKERS:
            raise ValueError(f"{report_dir} is not empty and does not look like an Allure report; "
                             "choose another report directory")


def _strip_analytics(index: Path) -> None:
    html = index.read_text(encoding="utf-8")
    cleaned = _ANALYTICS_SCRIPTS.sub("", html)
    if cleaned != html:
        index.write_text(cleaned, encoding="utf-8")


def _replace_report(staging: Path, report_dir: Path) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    for entry in report_dir.iterdir():
        if entry.name == HISTORY_DIR_NAME:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for entry in staging.iterdir():
        shutil.move(str(entry), str(report_dir / entry.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.report.html",
        description="Generate the Allure 3 HTML report and print the path of its index.html.",
    )
    parser.add_argument("results", type=Path, help="Allure results directory (pytest --alluredir)")
    parser.add_argument("report", type=Path, help="report directory to (re)create")
    parser.add_argument("--single-file", action="store_true", help="inline everything into index.html")
    parser.add_argument("--history", type=Path, default=None,
                        help=f"history file (default: REPORT/{HISTORY_DIR_NAME}/{HISTORY_FILE_NAME})")
    parser.add_argument("--name", default=None, help="report title")
    args = parser.parse_args(argv)
    try:
        index = generate_report(args.results, args.report, single_file=args.single_file,
                                history_path=args.history, report_name=args.name)
    except ReportToolMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 127
    except (ReportGenerationFailed, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
