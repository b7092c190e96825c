"""Known product issues, as data (``ci/known-issues.yaml``): which versions each affects and how it shows.

A scenario tagged ``@known_issue @issue_N`` is judged against issue N after it ran, from the facts of the
run (the cluster's version, the upgrade target, the dashboard's releases ... recorded by the steps, and a
matrix cell's parameters):

* not on an affected version: it is an ordinary scenario (pass is pass, failure is failure);
* on an affected version and it failed the way the issue shows (the step, the exception, the message): an
  expected failure, "known issue N";
* on an affected version but it failed some other way: a real failure, in its own category (an
  attachment says why it is not the known one: "failed otherwise than known issue N shows");
* on an affected version and it passed: a change worth a look ("known issue N no longer reproduces").

An issue closed upstream still explains a failure on the versions it affected: old builds stay broken.
Its state is shown, it does not change the judgement. No network at run time: the file is the source.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from infra import versions
from infra.validation import InputError, load_mapping, one_line

REPO_ROOT = Path(__file__).resolve().parents[2]
KNOWN_ISSUES_FILE = REPO_ROOT / "ci" / "known-issues.yaml"
ISSUE_REPO = "harvester/harvester"


class KnownIssuesError(ValueError):
    """The known-issues file is missing or malformed; the message names the file and the problem."""


class Signature(BaseModel):
    """How the issue shows in a failing scenario; every given part must match."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str | None = Field(None, description="regex the failing Gherkin step's text must match")
    exception: str = Field(description="class name of the failure (or of one of its bases)")
    message: str | None = Field(None, description="regex searched in the failure's message")
    attributes: dict[str, str] = Field(default_factory=dict, description="attributes of the failure, e.g. phase")

    @field_validator("step", "message")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression ({exc}): {value!r}") from None
        return value

    def matches(self, failure: BaseException, step: str | None) -> list[str]:
        """What does not match (empty: it is this issue)."""
        misses = []
        names = [cls.__name__ for cls in type(failure).__mro__]
        if self.exception not in names:
            misses.append(f"it raised {type(failure).__name__}, the issue shows {self.exception}")
        if self.step is not None and not (step and re.search(self.step, step)):
            misses.append(f"it failed in step {step!r}, the issue shows in a step matching {self.step!r}")
        if self.message is not None and not re.search(self.message, str(failure), re.DOTALL):
            misses.append(f"its message does not match {self.message!r}")
        for name, wanted in self.attributes.items():
            have = getattr(failure, name, None)
            if str(have) != wanted:
                misses.append(f"its {name} is {have!r}, the issue shows {wanted!r}")
        return misses


class KnownIssue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    state: Literal["open", "closed"]
    title: str
    repo: str = ISSUE_REPO
    affects: dict[str, list[str]] = Field(description="fact name -> version constraints (any of); every fact "
                                          "must match, e.g. {harvester: [v1.5.0-rc2], harvester_to: [master-*]}")
    shows: Signature
    checked: dt.date | None = None
    note: str = ""

    @field_validator("affects")
    @classmethod
    def _constraints(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        if not value:
            raise ValueError("name at least one fact the issue depends on (e.g. harvester: [v1.5.0-rc2])")
        for constraints in value.values():
            for constraint in constraints:
                if not _is_pattern(constraint):
                    versions.check_constraint(constraint)
        return value

    def affected(self, facts: Mapping[str, str]) -> tuple[bool, list[str]]:
        """(affected?, why not): every fact the issue names must be known and match one constraint."""
        reasons = []
        for name, constraints in self.affects.items():
            value = facts.get(name)
            if value is None:
                reasons.append(f"{name} is not known for this scenario")
            elif not any(_matches(value, c) for c in constraints):
                reasons.append(f"{name} {value} is not among {', '.join(constraints)}")
        return not reasons, reasons


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[") and text.strip() != "*"


def _matches(value: str, constraint: str) -> bool:
    if _is_pattern(constraint):
        import fnmatch

        return fnmatch.fnmatchcase(value, constraint)
    try:
        return versions.satisfies(value, constraint)
    except ValueError:           # a fact that is not a version (e.g. a path name) compares exactly
        return value == constraint


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
        data = load_mapping(path, "known-issues file", "`issues:` (number -> state, title, affects, shows)")
    except InputError as error:
        raise KnownIssuesError(str(error)) from None
    try:
        parsed = _File.model_validate(data)
    except ValidationError as error:
        raise KnownIssuesError(one_line(error, _File, f"{path}: ")) from None
    return KnownIssues(parsed.issues, path)


def issue_ref(number: int, repo: str = ISSUE_REPO) -> str:
    return f"{repo}#{number}"


Verdict = Literal["unaffected", "known", "other-failure", "no-longer-reproduces"]


@dataclass(frozen=True)
class Judgement:
    verdict: Verdict
    number: int
    issue: KnownIssue
    text: str               # a sentence for the report


def judge(number: int, issue: KnownIssue, facts: Mapping[str, str], failure: BaseException | None,
          step: str | None) -> Judgement:
    ref = issue_ref(number, issue.repo)
    affected, why_not = issue.affected(facts)
    where = ", ".join(f"{name} {facts[name]}" for name in issue.affects if name in facts)
    if not affected:
        return Judgement("unaffected", number, issue, f"{ref} does not apply: {'; '.join(why_not)}")
    if failure is None:
        return Judgement("no-longer-reproduces", number, issue,
                         f"known issue {ref} ({issue.state}) no longer reproduces on {where}: the scenario passed "
                         f"on a version the issue affects. Check {ref} and the build, then update "
                         "ci/known-issues.yaml")
    misses = issue.shows.matches(failure, step)
    if misses:
        return Judgement("other-failure", number, issue,
                         f"failed otherwise than known issue {ref} shows ({'; '.join(misses)})")
    shown = str(failure).strip().splitlines()[0][:1000] if str(failure).strip() else type(failure).__name__
    return Judgement("known", number, issue, f"known issue {ref} ({issue.state}) on {where}: {issue.title}\n\n"
                                              f"{type(failure).__name__}: {shown}")
