"""Simulated Harvester releases: what each one ships and which behaviours it has.

Everything the simulator does differently per version is derived here from the version itself (never
from a test switch). Sources: `docs/harvester-facts.md` and the tags of harvester/harvester and
harvester/harvester-installer (`scripts/version-*`, `package/upgrade-matrix.yaml`,
`scripts/package-harvester-os`). Values marked ILLUSTRATIVE were not found in those sources.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

import yaml

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

RELEASES_PATH = "/harvester-releases/"     # the simulator's release server, laid out like releases.rancher.com/harvester
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
    # What the ISO's harvester-release.yaml says under `harvester`: the tag, or for a dev build the
    # 8-hex commit harvester's scripts/version prints (the installer build sees no tag on the clone).
    release_harvester: str = ""
    installer_version: str = ""        # installer scripts/version VERSION: the tag, or "master" for a dev build
    installer_commit: str = ""         # `installer:` in the release file (git rev-parse --short of the installer)
    # The harvester/harvester tag whose upgrade code (controller, webhook, upgrade scripts) this build
    # runs. A dev build is not "newer than everything": master at ce188325 (2025-04-02) has exactly
    # v1.5.0's package/upgrade, pkg/controller/master/upgrade and pkg/webhook/resources/upgrade
    # (`git diff --stat v1.5.0 ce188325` on them lists only four removed managed_charts migrations).
    behaviour_tag: str = ""

    def __post_init__(self) -> None:
        for attr, default in (("release_harvester", self.name), ("installer_version", self.name),
                              ("behaviour_tag", self.name)):
            if not getattr(self, attr):
                object.__setattr__(self, attr, default)

    # ---- identity -------------------------------------------------------------------------

    @property
    def is_dev(self) -> bool:
        """master-ce188325-head is a dev build: its name is not semver.

        docs/harvester-facts.md §1.2: dev targets are always allowed.
        """
        return not is_semver(self.name)

    @property
    def sort_key(self) -> SemVer:
        return DEV_SORT_KEY if self.is_dev else parse_semver(self.name)

    def at_least(self, release: str) -> bool:
        """True if this build's upgrade code contains what `release` introduced (see `behaviour_tag`)."""
        return compare_semver(self.behaviour_tag, release) >= 0

    @property
    def image_tag(self) -> str:
        """Tag of rancher/harvester images: the git tag, or "<branch>-head" for dev builds (scripts/version)."""
        return f"{self.name.split('-')[0]}-head" if self.is_dev else self.name

    @property
    def release_channel(self) -> str:
        """The directory of releases.rancher.com/harvester that publishes it: the tag, or `master` for a dev build."""
        return "master" if self.is_dev else self.name

    @property
    def iso_name(self) -> str:
        """`harvester-<installer VERSION>-amd64.iso` (installer scripts/package-harvester-os ISO_PREFIX)."""
        return f"harvester-{self.release_channel}-amd64.iso"

    def iso_url(self, server: str) -> str:
        """Where a release server at `server` (scheme://host:port) publishes this version's ISO.

        The simulator is such a server (`release_iso.ReleaseServer`), laid out like releases.rancher.com/harvester.
        """
        return f"{server.rstrip('/')}{RELEASES_PATH}{self.release_channel}/{self.iso_name}"

    # ---- behaviour flags (admission webhook, upgrade scripts, UI) --------------------------
    # Each gate names the first harvester/harvester tag with the behaviour; `at_least` compares it with
    # `behaviour_tag`, so the dev build answers as v1.5.0 (see above).

    @property
    def checks_machines_running(self) -> bool:
        """Upgrade webhook `checkMachines`: every fleet-local Machine must be Running (affd8002d, since v1.2.0-rc1)."""
        return self.at_least("v1.2.0-rc1")

    @property
    def checks_node_machine_match(self) -> bool:
        """`isNodeMachineMatching` (ce00f096c, 2025-05-07; backport 999ac37f2): v1.5.1 on; not at ce188325."""
        return self.at_least("v1.5.1")

    @property
    def checks_cleanup_pending(self) -> bool:
        """Deny while an Upgrade has upgradeCleanup=Pending: with the label itself (8a9b1165a, 2025-10-09), v1.7.0."""
        return self.at_least("v1.7.0-rc1")

    @property
    def sets_upgrade_cleanup_label(self) -> bool:
        """`harvesterhci.io/upgradeCleanup` on the Upgrade (8a9b1165a/038059bf8, 2025-10-09): v1.7.0 on."""
        return self.at_least("v1.7.0-rc1")

    @property
    def checks_addons(self) -> bool:
        """Add-on readiness check in `checkResources` (ce73bdd95, 2025-11-27): v1.8.0 line (v1.7.0-rc4 backport)."""
        return self.at_least("v1.7.0-rc4")

    @property
    def checks_stale_hotplug(self) -> bool:
        """Stale-hotplug volume checks (02052084d, 2026-07-17): v1.8.2."""
        return self.at_least("v1.8.2")

    @property
    def cert_check(self) -> bool:
        """RKE2 certificate-expiry check ("... Please rotate RKE2 certificates."): v1.5.0 line, in v1.5.0-rc2 too."""
        return self.at_least("v1.5.0-rc2")

    @property
    def skip_annotations_on(self) -> str:
        """Kind whose annotations tune the disk/cert checks: "Version" up to v1.5.0, "Upgrade" from v1.5.1.

        docs/harvester-facts.md §1.3.
        """
        return "Upgrade" if self.at_least("v1.5.1") else "Version"

    @property
    def check_tuning_annotations(self) -> tuple[str, ...]:
        """Annotation names read on `skip_annotations_on` (v1.4.x validator reads only minFreeDiskSpaceGB)."""
        if self.at_least("v1.5.0-rc2"):
            return ("harvesterhci.io/skipGarbageCollectionThresholdCheck", "harvesterhci.io/minCertsExpirationInDay")
        return ("harvesterhci.io/minFreeDiskSpaceGB",)

    @property
    def helm_wait_rolls_back_pending(self) -> bool:
        """`wait_helm_release` rolls back a stale pending-* revision once (c50975695, #9934, 2026-02-03): v1.8.0."""
        return self.at_least("v1.8.0-rc1")

    @property
    def dashboard_save_keeps_status(self) -> bool:
        """UI PUT keeps `status`: harvester-ui-extension v1.5.0-rc2 on (d8bee7f4 / 0ca2b059) and, backported
        (e8c8a54b / dc2437db, 2025-04-08), v1.0.5 and v1.0.6 of the v1.0.x line; v1.0.4 and v1.5.0-rc1 lack it."""
        ui = self.ui_extension_version
        if not is_semver(ui):
            return True
        version = parse_semver(ui)
        if (version.major, version.minor) == (1, 0):
            return compare_semver(ui, "v1.0.5") >= 0
        return compare_semver(ui, "v1.5.0-rc2") >= 0

    def behaviour(self) -> dict[str, Any]:
        """All derived flags, for logs and reports."""
        names = ("is_dev", "behaviour_tag", "checks_machines_running", "checks_node_machine_match",
                 "checks_cleanup_pending", "sets_upgrade_cleanup_label", "checks_addons", "checks_stale_hotplug",
                 "cert_check", "skip_annotations_on", "helm_wait_rolls_back_pending", "dashboard_save_keeps_status",
                 "min_upgradable_version")
        return {n: getattr(self, n) for n in names}

    # ---- artefacts ---------------------------------------------------------------------------

    def release_file(self) -> dict[str, Any]:
        """`harvester-release.yaml` of this version's ISO, as data (the text is `release_file_text`)."""
        loaded = yaml.safe_load(self.release_file_text())
        assert isinstance(loaded, dict)
        return loaded

    def release_file_text(self) -> str:
        """`harvester-release.yaml` as the installer writes it into the ISO root.

        installer scripts/package-harvester-os writes the first ten keys (minUpgradableVersion single-quoted);
        scripts/collect-deps.sh then appends rancherDependencies with `yq -i` (two-space indent).
        """
        lines = [f"harvester: {self.release_harvester}",
                 f"harvesterChart: {self.harvester_chart_version}",
                 f"installer: {self.installer_commit}",
                 f"os: {self.os_pretty_name}",
                 f"kubernetes: {self.rke2_version}",
                 f"rancher: {self.rancher_version}",
                 f"monitoringChart: {self.monitoring_chart_version}",
                 f"loggingChart: {self.logging_chart_version}",
                 f"kubevirt: {self.kubevirt_version}",
                 f"minUpgradableVersion: '{self.min_upgradable_version}'",
                 "rancherDependencies:"]
        for name, dep in self.rancher_dependencies.items():
            lines += [f"  {name}:", f"    chart: {dep.chart_version}", f"    app: {dep.app_version}"]
        return "\n".join(lines) + "\n"

    def version_manifest(self, server: str, namespace: str = "harvester-system",
                         iso_checksum: str = "") -> dict[str, Any]:
        """The Version CR the release server publishes as `version.yaml` next to a tagged release's ISO.

        installer scripts/package-harvester-os writes it for tags only: name, isoChecksum (sha512), isoURL and
        releaseDate (`date +%Y%m%d`). A dev build has none; a test makes one with the same fields.
        """
        spec: dict[str, Any] = {"isoURL": self.iso_url(server)}
        if iso_checksum:
            spec = {"isoChecksum": iso_checksum, **spec}
        if self.release_date:
            spec["releaseDate"] = self.release_date.replace("-", "")
        return {"apiVersion": "harvesterhci.io/v1beta1", "kind": "Version",
                "metadata": {"name": self.name, "namespace": namespace}, "spec": spec}


# Per-line constants ------------------------------------------------------------------------

_KERNEL_SLE_MICRO_55 = "5.14.21-150500.55.97-default"          # ILLUSTRATIVE
_CONTAINERD_RKE2_131 = "containerd://1.7.23-k3s2"              # ILLUSTRATIVE
_CONTAINERD_RKE2_132 = "containerd://2.0.4-k3s2"               # ILLUSTRATIVE

# Rancher dependency sets: fleetVersion / webhookVersion of rancher/rancher `build.yaml` at each tag.
# Rancher installs rancher-webhook at exactly webhookVersion (settings.RancherWebhookVersion) and fleet
# at the newest chart of its bundled rancher-charts index that is >= fleetVersion; the ISO's
# harvester-release.yaml takes `sort -V | tail -1` of that index plus the minimum (installer
# scripts/collect-deps.sh). The bundled indexes could not be read (rancher/charts keeps no
# release-v2.11 branch in the snapshot read), so both are taken to be the build.yaml values:
# v2.10.1's fleet is confirmed by the `helm history` of a v1.4.2 cluster in harvester/harvester#8001,
# v2.11.0's fleet by the wait line of #8001, v2.11.0-rc5's fleet by the version #8001 hangs on.
_DEPS_RANCHER_2_10_1 = _rancher_deps(fleet=("105.0.2+up0.11.2", "0.11.2"), webhook=("105.0.1+up0.6.2", "0.6.2"))
_DEPS_RANCHER_2_11_0_RC5 = _rancher_deps(fleet=("106.0.0+up0.12.0-rc.3", "0.12.0-rc.3"),
                                         webhook=("106.0.0+up0.7.0-rc.9", "0.7.0-rc.9"))
_DEPS_RANCHER_2_11_0 = _rancher_deps(fleet=("106.0.0+up0.12.0", "0.12.0"), webhook=("106.0.0+up0.7.0", "0.7.0"))
_DEPS_RANCHER_2_11_2 = _rancher_deps(fleet=("106.1.1+up0.12.3", "0.12.3"), webhook=("106.0.2+up0.7.2", "0.7.2"))
_DEPS_RANCHER_2_11_3 = _rancher_deps(fleet=("106.1.2+up0.12.4", "0.12.4"), webhook=("106.0.3+up0.7.3", "0.7.3"))

_MONITORING_V14, _LOGGING_V14 = "103.1.1+up45.31.1", "103.1.0+up4.4.0"
_MONITORING_V15, _LOGGING_V15 = "105.1.2+up61.3.2", "105.2.0+up4.10.0"


def _release(name: str, **kw: Any) -> HarvesterVersion:
    kw.setdefault("os_pretty_name", f"Harvester {name}")
    kw.setdefault("harvester_chart_version", name.lstrip("v"))
    kw.setdefault("kubernetes_version", kw["rke2_version"])
    kw.setdefault("kernel_version", _KERNEL_SLE_MICRO_55)
    return HarvesterVersion(name=name, **kw)


_ALL = [
    _release("v1.4.2", installer_commit="6fe3c71", rke2_version="v1.31.4+rke2r1", rancher_version="v2.10.1",
             ui_extension_version="v1.0.4",                     # v1.0.x line (Rancher 2.10), paired by tag date
             monitoring_chart_version=_MONITORING_V14, logging_chart_version=_LOGGING_V14,
             kubevirt_version="1.3.1-150600.5.9.1", longhorn_version="1.7.2", load_balancer_version="v0.4.4",
             min_upgradable_version="v1.4.1", release_date="2025-03-11",
             containerd_version=_CONTAINERD_RKE2_131, rancher_dependencies=_DEPS_RANCHER_2_10_1),
    _release("v1.4.3", installer_commit="ed10c2a", rke2_version="v1.31.7+rke2r1", rancher_version="v2.10.1",
             ui_extension_version="v1.0.6",                     # tagged the same day as v1.4.3
             monitoring_chart_version=_MONITORING_V14, logging_chart_version=_LOGGING_V14,
             kubevirt_version="1.3.1-150600.5.9.1", longhorn_version="1.7.3", load_balancer_version="v0.4.4",
             min_upgradable_version="v1.4.1", release_date="2025-05-26",
             containerd_version=_CONTAINERD_RKE2_131, rancher_dependencies=_DEPS_RANCHER_2_10_1),
    _release("v1.5.0-rc2", installer_commit="b789216", rke2_version="v1.32.2+rke2r1", rancher_version="v2.11.0-rc5",
             ui_extension_version="v1.5.0-rc2",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1", load_balancer_version="v1.5.0-rc2",
             min_upgradable_version="v1.4.2", release_date="2025-03-25",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_0_RC5),
    _release("v1.5.0", installer_commit="2bd2f03", rke2_version="v1.32.3+rke2r1", rancher_version="v2.11.0",
             ui_extension_version="v1.5.0",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1", load_balancer_version="v1.5.0",
             min_upgradable_version="v1.4.2", release_date="2025-04-25",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_0),
    _release("v1.5.1", installer_commit="d5d7ec5", rke2_version="v1.32.4+rke2r1", rancher_version="v2.11.2",
             ui_extension_version="v1.5.1",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.2", load_balancer_version="v1.5.1",
             min_upgradable_version="v1.4.2", release_date="2025-06-27",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_2),
    _release("v1.5.2", installer_commit="745386f", rke2_version="v1.32.7+rke2r1", rancher_version="v2.11.3",
             ui_extension_version="v1.5.2",
             monitoring_chart_version=_MONITORING_V15, logging_chart_version=_LOGGING_V15,
             kubevirt_version="1.4.1-150600.5.21.2", longhorn_version="1.8.2", load_balancer_version="v1.5.2",
             min_upgradable_version="v1.4.2", release_date="2025-09-17",
             containerd_version=_CONTAINERD_RKE2_132, rancher_dependencies=_DEPS_RANCHER_2_11_3),
    # master-ce188325-head: the master ISO built on 2025-04-03 (harvester/harvester#8001): harvester master at
    # ce188325 (2025-04-02) and harvester-installer master at fc39e03f (2025-04-02, "bump rancher to v2.11.0"),
    # whose scripts/version-* pin Rancher v2.11.0, RKE2 v1.32.3+rke2r1, monitoring 105.1.2+up61.3.2 and
    # logging 105.2.0+up4.10.0. The binary reports VERSION=<branch>-<sha8>-head (harvester .github/workflows/
    # build.yml); the installer's shallow clone has no tag, so the release file says `harvester: ce188325`,
    # chart 0.0.0-master-ce188325, os "Harvester master" and minUpgradableVersion ''. Its upgrade code is v1.5.0's.
    HarvesterVersion(
        name="master-ce188325-head", os_pretty_name="Harvester master", rke2_version="v1.32.3+rke2r1",
        kubernetes_version="v1.32.3+rke2r1", rancher_version="v2.11.0",
        ui_extension_version="v1.6.0-dev",                      # ILLUSTRATIVE: the UI extension is not in the ISO
        harvester_chart_version="0.0.0-master-ce188325", monitoring_chart_version=_MONITORING_V15,
        logging_chart_version=_LOGGING_V15, kubevirt_version="1.4.0-150600.5.15.1", longhorn_version="1.8.1",
        load_balancer_version="master-head", min_upgradable_version="", release_date="",
        containerd_version=_CONTAINERD_RKE2_132, kernel_version=_KERNEL_SLE_MICRO_55,
        rancher_dependencies=_DEPS_RANCHER_2_11_0, release_harvester="ce188325", installer_version="master",
        installer_commit="fc39e03", behaviour_tag="v1.5.0",
    ),
]

VERSIONS: dict[str, HarvesterVersion] = {v.name: v for v in _ALL}
DEFAULT_VERSION = "v1.4.2"


class UnknownVersionError(ValueError):
    """Raised for a Harvester version the simulator does not simulate."""


def version_names() -> list[str]:
    return list(VERSIONS)


def version_of_release(harvester: str) -> HarvesterVersion | None:
    """The simulated version whose release file says `harvester: <harvester>` (a dev build says its commit)."""
    return next((v for v in VERSIONS.values() if v.release_harvester == harvester), None)


def rancher_dependencies_of(rancher_version: str) -> Mapping[str, ChartRelease]:
    """What Rancher `rancher_version` installs for itself (build.yaml), from a simulated release that embeds it."""
    found = next((v for v in VERSIONS.values() if v.rancher_version == rancher_version), None)
    return found.rancher_dependencies if found is not None else MappingProxyType({})


def version_of_channel(channel: str) -> HarvesterVersion | None:
    """The simulated version a release-server directory (`v1.5.1`, `master`) publishes."""
    return next((v for v in VERSIONS.values() if v.release_channel == channel), None)


def get_version(name: str) -> HarvesterVersion:
    try:
        return VERSIONS[name]
    except KeyError:
        raise UnknownVersionError(
            f"unknown Harvester version {name!r}; valid versions: {', '.join(version_names())}") from None
