"""The state of the product issues scenarios reproduce on purpose, from ``ci/known-issues.yaml``.

A scenario tagged ``@known_issue @issue_8750`` is expected to fail because of harvester/harvester#8750.
Whether that expectation holds depends on the issue's state, which is kept in the repository (no network
at run time): see the comment at the top of the file for what each state does.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN_ISSUES_FILE = REPO_ROOT / "ci" / "known-issues.yaml"
ISSUE_REPO = "harvester/harvester"


class KnownIssuesError(ValueError):
    """The known-issues file is missing or malformed; the message names the file and the problem."""


class KnownIssue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["open", "closed"]
    title: str
    since: str | None = None
    checked: dt.date | None = None


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    issues: dict[int, KnownIssue] = {}


@dataclass(frozen=True)
class KnownIssues:
    issues: dict[int, KnownIssue]
    source: Path

    def get(self, number: int) -> KnownIssue | None:
        return self.issues.get(number)


def load_known_issues(path: Path = KNOWN_ISSUES_FILE) -> KnownIssues:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as error:
        raise KnownIssuesError(f"{path}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise KnownIssuesError(f"{path}: not valid YAML: {error}") from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise KnownIssuesError(f"{path}: {where}: {first['msg']}") from None
    return KnownIssues(parsed.issues, path)


def issue_ref(number: int) -> str:
    return f"{ISSUE_REPO}#{number}"
