"""The Harvester appliance: a small installer ISO per Harvester version, built here from registry packages
(Debian's cloud kernel, debootstrap'ed bookworm, PyPI wheels, this repository's simulator), that behaves as
the real Harvester ISO does from the harness's side: booted with the installer's kernel command line it
fetches `harvester.install.config_url`, installs itself onto the disk and powers off; booted from the disk
it serves SSH (user rancher, the host key from the config) and the Harvester API of its version.

    python -m infra.appliance build --version v1.5.1        # or build_appliance(["v1.5.1"])

The programs that run inside the VM are in infra/simulator/appliance (they must run without the harness).
See infra/appliance/README.md for what the machine that boots it must look like.
"""
from .build import CACHE_DIR, ApplianceArtifacts, ApplianceUnavailable, VersionIso, build_appliance

__all__ = ["CACHE_DIR", "ApplianceArtifacts", "ApplianceUnavailable", "VersionIso", "build_appliance"]
