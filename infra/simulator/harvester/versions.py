"""Simulated Harvester releases: what each one ships and which behaviours it has.

Everything the twin does differently per version is derived here from the version itself (never
from a test switch). Sources: `reference/harvester-facts.md` and the tags of harvester/harvester and
harvester/harvester-installer (`scripts/version-*`, `package/upgrade-matrix.yaml`,
`scripts/package-harvester-os`). Values marked ILLUSTRATIVE were not found in those sources.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

# --------------------------------------------------------------------------------------------
# Semantic versions (semver.org 2.0.0)
# --------------------------------------------------------------------------------------------

_SEMVER = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)\.(?P<patch>0|[1-9]\d*)"
    r"(?:-(?P<pre>(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


@dataclass(frozen=True)
class SemVer:
    """A parsed semantic version; a leading "v" is accepted (Harvester, RKE2 and Rancher use one)."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()   # dot-separated identifiers after "-" (before any "+")
    build: str = ""                    # everything after "+"; never affects precedence (§10)


def parse_semver(text: str) -> SemVer:
    match = _SEMVER.match(text.strip())
    if not match:
        raise ValueError(f"not a semantic version: {text!r}")
    pre = match.group("pre")
    return SemVer(int(match.group("major")), int(match.group("minor")), int(match.group("patch")),
                  tuple(pre.split(".")) if pre else (), match.group("build") or "")


def is_semver(text: str) -> bool:
    return bool(_SEMVER.match(text.strip()))


def prerelease_of(text: str) -> str:
    """The prerelease part ("rc.3" of "0.12.0-rc.3"), or "" when there is none.

    A "-rc.3" inside build metadata does not count: "106.0.0+up0.12.0-rc.3" has no prerelease.
    """
    return ".".join(parse_semver(text).prerelease)


def is_prerelease(text: str) -> bool:
    return bool(parse_semver(text).prerelease)


def _compare_identifiers(a: str, b: str) -> int:
    a_num, b_num = a.isdigit(), b.isdigit()
    if a_num and b_num:
        return (int(a) > int(b)) - (int(a) < int(b))
    if a_num != b_num:           # numeric identifiers have lower precedence than alphanumeric ones
        return -1 if a_num else 1
    return (a > b) - (a < b)     # ASCII order


def compare_semver(a: str, b: str) -> int:
    """-1, 0 or 1 by semver.org §11 precedence; build metadata after "+" is ignored.

    So "106.0.0+up0.12.0-rc.3" and "106.0.0+up0.12.0" compare equal, as Rancher (Masterminds
    semver `Compare`) sees them, while Harvester's `wait_helm_release` compares the strings.
    """
    va, vb = parse_semver(a), parse_semver(b)
    core_a, core_b = (va.major, va.minor, va.patch), (vb.major, vb.minor, vb.patch)
    if core_a != core_b:
        return -1 if core_a < core_b else 1
    if not va.prerelease or not vb.prerelease:      # a release outranks any of its prereleases
        return (not va.prerelease) - (not vb.prerelease)
    for x, y in zip(va.prerelease, vb.prerelease):
        result = _compare_identifiers(x, y)
        if result:
            return result
    return (len(va.prerelease) > len(vb.prerelease)) - (len(va.prerelease) < len(vb.prerelease))


def semver_precedence_equal(a: str, b: str) -> bool:
    return compare_semver(a, b) == 0


# --------------------------------------------------------------------------------------------
# Releases
# --------------------------------------------------------------------------------------------

FLEET_NAMESPACE = "cattle-fleet-system"
WEBHOOK_NAMESPACE = "cattle-system"


@dataclass(frozen=True)
class ChartRelease:
    """One Helm release Rancher installs for itself (a "Rancher dependency")."""

    namespace: str
    chart_version: str   # Helm chart version, e.g. "106.0.0+up0.12.0"
    app_version: str     # Chart appVersion, e.g. "0.12.0"


def _rancher_deps(fleet: tuple[str, str], webhook: tuple[str, str]) -> Mapping[str, ChartRelease]:
    # fleet and fleet-crd always come from the same fleet chart release
    return MappingProxyType({
        "fleet": ChartRelease(FLEET_NAMESPACE, *fleet),
        "fleet-crd": ChartRelease(FLEET_NAMESPACE, *fleet),
        "rancher-webhook": ChartRelease(WEBHOOK_NAMESPACE, *webhook),
    })


DEV_SORT_KEY = SemVer(10**6, 0, 0)   # a dev build sorts after every release in version-gated checks


@dataclass(frozen=True)
class HarvesterVersion:
    """A simulated Harvester release and what a cluster running it looks like."""

    name: str                          # release name as in the Version CR and `server-version`, e.g. "v1.4.2"
    os_pretty_name: str                # /etc/os-release PRETTY_NAME on nodes: "Harvester <installer VERSION>"
    rke2_version: str                  # kubelet version on nodes (installer scripts/version-rke2)
    kubernetes_version: str            # /version gitVersion; RKE2's apiserver reports the rke2 suffix
    rancher_version: str               # embedded Rancher (installer scripts/version-rancher)
    ui_extension_version: str          # harvester-ui-extension release paired with it (Rancher integration UI)
    harvester_chart_version: str       # harvesterChart (tag without "v"; "0.0.0-<branch>-<sha>" for dev)
    monitoring_chart_version: str      # rancher-monitoring chart (installer scripts/version-monitoring)
    logging_chart_version: str         # rancher-logging chart (installer scripts/version-logging)
    kubevirt_version: str              # virt-operator image tag in the harvester chart values
    longhorn_version: str              # longhorn sub-chart version (= longhorn-manager image tag sans "v")
    load_balancer_version: str         # harvester-load-balancer image tag
    min_upgradable_version: str        # package/upgrade-matrix.yaml; "" for dev builds (no restriction)
    release_date: str                  # tag date (YYYY-MM-DD) of the harvester/harvester tag
    containerd_version: str            # node containerRuntimeVersion (ILLUSTRATIVE per RKE2 minor)
    kernel_version: str                # node kernelVersion (ILLUSTRATIVE, SLE Micro 5.5 kernel)
    rancher_dependencies: Mapping[str, ChartRelease] = field(hash=False)   # fleet, fleet-crd, rancher-webhook
    logging_eventrouter_chart_version: str = ""   # release-file key only HEAD's detect_repo requires

    # ---- identity -------------------------------------------------------------------------

    @property
    def is_dev(self) -> bool:
        """master-ce188325-head is a dev build: its name is not semver (facts §1.2: dev targets are always allowed)."""
        return not is_semver(self.name)

    @property
    def sort_key(self) -> SemVer:
        return DEV_SORT_KEY if self.is_dev else parse_semver(self.name)

    def at_least(self, release: str) -> bool:
        """True if this build contains what `release` introduced (dev builds contain everything)."""
        return self.is_dev or compare_semver(self.name, release) >= 0

    @property
    def image_tag(self) -> str:
        """Tag of rancher/harvester images: the git tag, or "<branch>-head" for dev builds (scripts/version)."""
        return f"{self.name.split('-')[0]}-head" if self.is_dev else self.name

    @property
    def iso_url(self) -> str:
        channel = "master" if self.is_dev else self.name
        return f"https://releases.rancher.com/harvester/{channel}/harvester-{channel}-amd64.iso"

    # ---- behaviour flags (admission webhook, upgrade scripts, UI) --------------------------

    @property
    def checks_machines_running(self) -> bool:
        """Upgrade webhook `checkMachines`: every fleet-local Machine must be Running (present in v1.4.0, §1.3)."""
        return self.at_least("v1.4.0")

    @property
    def checks_node_machine_match(self) -> bool:
        """`isNodeMachineMatching` (commit 999ac37f2): first in v1.5.1, absent in v1.5.0 and its rcs (§1.3)."""
        return self.at_least("v1.5.1")

    @property
    def checks_cleanup_pending(self) -> bool:
        """Deny while an Upgrade has upgradeCleanup=Pending: at HEAD only, not in v1.5.0..v1.6.0 (§1.3)."""
        return self.is_dev

    @property
    def checks_addons(self) -> bool:
        """Add-on readiness check in `checkResources`: HEAD only (§1.3)."""
        return self.is_dev

    @property
    def checks_stale_hotplug(self) -> bool:
        """Stale-hotplug volume checks: HEAD only (§1.3)."""
        return self.is_dev

    @property
    def cert_check(self) -> bool:
        """RKE2 certificate-expiry check ("... Please rotate RKE2 certificates."): v1.5.0 line, in v1.5.0-rc2 too."""
        return self.at_least("v1.5.0-rc2")

    @property
    def skip_annotations_on(self) -> str:
        """Kind whose annotations tune the disk/cert checks: "Version" up to v1.5.0, "Upgrade" from v1.5.1 (§1.3)."""
        return "Upgrade" if self.at_least("v1.5.1") else "Version"

    @property
    def check_tuning_annotations(self) -> tuple[str, ...]:
        """Annotation names read on `skip_annotations_on` (v1.4.x validator reads only minFreeDiskSpaceGB)."""
        if self.at_least("v1.5.0-rc2"):
            return ("harvesterhci.io/skipGarbageCollectionThresholdCheck", "harvesterhci.io/minCertsExpirationInDay")
        return ("harvesterhci.io/minFreeDiskSpaceGB",)

    @property
    def helm_wait_rolls_back_pending(self) -> bool:
        """`wait_helm_release` rolls back a stale pending-* revision once: HEAD only (PR #9934, §1.5)."""
        return self.is_dev

    @property
    def dashboard_save_keeps_status(self) -> bool:
        """UI PUT keeps `status`: harvester-ui-extension >= v1.5.0-rc2 (d8bee7f4 / 0ca2b059; no v1.0.x tag has it)."""
        ui = self.ui_extension_version
        return not is_semver(ui) or compare_semver(ui, "v1.5.0-rc2") >= 0

    def behaviour(self) -> dict[str, Any]:
        """All derived flags, for logs and reports."""
        names = ("is_dev", "checks_machines_running", "checks_node_machine_match", "checks_cleanup_pending",
                 "checks_addons", "checks_stale_hotplug", "cert_check", "skip_annotations_on",
                 "helm_wait_rolls_back_pending", "dashboard_save_keeps_status", "min_upgradable_version")
        return {n: getattr(self, n) for n in names}

    # ---- artefacts ---------------------------------------------------------------------------

    def release_file(self) -> dict[str, Any]:
        """`harvester-release.yaml` of this version's upgrade repo (keys per facts §1.5 / detect_repo)."""
        content: dict[str, Any] = {
            "harvester": self.name,
            "harvesterChart": self.harvester_chart_version,
            "os": self.os_pretty_name,
            "kubernetes": self.rke2_version,
            "rancher": self.rancher_version,
            "monitoringChart": self.monitoring_chart_version,
            "loggingChart": self.logging_chart_version,
            "kubevirt": self.kubevirt_version,
            "minUpgradableVersion": self.min_upgradable_version,
            "rancherDependencies": {
                name: {"chart": dep.chart_version, "app": dep.app_version}
                for name, dep in self.rancher_dependencies.items()
            },
        }
        if self.logging_eventrouter_chart_version:
            content["loggingChartHarvesterEventRouter"] = self.logging_eventrouter_chart_version
        return content

    def version_manifest(self, namespace: str = "harvester-system") -> dict[str, Any]:
        """A Version CR a test can create to offer this release as an upgrade target (not seeded)."""
        spec: dict[str, Any] = {"isoURL": self.iso_url}
        if self.release_date:
            spec["releaseDate"] = self.release_date
        if self.min_upgradable_version:
            spec["minUpgradableVersion"] = self.min_upgradable_version
        return {"apiVersion": "harvesterhci.io/v1beta1", "kind": "Version",
                "metadata": {"name": self.name, "namespace": namespace}, "spec": spec}


# Per-line constants ------------------------------------------------------------------------

_KERNEL_SLE_MICRO_55 = "5.14.21-150500.55.97-default"          # ILLUSTRATIVE
_CONTAINERD_RKE2_131 = "containerd://1.7.23-k3s2"              # ILLUSTRATIVE
_CONTAINERD_RKE2_132 = "containerd://2.0.4-k3s2"               # ILLUSTRATIVE

# Rancher v2.10.1 dependency set. ILLUSTRATIVE: the facts do not give the fleet / webhook charts
# bundled with Rancher 2.10 (the "105.x+up0.11.z" / "105.x+up0.6.z" lines are the 2.10 lines).
_DEPS_RANCHER_2_10_1 = _rancher_deps(fleet=("105.0.2+up0.11.2", "0.11.2"), webhook=("105.0.1+up0.6.2", "0.6.2"))
# Rancher v2.11.0-rc5 (v1.5.0-rc2): fleet rc string in build metadata is the seed scenario (§1.5).
# The webhook value is ILLUSTRATIVE and kept final so fleet is the only divergence.
_DEPS_RANCHER_2_11_0_RC5 = _rancher_deps(fleet=("106.0.0+up0.12.0-rc.3", "0.12.0-rc.3"),
                                         webhook=("106.0.0+up0.7.0", "0.7.0"))
# Rancher v2.11.0: fleet from the master-ce188325-head release file of the seed scenario; webhook ILLUSTRATIVE.
_DEPS_RANCHER_2_11_0 = _rancher_deps(fleet=("106.0.0+up0.12.0", "0.12.0"), webhook=("106.0.0+up0.7.0", "0.7.0"))
# Rancher v2.11.2 / v2.11.3: ILLUSTRATIVE patch levels of the 106.x line.
_DEPS_RANCHER_2_11_2 = _rancher_deps(fleet=("106.0.2+up0.12.2", "0.12.2"), webhook=("106.0.2+up0.7.2", "0.7.2"))
_DEPS_RANCHER_2_11_3 = _rancher_deps(fleet=("106.0.3+up0.12.3", "0.12.3"), webhook=("106.0.3+up0.7.3", "0.7.3"))

_MONITORING_V14, _LOGGING_V14 = "103.1.1+up45.31.1", "103.1.0+up4.4.0"
_MONITORING_V15, _LOGGING_V15 = "105.1.2+up61.3.2", "105.2.0+up4.10.0"


def _release(name: str, **kw: Any) -> HarvesterVersion:
    kw.setdefault("os_pretty_name", f"Harvester {name}")
    kw.setdefault("harvester_chart_version", name.lstrip("v"))
    kw.setdefault("kubernetes_version", kw["rke2_version"])
    kw.setdefault("kernel_version", _KERNEL_SLE_MICRO_55)
    return HarvesterVersion(name=name, **kw)


_ALL = [
    _release("v1.4.2", rke2_version="v1.31.4+rke2r1", rancher_version="v2.10.1",
             ui_extension_version="v1.0.4",                     # v1.0.x line (Rancher 2.10), paired by tag date
             monitoring_chart_version=_MONITORING_V14, logging_chart_version=_LOGGING_V14,
             kubevirt_version="1.3.1-150600.5.9.1", longhorn_version="1.7.2", load_balancer_version="v0.4.4",
             min_upgradable_version="v1.4.1", release_date="2025-03-11",
             containerd_version=_CONTAINERD_RKE2_131, rancher_dependencies=_DEPS_RANCHER_2_10_1),
    _release("v1.4.3", rke2_version="v1.31.7+rke2r1", rancher_version="v2.10.1",
             ui_extension_version="v1.0.6",                     # tagged the same day as v1.4.3
             monitoring_chart_version=_MONITORING_V14, logging_chart_version=_LOGGING_V14,
             kubevirt_version="1.3.1-150600.5.9.1", longhorn_version="1.7.3", load_balancer_version="v0.4.4",
             min_upgradable_version="v1.4.1", release_date="2025-05-26",
             containerd_version=_CONTAINERD_RKE2_131, rancher_dependencies=_DEPS_RANCHER_2_10_1),
    _release("v1.5.0-rc2", rke2_version="v1.32.2+rke2r1", rancher_version="v2.11.0-rc5",
             ui_extension_version="v1.5.0-rc2",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1", load_balancer_version="v1.5.0-rc2",
             min_upgradable_version="v1.4.2", release_date="2025-03-25",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_0_RC5),
    _release("v1.5.0", rke2_version="v1.32.3+rke2r1", rancher_version="v2.11.0",
             ui_extension_version="v1.5.0",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1", load_balancer_version="v1.5.0",
             min_upgradable_version="v1.4.2", release_date="2025-04-25",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_0),
    _release("v1.5.1", rke2_version="v1.32.4+rke2r1", rancher_version="v2.11.2",
             ui_extension_version="v1.5.1",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.2", load_balancer_version="v1.5.1",
             min_upgradable_version="v1.4.2", release_date="2025-06-27",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_2),
    _release("v1.5.2", rke2_version="v1.32.7+rke2r1", rancher_version="v2.11.3",
             ui_extension_version="v1.5.2",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.1-150600.5.21.2", longhorn_version="1.8.2", load_balancer_version="v1.5.2",
             min_upgradable_version="v1.4.2", release_date="2025-09-17",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_3),
    # master-ce188325-head: a dev build of the main branch. Its behaviour flags follow HEAD of the source read;
    # its component set is the main branch of April-May 2025 (installer pinned Rancher v2.11.0 and
    # RKE2 v1.32.3 then), which is what the seed scenario's release file (fleet 106.0.0+up0.12.0) implies.
    # Dev builds: installer VERSION is the branch ("Harvester master"), image tag "<branch>-head",
    # chart "0.0.0-<branch>-<sha>" (the sha part ILLUSTRATIVE), minUpgradableVersion "".
    HarvesterVersion(
        name="master-ce188325-head", os_pretty_name="Harvester master", rke2_version="v1.32.3+rke2r1",
        kubernetes_version="v1.32.3+rke2r1", rancher_version="v2.11.0",
        ui_extension_version="v1.6.0-dev",                      # ILLUSTRATIVE dev build of the extension
        harvester_chart_version="0.0.0-master-ce188325", monitoring_chart_version=_MONITORING_V15,
        logging_chart_version=_LOGGING_V15, kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1",
        load_balancer_version="master-head", min_upgradable_version="", release_date="",
        containerd_version=_CONTAINERD_RKE2_132, kernel_version=_KERNEL_SLE_MICRO_55,
        rancher_dependencies=_DEPS_RANCHER_2_11_0,
        logging_eventrouter_chart_version="105.2.0+up4.10.0",  # ILLUSTRATIVE; HEAD's detect_repo requires the key
    ),
]

VERSIONS: dict[str, HarvesterVersion] = {v.name: v for v in _ALL}
DEFAULT_VERSION = "v1.4.2"


class UnknownVersionError(ValueError):
    """Raised for a Harvester version the twin does not simulate."""


def version_names() -> list[str]:
    return list(VERSIONS)


def get_version(name: str) -> HarvesterVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise UnknownVersionError(
            f"unknown Harvester version {name!r}; valid versions: {', '.join(version_names())}") from None
