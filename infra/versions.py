"""Versions as the harness compares them: semver.org precedence, Harvester's dev builds, and constraints.

* Semantic versions (a leading `v` allowed): build metadata after `+` never affects precedence (semver §10).
  That rule is why `106.0.0+up0.12.0-rc.3` and `106.0.0+up0.12.0` are "the same version" to Rancher while
  Harvester's `wait_helm_release` compares the exact strings.
* Harvester dev builds (`master-ce188325-head`, `v1.4-ba586eaf-head`: branch, commit, `head`) are not semver;
  they rank after every release of their branch (`master` after every release at all).
* Constraints as the known-issue file and the gate write them: `v1.5.0-rc2`, `<=v1.0.4`, `>=v1.5.0-rc2`,
  `<v1.5.0`, `*` (anything).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")
_DEV_BUILD = re.compile(r"^(?P<branch>master|main|v\d+\.\d+)-(?P<commit>[0-9a-f]{7,40})-head$")
_CONSTRAINT = re.compile(r"^(?P<op><=|>=|<|>|==|=)?\s*(?P<version>\S+)$")


@dataclass(frozen=True)
class SemVer:
    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: str = ""

    @classmethod
    def parse(cls, text: str) -> "SemVer":
        match = _SEMVER.match(text.strip())
        if not match:
            raise ValueError(f"not a semantic version: {text!r}")
        major, minor, patch, pre, build = match.groups()
        return cls(int(major), int(minor), int(patch), tuple(pre.split(".")) if pre else (), build or "")

    def precedence_key(self) -> tuple[int, int, int, int, tuple[tuple[int, int, str], ...]]:
        # A version without prerelease ranks above any prerelease of the same core version.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def is_semver(text: str) -> bool:
    return bool(_SEMVER.match(text.strip()))


def is_dev_build(text: str) -> bool:
    return bool(_DEV_BUILD.match(text.strip()))


def same_precedence(a: str, b: str) -> bool:
    return SemVer.parse(a).precedence_key() == SemVer.parse(b).precedence_key()


def prerelease_hidden_in_build_metadata(version: str) -> str | None:
    """`106.0.0+up0.12.0-rc.3` -> "rc.3": a pre-release marker that semver treats as build metadata."""
    parsed = SemVer.parse(version)
    match = re.search(r"-((?:rc|alpha|beta|pre|dev)[0-9A-Za-z.-]*)$", parsed.build)
    return match.group(1) if match and not parsed.prerelease else None


def order_key(version: str) -> tuple[int, tuple[object, ...]]:
    """Sort key for Harvester versions: releases by precedence, then a branch's dev builds, master last."""
    text = version.strip()
    if is_semver(text):
        return 0, SemVer.parse(text).precedence_key()
    dev = _DEV_BUILD.match(text)
    if dev and dev["branch"].startswith("v"):       # v1.4-<sha>-head: after every v1.4.x release
        major, minor = (int(p) for p in dev["branch"][1:].split("."))
        return 0, (major, minor, 10**6, 1, ())
    if dev:
        return 1, (dev["branch"],)
    raise ValueError(f"not a version: {version!r} (expected e.g. v1.5.0-rc2 or master-ce188325-head)")


def compare(a: str, b: str) -> int:
    ka, kb = order_key(a), order_key(b)
    return (ka > kb) - (ka < kb)


def satisfies(version: str, constraint: str) -> bool:
    """Does `version` meet `constraint` (`*`, `v1.5.0`, `<=v1.0.4`, `>=v1.5.0-rc2` ...)?"""
    constraint = constraint.strip()
    if constraint == "*":
        return True
    match = _CONSTRAINT.match(constraint)
    if match is None:
        raise ValueError(f"not a version constraint: {constraint!r} (e.g. v1.5.0-rc2, <=v1.0.4, >=v1.5.0)")
    op, wanted = match["op"] or "=", match["version"]
    if op in ("=", "=="):
        return version.strip() == wanted
    result = compare(version, wanted)
    return {"<": result < 0, "<=": result <= 0, ">": result > 0, ">=": result >= 0}[op]


def check_constraint(constraint: str) -> str:
    """Validate a constraint's syntax (for configuration and data files); returns it unchanged."""
    constraint = constraint.strip()
    if constraint != "*":
        match = _CONSTRAINT.match(constraint)
        if match is None:
            raise ValueError(f"not a version constraint: {constraint!r} (e.g. v1.5.0-rc2, <=v1.0.4, >=v1.5.0)")
        if match["op"] not in (None, "=", "=="):
            order_key(match["version"])
    return constraint
