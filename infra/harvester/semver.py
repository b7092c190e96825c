"""Semantic versions as semver.org defines precedence: build metadata (after `+`) is ignored.

That rule is why `106.0.0+up0.12.0-rc.3` and `106.0.0+up0.12.0` are "the same version" to Rancher,
while Harvester's wait_helm_release compares the exact strings.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+([0-9A-Za-z.-]+))?$")


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

    def precedence_key(self) -> tuple:
        # A version without prerelease ranks above any prerelease of the same core version.
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.prerelease)
        return (self.major, self.minor, self.patch, 0 if self.prerelease else 1, pre)


def same_precedence(a: str, b: str) -> bool:
    return SemVer.parse(a).precedence_key() == SemVer.parse(b).precedence_key()


def prerelease_hidden_in_build_metadata(version: str) -> str | None:
    """`106.0.0+up0.12.0-rc.3` -> "rc.3": a pre-release marker that semver treats as build metadata."""
    parsed = SemVer.parse(version)
    match = re.search(r"-((?:rc|alpha|beta|pre|dev)[0-9A-Za-z.-]*)$", parsed.build)
    return match.group(1) if match and not parsed.prerelease else None
