"""The Rancher releases the simulator can simulate, and the RKE2 releases each one offers.

A Rancher line reads the RKE2 releases it may provision from its kontainer-driver-metadata (KDM)
branch (`release-v2.X`, file `channels-rke2.yaml`): a release is offered when the Rancher version
lies in its [minChannelServerVersion, maxChannelServerVersion]. In the KDM snapshots read
(rancher/kontainer-driver-metadata, release-v2.8 / release-v2.9 / dev-v2.10, 2024-10) that gives
RKE2 v1.26-v1.28 for Rancher v2.8, v1.27-v1.30 for v2.9 and v1.28-v1.31 for v2.10; v2.11 offers
v1.30-v1.32 (Rancher v2.11 support matrix). The releases after those snapshots (the 2025 patches
the stories use) are listed by their published RKE2 tags.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_RANCHER = re.compile(r"^v2\.(?P<minor>\d+)\.(?P<patch>\d+)$")
_RKE2 = re.compile(r"^v1\.(?P<minor>\d+)\.(?P<patch>\d+)\+rke2r(?P<rev>\d+)$")

# RKE2 patch releases per Kubernetes minor (published rancher/rke2 tags, newest last).
RKE2_RELEASES: dict[int, tuple[str, ...]] = {
    26: ("v1.26.15+rke2r1",),
    27: ("v1.27.16+rke2r1", "v1.27.16+rke2r2"),
    28: ("v1.28.14+rke2r1", "v1.28.15+rke2r1"),
    29: ("v1.29.9+rke2r1", "v1.29.12+rke2r1", "v1.29.13+rke2r1", "v1.29.14+rke2r1"),
    30: ("v1.30.5+rke2r1", "v1.30.8+rke2r1", "v1.30.9+rke2r1", "v1.30.10+rke2r1"),
    31: ("v1.31.1+rke2r1", "v1.31.4+rke2r1", "v1.31.5+rke2r1", "v1.31.6+rke2r1"),
    32: ("v1.32.1+rke2r1", "v1.32.2+rke2r1"),
}
# Rancher minor -> the Kubernetes minors its KDM offers for RKE2 (see the module docstring).
RKE2_MINORS: dict[int, tuple[int, ...]] = {8: (26, 27, 28), 9: (27, 28, 29, 30), 10: (28, 29, 30, 31),
                                           11: (30, 31, 32)}
# Real patch releases of each line the simulator offers (`--rancher`); the first of a line is its default.
RANCHER_VERSIONS = ("v2.8.13", "v2.9.5", "v2.10.3", "v2.11.3")


class UnknownRancherVersion(ValueError):
    pass


@dataclass(frozen=True)
class RancherRelease:
    version: str              # e.g. v2.10.3: the server-version setting and the rancher-agent image tag
    minor: int

    @classmethod
    def get(cls, version: str) -> "RancherRelease":
        match = _RANCHER.match(version or "")
        if not match or version not in RANCHER_VERSIONS:
            raise UnknownRancherVersion(f"Rancher {version!r} is not simulated; choose one of "
                                        f"{', '.join(RANCHER_VERSIONS)}")
        return cls(version, int(match["minor"]))

    @property
    def line(self) -> str:
        return f"2.{self.minor}"

    @property
    def agent_image(self) -> str:
        return f"rancher/rancher-agent:{self.version}"

    def rke2_versions(self) -> list[str]:
        return [v for minor in RKE2_MINORS[self.minor] for v in RKE2_RELEASES.get(minor, ())]

    def offers(self, kubernetes_version: str) -> bool:
        return kubernetes_version in self.rke2_versions()


def rke2_minor(version: str) -> int | None:
    match = _RKE2.match(version or "")
    return int(match["minor"]) if match else None
