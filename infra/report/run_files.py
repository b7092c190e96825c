"""What a run writes beside its Allure results: environment facts, the executor, categories, the
history of the previous report (so trends continue), and the matrix cell a run is part of."""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from infra.report.categories import CATEGORIES_FILE
from infra.report.keys import CELL_KEY, ENVIRONMENT_KEY
from infra.report.matrix_cell import CELL_ENV_VAR
from infra.report.redact import REDACTOR


DEFAULT_HISTORY_FROM = Path("allure-report") / "history"


@dataclass(frozen=True)
class MatrixCellInfo:
    """The part of a matrix cell the report needs: its id, a title for people, and its parameters."""

    id: str
    title: str
    parameters: dict[str, str]


def environment_facts(config: pytest.Config) -> dict[str, str]:
    facts = {
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "pytest": pytest.__version__,
    }
    for package in ("pytest-bdd", "allure-pytest"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    for extra in (config.stash.get(ENVIRONMENT_KEY, None), getattr(config, "_harvester_environment", None)):
        if isinstance(extra, Mapping):
            facts.update({str(k): "" if v is None else str(v) for k, v in extra.items()})
    cell = config.stash.get(CELL_KEY, None)
    if cell is not None:
        facts["matrix.cell"] = cell.id
        facts["matrix.title"] = cell.title
        facts.update({f"matrix.{name}": value for name, value in cell.parameters.items()})
    return facts


def write_categories_json(results_dir: Path, source: Path = CATEGORIES_FILE) -> Path:
    """Copy the repository's failure categories into a results directory (Allure reads them there)."""
    path = results_dir / "categories.json"
    shutil.copyfile(source, path)
    return path


def matrix_cell_from_env(env: Mapping[str, str]) -> MatrixCellInfo | None:
    raw = env.get(CELL_ENV_VAR)
    if not raw:
        return None
    try:
        data = json.loads(raw)
        cell = MatrixCellInfo(id=str(data["id"]), title=str(data.get("title") or data["id"]),
                              parameters={str(k): str(v) for k, v in (data.get("parameters") or {}).items()})
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise pytest.UsageError(f"{CELL_ENV_VAR}: not a matrix cell ({error!r}); expected JSON like "
                                '{"id": "c01", "parameters": {"harvester_from": "v1.4.2"}}') from None
    return cell


def write_environment_properties(results_dir: Path, facts: Mapping[str, str]) -> Path:
    # redact_data also catches values whose key names them secret ("api.token": "...").
    safe_facts = REDACTOR.redact_data({str(key): str(value) for key, value in facts.items()})
    lines = [f"{_escape_property(key, is_key=True)}={_escape_property(value)}" for key, value in safe_facts.items()]
    path = results_dir / "environment.properties"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _escape_property(text: str, *, is_key: bool = False) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    if is_key:
        return re.sub(r"([ =:#!])", r"\\\1", text)
    return text


def executor_info(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Allure executor.json: where this run came from, so trends link back to CI builds."""
    env = os.environ if env is None else env
    report_url = env.get("ALLURE_REPORT_URL")
    if env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        repo = env.get("GITHUB_REPOSITORY", "")
        number = env.get("GITHUB_RUN_NUMBER", env["GITHUB_RUN_ID"])
        info = {
            "name": "GitHub Actions",
            "type": "github",
            "url": f"{server}/{repo}",
            "buildOrder": _as_int(number),
            "buildName": f"{env.get('GITHUB_WORKFLOW', 'harvester-e2e')} #{number}",
            "buildUrl": f"{server}/{repo}/actions/runs/{env['GITHUB_RUN_ID']}",
        }
    elif env.get("BUILD_URL"):
        number = env.get("BUILD_NUMBER", "0")
        info = {
            "name": "Jenkins",
            "type": "jenkins",
            "url": env.get("JENKINS_URL", env["BUILD_URL"]),
            "buildOrder": _as_int(number),
            "buildName": f"{env.get('JOB_NAME', 'harvester-e2e')} #{number}",
            "buildUrl": env["BUILD_URL"],
        }
    else:
        started = int(time.time())
        info = {
            "name": "harvester-e2e",
            "type": "local",
            "buildOrder": started,
            "buildName": f"harvester-e2e on {socket.gethostname()} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(started))}",
        }
    if report_url:
        info["reportUrl"] = report_url
    info["reportName"] = "Harvester upgrade e2e"
    return REDACTOR.redact_data(info)


def _as_int(value: str) -> int | str:
    return int(value) if str(value).isdigit() else value


def write_executor_json(results_dir: Path, env: Mapping[str, str] | None = None) -> Path:
    path = results_dir / "executor.json"
    path.write_text(json.dumps(executor_info(env), indent=2) + "\n", encoding="utf-8")
    return path


def _copy_history_forward(config: pytest.Config, results_dir: Path) -> None:
    option = getattr(config.option, "allure_history_from", None)
    source = Path(option) if option else config.rootpath / DEFAULT_HISTORY_FROM
    if not source.is_absolute():
        source = (Path.cwd() if option else config.rootpath) / source
    history = source / "history" if (source / "history").is_dir() else source
    if not history.is_dir() or not any(history.glob("*.json")):
        return
    shutil.copytree(history, results_dir / "history", dirs_exist_ok=True)
